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
-- A recipe reads a Linux `trace.dat` or a Windows `.etl` capture alike: the event
-- names each one needs, per format, are in `M.EVENTS` (the one place where the
-- tracepoints and the Windows kernel classes meet), and `M.process_events` /
-- `M.switch_events` give the events of either format in one shape.
--
-- @module kernellogger.recipe
local kl = require "kernellogger"

local M = {}

--- The events each recipe reads, by capture format (`trace.dat` or `etl`).
M.EVENTS = {
  processes = {
    ["trace.dat"] = {"sched_process_fork", "sched_process_exec", "sched_process_exit",
                     "task_rename"},
    etl = {"Process:Start", "Process:DCStart", "Process:Stop", "Process:Defunct"}},
  cswitch = {
    ["trace.dat"] = {"sched_switch"},
    etl = {"Thread:CSwitch", "Thread:Start", "Thread:DCStart", "Process:Start",
           "Process:DCStart"}},
  tcp_connections = {
    ["trace.dat"] = {"sock:inet_sock_set_state", "tcp", "lost_events"},
    etl = {"TcpIp", "Process:Start", "Process:DCStart"}},
}

--- The format of a capture file, from its first bytes: `"trace.dat"` or `"etl"`.
-- @string file the capture
-- @treturn string the format (`"etl"` for anything that is not a trace.dat)
function M.format(file)
  local f = io.open(file, "rb")
  local head = f and f:read(10) or ""
  if f then f:close() end
  return head == "\23\8Dtracing" and "trace.dat" or "etl"
end

local function default_prog()
  return (arg and arg[0] or "recipe"):match("([^/\\]+)%.lua$") or "recipe"
end

--- An events iterator whose read errors (a capture damaged mid-stream) end the
-- recipe with `prog: message [code]` on stderr and status 1 (`M.fail`), not a
-- Lua traceback.
-- @func it an iterator, as from `Trace:events`
-- @string[opt] prog the recipe's name (default: the script's, from `arg[0]`)
-- @treturn function the same iterator, guarded
function M.guard(it, prog)
  return function()
    local ok, ev = pcall(it)
    if ok then return ev end
    local msg = tostring(ev):gsub("^[^%s:]+%.lua:%d+: ", "")
    local text, code = msg:match("^(.-) %[(%w+)%]$")
    M.fail(prog or default_prog(), text or msg, code)
  end
end

--- Process events of an open capture in one shape, whatever its format.
-- Yields tables `{what, time, pid, ppid, comm, parent, cmd}` where `what` is
-- `"fork"` (a new process; on Windows with its command line), `"exec"`, `"rename"`,
-- `"exit"` or `"running"` (a Windows rundown: the process existed before the capture).
-- @param t an open Trace
-- @string fmt its format (`M.format`)
-- @treturn function an iterator (read errors end the recipe: `M.guard`)
function M.process_events(t, fmt)
  local it = M.guard(t:events{names = M.EVENTS.processes[fmt]})
  local images = {}
  return function()
    local ev = it()
    if not ev then return nil end
    if fmt == "etl" then
      local what = (ev.name == "Start" and "fork") or (ev.name == "DCStart" and "running") or
                   "exit"
      if what ~= "exit" then images[ev.ProcessId] = ev.ImageFileName end
      return {what = what, time = ev.time, pid = ev.ProcessId, ppid = ev.ParentId,
              comm = ev.ImageFileName, parent = images[ev.ParentId],
              cmd = ev.CommandLine ~= "" and ev.CommandLine or nil}
    elseif ev.name == "sched_process_fork" then
      return {what = "fork", time = ev.time, pid = ev.child_pid, ppid = ev.parent_pid,
              comm = ev.child_comm, parent = ev.parent_comm}
    elseif ev.name == "sched_process_exec" then
      return {what = "exec", time = ev.time, pid = ev.field_pid, comm = ev.comm, cmd = ev.filename}
    elseif ev.name == "task_rename" then
      return {what = "rename", time = ev.time, pid = ev.field_pid, comm = ev.newcomm}
    end
    return {what = "exit", time = ev.time, pid = ev.field_pid, comm = ev.field_comm}
  end
end

--- Context switches of an open capture in one shape, whatever its format.
-- Yields `{time, cpu, prev_comm, prev_pid, next_comm, next_pid}`; on Windows the
-- ids are thread ids (as Linux's are) and the names those of their processes' images,
-- known from the thread and process events before the switch ("?" otherwise).
-- @param t an open Trace
-- @string fmt its format (`M.format`)
-- @treturn function an iterator (read errors end the recipe: `M.guard`)
function M.switch_events(t, fmt)
  local it = M.guard(t:events{names = M.EVENTS.cswitch[fmt]})
  if fmt ~= "etl" then return it end
  local owner, image = {}, {[0] = "Idle"}
  return function()
    for ev in it do
      if ev.name == "CSwitch" then
        local function comm(tid) return image[owner[tid] or -1] or "?" end
        return {time = ev.time, cpu = ev.cpu, prev_pid = ev.OldThreadId,
                prev_comm = comm(ev.OldThreadId), next_pid = ev.NewThreadId,
                next_comm = comm(ev.NewThreadId)}
      elseif ev.system == "Thread" then
        owner[ev.TThreadId] = ev.ProcessId
      else
        image[ev.ProcessId] = ev.ImageFileName
      end
    end
    return nil
  end
end

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
