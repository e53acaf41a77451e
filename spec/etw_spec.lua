-- The ETW backend through the public API, with core.dll bound to the ETW
-- contract simulator (spec/support/etwsim).  Windows only: it runs under Wine
-- in .ci/windows; on a real Windows runner the same file runs against the
-- simulator build too (the real-ETW checks are in etw_real_spec.lua).
local H = require "helpers"

describe("ETW backend (simulator) #windows", function()
  local sim, why = H.etwsim()
  if not sim then
    pending(why)
    return
  end
  local kl = require "kernellogger"

  local pid = kl._core._getpid()
  local tmp = os.getenv("KL_TMPDIR") or "."
  local seq = 0
  local function uname(tag) return H.name("etw_" .. (tag or "s")) end
  local function tmpfile(tag)
    seq = seq + 1
    return ("%s\\klt_etw_%s_%d_%d.etl"):format(tmp, tag or "f", pid, seq)
  end
  local KERNEL = "NT Kernel Logger"
  local CIRC, SEQ = sim.EVENT_TRACE_FILE_MODE_CIRCULAR, sim.EVENT_TRACE_FILE_MODE_SEQUENTIAL
  local RT, BUF = sim.EVENT_TRACE_REAL_TIME_MODE, sim.EVENT_TRACE_BUFFERING_MODE
  local SYSLOG = sim.EVENT_TRACE_SYSTEM_LOGGER_MODE

  local function fails(code, num, ...)
    local r1, msg, c = ...
    assert.is_nil(r1, "expected a failure")
    assert.equal(code, c, msg)
    if num then assert.matches("Win32 error " .. num .. "[^%d]", msg) end
    return msg
  end

  before_each(function() sim.reset() end)
  after_each(function() sim.reset() end)

  describe("the module", function()
    it("says windows and names the NT Kernel Logger", function()
      assert.equal("windows", kl.platform)
      assert.equal(KERNEL, kl.KERNEL_LOGGER)
    end)
    it("knows which flags this Windows serves", function()
      assert.is_true(kl.flag("vamap").supported)
      sim.set_version(6, 1, 7601)
      assert.is_false(kl.flag("vamap").supported)
      assert.is_false(kl.flag("job").supported)
      assert.is_true(kl.flag("dispatcher").supported)
      sim.set_version(6, 3, 9600)
      assert.is_false(kl.flag("job").supported)
    end)
  end)

  describe("start", function()
    it("starts the NT Kernel Logger with SystemTraceControlGuid, EnableFlags and the clock", function()
      local f = tmpfile()
      local s = assert(kl.start{flags = {"process", "net"}, file = f, circular_mb = 5, clock = "system"})
      local x = assert(sim.session(KERNEL))
      assert.is_true(x.kernel_guid)
      assert.equal(0x1 | 0x10000, x.enable_flags)
      assert.equal(2, x.clock)
      assert.equal(CIRC, x.mode & (CIRC | SEQ))
      assert.equal(0, x.mode & SYSLOG)
      assert.equal(5, x.max_file_mb)
      assert.equal(f, x.file)
      assert.is_true(s.owned)
      assert(s:stop())
      assert.is_nil(sim.session(KERNEL))
    end)
    it("maps the clocks to Wnode.ClientContext 1, 2, 3 and refuses Linux clocks", function()
      for name, ctx in pairs{qpc = 1, system = 2, cycle = 3} do
        local s = assert(kl.start{name = uname(), clock = name, realtime = true})
        assert.equal(ctx, sim.session(s.name).clock)
        assert(s:stop())
      end
      fails("not_supported", nil, kl.start{name = uname(), clock = "mono", realtime = true})
    end)
    it("starts any other name as a private kernel session (SYSTEM_LOGGER_MODE)", function()
      local n = uname()
      local s = assert(kl.start{name = n, flags = {"cswitch"}, realtime = true})
      local x = sim.session(n)
      assert.equal(SYSLOG, x.mode & SYSLOG)
      assert.is_false(x.kernel_guid)
      assert.is_false(x.guid_null, "a private system logger needs a GUID of its own")
      assert.equal(0x10, x.enable_flags)
      assert(s:stop())
    end)
    it("refuses private kernel sessions before Windows 8 with not_supported", function()
      sim.set_version(6, 1, 7601)
      local msg = fails("not_supported", nil, kl.start{name = uname(), realtime = true})
      assert.matches("Windows 8", msg)
      local s = assert(kl.start{realtime = true}) -- the NT Kernel Logger still works
      assert(s:stop())
    end)
    it("refuses a flag this Windows lacks (strict), skips it otherwise", function()
      sim.set_version(6, 1, 7601)
      fails("not_supported", nil, kl.start{flags = {"vamap"}, realtime = true})
      local s = assert(kl.start{flags = {"vamap", "process"}, strict = false, realtime = true})
      assert.equal(0x1, sim.session(KERNEL).enable_flags)
      assert(s:stop())
    end)
    it("sets the modes: circular, sequential, buffering, real-time", function()
      local a = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 3})
      local b = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 7})
      local c = assert(kl.start{name = uname()})
      local d = assert(kl.start{name = uname(), realtime = true})
      assert.equal(CIRC, sim.session(a.name).mode & (CIRC | SEQ))
      assert.equal(3, sim.session(a.name).max_file_mb)
      assert.equal(SEQ, sim.session(b.name).mode & (CIRC | SEQ))
      assert.equal(7, sim.session(b.name).max_file_mb)
      assert.equal(BUF, sim.session(c.name).mode & BUF)
      assert.equal(RT, sim.session(d.name).mode & RT)
      assert.equal("circular", a:query().mode)
      assert.equal("sequential", b:query().mode)
      assert.equal("buffering", c:query().mode)
      assert.equal("realtime", d:query().mode)
      for _, s in ipairs{a, b, c, d} do assert(s:stop()) end
    end)
    it("passes buffer size, min/max buffers and the flush timer", function()
      local s = assert(kl.start{name = uname(), realtime = true, buffer_kb = 256,
                                min_buffers = 8, max_buffers = 40, flush_timer = 2})
      local x = sim.session(s.name)
      assert.equal(256, x.buffer_kb)
      assert.equal(8, x.min_buffers)
      assert.equal(40, x.max_buffers)
      assert.equal(2, x.flush_timer)
      local q = s:query()
      assert.equal(256, q.buffer_kb)
      assert.equal(40, q.max_buffers)
      assert(s:stop())
    end)
    it("asks for stacks with TraceSetInformation(TraceStackTracingInfo)", function()
      local s = assert(kl.start{name = uname(), flags = {"process", "cswitch"}, stacks = true,
                                realtime = true})
      assert.equal(3, sim.session(s.name).stack_ids) -- process start/end + cswitch
      assert(s:stop())
    end)
    it("stops the session again when the stack settings are refused", function()
      local n = uname()
      sim.fail_next("stacks", sim.ERROR_INVALID_PARAMETER)
      local msg = fails("invalid", 87, kl.start{name = n, flags = {"process"}, stacks = true,
                                               realtime = true})
      assert.matches("TraceStackTracingInfo", msg)
      assert.is_nil(sim.session(n))
    end)
    it("does not replace an existing file unless told to", function()
      local f = tmpfile()
      assert(io.open(f, "wb")):close()
      fails("already_exists", nil, kl.start{name = uname(), file = f, max_mb = 1})
      local s = assert(kl.start{name = uname(), file = f, max_mb = 1, overwrite = true})
      assert(s:stop())
    end)
  end)

  describe("names and paths", function()
    it("go to ETW as UTF-16 and come back as UTF-8", function()
      local n = uname("\u{fc}n\u{ef}c\u{f6}d\u{e9}")
      local f = tmpfile("caf\u{e9}_\u{65e5}\u{672c}")
      local s = assert(kl.start{name = n, file = f, max_mb = 1})
      local x = assert(sim.session(n), "the simulator sees the UTF-16 name")
      assert.equal(f, x.file)
      local q = assert(s:query())
      assert.equal(n, q.name)
      assert.equal(f, q.file)
      local found
      for _, e in ipairs(assert(kl.sessions())) do
        if e.name == n then found = e end
      end
      assert.is_table(found)
      assert.equal(f, found.file)
      assert(s:stop())
    end)
    it("refuses a name that is not UTF-8 before ETW sees it, naming the field", function()
      assert.error_matches(function() kl.start{name = "klt_bad_\xff\xfe", realtime = true} end,
                           "name: must be valid UTF%-8")
      assert.same({}, sim.sessions())
    end)
  end)

  describe("errors", function()
    it("already_exists names the holder's settings", function()
      assert.equal(0, sim.start_foreign{name = KERNEL, file = tmpfile("holder")})
      local msg = fails("already_exists", 183, kl.start{realtime = true})
      assert.matches("held by another trace", msg)
      assert.matches("holder", msg)
      assert.matches(KERNEL, msg, 1, true)
    end)
    it("access_denied says administrator rights are needed", function()
      sim.set_admin(false)
      local msg = fails("access_denied", 5, kl.start{name = uname(), realtime = true})
      assert.matches("administrator", msg)
    end)
    it("no_resources says too many sessions run and lists them", function()
      local first
      for i = 1, 64 do
        local n = uname("full" .. i)
        first = first or n
        assert.equal(0, sim.raw_start{name = n, mode = RT})
      end
      local msg = fails("no_resources", 1450, kl.start{name = uname(), realtime = true})
      assert.matches("too many", msg)
      assert.matches(first, msg, 1, true)
    end)
    it("the 8-system-logger limit reaches the caller as no_resources", function()
      local ss = {}
      for i = 1, 6 do ss[i] = assert(kl.start{name = uname("sys" .. i), realtime = true}) end
      fails("no_resources", 1450, kl.start{name = uname(), realtime = true})
      local k = assert(kl.start{realtime = true}) -- the NT Kernel Logger has its slot
      assert(k:stop())
      for _, s in ipairs(ss) do assert(s:stop()) end
    end)
    it("access_denied reaches query, update, flush and stop too", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 1})
      sim.set_admin(false)
      for _, r in ipairs{{s:query()}, {s:update{flush_timer = 3}}, {s:flush()}, {s:stop()}} do
        assert.matches("administrator", fails("access_denied", 5, table.unpack(r, 1, 3)))
      end
      sim.set_admin(true)
      assert(s:stop())
    end)
    it("ERROR_INVALID_PARAMETER on stop hints at a session of another user", function()
      local s = assert(kl.start{name = uname(), realtime = true})
      sim.fail_next("stop", sim.ERROR_INVALID_PARAMETER)
      assert.matches("another user", fails("invalid", 87, s:stop()))
      assert(s:stop())
    end)
    it("stopping a session that is not running gives not_found", function()
      local msg = fails("not_found", 4201, kl.stop(uname()))
      assert.matches("not running", msg)
      fails("not_found", 4201, kl.query(uname()))
    end)
    it("ERROR_MORE_DATA on stop counts as stopped", function()
      local s = assert(kl.start{name = uname(), realtime = true})
      local n = s.name
      sim.fail_next("stop", sim.ERROR_MORE_DATA)
      assert.is_table(s:stop())
      assert.is_nil(sim.session(n))
      assert.is_true(s.stopped)
    end)
    it("a session already stopping gives busy", function()
      local s = assert(kl.start{name = uname(), realtime = true})
      sim.set_stopping(s.name)
      fails("busy", 2402, s:stop())
      sim.set_stopping(s.name, false)
      assert(s:stop())
    end)
    it("a file another session writes gives bad_path", function()
      local f = tmpfile()
      local a = assert(kl.start{name = uname(), file = f, max_mb = 1})
      fails("bad_path", 161, kl.start{name = uname(), file = f, max_mb = 1, overwrite = true})
      assert(a:stop())
    end)
    it("a file that does not fit gives disk_full", function()
      sim.set_disk_free_mb(10)
      fails("disk_full", 112, kl.start{name = uname(), file = tmpfile(), circular_mb = 11})
    end)
    it("maps what was seen in the field: ERROR_BUSY and ERROR_INVALID_FLAGS", function()
      sim.fail_next("start", sim.ERROR_BUSY)
      assert.matches("security software", fails("busy", 170, kl.start{realtime = true}))
      sim.fail_next("start", sim.ERROR_INVALID_FLAGS)
      fails("not_supported", 1004, kl.start{realtime = true})
    end)
    it("refuses a missing folder with bad_path, naming the file", function()
      local f = tmp .. "\\no_such_dir\\x.etl"
      local msg = fails("bad_path", 3, kl.start{name = uname(), file = f, max_mb = 1})
      assert.matches("file: ETW cannot create '" .. f .. "' (its folder does not exist)", msg, 1, true)
    end)
  end)

  describe("query", function()
    it("returns the shared keys plus Windows' own, with counters that move", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 2,
                                flags = {"process", "thread"}})
      local a = assert(s:query())
      local b = assert(s:query())
      assert.equal(s.name, a.name)
      assert.equal("circular", a.mode)
      assert.same({"process", "thread"}, a.flags)
      assert.equal("qpc", a.clock)
      assert.is_false(a.foreign)
      for _, k in ipairs{"buffer_kb", "buffers", "free_buffers", "events_lost", "buffers_written",
                         "max_file_mb", "flush_timer", "min_buffers", "max_buffers",
                         "logger_thread_id", "log_buffers_lost", "realtime_buffers_lost",
                         "enable_flags"} do
        assert.is_number(a[k], k)
      end
      assert.is_true(b.buffers_written > a.buffers_written)
      assert(s:stop())
    end)
    it("by name works for a session this process did not start", function()
      assert.equal(0, sim.start_foreign{name = KERNEL, file = tmpfile()})
      local q = assert(kl.query())
      assert.equal(KERNEL, q.name)
      assert.is_true(q.foreign)
      local a = assert(kl.attach())
      assert.is_false(a.owned)
      assert(kl.stop())
      assert.is_nil(sim.session(KERNEL))
    end)
  end)

  describe("update", function()
    local s
    before_each(function()
      s = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 4, flags = {"process"},
                          buffer_kb = 64, min_buffers = 4, max_buffers = 16})
    end)
    after_each(function() if s and not s.stopped then s:stop() end end)

    it("changes flags, max_buffers and the flush timer", function()
      assert(s:update{flags = {"process", "disk"}, max_buffers = 32, flush_timer = 5})
      local x = sim.session(s.name)
      assert.equal(0x101, x.enable_flags)
      assert.equal(32, x.max_buffers)
      assert.equal(5, x.flush_timer)
      assert(s:update{flags = {}})
      assert.equal(0, sim.session(s.name).enable_flags)
      assert.equal(5, sim.session(s.name).flush_timer)
    end)
    it("switches to a new file, not to the same one", function()
      local g = tmpfile()
      assert(s:update{file = g, max_mb = nil})
      assert.equal(g, sim.session(s.name).file)
      assert.equal(g, s:query().file)
      local updates = sim.session(s.name).updates
      fails("invalid", nil, s:update{file = g})
      assert.equal(updates, sim.session(s.name).updates)
    end)
    it("turns real-time on and off with ControlTrace's encoding", function()
      assert(s:update{realtime = true})
      assert.equal(RT, sim.session(s.name).mode & RT)
      -- an update that leaves real time alone keeps it on
      assert(s:update{flags = {"process", "tcpip"}})
      assert.equal(RT, sim.session(s.name).mode & RT)
      assert(s:update{flush_timer = 2})
      assert.equal(RT, sim.session(s.name).mode & RT)
      assert.equal(SEQ | SYSLOG | RT, s:query().log_file_mode)
      assert(s:update{realtime = false})
      assert.equal(0, sim.session(s.name).mode & RT)
      assert.equal(SEQ | SYSLOG, sim.session(s.name).mode, "the other modes stay")
      assert.equal(SEQ | SYSLOG, s:query().log_file_mode)
      -- and a flags update on a session without real time does not add it
      assert(s:update{flags = {"process"}})
      assert.equal(0, sim.session(s.name).mode & RT)
    end)
    it("works on a block reused from QUERY (the simulator rewrites its Wnode header)", function()
      assert(s:query())
      local before = sim.session(s.name).updates
      assert(s:update{flags = {"process", "disk"}})
      assert(s:update{file = tmpfile("a_much_longer_file_name_than_the_first_one")})
      assert.equal(before + 2, sim.session(s.name).updates)
    end)
    it("refuses reserved flag bits before calling ETW", function()
      local updates = sim.session(s.name).updates
      local msg = fails("invalid", nil, s:update{flags = {"process", "extension"}})
      assert.matches("reserved", msg, 1, true)
      assert.equal(updates, sim.session(s.name).updates)
    end)
    it("refuses what Windows cannot change, before calling it", function()
      local updates = sim.session(s.name).updates
      for _, opts in ipairs{{buffer_kb = 128}, {min_buffers = 8}, {max_mb = 9},
                            {circular_mb = 2}, {clock = "cycle"}} do
        local k = next(opts)
        local msg = fails("invalid", nil, s:update(opts))
        assert.matches(k, msg, 1, true)
      end
      assert.equal(updates, sim.session(s.name).updates)
    end)
  end)

  describe("flags, names and clocks", function()
    it("refuses extension, forward_wmi, enable_reserve and masks with bits in 0xE0000000", function()
      for _, f in ipairs{{"extension"}, {"forward_wmi"}, {"enable_reserve"}, 0x80000000,
                         0x40000001, 0x20000000, 0xE0010000} do
        local msg = fails("invalid", nil, kl.start{name = uname(), flags = f})
        assert.matches("reserved EnableFlags bit", msg, 1, true)
      end
      assert.same({}, sim.sessions(), "StartTrace was never called")
    end)
    it("adds disk_io to disk_file_io, as the flag needs it", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"disk_file_io"}})
      assert.equal(0x300, sim.session(s.name).enable_flags)
      assert.same({"disk_io", "disk_file_io"}, s:query().flags)
      assert(s:stop())
    end)
    it("compares session names without case, as ETW does", function()
      local s = assert(kl.start{name = "nt kernel logger", realtime = true})
      local x = assert(sim.session(KERNEL))
      assert.is_true(x.kernel_guid, "the kernel logger, with SystemTraceControlGuid")
      assert.equal(0, x.mode & SYSLOG)
      fails("already_exists", 183, kl.start{name = "NT KERNEL LOGGER", realtime = true})
      local seen
      for _, q in ipairs(assert(kl.sessions())) do
        if q.name:lower() == KERNEL:lower() then seen = q end
      end
      assert.is_false(seen.foreign, "ours, whatever the case")
      assert(s:stop())
    end)
    it("says why clock = system may fail on a private session before Windows 10 1703", function()
      sim.set_version(10, 0, 14393)
      sim.fail_next("start", sim.ERROR_INVALID_PARAMETER)
      local msg = fails("invalid", 87, kl.start{name = uname(), realtime = true, clock = "system"})
      assert.matches("before Windows 10 1703", msg, 1, true)
      assert.matches("build 14393", msg, 1, true)
      sim.set_version(10, 0, 15063)
      sim.fail_next("start", sim.ERROR_INVALID_PARAMETER)
      msg = fails("invalid", 87, kl.start{name = uname(), realtime = true, clock = "system"})
      assert.is_nil(msg:find("1703", 1, true), "1703 and later mix clocks")
    end)
  end)

  describe("a sequential file that fills up", function()
    it("ends the session; query and stop say the file was full", function()
      local f = tmpfile()
      local s = assert(kl.start{name = uname(), file = f, max_mb = 1, flags = {"process"}})
      sim.tick(s.name, 40000) -- 24-byte records: 1 MB holds 43690
      assert.is_table(sim.session(s.name))
      sim.tick(s.name, 4000)
      assert.is_nil(sim.session(s.name), "ETW ended it")
      local q = assert(s:query())
      assert.is_true(q.file_full)
      assert.equal(f, q.file)
      assert.equal("sequential", q.mode)
      local st = assert(s:stop())
      assert.is_true(st.file_full)
      assert.equal(f, st.file)
      assert.error_matches(function() s:query() end, "stopped session")
    end)
    it("a session stopped by someone else is not_found, not file_full", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 1, flags = {"process"}})
      assert.equal(0, (sim.raw_control(s.name, sim.EVENT_TRACE_CONTROL_STOP)))
      fails("not_found", 4201, s:query())
      fails("not_found", 4201, s:stop())
    end)
  end)

  describe("flush and stop", function()
    it("flush asks ETW to flush", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 1})
      assert(s:flush())
      assert.equal(1, sim.session(s.name).flushes)
      assert(kl.flush(s.name))
      assert.equal(2, sim.session(s.name).flushes)
      assert(s:stop())
    end)
    local function size(path)
      local fh = assert(io.open(path, "rb"))
      local n = fh:seek("end")
      fh:close()
      return n
    end
    it("flush(file) moves a file session on to file (UPDATE, then FLUSH): no copy", function()
      local f, g, h = tmpfile(), tmpfile("next"), tmpfile("final")
      local s = assert(kl.start{name = uname(), file = f, max_mb = 1, flags = {"process"}})
      sim.tick(s.name, 5)
      assert(io.open(g, "wb")):close()
      fails("already_exists", nil, s:flush(g))
      assert.equal(f, sim.session(s.name).file, "refused before anything changed")
      assert(s:flush{file = g, overwrite = true})
      local x = sim.session(s.name)
      assert.equal(g, x.file)
      assert.equal(1, x.updates)
      assert.equal(1, x.flushes)
      assert.equal(g, s:query().file)
      local old = size(f)
      sim.tick(s.name, 5)
      assert.equal(old, size(f), "the old file is closed and complete")
      assert.is_true(size(g) > 16)
      -- stop(file) copies the file ETW has closed by then
      local st = assert(s:stop(h))
      assert.equal(g, st.file)
      assert.equal(size(g), size(h))
    end)
    it("buffering mode writes its buffers to the file given at stop", function()
      local f = tmpfile()
      local s = assert(kl.start{name = uname(), flags = {"process"}})
      sim.tick(s.name, 3)
      local st = assert(s:stop(f))
      assert.equal(f, st.file)
      local fh = assert(io.open(f, "rb"))
      assert.equal("ETWSIM01", fh:read(8))
      assert.is_true(#fh:read("a") > 0)
      fh:close()
    end)
    it("stop into an existing file fails before stopping unless overwrite", function()
      local f = tmpfile()
      assert(io.open(f, "wb")):close()
      local s = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 1})
      fails("already_exists", nil, s:stop(f))
      assert.is_not_nil(sim.session(s.name), "a failed file write leaves the session running")
      assert(s:stop{file = f, overwrite = true})
    end)
    it("returns the final counters", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 1, flags = {"process"}})
      local st = assert(s:stop())
      assert.is_number(st.buffers_written)
      assert.equal(s.name, st.name)
      assert.same({"process"}, st.flags)
    end)
  end)

  describe("live events of a real-time session (s:events)", function()
    local core = kl._core
    local function collect(s, opts)
      local out, lost, markers = {}, 0, 0
      for ev in s:events(opts) do
        if ev.name == "lost_events" then
          lost, markers = lost + ev.lost, markers + 1
        else
          out[#out + 1] = ev
        end
      end
      return out, lost, markers
    end
    local function drained()
      local t0 = core._monotime()
      while sim.rt_pending() > 0 and core._monotime() - t0 < 10 do core._sleep(0.02) end
      assert.equal(0, sim.rt_pending())
    end

    it("decode Process/Start and TcpIp/Send, with nothing else counted as an event", function()
      sim.set_ncpus(1000)
      local cmd = "sim.exe --long " .. string.rep("x", 3000) .. " \u{e9}t\u{e9}"
      sim.set_command_line(cmd)
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"},
                                stacks = true})
      -- the first call opens the consumer (OpenTraceW, ProcessTrace on a thread); the
      -- header, SystemConfig and StackWalk records it receives are not events
      assert.same({}, (collect(s, {timeout = 0.2})))
      sim.tick(s.name, 200)
      local evs, lost = collect(s, {timeout = 0.5})
      assert.equal(0, lost)
      assert.equal(400, #evs)
      local n, high = {}, 0
      for _, ev in ipairs(evs) do
        local key = ev.system .. "/" .. ev.name
        n[key] = (n[key] or 0) + 1
        assert.equal(pid, ev.pid)
        assert.is_true(ev.time > 1.6e18, "ns since 1970")
        if key == "Process/Start" then
          assert.equal(cmd, ev.CommandLine, "not cut at 1 KB")
          assert.equal("sim.exe", ev.ImageFileName)
          assert.equal(pid, ev.ParentId)
          assert.equal(0, (ev.ProcessId - 1000) % 2)
        else
          assert.equal(100 + ev.seqnum, ev.size)
          assert.equal(0x901f, ev.dport)
          -- the CPU is ProcessorIndex, not the 8-bit ProcessorNumber
          assert.equal(ev.seqnum % 1000, ev.cpu)
          if ev.cpu > 255 then high = high + 1 end
        end
      end
      assert.same({["Process/Start"] = 200, ["TcpIp/Send"] = 200}, n)
      assert.equal(72, high) -- odd seqnums 257..399
      assert(s:stop())
    end)
    it("filter by names, cpu and pid, like Trace:events", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"}})
      collect(s, {timeout = 0.2})
      sim.tick(s.name, 10)
      assert.equal(10, #collect(s, {names = {"TcpIp"}, timeout = 0.3}))
      sim.tick(s.name, 10)
      assert.equal(10, #collect(s, {names = {"Process:Start"}, timeout = 0.3}))
      sim.tick(s.name, 10) -- records 40..59 on CPUs 0..3
      assert.equal(5, #collect(s, {cpu = 1, timeout = 0.3}))
      sim.tick(s.name, 10)
      assert.equal(0, #collect(s, {pid = pid + 1, timeout = 0.3}))
      assert(s:stop())
    end)
    it("deliver first what the session logged before the consumer opened (playback)", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"}})
      sim.tick(s.name, 3)
      local evs = collect(s, {timeout = 0.3})
      assert.equal(6, #evs)
      assert.equal("Process", evs[1].system)
      assert.equal(1000, evs[1].ProcessId, "the first record the session logged")
      assert(s:stop())
    end)
    it("lose what no longer fits the playback file, as events_lost", function()
      sim.set_playback(4)
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"}})
      sim.tick(s.name, 5) -- 2 buffers of 2 records fit, 3 do not
      assert.equal(6, sim.session(s.name).events_lost)
      assert.equal(4, #collect(s, {timeout = 0.3}))
      assert(s:stop())
    end)
    it("report buffers the consumer had no room for as lost_events", function()
      sim.set_rt_queue(10)
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"}})
      collect(s, {timeout = 0.2})
      sim.rt_hold(true) -- a slow consumer: 5 buffers of 2 records fit, 3 are lost
      sim.tick(s.name, 8)
      sim.rt_hold(false)
      local evs, lost = collect(s, {timeout = 0.5})
      assert.equal(10, #evs)
      assert.equal(3, lost)
      assert.equal(3, s:query().realtime_buffers_lost)
      assert(s:stop())
    end)
    it("count exactly what the bounded queue had to drop", function()
      sim.set_rt_queue(100000)
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"}})
      collect(s, {timeout = 0.2})
      sim.tick(s.name, 5000) -- 10000 events for a queue of 8192
      drained()
      local evs, lost, markers = collect(s, {timeout = 0.5})
      assert.equal(8192, #evs)
      assert.equal(1808, lost)
      assert.equal(1, markers)
      assert(s:stop())
    end)
    it("end when someone else stops the session, not at the timeout", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process", "tcpip"}})
      collect(s, {timeout = 0.2})
      sim.tick(s.name, 3)
      local it = s:events{timeout = 8}
      assert.is_table(it())
      local t0 = core._monotime()
      assert.equal(0, (sim.raw_control(s.name, sim.EVENT_TRACE_CONTROL_STOP))) -- writes 1 more buffer
      local rest = 0
      for _ in it do rest = rest + 1 end
      assert.equal(7, rest)
      assert.is_true(core._monotime() - t0 < 6)
      fails("not_found", 4201, s:stop())
    end)
    it("stop() ends the consumer first; attach by name works too", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process"}})
      local a = assert(kl.attach(s.name))
      collect(a, {timeout = 0.2})
      sim.tick(s.name, 4)
      assert.equal(4, #collect(a, {timeout = 0.3}))
      assert(s:stop())
      assert.error_matches(function() s:events() end, "stopped session")
    end)
    it("raise OpenTraceW's error when the consumer cannot open", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process"}})
      sim.set_admin(false)
      assert.error_matches(function() s:events{timeout = 0}() end,
                           "Win32 error 5:.*%[access_denied%]")
      sim.set_admin(true)
      assert.equal(0, (sim.raw_control(s.name, sim.EVENT_TRACE_CONTROL_STOP)))
      assert.error_matches(function() s:events{timeout = 0}() end,
                           "no real%-time session of this name is running.*%[not_found%]")
    end)
    it("raise ProcessTrace's error once, then end", function()
      local s = assert(kl.start{name = uname(), realtime = true, flags = {"process"}})
      sim.fail_next("process", sim.ERROR_INVALID_PARAMETER)
      assert.error_matches(function() s:events{timeout = 2}() end,
                           "ProcessTrace ended the real%-time consumer.*Win32 error 87")
      assert.is_nil(s:events{timeout = 0}())
      assert(s:stop())
    end)
    it("follow update{realtime = ...} on a file session", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), max_mb = 4, flags = {"process"}})
      assert.error_matches(function() s:events{timeout = 0}() end, "not a real%-time session")
      assert(s:update{realtime = true})
      collect(s, {timeout = 0.2})
      sim.tick(s.name, 3)
      assert.equal(3, #collect(s, {timeout = 0.3}))
      assert(s:update{realtime = false}) -- the consumer is closed
      assert.error_matches(function() s:events{timeout = 0}() end, "not a real%-time session")
      assert(s:update{realtime = true}) -- update queries afterwards: 1 buffer passes
      sim.tick(s.name, 2)
      assert.equal(3, #collect(s, {timeout = 0.3}), "a new consumer gets the playback")
      assert(s:stop())
    end)
  end)

  describe("a handle controls only its own session", function()
    local STOP = sim.EVENT_TRACE_CONTROL_STOP
    local NEWCOMER = "now belongs to another tool"
    -- ours is stopped by someone else, then another tool starts the same name.  The NT
    -- Kernel Logger answers any handle; a private session's handle finds nothing.
    local cases = {
      {"NT Kernel Logger, newcomer with a file", {realtime = true, flags = {"process"}},
       function(n) return {name = n, file = tmpfile("newcomer")} end},
      {"NT Kernel Logger, newcomer with the same settings", {realtime = true},
       function(n) return {name = n, mode = RT} end, true},
      {"private session, newcomer in another case", {name = "klt_etw_priv", realtime = true},
       function(n) return {name = n:upper(), mode = RT | SYSLOG} end, false, "is not running"},
      {"private session with a file", {name = "klt_etw_privf", file = "*", circular_mb = 2},
       function(n) return {name = n, file = tmpfile("newcomer"), mode = SEQ | SYSLOG} end,
       false, "is not running"},
    }
    for _, c in ipairs(cases) do
      it(c[1] .. ": update, flush, stop, <close> and query leave it alone", function()
        local opts = {}
        for k, v in pairs(c[2]) do opts[k] = v == "*" and tmpfile() or v end
        local s = assert(kl.start(opts))
        local n = s.name
        if c[4] then assert(s:query()) end -- the logger thread is known from here on
        assert.equal(0, (sim.raw_control(n, STOP)))
        assert.equal(0, sim.start_foreign(c[3](n)))
        local x = sim.session(n)
        local before = {x.updates, x.flushes, x.file, x.enable_flags}
        for _, r in ipairs{{s:query()}, {s:update{flags = {"tcpip"}}}, {s:flush()},
                           {s:flush(tmpfile("stolen"))}, {s:update{realtime = false, file = tmpfile()}},
                           {s:stop()}} do
          assert.matches(c[5] or NEWCOMER, fails("not_found", nil, table.unpack(r, 1, 3)), 1, true)
        end
        x = assert(sim.session(n), "the newcomer still runs")
        assert.same(before, {x.updates, x.flushes, x.file, x.enable_flags})
        assert.is_true(s.stopped, "this handle's session is over")
        assert.is_true(assert(kl.query(n)).foreign)
        assert(kl.stop(n))
      end)
    end
    it("<close> of a stale handle does not stop the newcomer", function()
      do
        local s <close> = assert(kl.start{realtime = true})
        assert.equal(0, (sim.raw_control(KERNEL, STOP)))
        assert.equal(0, sim.start_foreign{name = KERNEL, file = tmpfile("newcomer")})
        assert.is_false(s.stopped)
      end
      assert.is_table(sim.session(KERNEL))
      assert.is_true(assert(kl.query()).foreign)
      assert(kl.stop())
    end)
    it("a full sequential NT session: stop says file_full and leaves the newcomer", function()
      local f = tmpfile()
      local s = assert(kl.start{file = f, max_mb = 1, flags = {"process"}})
      sim.tick(KERNEL, 44000)
      assert.is_nil(sim.session(KERNEL), "ETW ended it")
      assert.equal(0, sim.start_foreign{name = KERNEL, file = tmpfile("newcomer")})
      assert.is_true(assert(s:query()).file_full)
      local st = assert(s:stop())
      assert.is_true(st.file_full)
      assert.equal(f, st.file)
      assert.is_table(sim.session(KERNEL), "the newcomer still runs")
      assert(kl.stop())
    end)
    it("query, sessions and stop by name call a session this process started ours", function()
      local s = assert(kl.start{name = uname(), realtime = true})
      assert.is_false(s:query().foreign)
      assert.is_false(assert(kl.query(s.name)).foreign)
      local a = assert(kl.attach(s.name))
      assert.is_false(a:query().foreign)
      assert.is_false(assert(kl.stop(s.name)).foreign)
    end)
    it("another handle of this process moving the file on does not make it foreign", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 2})
      local a = assert(kl.attach(s.name))
      assert(a:flush(tmpfile("moved")))
      assert.is_false(assert(s:query()).foreign)
      assert(s:stop())
    end)
  end)

  describe("messages name the field, the operation and the session", function()
    local long = tmp .. "\\" .. string.rep("p", 2851 - #tmp - 5) .. ".etl"
    local rows = {
      {"a file that is not UTF-8", {name = "klt_f", file = tmp .. "\\a\xff.etl", max_mb = 1},
       "^start 'klt_f': file is not valid UTF%-8 %(Win32 error 1113: "},
      {"a file path of 2851 characters", {name = "klt_f", file = long, max_mb = 1},
       "^start 'klt_f': file is too long: 2851 UTF%-16 characters, the limit is 1023 " ..
       "%(Win32 error 122: "},
    }
    for _, r in ipairs(rows) do
      it(r[1], function()
        assert.matches(r[3], fails("invalid", nil, kl.start(r[2])))
        assert.same({}, sim.sessions())
      end)
    end
    it("flush, stop and open name themselves", function()
      local s = assert(kl.start{name = "klt_m", realtime = true})
      assert.matches("^flush 'klt_m': file is not valid UTF%-8",
                     fails("invalid", nil, s:flush(tmp .. "\\\xff.etl")))
      assert.matches("^stop 'klt_m': file is too long: 2851 ", fails("invalid", nil, s:stop(long)))
      assert.matches("^open: path is not valid UTF%-8", fails("invalid", nil, kl.open(tmp .. "\\\xff.etl")))
      assert(s:stop())
    end)
    it("a missing name: the operation asked, not 'open'", function()
      for op, r in pairs{query = {kl.query("nosuch")}, flush = {kl.flush("nosuch")},
                         stop = {kl.stop("nosuch")}, attach = {kl.attach("nosuch")}} do
        assert.matches("^" .. op .. " 'nosuch': the session is not running",
                       fails("not_found", 4201, table.unpack(r, 1, 3)))
      end
    end)
    it("injected StartTrace errors say something true, with no '?'", function()
      for _, r in ipairs{
        {sim.ERROR_BAD_PATHNAME or 161, "bad_path", "names no file"},
        {sim.ERROR_ALREADY_EXISTS or 183, "already_exists", "another trace holds it"},
        {sim.ERROR_DISK_FULL or 112, "disk_full", "not enough disk space %("},
      } do
        sim.fail_next("start", r[1])
        local msg = fails(r[2], r[1], kl._core.start{name = uname(), realtime = true})
        assert.matches(r[3], msg)
        assert.is_nil(msg:find("?", 1, true), msg)
        assert.is_nil(msg:find(" 0 MB", 1, true), msg)
      end
    end)
    it("an existing file at start suggests overwrite = true", function()
      local f = tmpfile()
      assert(io.open(f, "wb")):close()
      local msg = fails("already_exists", nil, kl._core.start{name = uname(), file = f, max_mb = 1})
      assert.matches("pass overwrite = true", msg, 1, true)
      assert.is_nil(msg:find("on_conflict", 1, true))
    end)
  end)

  describe("a failed QUERY fails (ERROR_MORE_DATA too)", function()
    it("query, kl.query, attach and update return nil, message, code", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 2,
                                flags = {"process"}})
      local calls = {
        function() return s:query() end,
        function() return kl.query(s.name) end,
        function() return kl.attach(s.name) end,
        function() return s:update{flags = {"tcpip"}} end,
      }
      for _, call in ipairs(calls) do
        sim.fail_next("query", sim.ERROR_MORE_DATA)
        assert.matches("ERROR_MORE_DATA", fails("invalid", 234, call()), 1, true)
      end
      assert.equal(0, sim.session(s.name).updates)
      assert.equal(1, sim.session(s.name).enable_flags)
      assert(s:stop())
    end)
  end)

  describe("destinations are checked before the session changes", function()
    local function dir()
      local d = tmpfile("dir"):gsub("%.etl$", "")
      assert(require("lfs").mkdir(d))
      return d
    end
    local rows = {
      {"a missing folder", function() return tmp .. "\\no_such_dir\\x.etl" end, false,
       "bad_path", "cannot write"},
      {"a directory", dir, false, "bad_path", "is a directory"},
      {"a directory, overwrite = true", dir, true, "bad_path", "is a directory"},
      {"an existing file", function()
        local f = tmpfile()
        assert(io.open(f, "wb")):close()
        return f
      end, false, "already_exists", "overwrite = true"},
    }
    for _, r in ipairs(rows) do
      it("stop and flush to " .. r[1] .. " leave the session running", function()
        local s = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 2})
        local dest = r[2]()
        for _, res in ipairs{{s:stop{file = dest, overwrite = r[3]}},
                             {s:flush{file = dest, overwrite = r[3]}}} do
          assert.matches(r[5], fails(r[4], nil, table.unpack(res, 1, 3)), 1, true)
        end
        assert.is_false(s.stopped)
        assert.equal(0, sim.session(s.name).updates)
        assert(s:stop())
      end)
      it("start with " .. r[1] .. " as its file fails with " .. r[4], function()
        if r[1] == "a missing folder" then return end -- ETW's own answer: see "errors"
        local msg = fails(r[4], nil, kl._core.start{name = uname(), file = r[2](), max_mb = 1,
                                                    overwrite = r[3]})
        assert.matches(r[5], msg, 1, true)
        assert.same({}, sim.sessions())
      end)
    end
    it("a copy that fails after the stop says the session stopped and where its data is", function()
      local f = tmpfile()
      local s = assert(kl.start{name = uname(), file = f, circular_mb = 2})
      assert(os.remove(f)) -- the copy's source is gone
      local msg = fails("not_found", nil, s:stop(tmpfile("copy")))
      assert.matches("the session is stopped and its data is in '" .. f, msg, 1, true)
      assert.is_true(s.stopped)
      assert.matches("(stopped)", tostring(s), 1, true)
      assert.is_nil(sim.session(s.name))
    end)
  end)

  describe("update refuses, before ETW, what ETW would refuse", function()
    local rows = {
      {"realtime = false without a file", {realtime = true}, {realtime = false},
       "realtime = false.*nowhere to log"},
      {"realtime = true on a buffering session", {}, {realtime = true},
       "realtime = true.*buffering"},
      {"max_buffers below min_buffers", {realtime = true, min_buffers = 8}, {max_buffers = 1},
       "max_buffers = 1 is below the session's min_buffers %(8%)"},
    }
    for _, r in ipairs(rows) do
      it(r[1], function()
        local opts = {name = uname()}
        for k, v in pairs(r[2]) do opts[k] = v end
        local s = assert(kl.start(opts))
        local mode = sim.session(s.name).mode
        assert.matches(r[4], fails("invalid", nil, s:update(r[3])))
        assert.equal(0, sim.session(s.name).updates)
        assert.equal(mode, sim.session(s.name).mode)
        assert(s:stop())
      end)
    end
    it("realtime = false with a new file in the same update is fine", function()
      local s = assert(kl.start{name = uname(), realtime = true})
      local f = tmpfile()
      assert(s:update{realtime = false, file = f})
      assert.equal(0, sim.session(s.name).mode & RT)
      assert.equal(f, s:query().file)
      assert(s:stop())
    end)
  end)

  describe("sessions", function()
    it("lists ours and foreign ones, looping past 16 at a time", function()
      assert.equal(0, sim.start_foreign{name = KERNEL})
      for i = 1, 20 do assert.equal(0, sim.raw_start{name = uname("other" .. i), mode = RT}) end
      local mine = {}
      for i = 1, 3 do mine[i] = assert(kl.start{name = uname("mine" .. i), realtime = true}) end
      local list = assert(kl.sessions())
      assert.equal(24, #list)
      local seen = {}
      for _, q in ipairs(list) do seen[q.name] = q end
      assert.is_true(seen[KERNEL].foreign)
      for _, s in ipairs(mine) do
        assert.is_false(seen[s.name].foreign)
        assert(s:stop())
      end
    end)
  end)
end)
