#!/usr/bin/env lua5.4
--[[ Processes: which started (fork, exec) and exited, with their command lines.

  lua5.4 examples/processes.lua            capture now: start the kernel logger with the
                                           process group, run a few commands, stop
  lua5.4 examples/processes.lua FILE.dat   read an existing capture (a Linux trace.dat
                                           or a Windows .etl)

The command line shown is what the kernel's events carry: on Linux the executable
path from sched_process_exec and the command name (comm) after it (the arguments
are not in any tracepoint); on Windows the Process/Start event's command line.

Run from the project root after building (bash scripts/dev build), or with the
module installed by luarocks.
]]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local kl = require "kernellogger"
local recipe = require "kernellogger.recipe"

local function fail(msg, code) recipe.fail("processes", msg, code) end

local function capture()
  local file, stats = recipe.capture("processes", {flags = {"process"}, circular_mb = 4},
    function()
      for _, cmd in ipairs{"ls / >/dev/null", "sh -c 'echo hello | wc -c >/dev/null'",
                           "sleep 0.2", "uname -a >/dev/null", "date >/dev/null"} do
        os.execute(cmd)
      end
    end)
  print(("ran 5 commands; %d events lost"):format(stats.events_lost or 0))
  return file
end

local function analyse(file)
  local t <close>, err, code = kl.open(file)
  if not t then fail(err, code) end
  local procs, order, first = {}, {}, nil
  local function proc(pid, time)
    local p = procs[pid]
    if not p then
      p = {pid = pid, seen = time}
      procs[pid] = p
      order[#order + 1] = p
    end
    return p
  end
  for ev in recipe.process_events(t, recipe.format(file)) do
    first = first or ev.time
    local p = proc(ev.pid, ev.time)
    if ev.what == "fork" then
      p.start, p.ppid, p.parent = ev.time, ev.ppid, ev.parent
      p.comm = p.comm or ev.comm
      p.cmd = p.cmd or ev.cmd
    elseif ev.what == "exec" then
      p.exec = ev.time
      p.cmd = ev.cmd
      p.comm = ev.comm
    elseif ev.what == "rename" or ev.what == "running" then
      p.comm = ev.comm
      p.cmd = p.cmd or ev.cmd
      p.running = p.running or ev.what == "running"
      p.ppid = p.ppid or ev.ppid
    elseif ev.what == "exit" then
      p.exit = ev.time
      p.comm = p.comm or ev.comm
    end
  end
  return order, first or 0
end

local file = arg[1] or capture()
local order, first = analyse(file)
local function ms(ns) return ns and ("%.3f"):format((ns - first) / 1e6) or "-" end

print()
print(("Processes in %s"):format(file))
print(("%-10s %-10s %7s %7s %-16s %-12s %s"):format("start ms", "exit ms", "pid", "ppid",
      "comm", "lifetime", "command"))
local started, exited, older = 0, 0, 0
for _, p in ipairs(order) do
  if p.start or p.exec or (p.running and p.exit) then
    started = started + (p.start and 1 or 0)
    local old = p.running and p.exit and not p.start and not p.exec
    older = older + (old and 1 or 0)
    exited = exited + ((p.exit and not old) and 1 or 0)
    local life = (p.start and p.exit) and ("%.3f ms"):format((p.exit - p.start) / 1e6) or
                 (p.exit and "ended" or "running")
    local cmd = p.cmd or (p.parent and ("(fork of %s)"):format(p.parent)) or ""
    print(("%-10s %-10s %7d %7s %-16s %-12s %s"):format(ms(p.start or p.exec), ms(p.exit),
          p.pid, p.ppid and tostring(p.ppid) or "?", p.comm or "?", life, cmd))
  end
end
print(("%d started, %d of them exited in the capture"):format(started, exited))
if older > 0 then  -- a Windows rundown names the processes that ran before the capture
  print(("%d processes that ran before the capture exited in it"):format(older))
end
