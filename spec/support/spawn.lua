-- Helpers for specs that run child processes against the real kernel:
-- unique session names, a `lua5.4 -e` command line that finds this
-- checkout's modules, and a cleanup that leaves no ftrace instance behind.
local M = {}

local function script_dir()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD") or "."
  return pwd .. "/" .. p
end

--- The checkout's root (spec/support/../..).
M.ROOT = abspath(script_dir() .. "/../..")
M.LUA = os.getenv("KL_LUA") or "lua5.4"
M.TRACEFS = "/sys/kernel/tracing"
M.STATE_DIR = "/run/kernellogger"

-- Children search what this process searches (busted's lpath/cpath from
-- .busted or the command line, e.g. build-asan/ in the sanitizer run), made
-- absolute, then this checkout's lua/ and build/.
local function absolutize(list)
  local r = {}
  for entry in list:gmatch("[^;]+") do
    if entry:sub(1, 1) ~= "/" then entry = M.ROOT .. "/" .. entry end
    r[#r + 1] = entry
  end
  return table.concat(r, ";")
end
M.LUA_PATH = absolutize(package.path) .. ";" .. M.ROOT .. "/lua/?.lua;" .. M.ROOT
  .. "/lua/?/init.lua"
M.LUA_CPATH = absolutize(package.cpath) .. ";" .. M.ROOT .. "/build/?.so"

--- Quote a string for /bin/sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Environment prefix that points a child lua at this checkout.
M.ENV = ("LUA_PATH=%s LUA_CPATH=%s"):format(M.q(M.LUA_PATH), M.q(M.LUA_CPATH))

--- A shell command running `code` in a fresh lua with the module loaded as `kl`.
function M.lua_cmd(code)
  local prelude = 'local kl = require "kernellogger"; '
  return ("exec env %s %s -e %s"):format(M.ENV, M.LUA, M.q(prelude .. code))
end

M.windows = package.config:sub(1, 1) == "\\"

-- Windows (Wine): cmd.exe cannot pass a snippet inline nor set variables for
-- one command, so a small launcher file sets the paths and runs the script.
local function windows_cli_cmd(args)
  local exe, i = "lua", -1
  while arg and arg[i] do exe, i = arg[i], i - 1 end -- the interpreter: arg's lowest index
  local argv = {}
  for a in (args or ""):gmatch("%S+") do argv[#argv + 1] = ("%q"):format(a) end
  local file = ("%s\\klt_cli_%d_%d.lua"):format(os.getenv("TEMP") or ".",
    require("kernellogger.core")._getpid(), math.random(1, 1e9))
  local f = assert(io.open(file, "w"))
  f:write(("package.path = %q .. package.path; package.cpath = %q .. package.cpath\n")
    :format(package.path .. ";", package.cpath .. ";"))
  f:write(("arg = { [0] = %q, %s }\n"):format("bin/kernellogger", table.concat(argv, ", ")))
  f:write('dofile("bin/kernellogger")\n')
  f:close()
  return ("%s %s"):format(exe, file)
end

--- The shell command of bin/kernellogger with arguments.
function M.cli_cmd(args)
  if M.windows then return windows_cli_cmd(args) end
  return ("exec env %s %s %s/bin/kernellogger %s"):format(M.ENV, M.LUA, M.ROOT, args or "")
end

--- Run a shell command; returns stdout, exit code.
function M.run(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a")
  local ok, how, code = f:close()
  if how == "signal" then return out, 128 + code end
  return out, ok and 0 or code
end

--- Run a command capturing stdout and stderr separately.
-- @treturn string stdout
-- @treturn string stderr
-- @treturn integer exit code
function M.run3(cmd)
  local errf = M.windows and ("%s\\klt_err_%d.txt"):format(os.getenv("TEMP") or ".",
    math.random(1, 1e9)) or os.tmpname()
  -- (cmd.exe knows no single quotes; these Windows paths have no spaces)
  local out, code
  if M.windows then
    out, code = M.run(("%s 2>%s"):format(cmd, errf))
  else
    out, code = M.run(("(%s) 2>%s"):format(cmd, M.q(errf)))
  end
  local f = io.open(errf, "r")
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(errf)
  return out, err, code
end

-- the basics are the shared ones (spec/support/helpers.lua)
local H = require "helpers"
M.name, M.exists, M.instance_exists, M.state_exists = H.name, H.exists, H.instance_exists,
  H.state_exists
M.cleanup, M.instances, M.tmpdir, M.rmtree, M.wait_for = H.cleanup, H.instances, H.tmpdir,
  H.rmtree, H.wait_for

--- True when `trace-cmd report` reads the file without error.
function M.tracecmd_ok(path)
  local _, err, code = M.run3("trace-cmd report " .. M.q(path) .. " >/dev/null")
  return code == 0, err
end

return M
