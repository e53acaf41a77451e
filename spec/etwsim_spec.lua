-- The ETW contract simulator's own conformance spec: it walks the error
-- table and the documented rules in docs/windows.md ("How it is tested
-- without Windows"), calling the simulator's advapi32 look-alikes with
-- hand-made blocks.
-- Windows only: it runs under Wine in .ci/windows.
local windows = package.config:sub(1, 1) == "\\"

describe("ETW contract simulator #windows", function()
  if not windows then
    pending("Windows only (runs under Wine from .ci/windows)")
    return
  end

  local sim = require "etwsim"
  local pid = require("kernellogger")._core._getpid()
  local tmp = os.getenv("KL_TMPDIR") or "."
  local seq = 0
  local function uname(tag)
    seq = seq + 1
    return ("klt_sim_%s_%d_%d"):format(tag or "s", pid, seq)
  end
  local function tmpfile(tag)
    seq = seq + 1
    return ("%s\\klt_sim_%s_%d_%d.etl"):format(tmp, tag or "f", pid, seq)
  end
  local KERNEL = "NT Kernel Logger"
  local SEQ = sim.EVENT_TRACE_FILE_MODE_SEQUENTIAL
  local CIRC = sim.EVENT_TRACE_FILE_MODE_CIRCULAR
  local RT = sim.EVENT_TRACE_REAL_TIME_MODE
  local SYSLOG = sim.EVENT_TRACE_SYSTEM_LOGGER_MODE

  before_each(function() sim.reset() end)
  after_each(function() sim.reset() end)

  describe("StartTrace error table", function()
    it("Wnode.BufferSize = 0 gives ERROR_BAD_LENGTH", function()
      assert.equal(sim.ERROR_BAD_LENGTH, sim.raw_start{name = uname(), file = tmpfile(), buffer_size = 0})
    end)
    it("a Wnode.BufferSize smaller than the struct gives ERROR_BAD_LENGTH", function()
      assert.equal(sim.ERROR_BAD_LENGTH, sim.raw_start{name = uname(), mode = RT, buffer_size = 64})
    end)
    it("a name longer than the room in the block gives ERROR_BAD_LENGTH", function()
      assert.equal(sim.ERROR_BAD_LENGTH,
        sim.raw_start{name = uname("a_rather_long_session_name"), room = 8, mode = RT})
      -- the same name fits in the usual room
      assert.equal(sim.ERROR_SUCCESS,
        sim.raw_start{name = uname("a_rather_long_session_name"), mode = RT})
    end)
    it("NULL properties or a NULL handle pointer give ERROR_INVALID_PARAMETER", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_start{name = uname(), mode = RT, null_props = true})
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_start{name = uname(), mode = RT, null_handle = true})
    end)
    it("offsets pointing inside the struct give ERROR_INVALID_PARAMETER", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER,
        sim.raw_start{name = uname(), file = tmpfile(), log_file_name_offset = 1})
      assert.equal(sim.ERROR_INVALID_PARAMETER,
        sim.raw_start{name = uname(), mode = RT, logger_name_offset = 1})
    end)
    it("SEQUENTIAL together with CIRCULAR gives ERROR_INVALID_PARAMETER", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER,
        sim.raw_start{name = uname(), file = tmpfile(), mode = SEQ | CIRC, max_file_mb = 1})
    end)
    it("SystemTraceControlGuid with another name gives ERROR_INVALID_PARAMETER", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER,
        sim.raw_start{name = uname(), mode = RT, kernel_guid = true})
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = KERNEL, mode = RT, kernel_guid = true})
    end)
    it("no log file and LogFileMode 0 gives ERROR_BAD_PATHNAME", function()
      assert.equal(sim.ERROR_BAD_PATHNAME, sim.raw_start{name = uname(), mode = 0})
    end)
    it("a valid call without admin rights gives ERROR_ACCESS_DENIED", function()
      sim.set_admin(false)
      assert.equal(sim.ERROR_ACCESS_DENIED, sim.raw_start{name = uname(), file = tmpfile()})
      sim.set_admin(true)
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = uname(), file = tmpfile()})
    end)
    it("the same session again gives ERROR_ALREADY_EXISTS", function()
      local n = uname()
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = n, mode = RT})
      assert.equal(sim.ERROR_ALREADY_EXISTS, sim.raw_start{name = n, mode = RT})
    end)
    it("there is exactly one NT Kernel Logger", function()
      assert.equal(sim.ERROR_SUCCESS, sim.start_foreign{name = KERNEL})
      assert.equal(sim.ERROR_ALREADY_EXISTS, sim.raw_start{name = KERNEL, mode = RT, kernel_guid = true})
      assert.same({KERNEL}, sim.sessions())
    end)
    it("a file another session already logs to gives ERROR_BAD_PATHNAME", function()
      local f = tmpfile()
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = uname(), file = f})
      assert.equal(sim.ERROR_BAD_PATHNAME, sim.raw_start{name = uname(), file = f})
    end)
    it("a MaximumFileSize that does not fit gives ERROR_DISK_FULL", function()
      sim.set_disk_free_mb(100)
      assert.equal(sim.ERROR_DISK_FULL,
        sim.raw_start{name = uname(), file = tmpfile(), mode = CIRC, max_file_mb = 101})
      assert.equal(sim.ERROR_SUCCESS,
        sim.raw_start{name = uname(), file = tmpfile(), mode = CIRC, max_file_mb = 100})
    end)
    it("CIRCULAR, NEWFILE and PREALLOCATE need MaximumFileSize > 0", function()
      for _, m in ipairs{CIRC, SEQ | sim.EVENT_TRACE_FILE_MODE_NEWFILE,
                         SEQ | sim.EVENT_TRACE_FILE_MODE_PREALLOCATE} do
        assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_start{name = uname(), file = tmpfile(), mode = m})
      end
    end)
    it("USE_PAGED_MEMORY is refused for kernel sessions", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER,
        sim.raw_start{name = KERNEL, kernel_guid = true, mode = RT | sim.EVENT_TRACE_USE_PAGED_MEMORY})
    end)
    it("SYSTEM_LOGGER_MODE needs Windows 8", function()
      sim.set_version(6, 1, 7601)
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_start{name = uname(), mode = RT | SYSLOG})
      sim.set_version(6, 2, 9200)
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = uname(), mode = RT | SYSLOG})
    end)
    it("a flag the OS does not know gives ERROR_INVALID_FLAGS", function()
      sim.set_version(6, 1, 7601)
      assert.equal(sim.ERROR_INVALID_FLAGS,
        sim.raw_start{name = KERNEL, kernel_guid = true, mode = RT, flags = 0x8000}) -- VAMAP
    end)
  end)

  describe("limits", function()
    it("at most 64 loggers, then ERROR_NO_SYSTEM_RESOURCES", function()
      local lim = sim.limits()
      assert.equal(64, lim.loggers)
      for i = 1, lim.loggers do
        assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = uname("l" .. i), mode = RT}, "logger " .. i)
      end
      assert.equal(sim.ERROR_NO_SYSTEM_RESOURCES, sim.raw_start{name = uname(), mode = RT})
    end)
    it("8 system loggers, two slots kept for the NT Kernel Logger and the CKCL", function()
      local lim = sim.limits()
      assert.equal(8, lim.system_loggers)
      local private = lim.system_loggers - lim.reserved_system_slots
      for i = 1, private do
        assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = uname("k" .. i), mode = RT | SYSLOG})
      end
      assert.equal(sim.ERROR_NO_SYSTEM_RESOURCES, sim.raw_start{name = uname(), mode = RT | SYSLOG})
      -- ordinary sessions and the reserved ones still start
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = uname(), mode = RT})
      assert.equal(sim.ERROR_SUCCESS, sim.raw_start{name = KERNEL, kernel_guid = true, mode = RT})
      assert.equal(sim.ERROR_SUCCESS,
        sim.raw_start{name = "Circular Kernel Context Logger", mode = RT | SYSLOG})
    end)
  end)

  describe("ControlTrace", function()
    it("names a session that is not running: ERROR_WMI_INSTANCE_NOT_FOUND", function()
      for _, code in ipairs{sim.EVENT_TRACE_CONTROL_QUERY, sim.EVENT_TRACE_CONTROL_STOP,
                            sim.EVENT_TRACE_CONTROL_UPDATE, sim.EVENT_TRACE_CONTROL_FLUSH} do
        assert.equal(sim.ERROR_WMI_INSTANCE_NOT_FOUND, (sim.raw_control(uname(), code)))
      end
      assert.equal(4201, sim.ERROR_WMI_INSTANCE_NOT_FOUND)
    end)
    it("without admin rights: ERROR_ACCESS_DENIED", function()
      local n = uname()
      assert.equal(0, sim.raw_start{name = n, mode = RT})
      sim.set_admin(false)
      assert.equal(sim.ERROR_ACCESS_DENIED, (sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY)))
    end)
    it("QUERY counters move", function()
      local n = uname()
      assert.equal(0, sim.raw_start{name = n, file = tmpfile(), mode = SEQ | SYSLOG, flags = 0x3})
      local rc1, a = sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY)
      local rc2, b = sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY)
      assert.equal(0, rc1)
      assert.equal(0, rc2)
      assert.is_true(b.buffers_written > a.buffers_written)
    end)
    it("QUERY with a block too small for the names: ERROR_MORE_DATA", function()
      local n = uname("long_enough_name")
      assert.equal(0, sim.raw_start{name = n, mode = RT})
      assert.equal(sim.ERROR_MORE_DATA, (sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY, 4)))
      assert.is_not_nil(sim.session(n))
    end)
    it("STOP with a block too small: ERROR_MORE_DATA, and the session is stopped", function()
      local n = uname("long_enough_name")
      assert.equal(0, sim.raw_start{name = n, mode = RT})
      assert.equal(sim.ERROR_MORE_DATA, (sim.raw_control(n, sim.EVENT_TRACE_CONTROL_STOP, 4)))
      assert.is_nil(sim.session(n))
    end)
    it("STOP of a session already stopping: ERROR_ACTIVE_CONNECTIONS", function()
      local n = uname()
      assert.equal(0, sim.raw_start{name = n, mode = RT})
      sim.set_stopping(n)
      assert.equal(sim.ERROR_ACTIVE_CONNECTIONS, (sim.raw_control(n, sim.EVENT_TRACE_CONTROL_STOP)))
    end)
    it("STOP returns the final properties and removes the session", function()
      local n = uname()
      assert.equal(0, sim.raw_start{name = n, mode = RT | SYSLOG, flags = 0x10})
      local rc, p = sim.raw_control(n, sim.EVENT_TRACE_CONTROL_STOP)
      assert.equal(0, rc)
      assert.equal(0x10, p.enable_flags)
      assert.same({}, sim.sessions())
    end)
  end)

  describe("UPDATE", function()
    local n, f
    before_each(function()
      n, f = uname(), tmpfile()
      assert.equal(0, sim.raw_start{name = n, file = f, mode = SEQ | SYSLOG, flags = 0x1,
                                    buffer_kb = 64, min_buffers = 4, max_buffers = 16})
    end)
    it("changes EnableFlags (0 turns all off), FlushTimer, MaximumBuffers", function()
      assert.equal(0, sim.raw_update(n, {flags = 0x12, flush_timer = 3, max_buffers = 32}))
      local s = sim.session(n)
      assert.equal(0x12, s.enable_flags)
      assert.equal(3, s.flush_timer)
      assert.equal(32, s.max_buffers)
      assert.equal(0, sim.raw_update(n, {flags = 0}))
      assert.equal(0, sim.session(n).enable_flags)
      assert.equal(3, sim.session(n).flush_timer) -- 0 keeps
    end)
    it("switches the log file, but not to the same name", function()
      local g = tmpfile()
      assert.equal(0, sim.raw_update(n, {file = g}))
      assert.equal(g, sim.session(n).file)
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_update(n, {file = g}))
    end)
    it("LogFileMode: non-zero is OR'd into the modes, 0 turns REAL_TIME off", function()
      assert.equal(0, sim.raw_update(n, {mode = RT}))
      assert.equal(SEQ | SYSLOG | RT, sim.session(n).mode)
      -- what a reused queried block would carry: the same modes, OR'd again
      assert.equal(0, sim.raw_update(n, {mode = SEQ | SYSLOG}))
      assert.equal(RT, sim.session(n).mode & RT, "a non-zero mode never turns real time off")
      assert.equal(0, sim.raw_update(n, {mode = 0, flush_timer = 2}))
      assert.equal(SEQ | SYSLOG, sim.session(n).mode)
    end)
    it("refuses a block whose Wnode.Flags lacks WNODE_FLAG_TRACED_GUID", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_update(n, {flush_timer = 2, wnode_flags = sim.WNODE_FLAG_ALL_DATA}))
      assert.equal(0, sim.session(n).updates)
    end)
    it("refuses a new file name that lies beyond Wnode.BufferSize", function()
      -- a queried block's BufferSize covers only what QUERY filled in
      local rc, q = sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY)
      assert.equal(0, rc)
      assert.equal(sim.ERROR_BAD_LENGTH,
                   sim.raw_update(n, {file = tmpfile("a_longer_name_than_before"),
                                              buffer_size = q.wnode_size}))
    end)
    it("refuses SystemTraceControlGuid for a session that is not the kernel logger", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_update(n, {flush_timer = 2, kernel_guid = true}))
      assert.equal(0, sim.session(n).updates)
    end)
    it("refuses EVENT_TRACE_FLAG_EXTENSION without extension data", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_update(n, {flags = sim.EVENT_TRACE_FLAG_EXTENSION | 0x1}))
    end)
    it("QUERY answers with a Wnode header of its own (Flags, BufferSize)", function()
      local rc, q = sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY)
      assert.equal(0, rc)
      assert.equal(sim.WNODE_FLAG_ALL_DATA, q.wnode_flags)
      assert.is_true(q.wnode_size < 120 + 2 * 2 * 1024)
    end)
    it("can not change MaximumFileSize, BufferSize, MinimumBuffers or other modes", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_update(n, {max_file_mb = 5}))
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_update(n, {buffer_kb = 128}))
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_update(n, {min_buffers = 8}))
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_update(n, {mode = CIRC | SYSLOG}))
      -- the same values as now are accepted (a queried block reused)
      assert.equal(0, sim.raw_update(n, {buffer_kb = 64, min_buffers = 4}))
    end)
    it("EnableFlags applies to system loggers only", function()
      local plain = uname()
      assert.equal(0, sim.raw_start{name = plain, mode = RT})
      assert.equal(0, sim.raw_update(plain, {flags = 0x1}))
      assert.equal(0, sim.session(plain).enable_flags)
    end)
  end)

  describe("EnableFlags", function()
    it("EXTENSION with zero offset or length gives ERROR_INVALID_PARAMETER", function()
      local X = sim.EVENT_TRACE_FLAG_EXTENSION
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_start{name = uname(), mode = RT | SYSLOG, flags = X})
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_start{name = uname(), mode = RT | SYSLOG, flags = X | 0x0004})
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_start{name = uname(), mode = RT | SYSLOG, flags = X | 0x00010000})
      -- an array inside the structure, or beyond Wnode.BufferSize
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_start{name = uname(), mode = RT | SYSLOG, flags = X | 0x00010008})
      assert.equal(sim.ERROR_INVALID_PARAMETER,
                   sim.raw_start{name = uname(), mode = RT | SYSLOG, flags = X | 0x00FFFFF0})
      assert.same({}, sim.sessions())
      -- the group bits alone are fine
      assert.equal(0, sim.raw_start{name = uname(), mode = RT | SYSLOG, flags = 0x1fffffff})
    end)
    it("StartTrace wants WNODE_FLAG_TRACED_GUID too", function()
      assert.equal(0, sim.raw_start{name = uname(), mode = RT}) -- raw_start sets it
    end)
  end)

  describe("QueryAllTraces", function()
    it("refuses 0 or more than 64 blocks", function()
      assert.equal(sim.ERROR_INVALID_PARAMETER, (sim.raw_query_all(0)))
      assert.equal(sim.ERROR_INVALID_PARAMETER, (sim.raw_query_all(65)))
    end)
    it("gives ERROR_MORE_DATA and the count when the array is too small", function()
      for i = 1, 5 do assert.equal(0, sim.raw_start{name = uname("q" .. i), mode = RT}) end
      local rc, count = sim.raw_query_all(3)
      assert.equal(sim.ERROR_MORE_DATA, rc)
      assert.equal(5, count)
      rc, count = sim.raw_query_all(8)
      assert.equal(0, rc)
      assert.equal(5, count)
    end)
  end)

  describe("TraceSetInformation(TraceStackTracingInfo)", function()
    it("takes whole CLASSIC_EVENT_ID entries, at most 256", function()
      local n = uname()
      assert.equal(0, sim.raw_start{name = n, mode = RT | SYSLOG})
      assert.equal(0, sim.raw_stacks(n, 3))
      assert.equal(3, sim.session(n).stack_ids)
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_stacks(n, 2, nil, 5))
      assert.equal(sim.ERROR_INVALID_PARAMETER, sim.raw_stacks(n, 257))
      assert.equal(sim.ERROR_NOT_SUPPORTED, sim.raw_stacks(n, 1, sim.TraceStackTracingInfo + 1))
    end)
  end)

  describe("files", function()
    local function size(path)
      local fh = assert(io.open(path, "rb"))
      local s = fh:seek("end")
      fh:close()
      return s
    end
    it("are written to the path in the block, and grow as buffers are written", function()
      local n, f = uname(), tmpfile()
      assert.equal(0, sim.raw_start{name = n, file = f, mode = SEQ | SYSLOG, flags = 0x3})
      local s0 = size(f)
      local fh = assert(io.open(f, "rb"))
      assert.equal("ETWSIM01", fh:read(8))
      fh:close()
      sim.tick(n, 4)
      assert.is_true(size(f) > s0)
      assert.equal(0, (sim.raw_control(n, sim.EVENT_TRACE_CONTROL_STOP)))
      assert.is_true(size(f) > s0)
    end)
    it("stay within MaximumFileSize in circular mode", function()
      local n, f = uname(), tmpfile()
      assert.equal(0, sim.raw_start{name = n, file = f, mode = CIRC | SYSLOG, max_file_mb = 1,
                                    flags = 0x1fffffff})
      sim.tick(n, 5000) -- 5000 buffers x 29 records x 24 bytes > 1 MB
      assert.is_true(size(f) <= 1024 * 1024)
      assert.is_table(sim.session(n))
    end)
    it("end a sequential session when the file reaches MaximumFileSize", function()
      local n, f = uname(), tmpfile()
      assert.equal(0, sim.raw_start{name = n, file = f, mode = SEQ | SYSLOG, max_file_mb = 1,
                                    flags = 0x1fffffff})
      sim.tick(n, 1000) -- 1000 x 29 x 24 bytes: not yet 1 MB
      assert.is_table(sim.session(n))
      sim.tick(n, 1000)
      assert.is_nil(sim.session(n), "the session ended with its full file")
      local sz = size(f)
      assert.is_true(sz <= 1024 * 1024 and sz > 1024 * 1024 - 29 * 24, sz)
      assert.equal(sim.ERROR_WMI_INSTANCE_NOT_FOUND,
                   (sim.raw_control(n, sim.EVENT_TRACE_CONTROL_QUERY)))
    end)
  end)
end)
