-- Capture files on Linux: what the trace.dat writer puts in them, checked
-- with trace-cmd report, trace-cmd dump --summary and libtracecmd's reader.
local kl = require "kernellogger"

if kl.platform ~= "linux" then
  describe("trace.dat capture files #linux", function()
    pending("Linux only")
  end)
  return
end

local socket = require "socket"
local H = require "helpers"

local TP = "sock:inet_sock_set_state"

-- Make n loopback TCP connections to a listener of our own; returns the
-- listener's port and the list of client ports.
local function connections(n)
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  srv:settimeout(5)
  local clients = {}
  for i = 1, n do
    local c = assert(socket.tcp())
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    local a = assert(srv:accept())
    local _, cport = c:getsockname()
    clients[i] = tonumber(cport)
    c:close() -- the client closes first: FIN_WAIT on its side, CLOSE_WAIT on ours
    a:close()
  end
  srv:close()
  return tonumber(port), clients
end

-- inet_sock_set_state events of `trace-cmd report` text that touch `port`.
local function transitions(text, port)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find("inet_sock_set_state:", 1, true) then
      local sport = tonumber(line:match("sport=(%d+)"))
      local dport = tonumber(line:match("dport=(%d+)"))
      local old, new = line:match("oldstate=(%S+) newstate=(%S+)")
      if sport == port or dport == port then
        out[#out + 1] = {sport = sport, dport = dport, old = old, new = new}
      end
    end
  end
  return out
end

describe("trace.dat capture files #linux", function()
  local F = H.fixture()
  local name, dir

  before_each(function()
    name = F.name("tdat")
    dir = F.tmpdir()
  end)

  it("holds exactly the loopback TCP connections the spec made", function()
    local file = dir .. "/tcp.dat"
    local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = 2})
    local n = 5
    local port, clients = connections(n)
    assert(s:stop())
    assert.is_false(H.instance_exists(name))

    local text, r = H.check_file(file)
    assert.is_true(r.events > 0)
    local seen = transitions(text, port)

    -- The listener: opened once, closed once.
    local listen, unlisten = 0, 0
    for _, t in ipairs(seen) do
      if t.sport == port and t.old == "TCP_CLOSE" and t.new == "TCP_LISTEN" then listen = listen + 1 end
      if t.sport == port and t.old == "TCP_LISTEN" and t.new == "TCP_CLOSE" then unlisten = unlisten + 1 end
    end
    assert.equal(1, listen)
    assert.equal(1, unlisten)

    -- Each client port: the client's and the server's side of a full
    -- handshake and close, and no other client port.
    local expected = {}
    for _, cp in ipairs(clients) do expected[cp] = true end
    local by_port = {}
    for _, t in ipairs(seen) do
      local cp = t.sport == port and t.dport or t.sport
      if cp ~= 0 and cp ~= port then
        assert.is_true(expected[cp] ~= nil, "unexpected connection from port " .. cp)
        by_port[cp] = by_port[cp] or {}
        by_port[cp][#by_port[cp] + 1] = (t.sport == port and "srv " or "cli ") .. t.old .. ">" .. t.new
      end
    end
    for _, cp in ipairs(clients) do
      local got = table.concat(by_port[cp] or {}, ",")
      for _, want in ipairs{
        "cli TCP_SYN_SENT>TCP_ESTABLISHED", "srv TCP_LISTEN>TCP_SYN_RECV",
        "srv TCP_SYN_RECV>TCP_ESTABLISHED", "cli TCP_ESTABLISHED>TCP_FIN_WAIT1",
        "srv TCP_ESTABLISHED>TCP_CLOSE_WAIT", "srv TCP_LAST_ACK>TCP_CLOSE",
      } do
        assert.is_truthy(got:find(want, 1, true), ("port %d lacks %s in %s"):format(cp, want, got))
      end
    end
    local count = 0
    for _ in pairs(by_port) do count = count + 1 end
    assert.equal(n, count)
    -- The SYN_SENT step happens before the client port is known (sport=0).
    local syn = 0
    for _, t in ipairs(seen) do
      if t.dport == port and t.old == "TCP_CLOSE" and t.new == "TCP_SYN_SENT" then syn = syn + 1 end
    end
    assert.equal(n, syn)
  end)

  it("holds the formats of the enabled events only, plus ftrace's", function()
    local file = dir .. "/formats.dat"
    local s = assert(kl.start{name = name, flags = {TP, "sched:sched_process_exec"}, file = file,
                              circular_mb = 1})
    H.markers(name, 1, 10, 10)
    assert(s:stop())
    local sum = H.summary(file)
    assert.matches("%[Events format, 2 systems%]", sum)
    local n = tonumber(sum:match("%[Ftrace format, (%d+) events%]"))
    assert.is_true(n and n > 0)
    assert.matches("%[Kallsyms, 0 bytes%]", sum) -- off by default
    assert.matches("6%s+%[Version%]", sum)
    -- the trace clock and the per-CPU stats are there
    assert.matches("%[local%]", sum)
    local r = H.run("trace-cmd report --stat -i " .. H.q(file))
    local stat = r.out
    assert.is_true(r.ok)
    assert.matches("CPU: 0\nentries:", stat)
    -- taken after the ring was read, as trace-cmd does: nothing left, all read
    local read = 0
    for e in stat:gmatch("\nentries: (%d+)") do assert.equal("0", e) end
    for k in stat:gmatch("\nread events: (%d+)") do read = read + tonumber(k) end
    assert.is_true(read >= 10)
  end)

  it("keeps the newest events within circular_mb plus headers", function()
    local file = dir .. "/ring.dat"
    local mb = 1
    local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = mb})
    -- about 4 times circular_mb of trace_marker lines
    local total = 4 * mb * 1024 * 1024 // 600
    H.markers(name, 1, total, 500)
    assert(s:stop())
    local _, r = H.check_file(file)
    assert.equal(total, r.last_seq)          -- the newest line is the last one written
    assert.is_true(r.markers < total)        -- older ones were overwritten
    assert.is_true(r.markers > 0)
    local size = H.size(file)
    local headers = 256 * 1024               -- formats, printk formats, cmdlines, per-CPU slack
    assert.is_true(size <= mb * 1024 * 1024 + headers,
                   ("file is %d bytes for circular_mb = %d"):format(size, mb))
  end)

  it("writes kallsyms only when asked, as /proc/kallsyms reads", function()
    local file = dir .. "/ksyms.dat"
    local s = assert(kl.start{name = name, flags = {TP}, file = file, circular_mb = 1,
                              kallsyms = true})
    local restrict = H.read("/proc/sys/kernel/kptr_restrict")
    assert(s:stop())
    assert.equal(restrict, H.read("/proc/sys/kernel/kptr_restrict"))
    local sum = H.summary(file)
    local n = tonumber(sum:match("%[Kallsyms, (%d+) bytes%]"))
    assert.is_true(n and n > 1000)
  end)
end)
