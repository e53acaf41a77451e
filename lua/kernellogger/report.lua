--- `kernellogger report FILE`: a summary of a capture file.
--
-- Counts by event, lost events, the time span and the event rate per second
-- drawn as a sparkline; with `--html OUT`, the HTML report instead
-- (`kernellogger.html`: one self-contained page with CPU lanes, event lanes,
-- rates and tables). `bin/kernellogger report ...` calls `main`.
--
--     local report = require "kernellogger.report"
--     os.exit(report.main{"capture.dat"})
--     assert(report.html("capture.dat", "capture.html"))          -- also kl.report.html
--     assert(report.chrome_json("capture.dat", "capture.json"))   -- for Perfetto UI
-- @module kernellogger.report
local cmdline = require "kernellogger.cmdline"

local M = {}

local BLOCKS = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"}

--- The most buckets of the events-per-second table: longer spans get buckets of
-- several seconds, so the report's memory does not grow with the span.
M.MAX_BUCKETS = 4096

M.usage = [[
usage: kernellogger report [--width N] [--top N] [--] FILE
       kernellogger report --html OUT [--overwrite] [--] FILE

Summarise a capture: its format, the time span, the events by type with
their counts and share, the events lost by the kernel ring, and the event
rate per second as a sparkline.

  --width N     sparkline width in columns (default: the terminal's, at most 72)
  --top N       show the N most frequent event types (default: all)
  --html OUT    write the HTML report to OUT instead (one file that opens from
                disk: CPU lanes, event lanes, rates, tables; docs/report.md)
  --overwrite   replace OUT if it exists
  --            what follows is FILE, even when it starts with '-'
]]

--- Write the HTML report of a capture (`kernellogger.html.write`).
-- @tparam Trace|string trace an open Trace or a capture file's path
-- @string path the HTML file (atomic, mode 0600; symbolic links refused)
-- @tparam[opt] table opts `overwrite`, `title`, `buckets`, ...
-- @treturn[1] table `bytes`, `cpus`, `groups`, `events`
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.html(trace, path, opts)
  return require("kernellogger.html").write(trace, path, opts)
end

--- Write a capture as Trace Event Format JSON for Perfetto UI and
-- chrome://tracing (`kernellogger.export.chrome_json`).
-- @tparam Trace|string trace an open Trace or a capture file's path
-- @string path the JSON file (atomic, mode 0600; symbolic links refused)
-- @tparam[opt] table opts `overwrite`
-- @treturn[1] table `events`, `slices`, `instants`
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.chrome_json(trace, path, opts)
  return require("kernellogger.export").chrome_json(trace, path, opts)
end

--- The sparkline of a list of numbers, `width` columns at most: when there are
-- more values than columns, each column shows the mean of the values it covers.
-- @tparam {number,...} values
-- @int width
-- @treturn string
function M.sparkline(values, width)
  local n = #values
  if n == 0 then return "" end
  local cols = {}
  if n <= width then
    for i = 1, n do cols[i] = values[i] end
  else
    for c = 1, width do
      local a = (c - 1) * n // width + 1
      local b = math.max(a, c * n // width)
      local sum = 0
      for i = a, b do sum = sum + values[i] end
      cols[c] = sum / (b - a + 1)
    end
  end
  local hi = 0
  for _, v in ipairs(cols) do if v > hi then hi = v end end
  local out = {}
  for i, v in ipairs(cols) do
    out[i] = BLOCKS[hi > 0 and math.floor(v / hi * (#BLOCKS - 1) + 0.5) + 1 or 1]
  end
  return table.concat(out)
end

local function duration(ns)
  local s = ns / 1e9
  if s < 1e-3 then return ("%.1f µs"):format(ns / 1e3) end
  if s < 1 then return ("%.3f ms"):format(ns / 1e6) end
  if s < 120 then return ("%.3f s"):format(s) end
  return ("%dm%02ds"):format(math.floor(s / 60), math.floor(s % 60))
end

local function thousands(n)
  local s = tostring(math.floor(n))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

--- Collect the summary of a file.
-- @string path
-- @treturn[1] table `info`, `total`, `by_type` (list of {key, count}), `lost`
--   (events), `lost_markers`, `lost_unknown` (markers without a count),
--   `lost_cpu` (per CPU), `per_second` (events in each bucket of `step` seconds, at
--   most `MAX_BUCKETS` of them, whatever the time span), `step`, `seconds` (the span in
--   whole seconds), `first` and `last`
--   (the earliest and latest event times)
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.collect(path)
  local kl = require "kernellogger"
  local t, err, code = kl.open(path)
  if not t then return nil, err, code end
  local info, ierr, icode = t:info()
  if not info then
    t:close()
    return nil, ierr, icode
  end
  local counts, total = {}, 0
  local lost, markers, unknown, lost_cpu = 0, 0, 0, {}
  -- counts by second kept sparse (memory bounded by the events, not the span), then
  -- folded into at most MAX_BUCKETS buckets of `step` seconds
  local sparse, first, last, origin = {}, nil, nil, nil
  local ok, rerr = pcall(function()
    for ev in t:events() do
      local time = ev.time
      origin = origin or time
      if not first or time < first then first = time end
      if not last or time > last then last = time end
      local sec = (time - origin) // 1000000000
      sparse[sec] = (sparse[sec] or 0) + 1
      if ev.name == "lost_events" then
        markers = markers + 1
        if ev.lost > 0 then lost = lost + ev.lost else unknown = unknown + 1 end
        lost_cpu[ev.cpu] = (lost_cpu[ev.cpu] or 0) + math.max(ev.lost, 0)
      else
        total = total + 1
        local key = ev.system .. ":" .. ev.name
        counts[key] = (counts[key] or 0) + 1
      end
    end
  end)
  t:close()
  if not ok then   -- a capture damaged mid-stream: "message [code]"
    local msg = tostring(rerr):gsub("^[^%s:]+%.lua:%d+: ", "")
    local text, ecode = msg:match("^(.-) %[(%w+)%]$")
    return nil, text or msg, ecode or "invalid"
  end
  local per_second, step, seconds = {}, 1, 0
  if first then
    local s0 = (first - origin) // 1000000000
    local n = (last - origin) // 1000000000 - s0 + 1
    step, seconds = (n + M.MAX_BUCKETS - 1) // M.MAX_BUCKETS, n
    for i = 1, (n + step - 1) // step do per_second[i] = 0 end
    for sec, c in pairs(sparse) do
      local b = (sec - s0) // step + 1
      per_second[b] = per_second[b] + c
    end
  end
  local by_type = {}
  for k, c in pairs(counts) do by_type[#by_type + 1] = {key = k, count = c} end
  table.sort(by_type, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.key < b.key
  end)
  return {info = info, total = total, by_type = by_type, lost = lost, lost_markers = markers,
          lost_unknown = unknown, lost_cpu = lost_cpu, per_second = per_second, step = step,
          seconds = seconds,
          first = first, last = last}
end

local function columns()
  local c = tonumber(os.getenv("COLUMNS") or "")
  return c and c > 20 and c or 80
end

--- Print the report to `out`.
-- @tparam table r the result of `collect`
-- @string path
-- @tparam file out
-- @tparam table opts `width`, `top`
function M.print(r, path, out, opts)
  local info = r.info
  local w = function(...) out:write(...) end
  w(("%s: %s v%d, %s-endian, %d-byte longs, %d CPUs%s\n"):format(
    path, info.format, info.version, info.endian, info.long_size, info.cpus,
    info.clock and (", clock " .. info.clock) or ""))
  if not r.first then
    w("no events\n")
    return
  end
  local span = r.last - r.first
  w(("time span: %s (%d.%09d .. %d.%09d)\n"):format(duration(span),
    r.first // 1000000000, r.first % 1000000000, r.last // 1000000000, r.last % 1000000000))
  w(("events: %s"):format(thousands(r.total)))
  if span > 0 then w(("  (%s/s on average)"):format(thousands(r.total / (span / 1e9)))) end
  w("\n")
  if r.lost_markers > 0 then
    local cpus = {}
    for cpu, n in pairs(r.lost_cpu) do cpus[#cpus + 1] = {cpu = cpu, n = n} end
    table.sort(cpus, function(a, b) return a.cpu < b.cpu end)
    local parts = {}
    for _, c in ipairs(cpus) do parts[#parts + 1] = ("cpu%d %s"):format(c.cpu, thousands(c.n)) end
    w(("lost events: %s in %d drop%s%s (%s)\n"):format(thousands(r.lost), r.lost_markers,
      r.lost_markers == 1 and "" or "s",
      r.lost_unknown > 0 and (", %d of them uncounted"):format(r.lost_unknown) or "",
      table.concat(parts, ", ")))
  else
    w("lost events: none reported by the ring\n")
  end
  w("\n")
  local keyw = 5
  for _, e in ipairs(r.by_type) do keyw = math.max(keyw, #e.key) end
  w(("%-" .. keyw .. "s %12s %7s\n"):format("event", "count", "share"))
  local shown = 0
  for _, e in ipairs(r.by_type) do
    shown = shown + 1
    if opts.top and shown > opts.top then
      w(("%-" .. keyw .. "s\n"):format(("... %d more types"):format(#r.by_type - opts.top)))
      break
    end
    w(("%-" .. keyw .. "s %12s %6.1f%%\n"):format(e.key, thousands(e.count),
                                                  100 * e.count / math.max(r.total, 1)))
  end
  local secs, step = r.per_second, r.step or 1
  if #secs > 0 then
    local width = opts.width or math.min(72, columns() - 8)
    local lo, hi = math.huge, 0
    for _, v in ipairs(secs) do
      if v < lo then lo = v end
      if v > hi then hi = v end
    end
    local nsec = r.seconds or #secs
    local per_col = math.ceil(#secs / width) * step
    w(("\nevents per second over %d s (%s..%s/s%s):\n"):format(nsec, thousands(lo / step),
      thousands(hi / step), per_col > 1 and (", %d s per column"):format(per_col) or ""))
    w("  ", M.sparkline(secs, width), "\n")
  end
end

--- Run the command.
-- @tparam {string,...} argv the arguments after `report`
-- @tparam[opt=io.stdout] file out
-- @tparam[opt=io.stderr] file errout
-- @treturn int exit code: 0 done, 1 the file could not be read, 2 bad usage
function M.main(argv, out, errout)
  out = out or io.stdout
  errout = errout or io.stderr
  local path, opts = cmdline.parse(argv, "kernellogger report",
    {html = "file", width = "count", top = "count", overwrite = "flag"}, M.usage, out, errout)
  if not path then return opts end
  if opts.html and (opts.width or opts.top) then
    errout:write(("kernellogger report: --%s is for the text summary, not --html\n"):format(
      opts.width and "width" or "top"), M.usage)
    return 2
  end
  if opts.html then
    local r, err, code = M.html(path, opts.html, {overwrite = opts.overwrite})
    if not r then
      errout:write(("kernellogger report: %s [%s]\n"):format(err, code))
      return 1
    end
    out:write(("%s: HTML report of %s (%.1f KB, %d events, %d CPU lane%s); open it in a " ..
      "browser\n"):format(opts.html, path, r.bytes / 1024, r.events, r.cpus,
      r.cpus == 1 and "" or "s"))
    return 0
  end
  local r, err, code = M.collect(path)
  if not r then
    errout:write(("kernellogger report: %s [%s]\n"):format(err, code))
    return 1
  end
  M.print(r, path, out, opts)
  return 0
end

return M
