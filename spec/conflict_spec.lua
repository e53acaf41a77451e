-- Conflict policies, against the real kernel, with real rival processes.
local H = require "helpers"

local kl = require "kernellogger"
local core = require "kernellogger.core"
local conflict = require "kernellogger.conflict"

-- A rival process that starts `name` with `flags`, prints "READY <pid>",
-- then holds the session for `hold` seconds (or until killed) and stops it.
local function rival(name, hold, flags)
  local code = ([[
    local s, m, c = kl.start{ name = %q, flags = {%s} }
    if not s then io.write("FAIL ", tostring(c), " ", m, "\n") os.exit(1) end
    io.write("READY ", core._getpid(), "\n") io.flush()
    core._sleep(%f)
    s:stop()
    io.write("DONE\n")
  ]]):format(name, flags or '"cswitch"', hold)
  local cmd = H.kl_cmd('local core = require "kernellogger.core"; ' .. code)
  local f = assert(io.popen(cmd, "r"))
  local line = f:read("l")
  local pid = line and tonumber(line:match("^READY (%d+)"))
  assert(pid, "rival did not start: " .. tostring(line))
  return { f = f, pid = pid }
end

local function finish(r)
  local rest = r.f:read("a")
  r.f:close()
  return rest
end

-- The same policies inside one process: these run on Linux against the kernel
-- and under Wine against the ETW contract simulator.
describe("conflict policies within one process", function()
  local F = H.fixture("cfl1")

  it("fail, takeover, attach, private, a function and wait's timeout", function()
    local name = F.uname()
    local s1 = assert(kl.start { name = name, flags = { "cswitch" } })
    assert.is_true(s1.owned)

    local r, msg, code, holder, how = kl.start { name = name, flags = { "cswitch" } }
    assert.is_nil(r)
    assert.are.equal("already_exists", code)
    assert.is_string(msg)
    assert.are.equal(name, holder.name)
    assert.are.equal("fail", how.policy)

    local s2, how2 = kl.start { name = name, flags = { "dispatcher" }, on_conflict = "takeover" }
    assert.is_not_nil(s2, how2)
    assert.are.equal(name, how2.displaced.name)
    assert.are.same({ "cswitch" }, how2.displaced.flags)
    assert.are.same({ "dispatcher" }, assert(kl.query(name)).flags)

    do
      local a <close>, how3 = assert(kl.start { name = name, flags = { "dispatcher" },
                                                on_conflict = "attach" })
      assert.is_false(a.owned)
      assert.is_true(how3.attached)
    end
    assert.is_table(kl.query(name))   -- closing the attached handle stopped nothing

    local x, xmsg, xcode = kl.start { name = name, flags = { "tcpip" }, on_conflict = "attach" }
    assert.is_nil(x)
    assert.are.equal("already_exists", xcode)
    assert.matches("does not record tcpip", xmsg, 1, true)

    local p, how4 = assert(kl.start { name = name, flags = { "cswitch" }, on_conflict = "private" })
    F.track(p.name)
    assert.is_true(how4.private)
    assert.are.equal(name .. "_" .. core._getpid(), p.name)
    assert.is_table(p:stop())

    local f, how5 = kl.start { name = name, flags = { "dispatcher" },
                               on_conflict = function() return "attach" end }
    assert.is_not_nil(f, how5)
    assert.is_false(f.owned)
    assert.are.same({ "attach" }, how5.decisions)

    local w, wmsg, wcode, _, how6 = kl.start { name = name, on_conflict = "wait", timeout = 0.3,
                                               backoff = { initial = 0.01, max = 0.05 } }
    assert.is_nil(w)
    assert.are.equal("already_exists", wcode)
    assert.matches("gave up", wmsg, 1, true)
    assert.is_true(how6.attempts >= 2)

    -- takeover_stale never takes a session whose owner is alive or unknown
    local t, _, tcode = kl.start { name = name, on_conflict = "takeover_stale" }
    assert.is_nil(t)
    assert.are.equal("already_exists", tcode)
    assert.is_table(s2:stop())
  end)
end)

describe("#linux conflict policies", function()
  local F = H.fixture("cfl")

  it("rejects unknown policies, bad timeouts and bad backoff fields", function()
    assert.has_error(function() kl.start { name = F.uname(), on_conflict = "maybe" } end)
    assert.has_error(function() kl.start { name = F.uname(), on_conflict = 3 } end)
    assert.has_error(function() kl.start { name = F.uname(), timeout = -1 } end)
    assert.has_error(function() kl.start { name = F.uname(), backoff = { slow = 1 } } end)
    assert.has_error(function() kl.start { name = F.uname(), backoff = { jitter = 2 } } end)
    -- the core's argument errors point at the caller, not into the Lua layer
    local ok, e = pcall(function() return kl.start { name = F.uname(), flags = { "nosuch" } } end)
    assert.is_false(ok)
    assert.matches("conflict_spec.lua:%d+: bad argument #1 to 'start' %(flags: unknown flag", e)
    assert.has_error(function() kl.start "name" end,
      "bad argument #1 to 'start' (table expected, got string)")
  end)

  it("reports what happened even when there was no conflict", function()
    local name = F.uname()
    local s, how = assert(kl.start { name = name, flags = { "cswitch" }, on_conflict = "wait" })
    assert.are.same("wait", how.policy)
    assert.are.equal(1, how.attempts)
    assert.are.equal(name, how.name)
    assert.is_nil(how.displaced)
    assert.is_false(how.attached)
    assert.is_true(s.owned)
    s:stop()
  end)

  it("fail (the default): nil, message, 'already_exists', the holder's query table", function()
    local name = F.uname()
    local s = assert(kl.start { name = name, flags = { "cswitch" } })
    local r, msg, code, holder, how = kl.start { name = name, flags = { "cswitch" } }
    assert.is_nil(r)
    assert.are.equal("already_exists", code)
    assert.matches(name, msg, 1, true)
    assert.is_table(holder)
    assert.are.equal(name, holder.name)
    assert.are.equal(core._getpid(), holder.owner_pid)
    assert.are.equal("fail", how.policy)
    assert.are.equal(1, how.attempts)
    s:stop()
  end)

  it("wait: starts once the holder stops, after backoff", function()
    local name = F.uname()
    local r = rival(name, 0.8)
    local t0 = core._monotime()
    local s, how = kl.start { name = name, flags = { "cswitch" }, on_conflict = "wait",
                              timeout = 20, backoff = { initial = 0.02, max = 0.2 } }
    local dt = core._monotime() - t0
    finish(r)
    assert.is_not_nil(s, how)
    assert.is_true(how.attempts > 1)
    assert.is_true(dt > 0.3, "returned before the holder could have stopped")
    assert.is_table(how.holder)
    assert.are.equal(r.pid, how.holder.owner_pid)
    assert.are.equal(core._getpid(), s:query().owner_pid)
    s:stop()
  end)

  it("wait: gives up at the timeout with already_exists and leaves the holder alone", function()
    local name = F.uname()
    local r = rival(name, 3)
    local t0 = core._monotime()
    local s, msg, code, holder, how = kl.start { name = name, on_conflict = "wait",
                                                 timeout = 0.5 }
    local dt = core._monotime() - t0
    assert.is_nil(s)
    assert.are.equal("already_exists", code)
    assert.matches("gave up", msg, 1, true)
    assert.are.equal(r.pid, holder.owner_pid)
    assert.is_true(dt >= 0.45 and dt < 2.5, "waited " .. dt)
    assert.is_true(how.attempts >= 2)
    assert.is_true(H.instance_exists(name))
    assert.matches("DONE", finish(r))
  end)

  it("takeover: stops the holder, starts, returns the displaced session's final stats", function()
    local name = F.uname()
    local r = rival(name, 30)
    local s, how = kl.start { name = name, flags = { "dispatcher" }, on_conflict = "takeover" }
    assert.is_not_nil(s, how)
    assert.is_table(how.displaced)
    assert.are.equal(name, how.displaced.name)
    assert.are.same({ "cswitch" }, how.displaced.flags)
    assert.are.same({ "dispatcher" }, s:query().flags)
    assert.are.equal(core._getpid(), s:query().owner_pid)
    s:stop()
    os.execute("kill " .. r.pid)
    finish(r)
  end)

  it("takeover_stale: takes over after kill -9 of the owner, but never a live owner", function()
    local name = F.uname()
    local r = rival(name, 60)
    -- a live owner is left alone
    local s, msg, code, holder = kl.start { name = name, on_conflict = "takeover_stale" }
    assert.is_nil(s)
    assert.are.equal("already_exists", code)
    assert.matches("not known to be dead", msg, 1, true)
    assert.is_true(holder.owner_alive)
    assert.is_true(H.instance_exists(name))
    -- kill -9: the session outlives its owner, which is now recorded dead
    os.execute("kill -9 " .. r.pid)
    finish(r)
    local q = assert(kl.query(name))
    assert.is_false(q.owner_alive)
    local s2, how = kl.start { name = name, flags = { "cswitch" }, on_conflict = "takeover_stale" }
    assert.is_not_nil(s2, how)
    assert.are.equal(r.pid, how.displaced.owner_pid)
    assert.is_true(s2:query().owner_alive)
    s2:stop()
  end)

  it("attach: uses the running session when it records the needed flags, never stops it",
  function()
    local name = F.uname()
    local r = rival(name, 30, '"cswitch", "dispatcher"')
    do
      local a <close>, how = assert(kl.start { name = name, flags = { "context_switch" },
                                               on_conflict = "attach" })
      assert.is_false(a.owned)
      assert.is_true(how.attached)
      assert.are.equal(r.pid, a:query().owner_pid)
    end
    -- closing the attached handle left the holder running
    assert.is_true(H.instance_exists(name))
    assert.are.equal(r.pid, assert(kl.query(name)).owner_pid)
    -- a flag the holder does not record: no attach
    local s, msg, code = kl.start { name = name, flags = { "tcpip" }, on_conflict = "attach" }
    assert.is_nil(s)
    assert.are.equal("already_exists", code)
    assert.matches("does not record tcpip", msg, 1, true)
    os.execute("kill " .. r.pid)
    finish(r)
    F.cleanup(name) -- the killed rival's session: it outlives its owner by design
  end)

  it("private: runs a separately named session beside the holder", function()
    local name = F.uname()
    local r = rival(name, 30)
    local s, how = assert(kl.start { name = name, flags = { "cswitch" }, on_conflict = "private" })
    F.track(s.name)
    assert.is_true(how.private)
    assert.are_not.equal(name, s.name)
    assert.are.equal(name .. "_" .. core._getpid(), s.name)
    assert.are.equal(s.name, how.name)
    assert.is_true(H.instance_exists(name) and H.instance_exists(s.name))
    s:stop()
    assert.is_false(H.instance_exists(s.name))
    os.execute("kill " .. r.pid)
    finish(r)
    F.cleanup(name) -- the killed rival's session: it outlives its owner by design
  end)

  it("a function decides: called with (err, attempt, holder); its answers are recorded",
  function()
    local name = F.uname()
    local r = rival(name, 30)
    local calls = {}
    local s, how = kl.start { name = name, flags = { "cswitch" }, on_conflict =
      function(err, attempt, holder)
        calls[#calls + 1] = { code = err.code, attempt = attempt, pid = holder and holder.owner_pid }
        if attempt == 1 then return "retry" end
        if attempt == 2 then return 0.05 end
        return "takeover"
      end }
    assert.is_not_nil(s, how)
    assert.are.equal("function", how.policy)
    assert.are.same({ "retry", 0.05, "takeover" }, how.decisions)
    assert.are.equal(3, #calls)
    for i, c in ipairs(calls) do
      assert.are.equal("already_exists", c.code)
      assert.are.equal(i, c.attempt)
      assert.are.equal(r.pid, c.pid)
    end
    assert.is_table(how.displaced)
    s:stop()
    os.execute("kill " .. r.pid)
    finish(r)
    -- nil means fail; a bad answer raises
    local h = assert(kl.start { name = name })
    local x, _, code = kl.start { name = name, on_conflict = function() return nil end }
    assert.is_nil(x)
    assert.are.equal("already_exists", code)
    assert.has_error(function() kl.start { name = name, on_conflict = function() return "nap" end } end)
    h:stop()
  end)

  it("passes other errors through at once", function()
    local name = F.uname()
    local s, msg, code, holder, how = kl.start { name = name, file = "/nonexistent/dir/x.dat",
                                                 on_conflict = "wait" }
    assert.is_nil(s)
    assert.are.equal("bad_path", code)
    assert.is_string(msg)
    assert.is_nil(holder)
    assert.are.equal(1, how.attempts)
    assert.is_false(H.instance_exists(name))
  end)
end)

describe("#linux #heavy 16 processes racing for one session name", function()
  local F = H.fixture()
  local name, dir
  before_each(function()
    name = F.name("race")
    dir = F.dir
  end)

  -- Launch n children that wait at a barrier (a file appearing), then run `body`.
  local function race(n, body)
    local go = dir .. "/go"
    os.remove(go)
    local kids = {}
    for i = 1, n do
      local code = ([[
        local core = require "kernellogger.core"
        local t0 = core._monotime()
        while not io.open(%q) do
          core._sleep(0.005)
          if core._monotime() - t0 > 30 then io.write("NOGO\n") os.exit(3) end
        end
        local id = %d
        %s
      ]]):format(go, i, body)
      kids[i] = assert(io.popen(H.kl_cmd(code), "r"))
    end
    core._sleep(0.5)   -- let them reach the barrier
    local f = assert(io.open(go, "w"))
    f:close()
    local outs = {}
    for i, k in ipairs(kids) do
      outs[i] = k:read("a")
      k:close()
    end
    return outs
  end

  it("under fail: exactly one wins, fifteen get already_exists", function()
    local outs = race(16, ([[
      local s, m, c = kl.start{ name = %q, flags = {"cswitch"} }
      if s then
        io.write("WIN\n") io.flush()
        core._sleep(3)
        assert(s:stop())
      else
        io.write("LOSE ", tostring(c), "\n")
      end
    ]]):format(name))
    local wins, lost = 0, 0
    for _, o in ipairs(outs) do
      if o:match("^WIN") then wins = wins + 1
      elseif o:match("^LOSE already_exists") then lost = lost + 1
      else error("unexpected child output: " .. o) end
    end
    assert.are.equal(1, wins)
    assert.are.equal(15, lost)
    assert.is_false(H.instance_exists(name))
    assert.is_false(H.state_exists(name))
  end)

  it("under wait: all sixteen run in turn, never two at once, nothing left behind", function()
    local outs = race(16, ([[
      local s, how = kl.start{ name = %q, flags = {"cswitch"}, on_conflict = "wait",
                               timeout = 120, backoff = { initial = 0.02, max = 0.25 } }
      if not s then io.write("FAIL ", tostring(how), "\n") os.exit(1) end
      local a = core._monotime()
      core._sleep(0.1)
      local b = core._monotime()
      local st, sm = s:stop()
      if not st then io.write("STOPFAIL ", tostring(sm), "\n") os.exit(1) end
      io.write(("RAN %%.6f %%.6f %%d\n"):format(a, b, how.attempts))
    ]]):format(name))
    local spans = {}
    local attempts = 0
    for _, o in ipairs(outs) do
      local a, b, n = o:match("^RAN (%S+) (%S+) (%d+)")
      assert(a, "child failed: " .. o)
      spans[#spans + 1] = { tonumber(a), tonumber(b) }
      attempts = attempts + tonumber(n)
    end
    assert.are.equal(16, #spans)
    table.sort(spans, function(x, y) return x[1] < y[1] end)
    for i = 2, #spans do
      assert.is_true(spans[i][1] >= spans[i - 1][2], "two holders at once")
    end
    assert.is_true(attempts > 16)   -- they did conflict
    assert.is_false(H.instance_exists(name))
    assert.is_false(H.state_exists(name))
  end)
end)

describe("conflict.delay", function()
  it("grows exponentially to the ceiling, with jitter below the nominal value", function()
    local b = { initial = 0.1, max = 1, factor = 2, jitter = 0 }
    assert.are.equal(0.1, conflict.delay(b, 1))
    assert.are.equal(0.4, conflict.delay(b, 3))
    assert.are.equal(1, conflict.delay(b, 10))
    b.jitter = 0.5
    local lo, hi = math.huge, 0
    for _ = 1, 200 do
      local d = conflict.delay(b, 2)
      lo, hi = math.min(lo, d), math.max(hi, d)
    end
    assert.is_true(lo >= 0.1 and hi <= 0.2 and hi - lo > 0.02)
  end)
end)
