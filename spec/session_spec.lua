-- A real kernel logger session on Linux: the kernel's own files, counters,
-- conflicts, other processes, crashes, updates.  #linux
local H = require "helpers"
local kl = require "kernellogger"

local function ncpus()
  local p = assert(io.popen("ls -d " .. H.tracing .. "/per_cpu/cpu* | wc -l"))
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

describe("a Linux session #linux", function()
  local F = H.fixture()
  local name, dir
  before_each(function()
    name = F.name("ses")
    dir = F.tmpdir()
  end)

  it("starts an instance with the events enabled and the ring sized", function()
    local s = assert(kl.start{name = name, flags = {"tcpip", "cswitch"}, circular_mb = 4,
                              clock = "mono"})
    assert.is_true(H.instance_exists(name))
    for _, ev in ipairs{"sock/inet_sock_set_state", "tcp/tcp_retransmit_skb",
                        "sched/sched_switch", "sched/sched_migrate_task"} do
      assert.equal("1", H.read_instance(name, "events/" .. ev .. "/enable"), ev)
    end
    assert.equal("0", H.read_instance(name, "events/sched/sched_wakeup/enable"))
    local per_cpu = tonumber(H.read_instance(name, "buffer_size_kb"))
    local total = tonumber(H.read_instance(name, "buffer_total_size_kb"))
    -- the kernel rounds up to whole pages
    assert.is_true(per_cpu >= 4 * 1024 // ncpus() and per_cpu <= 4 * 1024 // ncpus() + 8,
                   "per cpu " .. per_cpu)
    assert.is_true(total >= 4 * 1024 - ncpus() and total <= 4 * 1024 + 64, "total " .. total)
    assert.equal("1", H.read_instance(name, "options/overwrite"))
    assert.matches("%[mono%]", H.read_instance(name, "trace_clock"))
    assert.equal("1", H.read_instance(name, "tracing_on"))
    local q = s:query()
    assert.equal(name, q.name)
    assert.equal("buffering", q.mode)
    assert.equal("mono", q.clock)
    assert.equal(per_cpu, q.cpu_buffer_kb)
    assert.equal(per_cpu * ncpus(), q.ring_kb)
    -- ETW's words: buffer_kb is one buffer (an ftrace sub-buffer), buffers their count
    assert.equal(tonumber(H.read_instance(name, "buffer_subbuf_size_kb")), q.buffer_kb)
    assert.equal(per_cpu // q.buffer_kb * ncpus(), q.buffers)
    assert.is_true(q.free_buffers > 0 and q.free_buffers <= q.buffers)
    for _, k in ipairs{"events_lost", "buffers_written", "flush_timer", "max_file_mb"} do
      if k ~= "max_file_mb" then assert.is_number(q[k], k) end
    end
    assert.equal(ncpus(), #q.per_cpu)
    assert(s:stop())
    assert.is_false(H.instance_exists(name))
  end)

  it("never touches the top-level tracing state", function()
    local before = H.read(H.tracing .. "/buffer_size_kb")
    local on = H.read(H.tracing .. "/tracing_on")
    local s = assert(kl.start{name = name, flags = "tcpip", circular_mb = 2})
    assert.equal(before, H.read(H.tracing .. "/buffer_size_kb"))
    assert.equal(on, H.read(H.tracing .. "/tracing_on"))
    assert.equal("0", H.read(H.tracing .. "/events/sock/inet_sock_set_state/enable"):sub(1, 1))
    assert(s:stop())
  end)

  it("counts real loopback TCP connections in query().entries", function()
    local s = assert(kl.start{name = name, flags = {"tcpip"}})
    local before = s:query().entries
    H.tcp_connections(5)
    local q = s:query()
    -- each connection walks both sockets through several states
    assert.is_true(q.entries >= before + 5 * 4, ("entries %d -> %d"):format(before, q.entries))
    assert.is_true(q.bytes > 0)
    local sum = 0
    for _, c in ipairs(q.per_cpu) do sum = sum + c.entries end
    assert.equal(q.entries, sum)
    assert.equal(0, q.events_lost)
    assert(s:stop())
  end)

  it("refuses a second start of the same name with already_exists, naming the holder", function()
    local s = assert(kl.start{name = name, flags = "tcpip", file = dir .. "/a.dat"})
    local s2, msg, code = kl.start{name = name, flags = "process"}
    assert.is_nil(s2)
    assert.equal("already_exists", code)
    assert.matches("start " .. name .. ": the session already exists, held by pid " ..
                   kl._core._getpid() .. " %(alive%), file " .. dir .. "/a.dat, flags tcpip",
                   msg)
    assert.matches("errno 17", msg)
    -- the running session is untouched
    assert.same({"tcpip"}, s:query().flags)
    assert(s:stop{file = false})
  end)

  it("names a foreign instance as such", function()
    assert(os.execute("mkdir " .. H.tracing .. "/instances/" .. name))
    local s, msg, code = kl.start{name = name, flags = "tcpip"}
    assert.is_nil(s)
    assert.equal("already_exists", code)
    assert.matches("a foreign ftrace instance", msg)
    local found
    for _, q in ipairs(assert(kl.sessions())) do
      if q.name == name then found = q end
    end
    assert.is_table(found)
    assert.is_true(found.foreign)
    assert.is_nil(found.owner_pid)
    assert(os.execute("rmdir " .. H.tracing .. "/instances/" .. name))
  end)

  it("is queried, updated and stopped from another process", function()
    local s = assert(kl.start{name = name, flags = "tcpip"})
    local ok, out = H.run_lua(([[
      local kl = require "kernellogger"
      local q = assert(kl.query(%q))
      io.write(q.name, " ", q.owner_pid, " ", tostring(q.owner_alive), " ", q.flags[1], "\n")
      local a = assert(kl.attach(%q))
      io.write(tostring(a.owned), "\n")
      local st = assert(kl.stop(%q))
      io.write("stopped ", st.name, "\n")
    ]]):format(name, name, name))
    assert.is_true(ok, out)
    assert.equal(("%s %d true tcpip\nfalse\nstopped %s\n"):format(name, kl._core._getpid(), name),
                 out)
    assert.is_false(H.instance_exists(name))
    -- this process's handle sees that the session is gone
    local q, msg, code = s:query()
    assert.is_nil(q)
    assert.equal("not_found", code)
    assert.matches("query " .. name .. ": the session is not running", msg)
  end)

  it("outlives a kill -9 of its owner; another process can query and stop it", function()
    local p = assert(io.popen(H.lua_cmd(([[
      local kl = require "kernellogger"
      local s = assert(kl.start{name = %q, flags = "tcpip,process"})
      io.write(kl._core._getpid(), "\n") io.flush()
      kl._core._sleep(30)
    ]]):format(name)) .. " & echo $!"))
    local shell_pid = p:read("l")
    local pid = tonumber(p:read("l"))
    assert.is_number(pid, "child pid")
    assert(os.execute("kill -9 " .. pid))
    local _ = shell_pid
    -- the signal lands asynchronously: wait for the process to be dead
    local q
    for _ = 1, 100 do
      q = assert(kl.query(name))
      if not q.owner_alive then break end
      kl._core._sleep(0.02)
    end
    p:close()
    assert.equal(pid, q.owner_pid)
    assert.is_false(q.owner_alive)
    local st = assert(kl.stop(name))
    assert.equal(name, st.name)
    assert.is_false(H.instance_exists(name))
    assert.is_nil(H.read(H.state_dir .. "/" .. name .. ".state"))
  end)

  it("stops cleanly while another process keeps querying it", function()
    local s = assert(kl.start{name = name, flags = "tcpip,cswitch"})
    -- the child queries until the session is gone, then says how many it made
    local p = assert(io.popen(H.lua_cmd(([[
      local kl = require "kernellogger"
      local n, deadline = 0, kl._core._monotime() + 10
      io.write("go\n") io.flush()
      while kl._core._monotime() < deadline do
        local q, _, code = kl.query(%q)
        if not q then io.write(code, " ", n, "\n") break end
        n = n + 1
      end
    ]]):format(name))))
    assert.equal("go", p:read("l"))
    kl._core._sleep(0.2)
    local st, msg, code = s:stop()
    local tail = p:read("a")
    p:close()
    assert.is_table(st, tostring(msg) .. " " .. tostring(code))
    local why, n = tail:match("^(%S+) (%d+)")
    assert.equal("not_found", why)
    assert.is_true(tonumber(n) > 0, tail)
  end)

  it("records no owner when detached, so it is never taken for stale", function()
    local s = assert(kl.start{name = name, flags = "tcpip", detached = true})
    local q = assert(kl.query(name))
    assert.is_true(q.detached)
    assert.is_nil(q.owner_pid)
    assert.is_nil(q.owner_alive)
    local r, msg, code = kl.start{name = name, flags = "tcpip"}
    assert.is_nil(r)
    assert.equal("already_exists", code)
    assert.matches("detached (no owner process)", msg, 1, true)
    local r2, _, code2 = kl.start{name = name, flags = "tcpip", on_conflict = "takeover_stale",
                                  timeout = 0.2}
    assert.is_nil(r2, "took over a detached session")
    assert.equal("already_exists", code2)
    assert.is_true(H.instance_exists(name))
    assert(s:stop())
  end)

  it("returns the final counters from stop, after the recorder drained the ring", function()
    local s = assert(kl.start{name = name, flags = "tcpip", file = dir .. "/final.dat"})
    H.tcp_connections(3)
    local st = assert(s:stop())
    local read = 0
    for _, c in ipairs(st.per_cpu) do read = read + c.read_events end
    assert.is_true(read > 0)
    assert.equal(0, st.entries) -- all of it went to disk
    assert.equal(0, st.events_lost)
    assert.is_true(st.bytes_written > 0)
    assert.is_number(st.last_flush)
    assert.equal(dir .. "/final.dat", st.file)
  end)

  it("records a kernel stack with every event when stacks = true", function()
    local file = dir .. "/stacks.dat"
    local s = assert(kl.start{name = name, flags = "process", stacks = true, file = file})
    assert.equal("1", H.read_instance(name, "options/stacktrace"))
    assert.is_true(s:query().stacks)
    os.execute("true")
    assert(s:stop())
    -- what trace-cmd prints for each stack: "=> ffffffff...." lines after the event
    local p = assert(io.popen("trace-cmd report -i " .. H.q(file) .. " 2>&1"))
    local stacks, cur = {}, nil
    for line in p:lines() do
      if line:find("kernel_stack:", 1, true) then
        cur = {}
        stacks[#stacks + 1] = cur
      elseif cur and line:match("^=> ") then
        cur[#cur + 1] = line:match("^=> (%x+)")
      else
        cur = nil
      end
    end
    p:close()
    local t <close> = assert(kl.open(file))
    local n = 0
    for ev in t:events{names = "kernel_stack"} do
      n = n + 1
      assert.equal(ev.size, #ev.caller)
      for i, addr in ipairs(ev.caller) do
        assert.equal(stacks[n][i], ("%x"):format(addr), ("stack %d frame %d"):format(n, i))
      end
      assert.equal(#stacks[n], #ev.caller)
    end
    assert.is_true(n >= 3, "stacks: " .. n)
    assert.equal(#stacks, n)
  end)

  it("keeps its state file root-only", function()
    local s = assert(kl.start{name = name, flags = "tcpip"})
    local p = assert(io.popen("stat -c '%a %U' " .. H.state_dir .. " " .. H.state_dir .. "/" ..
                              name .. ".state"))
    assert.equal("700 root", p:read("l"))
    assert.equal("600 root", p:read("l"))
    p:close()
    assert(s:stop())
  end)

  it("changes flags on the fly and resizes the ring", function()
    local s = assert(kl.start{name = name, flags = "tcpip", circular_mb = 2})
    assert(s:update{flags = {"process", "sched:sched_switch"}})
    assert.equal("0", H.read_instance(name, "events/sock/inet_sock_set_state/enable"))
    assert.equal("1", H.read_instance(name, "events/sched/sched_process_exec/enable"))
    assert.equal("1", H.read_instance(name, "events/sched/sched_switch/enable"))
    assert.same({"process", "sched:sched_switch"}, s:query().flags)
    assert(s:update{circular_mb = 8})
    local per_cpu = tonumber(H.read_instance(name, "buffer_size_kb"))
    assert.is_true(per_cpu >= 8 * 1024 // ncpus() and per_cpu <= 8 * 1024 // ncpus() + 8)
    assert.equal(8, s:query().circular_mb)
    assert(s:update{file = dir .. "/later.dat"})
    assert.equal(dir .. "/later.dat", s.file)
    assert.matches("-> " .. dir .. "/later.dat", tostring(s), 1, true)
    assert(s:stop{file = false})
  end)

  it("refuses updates Linux cannot make with invalid, changing nothing", function()
    local s = assert(kl.start{name = name, flags = "tcpip"})
    for _, u in ipairs{{buffer_kb = 64}, {min_buffers = 4}, {flush_timer = 1},
                       {clock = "global"}, {max_buffers = 8}} do
      local r, msg, code = s:update(u)
      assert.is_nil(r)
      assert.equal("invalid", code)
      assert.truthy(msg:find("only flags and file can change while a Linux session runs "
        .. "(and circular_mb, of a session without a file)", 1, true), msg)
    end
    assert.has_error(function() s:update{} end, "bad argument #1 to 'update' (nothing to update)")
    assert.has_error(function() s:update{bogus = 1} end)
    assert.same({"tcpip"}, s:query().flags)
    assert(s:stop())
  end)

  it("stops: tracing off, instance and state removed, final counters returned", function()
    local s = assert(kl.start{name = name, flags = "tcpip"})
    H.tcp_connections(2)
    local st = assert(s:stop())
    assert.equal(name, st.name)
    assert.is_true(st.entries > 0)
    assert.is_number(st.events_lost)
    assert.is_false(H.instance_exists(name))
    assert.is_nil(H.read(H.state_dir .. "/" .. name .. ".state"))
    assert.equal(('kernellogger.Session "%s" (stopped)'):format(name), tostring(s))
    for _, m in ipairs{"stop", "query", "flush"} do
      assert.has_error(function() s[m](s) end, "attempt to use a stopped session")
    end
    assert.has_error(function() s:update{flags = "tcpip"} end, "attempt to use a stopped session")
    local r, msg, code = kl.stop(name)
    assert.is_nil(r)
    assert.equal("not_found", code)
    assert.matches(name .. " is not running", msg)
  end)

  it("stops an owned session at the end of a <close> scope, never on collection", function()
    do
      local s <close> = assert(kl.start{name = name, flags = "tcpip"})
      assert.is_true(s.owned)
    end
    assert.is_false(H.instance_exists(name))

    assert(kl.start{name = name, flags = "tcpip"}) -- the Session is garbage at once
    collectgarbage()
    collectgarbage()
    assert.is_true(H.instance_exists(name))

    do
      local a <close> = assert(kl.attach(name))
      assert.is_false(a.owned)
    end
    assert.is_true(H.instance_exists(name), "closing an attached session stopped it")
    assert(kl.stop(name, {file = false}))
  end)

  it("reads well in a REPL", function()
    local s = assert(kl.start{name = name, flags = {"tcpip"}, file = dir .. "/r.dat",
                              circular_mb = 5})
    assert.equal(('kernellogger.Session "%s" (running, owned; circular 5 MB -> %s/r.dat, ' ..
                  'flags: tcpip)'):format(name, dir), tostring(s))
    assert(s:stop{file = false})
  end)

  it("lists its sessions with their state", function()
    local s = assert(kl.start{name = name, flags = "tcpip"})
    local found
    for _, q in ipairs(assert(kl.sessions())) do
      if q.name == name then found = q end
    end
    assert.is_table(found)
    assert.is_false(found.foreign)
    assert.equal(kl._core._getpid(), found.owner_pid)
    assert(s:stop())
  end)

  it("refuses a file that exists, is a link or a folder before creating anything", function()
    local f = assert(io.open(dir .. "/exists.dat", "w"))
    f:write("keep me")
    f:close()
    local s, msg, code = kl.start{name = name, flags = "tcpip", file = dir .. "/exists.dat"}
    assert.is_nil(s)
    assert.equal("bad_path", code) -- already_exists is for a session name taken
    assert.matches("overwrite = true replaces it", msg)
    assert.equal("keep me", H.read(dir .. "/exists.dat"))
    assert(os.execute("ln -s /etc/passwd " .. dir .. "/link.dat"))
    s, msg, code = kl.start{name = name, flags = "tcpip", file = dir .. "/link.dat"}
    assert.is_nil(s)
    assert.equal("bad_path", code)
    assert.matches("symbolic link", msg)
    s, msg, code = kl.start{name = name, flags = "tcpip", file = dir}
    assert.is_nil(s)
    assert.equal("bad_path", code)
    assert.matches("is a folder", msg)
    s, msg, code = kl.start{name = name, flags = "tcpip", file = dir .. "/no/such/x.dat"}
    assert.is_nil(s)
    assert.equal("bad_path", code)
    assert.matches("No such file or directory", msg)
    assert.is_false(H.instance_exists(name))
  end)

  it("says access_denied, and what to do, without root", function()
    local cmd = "setpriv --reuid=65534 --regid=65534 --clear-groups " ..
                H.lua_cmd(('local kl = require "kernellogger"; ' ..
                           'print(kl.start{name = %q, flags = "tcpip"})'):format(name .. "x"))
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("a")
    p:close()
    assert.matches("nil\tstart " .. name .. "x: kernel tracing needs root; run as root", out, 1,
                   true)
    assert.matches("access_denied", out)
    H.cleanup(name)
  end)

  it("says unavailable, and how to mount it, without tracefs", function()
    local inner = H.lua_cmd(('local kl = require "kernellogger"; ' ..
                             'print(kl.start{name = %q, flags = "tcpip"})'):format(name))
    -- a private mount namespace without tracefs, and no right to mount it again
    local cmd = "unshare -m sh -c " .. H.q("umount -l /sys/kernel/tracing 2>/dev/null; " ..
      "umount -l /sys/kernel/debug 2>/dev/null; " ..
      "exec setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin " .. inner)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("a")
    p:close()
    assert.matches("tracefs is not available", out, 1, true)
    assert.matches("mount -t tracefs nodev /sys/kernel/tracing", out, 1, true)
    assert.matches("unavailable", out, 1, true)
  end)
end)
