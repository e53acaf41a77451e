--- Files written safely from Lua: a temporary file beside the target, mode
-- 0600, renamed into place once complete.
--
-- The same rules as the C side's capture files (`csrc/ftrace/files.c`): a
-- symbolic link or a folder at the target is refused, an existing file is
-- replaced only with `overwrite`, and a failure at any step (an error of the
-- writer, a full disk, Ctrl-C) leaves the target untouched and removes the
-- temporary file. No shell and no other program is involved: the module's C
-- part creates the temporary file (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600) and,
-- without `overwrite`, names it with `link` so that whatever appeared at the
-- target meanwhile is never replaced (`rename` when `overwrite` is given: it
-- replaces the name, never writes through a link). A name with a control
-- character or a NUL byte is refused; a name starting with '-' is a file name.
--
--     local outfile = require "kernellogger.outfile"
--     local ok, err, code = outfile.write("x.html", function(f) f:write("...") end)
--
-- @module kernellogger.outfile
local M = {}

local core = require "kernellogger.core"

-- errno values (the same on Linux and Windows' C library) -> kl.codes
local ERRNO_CODE = {[28] = "disk_full", [27] = "disk_full", [122] = "disk_full",
                    [13] = "access_denied", [1] = "access_denied", [30] = "access_denied"}

--- Is `s` usable as a file name: no NUL byte, no control character?
-- @string s
-- @string what the argument's name, for the message
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code `bad_path`
function M.check_name(s, what)
  local bad = s:find("[%z\1-\31\127]")
  if bad then
    local shown = s:gsub("[%z\1-\31\127\\\"]", function(c) return ("\\x%02x"):format(c:byte()) end)
    return nil, ('%s "%s" contains %s (byte %d); refusing it'):format(what, shown,
      s:byte(bad) == 0 and "a NUL byte" or ("a control character 0x%02x"):format(s:byte(bad)),
      bad), "bad_path"
  end
  return true
end

-- A message without the "file.lua:12: " of a Lua error.
local function clean(msg)
  return (tostring(msg):gsub("^[^\n]-%.lua:%d+: ", "", 1))
end

local function is_interrupt(e)
  return type(e) == "string" and e:find("interrupted!", 1, true) ~= nil
end

-- An error caught from a writer or a reader as message, code: the module's
-- errors end with their code in brackets ("... [invalid]"); others are `io`.
local function failure(e)
  local msg = clean(e)
  local code = msg:match(" %[([%w_]+)%]$")
  if code then msg = msg:sub(1, -(#code + 4)) end
  return msg, code or "io"
end

-- Option checkers: nil when the value is right, else what it must be.
local CHECK = {
  boolean = function(v) return type(v) ~= "boolean" and "a boolean" or nil end,
  name = function(v) return (type(v) ~= "string" or v == "") and "a non-empty string" or nil end,
  count = function(v)
    return (math.type(v) ~= "integer" or v < 1) and "a positive integer" or nil
  end,
}

local function bad(fname, msg, ...)
  error(("%s: " .. msg):format(fname, ...), 0)
end

--- The source of a report writer of the public API (`kl.report.html`,
-- `kl.report.chrome_json`): the arguments are checked and a wrong one
-- raises an error that names it.
-- @string fname the function's name, for the messages
-- @param trace an open Trace, a capture file's path, or a table with `info`
--   and `events` methods standing in for a Trace
-- @param path the output file's name: a non-empty string
-- @param opts nil or a table whose keys are in `known`
-- @tparam table known option name -> "boolean", "name" or "count"
-- @treturn string the capture's name as shown (its path)
-- @treturn table the options (a new table)
function M.check_args(fname, trace, path, opts, known)
  local name
  if type(trace) == "string" then
    if trace == "" then bad(fname, "argument #1 (trace): the capture file's name is empty") end
    name = trace
  elseif getmetatable(trace) and getmetatable(trace).__name == "kernellogger.Trace" then
    local s = tostring(trace)
    if s:find("%(closed%)$") then bad(fname, "argument #1 (trace): the Trace is closed") end
    name = s:match('^kernellogger%.Trace "(.*)" %(') or s
  elseif type(trace) == "table" and type(trace.info) == "function" and
         type(trace.events) == "function" then
    name = type(trace.path) == "string" and trace.path or tostring(trace)
  else
    bad(fname, "argument #1 (trace): a Trace or a capture file's path expected, got %s",
        type(trace))
  end
  if type(path) ~= "string" or path == "" then
    bad(fname, "argument #2 (path): a non-empty file name expected, got %s",
        type(path) == "string" and "an empty string" or type(path))
  end
  if opts ~= nil and type(opts) ~= "table" then
    bad(fname, "argument #3 (options): a table expected, got %s", type(opts))
  end
  local out = {}
  for k, v in pairs(opts or {}) do
    local kind = known[k]
    if not kind then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      bad(fname, "options: unknown field %q (known: %s)", tostring(k), table.concat(names, ", "))
    end
    local want = CHECK[kind](v)
    if want then bad(fname, "options.%s: %s expected, got %s", k, want, tostring(v)) end
    out[k] = v
  end
  return name, out
end

--- Run `fn(t)` on the capture `trace` (opened here when it is a path, and
-- closed after) once `path` is known to be writable. A Lua error on the way
-- (a damaged capture the reader refuses while iterating) comes back as
-- `nil, message, code`; Ctrl-C is raised again.
-- @param trace a Trace or a capture file's path (checked by `check_args`)
-- @string path the output file
-- @tparam table opts `overwrite`
-- @func fn returns the result, or nil, message, code
-- @return what `fn` returns
function M.with_trace(trace, path, opts, fn)
  local ok, err, code = M.check(path, opts.overwrite)
  if not ok then return nil, err, code end
  local t = trace
  if type(trace) == "string" then
    ok, err, code = M.check_name(trace, "capture path")
    if not ok then return nil, err, code end
    t, err, code = require("kernellogger").open(trace)
    if not t then return nil, err, code end
  end
  local r = table.pack(pcall(fn, t))
  if t ~= trace then t:close() end
  if r[1] then return table.unpack(r, 2, r.n) end
  if is_interrupt(r[2]) then error(r[2], 0) end
  return nil, failure(r[2])
end

--- Check that `path` may be written.
-- @string path
-- @bool overwrite replace an existing regular file
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code: `bad_path`, `already_exists` or `access_denied`
function M.check(path, overwrite)
  if type(path) ~= "string" or path == "" then return nil, "file name is empty", "bad_path" end
  local ok, err, code = M.check_name(path, "output path")
  if not ok then return nil, err, code end
  if path:sub(-1) == "/" or path:sub(-1) == "\\" then
    return nil, path .. ": is a folder, not a file", "bad_path"
  end
  local k, kerr, kcode = core._path_kind(path)
  if kerr then return nil, kerr, kcode == "access_denied" and kcode or "bad_path" end
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

-- A new temporary file beside path: name, file.
local function temp_beside(path)
  local err, code
  for _ = 1, 100 do
    local name = ("%s.tmp.%d.%06x"):format(path, core._getpid(), math.random(0, 0xffffff))
    local f
    f, err, code = core._create_exclusive(name)
    if f then return name, f end
    if code ~= "already_exists" then break end
  end
  if code == "not_found" then code = "bad_path" end
  return nil, ("%s: cannot create a file beside it: %s"):format(path, err), code
end

-- The file handed to the writer: `write` raises a tagged error on failure, so
-- that the code of the failure (a full disk) survives the writer's frames.
local Out = {}
Out.__index = Out
local Failure = {}

function Out:write(...)
  local ok, err, errno = self.f:write(...)
  if not ok then
    error(setmetatable({msg = err, code = ERRNO_CODE[errno] or "io"}, Failure), 0)
  end
  return self
end

--- Write `path` through `writer(f)`, atomically.
-- `writer` gets a file-like object with a `write` method; what it raises is
-- caught, the temporary file removed and the error returned as `nil, message,
-- code`: a failed write as `disk_full`, `access_denied` or `io`, another
-- error with the code it ends with ("... [invalid]"), else `io`. Ctrl-C
-- (Lua's "interrupted!") is raised again once the temporary file is gone.
-- @string path
-- @func writer called with the file
-- @tparam[opt] table opts `overwrite` (replace an existing regular file)
-- @treturn[1] true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.write(path, writer, opts)
  local overwrite = opts and opts.overwrite
  local ok, err, code = M.check(path, overwrite)
  if not ok then return nil, err, code end
  local tmp, f
  tmp, f, code = temp_beside(path)
  if not tmp then return nil, f, code end
  local wok, werr = pcall(writer, setmetatable({f = f}, Out))
  local cok, cerr, cerrno = f:close()
  if wok and not cok then
    wok, werr = false, setmetatable({msg = cerr, code = ERRNO_CODE[cerrno] or "io"}, Failure)
  end
  if not wok then
    os.remove(tmp)
    if is_interrupt(werr) then error(werr, 0) end
    if getmetatable(werr) == Failure then
      return nil, ("%s: %s"):format(path, clean(werr.msg)), werr.code
    end
    return nil, failure(werr)
  end
  -- again just before the rename: a link or folder that appeared meanwhile is left alone
  ok, err, code = M.check(path, overwrite)
  if ok then
    if overwrite then
      local errno
      ok, err, errno = os.rename(tmp, path)
      code = ERRNO_CODE[errno] or "io"
    else
      ok, err, code = core._rename_noreplace(tmp, path)
      if code == "already_exists" then
        err = path .. ": a file appeared there while it was written; left alone"
      end
    end
  end
  if not ok then
    os.remove(tmp)
    return nil, err, code
  end
  return true
end

return M
