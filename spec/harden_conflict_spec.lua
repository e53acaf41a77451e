-- Hardening of the conflict policies: a policy acts only on a taken name,
-- never on somebody else's session because of a file problem; numeric
-- options refuse NaN, infinities and negatives, naming the field.  A new bad
-- input is one line in a table.
local H = require "helpers"
local kl = require "kernellogger"

-- Every policy, started on a held name with an output file in the way.
local FILE_IN_THE_WAY = {
  { policy = "takeover" },
  { policy = "takeover_stale" },
  { policy = "wait" },
  { policy = "attach" },
  { policy = "private" },
  { policy = "function", fn = function() return "takeover" end },
}

-- Bad numbers: the options added to a start, and the field the error names.
local BAD_NUMBERS = {
  { opts = { timeout = 0 / 0 }, field = "timeout" },
  { opts = { timeout = math.huge }, field = "timeout" },
  { opts = { timeout = -1 }, field = "timeout" },
  { opts = { timeout = "5" }, field = "timeout" },
  { opts = { backoff = { initial = 0 / 0 } }, field = "backoff.initial" },
  { opts = { backoff = { initial = -0.5 } }, field = "backoff.initial" },
  { opts = { backoff = { max = math.huge } }, field = "backoff.max" },
  { opts = { backoff = { max = -math.huge } }, field = "backoff.max" },
  { opts = { backoff = { factor = 0.5 } }, field = "backoff.factor" },
  { opts = { backoff = { factor = 0 / 0 } }, field = "backoff.factor" },
  { opts = { backoff = { jitter = 2 } }, field = "backoff.jitter" },
  { opts = { backoff = { jitter = 0 / 0 } }, field = "backoff.jitter" },
}

-- kl.capture's own numbers.
local BAD_CAPTURE_NUMBERS = {
  { opts = { seconds = 0 / 0 }, field = "seconds" },
  { opts = { seconds = math.huge }, field = "seconds" },
  { opts = { seconds = -2 }, field = "seconds" },
  { opts = { interval = 0 }, field = "interval" },
  { opts = { interval = 0 / 0 }, field = "interval" },
  { opts = { interval = -math.huge }, field = "interval" },
}

-- The command line's numeric options: exit 2, naming the option.
local BAD_CLI_NUMBERS = {
  { args = "capture --seconds 1e999", option = "--seconds" },
  { args = "capture --seconds -1", option = "--seconds" },
  { args = "capture --timeout=-0.5", option = "--timeout" },
  { args = "start --circular-mb -4", option = "--circular-mb" },
  { args = "start --buffer-kb 1e400", option = "--buffer-kb" },
  { args = "capture --flush-timer nan", option = "--flush-timer" },
}

-- What an on_conflict function may not answer.
local BAD_ANSWERS = { 0 / 0, math.huge, -1, "nap", true }

describe("#linux hardened conflict policies", function()
  local names, dir = {}, nil
  local function uname()
    local n = H.name("hcf")
    names[#names + 1] = n
    return n
  end
  setup(function() dir = H.tmpdir() end)
  teardown(function()
    H.cleanup(table.unpack(names))
    H.rmtree(dir)
    for _, n in ipairs(names) do assert.is_false(H.instance_exists(n), n .. " left behind") end
  end)

  for _, row in ipairs(FILE_IN_THE_WAY) do
    it(("%s leaves the running session untouched when the file is the problem")
       :format(row.policy), function()
      local name = uname()
      local s1 = assert(kl.start { name = name, flags = { "cswitch" } })
      local before = assert(kl.query(name))
      local file = dir .. "/taken_" .. row.policy .. ".dat"
      local f = assert(io.open(file, "w")); f:write("mine"); f:close()
      local s, msg, code, holder, how = kl.start { name = name, flags = { "cswitch" },
        file = file, on_conflict = row.fn or row.policy, timeout = 2,
        backoff = { initial = 0.01, max = 0.05 } }
      assert.is_nil(s, "started despite the file")
      assert.is_true(code == "already_exists" or code == "bad_path", tostring(code))
      assert.is_nil(holder, msg)
      assert.equal(1, how.attempts, msg)
      assert.is_nil(how.displaced)
      assert.is_false(how.private)
      assert.truthy(msg:find(file, 1, true), msg)
      -- the holder still runs, the same session, and the file is unchanged
      local after = assert(kl.query(name))
      assert.equal(before.start_time, after.start_time)
      assert.equal(before.owner_pid, after.owner_pid)
      assert.equal("mine", assert(io.open(file, "rb")):read("a"))
      assert.is_nil(kl.query(name .. "_" .. require("kernellogger.core")._getpid()))
      assert.is_table(s1:stop())
    end)
  end

  it("a real conflict is still acted on when the file may be replaced", function()
    local name = uname()
    local s1 = assert(kl.start { name = name, flags = { "cswitch" } })
    assert.equal(name, s1.name)
    local file = dir .. "/replace.dat"
    local f = assert(io.open(file, "w")); f:write("old"); f:close()
    local s2, how = assert(kl.start { name = name, flags = { "cswitch" }, file = file,
                                      overwrite = true, on_conflict = "takeover" })
    assert.is_table(how.displaced)
    assert.is_table(s2:stop())
  end)

  for _, row in ipairs(BAD_NUMBERS) do
    local opts = {}
    for k, v in pairs(row.opts) do opts[k] = v end
    it(("refuses %s = %s, naming the field"):format(row.field,
       tostring(row.opts.timeout or select(2, next(row.opts.backoff or {})))), function()
      opts.name = uname()
      opts.flags = { "cswitch" }
      opts.on_conflict = "wait"
      local ok, e = pcall(kl.start, opts)
      assert.is_false(ok, "accepted")
      assert.truthy(tostring(e):find("'" .. row.field .. "'", 1, true), e)
      assert.is_false(H.instance_exists(opts.name))
    end)
  end

  for _, row in ipairs(BAD_CAPTURE_NUMBERS) do
    local k, v = next(row.opts)
    it(("kl.capture refuses %s = %s, naming the field"):format(k, tostring(v)), function()
      local name = uname()
      local ok, e = pcall(kl.capture, { name = name, flags = { "cswitch" }, [k] = v,
                                        file = dir .. "/never.dat" })
      assert.is_false(ok, "accepted")
      assert.truthy(tostring(e):find("'" .. row.field .. "'", 1, true), e)
      assert.is_false(H.instance_exists(name))
    end)
  end

  for _, row in ipairs(BAD_CLI_NUMBERS) do
    it("kernellogger " .. row.args .. " is a usage error naming the option", function()
      local name = uname()
      local p = assert(io.popen(("lua5.4 bin/kernellogger %s -n %s 2>&1"):format(row.args, name)))
      local out = p:read("a")
      local _, _, rc = p:close()
      assert.equal(2, rc, out)
      assert.truthy(out:find(row.option, 1, true), out)
      assert.is_false(H.instance_exists(name))
    end)
  end

  for _, answer in ipairs(BAD_ANSWERS) do
    it("refuses an on_conflict function answering " .. tostring(answer), function()
      local name = uname()
      local s1 = assert(kl.start { name = name, flags = { "cswitch" } })
      local ok, e = pcall(kl.start, { name = name, on_conflict = function() return answer end })
      assert.is_false(ok)
      assert.truthy(tostring(e):find("on_conflict function returned", 1, true), e)
      assert.is_table(kl.query(name))
      assert.is_table(s1:stop())
    end)
  end
end)
