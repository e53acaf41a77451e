-- kernellogger export --chrome-json: the Trace Event Format that Perfetto UI
-- and chrome://tracing open. Checked against the format's rules with an
-- independent JSON decoder (dkjson, Debian's lua-dkjson) on the fixtures and on
-- a fresh capture of the kernel: valid JSON, the event shapes, one track per
-- CPU whose complete slices never overlap, microsecond timestamps that land on
-- the capture's own context switches, names as metadata.
local H = require "helpers"
local kl = require "kernellogger"
local dkjson = require "dkjson"
local export = require "kernellogger.export"

local TESTDATA = "spec/fixtures/tracedat/"
local FIXTURES = {"trappy_raw_trace.dat", "trappy_trace.dat", "trappy_trace_idle.dat"}

local function decode(path)
  local text = assert(H.read(path))
  local doc, _, err = dkjson.decode(text)
  assert.is_nil(err)
  return doc
end

local function ns(us) return math.floor(us * 1000 + 0.5) end

--- What the capture holds, read here: the switch times per CPU, the slices
-- a correct export has (one per stretch a non-idle task ran), the other events.
local function expected(path)
  local t <close> = assert(kl.open(path))
  local info = t:info()
  local switches, running, slices, others, lost, first = {}, {}, 0, 0, 0, {}
  for ev in t:events() do
    first[ev.cpu] = first[ev.cpu] or ev.time
    if ev.name == "sched_switch" then
      switches[ev.cpu] = switches[ev.cpu] or {}
      switches[ev.cpu][ev.time] = true
      local r = running[ev.cpu] or {ev.prev_pid, first[ev.cpu]}
      if r[1] ~= 0 then slices = slices + 1 end
      running[ev.cpu] = {ev.next_pid, ev.time}
    elseif ev.name == "lost_events" then
      lost = lost + 1
    else
      others = others + 1
    end
  end
  for _, r in pairs(running) do
    if r[1] ~= 0 then slices = slices + 1 end
  end
  return {info = info, switches = switches, slices = slices, others = others, lost = lost,
          first = first}
end

local function check(doc, want)
  assert.equal("ns", doc.displayTimeUnit)
  assert.equal(want.info.first_ts, doc.otherData.first_ts_ns)
  assert.equal(0, doc.skipped_records)  -- an intact capture: no record left out
  assert.is_table(doc.traceEvents)
  local tracks, slices, instants, lost = {}, 0, 0, 0
  local names, cpu_names, instant_pids = {}, {}, {}
  for _, e in ipairs(doc.traceEvents) do
    assert.is_string(e.name)
    assert.equal("integer", math.type(e.pid))
    assert.equal("integer", math.type(e.tid))
    if e.ph == "X" then
      assert.equal(export.CPUS_PID, e.pid)
      assert.is_true(e.ts >= 0 and e.dur >= 0)
      tracks[e.tid] = tracks[e.tid] or {}
      table.insert(tracks[e.tid], {ns(e.ts), ns(e.ts) + ns(e.dur)})
      assert.is_string(e.args.comm)
      assert.equal("integer", math.type(e.args.pid))
      -- a slice ends at one of this CPU's context switches, or at the capture's end
      local start = want.info.first_ts + ns(e.ts)
      local finish = start + ns(e.dur)
      assert.is_true(want.switches[e.tid][finish] or finish == want.info.last_ts,
                     ("slice end %d on CPU %d"):format(finish, e.tid))
      -- and starts at one, or at the CPU's first event
      assert.is_true(want.switches[e.tid][start] or start == want.first[e.tid],
                     ("slice start %d on CPU %d"):format(start, e.tid))
      slices = slices + 1
    elseif e.ph == "i" then
      assert.is_true(e.ts >= 0)
      assert.is_table(e.args)
      if e.name == "lost_events" then
        assert.equal("g", e.s)
        lost = lost + 1
      else
        assert.equal("t", e.s)
        assert.equal("integer", math.type(e.args.cpu))
        instant_pids[e.pid] = true
        instants = instants + 1
      end
    elseif e.ph == "M" then
      if e.name == "thread_name" and e.pid == export.CPUS_PID then
        cpu_names[e.tid] = e.args.name
      elseif e.name == "process_name" then
        names[e.pid] = e.args.name
      else
        assert.is_true(e.name == "thread_name" or e.name:match("_sort_index$") ~= nil, e.name)
      end
    else
      error("unexpected phase " .. tostring(e.ph))
    end
  end
  assert.equal(want.slices, slices)
  assert.equal(want.others, instants)
  assert.equal(want.lost, lost)
  -- one track per CPU, named, whose slices never overlap
  for cpu, list in pairs(tracks) do
    assert.equal(("CPU %d"):format(cpu), cpu_names[cpu])
    table.sort(list, function(a, b) return a[1] < b[1] end)
    for i = 2, #list do
      assert.is_true(list[i - 1][2] <= list[i][1],
                     ("CPU %d: slices %d and %d overlap"):format(cpu, i - 1, i))
    end
  end
  for pid in pairs(instant_pids) do assert.is_string(names[pid]) end
  return tracks
end

describe("kernellogger export --chrome-json #linux #heavy", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmtree(dir) end)

  for _, name in ipairs(FIXTURES) do
    it("writes " .. name .. " by the format's rules", function()
      local out = dir .. "/" .. name .. ".json"
      local r = assert(kl.report.chrome_json(TESTDATA .. name, out))
      local doc = decode(out)
      assert.equal(#doc.traceEvents, r.events)
      local want = expected(TESTDATA .. name)
      check(doc, want)
      assert.equal(want.slices, r.slices)
      if name == "trappy_raw_trace.dat" then
        assert.equal(389, r.slices)  -- 755 switches on 4 CPUs, the idle task's left out
      end
    end)
  end

  it("is what the command writes; its usage and failures", function()
    local out = dir .. "/cli.json"
    local cap = TESTDATA .. "trappy_trace_idle.dat"
    local p = io.popen(("lua5.4 bin/kernellogger export --chrome-json %s %s 2>&1"):format(
      H.q(out), H.q(cap)))
    local text = p:read("a")
    assert.is_true(p:close(), text)
    assert.matches("cli%.json: %d+ trace events %(%d+ CPU slices, %d+ instants%)", text)
    check(decode(out), expected(cap))
    local st = io.popen("stat -c %a " .. H.q(out))
    assert.equal("600", st:read("l"))
    st:close()
    -- the file exists: refused without --overwrite, left as it was
    local before = H.read(out)
    local ok, _, rc = os.execute(("lua5.4 bin/kernellogger export --chrome-json %s %s " ..
      "2>/dev/null"):format(H.q(out), H.q(cap)))
    assert.is_nil(ok)
    assert.equal(1, rc)
    assert.equal(before, H.read(out))
    assert.is_true(os.execute(("lua5.4 bin/kernellogger export --overwrite --chrome-json %s %s " ..
      ">/dev/null"):format(H.q(out), H.q(cap))))
    -- a symbolic link is never followed
    os.execute(("ln -s %s %s"):format(H.q(dir .. "/elsewhere"), H.q(dir .. "/link.json")))
    local r, err, code = kl.report.chrome_json(cap, dir .. "/link.json", {overwrite = true})
    assert.is_nil(r)
    assert.equal("bad_path", code, err)
    assert.is_false(H.exists(dir .. "/elsewhere"))
    for _, args in ipairs{"", "--chrome-json", H.q(cap), "--bogus x " .. H.q(cap)} do
      ok, _, rc = os.execute("lua5.4 bin/kernellogger export " .. args .. " 2>/dev/null")
      assert.is_nil(ok)
      assert.equal(2, rc, args)
    end
  end)

  describe("on a fresh capture #linux", function()
    local name
    before_each(function() name = H.name("export") end)
    after_each(function() H.cleanup(name) end)

    it("has every CPU's slices and the TCP state changes with their fields", function()
      local cap = dir .. "/fresh.dat"
      local s = assert(kl.start{name = name, flags = {"cswitch", "process", "tcpip"},
                                file = cap, circular_mb = 4})
      assert(os.execute("sh -c 'sleep 0.01; true' && sleep 0.01"))
      local port = H.tcp_connections(3)
      assert(s:stop())
      local out = dir .. "/fresh.json"
      local r = assert(export.chrome_json(cap, out))
      local doc = decode(out)
      local want = expected(cap)
      local tracks = check(doc, want)
      local ncpu = 0
      for _ in pairs(tracks) do ncpu = ncpu + 1 end
      local sw = 0
      for _ in pairs(want.switches) do sw = sw + 1 end
      assert.equal(sw, ncpu)
      assert.is_true(r.slices > 0)
      -- the three connections: SYN_SENT to the listener, with the fields as args
      local syn = 0
      for _, e in ipairs(doc.traceEvents) do
        if e.name == "inet_sock_set_state" and e.args.newstate == 2 and
           e.args.dport == port and e.args.daddr == "127.0.0.1" then
          syn = syn + 1
          assert.equal("sock", e.cat)
        end
      end
      assert.equal(3, syn)
    end)
  end)
end)
