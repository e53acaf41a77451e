--- Blocking capture for REPLs and recipes.
--
--    local stats, file = kl.capture{ profile = "cpu", file = "cpu.dat", seconds = 10 }
--
-- Starts a session (every `start` option works, `profile` and `on_conflict`
-- included), waits until `seconds` have passed, `stop_when(q, elapsed)`
-- returns true, or Ctrl-C, then stops the session so that the file is
-- complete.  On a terminal a progress line on stderr is redrawn in place;
-- when stderr is not a terminal nothing is printed.
-- @module kernellogger.capture
local M = {}

local OWN = { seconds = true, stop_when = true, progress = true, interval = true,
              output = true }

local function human_bytes(n)
  n = tonumber(n)
  if not n or n < 0 then return "?" end
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  return i == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[i])
end
M.human_bytes = human_bytes

local function num(v)
  v = tonumber(v)
  if v == nil or v < 0 then return nil end
  return v
end

--- The events count of a query table: entries on Linux; on ETW, which does
-- not count events, buffers written.
function M.events(q)
  return num(q.entries) or num(q.buffers_written)
end

--- One progress line (no newline).
function M.progress_line(q, elapsed, seconds)
  local ev = M.events(q)
  local when = seconds and ("%5.1f/%gs"):format(elapsed, seconds) or ("%6.1fs"):format(elapsed)
  return ("kernellogger %s  %s  events %s  lost %s  bytes %s"):format(
    q.name or "?", when, ev and ("%d"):format(ev) or "?",
    num(q.events_lost) and ("%d"):format(q.events_lost) or "?", human_bytes(q.bytes))
end

-- A number, not NaN, finite, and >= lo.
-- About 31 years: a longer capture is a mistake (1e300, math.huge), not a plan.
local MAX_SECONDS = 1e9

local function finite(v, lo)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge and v >= lo
end

-- A file in the temporary folder for events the requested file could not take.
local function fallback_file(core, name)
  local dir = os.getenv("TMPDIR")
  if not dir or dir == "" then dir = core.platform == "windows" and os.getenv("TEMP") or "/tmp" end
  local ext = (core.platform == "windows") and "etl" or "dat"
  return ("%s/kernellogger-%s-%d-%s.%s"):format(dir, name, core._getpid(),
                                                os.date("%Y%m%d-%H%M%S"), ext)
end

--- Stop an owned session whose final file write may fail: what this process
-- started, it stops.  When the file cannot be written, the events go to a
-- file in the temporary folder; when that fails too, the session is stopped
-- without a file and the message says the events are lost.
-- @return stats
-- @return nil, message (saying where the events went), code
function M.stop_owned(s, core)
  local stats, msg, code = s:stop()
  if stats or code == "not_found" or s.stopped then return stats, msg, code end
  local name = s.name
  local other = fallback_file(core, name)
  local st2 = s:stop { file = other }
  if st2 then
    return nil, ("%s; session %s is stopped and its events were written to %s instead")
      :format(msg, name, other), code
  end
  local st3, m3 = s:stop { file = false }
  if st3 then
    return nil, ("%s; session %s is stopped without a file: its events are lost")
      :format(msg, name), code
  end
  return nil, ("%s; and session %s could not be stopped (%s): it is still running, "
    .. "stop it with 'kernellogger stop %s'"):format(msg, name, m3, name), code
end

local function default_file(core)
  local ext = (core.platform == "windows") and "etl" or "dat"
  return ("kernellogger-%s.%s"):format(os.date("%Y%m%d-%H%M%S"), ext)
end

--- Capture until a condition, then stop (`kernellogger.capture(opts)` calls this).
-- @param start the start function to use (kernellogger.start)
-- @param core the core module
-- @tparam table opts start options (a `file` is chosen when absent:
--   kernellogger-YYYYmmdd-HHMMSS.dat in the current folder), plus
--   `seconds` (number), `stop_when` (function(query, elapsed) -> true to stop),
--   `progress` (true: draw on stderr when it is a terminal; default true),
--   `interval` (seconds between polls, default 0.5).  With neither `seconds`
--   nor `stop_when` it runs until Ctrl-C.
-- @return stats (the final counters of stop, plus `interrupted`, `elapsed`, and
--   `events`: the events the session held just before it stopped), file path, outcome
-- @return nil, message, code, holder, outcome when the session cannot start, or
--   `not_found` when someone else stopped it meanwhile
function M.capture(start, core, opts)
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'capture' (table expected, got %s)"):format(type(opts)), 3)
  end
  local seconds, stop_when = opts.seconds, opts.stop_when
  if seconds ~= nil and not (finite(seconds, 0) and seconds <= MAX_SECONDS) then
    error(("bad argument #1 to 'capture' (field 'seconds' must be a number from 0 to %g, got %s)")
      :format(MAX_SECONDS, tostring(seconds)), 3)
  end
  if stop_when ~= nil and type(stop_when) ~= "function" then
    error("bad argument #1 to 'capture' (field 'stop_when' must be a function)", 3)
  end
  local interval = opts.interval or 0.5
  if not finite(interval, 0) or interval == 0 then
    error(("bad argument #1 to 'capture' (field 'interval' must be a finite number > 0, got %s)")
      :format(tostring(interval)), 3)
  end
  local out = opts.output or io.stderr
  local show = opts.progress ~= false and core._isatty(2)
  if opts.output then show = opts.progress ~= false end

  local sopts = {}
  for k, v in pairs(opts) do if not OWN[k] then sopts[k] = v end end
  if sopts.file == nil and not sopts.realtime then sopts.file = default_file(core) end

  local ok0, s, msg, code, holder, outcome = pcall(start, sopts)
  if not ok0 then
    -- Ctrl-C right after the kernel session started but before its handle
    -- reached us: stop what this process just started, then re-raise.
    local name = sopts.name or core.KERNEL_LOGGER
    local q = core.query(name)
    if q and q.owner_pid == core._getpid() and not core.stop(name) then
      core.stop(name, { file = false })  -- the file failed: stop it all the same
    end
    error(s, 0)
  end
  if not s then return nil, msg, code, holder, outcome end
  outcome = msg

  local t0 = core._monotime()
  local drawn, width = false, 0
  -- Redrawn in place with a carriage return, and padded with spaces over a
  -- longer previous line (no escape sequences: old Windows consoles show them).
  local function draw(q)
    if not show then return end
    local line = M.progress_line(q, core._monotime() - t0, seconds)
    out:write("\r", line, (" "):rep(math.max(0, width - #line)))
    width = #line
    out:flush()
    drawn = true
  end

  local function loop()
    while true do
      local elapsed = core._monotime() - t0
      if seconds and elapsed >= seconds then return end
      local q, qmsg, qcode = s:query()
      if not q then
        if qcode == "not_found" then return "gone", qmsg, qcode end
      else
        draw(q)
        if stop_when and stop_when(q, elapsed) then return end
      end
      local nap = interval
      if seconds then nap = math.min(nap, seconds - elapsed) end
      if nap > 0 then core._sleep(nap) end
    end
  end

  local ok, err, gmsg, gcode = pcall(loop)
  local interrupted = false
  if ok and err == "gone" then
    -- someone else stopped it (a takeover, `kernellogger stop`): nothing to stop
    if drawn then out:write("\n") end
    return nil, ("capture %s: the session was stopped by someone else (%s)")
      :format(s.name, gmsg), gcode, nil, outcome
  end
  if not ok then
    -- the standalone interpreter turns SIGINT into this error
    if type(err) == "string" and err:find("interrupted!", 1, true) then
      interrupted = true
    else
      if s.owned then pcall(M.stop_owned, s, core) end
      if drawn then out:write("\n") end
      error(err, 0)
    end
  end

  -- the ring is drained by stop: count what it holds just before
  local last = s:query()
  local stats, smsg, scode
  if s.owned then
    stats, smsg, scode = M.stop_owned(s, core)
  else
    stats, smsg, scode = s:query()   -- attached: never stop someone else's session
  end
  local elapsed = core._monotime() - t0
  if drawn then
    if last then draw(last) end
    out:write(interrupted and "  (interrupted)\n" or "\n")
    out:flush()
  end
  if not stats then return nil, smsg, scode, nil, outcome end
  stats.interrupted = interrupted
  stats.elapsed = elapsed
  stats.events = last and M.events(last) or nil
  local file = stats.file
  if file == nil or file == "" then file = s.file or sopts.file end
  return stats, file, outcome
end

return M
