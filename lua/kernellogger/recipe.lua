--- Helpers for diagnostic recipes: a fresh capture around a workload.
--
-- The recipes in `examples/` read a capture file given on the command line, or
-- make a fresh one around a small workload of their own. This module is that
-- second half, so that each recipe is only its workload and its analysis:
--
--     local recipe = require "kernellogger.recipe"
--     local file = arg[1] or recipe.capture("myrecipe", {flags = {"tcpip"}, circular_mb = 5},
--                                           function(session) run_the_workload() end)
--     for ev in assert(kl.open(file)):events{names = "inet_sock_set_state"} do ... end
--
-- @module kernellogger.recipe
local kl = require "kernellogger"

local M = {}

--- Print `prog: message [code]` on stderr and exit with status 1.
-- @string prog the recipe's name
-- @string msg what went wrong
-- @tparam[opt] string code the error code
function M.fail(prog, msg, code)
  io.stderr:write(prog, ": ", tostring(msg), code and (" [" .. code .. "]") or "", "\n")
  os.exit(1)
end

--- Capture while `workload` runs.
-- Starts the kernel logger (the session named by the environment variable
-- `KL_SESSION`, else `kernellogger.KERNEL_LOGGER`); when another tool holds it, a
-- private kernel session instead (`on_conflict = "private"`), and says so. Runs
-- `workload(session)`, stops the session (also when the workload raised, which
-- is then raised again) and returns what the stop wrote.
-- @string prog the recipe's name, for messages
-- @tparam table opts start options (`flags`, `circular_mb`, ...); `file` defaults
--   to a new temporary file
-- @func workload called with the running Session
-- @treturn string the capture file
-- @treturn table the final statistics from `stop`
-- @return what `workload` returned
function M.capture(prog, opts, workload)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if not o.file then
    local tmp = os.tmpname()
    os.remove(tmp)
    o.file = tmp .. ".dat"
  end
  o.name = o.name or os.getenv("KL_SESSION") or kl.KERNEL_LOGGER
  o.on_conflict = o.on_conflict or "private"
  local s, how, code = kl.start(o)
  if not s then M.fail(prog, how, code) end
  if how.private then
    print(("%s is held by another tool: using the private session %s"):format(o.name, s.name))
  end
  print(("started %s"):format(tostring(s)))
  local results = table.pack(pcall(workload, s))
  local stats, err, ecode = s:stop()
  if not results[1] then error(results[2], 0) end
  if not stats then M.fail(prog, err, ecode) end
  return stats.file or o.file, stats, table.unpack(results, 2, results.n)
end

return M
