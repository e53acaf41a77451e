-- Reading ETW captures back through the public API: kernellogger.open(),
-- Trace:info(), Trace:events{}, with core.dll bound to the ETW contract
-- simulator (spec/support/etwsim).  The simulator's files are its own format,
-- read back by its OpenTraceW/ProcessTrace/Tdh* as EVENT_RECORDs: provider
-- "EtwSim", task "SimKernel", opcode "flag_0x%08x" (the enable flag), three
-- properties ProcessId (UINT32), Value (UINT64, a sequence number) and Text
-- (UNICODESTRING "sim"); one record per enabled flag per buffer written.
-- The same interface on trace.dat files is checked by reader_spec.lua.
local H = require "helpers"

describe("kernellogger.open on ETW captures (simulator) #windows", function()
  local sim, why = H.etwsim()
  if not sim then
    pending(why)
    return
  end
  local kl = require "kernellogger"

  local pid = kl._core._getpid()
  local tmp = os.getenv("KL_TMPDIR") or "."
  local seq = 0
  local function uname() return H.name("etwrd") end
  local function tmpfile(tag, ext)
    seq = seq + 1
    return ("%s\\klt_etwrd_%s_%d_%d.%s"):format(tmp, tag or "f", pid, seq, ext or "etl")
  end

  local PROCESS, TCPIP = "flag_0x00000001", "flag_0x00010000"
  local HEADER = {name = true, system = true, time = true, cpu = true, pid = true}

  local files = {}
  before_each(function() sim.reset() end)
  after_each(function()
    sim.reset()
    for _, f in ipairs(files) do os.remove(f) end
    files = {}
  end)

  --- A capture with the process and tcpip flags: `ticks` buffers written
  -- besides those start/query/stop write.  Returns the file, the stop
  -- result and the wall clock (ns) around the capture.
  local function capture(ticks, name)
    local f = tmpfile("cap")
    files[#files + 1] = f
    local before = os.time() * 1000000000
    local s = assert(kl.start{name = name or uname(), file = f, max_mb = 1,
                              flags = {"process", "tcpip"}})
    sim.tick(s.name, ticks)
    local st = assert(s:stop())
    local after = (os.time() + 1) * 1000000000
    return f, st, before, after
  end

  local function all_events(t, opts)
    local out = {}
    for ev in t:events(opts) do out[#out + 1] = ev end
    return out
  end

  describe("info", function()
    it("says what the file is: format, CPUs, time span, event types and counts", function()
      local f, st, before, after = capture(5)
      local t = assert(kl.open(f))
      assert.matches('^kernellogger%.Trace ".*klt_etwrd_cap.*" %(open%)$', tostring(t))
      local info = t:info()
      assert.equal("etl", info.format)
      assert.equal(4, info.cpus)
      assert.equal("little", info.endian)
      assert.equal("filetime", info.clock)
      assert.equal("integer", math.type(info.first_ts))
      assert.equal("integer", math.type(info.last_ts))
      assert.is_true(info.first_ts >= before and info.first_ts < after,
                     ("first_ts %d outside [%d, %d)"):format(info.first_ts, before, after))
      assert.is_true(info.last_ts >= info.first_ts and info.last_ts < after)
      local counts, total = {}, 0
      for _, e in ipairs(info.events) do
        assert.equal("SimKernel", e.system)
        counts[e.name] = e.count
        total = total + e.count
      end
      -- one record per enabled flag for every buffer the session wrote
      assert.is_true(st.buffers_written >= 6, "buffers written: " .. st.buffers_written)
      assert.same({[PROCESS] = st.buffers_written, [TCPIP] = st.buffers_written}, counts)
      assert.equal(2 * st.buffers_written, total)
      assert.matches("%(open, etl, 4 CPUs%)$", tostring(t))
      assert.same(info, t:info(), "info() is stable")
      t:close()
    end)
  end)

  describe("events", function()
    it("yields every event with its header and the TDH-decoded properties", function()
      local f, st, before, after = capture(7)
      local t <close> = assert(kl.open(f))
      local evs = all_events(t)
      assert.equal(2 * st.buffers_written, #evs)
      local last_time, last_value, cpus, names = 0, -1, {}, {}
      for i, ev in ipairs(evs) do
        local where = ("event %d (%s)"):format(i, tostring(ev.name))
        assert.equal("SimKernel", ev.system, where)
        assert.is_true(ev.name == PROCESS or ev.name == TCPIP, where)
        names[ev.name] = (names[ev.name] or 0) + 1
        assert.equal("integer", math.type(ev.time), where)
        assert.is_true(ev.time >= before and ev.time < after, where)
        assert.is_true(ev.time >= last_time, where .. ": time order")
        last_time = ev.time
        assert.equal("integer", math.type(ev.cpu), where)
        assert.is_true(ev.cpu >= 0 and ev.cpu < 4, where)
        cpus[ev.cpu] = true
        assert.equal(pid, ev.pid, where)
        -- the properties, decoded through TdhGetEventInformation/TdhGetProperty
        assert.equal(pid, ev.ProcessId, where)
        assert.equal("integer", math.type(ev.Value), where)
        assert.equal(last_value + 1, ev.Value, where .. ": the sequence number")
        last_value = ev.Value
        assert.equal("sim", ev.Text, where)
        local extra = {}
        for k in pairs(ev) do
          if not HEADER[k] and k ~= "ProcessId" and k ~= "Value" and k ~= "Text" then
            extra[#extra + 1] = k
          end
        end
        assert.same({}, extra, where .. ": unexpected keys")
      end
      assert.equal(st.buffers_written, names[PROCESS])
      assert.equal(st.buffers_written, names[TCPIP])
      assert.is_true(cpus[0] and cpus[1] and cpus[2] and cpus[3], "the events span the CPUs")
      assert.equal(evs[1].time, t:info().first_ts)
      assert.equal(evs[#evs].time, t:info().last_ts)
      -- the iterator stays ended; a new events() starts again from the beginning
      assert.equal(#evs, #all_events(t))
    end)

    it("filters by name, system, cpu, pid and time window", function()
      local f = capture(9)
      local t <close> = assert(kl.open(f))
      local all = all_events(t)
      assert.is_true(#all >= 20)
      local function count(pred)
        local n = 0
        for _, ev in ipairs(all) do if pred(ev) then n = n + 1 end end
        return n
      end
      local function run(opts)
        local n = 0
        for _ in t:events(opts) do n = n + 1 end
        return n
      end
      local nproc = count(function(e) return e.name == PROCESS end)
      assert.is_true(nproc > 0 and nproc < #all)
      assert.equal(nproc, run{names = PROCESS})
      assert.equal(nproc, run{names = {"SimKernel:" .. PROCESS}})
      assert.equal(nproc, run{names = {PROCESS:upper()}}, "names match case-insensitively")
      assert.equal(#all, run{names = "SimKernel"})
      assert.equal(#all, run{names = PROCESS .. "," .. TCPIP})
      assert.equal(#all, run{names = {PROCESS, TCPIP}})
      assert.equal(0, run{names = {"no_such_event"}})
      assert.equal(0, run{names = {"Other:" .. PROCESS}})
      for cpu = 0, 3 do
        local n = count(function(e) return e.cpu == cpu end)
        assert.is_true(n > 0, "cpu " .. cpu)
        assert.equal(n, run{cpu = cpu})
      end
      assert.equal(0, run{cpu = 4})
      assert.equal(#all, run{pid = pid})
      assert.equal(0, run{pid = pid + 1})
      local from, to = all[5].time, all[#all - 5].time
      local window = count(function(e) return e.time >= from and e.time <= to end)
      assert.is_true(window > 0 and window < #all)
      assert.equal(window, run{from = from, to = to})
      assert.equal(window, run{t0 = from, t1 = to})
      assert.equal(count(function(e) return e.time >= from end), run{from = from})
      assert.equal(count(function(e) return e.time <= to end), run{to = to})
      assert.equal(count(function(e) return e.cpu == 1 and e.name == TCPIP end),
                   run{cpu = 1, names = TCPIP})
      for ev in t:events{cpu = 2, names = PROCESS, from = from, to = to} do
        assert.equal(2, ev.cpu)
        assert.equal(PROCESS, ev.name)
        assert.is_true(ev.time >= from and ev.time <= to)
      end
      assert.has_error(function() t:events{bogus = 1} end)
      assert.has_error(function() t:events{cpu = "x"} end)
      assert.has_error(function() t:events{names = 3} end)
      assert.has_error(function() t:events{from = -1} end)
      assert.has_error(function() t:events{to = 0} end, "bad argument #1 to 'events' " ..
                       "(to: must be a positive time (ns))")
    end)

    it("invalidates an older iterator when a new one starts", function()
      local t <close> = assert(kl.open((capture(2))))
      local it1 = t:events()
      assert.is_table(it1())
      local it2 = t:events{names = TCPIP}
      assert.equal(TCPIP, it2().name)
      assert.has_error(function() it1() end,
                       "trace iterator invalidated: a newer events() started on this trace")
    end)
  end)

  describe("closing", function()
    it("close, <close>, __gc and a closed Trace that raises", function()
      local f = capture(1)
      local outer
      do
        local t <close> = assert(kl.open(f))
        outer = t
        assert.matches("%(open", tostring(t))
      end
      assert.matches('^kernellogger%.Trace ".*" %(closed%)$', tostring(outer))
      assert.has_error(function() outer:info() end, "attempt to use a closed trace")
      assert.has_error(function() outer:events() end, "attempt to use a closed trace")
      local t = assert(kl.open(f))
      local it = t:events()
      assert.is_table(it())
      t:close()
      t:close() -- twice is fine
      assert.has_error(function() it() end, "attempt to use a closed trace")
      -- the simulator's reader slots are all free again: many opens in a row work
      for _ = 1, 40 do assert(kl.open(f)):close() end
      for _ = 1, 40 do assert(kl.open(f)) end -- left to __gc
      collectgarbage()
      collectgarbage()
      assert(kl.open(f)):close()
    end)

    it("leaves the file free: it can be removed once the Trace is closed", function()
      local f = capture(1)
      local t = assert(kl.open(f))
      assert.is_table(t:info())
      t:close()
      assert.is_true(os.remove(f))
    end)
  end)

  describe("errors", function()
    it("returns nil, message, code for files it cannot read", function()
      local missing = tmpfile("missing")
      local t, msg, code = kl.open(missing)
      assert.is_nil(t)
      assert.equal("not_found", code)
      assert.matches("klt_etwrd_missing", msg, 1, true)
      assert.matches("Win32 error 2[^%d]", msg)

      t, msg, code = kl.open(tmp)
      assert.is_nil(t)
      assert.equal("invalid", code)
      assert.matches("not a regular file", msg)

      local text = tmpfile("text", "txt")
      files[#files + 1] = text
      local fh = assert(io.open(text, "wb"))
      fh:write("hello, not a trace\n")
      fh:close()
      t, msg, code = kl.open(text)
      assert.is_nil(t)
      assert.equal("invalid", code)
      assert.matches("not an .etl file", msg, 1, true)
      assert.matches("Win32 error 11[^%d]", msg)

      local empty = tmpfile("empty")
      files[#files + 1] = empty
      assert(io.open(empty, "wb")):close()
      assert.equal("invalid", select(3, kl.open(empty)))

      assert.equal("bad_path", select(3, kl.open(tmp .. "\\no_such_dir\\x.etl")))
      assert.has_error(function() kl.open() end)
    end)

    it("reads a capture named in UTF-8", function()
      local f = tmpfile("caf\u{e9}_\u{65e5}\u{672c}")
      files[#files + 1] = f
      -- overwrite: os.remove (ANSI) cannot remove this name after a rerun;
      -- .ci/windows empties KL_TMPDIR before each run
      local s = assert(kl.start{name = uname(), file = f, max_mb = 1, flags = {"process"},
                                overwrite = true})
      local st = assert(s:stop())
      local t <close> = assert(kl.open(f))
      assert.equal(st.buffers_written, #all_events(t))
      assert.matches("caf\u{e9}_\u{65e5}\u{672c}", tostring(t), 1, true)
    end)

    it("a truncated capture keeps its whole records and refuses a partial one", function()
      local f = capture(4)
      local fh = assert(io.open(f, "rb"))
      local data = fh:read("a")
      fh:close()
      local cut = tmpfile("cut")
      files[#files + 1] = cut
      fh = assert(io.open(cut, "wb"))
      fh:write(data:sub(1, #data - 3))
      fh:close()
      local t, msg, code = kl.open(cut)
      assert.is_nil(t)
      assert.equal("io", code)
      assert.matches("ProcessTrace", msg, 1, true)
    end)
  end)
end)
