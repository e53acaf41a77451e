--- The command line of a command that reads one capture file
-- (`kernellogger report`, `kernellogger export`).
--
-- One file name and `--name` options of three kinds; `--` ends the options
-- (a file name after it may start with `-`), and `-` alone is a file name.
-- Every mistake writes one line naming the command and what was wrong,
-- then the command's usage, and means exit code 2.
--
--     local cmdline = require "kernellogger.cmdline"
--     local file, opts = cmdline.parse(argv, "kernellogger report",
--       {html = "file", width = "count", overwrite = "flag"}, usage, io.stdout, io.stderr)
--     if not file then return opts end -- the exit code: 0 after --help, 2 after a mistake
-- @module kernellogger.cmdline
local M = {}

-- What follows an option of each kind, and how it is checked.
local function file_value(cmd, name, opts, v)
  if opts[name] then return nil, ("%s: --%s given twice\n"):format(cmd, name) end
  if not v or v == "" then return nil, ("%s: --%s needs a file name\n"):format(cmd, name) end
  return v
end

local function count_value(cmd, name, _, v)
  local n = math.tointeger(tonumber(v or ""))
  if not n or n < 1 then return nil, ("%s: --%s needs a positive integer\n"):format(cmd, name) end
  return n
end

local VALUE = {file = file_value, count = count_value}

--- Parse the arguments of a one-file command.
-- @tparam {string,...} argv the arguments after the command's name
-- @string cmd the command for messages ("kernellogger report")
-- @tparam table kinds option name (without `--`) to its kind: `"flag"` (true when
-- given), `"file"` (a non-empty file name follows; at most once) or `"count"` (a
-- positive integer follows; the last one counts)
-- @string usage the command's usage text, written after a mistake and for `-h`/`--help`
-- @tparam file out where `--help` writes
-- @tparam file errout where mistakes are written
-- @treturn[1] string the file name
-- @treturn[1] table the options given, by name
-- @treturn[2] nil
-- @treturn[2] int the exit code: 0 after `--help`, 2 after a mistake
function M.parse(argv, cmd, kinds, usage, out, errout)
  local path, only_files
  local opts = {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local kind = a:sub(1, 2) == "--" and kinds[a:sub(3)]
    if only_files or a == "-" or a:sub(1, 1) ~= "-" then
      if path then
        errout:write(cmd, ": one file at a time\n", usage)
        return nil, 2
      end
      path = a
    elseif a == "--" then
      only_files = true  -- what follows is a file name, even when it starts with '-'
    elseif a == "-h" or a == "--help" then
      out:write(usage)
      return nil, 0
    elseif kind == "flag" then
      opts[a:sub(3)] = true
    elseif kind then
      local v, err = VALUE[kind](cmd, a:sub(3), opts, argv[i + 1])
      if not v then
        errout:write(err, usage)
        return nil, 2
      end
      opts[a:sub(3)] = v
      i = i + 1
    else
      errout:write(("%s: unknown option %s\n"):format(cmd, a), usage)
      return nil, 2
    end
    i = i + 1
  end
  if not path then
    errout:write(usage)
    return nil, 2
  end
  return path, opts
end

return M
