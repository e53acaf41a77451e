#!/usr/bin/env lua5.4
--[[ TCP connections: who connected to whom, their state changes, resets and
retransmits.

  lua5.4 examples/tcp_connections.lua            capture now: start the kernel logger
                                                 with the TCP/IP group (and cswitch and
                                                 process, for the HTML report's CPU lanes),
                                                 open a few loopback connections to a
                                                 listener of our own, stop
  lua5.4 examples/tcp_connections.lua FILE.dat   read an existing capture (a Linux
                                                 trace.dat or a Windows .etl)

The analysis is kernellogger.tcp's, which the HTML report's TCP table shares
(`kernellogger report --html out.html FILE.dat`).

Run from the project root after building (bash scripts/dev build), or with the
module installed by luarocks.
]]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local kl = require "kernellogger"
local recipe = require "kernellogger.recipe"

local CONNECTIONS = 5

local tcp = require "kernellogger.tcp"

local function fail(msg, code) recipe.fail("tcp_connections", msg, code) end

--- Open `n` loopback connections to a listener of our own; returns its port.
local function make_connections(n)
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:settimeout(2)
  for i = 1, n do
    local c = assert(socket.connect("127.0.0.1", port))
    local peer = assert(server:accept())
    assert(c:send("hello " .. i .. "\n"))
    assert(peer:receive("*l"))
    c:close()
    peer:close()
    socket.sleep(0.02)  -- spaced out, so that a timeline of the capture tells them apart
  end
  -- a connection refused by a closed port: the kernel answers with a reset
  local closed = assert(socket.bind("127.0.0.1", 0))
  local _, cport = closed:getsockname()
  closed:close()
  local c = socket.tcp()
  c:settimeout(1)
  c:connect("127.0.0.1", cport)
  c:close()
  server:close()
  return tonumber(port)
end

local function capture()
  -- cswitch and process too: the HTML report of the capture then shows what ran on each CPU;
  -- context switches of a busy machine fill a ring quickly: 32 MB keeps a few seconds
  local file, stats, port = recipe.capture("tcp_connections",
    {flags = {"tcpip", "cswitch", "process"}, circular_mb = 32},
    function() return make_connections(CONNECTIONS) end)
  print(("made %d connections to 127.0.0.1:%d, and one to a closed port"):format(CONNECTIONS,
                                                                                port))
  print(("%-16s %12s"):format("counter", "value"))
  for _, k in ipairs{"entries", "events_lost", "overrun", "dropped", "bytes",
                     "buffer_kb", "buffers", "bytes_written"} do
    if stats[k] then print(("%-16s %12d"):format(k, stats[k])) end
  end
  print(("%-16s %12s"):format("clock", stats.clock or "?"))
  return file, port
end

--- Read the capture: one record per socket, plus resets and retransmits.
local function analyse(file)
  local t <close>, err, code = kl.open(file)
  if not t then fail(err, code) end
  local acc = tcp.new()
  for ev in recipe.guard(t:events{names = tcp.NAMES}) do acc:add(ev) end
  return acc:result()
end

--- Read a Windows capture: one record per connection (local and remote address and
-- port). ETW has no socket states: the "states"
-- column counts the events seen (Connect, Accept, Send, Recv, Disconnect...), and
-- a connection older than the capture shows "--" for its direction.
local function analyse_etl(file)
  local t <close>, err, code = kl.open(file)
  if not t then fail(err, code) end
  local socks, order, retrans, changes, images = {}, {}, {}, 0, {}
  local first
  for ev in recipe.guard(t:events{names = recipe.EVENTS.tcp_connections.etl}) do
    first = first or ev.time
    if ev.system == "Process" then
      images[ev.ProcessId] = ev.ImageFileName
    elseif ev.daddr then
      local what = ev.name:gsub("IPV6$", "")
      local key = table.concat({ev.saddr, ev.sport, ev.daddr, ev.dport}, " ")
      local s = socks[key]
      if not s then
        s = {states = {}, n = {}, first = ev.time, pid = ev.PID, comm = images[ev.PID], retrans = 0,
             resets = 0, saddr = ev.saddr, sport = ev.sport, daddr = ev.daddr, dport = ev.dport,
             seen = true}
        socks[key] = s
        order[#order + 1] = s
      end
      if not s.n[what] then s.states[#s.states + 1] = what end
      s.n[what] = (s.n[what] or 0) + 1
      changes = changes + 1
      if what == "Connect" then s.client = true end
      if what == "Accept" then s.server = true end
      if what == "Retransmit" then
        s.retrans = s.retrans + 1
        retrans[#retrans + 1] = {time = ev.time, what = "retransmit", comm = s.comm,
                                 pid = ev.PID, from = tcp.endpoint(ev.saddr, ev.sport),
                                 to = tcp.endpoint(ev.daddr, ev.dport)}
      end
    end
  end
  for _, s in ipairs(order) do
    for i, what in ipairs(s.states) do s.states[i] = ("%s(%d)"):format(what, s.n[what]) end
  end
  return {socks = order, resets = {}, retrans = retrans, lost = 0, changes = changes,
          first = first or 0}
end

local file = arg[1]
local port
if not file then file, port = capture() end
local r = (recipe.format(file) == "etl" and analyse_etl or analyse)(file)
local function ms(ns) return ("%.3f"):format((ns - r.first) / 1e6) end

print()
print(("Connections in %s%s"):format(file, port and (" (listener port " .. port .. ")") or ""))
print(("%-10s %-22s %-3s %-22s %-18s %5s %5s  %s"):format("t (ms)", "from", "", "to",
      "process", "retx", "rst", "states"))
local nconn = 0
for _, s in ipairs(r.socks) do
  if s.client or s.server or s.seen then  -- seen: an .etl connection of unknown direction
    nconn = nconn + 1
    local arrow = s.client and "->" or s.server and "<-" or "--"
    local from, to = tcp.endpoint(s.saddr, s.sport), tcp.endpoint(s.daddr, s.dport)
    print(("%-10s %-22s %-3s %-22s %-18s %5d %5d  %s"):format(ms(s.first), from, arrow, to,
          ("%s/%d"):format(s.comm or "?", s.pid or -1):sub(1, 18), s.retrans, s.resets,
          table.concat(s.states, ">")))
  end
end
print(("%d connection ends (-> connected out, <- accepted), %d state changes"):format(
  nconn, r.changes))

print()
print(("%-10s %-16s %-22s %-22s %s"):format("t (ms)", "event", "from", "to", "process"))
for _, list in ipairs{r.resets, r.retrans} do
  for _, e in ipairs(list) do
    print(("%-10s %-16s %-22s %-22s %s/%d"):format(ms(e.time), e.what, e.from, e.to,
          e.comm or "?", e.pid or -1))
  end
end
print(("%d resets, %d retransmits%s"):format(#r.resets, #r.retrans,
      r.lost > 0 and (", %d events lost by the ring"):format(r.lost) or ""))
