#!/usr/bin/env lua5.4
--[[ TCP connections: who connected to whom, and the session's counters.

  lua5.4 examples/tcp_connections.lua            capture now: start the kernel logger
                                                 with the TCP/IP group, open a few loopback
                                                 connections to a listener of our own, stop
  lua5.4 examples/tcp_connections.lua FILE.dat   read an existing capture

Run from the project root after building (bash scripts/dev build), or with the
module installed by luarocks.
]]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local kl = require "kernellogger"

local CONNECTIONS = 5

local function fail(msg, code)
  io.stderr:write("tcp_connections: ", msg, code and (" [" .. code .. "]") or "", "\n")
  os.exit(1)
end

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
  server:close()
  return tonumber(port)
end

local function capture()
  local file = os.tmpname() .. ".dat"
  os.remove(file:sub(1, -5))
  local s, err, code = kl.start{flags = {"tcpip"}, file = file, circular_mb = 5}
  if not s then fail(err, code) end
  print(("started %s"):format(tostring(s)))
  local port = make_connections(CONNECTIONS)
  local live = assert(s:query())
  local stats, serr, scode = s:stop()
  if not stats then fail(serr, scode) end
  print(("made %d connections to 127.0.0.1:%d"):format(CONNECTIONS, port))
  print(("%-16s %12s"):format("counter", "value"))
  for _, k in ipairs{"entries", "events_lost", "overrun", "dropped", "bytes",
                     "buffer_kb", "buffers", "bytes_written"} do
    local v = (k == "entries" or k == "bytes") and live[k] or stats[k]
    if v then print(("%-16s %12d"):format(k, v)) end
  end
  print(("%-16s %12s"):format("clock", stats.clock or "?"))
  return stats.file or file, port
end

--- The TCP state changes in a trace.dat, through `trace-cmd report`.
local function state_changes(file)
  local p = assert(io.popen("trace-cmd report -i '" .. file:gsub("'", "'\\''") ..
                            "' 2>/dev/null"))
  local rows = {}
  for line in p:lines() do
    local sport, dport, saddr, daddr, old, new =
      line:match("inet_sock_set_state:.-sport=(%d+) dport=(%d+) saddr=(%S+) daddr=(%S+)" ..
                 ".-oldstate=(%S+) newstate=(%S+)")
    if sport then
      rows[#rows + 1] = {saddr = saddr, sport = sport, daddr = daddr, dport = dport,
                         old = old, new = new}
    end
  end
  p:close()
  return rows
end

local file = arg[1]
local port
if not file then file, port = capture() end
local rows = state_changes(file)
print()
print(("TCP state changes in %s%s"):format(file, port and (" (listener port " .. port .. ")") or ""))
print(("%-22s %-22s %-16s %-16s"):format("source", "destination", "from", "to"))
for _, r in ipairs(rows) do
  print(("%-22s %-22s %-16s %-16s"):format(r.saddr .. ":" .. r.sport, r.daddr .. ":" .. r.dport,
                                          r.old, r.new))
end
print(("%d state changes"):format(#rows))
