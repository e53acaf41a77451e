-- The ETW backend through the public API, with core.dll bound to the ETW
-- contract simulator (spec/support/etwsim).  Windows only: it runs under Wine
-- in .ci/windows; on a real Windows runner the same file runs against the
-- simulator build too (the real-ETW checks are in etw_real_spec.lua).
local windows = package.config:sub(1, 1) == "\\"

describe("ETW backend (simulator) #windows", function()
  if not windows then
    pending("Windows only (runs under Wine from .ci/windows)")
    return
  end

  local kl = require "kernellogger"
  local ok_sim, sim = pcall(require, "etwsim")
  if not ok_sim then
    pending("needs the simulator build (etwsim.dll)")
    return
  end

  local pid = kl._core._getpid()
  local tmp = os.getenv("KL_TMPDIR") or "."
  local seq = 0
  local function uname(tag)
    seq = seq + 1
    return ("klt_etw_%s_%d_%d"):format(tag or "s", pid, seq)
  end
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
    it("refuses a name that is not UTF-8", function()
      local r, _, code = kl.start{name = "klt_bad_\xff\xfe", realtime = true}
      assert.is_nil(r)
      assert.equal("invalid", code)
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
    it("refuses a missing folder with bad_path", function()
      fails("bad_path", 3, kl.start{name = uname(), file = tmp .. "\\no_such_dir\\x.etl", max_mb = 1})
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
    it("turns real-time on", function()
      assert(s:update{realtime = true})
      assert.equal(RT, sim.session(s.name).mode & RT)
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

  describe("flush and stop", function()
    it("flush asks ETW to flush", function()
      local s = assert(kl.start{name = uname(), file = tmpfile(), circular_mb = 1})
      assert(s:flush())
      assert.equal(1, sim.session(s.name).flushes)
      assert(kl.flush(s.name))
      assert.equal(2, sim.session(s.name).flushes)
      assert(s:stop())
    end)
    it("flush and stop copy a file session's trace to another file", function()
      local f, g, h = tmpfile(), tmpfile("copy"), tmpfile("final")
      local s = assert(kl.start{name = uname(), file = f, max_mb = 1, flags = {"process"}})
      assert(s:flush(g))
      local fh = assert(io.open(g, "rb"))
      assert.equal("ETWSIM01", fh:read(8))
      fh:close()
      fails("already_exists", nil, s:flush(g))
      assert(s:flush{file = g, overwrite = true})
      local st = assert(s:stop(h))
      assert.equal(f, st.file)
      fh = assert(io.open(h, "rb"))
      assert.equal("ETWSIM01", fh:read(8))
      fh:close()
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
