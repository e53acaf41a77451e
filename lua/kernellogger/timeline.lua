--- The timeline of a capture, reduced to what a screen can show.
--
-- One pass over a Trace builds the model the HTML report draws
-- (`kernellogger.html`): what ran on each CPU (from context-switch events),
-- marks per event group, lost-event markers, event rates, and the tables
-- (processes, TCP connections, event types). Its size is bounded whatever the
-- size of the capture:
--
-- - time is cut into `BUCKETS` buckets per lane across the capture's span;
-- - CPU slices are kept exactly while there are at most `EXACT_SLICES` of them;
--   past that, a slice shorter than a bucket is merged into its bucket(s),
--   which keep their busy time and the process that ran longest in them
--   (slices of a bucket or longer stay exact: at most 2 × `BUCKETS` per CPU);
-- - marks are kept one by one (with their fields) for a group of at most
--   `EXACT_MARKS` events; the counts per bucket are always kept;
-- - lost-event markers are summed per CPU and bucket; rates have `RATE_BINS`
--   bins.
--
-- @module kernellogger.timeline
local tcp = require "kernellogger.tcp"

local M = {}

--- Buckets per lane across the capture's span.
M.BUCKETS = 4000
--- CPU slices kept exact before short ones are merged into buckets.
M.EXACT_SLICES = 50000
--- Marks kept one by one in an event group of at most this many events.
M.EXACT_MARKS = 1500
--- Bins of the events-per-second charts.
M.RATE_BINS = 240

--- Context-switch events: the fields that name the task leaving and the task
-- entering the CPU, and their names where the event carries them. One row
-- per capture format; nothing else in the report knows these names.
M.SWITCH = {
  ["sched:sched_switch"] = {prev = "prev_pid", next = "next_pid",
                            prev_comm = "prev_comm", next_comm = "next_comm"},
  ["Thread:CSwitch"] = {prev = "OldThreadId", next = "NewThreadId"},
}

-- Fields every event has: not repeated in a mark's label.
local COMMON = {name = true, system = true, time = true, cpu = true, pid = true, comm = true,
                common_flags = true, common_preempt_count = true, common_type = true}

-- The group of each event type: the flag whose tracepoints include it, else
-- a flag of the system's name (ETW task names such as "DiskIo"), else the system.
local function group_finder()
  local ok, kl = pcall(require, "kernellogger")
  local by_tp, order = {}, {}
  if ok then
    for i, f in ipairs(kl.flags()) do
      order[f.name] = i
      for _, tp in ipairs(f.tracepoints or {}) do by_tp[tp] = by_tp[tp] or f.name end
    end
  end
  local cache = {}
  return function(system, name)
    local key = system .. ":" .. name
    local g = cache[key]
    if g then return g end
    g = by_tp[key]
    if not g and ok then
      local f = kl.flag(system)
      g = f and f.name
    end
    g = g or (system == "" and "other" or system)
    cache[key] = g
    return g
  end, order
end

--- Can the report use this event? A damaged record (a capture with flipped
-- bits) may lack its time, CPU or name: such an event is skipped and counted
-- (`skipped`). A missing pid (the reader leaves out a negative one) is kept
-- as -1, an unknown task; a missing system as "" (lost-event markers have none).
-- @tparam table ev
-- @treturn bool
function M.usable(ev)
  return math.type(ev.time) == "integer" and math.type(ev.cpu) == "integer" and
         type(ev.name) == "string"
end

--- The system of an event, "" when the record has none.
-- @tparam table ev
-- @treturn string
function M.system(ev)
  return type(ev.system) == "string" and ev.system or ""
end

--- The pid of an event, or -1 when the record does not say.
-- @tparam table ev
-- @treturn int
function M.pid(ev)
  return math.tointeger(ev.pid) or -1
end

local function comm_of(v)
  return type(v) == "string" and v or nil
end

local Builder = {}
Builder.__index = Builder

local function new_builder(info, opts)
  opts = opts or {}
  local first, last = info.first_ts or 0, info.last_ts or 0
  local span = math.max(last - first, 1)
  local buckets = opts.buckets or M.BUCKETS
  local self = setmetatable({
    t0 = first, span = span, buckets = buckets,
    bw = math.max(1, -(-span // buckets)),
    exact_slices = opts.exact_slices or M.EXACT_SLICES,
    exact_marks = opts.exact_marks or M.EXACT_MARKS,
    rate_bins = opts.rate_bins or M.RATE_BINS,
    merged = false, nslices = 0,
    procs = {}, plist = {},          -- pid -> proc record, list in order of appearance
    cpus = {}, running = {},         -- cpu -> lane; cpu -> {pidx, since}
    cpu_first = {},                  -- cpu -> the time of its first event
    groups = {}, glist = {},
    types = {}, tlist = {},
    lost = {}, lost_total = 0, lost_markers = 0, lost_unknown = 0,
    events = 0, skipped = 0,
    tcp = tcp.new(),
  }, Builder)
  self.group_of, self.group_order = group_finder()
  return self
end

function Builder:proc(pid, comm)
  pid = math.tointeger(pid) or -1
  comm = comm_of(comm)
  local p = self.procs[pid]
  if not p then
    p = {idx = #self.plist, pid = pid, name = comm or (pid == 0 and "<idle>") or "?",
         cpu_ns = 0, slices = 0, events = 0}
    self.procs[pid] = p
    self.plist[#self.plist + 1] = p
  elseif comm and comm ~= "" and comm ~= "<...>" then
    p.name = comm
  end
  return p
end

function Builder:lane(cpu)
  local l = self.cpus[cpu]
  if not l then
    l = {cpu = cpu, slices = {}, busy = {}, by = {}}
    self.cpus[cpu] = l
  end
  return l
end

-- Spread [a, b) of process p over the lane's buckets.
function Builder:bucket_slice(l, p, a, b)
  local bw, t0 = self.bw, self.t0
  -- within the capture's span: a damaged time cannot make the loop run for ever
  local ra, rb = math.max(a - t0, 0), math.min(b - t0, self.span)
  local i = ra // bw
  while ra < rb do
    local e = math.min(rb, (i + 1) * bw)
    l.busy[i] = (l.busy[i] or 0) + (e - ra)
    local by = l.by[i]
    if not by then by = {}; l.by[i] = by end
    by[p] = (by[p] or 0) + (e - ra)
    ra = e
    i = i + 1
  end
end

-- From now on, slices shorter than a bucket are merged: move the ones kept so far.
function Builder:merge_short()
  self.merged = true
  local n = 0
  for _, l in pairs(self.cpus) do
    local keep = {}
    for _, s in ipairs(l.slices) do
      if s[2] - s[1] >= self.bw then keep[#keep + 1] = s
      else self:bucket_slice(l, s[3], s[1], s[2]) end
    end
    l.slices = keep
    n = n + #keep
  end
  self.nslices = n
end

function Builder:close_slice(cpu, p, a, b)
  if b <= a then return end
  p.cpu_ns = p.cpu_ns + (b - a)
  p.slices = p.slices + 1
  if p.pid == 0 then return end  -- the idle task: nothing ran
  local l = self:lane(cpu)
  if self.merged and b - a < self.bw then
    self:bucket_slice(l, p, a, b)
    return
  end
  l.slices[#l.slices + 1] = {a, b, p}
  self.nslices = self.nslices + 1
  if not self.merged and self.nslices > self.exact_slices then self:merge_short() end
end

function Builder:switch(ev, m)
  local cpu, t = ev.cpu, ev.time
  if not math.tointeger(ev[m.prev]) or not math.tointeger(ev[m.next]) then
    self.skipped = self.skipped + 1  -- a damaged switch: who ran is not known
    return
  end
  local prev = self:proc(ev[m.prev], m.prev_comm and ev[m.prev_comm])
  local nxt = self:proc(ev[m.next], m.next_comm and ev[m.next_comm])
  local r = self.running[cpu]
  if r then
    self:close_slice(cpu, r[1], r[2], t)
  else
    -- it ran since this CPU's first event at least (a ring that overwrote its
    -- oldest pages starts a CPU's stream later than the capture)
    self:close_slice(cpu, prev, self.cpu_first[cpu] or t, t)
  end
  self.running[cpu] = {nxt, t}
  self:lane(cpu)
end

local function label(ev)
  local keys = {}
  for k, v in pairs(ev) do
    if not COMMON[k] and type(v) ~= "table" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local parts = {}
  for i = 1, math.min(#keys, 8) do
    local v = ev[keys[i]]
    if type(v) == "string" and #v > 48 then v = v:sub(1, 45) .. "..." end
    if math.type(v) == "integer" and (v < -0x80000000 or v > 0xffffffff) then
      v = ("0x%x"):format(v)  -- an address or a 64-bit mask: hex reads better
    end
    parts[i] = keys[i] .. "=" .. tostring(v)
  end
  return table.concat(parts, " ")
end

function Builder:group(name)
  local g = self.groups[name]
  if not g then
    g = {name = name, count = 0, buckets = {}, marks = {}, rate = {}, lane = false}
    self.groups[name] = g
    self.glist[#self.glist + 1] = g
  end
  return g
end

function Builder:lost_marker(ev)
  self.lost_markers = self.lost_markers + 1
  local lost = math.tointeger(ev.lost) or -1
  if lost > 0 then self.lost_total = self.lost_total + ev.lost
  else self.lost_unknown = self.lost_unknown + 1 end
  local b = (ev.time - self.t0) // self.bw
  local key = ev.cpu * (self.buckets + 2) + b
  local e = self.lost[key]
  if not e then
    e = {b, ev.cpu, 0, 0}
    self.lost[key] = e
  end
  e[3] = e[3] + math.max(lost, 0)
  e[4] = e[4] + 1
  self.tcp:add(ev)
end

--- Take one event.
-- @tparam table ev an event table from `Trace:events`
function Builder:add(ev)
  if not M.usable(ev) then
    self.skipped = self.skipped + 1
    return
  end
  local name, system = ev.name, M.system(ev)
  if not self.cpu_first[ev.cpu] then self.cpu_first[ev.cpu] = ev.time end
  if name == "lost_events" then return self:lost_marker(ev) end
  self.events = self.events + 1
  local key = system .. ":" .. name
  local ty = self.types[key]
  if not ty then
    ty = {key = key, count = 0, group = self:group(self.group_of(system, name))}
    self.types[key] = ty
    self.tlist[#self.tlist + 1] = ty
    ty.idx = #self.tlist - 1
  end
  ty.count = ty.count + 1
  local p = self:proc(ev.pid, ev.comm)
  p.events = p.events + 1
  local g = ty.group
  g.count = g.count + 1
  local rel = ev.time - self.t0
  local rb = rel * self.rate_bins // self.span
  rb = math.max(0, math.min(rb, self.rate_bins - 1))
  g.rate[rb] = (g.rate[rb] or 0) + 1
  local m = M.SWITCH[key]
  if m then return self:switch(ev, m) end
  g.lane = true
  local b = rel // self.bw
  g.buckets[b] = (g.buckets[b] or 0) + 1
  local marks = g.marks
  if marks then
    if #marks >= self.exact_marks then
      g.marks = false
    else
      marks[#marks + 1] = {rel, ty.idx, p.idx, label(ev)}
    end
  end
  if system == "tcp" or name == "inet_sock_set_state" then self.tcp:add(ev) end
end

--- The model: plain tables ready to be encoded as JSON.
-- @treturn table
function Builder:finish(last)
  for cpu, r in pairs(self.running) do self:close_slice(cpu, r[1], r[2], last) end
  self.running = {}
  local m = {t0 = self.t0, span = self.span, bucket_ns = self.bw, buckets = self.buckets,
             rate_bins = self.rate_bins, rate_bin_ns = self.span / self.rate_bins,
             merged = self.merged}
  m.procs = {}
  for i, p in ipairs(self.plist) do m.procs[i] = {p.name, p.pid} end
  m.cpus = self:cpu_lanes()
  m.groups = self:group_lanes()
  m.types = {}
  for i, ty in ipairs(self.tlist) do m.types[i] = {ty.key, ty.count, ty.group.name} end
  m.lost = {}
  for _, e in pairs(self.lost) do m.lost[#m.lost + 1] = e end
  table.sort(m.lost, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  m.events, m.lost_total = self.events, self.lost_total
  m.lost_markers, m.lost_unknown = self.lost_markers, self.lost_unknown
  m.skipped = self.skipped
  m.tcp = self.tcp:result()
  return m
end

function Builder:cpu_lanes()
  local cpus = {}
  for cpu in pairs(self.cpus) do cpus[#cpus + 1] = cpu end
  table.sort(cpus)
  local out = {}
  for i, cpu in ipairs(cpus) do
    local l = self.cpus[cpu]
    table.sort(l.slices, function(a, b) return a[1] < b[1] end)
    local flat = {}
    for _, s in ipairs(l.slices) do
      flat[#flat + 1] = s[1] - self.t0
      flat[#flat + 1] = s[2] - s[1]
      flat[#flat + 1] = s[3].idx
    end
    local bk = {}
    for b in pairs(l.busy) do bk[#bk + 1] = b end
    table.sort(bk)
    local merged = {}
    for _, b in ipairs(bk) do
      local best, bt = nil, -1
      for p, ns in pairs(l.by[b]) do
        if ns > bt or (ns == bt and p.idx < best.idx) then best, bt = p, ns end
      end
      merged[#merged + 1] = b
      merged[#merged + 1] = best.idx
      merged[#merged + 1] = math.min(1000, l.busy[b] * 1000 // self.bw)
    end
    out[i] = {cpu = cpu, slices = flat, merged = merged}
  end
  return out
end

function Builder:group_lanes()
  local order = self.group_order
  local list = {}
  for _, g in ipairs(self.glist) do list[#list + 1] = g end
  table.sort(list, function(a, b)
    local oa, ob = order[a.name] or math.huge, order[b.name] or math.huge
    if oa ~= ob then return oa < ob end
    return a.name < b.name
  end)
  local out = {}
  for _, g in ipairs(list) do
    local bk = {}
    for b in pairs(g.buckets) do bk[#bk + 1] = b end
    table.sort(bk)
    local flat = {}
    for _, b in ipairs(bk) do
      flat[#flat + 1] = b
      flat[#flat + 1] = g.buckets[b]
    end
    local rate = {}
    for i = 0, self.rate_bins - 1 do rate[i + 1] = g.rate[i] or 0 end
    local marks
    if g.marks then
      marks = {}
      for i, mk in ipairs(g.marks) do marks[i] = mk end
    end
    out[#out + 1] = {name = g.name, count = g.count, lane = g.lane, buckets = flat,
                     marks = marks or false, rate = rate}
  end
  return out
end

--- Build the model of a trace in one pass.
-- @tparam Trace trace an open Trace (`kernellogger.open`)
-- @tparam[opt] table opts `buckets`, `exact_slices`, `exact_marks`, `rate_bins`
--   (the defaults are this module's fields)
-- @treturn table the model: `t0`, `span`, `bucket_ns`, `procs` ({name, pid}),
--   `cpus` (`cpu`, `slices` flat {start, duration, proc}, `merged` flat
--   {bucket, proc, busy ‰}), `groups`, `types` ({key, count, group}), `lost`
--   ({bucket, cpu, lost, markers}), `events`, `lost_total`, `lost_markers`,
--   `lost_unknown`, `skipped` (damaged records left out), `tcp` (a `kernellogger.tcp` result), `info`
function M.build(trace, opts)
  local info, err, code = trace:info()
  if not info then error(("%s [%s]"):format(err, code or "io"), 0) end
  local b = new_builder(info, opts)
  local last = info.first_ts or 0
  for ev in trace:events() do
    b:add(ev)
    if math.type(ev.time) == "integer" and ev.time > last then last = ev.time end
  end
  local m = b:finish(math.max(last, info.last_ts or last))
  m.info = info
  m.procs_stats = b.plist
  return m
end

return M
