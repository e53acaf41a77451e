-- Streaming file sessions on Linux: the recorder drains the rings to disk
-- while the session runs, so a small ring holds a capture many times its
-- size; stop and flush assemble trace.dat files that trace-cmd and
-- libtracecmd read; faults (recorder killed, disk full, starter killed,
-- instance gone) each end in a defined state.
local kl = require "kernellogger"

if kl.platform ~= "linux" then
  describe("streaming #linux", function()
    pending("Linux only")
  end)
  return
end

local H = require "helpers"

local SYS_ENTER = "raw_syscalls:sys_enter"
local MARK = "sock:inet_sock_set_state" -- any flag: trace_marker lines are always recorded

--- Run spec/support/getppid_n.c: n getppid() calls on `cpu`; returns its
-- pid and the system call's number.
local function getppid_n(n, cpu)
  local p = assert(io.popen(("%s %d %s"):format(H.q(H.built("getppid_n")), n, cpu or "")))
  local pid, nr = tonumber(p:read("l")), tonumber(p:read("l"))
  p:read("a")
  assert(p:close())
  return pid, nr
end

--- Exact count of the helper's getppid sys_enter events (system call nr) in
-- trace-cmd report.
local function report_count(file, pid, nr)
  local r = H.run("bash -c " .. H.q(("set -o pipefail; trace-cmd report -i %s | "
    .. "grep -c -E '^ *getppid_n-%d +\\[[0-9]+\\] +[0-9.]+: sys_enter: +NR %d '"):format(
      H.q(file), pid, nr)))
  assert(r.ok or r.out:match("^0"), "trace-cmd report failed: " .. r.err)
  assert(not r.err:match("%S"), "trace-cmd report warned: " .. r.err)
  return tonumber(r.out:match("%d+"))
end

local function data_dirs(dir)
  local r = {}
  local p = assert(io.popen("ls -A " .. H.q(dir)))
  for line in p:lines() do
    if line:match("^%.kl%-") then r[#r + 1] = line end
  end
  p:close()
  return r
end

-- The recorder calls itself "kl:" and the last 12 bytes of the name.
-- (An exited one may stay a zombie until init reaps it: not running.)
local function recorder_running(name)
  local out = H.run("env -u LD_PRELOAD ps -eo stat=,comm=").out -- (ps hangs with ASan preloaded)
  for stat, comm in out:gmatch("(%S+) +([^\n]+)") do
    if comm == "kl:" .. name:sub(-12) and not stat:match("^Z") then return true end
  end
  return false
end

-- Its pid, from its status file in the folder the session's state names.
local function recorder_pid(name)
  local state = assert(H.read("/run/kernellogger/" .. name .. ".state"))
  local data = assert(state:match("\ndata_dir=([^\n]+)"))
  return string.unpack("<i4", assert(H.read(data .. "/status")), 5)
end

local function kill_recorder(name)
  assert(os.execute("kill -KILL " .. recorder_pid(name)))
end

--- Nothing of the session is left: instance, state, recorder, data.
local function nothing_left(name, dir)
  assert.is_false(H.instance_exists(name))
  assert.is_nil(io.open("/run/kernellogger/" .. name .. ".state", "r"))
  assert.same({}, data_dirs(dir))
  assert.is_false(recorder_running(name))
end

--- Write n markers (500 bytes each) through session s, whose file reaches a
-- bound on the way: `flag` ("file_full", "disk_full") says so while it runs
-- and at stop, later events are lost, and the file is valid with every event
-- kept or counted.
local function past_bound(name, s, file, flag, n)
  H.markers(name, 1, n, 500)
  assert.is_true(H.wait_for(function() return s:query()[flag] end, 5))
  local q = s:query()
  assert.is_true(q.events_lost > 0)
  local st = assert(s:stop())
  assert.is_true(st[flag])
  local _, r = H.check_file(file)
  assert.is_true(r.markers > 1000)
  assert.equal(n, r.markers + st.events_lost) -- every event kept or counted
end

describe("streaming #linux #heavy", function()
  local name, dir

  before_each(function()
    name = H.name("str")
    dir = H.tmpdir()
  end)

  after_each(function()
    H.cleanup(name)
    H.rmtree(dir)
  end)

  it("keeps exactly N events of a capture 20 times its 8 MB ring, and loses none", function()
    local file = dir .. "/seq.dat"
    local s = assert(kl.start{name = name, flags = {SYS_ENTER}, file = file, max_mb = 4096})
    local q = assert(s:query())
    assert.is_true(q.recorder_alive)
    assert.is_true(math.abs(q.ring_kb - 8192) < 64, "ring_kb " .. q.ring_kb)
    local n = 3000000
    local pid, nr = getppid_n(n, 1)
    local rec = recorder_pid(name)
    local st = assert(s:stop())
    assert.equal(0, st.events_lost)
    assert.equal(0, st.dropped)
    assert.is_true(H.size(file) >= 20 * q.ring_kb * 1024,
                   ("file %d bytes, ring %d KB"):format(H.size(file), q.ring_kb))
    assert.equal(n, report_count(file, pid, nr))
    -- the recorder excluded itself (set_event_notrace_pid): none of its system calls
    local mine = H.run(("trace-cmd report -i %s | grep -c -E -- '-%d +\\[' || true")
      :format(H.q(file), rec))
    assert.equal(0, tonumber(mine.out:match("%d+")))
    local r = H.libtracecmd(file)
    assert.is_true(r.events >= n)
    nothing_left(name, dir)
  end)

  it("does the same when started by `kernellogger start` and stopped by `kernellogger stop`", function()
    local a, b = dir .. "/a", dir .. "/b"
    assert(os.execute("mkdir " .. H.q(a) .. " " .. H.q(b)))
    -- a relative path is made absolute at start: stop runs in another folder
    local r3 = H.run(("cd %s && %s"):format(H.q(a),
      H.cli_cmd(("start -n %s -f %s -o cap.dat --max-mb 4096"):format(name, SYS_ENTER))))
    assert.equal(0, r3.code, r3.err)
    local n = 3000000
    local pid, nr = getppid_n(n, 1)
    r3 = H.run(("cd %s && %s"):format(H.q(b), H.cli_cmd("stop " .. name)))
    assert.equal(0, r3.code, r3.err .. r3.out)
    local file = a .. "/cap.dat"
    assert.is_nil(io.open(b .. "/cap.dat", "r"))
    assert.is_true(H.size(file) >= 20 * 8192 * 1024)
    assert.equal(n, report_count(file, pid, nr))
    assert.is_true(H.libtracecmd(file).events >= n)
    nothing_left(name, a)
  end)

  it("a recorder someone stopped (SIGSTOP) is woken by flush and stop: nothing lost, no wait",
     function()
    local file = dir .. "/stopped.dat"
    local s = assert(kl.start{name = name, flags = {SYS_ENTER}, file = file, max_mb = 4096})
    local pid1, nr = getppid_n(20000, 1)
    local rec = recorder_pid(name)
    assert(os.execute("kill -STOP " .. rec))
    local pid2 = getppid_n(20000, 1) -- into the ring only: 4 MB per CPU holds it
    local t0 = kl._core._monotime()
    assert(s:flush())
    assert(os.execute("kill -STOP " .. rec))
    local st = assert(s:stop())
    assert.is_true(kl._core._monotime() - t0 < 10, "flush and stop waited for the stopped recorder")
    assert.equal(0, st.events_lost)
    assert.equal(20000, report_count(file, pid1, nr))
    assert.equal(20000, report_count(file, pid2, nr))
    nothing_left(name, dir)
  end)

  it("flush writes a valid snapshot while recording goes on", function()
    local file = dir .. "/snap.dat"
    local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
    H.markers(name, 1, 1000, 50)
    assert(s:flush())
    local _, r1 = H.check_file(file)
    assert.equal(1000, r1.markers)
    assert.equal(1000, r1.last_seq)
    H.markers(name, 1001, 1000, 50)
    local st = assert(s:stop())
    local _, r2 = H.check_file(file)
    assert.equal(2000, r2.markers)
    assert.equal(0, st.events_lost)
    nothing_left(name, dir)
  end)

  it("takes what waited flush_timer seconds without a flush", function()
    local file = dir .. "/timer.dat"
    local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64,
                              flush_timer = 1})
    H.markers(name, 1, 3, 10) -- far less than a page
    local t0 = kl._core._monotime()
    local took
    repeat
      kl._core._sleep(0.1)
      took = s:query().buffers_written > 0
    until took or kl._core._monotime() - t0 > 3
    assert.is_true(took, "3 markers still in the ring after 3 s")
    assert(s:stop())
    local _, r = H.check_file(file)
    assert.equal(3, r.markers)
  end)

  it("circular_mb bounds the file on disk and keeps the newest data", function()
    local file = dir .. "/circ.dat"
    local mb = 2
    local s = assert(kl.start{name = name, flags = {MARK}, file = file, circular_mb = mb})
    local per = mb * 1024 * 1024 // 600
    local total = 8 * per
    for i = 0, 7 do H.markers(name, i * per + 1, per, 500) end
    assert(s:stop())
    local _, r = H.check_file(file)
    assert.equal(total, r.last_seq)
    assert.is_true(r.markers < total and r.markers > 0)
    assert.is_true(H.size(file) <= mb * 1024 * 1024 + 256 * 1024, "size " .. H.size(file))
    nothing_left(name, dir)
  end)

  it("buffers_written counts every sub-buffer written, those the circular bound dropped too", function()
    local file = dir .. "/bw.dat"
    local s = assert(kl.start{name = name, flags = {MARK}, file = file, circular_mb = 1})
    H.markers(name, 1, 10000, 500) -- about 5.3 MB through a 1 MB bound
    local st = assert(s:stop())
    local sub = st.buffer_kb * 1024
    assert.is_true(H.size(file) < 2 * 1024 * 1024, "file " .. H.size(file))
    assert.is_true(st.buffers_written * sub >= 10000 * 500,
                   ("buffers_written %d of %d bytes"):format(st.buffers_written, sub))
    assert.equal(0, st.log_buffers_lost)
    nothing_left(name, dir)
  end)

  it("chunks deleted behind the recorder's back are reported as log_buffers_lost", function()
    local file = dir .. "/rm.dat"
    local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 256})
    H.markers(name, 1, 6000, 500)
    assert(s:flush())
    assert(os.execute("rm -f " .. H.q(dir) .. "/.kl-*/cpu*"))
    H.markers(name, 6001, 100, 50)
    local st = assert(s:stop())
    assert.is_true(st.log_buffers_lost * st.buffer_kb * 1024 >= 6000 * 500,
                   "log_buffers_lost " .. tostring(st.log_buffers_lost))
    -- (the later ones went into the open chunk, unlinked too: a valid file, maybe empty)
    local _, r = H.check_file(file)
    assert.is_true(r.markers <= 100)
    nothing_left(name, dir)
  end)

  it("max_mb bounds the file: then file_full, later events lost, a valid file", function()
    local file = dir .. "/full.dat"
    local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 3})
    past_bound(name, s, file, "file_full", 20000) -- about 10 MB
    assert.is_true(H.size(file) <= 3 * 1024 * 1024, "size " .. H.size(file))
    nothing_left(name, dir)
  end)

  describe("faults", function()
    it("recorder SIGKILLed: query says so, stop writes disk + ring", function()
      local file = dir .. "/kill.dat"
      local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
      H.markers(name, 1, 500, 50)
      assert(s:flush()) -- the first 500 are on disk now
      kill_recorder(name)
      assert.is_true(H.wait_for(function() return s:query().recorder_alive == false end, 5))
      H.markers(name, 501, 500, 50) -- these stay in the ring
      local st = assert(s:stop())
      assert.is_false(st.recorder_alive)
      local _, r = H.check_file(file)
      assert.equal(1000, r.markers)
      assert.equal(1000, r.last_seq)
      nothing_left(name, dir)
    end)

    it("disk full mid-capture: recording stops, disk_full, a valid file of what fitted", function()
      local mnt = dir .. "/small"
      assert(os.execute("mkdir " .. H.q(mnt) .. " && mount -t tmpfs -o size=6m tmpfs "
        .. H.q(mnt)))
      local file = mnt .. "/df.dat"
      local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 1024})
      past_bound(name, s, file, "disk_full", 30000) -- about 15 MB
      nothing_left(name, mnt)
      assert(os.execute("umount " .. H.q(mnt)))
    end)

    it("starter killed: recording goes on, another process stops it", function()
      local file = dir .. "/orphan.dat"
      local p = assert(io.popen(H.kl_cmd(([[
        assert(kl.start{name = %q, flags = {%q}, file = %q, max_mb = 64})
        print(require("kernellogger.core")._getpid()) io.stdout:flush()
        while true do require("kernellogger.core")._sleep(1) end]]):format(name, MARK, file))))
      local starter = tonumber(p:read("l"))
      assert(os.execute("kill -KILL " .. starter))
      p:close()
      local q = assert(kl.query(name))
      assert.is_false(q.owner_alive)
      assert.is_true(q.recorder_alive)
      H.markers(name, 1, 2000, 50)
      assert(kl.stop(name))
      local _, r = H.check_file(file)
      assert.equal(2000, r.markers)
      nothing_left(name, dir)
    end)

    it("data folder deleted: the recorder still counts as alive, stop ends everything", function()
      local file = dir .. "/lostdir.dat"
      local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
      H.markers(name, 1, 200, 50)
      assert(os.execute("rm -rf " .. H.q(dir) .. "/.kl-*"))
      assert.is_true(s:query().recorder_alive)
      local ok, msg, code = s:stop()
      assert.is_nil(ok)
      assert.equal("io", code)
      assert.truthy(msg:find("data folder .* was lost: no file written to " .. file:gsub("%p", "%%%0")),
                    msg)
      assert.is_nil(io.open(file, "r"))
      nothing_left(name, dir)
    end)

    -- A link put where the data folder was must not make a stop (root)
    -- delete or write anything in the folder it points to.
    for _, op in ipairs{"stop", "flush"} do
      it("data folder swapped for a link to another folder: " .. op .. " touches nothing there",
         function()
        local file = dir .. "/swapped.dat"
        local victim = dir .. "/victim"
        assert(os.execute("mkdir -p " .. H.q(victim .. "/sub")))
        for _, f in ipairs{"keep", "reserve", "config", "status", "cpu0.0", "sub/f"} do
          H.write(victim .. "/" .. f, "mine " .. f)
        end
        local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
        H.markers(name, 1, 200, 50)
        local data = assert(data_dirs(dir)[1])
        assert(os.execute(("mv %s %s && ln -s %s %s"):format(H.q(dir .. "/" .. data),
          H.q(dir .. "/moved"), H.q(victim), H.q(dir .. "/" .. data))))
        local ok, msg, code = s[op](s)
        assert.is_nil(ok)
        assert.equal("io", code)
        assert.truthy(msg:find("data folder .* lost"), msg)
        for _, f in ipairs{"keep", "reserve", "config", "status", "cpu0.0", "sub/f"} do
          assert.equal("mine " .. f, H.read(victim .. "/" .. f))
        end
        local left = {}
        for f in io.popen("ls -A " .. H.q(victim)):lines() do left[#left + 1] = f end
        assert.same({"config", "cpu0.0", "keep", "reserve", "status", "sub"}, left)
        if op == "flush" then assert(s:stop{file = false}) end
        assert.is_false(H.instance_exists(name))
        assert.is_nil(io.open(file, "r"))
        assert(os.execute("rm -rf " .. H.q(victim) .. " " .. H.q(dir .. "/moved") .. " "
          .. H.q(dir .. "/" .. data)))
        nothing_left(name, dir)
      end)
    end

    it("data folder deleted: on_conflict = takeover takes the name", function()
      assert(kl.start{name = name, flags = {MARK}, file = dir .. "/a.dat", max_mb = 64,
                      detached = true})
      assert(os.execute("rm -rf " .. H.q(dir) .. "/.kl-*"))
      local s = assert(kl.start{name = name, flags = {MARK}, file = dir .. "/b.dat", max_mb = 64,
                                on_conflict = "takeover"})
      H.markers(name, 1, 50, 10)
      assert(s:stop())
      local _, r = H.check_file(dir .. "/b.dat")
      assert.equal(50, r.markers)
      os.remove(dir .. "/b.dat")
      nothing_left(name, dir)
    end)

    for _, lost in ipairs{"status", "config"} do
      it("its " .. lost .. " file deleted: `kernellogger stop` ends the session and the recorder", function()
        local file = dir .. "/lost" .. lost .. ".dat"
        assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
        H.markers(name, 1, 300, 50)
        assert(os.execute("rm -f " .. H.q(dir) .. "/.kl-*/" .. lost))
        assert.is_true(kl.query(name).recorder_alive)
        local r = H.run(H.cli_cmd("stop " .. name))
        if lost == "status" then
          -- the chunks and config are there: the file holds every event
          assert.is_true(r.ok, r.err)
          local _, c = H.check_file(file)
          assert.equal(300, c.markers)
        else
          assert.is_false(r.ok)
          assert.truthy(r.err:find("was lost", 1, true), r.err)
        end
        nothing_left(name, dir)
      end)
    end

    it("a dead writer's TARGET.tmp.PID.N goes at the next stop; a live pid's stays", function()
      local file = dir .. "/tmps.dat"
      local dead = tonumber(H.run("sh -c 'echo $$'").out) -- exited: no such process now
      local stale, live = ("%s.tmp.%d.0"):format(file, dead), file .. ".tmp.1.0"
      local other = ("%s.tmp.%d.0.x"):format(file, dead) -- not the exact pattern
      local state_tmp = ("/run/kernellogger/%s.state.tmp.%d.3"):format(name, dead)
      for _, p in ipairs{stale, live, other, state_tmp} do H.write(p, "junk") end
      local s = assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
      assert.is_nil(io.open(state_tmp, "r")) -- the state write cleared it
      H.markers(name, 1, 100, 50)
      assert(s:stop())
      local _, r = H.check_file(file)
      assert.equal(100, r.markers)
      assert.is_nil(io.open(stale, "r"))
      assert.equal("junk", H.read(live))
      assert.equal("junk", H.read(other))
      os.remove(live)
      os.remove(other)
      nothing_left(name, dir)
    end)

    it("starter SIGKILLed during start: stop or takeover_stale ends what it left", function()
      local file = dir .. "/sk.dat"
      for i = 1, 6 do
        local cmd = H.kl_cmd(([[kl.start{name = %q, flags = {"systemcall"}, file = %q,
          overwrite = true, max_mb = 50} os.execute("sleep 5")]]):format(name, file))
        H.run(("%s >/dev/null 2>&1 & P=$!; sleep 0.0%d; kill -9 $P; wait $P; true"):format(cmd, 20 + i))
        if i % 2 == 0 then
          -- what the killed start left is ours and stale: takeover_stale takes it
          local q = kl.query(name)
          if q then assert.is_false(q.foreign) end
          local s = assert(kl.start{name = name, flags = {MARK}, file = file, overwrite = true,
                                    max_mb = 50, on_conflict = "takeover_stale"})
          assert(s:stop{file = false})
        else
          local ok, msg, code = kl.stop(name, {file = false})
          assert.is_true(ok ~= nil or code == "not_found", msg)
        end
        nothing_left(name, dir)
        os.remove(file)
        assert.same({}, H.run("ls /run/kernellogger | grep -F " .. H.q(name .. ".state") .. " || true").out
          == "" and {} or {"state files left"})
      end
    end)

    it("a recorder whose starter died before the start completed leaves by itself", function()
      local file = dir .. "/orph.dat"
      -- a start that stops right after spawning the recorder: a stand-in
      -- for a SIGKILL between the recorder's spawn and the end of the start
      local cmd = H.kl_cmd(([[kl.start{name = %q, flags = {"systemcall"}, file = %q,
        max_mb = 50} os.execute("sleep 5")]]):format(name, file))
      local gone_in
      for _ = 1, 10 do
        H.run(("%s >/dev/null 2>&1 & P=$!; sleep 0.03; kill -9 $P; wait $P; true"):format(cmd))
        -- (a start that completed before the kill is a session like any
        -- other: its recorder rightly goes on; the start's last step leaves
        -- the marker `started` in the data folder)
        local started = H.run("ls " .. H.q(dir) .. "/.kl-*/started 2>/dev/null").out ~= ""
        if recorder_running(name) and not started then
          local t0 = os.time()
          assert.is_true(H.wait_for(function() return not recorder_running(name) end, 5))
          gone_in = os.time() - t0
        end
        local ok, msg, code = kl.stop(name, {file = false})
        assert.is_true(ok ~= nil or code == "not_found", msg)
        nothing_left(name, dir)
        os.remove(file)
      end
      if gone_in then assert.is_true(gone_in <= 5) end
    end)

    it("instance removed: refused while the recorder holds it; gone, query says not_found", function()
      local file = dir .. "/gone.dat"
      assert(kl.start{name = name, flags = {MARK}, file = file, max_mb = 64})
      local inst = H.TRACING .. "/instances/" .. name
      -- the kernel refuses rmdir while any file of the instance is open
      assert.is_false(os.execute("rmdir " .. H.q(inst) .. " 2>/dev/null") == true)
      assert.is_true(kl.query(name).recorder_alive)
      -- once its reader is gone, another tool can remove it behind our back
      kill_recorder(name)
      assert.is_true(H.wait_for(function()
        return os.execute("rmdir " .. H.q(inst) .. " 2>/dev/null") == true
      end, 5))
      local ok, _, code = kl.query(name)
      assert.is_nil(ok)
      assert.equal("not_found", code)
      ok, _, code = kl.stop(name)
      assert.is_nil(ok)
      assert.equal("not_found", code)
      nothing_left(name, dir)
    end)
  end)
end)
