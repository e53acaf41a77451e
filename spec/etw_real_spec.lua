-- The production core.dll (bound to the real advapi32/tdh) loads and registers
-- the whole API.  Under Wine (.ci/windows, --tags=realdll, KL_REAL_CPATH set)
-- this proves loading and linking only: Wine's ETW functions are stubs.
local windows = package.config:sub(1, 1) == "\\"

describe("advapi32-bound core.dll #windows #realdll", function()
  local real_cpath = os.getenv("KL_REAL_CPATH")
  if not windows or not real_cpath then
    pending("the advapi32-bound DLL check (KL_REAL_CPATH, Windows or Wine)")
    return
  end

  local core
  setup(function()
    package.loaded["kernellogger.core"] = nil
    local saved = package.cpath
    package.cpath = real_cpath
    core = require "kernellogger.core"
    package.cpath = saved
  end)

  it("is the production build: no simulator is loaded", function()
    assert.is_nil(package.loaded.etwsim)
    assert.equal("windows", core.platform)
    assert.equal("NT Kernel Logger", core.KERNEL_LOGGER)
  end)

  it("registers every function of the API", function()
    for _, name in ipairs{"start", "attach", "stop", "query", "flush", "sessions", "flags",
                          "open", "_sleep", "_monotime", "_walltime", "_isatty", "_getpid"} do
      assert.is_function(core[name], name)
    end
  end)

  it("has the shared error codes", function()
    for _, c in ipairs{"already_exists", "not_found", "access_denied", "not_supported",
                       "no_resources", "disk_full", "bad_path", "busy", "invalid",
                       "unavailable", "io"} do
      assert.is_true(core.codes[c], c)
    end
  end)

  it("answers the flag table with ETW bits", function()
    local flags = core.flags()
    assert.is_true(#flags >= 30)
    for _, f in ipairs(flags) do
      assert.is_true(f.value > 0, f.name)
      assert.is_boolean(f.supported)
    end
  end)

  it("reaches advapi32 for a session list without crashing", function()
    -- Wine's QueryAllTracesW is a stub: any clean answer will do here.
    local list, msg, code = core.sessions()
    assert.is_true(type(list) == "table" or type(code) == "string", msg)
  end)

  it("reaches OpenTraceW for kl.open without crashing", function()
    -- Wine's OpenTraceW is a stub: a clean nil, message, code is all it can give.
    local tmp = os.getenv("KL_TMPDIR") or "."
    local t, msg, code = core.open(tmp .. "\\klt_real_absent.etl")
    assert.is_nil(t)
    assert.is_string(code)
    assert.is_true(core.codes[code], code)
    assert.matches("OpenTraceW", msg, 1, true)
    assert.matches("Win32 error %d+", msg)
    -- a directory is refused before ETW is asked, as on Linux
    t, msg, code = core.open(tmp)
    assert.is_nil(t)
    assert.equal("invalid", code)
    assert.matches("not a regular file", msg, 1, true)
  end)

  it("gives the OS services", function()
    assert.is_number(core._monotime())
    assert.is_true(core._walltime() > 1.6e9)
    assert.equal(math.type(core._getpid()), "integer")
  end)
end)

-- Real ETW: only on a Windows machine (the GitHub runner, as administrator),
-- with KL_REAL_ETW=1 and KL_REAL_CPATH naming the advapi32-bound build.
-- Never under Wine, whose ETW functions are stubs that always succeed.
describe("real ETW #windows #realetw", function()
  local real_cpath = os.getenv("KL_REAL_CPATH")
  if not windows or not real_cpath or os.getenv("KL_REAL_ETW") ~= "1" then
    pending("real ETW (a Windows runner with KL_REAL_ETW=1)")
    return
  end

  local core
  local admin = os.execute("net session >nul 2>&1") == true
  local tmp = os.getenv("TEMP") or "."
  local seq = 0
  local started = {}
  local function uname()
    seq = seq + 1
    local n = ("klt_real_%d_%d"):format(os.time() % 100000, seq)
    started[#started + 1] = n
    return n
  end
  local function size(path)
    local fh = io.open(path, "rb")
    if not fh then return nil end
    local s = fh:seek("end")
    fh:close()
    return s
  end

  setup(function()
    package.loaded["kernellogger.core"] = nil
    local saved = package.cpath
    package.cpath = real_cpath
    core = require "kernellogger.core"
    package.cpath = saved
  end)
  teardown(function()
    for _, n in ipairs(started) do
      if core then core.stop(n, {file = false}) end
    end
  end)

  it("refuses without administrator rights, with access_denied", function()
    if admin then
      pending("running as administrator")
      return
    end
    local s, msg, code = core.start{name = uname(), realtime = true}
    assert.is_nil(s)
    assert.equal("access_denied", code)
    assert.matches("administrator", msg)
  end)

  it("runs a private kernel session end to end", function()
    if not admin then
      pending("needs administrator rights")
      return
    end
    local n, f = uname(), ("%s\\klt_real_%d.etl"):format(tmp, seq)
    os.remove(f)
    local s = assert(core.start{name = n, flags = {"process", "thread", "image_load"},
                                file = f, circular_mb = 8, buffer_kb = 64, stacks = true})
    local q1 = assert(s:query())
    assert.equal(n, q1.name)
    assert.equal("circular", q1.mode)
    assert.equal(8, q1.max_file_mb)
    assert.is_true(q1.logger_thread_id ~= 0)
    os.execute("cmd /c exit 0") -- a process start and stop to record
    assert(s:update{flags = {"process"}, flush_timer = 1})
    assert.same({"process"}, assert(s:query()).flags)
    assert(s:flush())
    local found = false
    for _, q in ipairs(assert(core.sessions())) do
      if q.name == n then found = true end
    end
    assert.is_true(found)
    local st = assert(s:stop())
    assert.equal(n, st.name)
    assert.is_true((size(f) or 0) > 0, "the .etl file was written")
    local _, _, code = core.query(n)
    assert.equal("not_found", code)
    os.remove(f)
  end)

  it("refuses what UPDATE cannot change before calling ETW", function()
    if not admin then
      pending("needs administrator rights")
      return
    end
    local s = assert(core.start{name = uname(), realtime = true})
    local r, _, code = s:update{buffer_kb = 128}
    assert.is_nil(r)
    assert.equal("invalid", code)
    assert(s:stop())
  end)

  it("starts the NT Kernel Logger, or names who holds it", function()
    if not admin then
      pending("needs administrator rights")
      return
    end
    local s, msg, code = core.start{flags = {"process"}, realtime = true}
    if not s then
      assert.equal("already_exists", code, msg)
      assert.matches("Win32 error 183", msg)
      pending("the NT Kernel Logger is held by another tool on this runner")
      return
    end
    assert(s:stop())
  end)

  it("gives not_found with Win32 error 4201 for a session that is not running", function()
    if not admin then
      pending("needs administrator rights")
      return
    end
    local _, msg, code = core.stop(("klt_real_absent_%d"):format(os.time()))
    assert.equal("not_found", code)
    assert.matches("Win32 error 4201", msg)
  end)
end)

-- What the simulator can only assume from Microsoft's documentation, checked
-- against real ETW (the Windows workflow runs these as their own step,
-- --tags=etwconfirm): real time switched by UPDATE, a sequential file that
-- fills up, UPDATE on a block reused from QUERY, and a private session
-- receiving TcpIp events live.
describe("real ETW confirms the simulator #windows #realetw #etwconfirm", function()
  local real_cpath = os.getenv("KL_REAL_CPATH")
  if not windows or not real_cpath or os.getenv("KL_REAL_ETW") ~= "1" then
    pending("real ETW (a Windows runner with KL_REAL_ETW=1)")
    return
  end

  local RT = 0x100 -- EVENT_TRACE_REAL_TIME_MODE
  local core
  local admin = os.execute("net session >nul 2>&1") == true
  local tmp = os.getenv("TEMP") or "."
  local seq = 0
  local started = {}
  local function uname()
    seq = seq + 1
    local n = ("klt_conf_%d_%d"):format(os.time() % 100000, seq)
    started[#started + 1] = n
    return n
  end
  local function tmpfile(tag)
    local f = ("%s\\klt_conf_%s_%d_%d.etl"):format(tmp, tag, os.time() % 100000, seq)
    os.remove(f)
    return f
  end
  local function size(path)
    local fh = io.open(path, "rb")
    if not fh then return nil end
    local s = fh:seek("end")
    fh:close()
    return s
  end
  -- events for at most `secs` seconds (a busy machine never goes idle)
  local function take(s, opts, secs, want)
    local out, t0 = {}, core._monotime()
    for ev in s:events(opts) do
      if ev.name ~= "lost_events" then out[#out + 1] = ev end
      if core._monotime() - t0 > secs or (want and #out >= want) then break end
    end
    return out
  end
  local function needs_admin()
    if not admin then pending("needs administrator rights") end
    return admin
  end

  setup(function()
    package.loaded["kernellogger.core"] = nil
    local saved = package.cpath
    package.cpath = real_cpath
    core = require "kernellogger.core"
    package.cpath = saved
  end)
  teardown(function()
    for _, n in ipairs(started) do
      if core then core.stop(n, {file = false}) end
    end
  end)

  it("UPDATE turns real time on and off; a flags update leaves it on", function()
    if not needs_admin() then return end
    local s = assert(core.start{name = uname(), file = tmpfile("rt"), max_mb = 64,
                                flags = {"process"}, flush_timer = 1})
    assert.equal(0, s:query().log_file_mode & RT)
    assert(s:update{realtime = true})
    assert.equal(RT, s:query().log_file_mode & RT)
    assert(s:update{flags = {"process", "thread"}})
    assert.equal(RT, s:query().log_file_mode & RT, "a flags update sends the current state")
    take(s, {timeout = 1}, 3) -- the consumer is open; rundown drained
    os.execute("cmd /c exit 0")
    local got = take(s, {names = {"Process"}, timeout = 5}, 10, 1)
    assert.is_true(#got > 0, "a live Process event after UPDATE turned real time on")
    assert(s:update{realtime = false})
    assert.equal(0, s:query().log_file_mode & RT)
    assert(s:stop())
  end)

  it("a sequential session ends at MaximumFileSize; query and stop say file_full", function()
    if not needs_admin() then return end
    local f = tmpfile("full")
    local s = assert(core.start{name = uname(), file = f, max_mb = 1, buffer_kb = 64,
                                flags = {"cswitch", "dispatcher", "process", "thread"}})
    local t0 = core._monotime()
    local q
    repeat
      os.execute("cmd /c exit 0")
      q = assert(s:query())
    until q.file_full or core._monotime() - t0 > 60
    assert.is_true(q.file_full, "ETW ended the session within 60 s")
    assert.is_true(size(f) <= 1024 * 1024 + 64 * 1024, size(f))
    local st = assert(s:stop())
    assert.is_true(st.file_full)
  end)

  it("UPDATE works on a block reused from QUERY (flags, then a longer file name)", function()
    if not needs_admin() then return end
    local f = tmpfile("q")
    local g = tmpfile("q_after_query_with_a_much_longer_name")
    local s = assert(core.start{name = uname(), file = f, max_mb = 64, flags = {"process"}})
    assert(s:query())
    assert(s:update{flags = {"process", "image_load"}})
    local flags = {}
    for _, x in ipairs(assert(s:query()).flags) do flags[x] = true end
    assert.same({process = true, image_load = true}, flags)
    assert(s:query())
    assert(s:update{file = g})
    local file = assert(s:query()).file:lower()
    assert.equal(g:lower():match("[^\\]+$"), file:match("[^\\]+$"))
    assert(s:stop())
    assert.is_true((size(f) or 0) > 0 and (size(g) or 0) > 0)
  end)

  it("a private session receives TcpIp events in real time", function()
    if not needs_admin() then return end
    local s = assert(core.start{name = uname(), realtime = true, flags = {"tcpip"},
                                flush_timer = 1})
    take(s, {timeout = 1}, 3)
    os.execute("curl.exe -s -o NUL https://www.microsoft.com/ >NUL 2>&1")
    local got = take(s, {names = {"TcpIp"}, timeout = 5}, 15, 5)
    assert.is_true(#got > 0, "TcpIp events arrived")
    for _, ev in ipairs(got) do
      assert.equal("TcpIp", ev.system)
      assert.is_number(ev.cpu)
      assert.is_true(ev.time > 1.6e18)
    end
    assert(s:stop())
  end)
end)
