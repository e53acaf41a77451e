#!/usr/bin/env lua5.4
--[[ Processes: which started (fork, exec) and exited, with their command lines.

  lua5.4 examples/processes.lua            capture now: start the kernel logger with the
                                           process group, run a few commands, stop
  lua5.4 examples/processes.lua FILE.dat   read an existing capture

The command line shown is what the kernel's tracepoints carry: the executable
path from sched_process_exec and the command name (comm) after it; the
arguments themselves are not in any tracepoint.

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
  for ev in t:events{names = {"sched_process_fork", "sched_process_exec",
                              "sched_process_exit", "task_rename"}} do
    first = first or ev.time
    if ev.name == "sched_process_fork" then
      local p = proc(ev.child_pid, ev.time)
      p.start, p.ppid, p.parent = ev.time, ev.parent_pid, ev.parent_comm
      p.comm = p.comm or ev.child_comm
    elseif ev.name == "sched_process_exec" then
      local p = proc(ev.field_pid, ev.time)
      p.exec = ev.time
      p.cmd = ev.filename
      p.comm = ev.comm
    elseif ev.name == "task_rename" then
      local p = proc(ev.field_pid, ev.time)
      p.comm = ev.newcomm
    elseif ev.name == "sched_process_exit" then
      local p = proc(ev.field_pid, ev.time)
      p.exit = ev.time
      p.comm = p.comm or ev.field_comm
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
local started, exited = 0, 0
for _, p in ipairs(order) do
  if p.start or p.exec then
    started = started + (p.start and 1 or 0)
    exited = exited + (p.exit and 1 or 0)
    local life = (p.start and p.exit) and ("%.3f ms"):format((p.exit - p.start) / 1e6) or
                 (p.exit and "ended" or "running")
    local cmd = p.cmd or (p.parent and ("(fork of %s)"):format(p.parent)) or ""
    print(("%-10s %-10s %7d %7s %-16s %-12s %s"):format(ms(p.start or p.exec), ms(p.exit),
          p.pid, p.ppid and tostring(p.ppid) or "?", p.comm or "?", life, cmd))
  end
end
print(("%d started, %d of them exited in the capture"):format(started, exited))
