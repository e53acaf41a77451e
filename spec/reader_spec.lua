-- Reading captures back: kernellogger.open(), Trace:info(), Trace:events{}.
-- Every event of every file is compared field by field with the reference
-- decoder, `trace-cmd report -R -t` (raw fields, nanosecond timestamps).
local H = require "helpers"
local kl = require "kernellogger"

local TESTDATA = "spec/fixtures/tracedat/"
local SAMPLES = {"trappy_trace_idle.dat", "trappy_raw_trace.dat", "trappy_trace.dat"}

local HEADER = {name = true, system = true, time = true, cpu = true, pid = true, comm = true,
                lost = true}

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

-- ---------------------------------------------------------------- --
-- The reference: trace-cmd report -R -t                              --
-- ---------------------------------------------------------------- --

--- The events of `file` as trace-cmd prints them: a list of
-- {comm, pid, cpu, time, name, rest} and {lost = N|-1, cpu} entries, or
-- nil and the line that could not be parsed.
local function reference_once(file)
  local p = assert(io.popen("trace-cmd report -R -t -i " .. H.q(file) .. " 2>/dev/null"))
  local out, bad = {}, nil
  for line in p:lines() do
    local cpu, n = line:match("^CPU:(%d+) %[(%d+) EVENTS DROPPED%]$")
    if not cpu then cpu = line:match("^CPU:(%d+) %[EVENTS DROPPED%]$"); n = cpu and "-1" end
    if cpu then
      out[#out + 1] = {lost = tonumber(n), cpu = tonumber(cpu)}
    elseif not bad and not line:match("^cpus=%d+$") and (line ~= "" or out[#out]) then
      local comm, pid, c, s, ns, name, rest =
        line:match("^%s*(.-)%-(%d+)%s+%[(%d+)%]%s+(%d+)%.(%d+): (%S+):%s*(.*)$")
      if comm then
        out[#out + 1] = {comm = comm, pid = tonumber(pid), cpu = tonumber(c),
                         time = tonumber(s) * 1000000000 + tonumber((ns .. "000000000"):sub(1, 9)),
                         name = name, rest = " " .. rest}
      elseif out[#out] and out[#out].rest then
        -- a string field with a newline inside continues on the next line
        out[#out].rest = out[#out].rest .. "\n" .. line
      else
        bad = line
      end
    end
  end
  p:close()
  if bad then return nil, bad end
  return out
end

--- The reference events of `file`.  trace-cmd report 3.1.6 has, rarely and
-- only on a loaded machine, printed a run without its usual layout (seen
-- once: "[003]7615709442088:"); such a run is read again, twice at most,
-- rather than taken as a difference of ours.
local function reference(file)
  local out, bad
  for _ = 1, 3 do
    out, bad = reference_once(file)
    if out then return out end
  end
  error("cannot parse trace-cmd line: " .. tostring(bad))
end

--- Split trace-cmd's " a=1 b=x y" into values, anchored on the field names
-- we decoded (values may contain spaces).
local function split_fields(rest, names)
  local at = {}
  for _, n in ipairs(names) do
    local s, e = rest:find(" " .. n .. "=", 1, true)
    if s then at[#at + 1] = {name = n, s = s, e = e} end
  end
  table.sort(at, function(a, b) return a.s < b.s end)
  local vals = {}
  for i, a in ipairs(at) do
    local stop = at[i + 1] and at[i + 1].s - 1 or #rest
    vals[a.name] = rest:sub(a.e + 1, stop)
  end
  return vals, #at
end

local function udec(v)  -- unsigned decimal of a 64-bit integer
  if v >= 0 then return ("%d"):format(v) end
  local q = (v >> 1) // 5
  return ("%d%d"):format(q, v - q * 10)
end

local function bytes_of(s)  -- "ARRAY[7f, 00]" -> {0x7f, 0}
  local inner = s:match("^ARRAY%[(.*)%]$")
  if not inner then return nil end
  local b = {}
  for h in inner:gmatch("%x%x") do b[#b + 1] = tonumber(h, 16) end
  return b
end

local function v4_bytes(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then return {tonumber(a), tonumber(b), tonumber(c), tonumber(d)} end
end

local function ip_bytes(text)  -- "127.0.0.1" or IPv6 text -> bytes
  local quad = v4_bytes(text)
  if quad then return quad end
  local head, tail = text, ""
  if text:find("::", 1, true) then head, tail = text:match("^(.-)::(.*)$") end
  local function groups(s)
    local g = {}
    for part in s:gmatch("[^:]+") do
      local v4 = v4_bytes(part)
      if v4 then
        g[#g + 1] = v4[1] * 256 + v4[2]
        g[#g + 1] = v4[3] * 256 + v4[4]
      else
        g[#g + 1] = tonumber(part, 16)
      end
    end
    return g
  end
  local hg, tg = groups(head), groups(tail)
  local all = {}
  for _, v in ipairs(hg) do all[#all + 1] = v end
  for _ = 1, 8 - #hg - #tg do all[#all + 1] = 0 end
  for _, v in ipairs(tg) do all[#all + 1] = v end
  local out = {}
  for _, v in ipairs(all) do
    out[#out + 1] = v >> 8
    out[#out + 1] = v & 255
  end
  return out
end

local function array_bytes(t)  -- our array -> little-endian bytes, guessing element size
  local out = {}
  for _, v in ipairs(t) do out[#out + 1] = v end
  return out
end

local function same_bytes(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function contains(hay, needle, at)
  for i = 1, #needle do if hay[at + i] ~= needle[i] then return false end end
  return true
end

--- Does our value `v` (field `name` of event `ev`) say what trace-cmd printed?
local function matches(ev, name, v, e)
  e = e:gsub("^%s+", ""):gsub("%s+$", "")
  if math.type(v) == "integer" then
    if e == ("%d"):format(v) or e == udec(v) then return true end
    for _, bits in ipairs{8, 16, 32} do  -- narrow fields printed with their C type
      local m = v & ((1 << bits) - 1)
      if e == ("%d"):format(m) then return true end
      local sm = m >= (1 << (bits - 1)) and m - (1 << bits) or m
      if e == ("%d"):format(sm) then return true end
    end
    local hex = e:match("^0x(%x+)$") or e:match("^(%x+)$")
    if hex then
      local n = math.tointeger(tonumber(hex, 16))
      if n and (n == v or n == v & 0xffffffff) then return true end
    end
    return false
  elseif type(v) == "string" then
    if e == v or e == v:gsub("%s+$", "") then return true end
    local b = bytes_of(e)
    local is_addr = (ev.system == "tcp" or ev.name == "inet_sock_set_state") and
                    name:match("addr")
    if is_addr then
      local ours = ip_bytes(v)
      if e == "" then return ours[1] == 0 end          -- printed as an empty string
      if not b then return false end
      if #b == #ours then return same_bytes(b, ours) end
      return (#ours == 4 and contains(b, ours, 4)) or (#ours == 16 and contains(b, ours, 8))
    end
    if b then  -- text with bytes trace-cmd does not print
      local sb = {v:byte(1, -1)}
      for i = #sb + 1, #b do sb[i] = 0 end
      return same_bytes(b, sb)
    end
    return false
  elseif type(v) == "table" then
    local b = bytes_of(e)
    if b then
      local ours = array_bytes(v)
      if #ours == #b then return same_bytes(ours, b) end
      -- wider elements: compare as little-endian bytes
      local width = #b // math.max(#ours, 1)
      local le = {}
      for _, x in ipairs(ours) do
        for k = 0, width - 1 do le[#le + 1] = (x >> (8 * k)) & 255 end
      end
      return same_bytes(le, b)
    end
    -- a flexible array member (size 0 in the format): trace-cmd reads 0 bytes
    if e == "0" or e == "" then return true end
    return false
  end
  return false
end

local function field_names(ev)
  local names = {}
  for k in pairs(ev) do
    if not HEADER[k] then names[#names + 1] = (k:gsub("^field_", "")) end
  end
  return names
end

--- Compare every event of `file` with trace-cmd. Returns the number compared.
local function compare_with(file, ref)
  local t = assert(kl.open(file))
  local i, lost = 0, 0
  for ev in t:events() do
    i = i + 1
    local r = ref[i]
    assert(r, ("%s: event %d beyond trace-cmd's %d"):format(file, i, #ref))
    local where = ("%s event %d (%s at %d)"):format(file, i, tostring(ev.name), ev.time)
    if ev.name == "lost_events" then
      lost = lost + 1
      assert.is_not_nil(r.lost, where .. ": trace-cmd has no drop here")
      assert.equal(r.lost, ev.lost, where)
      assert.equal(r.cpu, ev.cpu, where)
    else
      assert.is_nil(r.lost, where .. ": trace-cmd reports a drop here")
      assert.equal(r.name, ev.name, where)
      assert.equal(r.time, ev.time, where)
      assert.equal(r.cpu, ev.cpu, where)
      assert.equal(r.pid, ev.pid, where)
      assert.equal(r.comm, ev.comm, where)
      assert.is_string(ev.system, where)
      local names = field_names(ev)
      local vals, found = split_fields(r.rest, names)
      assert.equal(#names, found, where .. ": field count; trace-cmd:" .. r.rest)
      for _, n in ipairs(names) do
        local v = ev[n]
        if HEADER[n] then v = ev["field_" .. n] end
        assert.is_true(matches(ev, n, v, vals[n]),
                       ("%s: field %s = %s, trace-cmd says %q"):format(
                         where, n, type(v) == "table" and "{" .. table.concat(v, ",") .. "}"
                                   or tostring(v), vals[n]))
      end
    end
  end
  assert.equal(#ref, i, file .. ": event count")
  t:close()
  return i, lost
end

local function same_reference(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    for _, k in ipairs{"lost", "cpu", "comm", "pid", "time", "name", "rest"} do
      if a[i][k] ~= b[i][k] then return false end
    end
  end
  return true
end

--- Every event of `file` against trace-cmd's.  A difference counts only when
-- trace-cmd, asked again, prints the same thing: see reference() for the
-- rare run of trace-cmd that is printed differently.
local function compare_all(file)
  local ref = reference(file)
  local ok, n, lost = pcall(compare_with, file, ref)
  if ok then return n, lost end
  local again = reference(file)
  if same_reference(ref, again) then error(n, 0) end
  return compare_with(file, again)
end

-- ---------------------------------------------------------------- --

describe("kernellogger.open on trace.dat #linux", function()
  local F = H.fixture()
  it("opens a trace.dat and says what it is", function()
    local t = assert(kl.open(TESTDATA .. "trappy_trace_idle.dat"))
    assert.matches('^kernellogger%.Trace "', tostring(t))
    local info = t:info()
    assert.same({"trace.dat", 6, "little", 8, 4096, 6},
                {info.format, info.version, info.endian, info.long_size, info.page_size,
                 info.cpus})
    assert.equal(162534215741800, info.first_ts)
    assert.equal(162534221019580, info.last_ts)
    local counts = {}
    for _, e in ipairs(info.events) do counts[e.system .. ":" .. e.name] = e.count end
    assert.same({["power:cpu_idle"] = 17, ["sched:sched_migrate_task"] = 3,
                 ["sched:sched_switch"] = 23}, counts)
    assert.matches("trace%.dat v6, 6 CPUs", tostring(t))
    t:close()
    assert.matches("%(closed%)$", tostring(t))
    assert.has_error(function() t:events() end, "attempt to use a closed trace")
    t:close() -- twice is fine
  end)

  it("reads 32-bit-long files and their clock", function()
    local t <close> = assert(kl.open(TESTDATA .. "trappy_trace.dat"))
    local info = t:info()
    assert.equal(4, info.long_size)
    assert.equal(8, info.cpus)
    assert.equal("local", info.clock)
  end)

  it("returns nil, message, code for files it cannot read", function()
    local dir = F.tmpdir()
    local t, msg, code = kl.open(dir .. "/missing.dat")
    assert.is_nil(t)
    assert.equal("not_found", code)
    assert.matches("missing%.dat", msg)
    t, msg, code = kl.open(dir)
    assert.is_nil(t)
    assert.equal("invalid", code)
    assert.matches("not a regular file", msg)
    local f = assert(io.open(dir .. "/text.dat", "w"))
    f:write("hello, not a trace\n")
    f:close()
    t, msg, code = kl.open(dir .. "/text.dat")
    assert.is_nil(t)
    assert.equal("invalid", code)
    assert.matches("not a trace%.dat", msg)
    f = assert(io.open(dir .. "/empty.dat", "w"))
    f:close()
    assert.equal("invalid", select(3, kl.open(dir .. "/empty.dat")))
    -- a FIFO must not block the open
    if os.execute("mkfifo " .. H.q(dir .. "/fifo.dat")) then
      t, msg, code = kl.open(dir .. "/fifo.dat")
      assert.is_nil(t)
      assert.equal("invalid", code)
      assert.matches("not a regular file", msg)
    end
    assert.has_error(function() kl.open() end)
  end)

  it("returns access_denied for a file it may not read", function()
    local uid = io.popen("id -u"):read("l")
    if uid == "0" and not have("runuser") then
      pending("running as root without runuser: permissions are bypassed")
      return
    end
    local dir = F.tmpdir()
    os.execute("cp " .. H.q(TESTDATA .. "trappy_trace_idle.dat") .. " " .. H.q(dir .. "/x.dat"))
    os.execute("chmod 600 " .. H.q(dir .. "/x.dat") .. "; chmod 755 " .. H.q(dir))
    local cmd = H.lua_cmd(("local kl = require 'kernellogger' " ..
                           "print(select(3, kl.open(%q)))"):format(dir .. "/x.dat"))
    if uid == "0" then cmd = "runuser -u nobody -- " .. cmd end
    local p = assert(io.popen("cd " .. H.q(os.getenv("PWD") or ".") .. " && " .. cmd .. " 2>&1"))
    local out = p:read("a")
    p:close()
    if out:match("module 'kernellogger' not found") or out:match("Permission denied") and
       not out:match("access_denied") then
      pending("the checkout is not readable by nobody: " .. out)
      return
    end
    assert.equal("access_denied", (out:gsub("%s+$", "")))
  end)

  it("never crashes or hangs on truncated or bit-flipped copies", function()
    local dir = F.tmpdir()
    local src = {}
    for _, s in ipairs(SAMPLES) do src[#src + 1] = TESTDATA .. s end
    if have("trace-cmd") then
      local v7 = dir .. "/v7.dat"
      os.execute(("trace-cmd convert -i %s --file-version 7 --compression zstd -o %s " ..
                  ">/dev/null 2>&1"):format(H.q(src[1]), H.q(v7)))
      if H.exists(v7) then src[#src + 1] = v7 end
    end
    -- the damaging runs in a child process, so that a crash is a failure here
    local code = [[
      local kl = require "kernellogger"
      local src, out = ...
      local data = assert(io.open(src, "rb")):read("a")
      local seed = 7
      local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
      local cases = {}
      for _, cut in ipairs{0, 9, 12, 17, 60, 400, 4096, #data // 3, #data // 2, #data - 4096,
                           #data - 100, #data - 1} do
        if cut >= 0 and cut < #data then cases[#cases + 1] = data:sub(1, cut) end
      end
      for _ = 1, 12 do
        local b = data
        for _ = 1, rnd(16) do
          local pos = rnd(3) == 1 and rnd(math.min(#b, 300000)) or rnd(#b)
          b = b:sub(1, pos - 1) .. string.char(b:byte(pos) ~ (1 << (rnd(8) - 1))) .. b:sub(pos + 1)
        end
        cases[#cases + 1] = b
      end
      local opened, refused = 0, 0
      for _, c in ipairs(cases) do
        local f = assert(io.open(out, "wb")); f:write(c); f:close()
        local t, msg, code = kl.open(out)
        if t then
          opened = opened + 1
          for _ in t:events() do end
          t:info()
          t:close()
        else
          assert(code == "invalid" or code == "io", tostring(code) .. ": " .. tostring(msg))
          refused = refused + 1
        end
      end
      print("ok", opened, refused)
    ]]
    for i, s in ipairs(src) do
      local cmd = H.lua_cmd(("local f = assert(load(%q)); f(%q, %q)"):format(
        code, s, dir .. "/case" .. i .. ".dat"))
      local p = assert(io.popen("timeout 300 " .. cmd .. " 2>&1"))
      local out = p:read("a")
      local ok, how, st = p:close()
      assert.is_true(ok, ("%s: %s %s: %s"):format(s, how, tostring(st), out))
      local opened, refused = out:match("ok%s+(%d+)%s+(%d+)")
      assert.is_truthy(opened, out)
      assert.is_true(tonumber(refused) >= 5, s .. ": truncated copies must be refused: " .. out)
    end
  end)
end)

describe("Trace:events on trace.dat #linux", function()
  local file = TESTDATA .. "trappy_raw_trace.dat"

  it("yields every event in timestamp order with its header", function()
    local t <close> = assert(kl.open(file))
    local last, n, cpus = 0, 0, {}
    for ev in t:events() do
      n = n + 1
      assert.is_true(ev.time >= last)
      last = ev.time
      assert.is_string(ev.name)
      assert.is_string(ev.system)
      assert.is_string(ev.comm)
      assert.equal("integer", math.type(ev.pid))
      cpus[ev.cpu] = true
    end
    assert.equal(757, n)
    assert.is_true(cpus[1] and cpus[2] and true)
  end)

  it("filters by name, system, cpu, pid and time before building tables", function()
    local t <close> = assert(kl.open(file))
    local all = {}
    for ev in t:events() do all[#all + 1] = ev end
    local function count(pred)
      local n = 0
      for _, ev in ipairs(all) do if pred(ev) then n = n + 1 end end
      return n
    end
    local function run(opts)
      local n = 0
      for _ in t:events(opts) do n = n + 1 end
      return n
    end
    assert.equal(count(function(e) return e.name == "sched_switch" end),
                 run{names = "sched_switch"})
    assert.equal(count(function(e) return e.system == "ftrace" end), run{names = {"ftrace"}})
    assert.equal(count(function(e) return e.name == "bprint" or e.name == "sched_switch" end),
                 run{names = {"ftrace:bprint", "sched:sched_switch"}})
    assert.equal(0, run{names = {"no_such_event"}})
    assert.equal(run{names = {"bprint", "sched_switch"}}, run{names = "bprint,sched_switch"})
    assert.equal(#all, run{names = "bprint,sched_switch"})
    assert.equal(count(function(e) return e.cpu == 2 end), run{cpu = 2})
    local pid = all[#all // 2].pid
    assert.equal(count(function(e) return e.pid == pid end), run{pid = pid})
    local from, to = all[100].time, all[300].time
    assert.equal(count(function(e) return e.time >= from and e.time <= to end),
                 run{from = from, to = to})
    assert.equal(count(function(e) return e.time >= from and e.time <= to end),
                 run{t0 = from, t1 = to})
    assert.equal(count(function(e) return e.cpu == 1 and e.name == "sched_switch" end),
                 run{cpu = 1, names = "sched_switch"})
    assert.has_error(function() t:events{bogus = 1} end)
    assert.has_error(function() t:events{cpu = "x"} end)
    assert.has_error(function() t:events{names = 3} end)
    assert.has_error(function() t:events{from = -1} end)
    assert.has_error(function() t:events{to = 0} end, "bad argument #1 to 'events' " ..
                     "(to: must be a positive time (ns))")
  end)

  it("invalidates an older iterator when a new one starts", function()
    local t <close> = assert(kl.open(file))
    local it1 = t:events()
    assert.is_table(it1())
    local it2 = t:events{names = "bprint"}
    assert.equal("bprint", it2().name)
    assert.has_error(function() it1() end,
                     "trace iterator invalidated: a newer events() started on this trace")
  end)

  it("keeps fields that share a header name apart", function()
    local t <close> = assert(kl.open(TESTDATA .. "trappy_trace_idle.dat"))
    for ev in t:events{names = "sched_migrate_task"} do
      assert.equal("integer", math.type(ev.field_pid))  -- the migrated task
      assert.equal("integer", math.type(ev.pid))        -- the task it ran in
      assert.is_string(ev.field_comm)
    end
  end)
end)

describe("a trace.dat shrunk after open #linux", function()
  it("names where the file really ends now", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local data = assert(io.open(TESTDATA .. "trappy_trace.dat", "rb")):read("a")
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    local t <close> = assert(kl.open(path))
    f = assert(io.open(path, "wb"))       -- truncated in place: the open reader sees it
    f:write(data:sub(1, 20000))
    f:close()
    local ok, err = pcall(function() for _ in t:events() do end end)
    assert.is_false(ok)
    assert.matches("the file ends at offset 20000, inside CPU 0's data %(which needs offset %d+: " ..
                   "truncated, or changed while it was read%) %[invalid%]", err)
  end)
end)

describe("the comparison with trace-cmd report -R #linux", function()
  local F = H.fixture()
  if not have("trace-cmd") then
    it("needs trace-cmd", function() pending("trace-cmd is not installed") end)
    return
  end

  for _, s in ipairs(SAMPLES) do
    it("matches every event of " .. s, function()
      local n = compare_all(TESTDATA .. s)
      assert.is_true(n > 40)
    end)
  end

  it("matches every event of a v7 (zstd) conversion", function()
    local dir = F.tmpdir()
    local out = dir .. "/v7.dat"
    assert.is_true(os.execute(("trace-cmd convert -i %s --file-version 7 --compression zstd " ..
                               "-o %s >/dev/null 2>&1"):format(
                                 H.q(TESTDATA .. "trappy_raw_trace.dat"), H.q(out))) == true)
    local t <close> = assert(kl.open(out))
    assert.equal(7, t:info().version)
    assert.equal("local", t:info().clock)  -- from the BUFFER option
    assert.equal(757, (compare_all(out)))
  end)

  it("matches our own capture: TCP, processes, context switches, lost events", function()
    local name, dir = F.name("rd"), F.tmpdir()
    local file = dir .. "/own.dat"
    -- a buffering session: its 1 MB ring is what overflows (a file session
    -- streams to disk through a ring of its own and would drop no page)
    local s = assert(kl.start{name = name, circular_mb = 1,
                              flags = {"tcpip", "process", "cswitch", "dispatcher"}})
    H.tcp_connections(4)
    os.execute("true; ls / >/dev/null")
    -- overflow the 1 MB ring so that the reader meets dropped pages
    local m = io.open(("%s/instances/%s/trace_marker"):format(H.tracing, name), "w")
    if m then
      for i = 1, 40000 do m:write("klt reader marker ", i, "\n"); m:flush() end
      m:close()
    end
    H.tcp_connections(2)
    assert(s:stop(file))
    local n, lost = compare_all(file)
    assert.is_true(n > 100, "events: " .. n)
    assert.is_true(lost > 0, "the overflowed ring reported no dropped events")
    -- the addresses of the loopback connections read as text
    local t <close> = assert(kl.open(file))
    local seen = 0
    for ev in t:events{names = "inet_sock_set_state"} do
      if ev.family == 2 then
        assert.equal("127.0.0.1", ev.saddr)
        seen = seen + 1
      end
    end
    assert.is_true(seen >= 8, "inet_sock_set_state events: " .. seen)
  end)
end)

describe("memory #linux #heavy", function()
  local F = H.fixture()
  it("stays flat while a large capture is read", function()
    if (os.getenv("LD_PRELOAD") or ""):match("asan") then
      pending("peak RSS means nothing under AddressSanitizer")
      return
    end
    local name, dir = F.name("rdm"), F.tmpdir()
    local file = dir .. "/big.dat"
    local s = assert(kl.start{name = name, file = file, circular_mb = 48,
                              flags = {"cswitch"}})
    local m = assert(io.open(("%s/instances/%s/trace_marker"):format(H.tracing, name), "w"))
    for i = 1, 400000 do m:write("klt reader memory ", i, " ", ("x"):rep(40), "\n"); m:flush() end
    m:close()
    assert(s:stop())
    local size = assert(io.open(file, "rb")):seek("end")
    assert.is_true(size > 16 * 1024 * 1024, "capture size " .. size)
    local n, growth = H.read_growth(file)
    assert.is_true(n > 200000, "events: " .. n)
    assert.is_true(growth < size / 4, ("peak grew by %d bytes for a %d-byte file"):format(
      growth, size))
  end)
end)
