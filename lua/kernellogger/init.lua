--- Run the operating system's kernel event logger from Lua.
--
-- On Windows it drives ETW's NT Kernel Logger (and private kernel sessions on
-- Windows 8+); on Linux it drives one ftrace instance per session through
-- libtracefs and writes trace-cmd's `trace.dat`.
--
--     local kl = require "kernellogger"
--     local s <close> = assert(kl.start{flags = {"tcpip"}, file = "x.dat", circular_mb = 5})
--     print(s:query().events_lost)
--     local stats = s:stop()
--
-- Kernel-side failures return `nil, message, code`, where `code` is one of the
-- strings in `kernellogger.codes` (the same on every platform). Mistakes in the
-- arguments raise an error that names the field.
-- @module kernellogger
local core = require "kernellogger.core"

local M = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" then M[k] = v end
end

--- The platform: `"linux"` or `"windows"`.
-- @field platform

--- The default session name: `"kernellogger"` on Linux, `"NT Kernel Logger"` on Windows.
-- @field KERNEL_LOGGER

--- The set of stable error code strings, e.g. `kernellogger.codes.already_exists == true`.
-- @field codes

--- Start a kernel logger session.
-- @tparam[opt] table opts `name`, `flags` (a list of names, a comma string, an
--   integer mask, or on Linux `"system:event"` tracepoints), `file`,
--   `circular_mb` or `max_mb`, `realtime`, `buffer_kb`, `min_buffers`,
--   `max_buffers`, `flush_timer`, `clock`, `stacks`, `strict` (default true:
--   a flag this platform cannot serve fails with `not_supported`; false skips it
--   and lists it in `session.skipped`), `overwrite`, `file_mode`, `kallsyms`,
--   `detached` (record no owner process: the session is meant to outlive this one).
--   A `realtime` session on Linux is read live with
--   `s:events{names=, cpu=, pid=, timeout=, self=}`: event tables as `Trace:events`
--   gives them; the iterator ends after `timeout` seconds without an event or when
--   the session stops. The reading process's own threads are left out of the
--   trace (by the kernel, from the first `events()` until the reader closes)
--   unless an iteration passes `self = true`; comms are the processes' real
--   names, short-lived ones included (docs/realtime.md).
--   The Lua layer adds `profile` (a name, a profile or a table: see
--   `kernellogger.profiles`) and `on_conflict`, `timeout`, `backoff` (see
--   `kernellogger.conflict` and docs/conflict-policies.md).
-- @treturn[1] Session the running session (owned, unless attached)
-- @treturn[1] table outcome: `policy`, `name`, `attempts`, `waited`, `displaced`,
--   `attached`, `private`, `holder`
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @treturn[2] table|nil the holder's query table on a conflict
-- @treturn[2] table outcome
function M.start(opts)
  if type(opts) == "table" and opts.profile ~= nil then
    local profiles = require "kernellogger.profiles"
    opts = profiles.apply(opts)
  end
  return require("kernellogger.conflict").start(core, opts or {})
end

--- A Session handle on a running session, not owned (never stopped on close).
-- @tparam[opt=KERNEL_LOGGER] string name
-- @treturn[1] Session
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @function attach

--- Stop a session by name, from any process. The file is written first.
-- @tparam[opt=KERNEL_LOGGER] string name
-- @tparam[opt] string|table file a file name, or `{file = ..., overwrite = ...}`
--   (`overwrite` without `file`: the session's own file may be replaced; `file = false`:
--   no file is written)
-- @treturn[1] table the final query table
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @function stop

--- Query a session by name: counters and settings in one table.
-- @tparam[opt=KERNEL_LOGGER] string name
-- @treturn[1] table
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @function query

--- Write a session's current content to its file (or to the one given).
-- @tparam[opt=KERNEL_LOGGER] string name
-- @tparam[opt] string|table file
-- @treturn[1] boolean true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @function flush

--- Every kernel logger session on the machine; other tools' are marked `foreign`.
-- @treturn[1] table a list of query tables
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @function sessions

--- The flag table: one entry per kernel event group, with `name`, `aliases`,
-- `value` (the ETW bit), `macro`, `tracepoints` (Linux) and `supported` (here).
-- @treturn table a list
-- @function flags

--- Open a capture file (`trace.dat` v6 or v7 on Linux) for reading.
-- The file is checked before anything is read: a missing, unreadable,
-- truncated or corrupt file returns `nil, message, code` (`not_found`,
-- `access_denied`, `invalid`, `io`); it never crashes the process.
--
-- The Trace it returns has these methods:
--
-- - `trace:info()` → table: `format` ("trace.dat"), `version`, `endian`
--   ("little"/"big"), `long_size`, `page_size`, `cpus`, `clock` (when the file
--   says), `first_ts`, `last_ts` (ns), and `events`, a list of
--   `{system=, name=, count=}` for the event types present. It reads the whole
--   file once (no decoding; about 10 M records/s) and caches the result.
-- - `trace:events{...}` → an iterator of event tables in timestamp order
--   across CPUs. Options, all applied before a table is built: `names` (a
--   list of `"event"`, `"system"` or `"system:event"`, or one comma-separated
--   string), `cpu`, `pid`, `from`/`to` (or `t0`/`t1`): a time window in ns,
--   inclusive (`to` > 0).
--   Each event has `name`, `system`, `time` (ns), `cpu`, `pid`, `comm` and
--   every format field: integers (unsigned 64-bit values above 2^63 read as
--   negative integers: print them with `("%x"):format(v)`), strings,
--   lists of integers for arrays, and the addresses of `sock:inet_sock_set_state`
--   and `tcp:*` events as text ("127.0.0.1", "::1"). A field named like a
--   header key (sched_wakeup's `pid`, `comm`) is stored as `field_pid`,
--   `field_comm`. Where the kernel ring dropped events the iterator yields a
--   marker `{name = "lost_events", lost = N, cpu = ..., time = ...}` (`lost`
--   is -1 when the ring did not count them); it is subject to the `names`
--   (as "lost_events"), `cpu` and time filters and excluded by `pid`.
--   A Trace has one read position: starting `events()` again invalidates the
--   previous iterator. A read error in the middle of a file raises.
-- - `trace:close()`; also `local t <close> = kl.open(...)`, and garbage collection.
-- @string path
-- @treturn[1] Trace
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
-- @usage
-- local t <close> = assert(kl.open("x.dat"))
-- for ev in t:events{names = "inet_sock_set_state"} do
--   print(ev.time, ev.saddr, ev.sport, ev.daddr, ev.dport, ev.newstate)
-- end
-- @function open

--- Look up one flag by name or alias.
-- @string name e.g. `"net"`
-- @treturn table|nil the entry of `flags()`
function M.flag(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'flag' (string expected, got " .. type(name) .. ")", 2)
  end
  local want = name:lower()
  for _, f in ipairs(core.flags()) do
    if f.name == want then return f end
    for _, a in ipairs(f.aliases) do
      if a == want then return f end
    end
  end
  return nil
end

--- Record until `seconds` pass, `stop_when(query, elapsed)` is true, or Ctrl-C;
-- then stop and complete the file.  See `kernellogger.capture`.
-- @tparam table opts start options plus `seconds`, `stop_when`, `progress`, `interval`
-- @treturn[1] table final stats (with `interrupted`, `elapsed`)
-- @treturn[1] string the file
-- @treturn[1] table the start outcome
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code
function M.capture(opts)
  return require("kernellogger.capture").capture(M.start, core, opts)
end

--- Named recording profiles (`kernellogger.profiles`).
M.profiles = require "kernellogger.profiles"

--- Capture summaries (`kernellogger.report`): `report.html(trace, path)` writes
-- the HTML report, `report.chrome_json(trace, path)` the Trace Event Format.
-- Loaded on first use.
-- @field report
setmetatable(M, {__index = function(t, k)
  if k == "report" then
    local report = require "kernellogger.report"
    rawset(t, k, report)
    return report
  end
end})

M._core = core
M._VERSION = "kernellogger scm"

return M
