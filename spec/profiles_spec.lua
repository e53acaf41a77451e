-- Profiles: names, composition, user profiles, listing, and real starts.
local H = require "helpers"

local kl = require "kernellogger"
local P = require "kernellogger.profiles"
local core = require "kernellogger.core"

local BUILTINS = {
  "TraceEvent.Default", "TraceEvent.ThreadTime", "TraceEvent.OS", "TraceEvent.Verbose",
  "xperf.Base", "xperf.Network", "xperf.Diag", "xperf.Latency", "xperf.FileIO",
  "WPR.GeneralProfile", "WPR.CPU", "WPR.DiskIO", "WPR.FileIO", "WPR.Network",
}

local function supported_set()
  local r = {}
  for _, f in ipairs(core.flags()) do r[f.name] = f.supported end
  return r
end

local function set(list)
  local r = {}
  for _, x in ipairs(list) do r[x] = true end
  return r
end

describe("profiles", function()
  it("knows every built-in by its qualified name, in any case", function()
    for _, n in ipairs(BUILTINS) do
      local p = P.get(n)
      assert.is_true(P.is_profile(p), n)
      assert.are.equal(p, P.get(n:upper()))
      assert.are.equal(p, P.get(n:lower()))
      assert.is_true(#p.description > 0, n)
      assert.is_true(#p.flags > 0, n)
    end
  end)

  it("resolves unambiguous bare names to their only owner", function()
    assert.are.equal(P.get "TraceEvent.ThreadTime", P.get "threadtime")
    assert.are.equal(P.get "xperf.Latency", P.get "LATENCY")
    assert.are.equal(P.get "WPR.CPU", P.get "cpu")
    assert.are.equal(P.get "TraceEvent.Default", P.get "Default")
  end)

  it("resolves the names xperf and WPR share (FileIO, Network) to WPR's profile", function()
    assert.are.equal(P.get "WPR.FileIO", P.get "fileio")
    assert.are.equal(P.get "WPR.Network", P.get "Network")
    assert.are_not.equal(P.get "xperf.FileIO", P.get "fileio")
    assert.are.equal("xperf", P.get("xperf.fileio").origin)
  end)

  it("raises an argument error listing the valid names for an unknown profile", function()
    local ok, err = pcall(P.get, "nosuchprofile")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'get' (unknown profile 'nosuchprofile'; valid profiles: ",
      err, 1, true)
    for _, n in ipairs(BUILTINS) do assert.matches(n, err, 1, true) end
  end)

  it("start{profile=<unknown>} raises, naming the valid profiles", function()
    local ok, err = pcall(kl.start, { name = H.name("prof"), profile = "bogus" })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'start' (profile: unknown profile 'bogus'; valid profiles: ",
      err, 1, true)
    assert.matches("WPR.GeneralProfile", err, 1, true)
    local ok2, err2 = pcall(kl.start, { name = H.name("prof"), profile = { flags = { "nosuch" } } })
    assert.is_false(ok2)
    assert.matches("bad argument #1 to 'start' (profile: profile 'custom' has an unknown flag 'nosuch')",
      err2, 1, true)
  end)

  it("every built-in resolves to supported flags only, and to at least one here", function()
    local sup = supported_set()
    for _, n in ipairs(BUILTINS) do
      local r = P.get(n):resolve()
      assert.is_true(#r.flags > 0, n .. " resolves to nothing on this platform")
      for _, f in ipairs(r.flags) do assert.is_true(sup[f], n .. ": " .. f) end
      for _, f in ipairs(r.unsupported) do assert.is_false(sup[f], n .. ": " .. f) end
      assert.are.same({}, r.unknown)
    end
  end)

  it("a + b is the union of the flags and the larger sizing", function()
    local a, b = P.get "cpu", P.get "network"
    local c = a + b
    local fa, fb, fc = set(a.flags), set(b.flags), set(c.flags)
    for f in pairs(fa) do assert.is_true(fc[f]) end
    for f in pairs(fb) do assert.is_true(fc[f]) end
    for f in pairs(fc) do assert.is_true(fa[f] or fb[f]) end
    assert.are.equal(math.max(a.options.circular_mb, b.options.circular_mb),
      c.options.circular_mb)
    assert.are.equal(math.max(a.options.buffer_kb, b.options.buffer_kb), c.options.buffer_kb)
    assert.are.equal("CPU+Network", c.name)
    -- names and plain tables work on either side
    assert.are.equal(c, "cpu" + b)
    assert.are.equal(c, a + "network")
    local d = a + { flags = { "tcpip" } }
    assert.is_true(set(d.flags).tcpip)
  end)

  it("overrides by call or :with leave the original alone", function()
    local p = P.get "network"
    local before = p.options.circular_mb
    local q = p { circular_mb = 3 }
    local r = p:with { circular_mb = 3 }
    assert.are.equal(3, q.options.circular_mb)
    assert.are.equal(q, r)
    assert.are.equal(before, p.options.circular_mb)
    assert.are.same(p.flags, q.flags)
    local only = p:with { flags = { "cswitch" } }
    assert.are.same({ "cswitch" }, only.flags)
    assert.has_error(function() return p:with { bogus = 1 } end)
    assert.has_error(function() return p:with { circular_mb = "big" } end)
    assert.has_error(function() return p:with { circular_mb = -1 } end)
  end)

  it("define registers a user profile, case-insensitively, and may not shadow a built-in",
  function()
    local name = "MyNet_" .. core._getpid()
    local p = P.define(name, { include = { "network" }, flags = { "cswitch" },
                               circular_mb = 7, description = "mine" })
    finally(function() P.undefine(name) end)
    assert.are.equal(p, P.get(name:lower()))
    assert.are.equal("user", p.origin)
    assert.are.equal(7, p.options.circular_mb)
    assert.is_true(set(p.flags).tcpip and set(p.flags).cswitch)
    local listed = false
    for _, e in ipairs(P.list()) do if e.name == name then listed = true end end
    assert.is_true(listed)
    assert.has_error(function() P.define("cpu", { flags = { "cswitch" } }) end)
    assert.has_error(function() P.define("Verbose", { flags = {} }) end)
    assert.has_error(function() P.define(name, { flags = "cswitch" }) end)
    assert.has_error(function() P.define(name, { flags = { 1 } }) end)
    assert.is_true(P.undefine(name))
    assert.has_error(function() P.get(name) end)
  end)

  it("lists every profile with a description and its resolved flags", function()
    local l = P.list()
    assert.is_true(#l >= #BUILTINS)
    local byq = {}
    for _, e in ipairs(l) do byq[e.origin .. "." .. e.name] = e end
    for _, n in ipairs(BUILTINS) do
      local e = byq[n]
      assert.is_table(e, n)
      assert.is_string(e.description)
      assert.is_table(e.resolved)
      assert.is_table(e.options)
      assert.is_number(e.options.circular_mb)
    end
    -- on Linux, these have no tracepoints
    if core.platform == "linux" or package.config:sub(1, 1) == "/" then
      local u = set(byq["TraceEvent.Default"].unsupported)
      assert.is_true(u.profile and u.process_counters and u.disk_file_io)
    end
  end)

  it("apply: explicit options win; flags beside a profile are added", function()
    local o = P.apply { profile = "network", circular_mb = 1, flags = { "cswitch" } }
    assert.are.equal(1, o.circular_mb)
    assert.is_nil(o.profile)
    local f = set(o.flags)
    assert.is_true(f.cswitch and f.tcpip and f.process)
    local comma = P.apply { profile = "network", flags = "cswitch, dispatcher" }
    assert.is_true(set(comma.flags).dispatcher and set(comma.flags).tcpip)
    assert.has_error(function() P.apply { profile = "network", flags = 0x10 } end)
    local seq = P.apply { profile = "network", file = "x.dat", max_mb = 5 }
    assert.is_nil(seq.circular_mb)
    assert.are.equal(5, seq.max_mb)
  end)
end)

describe("#linux profiles against the kernel", function()
  local F = H.fixture()
  local dir
  before_each(function() dir = F.dir end)

  it("start{profile='network'} enables exactly the flags the profile resolves to", function()
    local name = F.name("prof")
    local s, how = assert(kl.start { name = name, profile = "network" })
    assert.are.equal("fail", how.policy)
    local q = assert(s:query())
    assert.are.same(set(P.get("network"):resolve().flags), set(q.flags))
    assert.is_true(s:stop() ~= nil)
    assert.is_false(H.instance_exists(name))
  end)

  it("start with a plain-table profile and with a composition", function()
    local name = F.name("prof")
    local s = assert(kl.start { name = name, profile = { flags = { "cswitch" }, circular_mb = 2 } })
    assert.are.same({ "cswitch" }, s:query().flags)
    s:stop()
    local s2 = assert(kl.start { name = name, profile = P.get "network" + { flags = { "cswitch" } } })
    local f = set(s2:query().flags)
    assert.is_true(f.cswitch and f.tcpip)
    s2:stop()
  end)

  -- The claim behind the sizing: at ordinary load the built-ins lose nothing.
  -- Each records a small mixed workload (processes, files, a socket) for 1 s.
  for _, n in ipairs(BUILTINS) do
    it("built-in " .. n .. " loses no events under a small workload", function()
      local name = F.name("prof")
      local file = dir .. "/" .. n .. ".dat"
      local s = assert(kl.start { name = name, profile = n, file = file })
      os.execute("for i in 1 2 3 4 5 6 7 8; do ls /usr/bin >/dev/null; cat /etc/passwd >/dev/null; done; "
        .. "dd if=/dev/zero of=" .. H.q(dir .. "/load") .. " bs=64k count=32 conv=fsync 2>/dev/null; "
        .. "sleep 0.5")
      local q = assert(s:query())
      local st = assert(s:stop())
      assert.is_true(q.entries > 0, n .. " recorded nothing")
      assert.are.equal(0, q.overrun, n .. " overwrote events in its ring")
      assert.are.equal(0, st.events_lost, n .. " lost events")
      assert.is_true(st.bytes_written > 0)
      assert.is_false(H.instance_exists(name))
    end)
  end
end)
