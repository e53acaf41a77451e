--- `kernellogger export --chrome-json OUT FILE`: a capture in the Trace Event
-- Format, which Perfetto UI (ui.perfetto.dev) and chrome://tracing open.
--
-- The JSON object form: `{"traceEvents": [...], "displayTimeUnit": "ns",
-- "otherData": {...}}`. Timestamps (`ts`, `dur`) are microseconds since the
-- capture's first event, written with three decimals (every nanosecond kept);
-- the capture's own first timestamp is in `otherData.first_ts_ns`.
--
-- - One track per CPU (process "CPUs", thread "CPU n"): a complete event
--   (`"ph": "X"`) for each stretch a task ran, from context switches
--   (`kernellogger.timeline.SWITCH`; before a CPU's first switch, from its
--   first event); the idle task is left out, and the slices of a CPU never
--   overlap.
-- - Every other event is an instant (`"ph": "i"`, thread scope) on its task's
--   track, with its fields as `args`; lost-event markers are global instants
--   named `lost_events`.
-- - Process and thread names are metadata events (`"ph": "M"`).
--
-- @module kernellogger.export
local json = require "kernellogger.json"
local timeline = require "kernellogger.timeline"
local outfile = require "kernellogger.outfile"
local cmdline = require "kernellogger.cmdline"

local M = {}

--- The process id of the CPU tracks (not a real process).
M.CPUS_PID = 2147483646

M.usage = [[
usage: kernellogger export --chrome-json OUT [--overwrite] [--] FILE

Write a capture in the Trace Event Format (JSON) for Perfetto UI
(ui.perfetto.dev) and chrome://tracing: one track per CPU with what ran
there, every other event as an instant with its fields, names as metadata.

  --chrome-json OUT   the JSON file to write (atomically, mode 0600)
  --overwrite         replace OUT if it exists
  --                  what follows is FILE, even when it starts with '-'
]]

local COMMON = {name = true, system = true, time = true, cpu = true, pid = true, comm = true}

local function us(ns)
  return ("%d.%03d"):format(ns // 1000, ns % 1000)
end

-- The args object of an event: its fields (and its CPU). The field names of
-- each event type are listed and escaped once.
local function args_of(ev, keys_cache)
  local key = timeline.system(ev) .. ":" .. ev.name
  local keys = keys_cache[key]
  if not keys then
    local names = {}
    for k in pairs(ev) do
      if not COMMON[k] then names[#names + 1] = k end
    end
    names[#names + 1] = "cpu"
    table.sort(names)
    keys = {}
    for i, k in ipairs(names) do keys[i] = {k, json.string(k) .. ":"} end
    keys_cache[key] = keys
  end
  local out = {}
  for i, k in ipairs(keys) do
    local v = ev[k[1]]
    local ty = math.type(v)
    out[i] = k[2] .. (ty == "integer" and tostring(v) or
                      type(v) == "string" and json.string(v) or json.encode(v))
  end
  return "{" .. table.concat(out, ",") .. "}"
end

local Writer = {}
Writer.__index = Writer

function Writer:emit(s)
  local f = self.f
  if self.n > 0 then f:write(",\n", s) else f:write(s) end
  self.n = self.n + 1
end

function Writer:slice(cpu, r, t)
  local pid = r[1]
  if pid == 0 or t < r[2] then return end
  local a, b = r[2] - self.t0, t - self.t0
  local name = self.names[pid] or ("pid " .. pid)
  self:emit(('{"ph":"X","pid":%d,"tid":%d,"ts":%s,"dur":%s,"name":%s,"cat":"cpu",' ..
    '"args":{"pid":%d,"comm":%s}}'):format(M.CPUS_PID, cpu, us(a), us(b - a),
    json.string(name), pid, json.string(name)))
  self.slices = self.slices + 1
end

function Writer:switch(ev, m)
  local prev, nxt = math.tointeger(ev[m.prev]), math.tointeger(ev[m.next])
  if not prev or not nxt then
    self.skipped = self.skipped + 1  -- a damaged switch: who ran is not known
    return
  end
  if m.prev_comm and type(ev[m.prev_comm]) == "string" then self.names[prev] = ev[m.prev_comm] end
  if m.next_comm and type(ev[m.next_comm]) == "string" then self.names[nxt] = ev[m.next_comm] end
  -- before its first switch, a CPU ran the outgoing task since its first event at least
  local r = self.running[ev.cpu] or {prev, self.cpu_first[ev.cpu] or ev.time}
  self:slice(ev.cpu, r, ev.time)
  self.running[ev.cpu] = {nxt, ev.time}
  self.cpus[ev.cpu] = true
end

function Writer:add(ev)
  if not timeline.usable(ev) then
    self.skipped = self.skipped + 1
    return
  end
  local name = ev.name
  if not self.cpu_first[ev.cpu] then self.cpu_first[ev.cpu] = ev.time end
  if name == "lost_events" then
    self.cpus[ev.cpu] = true
    self:emit(('{"ph":"i","s":"g","pid":%d,"tid":%d,"ts":%s,"name":"lost_events",' ..
      '"cat":"lost","args":{"lost":%d,"cpu":%d}}'):format(M.CPUS_PID, ev.cpu,
      us(ev.time - self.t0), math.tointeger(ev.lost) or -1, ev.cpu))
    self.instants = self.instants + 1
    return
  end
  local pid = timeline.pid(ev)
  local comm = ev.comm
  if type(comm) == "string" and comm ~= "" and comm ~= "<...>" then self.names[pid] = comm end
  self.seen[pid] = true
  local system = timeline.system(ev)
  local m = timeline.SWITCH[system .. ":" .. name]
  if m then return self:switch(ev, m) end
  self:emit(('{"ph":"i","s":"t","pid":%d,"tid":%d,"ts":%s,"name":%s,"cat":%s,"args":%s}')
    :format(pid, pid, us(ev.time - self.t0), json.string(name), json.string(system),
            args_of(ev, self.keys)))
  self.instants = self.instants + 1
end

function Writer:metadata()
  local function meta(ph_name, pid, tid, args)
    self:emit(('{"ph":"M","name":%s,"pid":%d,"tid":%d,"args":%s}'):format(
      json.string(ph_name), pid, tid, json.encode(json.object(args))))
  end
  meta("process_name", M.CPUS_PID, 0, {name = "CPUs"})
  meta("process_sort_index", M.CPUS_PID, 0, {sort_index = -1})
  local cpus = {}
  for c in pairs(self.cpus) do cpus[#cpus + 1] = c end
  table.sort(cpus)
  for _, c in ipairs(cpus) do
    meta("thread_name", M.CPUS_PID, c, {name = ("CPU %d"):format(c)})
    meta("thread_sort_index", M.CPUS_PID, c, {sort_index = c})
  end
  local pids = {}
  for p in pairs(self.seen) do pids[#pids + 1] = p end
  table.sort(pids)
  for _, p in ipairs(pids) do
    local name = self.names[p] or ("pid " .. p)
    meta("process_name", p, p, {name = name})
    meta("thread_name", p, p, {name = name})
  end
end

local function write_trace(trace, f, file)
  local info, err, code = trace:info()
  if not info then error(("%s [%s]"):format(err, code or "io"), 0) end
  local w = setmetatable({f = f, n = 0, t0 = info.first_ts or 0, names = {[0] = "<idle>"},
                          running = {}, cpus = {}, seen = {}, slices = 0, instants = 0, keys = {},
                          cpu_first = {}, skipped = 0},
                         Writer)
  f:write('{"displayTimeUnit":"ns","otherData":', json.encode(json.object{
    source = file, format = info.format, cpus = info.cpus, clock = info.clock,
    first_ts_ns = info.first_ts, last_ts_ns = info.last_ts,
    writer = "kernellogger export"}), ',\n"traceEvents":[\n')
  local last = w.t0
  for ev in trace:events() do
    w:add(ev)
    if math.type(ev.time) == "integer" and ev.time > last then last = ev.time end
  end
  last = math.max(last, info.last_ts or last)
  local cpus = {}
  for c in pairs(w.running) do cpus[#cpus + 1] = c end
  table.sort(cpus)
  for _, c in ipairs(cpus) do w:slice(c, w.running[c], last) end
  w:metadata()
  -- the records left out, after the events: the count is known only now
  f:write('\n],\n"skipped_records":', tostring(w.skipped), '}\n')
  return {events = w.n, slices = w.slices, instants = w.instants, skipped = w.skipped}
end

-- The options of `chrome_json`, with their kinds (`outfile.check_args`).
local OPTIONS = {overwrite = "boolean", title = "name"}

--- Write a capture as Trace Event Format JSON.
-- @tparam Trace|string trace an open Trace, or a capture file's path
-- @string path the JSON file (written atomically, mode 0600; a symbolic link
--   or folder there is refused)
-- @tparam[opt] table opts `overwrite` (boolean), `title` (the capture's name in
--   `otherData.source`; default its path); another key or a wrong type raises
-- @treturn[1] table `events` (written), `slices`, `instants`, `skipped`
--   (damaged records left out)
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.chrome_json(trace, path, opts)
  local name
  name, opts = outfile.check_args("kernellogger.export.chrome_json", trace, path, opts,
                                  OPTIONS)
  return outfile.with_trace(trace, path, opts, function(t)
    local stats
    local ok, err, code = outfile.write(path, function(f)
      stats = write_trace(t, f, opts.title or name)
    end, opts)
    if not ok then return nil, err, code end
    return stats
  end)
end

--- Run the command.
-- @tparam {string,...} argv the arguments after `export`
-- @tparam[opt=io.stdout] file out
-- @tparam[opt=io.stderr] file errout
-- @treturn int exit code: 0 done, 1 failed, 2 bad usage
function M.main(argv, out, errout)
  out = out or io.stdout
  errout = errout or io.stderr
  local path, opts = cmdline.parse(argv, "kernellogger export",
    {["chrome-json"] = "file", overwrite = "flag"}, M.usage, out, errout)
  if not path then return opts end
  local dest = opts["chrome-json"]
  if not dest then
    errout:write(M.usage)
    return 2
  end
  local r, err, code = M.chrome_json(path, dest, {overwrite = opts.overwrite})
  if not r then
    errout:write(("kernellogger export: %s [%s]\n"):format(err, code))
    return 1
  end
  out:write(("%s: %d trace events (%d CPU slices, %d instants)\n"):format(dest, r.events,
    r.slices, r.instants))
  return 0
end

return M
