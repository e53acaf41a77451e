--- TCP connections from a capture: one record per socket with its state
-- changes, plus the resets and retransmits.
--
-- The analysis behind `examples/tcp_connections.lua` and the TCP table of the
-- HTML report. Feed it events one at a time (it keeps no reference to them):
--
--     local tcp = require "kernellogger.tcp"
--     local acc = tcp.new()
--     for ev in trace:events{names = tcp.NAMES} do acc:add(ev) end
--     local r = acc:result()   -- r.socks, r.resets, r.retrans, r.lost, r.changes
--
-- @module kernellogger.tcp
local M = {}

--- The event names the analysis reads, for `Trace:events{names = ...}`.
M.NAMES = {"sock:inet_sock_set_state", "tcp", "lost_events"}

-- include/net/tcp_states.h
local STATE = {"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
               "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

--- The name of a TCP state number (`1` → `"ESTABLISHED"`).
-- @int n
-- @treturn string
function M.state(n) return STATE[n] or tostring(n) end

--- `addr:port`, `[v6addr]:port`, or the address alone when there is no port.
-- @tparam string|nil addr
-- @tparam int|nil port
-- @treturn string
function M.endpoint(addr, port)
  port = math.tointeger(port)
  if type(addr) ~= "string" then addr = nil end
  if not port then return addr or "?" end  -- tcp_send_reset has no port fields here
  if addr and addr:find(":", 1, true) then return ("[%s]:%d"):format(addr, port) end
  return ("%s:%d"):format(addr or "?", port)
end

-- The addresses of an event: IPv4 ones unless the socket is IPv6.
local function addrs(ev)
  if ev.family == 10 then return ev.saddr_v6, ev.daddr_v6 end
  return ev.saddr, ev.daddr
end

local Acc = {}
Acc.__index = Acc
Acc.__name = "kernellogger.tcp"

--- A new accumulator.
-- @treturn table with `add(ev)` and `result()`
function M.new()
  return setmetatable({socks = {}, order = {}, resets = {}, retrans = {}, lost = 0,
                       changes = 0}, Acc)
end

function Acc:__tostring()
  return ("kernellogger.tcp (%d sockets, %d state changes)"):format(#self.order, self.changes)
end

local function set_state(self, ev)
  if ev.skaddr == nil then return end  -- a damaged record: no socket to follow
  self.changes = self.changes + 1
  local s = self.socks[ev.skaddr]
  if not s or (s.closed and ev.newstate ~= 7) then
    s = {states = {M.state(ev.oldstate)}, first = ev.time, comm = ev.comm, pid = ev.pid,
         retrans = 0, resets = 0}
    self.socks[ev.skaddr] = s
    self.order[#self.order + 1] = s
  end
  s.states[#s.states + 1] = M.state(ev.newstate)
  s.last = ev.time
  if ev.newstate == 2 then s.client = true; s.comm, s.pid = ev.comm, ev.pid end
  if ev.newstate == 3 or (ev.oldstate == 3 and ev.newstate == 1) then s.server = true end
  if ev.sport ~= 0 or not s.sport then
    local sa, da = addrs(ev)
    s.saddr, s.sport, s.daddr, s.dport = sa, ev.sport, da, ev.dport
  end
  if ev.newstate == 7 then s.closed = true end
end

--- Take one event (others than the ones in `NAMES` are ignored).
-- @tparam table ev an event table from `Trace:events`
function Acc:add(ev)
  local name = ev.name
  self.first = self.first or ev.time
  if name == "lost_events" then
    self.lost = self.lost + math.max(math.tointeger(ev.lost) or 0, 0)
  elseif name == "inet_sock_set_state" then
    if ev.protocol == 6 then set_state(self, ev) end
  elseif name == "tcp_retransmit_skb" or name == "tcp_send_reset" or
         name == "tcp_receive_reset" then
    local sa, da = addrs(ev)
    local row = {time = ev.time, what = name:gsub("^tcp_", ""), comm = ev.comm,
                 pid = ev.pid, from = M.endpoint(sa, ev.sport), to = M.endpoint(da, ev.dport)}
    local s = ev.skaddr and self.socks[ev.skaddr]
    if name == "tcp_retransmit_skb" then
      self.retrans[#self.retrans + 1] = row
      if s then s.retrans = s.retrans + 1 end
    else
      self.resets[#self.resets + 1] = row
      if s then s.resets = s.resets + 1 end
    end
  end
end

--- What was seen so far.
-- @treturn table `socks` (in order of appearance: `first`, `last` (ns), `comm`,
--   `pid`, `saddr`, `sport`, `daddr`, `dport`, `states` (names), `client`
--   (connected out), `server` (accepted), `retrans`, `resets`), `resets` and
--   `retrans` (lists of `time`, `what`, `comm`, `pid`, `from`, `to`), `lost`
--   (events lost by the ring), `changes` (TCP state changes), `first` (the
--   first event's time, or 0)
function Acc:result()
  return {socks = self.order, resets = self.resets, retrans = self.retrans, lost = self.lost,
          changes = self.changes, first = self.first or 0}
end

--- Connection ends: the sockets that connected out or were accepted.
-- @tparam table r a `result()`
-- @treturn {table,...}
function M.connections(r)
  local list = {}
  for _, s in ipairs(r.socks) do
    if s.client or s.server then list[#list + 1] = s end
  end
  return list
end

return M
