--- Named recording profiles: which kernel event groups to record, and buffers
-- sized so that the profile loses no events at ordinary load.
--
-- The built-ins carry the names users already know from TraceEvent
-- (Default, ThreadTime, OS, Verbose), xperf (Base, Network, Diag, Latency,
-- FileIO) and WPR (GeneralProfile, CPU, DiskIO, FileIO, Network).
-- Every built-in has a qualified name `origin.Name` ("xperf.FileIO",
-- "wpr.FileIO"); a bare name works when it is unambiguous, and the two names
-- that both xperf and WPR use (FileIO, Network) resolve bare to WPR's
-- profile, the tool Microsoft maintains today: use "xperf.FileIO" or
-- "xperf.Network" for xperf's group.  Names are case-insensitive.
--
--    local P = require "kernellogger.profiles"
--    local p = P.get "cpu" + P.get "network"        -- union of both
--    local q = p { circular_mb = 256 }               -- same, with an override
--    kl.start { profile = q, file = "x.dat" }
--
-- Sizing reasoning and measured rates: docs/profiles.md.
-- @module kernellogger.profiles
local M = {}

local Profile = {}
Profile.__index = Profile
Profile.__name = "kernellogger.Profile"

-- Start options a profile may carry besides its flags.  Numbers combine by
-- max (more room is never worse), except flush_timer (sooner is safer).
local NUMERIC = { "buffer_kb", "min_buffers", "max_buffers", "circular_mb",
                  "max_mb", "flush_timer" }
local OTHER = { clock = "string", stacks = "boolean", realtime = "boolean" }
local SPEC_KEYS = { name = "string", description = "string", flags = "table",
                    include = "table", origin = "string" }
for _, k in ipairs(NUMERIC) do SPEC_KEYS[k] = "number" end
for k, t in pairs(OTHER) do SPEC_KEYS[k] = t end

local registry = {}      -- lowercase name -> Profile (qualified and bare)
local builtin_order = {} -- Profiles in listing order
local user_order = {}

local function lower(s) return (s:lower()) end

local function copy_list(t)
  local r = {}
  for i = 1, #t do r[i] = t[i] end
  return r
end

local function union(a, b)
  local r, seen = {}, {}
  for _, list in ipairs { a, b } do
    for _, f in ipairs(list) do
      local k = type(f) == "string" and lower(f) or f
      if not seen[k] then seen[k] = true; r[#r + 1] = f end
    end
  end
  return r
end

local function is_profile(v) return getmetatable(v) == Profile end

local function valid_names()
  local names = {}
  for _, p in ipairs(builtin_order) do names[#names + 1] = p.origin .. "." .. p.name end
  for _, p in ipairs(user_order) do names[#names + 1] = p.name end
  return table.concat(names, ", ")
end

-- `level` is passed to error() so that the message points at the caller of
-- the public function that received the bad argument.
-- `what` says where the value came from: { fn = "start", arg = 1, field = "profile" }
local function badarg(what, detail, level)
  local field = what.field and (what.field .. ": ") or ""
  error(("bad argument #%d to '%s' (%s%s)"):format(what.arg or 1, what.fn, field, detail),
    level + 1)
end

local new_profile -- forward

-- Turn a name, a Profile or a plain table into a Profile.
local function coerce(v, what, level)
  if is_profile(v) then return v end
  if type(v) == "string" then
    local p = registry[lower(v)]
    if not p then
      badarg(what, ("unknown profile '%s'; valid profiles: %s"):format(v, valid_names()),
        level + 1)
    end
    return p
  end
  if type(v) == "table" then return new_profile(v, what, level + 1) end
  badarg(what, ("profile expected (a name, a profile or a table), got %s"):format(type(v)),
    level + 1)
end

-- Build a Profile from a plain table: {flags=..., include={...}, buffer_kb=..., ...}
-- The array part of the table lists profiles to include, like `include`.
function new_profile(spec, what, level)
  level = (level or 1) + 1
  what = what or { fn = "new" }
  local p = setmetatable({ flags = {}, options = {}, description = "" }, Profile)
  local includes = {}
  for k, v in pairs(spec) do
    if math.type(k) == "integer" then
      includes[#includes + 1] = v
    elseif SPEC_KEYS[k] == nil then
      badarg(what, ("unknown profile field '%s'"):format(tostring(k)), level)
    elseif type(v) ~= SPEC_KEYS[k] then
      badarg(what, ("field '%s' must be a %s, got %s"):format(k, SPEC_KEYS[k], type(v)), level)
    end
  end
  for _, v in ipairs(spec.include or {}) do includes[#includes + 1] = v end
  for _, v in ipairs(includes) do
    p = p + coerce(v, { fn = what.fn, arg = what.arg, field = "include" }, level)
  end
  if spec.flags then
    for i, f in ipairs(spec.flags) do
      if type(f) ~= "string" then
        badarg(what, ("flags[%d] must be a string, got %s"):format(i, type(f)), level)
      end
    end
    p.flags = union(p.flags, spec.flags)
  end
  for _, k in ipairs(NUMERIC) do
    local v = spec[k]
    if v ~= nil then
      if v < 0 or v ~= math.floor(v) or math.tointeger(v) == nil then -- NaN, inf
        badarg(what, ("field '%s' must be a whole number >= 0"):format(k), level)
      end
      p.options[k] = math.tointeger(v)
    end
  end
  for k in pairs(OTHER) do
    if spec[k] ~= nil then p.options[k] = spec[k] end
  end
  p.name = spec.name or p.name or "custom"
  p.description = spec.description or p.description or ""
  p.origin = spec.origin or (spec.name and "user") or p.origin or "user"
  return p
end

--- Combine two profiles: the union of their flags, the larger of each buffer
-- setting (the smaller flush timer).  Either side may be a name or a table.
function Profile.__add(a, b)
  a = coerce(a, { fn = "__add", arg = 1 }, 2)
  b = coerce(b, { fn = "__add", arg = 2 }, 2)
  local p = setmetatable({ flags = union(a.flags, b.flags), options = {} }, Profile)
  for _, k in ipairs(NUMERIC) do
    local x, y = a.options[k], b.options[k]
    if x and y then
      p.options[k] = (k == "flush_timer") and math.min(x, y) or math.max(x, y)
    else
      p.options[k] = x or y
    end
  end
  for k in pairs(OTHER) do
    local x, y = a.options[k], b.options[k]
    if type(x) == "boolean" or type(y) == "boolean" then
      p.options[k] = (x or y) or nil
    else
      p.options[k] = (y ~= nil) and y or x
    end
  end
  local an, bn = a.name or "custom", b.name or "custom"
  if #a.flags == 0 and next(a.options) == nil and an == "custom" then an = nil end
  p.name = an and (an .. "+" .. bn) or bn
  p.description = (a.description ~= "" and b.description ~= "")
    and (a.description .. "; " .. b.description) or (a.description .. b.description)
  p.origin = "composite"
  return p
end

--- A copy with some fields replaced: `p:with{ circular_mb = 64 }` or `p{...}`.
-- `flags` replaces the flag list; to add flags use `p + { flags = {...} }`.
-- @tparam table overrides profile fields (see `define`)
-- @treturn Profile
function Profile:with(overrides)
  if type(overrides) ~= "table" then
    error(("bad argument #1 to 'with' (table expected, got %s)"):format(type(overrides)), 2)
  end
  local spec = { name = self.name, description = self.description,
                 origin = self.origin, flags = copy_list(self.flags) }
  for k, v in pairs(self.options) do spec[k] = v end
  for k, v in pairs(overrides) do
    if math.type(k) == "integer" then
      error("bad argument #1 to 'with' (overrides are named fields; use + to add profiles)", 2)
    end
    spec[k] = v
  end
  return new_profile(spec, { fn = "with" }, 2)
end
Profile.__call = Profile.with

function Profile.__eq(a, b)
  if #a.flags ~= #b.flags then return false end
  for i = 1, #a.flags do if lower(a.flags[i]) ~= lower(b.flags[i]) then return false end end
  for _, k in ipairs(NUMERIC) do if a.options[k] ~= b.options[k] then return false end end
  for k in pairs(OTHER) do if a.options[k] ~= b.options[k] then return false end end
  return true
end

function Profile:__tostring()
  return ("profile %s: %s"):format(self.name, table.concat(self.flags, ","))
end

-- The flag table of the core, as name -> entry, with aliases folded in.
local flag_index_cache
local function flag_index()
  if flag_index_cache then return flag_index_cache end
  local core = require "kernellogger.core"
  local idx = {}
  for k, f in pairs(core.flags()) do
    if type(f) == "table" then
      local name = f.name or k
      local entry = { name = name, supported = f.supported ~= false, note = f.note }
      idx[lower(name)] = entry
      for _, a in ipairs(f.aliases or {}) do idx[lower(a)] = entry end
    end
  end
  flag_index_cache = idx
  return idx
end

--- What the profile resolves to on this machine.
-- @treturn table `{ flags = {supported canonical names}, unsupported = {...},
--   unknown = {...}, tracepoints = {raw "system:event" names}, options = {...} }`
function Profile:resolve()
  local idx = flag_index()
  local r = { flags = {}, unsupported = {}, unknown = {}, tracepoints = {}, options = {} }
  local seen = {}
  for _, f in ipairs(self.flags) do
    local e = idx[lower(f)]
    local key = e and e.name or f
    if not seen[key] then
      seen[key] = true
      if e then
        local list = e.supported and r.flags or r.unsupported
        list[#list + 1] = e.name
      elseif f:find(":", 1, true) then
        r.tracepoints[#r.tracepoints + 1] = f
      else
        r.unknown[#r.unknown + 1] = f
      end
    end
  end
  for k, v in pairs(self.options) do r.options[k] = v end
  return r
end

--- Look a profile up by name (case-insensitive), or coerce a table.
-- Raises an argument error listing the valid names when the name is unknown.
-- @param p a name, a Profile or a plain table
-- @treturn Profile
function M.get(p)
  return coerce(p, { fn = "get" }, 2)
end

--- Register a user profile so that it can be named in `start{profile=...}`.
-- @string name the profile's name (case-insensitive; may not shadow a built-in)
-- @tparam table spec `flags`, `include` (profiles to merge), `description`, and
--   any of `buffer_kb`, `min_buffers`, `max_buffers`, `circular_mb`, `max_mb`,
--   `flush_timer`, `clock`, `stacks`, `realtime`.  A Profile works too.
-- @treturn Profile
function M.define(name, spec)
  if type(name) ~= "string" or name == "" then
    error(("bad argument #1 to 'define' (non-empty string expected, got %s)")
      :format(type(name)), 2)
  end
  if is_profile(spec) then
    spec = { include = { spec } }
  elseif type(spec) ~= "table" then
    error(("bad argument #2 to 'define' (table expected, got %s)"):format(type(spec)), 2)
  end
  local key = lower(name)
  local old = registry[key]
  if old and old.origin ~= "user" then
    error(("bad argument #1 to 'define' (profile '%s' is built in; choose another name)")
      :format(name), 2)
  end
  local s = {}
  for k, v in pairs(spec) do s[k] = v end
  s.name, s.origin = name, "user"
  local p = new_profile(s, { fn = "define", arg = 2 }, 2)
  registry[key] = p
  if old then
    for i, q in ipairs(user_order) do if q == old then user_order[i] = p end end
  else
    user_order[#user_order + 1] = p
  end
  return p
end

--- Remove a user profile (built-ins stay).  Returns true if it existed.
function M.undefine(name)
  local key = lower(name)
  local p = registry[key]
  if not p or p.origin ~= "user" then return false end
  registry[key] = nil
  for i, q in ipairs(user_order) do
    if q == p then table.remove(user_order, i); break end
  end
  return true
end

--- Every profile with its description and what it resolves to here.
-- @treturn {table,...} entries `{ name, aliases, origin, description, flags,
--   resolved, unsupported, options }` in listing order (built-ins first)
function M.list()
  local out = {}
  local aliases = {}
  for k, p in pairs(registry) do
    local own = (p.origin == "user") and lower(p.name) or lower(p.origin .. "." .. p.name)
    if k ~= own then
      aliases[p] = aliases[p] or {}
      table.insert(aliases[p], k)
    end
  end
  local function add(p)
    local r = p:resolve()
    local al = aliases[p] or {}
    table.sort(al)
    out[#out + 1] = { name = p.name, aliases = al, origin = p.origin,
                      description = p.description, flags = copy_list(p.flags),
                      resolved = r.flags, unsupported = r.unsupported,
                      tracepoints = r.tracepoints, options = r.options, profile = p }
  end
  for _, p in ipairs(builtin_order) do add(p) end
  for _, p in ipairs(user_order) do add(p) end
  return out
end

--- Merge a profile into start options.  Explicit options win over the
-- profile's sizing; `flags` given beside a profile are added to its flags.
-- Flags the platform cannot serve are dropped (listed in the third result).
-- @tparam table opts start options with a `profile` field
-- @treturn table new options without `profile`
-- @treturn Profile the resolved profile
-- @treturn {string,...} flags skipped on this platform
function M.apply(opts)
  -- level 3: these errors are reported at the caller of kernellogger.start
  local p = coerce(opts.profile, { fn = "start", field = "profile" }, 3)
  local r = p:resolve()
  if #r.unknown > 0 then
    badarg({ fn = "start", field = "profile" },
      ("profile '%s' has an unknown flag '%s'"):format(p.name, r.unknown[1]), 3)
  end
  local out = {}
  for k, v in pairs(opts) do if k ~= "profile" then out[k] = v end end
  for k, v in pairs(r.options) do if out[k] == nil then out[k] = v end end
  -- with a sequential file the ring bound is max_mb, not circular_mb
  if opts.max_mb ~= nil and opts.circular_mb == nil then out.circular_mb = nil end
  if (opts.realtime and opts.circular_mb == nil) then out.circular_mb = nil end
  local flags = union(r.flags, r.tracepoints)
  local extra = opts.flags
  if type(extra) == "string" then
    local t = {}
    for f in extra:gmatch("[^,%s]+") do t[#t + 1] = f end
    extra = t
  end
  if type(extra) == "table" then
    flags = union(flags, extra)
  elseif extra ~= nil then
    error(("bad argument #1 to 'start' (flags: a %s cannot be added to a profile's flags; "
      .. "give a list of names)"):format(type(extra)), 3)
  end
  out.flags = flags
  return out, p, r.unsupported
end

-- ------------------------------------------------------------------ --
-- Built-ins.  Flags use the canonical names of csrc/flags.c.  Sizing is
-- explained, with the rates measured for it, in docs/profiles.md; four load
-- classes by the busiest rate measured (2 CPUs, Linux ring bytes):
--   light    process/image/network lifecycles        ~0.02 MB/s
--   medium   disk I/O, faults, interrupts             ~0.1-0.4 MB/s
--   heavy    context switches and wakeups             ~0.7 MB/s
--   syscall  file I/O and memory system calls        ~4.5-12 MB/s
-- buffer_kb x max_buffers is the kernel memory of the ring on both
-- platforms (4, 16, 32, 64 MB); buffer_kb is the ETW buffer and the ftrace
-- sub-buffer.  circular_mb is how much of the newest data a circular file
-- keeps on disk (Linux streams file sessions; docs/profiles.md).
-- ------------------------------------------------------------------ --
local SIZE = {
  light   = { buffer_kb = 4,  min_buffers = 256, max_buffers = 1024, circular_mb = 16,
              flush_timer = 1 },
  medium  = { buffer_kb = 16, min_buffers = 256, max_buffers = 1024, circular_mb = 64,
              flush_timer = 1 },
  heavy   = { buffer_kb = 64, min_buffers = 128, max_buffers = 512,  circular_mb = 256,
              flush_timer = 1 },
  syscall = { buffer_kb = 64, min_buffers = 256, max_buffers = 1024, circular_mb = 512,
              flush_timer = 1 },
}

local function builtin(origin, name, class, description, flags)
  local spec = { name = name, origin = origin, description = description, flags = flags }
  for k, v in pairs(SIZE[class]) do spec[k] = v end
  local p = new_profile(spec, { fn = "builtin" }, 1)
  p.load = class
  builtin_order[#builtin_order + 1] = p
  local q = lower(origin .. "." .. name)
  assert(not registry[q], q)
  registry[q] = p
  return p
end

local PROC_THREAD = { "process", "thread" }
local function cat(...)
  local r = {}
  for _, l in ipairs { ... } do r = union(r, l) end
  return r
end

-- TraceEvent's KernelTraceEventParser.Keywords groups
local te_default = cat(PROC_THREAD, { "image_load", "process_counters", "disk_io",
  "disk_file_io", "disk_io_init", "hard_faults", "tcpip", "profile" })
builtin("TraceEvent", "Default", "medium",
  "TraceEvent's Default keywords: processes, threads, images, disk I/O, hard faults, "
  .. "TCP/IP, CPU samples", te_default)
builtin("TraceEvent", "ThreadTime", "heavy",
  "TraceEvent's ThreadTime: Default plus context switches and ready-thread (wakeups), "
  .. "for blocked time", cat(te_default, { "cswitch", "dispatcher" }))
builtin("TraceEvent", "OS", "medium",
  "TraceEvent's OS keywords: ALPC, DPCs (softirqs), drivers, interrupts, split I/O",
  { "alpc", "dpc", "driver", "interrupt", "split_io" })
builtin("TraceEvent", "Verbose", "syscall",
  "TraceEvent's Verbose: ThreadTime plus file I/O, all page faults, registry, "
  .. "virtual memory (no system calls)",
  cat(te_default, { "cswitch", "dispatcher", "file_io", "file_io_init", "page_faults",
    "registry", "virtual_alloc", "vamap" }))

-- xperf's kernel groups (xperf -providers KG); MEMINFO, MEMINFO_WS and
-- COMPACT_CSWITCH have no flag of their own and are left out.
local xp_base = cat(PROC_THREAD, { "image_load", "disk_io", "hard_faults" })
builtin("xperf", "Base", "medium",
  "xperf's Base group: processes, threads, images, disk I/O, hard faults, CPU samples",
  cat(xp_base, { "profile" }))
builtin("xperf", "Network", "light",
  "xperf's Network group: processes, threads, images and TCP/IP",
  cat(PROC_THREAD, { "image_load", "tcpip" }))
builtin("xperf", "Diag", "heavy",
  "xperf's Diag group: Base without samples, plus DPCs, interrupts, context switches, "
  .. "process counters", cat(xp_base, { "dpc", "interrupt", "cswitch", "process_counters" }))
builtin("xperf", "Latency", "heavy",
  "xperf's Latency group: Base plus DPCs, interrupts and context switches",
  cat(xp_base, { "dpc", "interrupt", "cswitch", "profile" }))
builtin("xperf", "FileIO", "syscall",
  "xperf's FileIO group: Base without samples, plus file I/O and its initiation",
  cat(xp_base, { "file_io", "file_io_init" }))

-- WPR's built-in profiles, kernel (SystemProvider) keywords only: their
-- user-mode providers are not kernel-logger flags.
local wpr_cpu = cat(PROC_THREAD, { "image_load", "cswitch", "dispatcher", "profile",
  "dpc", "interrupt" })
local wpr_disk = cat(PROC_THREAD, { "image_load", "disk_io", "disk_io_init",
  "disk_file_io", "hard_faults" })
local wpr_file = cat(PROC_THREAD, { "image_load", "file_io", "file_io_init",
  "disk_file_io", "hard_faults" })
builtin("WPR", "GeneralProfile", "syscall",
  "WPR's GeneralProfile (first-level triage): CPU, disk and file I/O, memory",
  cat(wpr_cpu, wpr_disk, wpr_file, { "virtual_alloc" }))
builtin("WPR", "CPU", "heavy",
  "WPR's CPU profile: context switches, ready-thread, CPU samples, DPCs, interrupts",
  wpr_cpu)
builtin("WPR", "DiskIO", "medium",
  "WPR's DiskIO profile: disk I/O with its initiation, file names, hard faults", wpr_disk)
builtin("WPR", "FileIO", "syscall",
  "WPR's FileIO profile: file I/O with its initiation, file names, hard faults", wpr_file)
builtin("WPR", "Network", "light",
  "WPR's Network profile: TCP/IP with process, thread and image context",
  cat(PROC_THREAD, { "image_load", "tcpip" }))

-- Bare names: unique ones map to their only owner; FileIO and Network are in
-- both xperf and WPR and resolve bare to WPR (see the module comment).
do
  local bare = {}
  for _, p in ipairs(builtin_order) do
    local k = lower(p.name)
    bare[k] = bare[k] or {}
    table.insert(bare[k], p)
  end
  for k, ps in pairs(bare) do
    local pick = ps[1]
    for _, p in ipairs(ps) do if p.origin == "WPR" then pick = p end end
    registry[k] = pick
  end
end

M.Profile = Profile
M.new = function(spec) return new_profile(spec, { fn = "new" }, 2) end
M.is_profile = is_profile
-- for tests: forget the cached flag table
M._reset_cache = function() flag_index_cache = nil end

return M
