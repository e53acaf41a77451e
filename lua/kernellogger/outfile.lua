--- Files written safely from Lua: a temporary file beside the target, mode
-- 0600, renamed into place once complete.
--
-- The same rules as the C side's capture files (`csrc/ftrace/files.c`): a
-- symbolic link or a folder at the target is refused, an existing file is
-- replaced only with `overwrite`, and a failure at any step leaves the target
-- untouched (the temporary file is removed). On POSIX systems the temporary
-- file is made by `mktemp` (O_EXCL, mode 0600, never through a link) and
-- `rename` replaces the target without following anything at that name.
--
--     local outfile = require "kernellogger.outfile"
--     local ok, err, code = outfile.write("x.html", function(f) f:write("...") end)
--
-- @module kernellogger.outfile
local M = {}

local POSIX = package.config:sub(1, 1) == "/"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- What is at `path`: "link", "dir", "file", "other" or nil (nothing).
local function kind(path)
  if POSIX then
    local p = io.popen(("if [ -L %s ]; then echo link; elif [ -d %s ]; then echo dir; " ..
      "elif [ -f %s ]; then echo file; elif [ -e %s ]; then echo other; fi"):format(
      q(path), q(path), q(path), q(path)))
    local what = p and p:read("l")
    if p then p:close() end
    return what
  end
  local f = io.open(path, "rb")
  if not f then return nil end
  local ok, _, errno = f:read(0)
  f:close()
  if ok == nil and errno == 21 then return "dir" end
  return "file"
end

--- Check that `path` may be written.
-- @string path
-- @bool overwrite replace an existing regular file
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code: `bad_path` or `already_exists`
function M.check(path, overwrite)
  if type(path) ~= "string" or path == "" then return nil, "file name is empty", "bad_path" end
  if path:sub(-1) == "/" then return nil, path .. ": is a folder, not a file", "bad_path" end
  local k = kind(path)
  if k == "link" then
    return nil, path .. ": is a symbolic link; refusing to follow it", "bad_path"
  elseif k == "dir" then
    return nil, path .. ": is a folder, not a file", "bad_path"
  elseif k == "other" then
    return nil, path .. ": is not a regular file", "bad_path"
  elseif k == "file" and not overwrite then
    return nil, path .. ": file exists (overwrite = true or --overwrite replaces it)", "already_exists"
  end
  return true
end

local function temp_beside(path)
  if POSIX then
    local p = io.popen(("umask 077; mktemp %s 2>&1"):format(q(path .. ".tmp.XXXXXX")))
    local name = p and p:read("l")
    local ok = p and p:close()
    if not ok or not name then
      return nil, ("%s: cannot create a file beside it: %s"):format(path, name or "?")
    end
    return name
  end
  for _ = 1, 100 do
    local name = ("%s.tmp.%d"):format(path, math.random(1, 1e9))
    if not io.open(name, "rb") then return name end
  end
  return nil, path .. ": cannot find a free temporary name"
end

--- Write `path` through `writer(f)`, atomically.
-- `writer` gets an open file; what it raises is caught, the temporary file
-- removed and the error returned as `nil, message, "io"`.
-- @string path
-- @func writer called with the file handle
-- @tparam[opt] table opts `overwrite` (replace an existing regular file)
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.write(path, writer, opts)
  local overwrite = opts and opts.overwrite
  local ok, err, code = M.check(path, overwrite)
  if not ok then return nil, err, code end
  local tmp, terr = temp_beside(path)
  if not tmp then return nil, terr, "bad_path" end
  local f, ferr = io.open(tmp, "wb")
  if not f then
    os.remove(tmp)
    return nil, ferr, "io"
  end
  local wok, werr = pcall(writer, f)
  local cok, cerr = f:close()
  if not wok or not cok then
    os.remove(tmp)
    return nil, ("%s: %s"):format(path, tostring(wok and cerr or werr)), "io"
  end
  -- again just before the rename: a link or folder that appeared meanwhile is left alone
  ok, err, code = M.check(path, overwrite)
  if not ok then
    os.remove(tmp)
    return nil, err, code
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, rerr, "io"
  end
  return true
end

return M
