-- What the errors of file sessions say on Linux: the operation they come
-- from, the field that was wrong, the code that fits.
local kl = require "kernellogger"

if kl.platform ~= "linux" then
  describe("stream messages #linux", function()
    pending("Linux only")
  end)
  return
end

local H = require "helpers"

describe("stream messages #linux", function()
  local name, dir

  before_each(function()
    name = H.name("msg")
    dir = H.tmpdir()
  end)

  after_each(function()
    H.cleanup(name)
    H.rmtree(dir)
  end)

  it("update with an unknown tracepoint speaks of update, not start", function()
    local s = assert(kl.start{name = name, flags = {"tcpip"}})
    local r, msg, code = s:update{flags = {"sched:nope"}}
    assert.is_nil(r)
    assert.equal("not_supported", code)
    assert.equal(("update %s: tracepoint 'sched:nope' does not exist on this kernel"):format(name),
                 msg)
    assert(s:stop())
  end)

  it("update of circular_mb on a streaming session says why", function()
    local s = assert(kl.start{name = name, flags = {"tcpip"}, file = dir .. "/c.dat",
                              circular_mb = 4})
    local r, msg, code = s:update{circular_mb = 8}
    assert.is_nil(r)
    assert.equal("invalid", code)
    assert.truthy(msg:find("circular_mb bounds the file of a streaming session", 1, true), msg)
    assert(s:stop{file = false})
  end)

  it("a file in /proc is a bad path", function()
    local r, msg, code = kl.start{name = name, flags = {"tcpip"}, file = "/proc/foo.dat"}
    assert.is_nil(r)
    assert.equal("bad_path", code, msg)
    assert.is_false(H.instance_exists(name))
  end)

  it("a detached kernellogger session holding the name is called that", function()
    local d = assert(kl.start{name = name, flags = {"tcpip"}, detached = true})
    local r, msg = kl.start{name = name, flags = {"tcpip"}, on_conflict = "fail"}
    assert.is_nil(r)
    assert.truthy(msg:find("(a detached kernellogger session)", 1, true), msg)
    assert(d:stop())
  end)
end)

describe("absurd durations #linux", function()
  it("capture refuses seconds that are NaN, infinite or 1e300, naming the field", function()
    for _, v in ipairs{0 / 0, math.huge, 1e300} do
      local ok, e = pcall(kl.capture, {name = H.name("dur"), flags = {"tcpip"}, seconds = v})
      assert.is_false(ok)
      assert.truthy(tostring(e):find("field 'seconds'", 1, true), tostring(e))
    end
  end)

  it("start refuses an infinite or NaN conflict timeout, naming the field", function()
    for _, v in ipairs{0 / 0, math.huge} do
      local ok, e = pcall(kl.start, {name = H.name("dur"), flags = {"tcpip"},
                                     on_conflict = "wait", timeout = v})
      assert.is_false(ok)
      assert.truthy(tostring(e):find("field 'timeout'", 1, true), tostring(e))
    end
  end)

  it("`kernellogger capture -s 1e300` is refused naming the field", function()
    local r = H.run(H.cli_cmd("capture -s 1e300 -f tcpip -o /tmp/never.dat"))
    assert.is_false(r.ok)
    assert.truthy(r.err:find("seconds", 1, true), r.err)
    assert.is_nil(io.open("/tmp/never.dat", "r"))
  end)
end)
