-- capture{}: blocking capture, progress line, Ctrl-C.
local H = require "helpers"

local kl = require "kernellogger"
local core = require "kernellogger.core"
local capture = require "kernellogger.capture"

describe("capture helpers", function()
  it("formats bytes and a progress line", function()
    assert.are.equal("512 B", capture.human_bytes(512))
    assert.are.equal("1.5 KiB", capture.human_bytes(1536))
    assert.are.equal("2.0 MiB", capture.human_bytes(2 * 1024 * 1024))
    local line = capture.progress_line({ name = "x", entries = 42, events_lost = 0,
                                         bytes = 2048 }, 1.25, 10)
    assert.matches("x", line, 1, true)
    assert.matches("events 42", line, 1, true)
    assert.matches("lost 0", line, 1, true)
    assert.matches("2.0 KiB", line, 1, true)
    assert.matches("1.2/10s", line, 1, true)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() kl.capture("x") end)
    assert.has_error(function() kl.capture { seconds = -1 } end)
    assert.has_error(function() kl.capture { stop_when = 3 } end)
    assert.has_error(function() kl.capture { interval = 0 } end)
  end)
end)

describe("#linux capture", function()
  local F = H.fixture("cap")
  local dir
  before_each(function() dir = F.dir end)

  it("records for `seconds`, stops, and returns the final stats and the file", function()
    local name = F.uname()
    local file = dir .. "/secs.dat"
    local t0 = core._monotime()
    local st, path, how = kl.capture { name = name, flags = { "cswitch" }, file = file,
                                       seconds = 1, interval = 0.2 }
    local dt = core._monotime() - t0
    assert.is_table(st, path)
    assert.are.equal(file, path)
    assert.is_true(dt >= 1 and dt < 4, "took " .. dt)
    assert.is_false(st.interrupted)
    assert.is_true(st.events > 0)
    assert.are.equal(0, st.events_lost)
    assert.are.equal("fail", how.policy)
    assert.is_true(H.exists(file))
    assert.is_true(H.tracecmd_ok(file))
    assert.is_false(H.instance_exists(name))
  end)

  it("stops when stop_when says so, passing the live query and the elapsed time", function()
    local name = F.uname()
    local seen = 0
    local st = assert(kl.capture { name = name, flags = { "cswitch" }, file = dir .. "/sw.dat",
      interval = 0.05, seconds = 20,
      stop_when = function(q, elapsed)
        assert.are.equal(name, q.name)
        assert.is_number(elapsed)
        seen = seen + 1
        return q.entries > 0 and seen >= 3
      end })
    assert.is_true(st.elapsed < 10)
    assert.are.equal(3, seen)
  end)

  it("ends with not_found when someone else stops the session", function()
    local name = F.uname()
    local calls = 0
    local st, msg, code = kl.capture { name = name, flags = { "cswitch" }, file = dir .. "/gone.dat",
      seconds = 20, interval = 0.05,
      stop_when = function()
        calls = calls + 1
        if calls == 2 then assert(kl.stop(name)) end   -- as another process would
        return false
      end }
    assert.is_nil(st)
    assert.are.equal("not_found", code)
    assert.matches("stopped by someone else", msg, 1, true)
    assert.are.equal(2, calls)
    assert.is_false(H.instance_exists(name))
  end)

  it("passes a start failure through", function()
    local name = F.uname()
    local h = assert(kl.start { name = name })
    local st, msg, code, holder = kl.capture { name = name, file = dir .. "/no.dat", seconds = 1 }
    assert.is_nil(st)
    assert.are.equal("already_exists", code)
    assert.is_string(msg)
    assert.is_table(holder)
    h:stop()
    assert.is_false(H.exists(dir .. "/no.dat"))
  end)

  it("Ctrl-C (SIGINT) stops cleanly and still writes a valid file", function()
    local name = F.uname()
    local file = dir .. "/int.dat"
    local pidfile = dir .. "/int.pid"
    local code = ([[
      local core = require "kernellogger.core"
      local f = io.open(%q, "w") f:write(core._getpid()) f:close()
      local st, path = kl.capture{ name = %q, flags = {"cswitch"}, file = %q, seconds = 60,
                                   interval = 0.1 }
      io.write(("RESULT %%s %%s %%d %%d\n"):format(path, tostring(st.interrupted),
               st.events, st.events_lost))
    ]]):format(pidfile, name, file)
    local child = assert(io.popen(H.kl_cmd(code), "r"))
    local pid
    assert.is_true(H.wait_for(function()
      local f = io.open(pidfile)
      if not f then return false end
      pid = tonumber(f:read("a"))
      f:close()
      return pid ~= nil
    end, 10))
    assert.is_true(H.wait_for(function() return H.instance_exists(name) end, 10))
    core._sleep(0.7)
    os.execute("kill -INT " .. pid)
    local out = child:read("a")
    local ok = child:close()
    assert.is_true(ok, out)
    local path, interrupted, entries, lost = out:match("RESULT (%S+) (%S+) (%d+) (%d+)")
    assert.are.equal(file, path)
    assert.are.equal("true", interrupted)
    assert.is_true(tonumber(entries) > 0)
    assert.are.equal("0", lost)
    assert.is_false(H.instance_exists(name))
    assert.is_false(H.state_exists(name))
    local valid, err = H.tracecmd_ok(file)
    assert.is_true(valid, err)
  end)

  local function progress_code(name, file)
    return ([[kl.capture{ name = %q, flags = {"cswitch"}, file = %q, seconds = 1.2,
                          interval = 0.2 } io.write("FINISHED\n")]]):format(name, file)
  end

  it("draws a progress line on stderr under a pseudo-terminal", function()
    local name = F.uname()
    local errfile = dir .. "/pty.err"
    -- script(1) gives the child a pseudo-terminal; the child's stderr goes to
    -- the terminal, which script copies to our pipe.
    local cmd = ("script -qefc %s /dev/null </dev/null 2>%s")
      :format(H.q(H.kl_cmd(progress_code(name, dir .. "/pty.dat"))), H.q(errfile))
    local r = H.run(cmd)
    local out = r.out
    assert.are.equal(0, r.code, out)
    assert.matches("FINISHED", out, 1, true)
    assert.matches("\rkernellogger " .. name, out, 1, true)
    assert.matches("kernellogger " .. name, out, 1, true)
    assert.matches("events %d+  lost 0  bytes", out)
    local redraws = select(2, out:gsub("\rkernellogger ", ""))
    assert.is_true(redraws >= 3, "redrawn " .. redraws .. " times")
  end)

  it("prints nothing when stderr is not a terminal", function()
    local name = F.uname()
    local r = H.run(H.kl_cmd(progress_code(name, dir .. "/nopty.dat")))
    assert.are.equal(0, r.code, r.err)
    assert.matches("FINISHED", r.out, 1, true)
    assert.are.equal("", r.err)
  end)
end)
