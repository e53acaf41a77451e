-- luacheck: no max line length
-- One validator for every string that reaches the kernel or the file system
-- (session names, flags, raw tracepoints, paths) and one check for numbers
-- (finite, in range, integers where integers are meant): each bad input is
-- an argument error naming the field, raised before anything is created.
local H = require "helpers"
local kl = require "kernellogger"
local core = require "kernellogger.core"

local NAN, INF = 0 / 0, math.huge
local LONG_PATH = ("p"):rep(5000)

-- { what, function(name) that makes the call, pattern of the message }
local calls_without_a_session = {
  {"NUL in start's name", function() return kl.start{name = "victim\0zz"} end, "name: must not contain a NUL byte"},
  {"tab in start's name", function() return kl.start{name = "a\tb"} end, "name: must not contain control characters"},
  {"DEL in start's name", function() return kl.start{name = "a\127b"} end, "name: must not contain control characters"},
  {"C1 control in start's name", function() return kl.start{name = "a\u{85}b"} end, "name: must not contain control characters"},
  {"bidi override in start's name", function() return kl.start{name = "a\u{202E}b"} end, "name: must not contain invisible or bidirectional formatting characters"},
  {"line separator in start's name", function() return kl.start{name = "a\u{2028}b"} end, "name: must not contain control characters"},
  {"zero-width space in start's name", function() return kl.start{name = "a\u{200B}b"} end, "name: must not contain invisible or bidirectional formatting characters"},
  {"BOM in query's name", function() return kl.query("\u{FEFF}x") end, "name: must not contain invisible or bidirectional formatting characters"},
  {"soft hyphen in stop's name", function() return kl.stop("a\u{AD}b") end, "name: must not contain invisible or bidirectional formatting characters"},
  {"C1 control in file", function(n) return kl.start{name = n, file = "a\u{85}b.dat"} end, "file: must not contain control characters"},
  {"bidi override in file", function(n) return kl.start{name = n, file = "x\u{202E}tad.exe"} end, "file: must not contain invisible or bidirectional formatting characters"},
  {"zero-width joiner in stop's file", function(n) return kl.stop(n, "a\u{200D}.dat") end, "file: must not contain invisible or bidirectional formatting characters"},
  {"line separator in open's path", function() return kl.open("a\u{2028}b.dat") end, "path: must not contain control characters"},
  {"invalid UTF-8 in a flag", function(n) return kl.start{name = n, flags = {"tcp\255"}} end, "flags%[1%]: must be valid UTF%-8"},
  {"invalid UTF-8 in start's name", function() return kl.start{name = "a\255\254"} end, "name: must be valid UTF%-8"},
  {"overlong UTF-8 in stop's name", function() return kl.stop("a\xC0\xAF") end, "name: must be valid UTF%-8"},
  {"dot-name", function() return kl.start{name = ".hidden"} end, "name: session name may not start with '%.'"},
  {"long name", function(n) return kl.start{name = n .. ("x"):rep(64)} end, "name: session name is %d+ bytes long; the limit is 64"},
  {"NUL in a flag", function(n) return kl.start{name = n, flags = {"tcp\0ip"}} end, "flags%[1%]: must not contain a NUL byte"},
  {"NUL in a comma list", function(n) return kl.start{name = n, flags = "tcpip,pro\0cess"} end, "flags: must not contain a NUL byte"},
  {"control in a tracepoint", function(n) return kl.start{name = n, flags = {"sched:a\1b"}} end, "flags%[1%]: must not contain control characters"},
  {"long flag list", function(n) return kl.start{name = n, flags = ("x"):rep(9000)} end, "flags: must be at most 8192 bytes long"},
  {"NUL in file", function(n) return kl.start{name = n, file = "a\0b.dat"} end, "file: must not contain a NUL byte"},
  {"newline in file", function(n) return kl.start{name = n, file = "a\nb.dat"} end, "file: must not contain control characters"},
  {"long file", function(n) return kl.start{name = n, file = LONG_PATH} end, "file: must be at most 4095 bytes long"},
  {"NaN circular_mb", function(n) return kl.start{name = n, file = "x.dat", circular_mb = NAN} end, "circular_mb: must be an integer from 1 to 65536, got %-?nan"},
  {"inf circular_mb", function(n) return kl.start{name = n, file = "x.dat", circular_mb = INF} end, "circular_mb: must be an integer from 1 to 65536, got inf"},
  {"-inf buffer_kb", function(n) return kl.start{name = n, buffer_kb = -INF} end, "buffer_kb: must be an integer from 1 to 16384, got %-inf"},
  {"NaN max_buffers", function(n) return kl.start{name = n, max_buffers = NAN} end, "max_buffers: must be an integer"},
  {"NaN file_mode", function(n) return kl.start{name = n, file_mode = NAN} end, "file_mode: must be an integer from 0 to 511"},
  {"fractional flush_timer", function(n) return kl.start{name = n, flush_timer = 1.5} end, "flush_timer: must be an integer from 0 to 86400, got 1.5"},
  {"inf in a profile", function(n) return kl.start{name = n, profile = {flags = {"tcpip"}, circular_mb = INF}} end, "field 'circular_mb' must be a whole number"},
  {"NaN in a profile", function(n) return kl.start{name = n, profile = {flags = {"tcpip"}, buffer_kb = NAN}} end, "field 'buffer_kb' must be a whole number"},
  {"NaN min_buffers", function(n) return kl.start{name = n, min_buffers = NAN} end, "min_buffers: must be an integer"},
  {"NUL in stop's name", function() return kl.stop("victim\0zz") end, "name: must not contain a NUL byte"},
  {"dot-name in query", function() return kl.query(".x") end, "name: session name may not start with '%.'"},
  {"NUL in flush's name", function() return kl.flush("a\0b") end, "name: must not contain a NUL byte"},
  {"control in attach's name", function() return kl.attach("a\nb") end, "name: must not contain control characters"},
  {"'/' in stop's name", function() return kl.stop("a/b") end, "name: session name may not contain '/'"},
  {"NUL in stop's file", function(n) return kl.stop(n, "f\0.dat") end, "file: must not contain a NUL byte"},
  {"NUL in flush's {file}", function(n) return kl.flush(n, {file = "a\0b"}) end, "file: must not contain a NUL byte"},
  {"empty stop file", function(n) return kl.stop(n, "") end, "file: must not be empty"},
  {"NUL in open's path", function() return kl.open("a\0b.dat") end, "path: must not contain a NUL byte"},
  {"long open path", function() return kl.open(LONG_PATH) end, "path: must be at most 4095 bytes long"},
  {"NaN sleep", function() return core._sleep(NAN) end, "seconds: must be a number"},
  {"inf sleep", function() return core._sleep(INF) end, "seconds: must be a number"},
}

local function check(what, fn, pattern, name)
  local ok, err = pcall(fn, name)
  assert.is_false(ok, what .. ": expected an error matching " .. pattern)
  assert.matches("bad argument", err, 1, true)
  assert.matches(pattern, err)
  if H.linux then assert.is_false(H.instance_exists(name), what .. ": instance left behind") end
end

describe("the string and number validator", function()
  local F = H.fixture()

  it("rejects each bad input with an argument error naming the field", function()
    for _, c in ipairs(calls_without_a_session) do check(c[1], c[2], c[3], F.name("val")) end
  end)

  it("lets a path hold bytes that are not UTF-8 (a Linux file name is bytes)", function()
    local t, msg, code = kl.open("/nonexistent-dir/a\255\254.dat")
    assert.is_nil(t)
    assert.is_string(msg)
    assert.is_string(code) -- a kernel-side failure, not an argument error
  end)

  it("refuses realtime together with a file on Linux (ETW can do both)", function()
    local name = F.name("val")
    if H.linux then
      check("realtime + file", function() return kl.start{name = name, realtime = true, file = "x.dat"} end,
            "realtime: conflicts with file on linux", name)
    else
      pending("Linux only: an ETW session may log to a file and in real time")
    end
  end)
end)

describe("validation on a running session #linux", function()
  local F = H.fixture()
  local name, s

  before_each(function()
    name = F.name("valrun")
    s = assert(kl.start{name = name, flags = "tcpip", realtime = true})
  end)

  -- { what, function(s), pattern }
  local method_calls = {
    {"NUL in flush's file", function() return s:flush("a\0b") end, "file: must not contain a NUL byte"},
    {"control in stop's file", function() return s:stop("a\1b") end, "file: must not contain control characters"},
    {"NUL in update's file", function() return s:update{file = "a\0b"} end, "file: must not contain a NUL byte"},
    {"NaN in update", function() return s:update{max_buffers = NAN} end, "max_buffers: must be an integer"},
    {"NUL in update's flags", function() return s:update{flags = {"tcpip\0x"}} end, "flags%[1%]: must not contain a NUL byte"},
    {"NaN timeout", function() return s:events{timeout = NAN} end, "timeout: must be a number from 0"},
    {"inf timeout", function() return s:events{timeout = INF} end, "timeout: must be a number from 0"},
    {"negative timeout", function() return s:events{timeout = -1} end, "timeout: must be a number from 0"},
    {"NaN cpu", function() return s:events{cpu = NAN} end, "cpu: must be an integer from 0"},
  }

  it("rejects bad file names and numbers in its methods and leaves it running", function()
    for _, c in ipairs(method_calls) do
      local ok, err = pcall(c[2])
      assert.is_false(ok, c[1])
      assert.matches(c[3], err)
      assert.is_true(H.instance_exists(name), c[1] .. ": the session must still run")
    end
    assert(s:stop())
  end)

  it("never stops a session whose name is a prefix of a bad name", function()
    assert.has_error(function() kl.stop(name .. "\0zz") end)
    assert.has_error(function() kl.flush(name .. "\0zz", "x.dat") end)
    assert.is_true(H.instance_exists(name))
    assert.is_false(assert(kl.query(name)).stopped == true)
    assert(s:stop())
  end)
end)

describe("validation of Trace:events filters #linux", function()
  local t
  before_each(function() t = assert(kl.open("spec/fixtures/tracedat/trappy_trace.dat")) end)
  after_each(function() t:close() end)

  local filters = {
    {{from = NAN}, "from: must be an integer from 0"},
    {{to = INF}, "to: must be an integer from 0"},
    {{t0 = -1}, "t0: must be an integer from 0"},
    {{pid = 1.5}, "pid: must be an integer from 0 to 2147483647, got 1.5"},
    {{cpu = -INF}, "cpu: must be an integer from 0"},
    {{names = 5}, "names: must be a string or a list of strings"},
  }

  it("rejects each bad filter naming the field", function()
    for _, c in ipairs(filters) do
      local ok, err = pcall(t.events, t, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err)
    end
  end)
end)
