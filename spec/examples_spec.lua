-- The recipes in examples/ run as documented: on a given file, and with no
-- file on a fresh capture of their own (Linux, root).
local H = require "helpers"

local TESTDATA = "spec/fixtures/tracedat/"

--- Run an example; returns ok, output. KL_SESSION names its session.
local function example(name, file, session)
  local env = session and ("KL_SESSION=" .. H.q(session) .. " ") or ""
  local p = assert(io.popen(("%stimeout 120 lua5.4 examples/%s.lua %s 2>&1"):format(
    env, name, file and H.q(file) or "")))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

--- The capture file an example made, from its output, removed.
local function forget_capture(out)
  local f = out:match("in (/tmp/[%w_.]+%.dat)")
  if f then os.remove(f) end
end

describe("examples on trace.dat #linux", function()
  it("cswitch.lua reads a given file: top pairs and their CPUs", function()
    local ok, out = example("cswitch", TESTDATA .. "trappy_raw_trace.dat")
    assert.is_true(ok, out)
    assert.matches("Context switches in .-: 755 in", out)
    assert.matches("trace%-cmd/4729%s+<idle>%s+364%s+48%.2%%%s+cpu1 %(364%)", out)
  end)

  it("tcp_connections.lua reads a file without TCP events", function()
    local ok, out = example("tcp_connections", TESTDATA .. "trappy_trace.dat")
    assert.is_true(ok, out)
    assert.matches("0 connection ends", out)
    assert.matches("0 resets, 0 retransmits", out)
  end)

  it("a recipe given a missing file says so and fails", function()
    local ok, out = example("processes", "/nonexistent/x.dat")
    assert.is_falsy(ok)
    assert.matches("processes: open trace /nonexistent/x%.dat: .*%[not_found%]", out)
  end)

  describe("on a fresh capture #linux", function()
    local name
    local F = H.fixture()
    before_each(function() name = F.name("ex") end)

    it("tcp_connections.lua: who connected to whom, states, the reset", function()
      local ok, out = example("tcp_connections", nil, name)
      forget_capture(out)
      assert.is_true(ok, out)
      local port = assert(out:match("listener port (%d+)"), out)
      local outgoing, accepted = 0, 0
      for line in out:gmatch("[^\n]+") do
        if line:match("127%.0%.0%.1:%d+%s+%->%s+127%.0%.0%.1:" .. port) and
           line:match("SYN_SENT>ESTABLISHED") then
          outgoing = outgoing + 1
        end
        if line:match("127%.0%.0%.1:" .. port .. "%s+<%-") then accepted = accepted + 1 end
      end
      assert.equal(5, outgoing, out)
      assert.equal(5, accepted, out)
      assert.matches("receive_reset", out)
      assert.is_false(H.instance_exists(name))
    end)

    it("processes.lua: the commands it ran, with their paths and lifetimes", function()
      local ok, out = example("processes", nil, name)
      forget_capture(out)
      assert.is_true(ok, out)
      assert.matches("ls%s+[%d.]+ ms%s+/usr/bin/ls", out)
      assert.matches("uname%s+[%d.]+ ms%s+/usr/bin/uname", out)
      local started = tonumber(out:match("(%d+) started"))
      assert.is_true(started >= 6, out)
    end)

    it("cswitch.lua: context switches of its workload", function()
      local ok, out = example("cswitch", nil, name)
      forget_capture(out)
      assert.is_true(ok, out)
      local n = tonumber(out:match("Context switches in %S+: (%d+) in"))
      assert.is_true(n and n > 10, out)
      assert.matches("per CPU: cpu%d", out)
    end)
  end)
end)
