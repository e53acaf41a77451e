-- Real-time sessions on Linux: s:events{} reads the instance's ring live, with
-- the same event tables as Trace:events.  #linux
local H = require "helpers"
local kl = require "kernellogger"
local core = kl._core

-- inet_sock_set_state events of a loopback connection to `port`, by state.
local function states(list, port)
  local seen = {}
  for _, ev in ipairs(list) do
    if ev.name == "inet_sock_set_state" and (ev.sport == port or ev.dport == port) then
      seen[ev.newstate] = (seen[ev.newstate] or 0) + 1
    end
  end
  return seen
end

local TCP_ESTABLISHED, TCP_SYN_SENT, TCP_CLOSE = 1, 2, 7

-- Everything the iterator yields until it ends; other processes' traffic is
-- traced too, so at most 5 seconds of it.
local function collect(it)
  local list, t0 = {}, nil
  for ev in it do
    list[#list + 1] = ev
    t0 = t0 or core._monotime() -- (the first call opens the readers: not counted)
    if core._monotime() - t0 > 5 then break end
  end
  return list
end

describe("a real-time Linux session #linux", function()
  local F = H.fixture()
  local name, dir
  before_each(function()
    name = F.name("rt")
    dir = F.tmpdir()
  end)

  it("starts the instance with overwrite off and records mode realtime", function()
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    assert.is_true(H.instance_exists(name))
    assert.equal("0", H.read_instance(name, "options/overwrite"))
    assert.equal("0", H.read_instance(name, "buffer_percent"))
    assert.equal("1", H.read_instance(name, "events/sock/inet_sock_set_state/enable"))
    local q = s:query()
    assert.equal("realtime", q.mode)
    assert.is_nil(q.file)
    assert(s:stop())
    assert.is_false(H.instance_exists(name))
    assert.is_false(H.state_exists(name))
  end)

  it("yields live loopback connections with their ports and states", function()
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    -- (self: the connections are this process's own)
    local it = s:events{timeout = 0.3, self = true}
    local port = H.tcp_connections(3)
    local list = collect(it)
    local seen = states(list, port)
    -- each connection: the client's SYN_SENT, both sockets ESTABLISHED, both closed
    assert.equal(3, seen[TCP_SYN_SENT], ("SYN_SENT, %d events"):format(#list))
    assert.is_true((seen[TCP_ESTABLISHED] or 0) >= 6, "ESTABLISHED " .. tostring(seen[TCP_ESTABLISHED]))
    assert.is_true((seen[TCP_CLOSE] or 0) >= 6, "CLOSE " .. tostring(seen[TCP_CLOSE]))
    local me = core._getpid()
    local mine, last = 0, 0
    for _, ev in ipairs(list) do
      assert.equal("integer", math.type(ev.time))
      assert.is_true(ev.time >= last, "events in time order")
      last = ev.time
      if ev.name == "inet_sock_set_state" and ev.pid == me then
        mine = mine + 1
        assert.equal("sock", ev.system)
        assert.equal("127.0.0.1", ev.saddr)
        -- the listening socket has no peer
        assert.is_true(ev.daddr == "127.0.0.1" or ev.daddr == "0.0.0.0", ev.daddr)
        assert.is_string(ev.comm)
      end
    end
    assert.is_true(mine > 0)
    assert(s:stop())
  end)

  it("gives the same fields as Trace:events for the same event type", function()
    local file = dir .. "/same.dat"
    local f = assert(kl.start{name = name .. "f", flags = {"tcpip"}, file = file})
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    local port = H.tcp_connections(1)
    local live = collect(s:events{names = "inet_sock_set_state", timeout = 0.3, self = true})
    assert(s:stop())
    assert(f:stop())
    H.cleanup(name .. "f")
    local t = assert(kl.open(file))
    local from_file = {}
    for ev in t:events{names = "inet_sock_set_state"} do from_file[#from_file + 1] = ev end
    t:close()
    local function keyset(ev)
      local ks = {}
      for k, v in pairs(ev) do ks[k] = type(v) end
      return ks
    end
    local function by_state(list)
      local r = {}
      for _, ev in ipairs(list) do
        if ev.sport == port or ev.dport == port then r[#r + 1] = ev end
      end
      return r
    end
    local a, b = by_state(live), by_state(from_file)
    assert.is_true(#a >= 5, "live events " .. #a)
    assert.equal(#b, #a)
    for i = 1, #a do
      assert.same(keyset(b[i]), keyset(a[i]))
      for _, k in ipairs{"name", "system", "cpu", "pid", "comm", "oldstate", "newstate", "sport",
                         "dport", "saddr", "daddr", "saddr_v6", "daddr_v6", "family",
                         "protocol", "skaddr"} do
        assert.equal(b[i][k], a[i][k], k)
      end
    end
  end)

  it("filters by name, cpu and pid in C", function()
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip", "process"}})
    local me = core._getpid()
    local it = s:events{names = {"sock:inet_sock_set_state"}, pid = me, timeout = 0.3, self = true}
    local port = H.tcp_connections(2)
    os.execute("true") -- a process event of another pid, filtered out
    local list = collect(it)
    assert.is_true(#list >= 2 * 5)
    for _, ev in ipairs(list) do
      assert.equal("inet_sock_set_state", ev.name)
      assert.equal(core._getpid(), ev.pid)
    end
    assert.equal(2, states(list, port)[TCP_SYN_SENT])
    -- one CPU only
    local cpu = list[1].cpu
    it = s:events{cpu = cpu, pid = me, timeout = 0.3, self = true}
    H.tcp_connections(2)
    for ev in it do assert.equal(cpu, ev.cpu) end
    it = s:events{cpu = cpu + 1, pid = me, timeout = 0.3, self = true}
    H.tcp_connections(2)
    for ev in it do assert.equal(cpu + 1, ev.cpu) end
    -- a name that never matches: the timeout ends it
    it = s:events{names = "no_such_event", timeout = 0.2}
    H.tcp_connections(1)
    assert.is_nil(it())
    assert(s:stop())
  end)

  it("marks events the full ring dropped with lost_events", function()
    -- the smallest ring (one page per CPU), and nobody reading while it fills
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}, buffer_kb = 4})
    H.tcp_connections(60)
    local q = s:query()
    assert.is_true(q.dropped > 0, "dropped " .. q.dropped)
    local lost, events = 0, 0
    local t0
    for ev in s:events{timeout = 0.2, self = true} do -- (the next connections are ours)
      t0 = t0 or core._monotime()
      if core._monotime() - t0 > 5 then break end -- other processes' traffic never stops
      if ev.name == "lost_events" then
        lost = lost + ev.lost
        assert.is_nil(ev.system)
        assert.equal("integer", math.type(ev.cpu))
      else
        events = events + 1
      end
    end
    assert.is_true(events > 0)
    -- (more may be dropped while it reads: other processes' traffic is traced too)
    assert.is_true(lost >= q.dropped, ("lost %d, dropped %d"):format(lost, q.dropped))
    -- filtered by name, markers go unless asked for
    H.tcp_connections(60)
    local only = collect(s:events{names = {"lost_events"}, timeout = 0.5, self = true})
    assert.is_true(#only > 0)
    for _, ev in ipairs(only) do assert.equal("lost_events", ev.name) end
    assert(s:stop())
  end)

  it("ends the iterator after timeout seconds without an event", function()
    -- other processes' traffic is traced too: only ours counts here
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    local it = s:events{pid = core._getpid(), timeout = 0.25, self = true}
    H.tcp_connections(1)
    assert.is_table(it()) -- the first call opens the readers (reads every event format)
    while it() do end     -- the rest of the connection, then 0.25 s of quiet: nil
    it = s:events{pid = core._getpid(), timeout = 0.25, self = true}
    local t0 = core._monotime()
    assert.is_nil(it())
    local waited = core._monotime() - t0
    assert.is_true(waited >= 0.25 and waited < 2, "waited " .. waited)
    assert.is_nil(it()) -- stays ended
    assert(s:stop())
  end)

  it("ends when the session is stopped, by this handle or by name from elsewhere", function()
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    local it = s:events{timeout = 5}
    H.tcp_connections(1)
    assert.is_table(it())           -- the readers are open now
    assert(s:stop())                -- closes them before rmdir
    assert.is_false(H.instance_exists(name))
    assert.is_nil(it())
    assert.has_error(function() s:events{} end, "attempt to use a stopped session")

    -- stopped by another process while this one waits without a timeout
    s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    it = s:events{}
    H.tcp_connections(1)
    assert.is_table(it())
    local t0 = core._monotime()
    local child = assert(io.popen(H.lua_cmd(("local core = require 'kernellogger.core'; " ..
      "core._sleep(0.3); local ok, msg = core.stop(%q); print(ok and 'stopped' or msg)"):format(name))))
    for _ in it do end               -- drains, then ends when tracing goes off
    local out = child:read("a")
    child:close()
    assert.matches("stopped", out)
    assert.is_true(core._monotime() - t0 < 3)
    assert.is_false(H.instance_exists(name))
  end)

  it("a newer events() invalidates the older iterator; bad options raise", function()
    local s = assert(kl.start{name = name, realtime = true, flags = {"tcpip"}})
    local old = s:events{timeout = 0.1}
    local new = s:events{names = "no_such_event", timeout = 0.1}
    assert.has_error(old, "events iterator invalidated: a newer events() started on this session")
    assert.is_nil(new())
    assert.has_error(function() s:events{timeout = -1} end)
    assert.has_error(function() s:events{from = 1} end)
    assert(s:stop())
  end)

  it("refuses events() on a session that is not real-time, and update{realtime}", function()
    local s = assert(kl.start{name = name, flags = {"tcpip"}})
    local ok, msg = pcall(function() return s:events{timeout = 0.1}() end)
    assert.is_false(ok)
    assert.matches("not a real%-time session", msg)
    assert.matches("%[invalid%]", msg)
    local r, _, code = s:update{realtime = true}
    assert.is_nil(r)
    assert.equal("invalid", code)
    assert(s:stop())
  end)
end)
