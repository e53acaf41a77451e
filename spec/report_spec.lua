-- kernellogger report FILE: the module behind the command, called directly.
local report = require "kernellogger.report"

local TESTDATA = "spec/fixtures/tracedat/"

local function sink()
  local buf = {}
  return {write = function(self, ...)
    for _, s in ipairs{...} do buf[#buf + 1] = s end
    return self
  end, text = function() return table.concat(buf) end}
end

local function run(args)
  local out, err = sink(), sink()
  local rc = report.main(args, out, err)
  return rc, out.text(), err.text()
end

describe("kernellogger.report on trace.dat #linux", function()
  it("summarises a capture: types, counts, span, lost events, rate", function()
    local rc, out, err = run{TESTDATA .. "trappy_trace.dat", "--width", "20"}
    assert.equal(0, rc, err)
    assert.equal("", err)
    assert.matches("trace%.dat v6, little%-endian, 4%-byte longs, 8 CPUs, clock local", out)
    assert.matches("time span: 5%.498 s %(7615%.709442088 %.%. 7621%.207149005%)", out)
    assert.matches("events: 525 ", out)
    assert.matches("ftrace:bprint%s+501%s+95%.4%%", out)
    assert.matches("thermal:cdev_update%s+18%s+3%.4%%", out)
    assert.matches("lost events: none", out)
    -- six seconds, the first the busiest
    local line = out:match("events per second over 6 s %(53%.%.105/s%):\n  (%S+)\n")
    assert.is_truthy(line, out)
    assert.equal("█", line:sub(1, 3))
    assert.equal(6, utf8.len(line))
  end)

  it("orders types by count and can keep the top ones", function()
    local rc, out = run{TESTDATA .. "trappy_trace_idle.dat", "--top", "1"}
    assert.equal(0, rc)
    assert.matches("sched:sched_switch%s+23", out)
    assert.not_matches("power:cpu_idle%s+17", out)
    assert.matches("%.%.%. 2 more types", out)
  end)

  it("fails with 1 and the code for a file it cannot read", function()
    local rc, out, err = run{"/nonexistent/x.dat"}
    assert.equal(1, rc)
    assert.equal("", out)
    assert.matches("%[not_found%]", err)
  end)

  it("fails with 2 and the usage on bad arguments", function()
    for _, args in ipairs{{}, {"--bogus"}, {"a", "b"}, {"--width"}, {"--top", "0"}} do
      local rc, _, err = run(args)
      assert.equal(2, rc)
      assert.matches("usage: kernellogger report %[%-%-width N%] %[%-%-top N%] %[%-%-%] FILE", err)
    end
    local rc, out = run{"--help"}
    assert.equal(0, rc)
    assert.matches("^usage:", out)
  end)

end)

describe("kernellogger.report.sparkline", function()
  it("draws sparklines scaled to the maximum and averaged to the width", function()
    assert.equal("", report.sparkline({}, 10))
    assert.equal("▁▁▁", report.sparkline({0, 0, 0}, 10))
    assert.equal("▁▅█", report.sparkline({0, 5, 10}, 10))
    assert.equal("▁█", report.sparkline({0, 0, 10, 10}, 2))
    assert.equal(40, utf8.len(report.sparkline((function()
      local t = {}
      for i = 1, 1000 do t[i] = i end
      return t
    end)(), 40)))
  end)
end)
