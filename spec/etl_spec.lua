-- Reading Windows .etl captures: kernellogger.open() on the portable reader (csrc/etl).
-- The fixtures are real captures made by others (spec/fixtures/README.md). The file
-- structure is also walked here in Lua, independently of the C reader, and both must
-- agree; payload values are checked against what the format and the capture imply.
local H = require "helpers"
local kl = require "kernellogger"

local DIR = "spec/fixtures/etl/"
local FILES = {"airbus_ShutdownPerfDiagLogger.etl", "perfview_net.4.5.2.x64.etl",
               "perfview_SelfDescribingSingleEvent.etl", "perfview_primitive-types.etl",
               "tx_HTTP_Server.etl", "tx_KernelNetwork.etl"}

local function read(path) return assert(io.open(path, "rb")):read("a") end

-- A temporary file's name; the file is removed when the test ends.
local function tmpfile()
  local out = os.tmpname()
  finally(function() os.remove(out) end)
  return out
end

--- kl.open refuses `data` (written to a temporary file) as invalid, with a
-- message that matches `pattern`. Returns the file's name.
local function open_refused(data, pattern)
  local out = tmpfile()
  H.write(out, data)
  local t, msg, code = kl.open(out)
  assert.is_nil(t)
  assert.equal("invalid", code)
  assert.matches(pattern, msg)
  return out
end

-- tx_HTTP_Server.etl with the raw timestamp (at +0x10) of the record at byte
-- 5384 of its buffer at offset 73728 set to `raw`; 0 goes back in time, and
-- every reader says so in these words:
local TS_AT = 73728 + 5384 + 0x10
local BACK_IN_TIME = "buffer at offset 73728, byte 5384: timestamp 0 goes back in time " ..
                     "%(after %d+ on processor 0%)"
local function with_timestamp(raw)
  local data = read(DIR .. "tx_HTTP_Server.etl")
  return data:sub(1, TS_AT) .. string.pack("<i8", raw) .. data:sub(TS_AT + 9)
end

-- FILETIME -> ns since 1970, as the format defines it
local function ft_ns(ft) return (ft - 116444736000000000) * 100 end

--- The file's buffers and, for uncompressed ones, their records, walked in Lua:
-- {buffers = {{off, size, filled, flags, cpu, records = {{kind, raw}...}}}, header = {...}}
local function walk(path)
  local d = read(path)
  local bufs, off = {}, 0
  while off + 0x48 <= #d do
    local size, filled, flags = string.unpack("<I4", d, off + 1), string.unpack("<I4", d, off + 0x31),
                                string.unpack("<I2", d, off + 0x35)
    if size == 0 then break end
    local cpu = (flags & 0x20) ~= 0 and string.unpack("<I2", d, off + 0x29) or d:byte(off + 0x29)
    local b = {off = off, size = size, filled = filled, flags = flags, cpu = cpu}
    if flags & 0x40 == 0 then
      b.records = {}
      local pos = 0x48
      while pos + 4 <= filled do
        local p = off + pos + 1
        local ty, top = d:byte(p + 2), d:byte(p + 3)
        local kernel = ty <= 4 or ty == 0x10 or ty == 0x11
        local sz = kernel and string.unpack("<I2", d, p + 4) or string.unpack("<I2", d, p)
        assert(top == 0xC0 or top == 0x90, ("%s: buffer %d: marker %x"):format(path, off, top))
        local tsat = (ty == 0x10 or ty == 0x11) and 8 or 16
        b.records[#b.records + 1] = {type = ty, raw = string.unpack("<i8", d, p + tsat),
                                     hook = kernel and string.unpack("<I2", d, p + 6)}
        pos = pos + ((sz + 7) & ~7)
      end
      b.end_pos = pos
    end
    bufs[#bufs + 1] = b
    off = off + size
  end
  -- the log-file header: payload of the first record (64-bit form in these files)
  local h = 0x48 + 0x20 + 1
  local header = {
    ncpus = string.unpack("<I4", d, h + 0x0C), buffers_written = string.unpack("<I4", d, h + 0x24),
    ptr = string.unpack("<I4", d, h + 0x2C), events_lost = string.unpack("<I4", d, h + 0x30),
    end_time = string.unpack("<I8", d, h + 0x10), start_time = string.unpack("<I8", d, h + 0x108),
    build = string.unpack("<I4", d, h + 8), major = d:byte(h + 4), minor = d:byte(h + 5)}
  return {buffers = bufs, header = header, size = #d, end_off = off}
end

local function all_events(t, opts)
  local out = {}
  for ev in t:events(opts) do out[#out + 1] = ev end
  return out
end

-- #heavy: decoding whole fixtures takes minutes under valgrind; the plain
-- and ASan runs read them all, and fuzz_etl covers the parser.
describe("kl.open on .etl files #heavy", function()
  for _, name in ipairs(FILES) do
    local path = DIR .. name

    it("reads " .. name .. " end to end, agreeing with the file's own structure", function()
      local w = walk(path)
      local t <close> = assert(kl.open(path))
      local info = assert(t:info())
      assert.equal("etl", info.format)
      assert.equal(w.size, w.end_off)                       -- the last buffer ends at EOF
      assert.equal(#w.buffers, info.buffers)
      assert.equal(w.header.buffers_written, info.buffers)  -- the header's count
      assert.equal(w.header.buffers_written, info.buffers_written)
      assert.equal(w.header.ncpus, info.cpus)
      assert.equal(w.header.ptr, info.pointer_size)
      assert.equal(w.header.events_lost, info.events_lost)
      assert.equal(0, info.events_lost)
      assert.equal(0, info.buffers_lost)
      assert.equal(("%d.%d"):format(w.header.major, w.header.minor), info.os_version)
      assert.equal(w.header.build, info.os_build)
      assert.equal(ft_ns(w.header.start_time), info.start_time)
      assert.equal(ft_ns(w.header.end_time), info.end_time)
      assert.equal("qpc", info.clock)
      local compressed = 0
      for _, b in ipairs(w.buffers) do
        if b.flags & 0x40 ~= 0 then compressed = compressed + 1 end
        if b.records then
          assert.equal(b.filled, b.end_pos)                 -- records end exactly at FilledBytes
          for i = 2, #b.records do                          -- time order within a buffer
            assert.is_true(b.records[i].raw >= b.records[i - 1].raw)
          end
        end
      end
      assert.equal(compressed, info.compressed_buffers)
      -- every event, in time order; the counts of info() add up to them
      local evs = all_events(t)
      local total, by = 0, {}
      for _, ty in ipairs(info.events) do
        total = total + ty.count
        by[ty.system .. ":" .. ty.name] = ty.count
      end
      assert.equal(#evs, total)
      local seen = {}
      for i, ev in ipairs(evs) do
        if i > 1 then assert.is_true(ev.time >= evs[i - 1].time) end
        assert.is_true(ev.time >= info.start_time)
        local k = ev.system .. ":" .. ev.name
        seen[k] = (seen[k] or 0) + 1
        assert.is_true(ev.cpu >= 0 and ev.cpu < info.cpus)
      end
      assert.same(by, seen)
      -- the header record is the clock's origin: it lands exactly on StartTime
      assert.equal("EventTrace", evs[1].system)
      assert.equal("Header", evs[1].name)
      assert.equal(info.start_time, evs[1].time)
      assert.equal(info.first_ts, evs[1].time)
      assert.equal(info.last_ts, evs[#evs].time)
      -- uncompressed files: every record is an event or counted as skipped
      if compressed == 0 then
        local records = 0
        for _, b in ipairs(w.buffers) do records = records + #b.records end
        assert.equal(records, #evs + info.skipped)
      end
    end)
  end

  it("decodes every primitive TraceLogging type of perfview_primitive-types.etl", function()
    local t <close> = assert(kl.open(DIR .. "perfview_primitive-types.etl"))
    local evs = all_events(t, {names = "PrimitiveTypesTest"})
    assert.equal(5, #evs)
    local want = {
      {"Mercury", 77, false, 51, "0ad614c4-0ef4-4225-8013-f44f37cb0397", "35.799"},
      {"Venus", 86, true, 95, "e04ff801-9ea3-494f-a10e-8ef833e9099f", "36.239"},
      {"Earth", 69, false, 65, "c7a6c80e-f2a6-4220-ab98-d7c21a58f9fb", "36.671"},
      {"Mars", 77, false, 29, "0a922cee-67c1-4108-b39d-b132e47033c4", "37.048"},
      {"Jupiter", 74, true, 69, "bb11b97b-1110-4eb6-bc33-fd71219d322e", "37.484"}}
    for i, ev in ipairs(evs) do
      local w = want[i]
      assert.equal("solar_system", ev.system)
      assert.equal("d3dd3dd4-aac2-4e2a-8dd4-a8fb61b77615", ev.provider)
      assert.equal(11, ev.channel)   -- TraceLogging's channel
      assert.equal(5, ev.level)
      assert.equal(0, ev.id)
      assert.equal(33984, ev.pid)
      assert.equal(21768, ev.tid)
      assert.equal(w[1], ev.string_type)
      assert.equal(w[1]:byte(1), ev.char_type)      -- a char field: the name's initial
      assert.equal(w[2], ev.char_type)
      assert.equal(w[3], ev.boolean_type)
      assert.equal(w[4], ev.uint16_type)
      assert.equal(-w[4], ev.int16_type)
      assert.equal(2 * w[4], ev.uint32_type)
      assert.equal(-2 * w[4], ev.int32_type)
      assert.equal(4 * w[4], ev.uint64_type)
      assert.equal(-4 * w[4], ev.int64_type)
      assert.equal(w[5], ev.guid_type)
      assert.equal("2021-09-09T14:59:" .. w[6] .. "0000Z", ev.file_time_type)
      assert.equal("2021-09-09 14:59:" .. w[6], ev.system_time_type)
      -- the event was written at the time its FILETIME field says, to the millisecond
      local fts = ev.file_time_type
      local sec = tonumber(fts:sub(18, 19)) + tonumber(fts:sub(20, 27))
      assert.is_true(math.abs((ev.time % 60000000000) / 1e9 - sec) < 0.002)
    end
  end)

  it("decodes the struct of perfview_SelfDescribingSingleEvent.etl as a table", function()
    local t <close> = assert(kl.open(DIR .. "perfview_SelfDescribingSingleEvent.etl"))
    local evs = all_events(t, {names = "MySource"})
    assert.equal(1, #evs)
    local ev = evs[1]
    assert.equal("TestEvent", ev.name)
    assert.equal(3, ev.id)
    assert.same({b = "Hello", c = "World!"}, ev.a)
    assert.is_nil(ev.b)                          -- members only inside their struct
    assert.equal("a61ea624-4944-55fc-c2a8-37838829438d", ev.provider)
  end)

  it("gives manifest events without a schema as raw data with their ids", function()
    local t <close> = assert(kl.open(DIR .. "tx_KernelNetwork.etl"))
    local n = 0
    for ev in t:events{names = "Microsoft-Windows-Kernel-Network"} do
      n = n + 1
      assert.equal("EventID(" .. ev.id .. ")", ev.name)
      assert.equal("7dd42a49-5329-4832-8dfd-43d979153a88", ev.provider)
      assert.equal("string", type(ev.data))
      -- TCP/IP events of this provider start with the pid and the size (u32 each)
      if ev.id == 10 or ev.id == 11 then
        assert.is_true(#ev.data >= 8)
      end
    end
    assert.equal(8923, n)
  end)
end)

describe("kernel classes of perfview_net.4.5.2.x64.etl #heavy", function()
  local path = DIR .. "perfview_net.4.5.2.x64.etl"

  it("Process and Thread rundowns agree with each other", function()
    local t <close> = assert(kl.open(path))
    local procs = {}
    for ev in t:events{names = "Process:DCStart"} do
      assert.is_nil(procs[ev.ProcessId])
      procs[ev.ProcessId] = ev
      assert.is_true(ev.ImageFileName == "Idle" or ev.ImageFileName == "System" or
                     ev.ImageFileName:match("^[%w%._%-]+%.[Ee][Xx][Ee]$") ~= nil, ev.ImageFileName)
      assert.matches("^S%-1%-5%-", ev.UserSID)
      assert.equal(4, ev.version)
    end
    assert.equal("Idle", procs[0].ImageFileName)
    assert.equal("System", procs[4].ImageFileName)
    local threads = 0
    for ev in t:events{names = "Thread:DCStart"} do
      threads = threads + 1
      assert.is_truthy(procs[ev.ProcessId], "thread of an unknown process " .. ev.ProcessId)
      assert.equal(ev.ProcessId, ev.pid)               -- the header agrees with the payload
      assert.equal(ev.TThreadId, ev.tid)
    end
    assert.equal(670, threads)
  end)

  it("Image, TcpIp, UdpIp, DiskIO, FileIO, PageFault, StackWalk, SystemConfig, PerfInfo", function()
    local t <close> = assert(kl.open(path))
    local n = {}
    local irps = {}
    for ev in t:events{names = {"Image", "TcpIp", "UdpIp", "DiskIO", "FileIO", "PageFault",
                                "StackWalk", "SystemConfig:CPU", "PerfInfo"}} do
      n[ev.system] = (n[ev.system] or 0) + 1
      if ev.system == "Image" then
        assert.matches("^\\", ev.FileName)
        assert.is_true(ev.ImageSize > 0)
      elseif ev.system == "TcpIp" then
        assert.equal(445, ev.dport)                     -- SMB, in host order
        assert.equal(ev.PID, ev.pid)                    -- no ids in its header: the payload's
        assert.matches("^2001:4898:", ev.daddr)
        assert.is_true(ev.size > 0)
      elseif ev.system == "UdpIp" then
        assert.matches(ev.name:find("IPV6") and ":" or "^%d+%.%d+%.%d+%.%d+$", ev.saddr)
      elseif ev.name == "ReadInit" or ev.name == "WriteInit" then
        irps[ev.Irp] = ev.IssuingThreadId
      elseif ev.name == "Read" and ev.system == "DiskIO" then
        assert.equal(irps[ev.Irp], ev.IssuingThreadId)  -- completion matches its init
        assert.is_true(ev.TransferSize > 0 and ev.TransferSize % 512 == 0)
      elseif ev.system == "FileIO" then
        assert.matches("^\\", ev.FileName)
      elseif ev.name == "HardFault" then
        assert.is_true(ev.ByteCount > 0)
      elseif ev.system == "StackWalk" then
        assert.is_true(#ev.Stack >= 1)
        assert.equal(ev.StackProcess, ev.pid)
      elseif ev.name == "CPU" then
        assert.equal(8, ev.NumberOfProcessors)
        assert.equal("BRIANROB-W8", ev.ComputerName)
        assert.equal(9, ev.ProcessorArchitecture)      -- AMD64
      end
    end
    assert.same({Image = 3596, TcpIp = 490, UdpIp = 36, DiskIO = 2462, FileIO = 3084,
                 PageFault = 153, StackWalk = 252, SystemConfig = 1, PerfInfo = 79528}, n)
  end)

  it("image loads of the kernel system logger (airbus) decode with the Image layout", function()
    local t <close> = assert(kl.open(DIR .. "airbus_ShutdownPerfDiagLogger.etl"))
    local loads = 0
    for ev in t:events{names = "Image:Load"} do
      loads = loads + 1
      assert.matches("^\\Device\\", ev.FileName)
      assert.matches("%.[%a]+$", ev.FileName)
    end
    assert.is_true(loads > 0)
  end)
end)

describe("Trace:events filters on .etl #heavy", function()
  local path = DIR .. "perfview_net.4.5.2.x64.etl"

  it("match a plain filter in Lua over all events", function()
    local t <close> = assert(kl.open(path))
    local evs = all_events(t)
    local mid = evs[#evs // 2].time
    local function count(pred)
      local c = 0
      for _, ev in ipairs(evs) do if pred(ev) then c = c + 1 end end
      return c
    end
    assert.equal(count(function(e) return e.cpu == 3 end), #all_events(t, {cpu = 3}))
    assert.equal(count(function(e) return e.pid == 3988 end), #all_events(t, {pid = 3988}))
    assert.equal(count(function(e) return e.time >= mid end), #all_events(t, {from = mid}))
    assert.equal(count(function(e) return e.time <= mid end), #all_events(t, {to = mid}))
    assert.equal(count(function(e) return e.system == "Thread" or e.name == "Sample" end),
                 #all_events(t, {names = "thread,SAMPLE"}))
    assert.equal(count(function(e) return e.system == "TcpIp" and e.name == "SendIPV6" end),
                 #all_events(t, {names = {"TcpIp:SendIPV6"}}))
  end)
end)

describe("damaged .etl files", function()
  -- in child processes (timeout(1), a POSIX shell): Linux only; the reader is the same
  it("are refused at open or fail cleanly, never crash or hang #linux", function()
    local dir = H.tmpdir()
    finally(function() H.rmtree(dir) end)
    local code = [[
      local kl = require "kernellogger"
      local src, out = ...
      local data = assert(io.open(src, "rb")):read("a")
      local seed = 11
      local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
      local cases = {}
      for _, cut in ipairs{0, 4, 0x47, 0x50, 0x100, #data // 3, #data // 2, #data - 1} do
        if cut < #data then cases[#cases + 1] = data:sub(1, cut) end
      end
      for _ = 1, 16 do
        local b = data
        for _ = 1, rnd(12) do
          local pos = rnd(2) == 1 and rnd(math.min(#b, 0x3000)) or rnd(#b)
          b = b:sub(1, pos - 1) .. string.char(b:byte(pos) ~ (1 << (rnd(8) - 1))) .. b:sub(pos + 1)
        end
        cases[#cases + 1] = b
      end
      local opened, refused, raised = 0, 0, 0
      for _, c in ipairs(cases) do
        local f = assert(io.open(out, "wb")); f:write(c); f:close()
        local t, msg, ecode = kl.open(out)
        if t then
          opened = opened + 1
          local ok = pcall(function()
            t:info()
            for _ in t:events() do end
          end)
          if not ok then raised = raised + 1 end
          t:close()
        else
          assert(ecode == "invalid", tostring(ecode) .. ": " .. tostring(msg))
          refused = refused + 1
        end
      end
      print("ok", opened, refused, raised)
    ]]
    for i, name in ipairs(FILES) do
      local cmd = H.lua_cmd(("local f = assert(load(%q)); f(%q, %q)"):format(
        code, DIR .. name, dir .. "/case" .. i .. ".etl"))
      local p = assert(io.popen("timeout 300 " .. cmd .. " 2>&1"))
      local out = p:read("a")
      local ok, how, st = p:close()
      assert.is_true(ok, ("%s: %s %s: %s"):format(name, how, tostring(st), out))
      local refused = out:match("ok%s+%d+%s+(%d+)")
      assert.is_truthy(refused, out)
      assert.is_true(tonumber(refused) >= 5, name .. ": truncated copies must be refused: " .. out)
    end
  end)

  it("a truncated capture names the buffer and the file size", function()
    open_refused(read(DIR .. "tx_HTTP_Server.etl"):sub(1, 0x5000),
                 "buffer at offset 16384: BufferSize 8192 runs past the end of the file " ..
                 "%(20480 bytes%): truncated file")
  end)
  it("a zero BufferSize mid-file is refused, not taken for the end of the capture", function()
    local data = read(DIR .. "airbus_ShutdownPerfDiagLogger.etl")
    assert.equal(0x10000, string.unpack("<I4", data, 0x10000 + 1))   -- the second buffer's size
    local out = open_refused(data:sub(1, 0x10000) .. "\0\0\0\0" .. data:sub(0x10000 + 5),
                             "buffer at offset 65536: BufferSize 0 after 1 of the 49 buffers " ..
                             "written, with data after it")
    -- a zero-filled tail after the last buffer is the end of the capture, as before
    H.write(out, data:sub(1, 0x10000), string.rep("\0", 0x10000))
    local t2 = assert(kl.open(out))
    assert.equal(1, t2:info().buffers)
    t2:close()
  end)
  it("a file zeroed while its events are read raises naming the buffer, never ends early", function()
    local data = read(DIR .. "tx_HTTP_Server.etl")
    local out = tmpfile()
    H.write(out, data)
    local t <close> = assert(kl.open(out))
    local n, whole = 0, #all_events(assert(kl.open(DIR .. "tx_HTTP_Server.etl")))
    local ok, err = pcall(function()
      for _ in t:events() do
        n = n + 1
        if n == 5 then -- zero 200 KB from offset 5000, in place
          local f = assert(io.open(out, "r+b"))
          f:seek("set", 5000)
          f:write(string.rep("\0", 200 * 1024))
          f:close()
        end
      end
    end)
    assert.is_false(ok, ("read %d of %d events and ended without an error"):format(n, whole))
    assert.matches("buffer at offset %d+: no buffer where open found one %(the file changed while "
                   .. "it was read%)", err)
    assert.is_true(n < whole)
  end)


  it("a timestamp that does not convert, or goes back on its processor, is an error", function()
    local out = tmpfile()
    for _, c in ipairs{
      {1 << 56, "buffer at offset 73728, byte 5384: timestamp 72057594037927936 is out of range"},
      {math.maxinteger, "buffer at offset 73728, byte 5384: timestamp 9223372036854775807 is out of range"},
      {0, BACK_IN_TIME},
    } do
      H.write(out, with_timestamp(c[1]))
      local t <close> = assert(kl.open(out))
      local info, msg, code = t:info()
      assert.is_nil(info)
      assert.equal("invalid", code)
      assert.matches(c[2], msg)
      local n, prev = 0, 0
      local ok, err = pcall(function()
        for ev in t:events() do
          assert.is_true(ev.time >= prev)
          prev, n = ev.time, n + 1
        end
      end)
      assert.is_false(ok)
      assert.matches(c[2], err)
      assert.equal(580, n)
    end
  end)

  it("filters: a set for names, or from after to, raise naming events and the option", function()
    local t <close> = assert(kl.open(DIR .. "tx_KernelNetwork.etl"))
    local ok, err = pcall(t.events, t, {names = {TcpIp = true}})
    assert.is_false(ok)
    assert.equal("bad argument #2 to 'events' (names: must be a list of strings ({\"a\", " ..
                 "\"b\"}), not a table with other keys)", err)
    ok, err = pcall(function() return t:events{names = {"TcpIp", UdpIp = true}} end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'events' %(names: must be a list of strings", err)
    ok, err = pcall(t.events, t, {from = 2^62, to = 0})
    assert.is_false(ok)
    assert.equal("bad argument #2 to 'events' (from (4611686018427387904) is after to (0))", err)
    ok, err = pcall(t.events, t, {from = 20, to = 5})
    assert.is_false(ok)
    assert.equal("bad argument #2 to 'events' (from (20) is after to (5))", err)
    local n = 0
    for _ in t:events{names = {}, from = 5, to = 5} do n = n + 1 end   -- an empty list: all
    assert.equal(0, n)
  end)

  it("a decompression bomb is refused at open, before any buffer is allocated", function()
    -- the first buffer of a fixture, its header claiming 64 MiB buffers and 4096 processors,
    -- then 64 tiny compressed buffers (one a processor) each claiming 64 MiB once expanded
    local data = read(DIR .. "perfview_SelfDescribingSingleEvent.etl")
    local parts = {data:sub(1, 0x48 + 0x20) .. string.pack("<I4", 64 << 20) ..
                   data:sub(0x48 + 0x25, 0x48 + 0x2C) .. string.pack("<I4", 4096) ..
                   data:sub(0x48 + 0x31, string.unpack("<I4", data))}
    for cpu = 0, 63 do
      parts[#parts + 1] = string.pack("<I4I4I4I4I8I8I8I2I2I4I4I2I2", 0x48 + 16, 0, 0, 0, 0, 0, 0,
                                      cpu, 0, 0, 64 << 20, 0x40 | 0x20, 0) ..
                          string.rep("\0", 16) .. string.rep("\0", 16)
    end
    open_refused(table.concat(parts),
                 "the buffers claim %d+ bytes once uncompressed, more than 16 times the file's")
  end)
end)

describe("kernellogger report on an .etl file #linux", function()
  it("summarises it", function()
    local p = assert(io.popen("lua5.4 bin/kernellogger report " .. DIR ..
                              "perfview_primitive-types.etl 2>&1"))
    local out = p:read("a")
    assert.is_true(p:close(), out)
    assert.matches("events: 6", out)
    assert.matches("solar_system:PrimitiveTypesTest%s+5", out)
  end)
end)

describe("the recipes in examples/ on .etl captures #linux", function()
  local function example(name, file)
    local p = assert(io.popen(("timeout 120 lua5.4 examples/%s.lua %s 2>&1"):format(name, file)))
    local out = p:read("a")
    return p:close(), out
  end

  it("processes.lua: started and exited processes with their command lines", function()
    local ok, out = example("processes", DIR .. "perfview_net.4.5.2.x64.etl")
    assert.is_true(ok, out)
    assert.matches("%s3676%s+3508 Test%.x64%.exe%s+5469%.109 ms%s+Test%.x64%.exe", out)
    assert.matches("1 started, 1 of them exited in the capture", out)
    ok, out = example("processes", DIR .. "airbus_ShutdownPerfDiagLogger.etl")
    assert.is_true(ok, out)
    assert.matches("1348%s+%d+ svchost%.exe%s+ended%s+C:\\Windows\\system32\\svchost%.exe %-k netsvcs", out)
    assert.matches("57 processes that ran before the capture exited in it", out)
  end)

  it("tcp_connections.lua: the SMB connections of the merged capture", function()
    local ok, out = example("tcp_connections", DIR .. "perfview_net.4.5.2.x64.etl")
    assert.is_true(ok, out)
    assert.matches("%[2001:4898:f0:26:b18e:e85f:db5d:8e8%]:64025 %-%-  " ..
                   "%[2001:4898:e0:81:7cb9:ab:cd5:e6af%]:445 System/4%s+0%s+0%s+Send%(60%)>Recv%(65%)", out)
    assert.matches("4 connection ends", out)
  end)

  it("a read error mid-stream ends a recipe with a message and status 1, no traceback", function()
    local out = tmpfile()
    H.write(out, with_timestamp(0))
    for _, name in ipairs{"processes", "tcp_connections", "cswitch"} do
      local ok, text = example(name, out)
      assert.is_falsy(ok, text)
      assert.matches("^" .. name .. ": read trace " .. out:gsub("%p", "%%%0") .. ": " .. BACK_IN_TIME
                     .. " %[invalid%]\n$", text)
    end
  end)

  it("cswitch.lua reads a capture without context switches", function()
    local ok, out = example("cswitch", DIR .. "perfview_net.4.5.2.x64.etl")
    assert.is_true(ok, out)
    assert.matches("Context switches in .-: 0 in", out)
  end)
end)

-- ---------------------------------------------------------------- --
-- A capture built here, byte by byte, from the documented layouts:   --
-- what the fixtures lack (context switches, ready-thread events,    --
-- 32-bit and compact headers, a counter word after a header).        --
-- ---------------------------------------------------------------- --
local FT0 = 132000000000000000   -- the StartTime of the built file (a FILETIME)

local function pad8(s) return s .. string.rep("\0", (-#s) % 8) end
local function u16s(s) return (s:gsub(".", "%0\0")) .. "\0\0" end

local function rec_system(hook, ver, tid, pid, raw, payload, htype)
  local size = (htype == 3 or htype == 4) and 0x18 or 0x20
  local head = string.pack("<I2BBI2I2I4I4i8", ver, htype or 2, 0xC0, size + #payload, hook, tid,
                           pid, raw)
  if size == 0x20 then head = head .. string.pack("<I4I4", 0, 0) end
  return head .. payload
end

local function rec_perfinfo(hook, ver, raw, payload)
  return string.pack("<I2BBI2I2i8", ver, 0x11, 0xC0, 0x10 + #payload, hook, raw) .. payload
end

-- An EVENT_HEADER64 record with TraceLogging items: provider traits, then the schema.
local function rec_tracelogging(raw, provider, schema, payload)
  local function item(ty, data, more)
    local n = 8 + #data + ((-#data) % 8)
    return pad8(string.pack("<I2I2I2I2", n, ty, more and 1 or 0, #data) .. data)
  end
  local traits = string.pack("<I2", 3 + #provider) .. provider .. "\0"
  local ext = item(0x0C, traits, true) .. item(0x0B, string.pack("<I2", 2 + #schema) .. schema)
  local guid = string.rep("\17", 16)
  return string.pack("<I2BBI2I2I4I4i8", 0x50 + #ext + #payload, 0x13, 0xC0, 1, 0, 42, 4242, raw) ..
         guid .. string.pack("<I2BBBBI2I8I4I4", 7, 1, 11, 4, 0, 0, 0, 0, 0) ..
         string.rep("\0", 16) .. ext .. payload
end

local function buffer(size, cpu, flags, btype, records)
  local parts = {}
  for i, r in ipairs(records) do parts[i] = pad8(r) end
  local body = table.concat(parts)
  local filled = 0x48 + #body
  return string.pack("<I4I4I4I4I8I8I8BBI2I4I4I2I2", size, filled, 0, 0, 0, 0, 0, cpu, 8, 0, 3,
                     filled, flags, btype) .. string.rep("\0", 16) .. body ..
         string.rep("\255", size - filled)
end

local function built_capture()
  local loghdr = string.pack("<I4BBBBI4I4I8I4I4I4I4I4I4I4I4I8I8", 0x400, 10, 0, 1, 5, 19041, 2,
                             FT0 + 10000000, 156250, 0, 0, 3, 1, 8, 0, 3000, 0, 0) ..
                 string.rep("\0", 176) .. string.pack("<I8I8I8I4I4", FT0 - 1e9, 10000000, FT0, 1, 0) ..
                 "b\0\226\0t\0i\0\0\0" .. u16s("C:\\built.etl")   -- "bâti": U+00E2
  -- UserSID: a TOKEN_USER-sized prefix (two pointers), then S-1-5-18 (authority big-endian)
  local sid = string.pack("<I8I8BB", 0xffff800000001000, 0, 1, 1) .. string.pack(">I6", 5) ..
              string.pack("<I4", 18)
  local process = string.pack("<I8I4I4I4i4I8I4", 0xffff800000002000, 1234, 4, 1, 259, 0x1aa000, 0) ..
                  sid .. "app.exe\0" .. u16s("app.exe -x") .. u16s("") .. u16s("")
  local thread64 = string.pack("<I4I4I8I8I8I8I8I8I8I4BBBB", 1234, 5678, 0xffff1000, 0xfffe0000, 0x7f000,
                               0x7e000, 3, 0x401000, 0x7ffd000, 0, 8, 5, 2, 0)
  local thread32 = string.pack("<I4I4I4I4I4I4I4I4I4I4BBBB", 1234, 91, 0x81000, 0x80000, 0x1000, 0x900,
                               1, 0x402000, 0x7ffe000, 7, 9, 5, 2, 1)
  local cswitch = string.pack("<I4I4bbBbbbbbI4I4", 5678, 0, 9, 0, 1, 0, 6, 1, 5, 3, 42, 0)
  local ready = string.pack("<I4bbbb", 5678, 1, 2, 1, 0)
  -- TraceLogging: a var-count array, a fixed-count array of strings, a struct, a boolean,
  -- a port, an IPv4 address, a binary blob, an array of structs
  local schema = "\0" .. "Arrays\0" ..
    "n\0" .. "\8" .. "list\0" .. string.char(6 | 0x40) ..
    "names\0" .. string.char(1 | 0x20) .. string.pack("<I2", 2) ..
    "pt\0" .. string.char(24 | 0x80, 2) .. "x\0\7" .. "y\0\12" ..
    "ok\0\13" .. "port\0" .. string.char(6 | 0x80, 7) .. "ip\0" .. string.char(8 | 0x80, 8) ..
    "bin\0\14" .. "pts\0" .. string.char(24 | 0x40 | 0x80, 1) .. "z\0\4"
  local tl = string.pack("<I4I2I2I2I2", 3, 3, 10, 20, 30) .. u16s("a") .. u16s("bc") ..
             string.pack("<i4d", -5, 2.5) .. string.pack("<I4", 1) .. string.pack(">I2", 8080) ..
             string.char(10, 0, 0, 1) .. string.pack("<I2", 3) .. "xyz" ..
             string.pack("<I2BB", 2, 7, 9)
  local records = {
    rec_system(0x0303, 4, 1, 4, 2000, process),
    rec_system(0x0503, 3, 1, 4, 3000, thread64),
    rec_system(0x0503, 3, 1, 4, 3500, thread32, 1),                 -- 32-bit header
    rec_perfinfo(0x0532, 2, 4000, ready),
    rec_perfinfo(0x0524, 2 | 0x0100, 5000, string.pack("<I8", 77) .. cswitch), -- one counter
    rec_system(0x0502, 3, 5678, 1234, 6000, thread64, 4),           -- compact header
    rec_tracelogging(7000, "TestProv", schema, tl),
  }
  local path = os.tmpname()
  H.write(path, buffer(0x400, 0, 1, 4, {rec_system(0, 2, 1, 4, 1000, loghdr)}),
        buffer(0x800, 1, 1, 0, records))
  return path
end

describe("a capture built from the documented layouts", function()
  local path
  before_each(function() path = built_capture() end)
  after_each(function() os.remove(path) end)

  it("decodes Process, Thread (64-bit, 32-bit, compact), ReadyThread and CSwitch", function()
    local t <close> = assert(kl.open(path))
    local info = assert(t:info())
    assert.equal(2, info.buffers)
    assert.equal("10.0", info.os_version)
    assert.equal("b\u{e2}ti", info.logger)                  -- UTF-16 names as UTF-8
    assert.equal("C:\\built.etl", info.log_file)
    local evs = all_events(t)
    assert.equal(8, #evs)
    local base = ft_ns(FT0)
    for i, raw in ipairs{1000, 2000, 3000, 3500, 4000, 5000, 6000, 7000} do
      assert.equal(base + (raw - 1000) * 100, evs[i].time)   -- QPC at 10 MHz: 100 ns a tick
    end
    local p = evs[2]
    assert.same({"Process", "DCStart", 1234, 4, 1, 259, "S-1-5-18", "app.exe", "app.exe -x"},
                {p.system, p.name, p.ProcessId, p.ParentId, p.SessionId, p.ExitStatus, p.UserSID,
                 p.ImageFileName, p.CommandLine})
    assert.equal(0x1aa000, p.DirectoryTableBase)
    local t64, t32 = evs[3], evs[4]
    assert.same({5678, 0xfffe0000, 3, 0x401000, 8, 5, 2, 0},
                {t64.TThreadId, t64.StackLimit, t64.Affinity, t64.Win32StartAddr,
                 t64.BasePriority, t64.PagePriority, t64.IoPriority, t64.ThreadFlags})
    assert.same({91, 0x80000, 1, 0x402000, 0x7ffe000, 7, 9, 1},
                {t32.TThreadId, t32.StackLimit, t32.Affinity, t32.Win32StartAddr, t32.TebBase,
                 t32.SubProcessTag, t32.BasePriority, t32.ThreadFlags})
    local r = evs[5]
    assert.same({"Dispatcher", "ReadyThread", 5678, 1, 2, 1},
                {r.system, r.name, r.TThreadId, r.AdjustReason, r.AdjustIncrement, r.Flag})
    assert.is_nil(r.pid)                                   -- PERFINFO headers carry no ids
    local c = evs[6]
    assert.same({"Thread", "CSwitch", 5678, 0, 9, 0, 6, 1, 5, 3, 42},
                {c.system, c.name, c.NewThreadId, c.OldThreadId, c.NewThreadPriority,
                 c.OldThreadPriority, c.OldThreadWaitReason, c.OldThreadWaitMode,
                 c.OldThreadState, c.OldThreadWaitIdealProcessor, c.NewThreadWaitTime})
    local s = evs[7]
    assert.same({"Thread", "Stop", 1234, 5678, 1}, {s.system, s.name, s.pid, s.tid, s.cpu})
    local e = evs[8]
    assert.same({"TestProv", "Arrays", 7, 1, 4, "11111111-1111-1111-1111-111111111111"},
                {e.system, e.name, e.id, e.version, e.level, e.provider})
    assert.equal(3, e.n)
    assert.same({10, 20, 30}, e.list)
    assert.same({"a", "bc"}, e.names)
    assert.same({x = -5, y = 2.5}, e.pt)
    assert.is_true(e.ok)
    assert.equal(8080, e.port)
    assert.equal("10.0.0.1", e.ip)
    assert.equal("xyz", e.bin)
    assert.same({{z = 7}, {z = 9}}, e.pts)
  end)

  it("cswitch.lua names the threads of a switch by their processes #linux", function()
    local p = assert(io.popen("timeout 60 lua5.4 examples/cswitch.lua " .. path .. " 2>&1"))
    local out = p:read("a")
    assert.is_true(p:close(), out)
    assert.matches("Context switches in .-: 1 in", out)
    assert.matches("<idle>%s+app%.exe/5678%s+1%s+100%.0%%%s+cpu1 %(1%)", out)
  end)
end)

describe("kernellogger report on a capture spanning a century #linux", function()
  it("a capture damaged mid-stream gives a clean error, exit status 1", function()
    local out = tmpfile()
    H.write(out, with_timestamp(0))
    local p = assert(io.popen("timeout 60 lua5.4 bin/kernellogger report " .. out .. " 2>&1"))
    local text = p:read("a")
    local ok, _, status = p:close()
    assert.is_falsy(ok, text)
    assert.equal(1, status)
    assert.matches("^kernellogger report: read trace " .. out:gsub("%p", "%%%0") .. ": "
                   .. BACK_IN_TIME .. " %[invalid%]\n$", text)
  end)

  it("keeps a bounded number of rate buckets", function()
    -- the built capture's last record moved 100 years on (raw 7000 at 10 MHz)
    local path = built_capture()
    finally(function() os.remove(path) end)
    local data = read(path)
    local at = assert(data:find(string.pack("<i8", 7000), 1, true))
    local far = 7000 + 100 * 365 * 86400 * 10000000
    H.write(path, data:sub(1, at - 1), string.pack("<i8", far), data:sub(at + 8))
    local p = assert(io.popen("timeout 60 lua5.4 bin/kernellogger report --width 64 " .. path .. " 2>&1"))
    local out = p:read("a")
    assert.is_true(p:close(), out)
    assert.matches("events: 8", out)
    assert.matches("events per second over 3153600001 s %(0%.%.0/s, 49275008 s per column%)", out)
    local r = assert(require("kernellogger.report").collect(path))
    assert.equal(4096, #r.per_second)
    assert.equal(3153600001, r.seconds)
  end)
end)
