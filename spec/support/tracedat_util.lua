-- Helpers for the capture-file specs (Linux): unique names, temporary
-- folders, cleanup, and checks of trace.dat files with the real tools.
local M = {}

local H = require "helpers"

local TRACING = H.tracing
M.TRACING = TRACING

-- the basics are the shared ones
M.name, M.q, M.tmpdir, M.rmtree = H.name, H.q, H.tmpdir, H.rmtree
M.instance_exists, M.cleanup, M.read = H.instance_exists, H.cleanup, H.read
local sh_quote = H.q

--- Run a shell command; returns ok, stdout, stderr.
function M.run(cmd)
  local errf = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. sh_quote(errf), "r"))
  local out = p:read("a")
  local ok = p:close()
  local ef = io.open(errf, "r")
  local err = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(errf)
  return ok, out, err
end

function M.size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- Write `count` trace_marker lines "klseq <i> <pad>" into the session's
-- instance, numbered from `first`; each line is one write(2).
function M.markers(name, first, count, pad)
  local f = assert(io.open(TRACING .. "/instances/" .. name .. "/trace_marker", "w"))
  f:setvbuf("no")
  local filler = string.rep("x", pad or 0)
  for i = first, first + count - 1 do
    f:write(("klseq %d %s\n"):format(i, filler)) -- one string: one write(2), one event
  end
  f:close()
end

--- `trace-cmd report` of a file: returns its stdout; fails the test when
-- it exits non-zero or prints anything on stderr.
function M.report(path)
  local ok, out, err = M.run("trace-cmd report -i " .. sh_quote(path))
  assert(ok, "trace-cmd report failed on " .. path .. ": " .. err)
  assert(err == "", "trace-cmd report warned on " .. path .. ": " .. err)
  return out
end

--- `trace-cmd dump --summary`: same rules; returns stdout.
function M.summary(path)
  local ok, out, err = M.run("trace-cmd dump --summary -i " .. sh_quote(path))
  assert(ok, "trace-cmd dump failed on " .. path .. ": " .. err)
  assert(err == "", "trace-cmd dump warned on " .. path .. ": " .. err)
  return out
end

-- spec/support/tdcheck.c, built once per run against libtracecmd.
local tdcheck
local function checker()
  if tdcheck then return tdcheck end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/support"
  local bin = os.tmpname()
  local ok, _, err = M.run("cc -O1 -o " .. sh_quote(bin) .. " " .. sh_quote(here .. "/tdcheck.c")
    .. " $(pkg-config --cflags --libs libtracecmd libtraceevent)")
  assert(ok, "building tdcheck failed: " .. err)
  tdcheck = bin
  return bin
end

--- Read a file with libtracecmd's public reader (tracecmd_open,
-- tracecmd_read_data, tracecmd_iterate_events). Returns a table
-- {events=, ordered=, markers=, last_seq=}; fails on any warning.
function M.libtracecmd(path)
  local ok, out, err = M.run(checker() .. " " .. sh_quote(path))
  assert(ok, "libtracecmd could not read " .. path .. ": " .. err .. out)
  assert(err == "", "libtracecmd warned on " .. path .. ": " .. err)
  local r = {}
  for k, v in out:gmatch("([%w_]+) (%-?%d+)") do r[k] = tonumber(v) end
  return r
end

--- All three readers at once; returns report text and the reader's counts.
function M.check_file(path)
  local text = M.report(path)
  M.summary(path)
  return text, M.libtracecmd(path)
end

function M.finish()
  if tdcheck then os.remove(tdcheck) end
end

return M
