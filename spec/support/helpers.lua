--- Test support for the kernellogger specs: unique session names, cleanup
-- that works even when a test failed, child processes, loopback traffic.
local core = require "kernellogger.core"

local H = {}

H.windows = package.config:sub(1, 1) == "\\"
H.linux = core.platform == "linux"
H.tracing = "/sys/kernel/tracing"
H.state_dir = "/run/kernellogger"

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

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.q = shell_quote

--- The command that runs a Lua snippet in a fresh process with this
-- checkout's module paths.
function H.lua_cmd(code)
  local pre = ("package.path=%q..package.path; package.cpath=%q..package.cpath; "):format(
    package.path:match("^[^;]*;[^;]*;") or "lua/?.lua;lua/?/init.lua;",
    (package.cpath:match("^[^;]*;") or "build/?.so;"))
  if H.windows then
    -- cmd.exe cannot take the snippet inline: run the same lua.exe on a file.
    local exe, i = "lua", -1
    while arg and arg[i] do exe, i = arg[i], i - 1 end -- the interpreter: arg's lowest index
    local file = ("%s\\klt_lua_%d_%d.lua"):format(os.getenv("TEMP") or ".", core._getpid(),
                                                   math.random(1, 1e9))
    local f = assert(io.open(file, "w"))
    f:write(pre, code)
    f:close()
    -- (unquoted: cmd.exe strips a leading quote; these paths have no spaces)
    return ("%s %s"):format(exe, file)
  end
  return "lua5.4 -e " .. shell_quote(pre .. code)
end

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

--- A fresh private folder (0700), removed with what is in it by H.rmtree.
function H.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/klspec.XXXXXX"))
  local d = p:read("l")
  p:close()
  return d
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
  for _, at in ipairs(mounts) do os.execute("umount " .. shell_quote(at) .. " 2>/dev/null") end
  os.execute("rm -rf " .. shell_quote(dir))
end

return H
