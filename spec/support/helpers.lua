--- Test support for the kernellogger specs, in one module: unique session
-- names and a fixture that cleans up after each test (and fails a test that
-- leaves an ftrace instance behind), temporary folders, one way to run a
-- command, one way to start a child Lua on this checkout, and the checks
-- of trace.dat files with the real tools (trace-cmd, libtracecmd).
local core = require "kernellogger.core"

local H = {}

H.windows = package.config:sub(1, 1) == "\\"
H.linux = core.platform == "linux"
H.tracing = "/sys/kernel/tracing"
H.TRACING = H.tracing
H.state_dir = "/run/kernellogger"

-- ---------------------------------------------------------------------
-- Names, files, instances
-- ---------------------------------------------------------------------

local counter = 0
--- A session name no other test, process or run uses.
function H.name(area)
  counter = counter + 1
  return ("klt_%s_%d_%d"):format(area or "x", core._getpid(), counter)
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end
H.exists = exists

--- The ETW contract simulator's control module, for specs of the Windows
-- backend; or nil and why not (another platform, or the production build).
function H.etwsim()
  if not H.windows then return nil, "Windows only (runs under Wine from .ci/windows)" end
  local ok, sim = pcall(require, "etwsim")
  if not ok then return nil, "needs the simulator build (etwsim.dll)" end
  return sim
end

--- Is there an ftrace instance of that name?
function H.instance_exists(name)
  if type(name) ~= "string" or name == "" or name:find("/", 1, true) or name:find("..", 1, true) then
    return false
  end
  return os.execute(("test -d '%s/instances/%s'"):format(H.tracing, name)) == true
end

--- Remove sessions whatever state they are in (no file is written).
function H.cleanup(...)
  for _, name in ipairs{...} do
    pcall(core.stop, name, {file = false})
    if H.linux then
      if H.instance_exists(name) then
        os.execute(("rmdir '%s/instances/%s' 2>/dev/null"):format(H.tracing, name))
      end
      os.remove(("%s/%s.state"):format(H.state_dir, name))
    end
  end
end

--- Is there a state file for that session?
function H.state_exists(name)
  return exists(("%s/%s.state"):format(H.state_dir, name))
end

--- Every instance whose name starts with `prefix`.
function H.instances(prefix)
  local r = {}
  local p = assert(io.popen("ls '" .. H.tracing .. "/instances' 2>/dev/null"))
  for line in p:lines() do
    if line:sub(1, #prefix) == prefix then r[#r + 1] = line end
  end
  p:close()
  return r
end

--- Poll `pred` until it is true or `timeout` seconds pass.
function H.wait_for(pred, timeout)
  local t0 = core._monotime()
  while core._monotime() - t0 < (timeout or 5) do
    if pred() then return true end
    core._sleep(0.02)
  end
  return pred()
end

--- Read a tracefs file of an instance, trimmed.
function H.read_instance(name, rel)
  local f = io.open(("%s/instances/%s/%s"):format(H.tracing, name, rel), "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return (s:gsub("%s+$", ""))
end

--- The whole content of a file, or nil.
function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- Write a whole file: the strings, in order.
function H.write(path, ...)
  local f = assert(io.open(path, "wb"))
  f:write(...)
  f:close()
end

--- The size of a file, or nil.
function H.size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

--- Quote a string for /bin/sh.
function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- A fresh private folder (0700), removed with what is in it by H.rmtree.
function H.tmpdir()
  for _ = 1, 100 do
    local d = ("/tmp/klspec.%d.%d"):format(core._getpid(), math.random(1, 1e9))
    -- mkdir fails on an existing name (or a symlink planted there)
    if os.execute("mkdir -m 0700 " .. H.q(d) .. " 2>/dev/null") == true then return d end
  end
  error("cannot make a folder in /tmp")
end

--- Remove a folder made by H.tmpdir, unmounting first what a failed test
-- left mounted below it (deepest first).
function H.rmtree(dir)
  if not (dir and dir:match("^/tmp/klspec%.")) then return end
  local mounts = {}
  local f = io.open("/proc/mounts", "r")
  if f then
    for line in f:lines() do
      local at = line:match("^%S+ (%S+)")
      if at and (at == dir or at:sub(1, #dir + 1) == dir .. "/") then mounts[#mounts + 1] = at end
    end
    f:close()
  end
  table.sort(mounts, function(a, b) return #a > #b end)
  for _, at in ipairs(mounts) do os.execute("umount " .. H.q(at) .. " 2>/dev/null") end
  os.execute("rm -rf " .. H.q(dir))
end

-- ---------------------------------------------------------------------
-- The fixture
-- ---------------------------------------------------------------------

--- Call inside a describe: F.name(area) gives a unique session name that
-- is removed after each test, F.tmpdir() a private folder removed after
-- each test, and F.dir one for the whole describe.  A test that leaves an ftrace instance of one of its names
-- behind fails (in its after_each): a test stops what it starts, or calls
-- F.cleanup for what it leaves on purpose.
-- @param area the default area of F.name and F.uname (part of the name)
-- @usage describe("x", function() local F = H.fixture("x") ... F.uname() ... end)
function H.fixture(area)
  local busted = require "busted"
  local F = {names = {}, dirs = {}}
  function F.name(a)
    local n = H.name(a or area)
    F.names[#F.names + 1] = n
    return n
  end
  --- The spec's one uname(): F.name in the fixture's area.
  function F.uname() return F.name() end
  --- A private folder removed after this test.
  function F.tmpdir()
    local d = H.tmpdir()
    F.dirs[#F.dirs + 1] = d
    return d
  end
  --- Clean up a name a test did not make with F.name (a child's, an alias).
  function F.track(n) F.names[#F.names + 1] = n return n end
  --- Clean up now, on purpose (a test that leaves a session by design).
  function F.cleanup(...) H.cleanup(...) end
  if not H.windows then  -- (the Windows specs keep their files under KL_TMPDIR)
    busted.setup(function() F.dir = H.tmpdir() end)
    busted.teardown(function() H.rmtree(F.dir) end)
  end
  busted.after_each(function()
    local names, dirs, left = F.names, F.dirs, {}
    F.names, F.dirs = {}, {}
    if H.linux then
      for _, n in ipairs(names) do
        if H.instance_exists(n) then left[#left + 1] = n end
      end
    end
    H.cleanup(table.unpack(names))
    for _, d in ipairs(dirs) do H.rmtree(d) end
    if #left > 0 then
      error("the test left ftrace instances behind: " .. table.concat(left, ", "), 0)
    end
  end)
  return F
end

-- ---------------------------------------------------------------------
-- Commands and child processes
-- ---------------------------------------------------------------------

local function tmpname()
  if H.windows then
    return ("%s\\klt_%d_%d.tmp"):format(os.getenv("TEMP") or ".", core._getpid(),
                                        math.random(1, 1e9))
  end
  return os.tmpname()
end

--- Run a shell command.
-- @treturn table `{ok=, out=, err=, code=}`: ok when it exited 0, out and
--   err its stdout and stderr, code its exit status (128 + n on signal n).
function H.run(cmd)
  local errf = tmpname()
  -- (cmd.exe knows no single quotes nor subshells; these paths have no spaces)
  local line = H.windows and ("%s 2>%s"):format(cmd, errf) or ("(%s) 2>%s"):format(cmd, H.q(errf))
  local p = assert(io.popen(line, "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  local err = H.read(errf) or ""
  os.remove(errf)
  if how == "signal" then code = 128 + code end
  return {ok = ok == true, out = out, err = err, code = ok and 0 or code}
end

local function script_dir()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)[/\\][^/\\]*$") or "."
end

local function abspath(p)
  if p:sub(1, 1) == "/" or p:match("^%a:") then return p end
  return (os.getenv("PWD") or ".") .. "/" .. p
end

--- The checkout's root (spec/support/../..).
H.ROOT = abspath(script_dir() .. "/../..")
--- The Lua interpreter of child processes.
H.LUA = os.getenv("KL_LUA") or "lua5.4"

-- Children search what this process searches (busted's lpath/cpath from
-- .busted or the command line, e.g. build-asan/ in the sanitizer run), made
-- absolute, then this checkout's lua/ and build/.
local function absolutize(list)
  local r = {}
  for entry in list:gmatch("[^;]+") do
    if not entry:match("^/") and not entry:match("^%a:") then entry = H.ROOT .. "/" .. entry end
    r[#r + 1] = entry
  end
  return table.concat(r, ";")
end
H.LUA_PATH = absolutize(package.path) .. ";" .. H.ROOT .. "/lua/?.lua;" .. H.ROOT
  .. "/lua/?/init.lua"
H.LUA_CPATH = absolutize(package.cpath) .. ";" .. H.ROOT .. "/build/?.so"
--- Environment prefix that points a child lua at this checkout.
H.ENV = ("LUA_PATH=%s LUA_CPATH=%s"):format(H.q(H.LUA_PATH), H.q(H.LUA_CPATH))

-- The one child launcher: a fresh Lua on this checkout that runs `code`
-- (a chunk) or `script` with `args`.  On Linux a plain command line (so
-- that it can follow runuser, setpriv, timeout or `exec`); on Windows
-- (Wine) cmd.exe can pass neither a snippet inline nor variables for one
-- command, so a small launcher file sets the paths and runs it.
local function launch(code, script, args)
  if H.windows then
    local exe, i = "lua", -1
    while arg and arg[i] do exe, i = arg[i], i - 1 end -- the interpreter: arg's lowest index
    local file = ("%s\\klt_lua_%d_%d.lua"):format(os.getenv("TEMP") or ".", core._getpid(),
                                                   math.random(1, 1e9))
    local f = assert(io.open(file, "w"))
    f:write(("package.path = %q .. package.path; package.cpath = %q .. package.cpath\n")
      :format(package.path .. ";", package.cpath .. ";"))
    if script then
      local argv = {}
      for a in (args or ""):gmatch("%S+") do argv[#argv + 1] = ("%q"):format(a) end
      f:write(("arg = { [0] = %q, %s }\n"):format(script, table.concat(argv, ", ")))
      f:write(("dofile(%q)\n"):format(script))
    else
      f:write(code)
    end
    f:close()
    -- (unquoted: cmd.exe strips a leading quote; these paths have no spaces)
    return ("%s %s"):format(exe, file)
  end
  if script then
    return ("env %s %s %s %s"):format(H.ENV, H.LUA, H.q(H.ROOT .. "/" .. script), args or "")
  end
  return ("env %s %s -e %s"):format(H.ENV, H.LUA, H.q(code))
end

--- The command that runs a Lua snippet in a fresh process on this checkout.
function H.lua_cmd(code) return launch(code) end

--- The same with the module loaded as `kl`.
function H.kl_cmd(code) return launch('local kl = require "kernellogger"; ' .. code) end

--- The command of bin/kernellogger with arguments.
function H.cli_cmd(args) return launch(nil, "bin/kernellogger", args) end

--- Run Lua code in a child process; returns ok, output (stdout+stderr).
function H.run_lua(code)
  local p = assert(io.popen(H.lua_cmd(code) .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

--- Open n loopback TCP connections to a listener of our own; returns its port.
function H.tcp_connections(n)
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:settimeout(2)
  for i = 1, n do
    local c = assert(socket.connect("127.0.0.1", port))
    local peer = assert(server:accept())
    assert(c:send("ping " .. i .. "\n"))
    assert(peer:receive("*l"))
    c:close()
    peer:close()
  end
  server:close()
  return tonumber(port)
end

-- ---------------------------------------------------------------------
-- trace.dat files, checked with the real tools
-- ---------------------------------------------------------------------

--- Write `count` trace_marker lines "klseq <i> <pad>" into the session's
-- instance, numbered from `first`; each line is one write(2).
function H.markers(name, first, count, pad)
  local f = assert(io.open(H.tracing .. "/instances/" .. name .. "/trace_marker", "w"))
  f:setvbuf("no")
  local filler = string.rep("x", pad or 0)
  for i = first, first + count - 1 do
    f:write(("klseq %d %s\n"):format(i, filler)) -- one string: one write(2), one event
  end
  f:close()
end

--- True when `trace-cmd report` reads the file without error; else false
-- and its stderr.
function H.tracecmd_ok(path)
  local r = H.run("trace-cmd report " .. H.q(path) .. " >/dev/null")
  return r.ok, r.err
end

local function strict_tool(what, cmd, path)
  local r = H.run(cmd)
  assert(r.ok, what .. " failed on " .. path .. ": " .. r.err .. r.out)
  assert(r.err == "", what .. " warned on " .. path .. ": " .. r.err)
  return r.out
end

--- `trace-cmd report` of a file: returns its stdout; fails the test when
-- it exits non-zero or prints anything on stderr.
function H.report(path)
  return strict_tool("trace-cmd report", "trace-cmd report -i " .. H.q(path), path)
end

--- `trace-cmd dump --summary`: same rules; returns stdout.
function H.summary(path)
  return strict_tool("trace-cmd dump", "trace-cmd dump --summary -i " .. H.q(path), path)
end

--- A program CMake built beside the module this run loads, by name
-- ("tdcheck", "getppid_n"). Fails when it is not built.
function H.built(name)
  local dir = H.LUA_CPATH:match("^([^;]*)/%?%.so") or (H.ROOT .. "/build")
  local bin = dir .. "/" .. name
  if not exists(bin) then bin = H.ROOT .. "/build/" .. name end
  assert(exists(bin), ("no %s: build first (cmake --build build)"):format(name))
  return bin
end

-- spec/support/tdcheck.c
local function tdcheck() return H.built("tdcheck") end

--- Read a file with libtracecmd's public reader (tracecmd_open,
-- tracecmd_read_data, tracecmd_iterate_events). Returns a table
-- {events=, ordered=, markers=, last_seq=}; fails on any warning.
function H.libtracecmd(path)
  local out = strict_tool("libtracecmd", tdcheck() .. " " .. H.q(path), path)
  local r = {}
  for k, v in out:gmatch("([%w_]+) (%-?%d+)") do r[k] = tonumber(v) end
  return r
end

--- All three readers at once; returns report text and the reader's counts.
function H.check_file(path)
  local text = H.report(path)
  H.summary(path)
  return text, H.libtracecmd(path)
end

--- Read every event of the capture at path in a child Lua; returns the
-- event count and how much its peak RSS grew (bytes) over the RSS it had
-- right after kl.open: the reader's memory must not follow the file.
function H.read_growth(path)
  local code = ([[
    local kl = require "kernellogger"
    local function kb(k)
      for l in io.lines("/proc/self/status") do
        local v = l:match("^" .. k .. ":%%s+(%%d+)")
        if v then return tonumber(v) end
      end
    end
    local t = assert(kl.open(%q))
    local before = kb("VmRSS")
    local n = 0
    for _ in t:events() do n = n + 1 end
    print(n, before, kb("VmHWM"))
  ]]):format(path)
  local ok, out = H.run_lua(code)
  assert(ok, out)
  local n, before, peak = out:match("(%d+)%s+(%d+)%s+(%d+)")
  assert(n, out)
  return tonumber(n), (tonumber(peak) - tonumber(before)) * 1024
end

return H
