-- Hardening of update(): all or nothing.  After each failed update the
-- tracepoints the instance really has enabled (its set_event file) are
-- those query() lists, and the ring and the state file are as before.  A
-- new bad update is one line of FAILING.
local H = require "helpers"
local kl = require "kernellogger"

local START = { flags = { "sched:sched_process_exec", "sched:sched_process_exit" },
                circular_mb = 2 }

-- Updates that must fail and change nothing.
local FAILING = {
  { what = "a tracepoint that does not exist in the middle of the list",
    upd = { flags = { "sched:sched_switch", "nosuch_sys:nosuch_event", "sched:sched_wakeup" } } },
  { what = "a tracepoint that does not exist at the end",
    upd = { flags = { "sched:sched_switch", "sched:sched_wakeup", "nosuch_sys:nosuch_event" } } },
  { what = "a tracepoint that does not exist first",
    upd = { flags = { "nosuch_sys:nosuch_event", "sched:sched_switch" } } },
  { what = "an event missing from a real system",
    upd = { flags = { "sched:sched_switch", "sched:no_such_event_here" } } },
  { what = "good flags with a file in a missing folder",
    upd = { flags = { "sched:sched_switch" }, file = "/nonexistent_dir_kl/x.dat" } },
  { what = "good flags with a file that is a folder",
    upd = { flags = { "sched:sched_switch" }, file = "/tmp" } },
  { what = "good flags and a ring size with a bad file",
    upd = { flags = { "sched:sched_switch" }, circular_mb = 3, file = "/nonexistent_dir_kl/x.dat" } },
}

-- The instance's enabled tracepoints, sorted "system:event".
local function enabled(name)
  local f = assert(io.open(("%s/instances/%s/set_event"):format(H.tracing, name), "r"))
  local r = {}
  for l in f:lines() do if l ~= "" then r[#r + 1] = l end end
  f:close()
  table.sort(r)
  return r
end

local function sorted(list)
  local r = {}
  for _, x in ipairs(list or {}) do r[#r + 1] = x end
  table.sort(r)
  return r
end

local function ring_kb(name)
  return tonumber(H.read_instance(name, "buffer_size_kb"):match("%d+"))
end

describe("#linux update is all or nothing", function()
  for _, row in ipairs(FAILING) do
    it("refused, nothing changed: " .. row.what, function()
      local name = H.name("hup")
      finally(function() H.cleanup(name) end)
      local opts = { name = name }
      for k, v in pairs(START) do opts[k] = v end
      local s = assert(kl.start(opts))
      local q0 = assert(s:query())
      local kb0 = ring_kb(name)
      assert.same(sorted(q0.tracepoints), enabled(name))
      local ok, r, msg, code = pcall(s.update, s, row.upd)
      if ok then
        assert.is_nil(r, "the update succeeded")
        assert.is_string(msg)
        assert.is_string(code)
      end
      local q1 = assert(s:query())
      assert.same(sorted(q0.tracepoints), sorted(q1.tracepoints))
      assert.same(sorted(q1.tracepoints), enabled(name))
      assert.same(q0.flags, q1.flags)
      assert.equal(q0.file, q1.file)
      assert.equal(q0.circular_mb, q1.circular_mb)
      assert.equal(kb0, ring_kb(name))
      assert.is_table(s:stop{ file = false })
    end)
  end

  it("update{file = another running session's file} is bad_path naming it; nothing changes",
     function()
    local a, b = H.name("hupa"), H.name("hupb")
    local dir = H.tmpdir()
    finally(function()
      H.cleanup(a)
      H.cleanup(b)
      H.rmtree(dir)
    end)
    local sa = assert(kl.start{name = a, flags = START.flags, file = dir .. "/a.dat", max_mb = 8})
    local sb = assert(kl.start{name = b, flags = START.flags, circular_mb = 2})
    local r, msg, code = sb:update{file = dir .. "/a.dat", overwrite = true}
    assert.is_nil(r)
    assert.equal("bad_path", code)
    assert.matches(dir .. "/a.dat is the file of running session " .. a, msg, 1, true)
    assert.is_nil(assert(sb:query()).file)
    assert.is_table(sb:stop{file = false})
    assert.is_table(sa:stop())
  end)

  it("a good update still applies, and the instance agrees with query()", function()
    local name = H.name("hup")
    finally(function() H.cleanup(name) end)
    local s = assert(kl.start { name = name, flags = { "sched:sched_process_exec" } })
    assert(s:update { flags = { "sched:sched_switch", "sched:sched_wakeup" } })
    local q = assert(s:query())
    assert.same({ "sched:sched_switch", "sched:sched_wakeup" }, sorted(q.tracepoints))
    assert.same(sorted(q.tracepoints), enabled(name))
    assert.is_table(s:stop{ file = false })
  end)
end)
