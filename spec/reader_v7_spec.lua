-- Compressed trace.dat v7 files and files whose options correct timestamps,
-- read by our own reader (csrc/ftrace/zchunks.c, csrc/ftrace/tsfix.c): the
-- files are made at test time with the real tool (`trace-cmd convert`, one
-- per algorithm it offers) and compared event by event with the same data
-- uncompressed, and counted against `trace-cmd report`.  Damaged chunks are
-- read in a child process, so a crash fails the test instead of busted.
local H = require "helpers"
local kl = require "kernellogger"

local FIXTURE = "spec/fixtures/tracedat/trappy_raw_trace.dat"

-- The algorithms this trace-cmd writes (`trace-cmd list -c`).
local function algorithms()
  local p = assert(io.popen("trace-cmd list -c 2>&1"))
  local out = p:read("a")
  p:close()
  local list = {}
  for name in out:gmatch("\n%s+(%w+),") do list[#list + 1] = name end
  assert(#list > 0, "trace-cmd offers no compression: " .. out)
  return list
end

local function convert(src, dst, alg)
  assert(os.execute(("trace-cmd convert -i %s --file-version 7 --compression %s -o %s " ..
                     ">/dev/null 2>&1"):format(H.q(src), alg, H.q(dst))))
end

-- Every event as one line: header and fields sorted by name.
local function lines(path)
  local t <close> = assert(kl.open(path))
  local out = {}
  for ev in t:events() do
    local f = {}
    for k, v in pairs(ev) do
      if type(v) == "table" then v = table.concat(v, ",") end
      f[#f + 1] = k .. "=" .. tostring(v)
    end
    table.sort(f)
    out[#out + 1] = table.concat(f, " ")
  end
  return out
end

local function report_count(path)
  local p = assert(io.popen("trace-cmd report -i " .. H.q(path) .. " 2>/dev/null"))
  local n = 0
  -- (a task name may hold spaces: "rs:main Q:Reg-238 [003] ...")
  for l in p:lines() do if l:match("^%s*%S.-%-%d+%s+%[%d+%]") then n = n + 1 end end
  p:close()
  return n
end

-- Compares every event (lost-events markers included); returns the count of
-- the others, which is what trace-cmd report prints a line for.
local function same_events(a, b)
  local x, y = lines(a), lines(b)
  local n = 0
  assert.equal(#x, #y)
  for i = 1, #x do
    if x[i] ~= y[i] then assert.equal(x[i], y[i], "event " .. i) end
    if not x[i]:find("name=lost_events", 1, true) then n = n + 1 end
  end
  return n
end

describe("compressed trace.dat v7 #linux", function()
  local F = H.fixture("v7z")

  -- Every fixture, converted to v7 plain and compressed. trappy_trace.dat
  -- comes from a 32-bit machine: its v7 conversion says long size 8 while
  -- its pages keep a 4-byte commit word (header_page has the width).
  local EXPECT = {["trappy_raw_trace.dat"] = 757, ["trappy_trace.dat"] = 525,
                  ["trappy_trace_idle.dat"] = 43}
  for fixture, count in pairs(EXPECT) do
    for _, alg in ipairs{"none", table.unpack(algorithms())} do
      it(("reads %s converted to v7 (%s) as its v6 original"):format(fixture, alg), function()
        local src = "spec/fixtures/tracedat/" .. fixture
        local z = F.tmpdir() .. "/c.dat"
        convert(src, z, alg)
        local n = same_events(src, z)
        assert.equal(count, n)
        assert.equal(report_count(z), n)
      end)
    end
  end

  for _, alg in ipairs(algorithms()) do
    it("reads the fixture compressed with " .. alg .. " as its v6 original", function()
      local z = F.tmpdir() .. "/z.dat"
      convert(FIXTURE, z, alg)
      local n = same_events(FIXTURE, z)
      assert.equal(757, n)
      assert.equal(report_count(z), n)
    end)

    it("reads a capture of our own compressed with " .. alg, function()
      local name, dir = F.name(), F.tmpdir()
      local plain, z = dir .. "/own.dat", dir .. "/own_z.dat"
      local s = assert(kl.start{name = name, circular_mb = 8, flags = {"cswitch", "process"}})
      H.markers(name, 1, 3000, 20)
      os.execute("ls / >/dev/null")
      assert(s:stop(plain))
      convert(plain, z, alg)
      local n = same_events(plain, z)
      assert.is_true(n >= 3000, "events: " .. n)
      assert.equal(report_count(z), n)
      local seq, t = 0, assert(kl.open(z))
      for ev in t:events{names = "print"} do
        local i = tonumber(tostring(ev.buf or ""):match("klseq (%d+)"))
        if i then
          assert.equal(seq + 1, i)
          seq = i
        end
      end
      t:close()
      assert.equal(3000, seq)
    end)
  end
end)

-- Insert one option (id, body padded to 4090 bytes: 4096 with its header)
-- after the "options  " tag of a v6 file; the CPU table moves by 4096.
local function with_option(src, dst, id, body)
  local d = assert(io.open(src, "rb")):read("a")
  local o = assert(d:find("options  \0", 1, true))
  local ncpus = string.unpack("<I4", d, o - 4)
  local f = assert(d:find("flyrecord\0", o, true)) + 10
  local out = {d:sub(1, o + 9), string.pack("<I2I4", id, 4090), body,
               string.rep("\0", 4090 - #body), d:sub(o + 10, f - 1)}
  local p = f
  for _ = 1, ncpus do
    local off, size = string.unpack("<I8I8", d, p)
    out[#out + 1] = string.pack("<I8I8", off + 4096, size)
    p = p + 16
  end
  out[#out + 1] = d:sub(p)
  local w = assert(io.open(dst, "wb"))
  w:write(table.concat(out))
  w:close()
end

local function times(path)
  local t <close> = assert(kl.open(path))
  local out = {}
  for ev in t:events() do out[#out + 1] = ev.time end
  return out
end

-- The first timestamp trace-cmd report prints (microseconds, as text).
local function report_first(path)
  local p = assert(io.popen("trace-cmd report -i " .. H.q(path) .. " 2>/dev/null"))
  for l in p:lines() do
    local s, us = l:match("%]%s+(%d+)%.(%d+):")
    if s then
      p:close()
      return s .. "." .. us
    end
  end
  p:close()
end

-- report rounds to the nearest microsecond
local function as_report(ns)
  local us = (ns + 500) // 1000
  return ("%d.%06d"):format(us // 1000000, us % 1000000)
end

-- Timestamp corrections: each row's option, and what it does to a time.
local TS_OPTIONS = {
  {what = "OFFSET +1 s", id = 7, body = "1000000000\0", fix = function(t) return t + 1000000000 end},
  {what = "OFFSET -5 ms", id = 7, body = "-5000000\0", fix = function(t) return t - 5000000 end},
  {what = "DATE 0x10 us", id = 1, body = "0x10\0", fix = function(t) return t + 16000 end},
  {what = "TSC2NSEC x3 >> 1", id = 14, body = string.pack("<I4I4I8", 3, 1, 1 << 40),
   fix = function(t) return t * 3 >> 1 end},
}

describe("timestamp-correcting options #linux", function()
  local F = H.fixture("v7t")
  local base
  setup(function() base = times(FIXTURE) end)

  for _, row in ipairs(TS_OPTIONS) do
    it("applies " .. row.what .. " as trace-cmd report does", function()
      local path = F.tmpdir() .. "/opt.dat"
      with_option(FIXTURE, path, row.id, row.body)
      local got = times(path)
      assert.equal(#base, #got)
      for i = 1, #base do assert.equal(row.fix(base[i]), got[i]) end
      assert.equal(report_first(path), as_report(got[1]))
    end)
  end

  it("refuses TIME_SHIFT at open, naming the option", function()
    local path = F.tmpdir() .. "/shift.dat"
    with_option(FIXTURE, path, 12, string.pack("<I8I4I4", 1, 0, 0))
    local t, msg, code = kl.open(path)
    assert.is_nil(t)
    assert.equal("not_supported", code)
    assert.truthy(msg:find("TIME_SHIFT", 1, true), msg)
  end)

  it("refuses a malformed OFFSET at open", function()
    local path = F.tmpdir() .. "/bad.dat"
    with_option(FIXTURE, path, 7, "soon\0")
    local t, msg = kl.open(path)
    assert.is_nil(t)
    assert.truthy(msg:find("OFFSET", 1, true), msg)
  end)
end)

-- The child: open and read each file; one line per file.
local CHILD = [[
  local kl = require "kernellogger"
  for i, path in ipairs({...}) do
    local t, msg, code = kl.open(path)
    if not t then
      print(("R %d refused %s %s"):format(i, code, (msg:gsub("\n", " "))))
    else
      local n = 0
      local ok, e = pcall(function() for _ in t:events() do n = n + 1 end end)
      t:close()
      if ok then print(("R %d clean %d"):format(i, n))
      else print(("R %d error %s"):format(i, (tostring(e):gsub("\n", " ")))) end
    end
    io.stdout:flush()
  end
  print("DONE")
]]

local function run_child(files)
  local args = {}
  for i, f in ipairs(files) do args[i] = ("%q"):format(f) end
  local cmd = H.lua_cmd(("local f = assert(load(%q)); f(%s)"):format(CHILD,
                        table.concat(args, ",")))
  local p = assert(io.popen("timeout 300 " .. cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  assert(ok and out:find("DONE", 1, true), "the reader died: " .. out:sub(-2000))
  local res = {}
  for i, kind, detail in out:gmatch("R (%d+) (%S+) ?([^\n]*)") do
    res[tonumber(i)] = {kind = kind, detail = detail}
  end
  return res
end

-- Where CPU 1's chunks start (`trace-cmd dump --flyrecord`).
local function cpu1_data(path)
  local p = assert(io.popen("trace-cmd dump --flyrecord -i " .. H.q(path) .. " 2>&1"))
  local out = p:read("a")
  p:close()
  local off, size = out:match("\n%s+1 (%d+)%s+(%d+)%s+%[id, data offset and size%]")
  assert(off, out)
  return tonumber(off), tonumber(size)
end

local function patch(data, at, bytes)  -- at: 0-based file offset
  return data:sub(1, at) .. bytes .. data:sub(at + #bytes + 1)
end

-- Damage to CPU 1's first chunk (count u32 at `off`, then compressed size
-- u32, decompressed size u32, data).  expect "refused": nil, msg, code at
-- open; "error": a Lua error naming a file offset during events().
local CHUNK_DAMAGE = {
  {what = "a chunk count past the data", expect = "error",
   make = function(d, off) return patch(d, off, string.pack("<I4", 0xffffffff)) end},
  {what = "a compressed size past the end of the file", expect = "error",
   make = function(d, off) return patch(d, off + 4, string.pack("<I4", 0x7fffffff)) end},
  {what = "a huge decompressed size", expect = "error",
   make = function(d, off) return patch(d, off + 8, string.pack("<I4", 0xfffffff0)) end},
  {what = "a decompressed size one byte short", expect = "error",
   make = function(d, off)
     local u = string.unpack("<I4", d, off + 9)
     return patch(d, off + 8, string.pack("<I4", u - 1))
   end},
  {what = "a decompressed size of zero", expect = "error",
   make = function(d, off) return patch(d, off + 8, string.pack("<I4", 0)) end},
  {what = "garbage compressed bytes", expect = "error",
   make = function(d, off) return patch(d, off + 12, string.rep("\x55", 64)) end},
  {what = "a chunk cut by the end of the file", expect = "refused",
   make = function(d, off) return d:sub(1, off + 40) end},
}

describe("damaged compressed chunks #linux", function()
  local F = H.fixture("v7d")

  for _, alg in ipairs(algorithms()) do
    it("each damage (" .. alg .. "): refused at open or an error naming the offset", function()
      local dir = F.tmpdir()
      local z = dir .. "/z.dat"
      convert(FIXTURE, z, alg)
      local data = assert(io.open(z, "rb")):read("a")
      local off, size = cpu1_data(z)
      local files = {}
      for i, row in ipairs(CHUNK_DAMAGE) do
        files[i] = ("%s/d%d.dat"):format(dir, i)
        local w = assert(io.open(files[i], "wb"))
        w:write(row.make(data, off))
        w:close()
      end
      local res = run_child(files)
      for i, row in ipairs(CHUNK_DAMAGE) do
        local r = assert(res[i], row.what .. ": no result")
        assert.equal(row.expect, r.kind, row.what .. ": " .. r.detail)
        if r.kind == "error" then
          -- the offset of the count or of the chunk, inside CPU 1's data
          local at = tonumber(r.detail:match("file offset (%d+)"))
          assert.truthy(at and at >= off and at < off + 4 + size, row.what .. ": " .. r.detail)
        else
          assert.truthy(r.detail:match("^invalid "), row.what .. ": " .. r.detail)
        end
      end
    end)
  end
end)

describe("compressed v7 memory #linux #heavy", function()
  local F = H.fixture("v7m")
  it("stays flat while a large compressed capture is read", function()
    if (os.getenv("LD_PRELOAD") or ""):match("asan") then
      pending("peak RSS means nothing under AddressSanitizer")
      return
    end
    local name, dir = F.name(), F.tmpdir()
    local plain, z = dir .. "/big.dat", dir .. "/big_z.dat"
    local s = assert(kl.start{name = name, file = plain, circular_mb = 48, flags = {"cswitch"}})
    local m = assert(io.open(("%s/instances/%s/trace_marker"):format(H.tracing, name), "w"))
    for i = 1, 400000 do m:write("klt v7 memory ", i, " ", ("x"):rep(40), "\n"); m:flush() end
    m:close()
    assert(s:stop())
    local size = assert(io.open(plain, "rb")):seek("end")
    assert.is_true(size > 16 * 1024 * 1024, "capture size " .. size)
    convert(plain, z, algorithms()[1])
    local n, growth = H.read_growth(z)
    assert.is_true(n > 200000, "events: " .. n)
    -- the decompressed data is `size` bytes; memory must not follow it
    assert.is_true(growth < size / 4, ("peak grew by %d bytes for %d bytes of data"):format(
      growth, size))
    print(("compressed v7 read: %d events, %d MB of data, peak grew by %.1f MB"):format(
      tonumber(n), size >> 20, growth / 1048576))
  end)
end)
