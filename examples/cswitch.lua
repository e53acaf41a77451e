#!/usr/bin/env lua5.4
--[[ Context switches: the most frequent switch pairs (which task gave the CPU
to which) and the CPUs they happened on.

  lua5.4 examples/cswitch.lua            capture now: start the kernel logger with the
                                         cswitch group for two seconds of a small workload
  lua5.4 examples/cswitch.lua FILE.dat   read an existing capture (a Linux trace.dat, or
                                         a Windows .etl with the cswitch group)

Run from the project root after building (bash scripts/dev build), or with the
module installed by luarocks.
]]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local kl = require "kernellogger"
local recipe = require "kernellogger.recipe"

local TOP = 15

local function fail(msg, code) recipe.fail("cswitch", msg, code) end

local function capture()
  local file, stats = recipe.capture("cswitch", {flags = {"cswitch"}, circular_mb = 8}, function()
    print("two seconds of a small workload")
    -- two processes that wake each other through a pipe, and some sleeping
    os.execute("(for i in $(seq 2000); do echo $i; done | cat >/dev/null) & " ..
               "sleep 0.5; for i in 1 2 3; do sleep 0.2; done; wait")
    kl._core._sleep(0.5)
  end)
  print(("%d events lost"):format(stats.events_lost or 0))
  return file
end

local function task(comm, pid)
  return pid == 0 and "<idle>" or ("%s/%d"):format(comm, pid)
end

local file = arg[1] or capture()
local t <close>, err, code = kl.open(file)
if not t then fail(err, code) end
local pairs_, total, first, last = {}, 0, nil, nil
local per_cpu = {}
for ev in recipe.switch_events(t, recipe.format(file)) do
  first = first or ev.time
  last = ev.time
  total = total + 1
  local key = task(ev.prev_comm, ev.prev_pid) .. "\0" .. task(ev.next_comm, ev.next_pid)
  local p = pairs_[key]
  if not p then
    p = {from = task(ev.prev_comm, ev.prev_pid), to = task(ev.next_comm, ev.next_pid),
         n = 0, cpus = {}}
    pairs_[key] = p
  end
  p.n = p.n + 1
  p.cpus[ev.cpu] = (p.cpus[ev.cpu] or 0) + 1
  per_cpu[ev.cpu] = (per_cpu[ev.cpu] or 0) + 1
end

local list = {}
for _, p in pairs(pairs_) do list[#list + 1] = p end
table.sort(list, function(a, b)
  if a.n ~= b.n then return a.n > b.n end
  return a.from .. a.to < b.from .. b.to
end)

local span = (first and last and last > first) and (last - first) / 1e9 or 0
print()
print(("Context switches in %s: %d in %.3f s%s"):format(file, total, span,
      span > 0 and (" (%.0f/s)"):format(total / span) or ""))
print(("%-28s %-28s %8s %6s  %s"):format("from (gave up the CPU)", "to", "count", "share",
                                         "CPUs (switches)"))
for i = 1, math.min(TOP, #list) do
  local p = list[i]
  local cpus = {}
  for cpu, n in pairs(p.cpus) do cpus[#cpus + 1] = {cpu = cpu, n = n} end
  table.sort(cpus, function(a, b) return a.cpu < b.cpu end)
  for j, c in ipairs(cpus) do cpus[j] = ("cpu%d (%d)"):format(c.cpu, c.n) end
  print(("%-28s %-28s %8d %5.1f%%  %s"):format(p.from:sub(1, 28), p.to:sub(1, 28), p.n,
        100 * p.n / total, table.concat(cpus, ", ")))
end
if #list > TOP then print(("... %d more pairs"):format(#list - TOP)) end
local cpus = {}
for cpu, n in pairs(per_cpu) do cpus[#cpus + 1] = ("cpu%d %d"):format(cpu, n) end
table.sort(cpus)
print(("per CPU: %s"):format(table.concat(cpus, ", ")))
