-- Hardening of the trace.dat reader: damaged files give an error or clean
-- events, never a crash.  Each damaged copy is read in a child process, so
-- a crash fails the test instead of killing busted.  A new bad input is one
-- line in one of the tables below.
local H = require "helpers"

local FIXTURE = "spec/fixtures/tracedat/trappy_raw_trace.dat"  -- 13 pages on CPU 1
local PAGE = 4096

local function le32(v) return string.pack("<I4", v) end
local function le64(v) return string.pack("<I8", v) end

-- Damage written into a data page at `off` (from the page's start).
-- expect: "error" (a read error naming the page's file offset), "either"
-- (an error naming an offset, or clean events), "later" (error for every
-- page of a CPU but its first).
local PAGE_DAMAGE = {
  {what = "commit larger than the page", off = 8, bytes = le64(0x07ffffff), expect = "error"},
  {what = "lost count stored past the page", off = 8, bytes = le64(0xC0000000 | (PAGE - 16)),
   expect = "error"},
  {what = "a long record of length 0", off = 16, bytes = le32(0) .. le32(0), expect = "error"},
  {what = "a long record longer than the page", off = 16, bytes = le32(0) .. le32(1 << 20),
   expect = "error"},
  {what = "padding past the commit", off = 16, bytes = le32(29 | 1 << 5) .. le32(0xfffff),
   expect = "error"},
  {what = "a record of 28 words at the end", off = 16, bytes = le32(28), expect = "either"},
  {what = "a time stamp going back to 0", off = 0, bytes = le64(0), expect = "later"},
  {what = "a time extension of 2^58 ns", off = 16, bytes = le32(30) .. le32(0x7fffffff),
   expect = "either"},
  {what = "an empty commit", off = 8, bytes = le64(0), expect = "clean"},
  {what = "8 random bit flips", off = 0, flips = 8, expect = "either"},
  {what = "32 random bit flips", off = 16, flips = 32, expect = "either"},
}

-- Damage to the headers that libtraceevent would read past its buffers on:
-- the byte at `shift` after the first match of `pattern` becomes `byte`; the
-- open must refuse the copy ("invalid").
local HEADER_DAMAGE = {
  {what = "a NUL inside a printk format line", pattern = "\n0x%x+ : \"", shift = 4,
   byte = "\0"},
  {what = "a printk format line without a colon", pattern = "\n0x%x+ : \"", shift = 20,
   byte = " "},
  {what = "a printk format of one character", pattern = "\n0x%x+ : \"", shift = 24,
   byte = "\n"},
}

-- Truncation points, as functions of the file size and the data pages.
local TRUNCATIONS = {
  function(size) return {0, 1, 9, 10, 17, 100, 4095, 4096, size // 3, size // 2} end,
  function(size) return {size - 1, size - 8, size - PAGE, size - PAGE - 16, size - 2 * PAGE} end,
  function(_, pages)
    local out = {}
    for _, p in ipairs(pages) do out[#out + 1] = p.off; out[#out + 1] = p.off + 20 end
    return out
  end,
}

-- Each CPU's data pages, from trace-cmd's own reading of the CPU table
-- (v6: the flyrecord table; v7: the BUFFER option).
local function data_pages(file)
  local p = assert(io.popen(("trace-cmd dump --flyrecord -i %s 2>&1; " ..
                             "trace-cmd dump --options -i %s 2>&1"):format(H.q(file), H.q(file))))
  local out = p:read("a")
  p:close()
  local pages, seen = {}, {}
  local function add(cpu, off, size)
    for i = 0, tonumber(size) // PAGE - 1 do
      local at = tonumber(off) + i * PAGE
      if not seen[at] then
        seen[at] = true
        pages[#pages + 1] = {cpu = tonumber(cpu), off = at, index = i}
      end
    end
  end
  for off, size, cpu in out:gmatch("(%d+)%s+(%d+)%s+%[offset, size of cpu (%d+)%]") do
    add(cpu, off, size)
  end
  for cpu, off, size in out:gmatch("(%d+) (%d+)%s+(%d+)%s+%[id, data offset and size%]") do
    add(cpu, off, size)
  end
  return pages
end

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local d = f:read("a")
  f:close()
  return d
end

-- The child: reads every file of a list; one line per file:
-- "R <i> open-refused <code>" / "R <i> clean <n>" / "R <i> error <msg>".
local CHILD = [[
  local kl = require "kernellogger"
  local list = ...
  for i, path in ipairs(list) do
    local t, msg, code = kl.open(path)
    if not t then
      print(("R %d open-refused %s %s"):format(i, code, (msg:gsub("\n", " "))))
    else
      local n = 0
      local ok, e = pcall(function()
        for _ in t:events() do n = n + 1 end
        local info, m = t:info()
        if not info then error(m) end
      end)
      t:close()
      if ok then print(("R %d clean %d"):format(i, n))
      else print(("R %d error %s"):format(i, (tostring(e):gsub("\n", " ")))) end
    end
    io.stdout:flush()
  end
  print("DONE")
]]

-- Run the child on files; returns {[i] = {kind, detail}}, failing on a crash.
local function run_child(files)
  local list = {}
  for i, f in ipairs(files) do list[i] = ("%q"):format(f) end
  local cmd = H.lua_cmd(("local f = assert(load(%q)); f({%s})"):format(CHILD,
                        table.concat(list, ",")))
  local p = assert(io.popen("timeout 600 " .. cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, how, st = p:close()
  local res, last = {}, 0
  for i, kind, detail in out:gmatch("R (%d+) (%S+) ?([^\n]*)") do
    res[tonumber(i)] = {kind = kind, detail = detail}
    last = tonumber(i)
  end
  assert(ok and out:find("DONE", 1, true), ("the reader died (%s %s) after case %d of %d: %s")
         :format(how, tostring(st), last, #files, out:sub(-2000)))
  return res
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- The files damaged: the fixture, and its uncompressed v7 conversion (read
-- page by page too).  Compressed v7 files (their chunks) are damaged in
-- spec/reader_v7_spec.lua.
local SOURCES = {
  -- truncated: "refused" (every cut is refused at open: v6 checks its CPU
  -- table against the file size) or "any" (v7 keeps options after the data:
  -- a cut there loses nothing the reader needs)
  {what = "v6", truncated = "refused", make = function() return FIXTURE end},
  {what = "v7 uncompressed", truncated = "any", make = function(dir)
    local out = dir .. "/v7plain.dat"
    assert(os.execute(("trace-cmd convert -i %s --file-version 7 --compression none -o %s " ..
                       ">/dev/null 2>&1"):format(H.q(FIXTURE), H.q(out))))
    return out
  end},
}

for _, src in ipairs(SOURCES) do
describe("hardened trace.dat reader (" .. src.what .. ") #linux #heavy", function()
  local dir, data, pages
  setup(function()
    dir = H.tmpdir()
    local file = src.make(dir)
    data = read_all(file)
    pages = data_pages(file)
  end)
  teardown(function() H.rmtree(dir) end)

  it("finds the data pages of the fixture with trace-cmd", function()
    local per_cpu = {}
    for _, p in ipairs(pages) do per_cpu[p.cpu] = (per_cpu[p.cpu] or 0) + 1 end
    assert.equal(13, per_cpu[1])
    assert.equal(16, #pages)
  end)

  it("reads the same events as libtracecmd through trace-cmd report", function()
    local path = dir .. "/same.dat"
    write(path, data)
    local res = run_child({path})
    local p = assert(io.popen("trace-cmd report -i " .. H.q(path) .. " 2>/dev/null"))
    local n = 0
    for l in p:lines() do if l:match("^%s*%S+%-%d+%s+%[%d+%]") then n = n + 1 end end
    p:close()
    assert.equal("clean", res[1].kind)
    assert.equal(n, tonumber(res[1].detail))
  end)

  it("damage in every page of every CPU: an error naming the page, or clean events", function()
    local files, cases = {}, {}
    local seed = 11
    local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
    for _, dmg in ipairs(PAGE_DAMAGE) do
      for _, pg in ipairs(pages) do
        local b = data
        if dmg.flips then
          for _ = 1, dmg.flips do
            local pos = pg.off + dmg.off + rnd(PAGE - dmg.off) + 1
            b = b:sub(1, pos - 1) .. string.char(b:byte(pos) ~ (1 << rnd(8))) .. b:sub(pos + 1)
          end
        else
          local at = pg.off + dmg.off
          b = b:sub(1, at) .. dmg.bytes .. b:sub(at + #dmg.bytes + 1)
        end
        local path = ("%s/p%d.dat"):format(dir, #files + 1)
        write(path, b)
        files[#files + 1] = path
        cases[#cases + 1] = {dmg = dmg, page = pg}
      end
    end
    local res = run_child(files)
    local errors = 0
    for i, c in ipairs(cases) do
      local r = res[i]
      local label = ("%s in CPU %d page %d (offset %d): %s %s"):format(c.dmg.what, c.page.cpu,
        c.page.index, c.page.off, r and r.kind, r and r.detail)
      assert.is_truthy(r, label)
      local expect = c.dmg.expect
      if expect == "later" then expect = c.page.index > 0 and "error" or "clean" end
      if expect == "error" then
        assert.equal("error", r.kind, label)
        assert.truthy(r.detail:find("offset " .. c.page.off, 1, true), label)
        errors = errors + 1
      elseif expect == "clean" then
        assert.equal("clean", r.kind, label)
      else
        assert.is_true(r.kind == "clean" or (r.kind == "error" and
                       r.detail:find("offset %d+") ~= nil), label)
      end
    end
    assert.is_true(errors >= 5 * #pages, "errors " .. errors)
  end)

  for _, row in ipairs(HEADER_DAMAGE) do
    it("refuses at open: " .. row.what, function()
      local at = assert(data:find(row.pattern))
      local pos = at + row.shift
      local path = dir .. "/h.dat"
      write(path, data:sub(1, pos - 1) .. row.byte .. data:sub(pos + 1))
      local res = run_child({path})
      assert.equal("open-refused", res[1].kind, res[1].detail)
      assert.truthy(res[1].detail:match("^invalid "), res[1].detail)
    end)
  end

  it("refuses every truncated copy at open", function()
    local files, cuts, seen = {}, {}, {}
    for _, fn in ipairs(TRUNCATIONS) do
      for _, cut in ipairs(fn(#data, pages)) do
        if cut >= 0 and cut < #data and not seen[cut] then
          seen[cut] = true
          local path = ("%s/t%d.dat"):format(dir, #files + 1)
          write(path, data:sub(1, cut))
          files[#files + 1] = path
          cuts[#cuts + 1] = cut
        end
      end
    end
    local res = run_child(files)
    for i, cut in ipairs(cuts) do
      local r = res[i]
      assert.is_truthy(r, "cut " .. cut)
      local label = ("cut at %d: %s %s"):format(cut, r.kind, r.detail)
      if src.truncated == "refused" or r.kind == "open-refused" then
        assert.equal("open-refused", r.kind, label)
        assert.truthy(r.detail:match("^invalid "), label)
      elseif r.kind == "error" then
        assert.truthy(r.detail:find("offset %d+"), label)
      else
        assert.equal("clean", r.kind, label)
      end
    end
  end)

  -- The file shrinks while a Trace has it open; each row: the cut, and when.
  local WHILE_OPEN = {
    {what = "emptied before events()", cut = 0, after = 0},
    {what = "cut inside CPU 1's data after 10 events", cut = "cpu1+3", after = 10},
    {what = "cut in the headers after 100 events", cut = 5000, after = 100},
    {what = "emptied before info()", cut = 0, after = -1},
  }
  for _, row in ipairs(WHILE_OPEN) do
    it("a file truncated while open: " .. row.what, function()
      local cut = row.cut
      if cut == "cpu1+3" then
        for _, p in ipairs(pages) do if p.cpu == 1 and p.index == 3 then cut = p.off end end
      end
      local path = dir .. "/open.dat"
      write(path, data)
      local code = ([[
        local kl = require "kernellogger"
        local t = assert(kl.open(%q))
        local n, after, cut = 0, %d, %d
        local function shrink() local f = assert(io.open(%q, "r+b")); f:close()
          os.execute("truncate -s " .. cut .. " %s") end
        local ok, e = pcall(function()
          if after < 0 then shrink(); assert(t:info()); return end
          if after == 0 then shrink() end
          for _ in t:events() do
            n = n + 1
            if n == after then shrink() end
          end
        end)
        print(ok and "clean" or "error", n, ok and "" or e)
      ]]):format(path, row.after, cut, path, path)
      local ok, out = H.run_lua(code)
      assert.is_true(ok, out)
      assert.truthy(out:match("^error"), out)
      assert.truthy(out:find("offset %d+") or out:find("ends at"), out)
    end)
  end

  it("kernellogger report exits 1 with a message on a corrupt later page", function()
    local pg
    for _, p in ipairs(pages) do if p.cpu == 1 and p.index == 5 then pg = p end end
    local path = dir .. "/report.dat"
    write(path, data:sub(1, pg.off + 8) .. le64(0x07ffffff) .. data:sub(pg.off + 17))
    local p = assert(io.popen(("lua5.4 bin/kernellogger report %s 2>&1"):format(H.q(path))))
    local out = p:read("a")
    local _, _, rc = p:close()
    assert.equal(1, rc, out)
    assert.truthy(out:find("offset " .. pg.off, 1, true), out)
  end)
end)
end
