-- start's options: every wrong type, range, unknown key and conflict raises an
-- error naming the field, before anything is created.
local H = require "helpers"
local kl = require "kernellogger"

describe("start options", function()
  local F = H.fixture()
  local name
  before_each(function() name = F.name("opt") end)

  local function raises(opts, pattern)
    opts.name = opts.name or name
    local ok, err = pcall(kl.start, opts)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, err)
    assert.matches("bad argument #1 to '[%w.]*start'", err)
    if H.linux then assert.is_false(H.instance_exists(opts.name), "instance left behind") end
  end

  it("rejects unknown keys, naming them and the valid ones", function()
    raises({flag = "tcpip"}, "unknown option 'flag' %(valid options: name, flags,")
    raises({circular = 5}, "unknown option 'circular'")
  end)

  it("rejects wrong types, naming the field", function()
    raises({file = 42}, "file: must be a string, got a number")
    raises({circular_mb = "5"}, "circular_mb: must be an integer from 1 to 65536, got a string")
    raises({strict = 1}, "strict: must be a boolean, got a number")
    raises({overwrite = "yes"}, "overwrite: must be a boolean, got a string")
    raises({flags = true}, "flags: must be a list, a comma string or an integer mask, got a boolean")
    raises({flags = {"tcpip", 7}}, "flags%[2%]: must be a string, got a number")
    raises({flags = {tcpip = true}}, "flags: must be a list of names")
    raises({clock = 1}, "clock: must be a string")
    raises({name = {}}, "name: must be a string, got a table")
  end)

  it("rejects out-of-range values", function()
    raises({circular_mb = 0}, "circular_mb: must be an integer from 1 to 65536, got 0")
    raises({circular_mb = 1.5}, "circular_mb: must be an integer from 1 to 65536, got 1.5")
    raises({circular_mb = 70000}, "circular_mb: must be an integer from 1 to 65536, got 70000")
    raises({file = "x.dat", max_mb = -1}, "max_mb: must be an integer from 1")
    raises({buffer_kb = 0}, "buffer_kb: must be an integer from 1 to 16384")
    raises({flush_timer = -5}, "flush_timer: must be an integer from 0 to 86400")
    raises({file_mode = 8 ^ 4}, "file_mode: must be an integer from 0 to 511")
    raises({clock = "sundial"}, "clock: 'sundial' is not one of default, qpc, system")
    raises({flags = 0x100000000}, "flags: an integer mask must be from 0 to 0xffffffff")
    raises({flags = 0x08000000}, "flags: bit 0x08000000 is not a kernel flag")
  end)

  it("rejects conflicting modes", function()
    raises({file = "x.dat", circular_mb = 5, max_mb = 5}, "circular_mb: conflicts with max_mb")
    raises({realtime = true, circular_mb = 5}, "realtime: conflicts with circular_mb")
    raises({max_mb = 5}, "max_mb: needs a file")
    raises({min_buffers = 8, max_buffers = 4}, "min_buffers: must not exceed max_buffers")
  end)

  it("rejects unknown flag names and malformed tracepoints", function()
    raises({flags = {"tcpip", "warp_drive"}}, "flags: unknown flag 'warp_drive'")
    raises({flags = "tcpip,,process"}, "flags: empty name in the comma list")
    raises({flags = {"sched:"}}, "flags: 'sched:' is not a 'system:event' tracepoint")
    raises({flags = {"../x:y"}}, "is not a 'system:event' tracepoint")
    raises({flags = {"a:b:c"}}, "is not a 'system:event' tracepoint")
  end)

  it("validates session names: no '/', no '..', no control characters, bounded", function()
    raises({name = "a/b"}, "name: session name may not contain '/'")
    raises({name = "../etc"}, "name: session name may not contain '..'")
    raises({name = ".."}, "name: session name may not contain '..'")
    raises({name = "a\\b"}, "name: session name may not contain '\\'")
    raises({name = "a\nb"}, "name: must not contain control characters")
    raises({name = ("x"):rep(65)}, "name: session name is 65 bytes long; the limit is 64")
    raises({name = ""}, "name: must not be empty")
  end)

  it("accepts a list, a comma string and an integer mask alike #linux", function()
    for _, flags in ipairs{{"tcpip", "process"}, "tcpip, process", 0x10001,
                            {"net", "proc", "network_tcpip"}} do
      local s = assert(kl.start{name = name, flags = flags})
      local q = assert(s:query())
      table.sort(q.flags)
      assert.same({"process", "tcpip"}, q.flags)
      assert(s:stop())
    end
  end)

  it("accepts raw system:event tracepoints #linux", function()
    local s = assert(kl.start{name = name, flags = {"sched:sched_switch", "tcpip"}})
    assert.equal("1", H.read_instance(name, "events/sched/sched_switch/enable"))
    assert.equal("1", H.read_instance(name, "events/sock/inet_sock_set_state/enable"))
    assert(s:stop())
  end)

  it("fails with not_supported and the flag's name, or skips it with strict = false #linux", function()
    local s, msg, code = kl.start{name = name, flags = {"tcpip", "registry"}}
    assert.is_nil(s)
    assert.equal("not_supported", code)
    assert.matches("flag 'registry' is not supported on linux", msg)
    assert.matches(name, msg, 1, true)
    assert.is_false(H.instance_exists(name))

    s, msg, code = kl.start{name = name, flags = {"sched:no_such_event"}}
    assert.is_nil(s)
    assert.equal("not_supported", code)
    assert.matches("tracepoint 'sched:no_such_event' does not exist", msg)

    s = assert(kl.start{name = name, flags = {"tcpip", "registry", "alpc", "sched:nope"},
                        strict = false})
    assert.same({"registry", "alpc", "sched:nope"}, s.skipped)
    assert.same({"tcpip"}, s:query().flags)
    assert(s:stop())
  end)

  it("gives a clock that has no ftrace equivalent not_supported, leaving nothing #linux", function()
    local s, msg, code = kl.start{name = name, flags = "tcpip", clock = "system"}
    assert.is_nil(s)
    assert.equal("not_supported", code)
    assert.matches("clock 'system' has no ftrace equivalent", msg)
    assert.is_false(H.instance_exists(name))
    assert.is_nil(H.read(H.state_dir .. "/" .. name .. ".state"))
  end)
end)
