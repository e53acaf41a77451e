-- Live reading of real-time sessions, counted exactly: every system call of a
-- workload that makes a known number of them, the real comm of a short-lived
-- process, and the reading process left out of the trace by the kernel unless
-- it asks to be in.  #linux
local H = require "helpers"
local kl = require "kernellogger"
local core = kl._core

-- getppid calls: about 3.4 MB of sys_enter records; the default ring holds 4 MB a CPU
local N = 50000
local SYS_GETPPID -- the system call's number, as getppid_n prints it (110 on x86_64)

-- Run spec/support/getppid_n.c (cmd: its command line); returns the popen
-- handle and the child's pid.  Its comm is getppid_n.
local function spawn(cmd)
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("l"))
  assert(pid, "getppid_n printed no pid")
  SYS_GETPPID = assert(tonumber(p:read("l")), "getppid_n printed no system call number")
  return p, pid
end
local function getppid_n() return H.built("getppid_n") end

-- Write an instance file as root would with `echo`.
local function write_instance(name, rel, text)
  local f = assert(io.open(("%s/instances/%s/%s"):format(H.tracing, name, rel), "w"))
  f:write(text)
  f:close()
end

-- Start a session of sys_enter events, open its reader, run getppid_n N while
-- it reads, then turn tracing off as a stop does (the reader drains the ring,
-- then its iteration ends); every event it yields goes to `each(ev, child_pid)`
-- (counted on the fly: a list of every system call of a busy machine would
-- slow the reader down).  Returns the child's pid and the final query table.
-- isolate: the instance traces only this process and its descendants
-- (set_event_pid with event-fork), so that other processes' system calls
-- cannot fill the ring of a busy machine; only with self = true, since a
-- child of an excluded process would be excluded too.  late: the child has
-- exited before the reader reads its first event (its /proc entry is gone).
local function run(name, opts, each, isolate, late)
  local s = assert(kl.start{name = name, realtime = true, flags = {"raw_syscalls:sys_enter"}})
  if isolate then
    write_instance(name, "options/event-fork", "1")
    write_instance(name, "set_event_pid", tostring(core._getpid()))
  end
  local it = s:events(opts)
  local first = assert(it())  -- the reader is open now (our own calls before it are in the ring)
  local p, pid = spawn(("%s %d; echo 0 > %s"):format(H.q(getppid_n()), N,
    H.q(("%s/instances/%s/tracing_on"):format(H.tracing, name))))
  if late then p:close() end
  each(first, pid)
  for ev in it do each(ev, pid) end
  if not late then p:close() end
  local q = s:query()
  assert(s:stop())
  return pid, q
end

describe("live reading of a real-time session #linux #heavy", function()
  local name
  before_each(function() name = H.name("live") end)
  after_each(function() H.cleanup(name) end)

  -- every sys_enter of the child is there, named, with no loss
  local function exact(late)
    local mine, lost, names, before = 0, 0, {}, {}
    local _, q = run(name, {names = {"sys_enter", "lost_events"}, self = true}, function(ev, child)
      names[ev.name] = true
      if ev.name == "lost_events" then lost = lost + ev.lost end
      if ev.pid == child then
        if ev.comm == "getppid_n" then
          if ev.id == SYS_GETPPID then mine = mine + 1 end
        else
          before[ev.comm] = true -- before its exec: the shell that forked it
        end
      end
    end, true, late)
    assert.equal(0, lost, "the reader lost events")
    assert.equal(0, q.dropped)
    assert.equal(N, mine)
    for comm in pairs(before) do assert.equal("sh", comm) end
    -- the naming events the reader turned on for itself are not yielded
    assert.same({sys_enter = true}, names)
  end

  it("yields all N getppid sys_enter events of a process as it runs, with its comm", function()
    exact(false)
  end)

  it("names a process that exited before the reader reached its events", function()
    exact(true)
  end)

  it("leaves the reading process out by default and in with self = true", function()
    local me = core._getpid()
    -- our events recorded once the child ran (the reader was open by then)
    local function count_after(opts)
      local t0, n, nameless = nil, 0, 0
      run(name, opts, function(ev, child)
        if ev.pid == child then t0 = t0 or ev.time end
        if ev.pid == me and t0 and ev.time >= t0 then
          n = n + 1
          if ev.comm == "<...>" then nameless = nameless + 1 end
        end
      end)
      assert.is_truthy(t0, "no event of the child")
      assert.equal(0, nameless)
      return n
    end
    assert.equal(0, count_after{names = "sys_enter"})
    H.cleanup(name)
    name = H.name("live")
    assert.is_true(count_after{names = "sys_enter", self = true} > 0)
  end)

  it("reads the events of a system that update{flags} added after the reader opened", function()
    -- (the reader parses the formats of the session's systems only, then all of them once
    -- a record of another type shows up)
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    local it = s:events{timeout = 0.5, self = true}
    H.tcp_connections(1)
    assert.is_table(it())
    assert(s:update{flags = {"tcpip", "raw_syscalls:sys_enter"}})
    local p, pid = spawn(H.q(getppid_n()) .. " 100")
    p:close()
    local n = 0
    for ev in s:events{names = "sys_enter", pid = pid, timeout = 0.5} do
      assert.equal("raw_syscalls", ev.system)
      if ev.id == SYS_GETPPID then n = n + 1 end
    end
    assert.equal(100, n)
    assert(s:stop())
  end)

  it("takes its process out of set_event_notrace_pid when the reader closes #valgrind", function()
    local me = tostring(core._getpid())
    local s = assert(kl.start{name = name, realtime = true, flags = {"raw_syscalls:sys_enter"}})
    local it = s:events{timeout = 1}
    assert.is_table(it())
    local listed = H.read_instance(name, "set_event_notrace_pid")
    assert.matches("%f[%d]" .. me .. "%f[%D]", listed)
    -- self = true in a later iteration takes it out, a default one puts it back
    it = s:events{self = true, timeout = 0}
    it()
    assert.is_nil(H.read_instance(name, "set_event_notrace_pid"):match("%f[%d]" .. me .. "%f[%D]"))
    it = s:events{timeout = 0}
    it()
    assert.matches("%f[%d]" .. me .. "%f[%D]", H.read_instance(name, "set_event_notrace_pid"))
    -- the reader wakes when a quarter of a CPU's ring is full
    assert.equal("25", H.read_instance(name, "buffer_percent"))
    -- a second handle's reader (garbage collected, the session still running)
    -- takes the process out again when it goes
    local listed_by = function() return H.read_instance(name, "set_event_notrace_pid") end
    s:events{self = true, timeout = 0}()
    local a = assert(kl.attach(name))
    a:events{timeout = 0}()
    assert.matches("%f[%d]" .. me .. "%f[%D]", listed_by())
    a = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_nil(listed_by():match("%f[%d]" .. me .. "%f[%D]"))
    assert.has_error(function() s:events{self = 1} end)
    assert(s:stop())
  end)
end)
