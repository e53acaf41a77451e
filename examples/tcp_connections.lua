#!/usr/bin/env lua5.4
--[[ TCP connections: who connected to whom, their state changes, resets and
retransmits.

  lua5.4 examples/tcp_connections.lua            capture now: start the kernel logger
                                                 with the TCP/IP group, open a few loopback
                                                 connections to a listener of our own, stop
  lua5.4 examples/tcp_connections.lua FILE.dat   read an existing capture (a Linux
                                                 trace.dat or a Windows .etl)

Run from the project root after building (bash scripts/dev build), or with the
module installed by luarocks.
]]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local kl = require "kernellogger"
local recipe = require "kernellogger.recipe"

local CONNECTIONS = 5

-- include/net/tcp_states.h
local STATE = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
               "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}
local function state(n) return STATE[n] or tostring(n) end

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
  local file, stats, port = recipe.capture("tcp_connections", {flags = {"tcpip"}, circular_mb = 5},
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

local function endpoint(addr, port)
  if not port then return addr or "?" end  -- tcp_send_reset has no port fields here
  if addr and addr:find(":", 1, true) then return ("[%s]:%d"):format(addr, port) end
  return ("%s:%d"):format(addr or "?", port)
end

-- The addresses of an event: IPv4 ones unless the socket is IPv6.
local function addrs(ev)
  if ev.family == 10 then return ev.saddr_v6, ev.daddr_v6 end
  return ev.saddr, ev.daddr
end

--- Read the capture: one record per socket, plus resets and retransmits.
local function analyse(file)
  local t <close>, err, code = kl.open(file)
  if not t then fail(err, code) end
  local socks, order, resets, retrans, lost, changes = {}, {}, {}, {}, 0, 0
  local first
  for ev in t:events{names = recipe.EVENTS.tcp_connections["trace.dat"]} do
    first = first or ev.time
    if ev.name == "lost_events" then
      lost = lost + math.max(ev.lost, 0)
    elseif ev.name == "inet_sock_set_state" and ev.protocol == 6 then
      changes = changes + 1
      local s = socks[ev.skaddr]
      if not s or (s.closed and ev.newstate ~= 7) then
        s = {states = {state(ev.oldstate)}, first = ev.time, comm = ev.comm, pid = ev.pid,
             retrans = 0, resets = 0}
        socks[ev.skaddr] = s
        order[#order + 1] = s
      end
      s.states[#s.states + 1] = state(ev.newstate)
      s.last = ev.time
      if ev.newstate == 2 then s.client = true; s.comm, s.pid = ev.comm, ev.pid end
      if ev.newstate == 3 or (ev.oldstate == 3 and ev.newstate == 1) then s.server = true end
      if ev.sport ~= 0 or not s.sport then
        local sa, da = addrs(ev)
        s.saddr, s.sport, s.daddr, s.dport = sa, ev.sport, da, ev.dport
      end
      if ev.newstate == 7 then s.closed = true end
    elseif ev.name == "tcp_retransmit_skb" or ev.name == "tcp_send_reset" or
           ev.name == "tcp_receive_reset" then
      local sa, da = addrs(ev)
      local row = {time = ev.time, what = ev.name:gsub("^tcp_", ""), comm = ev.comm,
                   pid = ev.pid, from = endpoint(sa, ev.sport), to = endpoint(da, ev.dport)}
      local s = ev.skaddr and socks[ev.skaddr]
      if ev.name == "tcp_retransmit_skb" then
        retrans[#retrans + 1] = row
        if s then s.retrans = s.retrans + 1 end
      else
        resets[#resets + 1] = row
        if s then s.resets = s.resets + 1 end
      end
    end
  end
  return {socks = order, resets = resets, retrans = retrans, lost = lost, changes = changes,
          first = first or 0}
end

--- Read a Windows capture: the kernel's TcpIp events, one record per connection
-- (local and remote address and port). ETW has no socket states: the "states"
-- column counts the events seen (Connect, Accept, Send, Recv, Disconnect...), and
-- a connection older than the capture shows "--" for its direction.
local function analyse_etl(file)
  local t <close>, err, code = kl.open(file)
  if not t then fail(err, code) end
  local socks, order, retrans, changes, images = {}, {}, {}, 0, {}
  local first
  for ev in t:events{names = recipe.EVENTS.tcp_connections.etl} do
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
        retrans[#retrans + 1] = {time = ev.time, what = "retransmit", comm = s.comm, pid = ev.PID,
                                 from = endpoint(ev.saddr, ev.sport), to = endpoint(ev.daddr, ev.dport)}
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
  if s.client or s.server or s.seen then
    nconn = nconn + 1
    local arrow = s.client and "->" or s.server and "<-" or "--"
    local from, to = endpoint(s.saddr, s.sport), endpoint(s.daddr, s.dport)
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
