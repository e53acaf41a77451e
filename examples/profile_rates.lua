-- Measure what each built-in profile records on this machine: events and ring
-- bytes per second, and how long its ring (circular_mb) holds at that rate.
-- Run as root:  lua5.4 examples/profile_rates.lua [--busy] [seconds] [profile...]
-- --busy records while a shell loop lists /usr/share over and over (processes,
-- file system calls, context switches), one busy CPU.
-- The figures behind docs/profiles.md come from this script.
local kl = require "kernellogger"
local core = require "kernellogger.core"

local args = { ... }
local busy = args[1] == "--busy"
if busy then table.remove(args, 1) end
local seconds = tonumber(args[1]) or 5
local names = { table.unpack(args, 2) }
if #names == 0 then
  for _, e in ipairs(kl.profiles.list()) do
    if e.origin ~= "user" then names[#names + 1] = e.origin .. "." .. e.name end
  end
end

local sessname = ("klrates_%d"):format(core._getpid())
print(("%-22s %10s %12s %9s %8s %10s %s"):format("profile", "events/s", "bytes/s", "B/event",
  "ring MB", "ring lasts", "lost"))
for _, n in ipairs(names) do
  local s, msg = kl.start { name = sessname, profile = n }
  if not s then
    io.stderr:write(n, ": ", msg, "\n")
  else
    local t0 = core._monotime()
    if busy then
      os.execute(("timeout %g sh -c 'while :; do ls -R /usr/share >/dev/null; done'")
        :format(seconds))
    else
      core._sleep(seconds)
    end
    local q = s:query()
    local dt = core._monotime() - t0
    s:stop()
    local eps, bps = q.entries / dt, q.bytes / dt
    local ring = (q.ring_kb or 0) / 1024
    local lasts = bps > 0 and ring * 1048576 / bps or math.huge
    print(("%-22s %10.0f %12.0f %9.1f %8.0f %9.0fs %d"):format(n, eps, bps,
      q.entries > 0 and q.bytes / q.entries or 0, ring, lasts, q.events_lost + q.overrun))
  end
end
