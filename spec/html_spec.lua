-- The HTML report (kernellogger.html) in a real browser: Debian's chromium
-- loads each page headless from disk, runs its script, and the DOM it dumps is
-- checked: the lanes, the tables, a drawing that is not empty, no script error.
-- On the fixtures and on a fresh capture of the kernel.
local H = require "helpers"
local kl = require "kernellogger"
local dkjson = require "dkjson"
local timeline = require "kernellogger.timeline"

local TESTDATA = "spec/fixtures/tracedat/"
local FIXTURES = {"trappy_raw_trace.dat", "trappy_trace.dat", "trappy_trace_idle.dat"}
local CHROMIUM = "/usr/bin/chromium"
local have_chromium = H.linux and os.execute("test -x " .. CHROMIUM) == true

local function unescape(s)
  return (s:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&nbsp;", "\194\160")
           :gsub("&amp;", "&"))
end

local loads = 0
--- Load a page in headless chromium: its DOM after the script ran, the
-- page's summary (decoded), and the browser's console lines.
local function browse(dir, html)
  loads = loads + 1
  local profile = ("%s/profile%d"):format(dir, loads)
  local errlog = ("%s/chromium%d.log"):format(dir, loads)
  local abs = html:sub(1, 1) == "/" and html or (os.getenv("PWD") .. "/" .. html)
  -- (the browser runs without the sanitizer preload of an ASan run)
  local p = assert(io.popen(("env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS " ..
    "timeout 60 %s --headless --no-sandbox --disable-gpu " ..
    "--disable-quic --no-first-run --disable-background-networking --disable-component-update " ..
    "--disable-sync --user-data-dir=%s --window-size=1400,1000 --enable-logging=stderr --v=0 " ..
    "--dump-dom %s 2>%s"):format(CHROMIUM, H.q(profile), H.q("file://" .. abs), H.q(errlog))))
  local dom = p:read("a")
  p:close()
  local console = {}
  for line in (H.read(errlog) or ""):gmatch("[^\n]+") do
    if line:find(":CONSOLE", 1, true) then console[#console + 1] = line end
  end
  os.execute("rm -rf " .. H.q(profile))
  local text = dom:match('<pre id="kl%-summary">(.-)</pre>')
  local summary = text and text ~= "" and dkjson.decode(unescape(text)) or nil
  return {dom = dom, summary = summary, console = console}
end

--- The rows of the table inside the element with that id.
local function rows(dom, id)
  local at = dom:find('id="' .. id .. '"', 1, true)
  if not at then return {} end
  local box = dom:sub(at)
  box = box:sub(1, box:find('id="kl%-', 5) or #box)  -- up to the next element of the page
  local list = {}
  for body in box:gmatch("<tbody>(.-)</tbody>") do
    for row in body:gmatch("<tr>(.-)</tr>") do list[#list + 1] = row end
  end
  return list
end

--- What the capture holds, read here without the report's code: the CPUs
-- with context switches, the tasks that ran (not idle) and the event types.
local function facts(path)
  local t <close> = assert(kl.open(path))
  local info = t:info()
  local cpus, ran, running, ncpus, first = {}, {}, {}, 0, {}
  for ev in t:events() do
    first[ev.cpu] = first[ev.cpu] or ev.time
    if ev.name == "sched_switch" then
      if not cpus[ev.cpu] then cpus[ev.cpu] = true; ncpus = ncpus + 1 end
      -- before a CPU's first switch, the outgoing task ran since the CPU's first event
      local r = running[ev.cpu] or {ev.prev_pid, first[ev.cpu]}
      if r[1] ~= 0 and ev.time > r[2] then ran[r[1]] = true end
      running[ev.cpu] = {ev.next_pid, ev.time}
    end
  end
  for _, r in pairs(running) do
    if r[1] ~= 0 and info.last_ts > r[2] then ran[r[1]] = true end
  end
  local nran = 0
  for _ in pairs(ran) do nran = nran + 1 end
  return {cpus = ncpus, ran = ran, nran = nran, types = #info.events}
end

local function check_page(page, f)
  assert.same({}, page.console)
  assert.is_table(page.summary, "the page wrote no summary: its script did not finish")
  local s = page.summary
  assert.equal(0, s.errors)
  assert.matches('<ul id="kl%-errors" hidden=""></ul>', page.dom)
  assert.equal(f.cpus, s.cpu_lanes)
  assert.equal(f.types, #rows(page.dom, "kl-types"))
  assert.equal(f.types, s.rows.types)
  assert.equal(math.min(100, f.nran), s.rows.by_cpu)
  assert.equal(math.min(100, f.nran), #rows(page.dom, "kl-by-cpu"))
  if f.cpus > 0 then assert.is_true(s.painted.cpu > 1000, "CPU lanes left empty") end
  for i, label in ipairs(s.labels) do
    if label:match("^CPU %d+$") and s.hover[i] then
      -- hovering a CPU lane names a task that ran there, or says it was idle
      local pid = s.hover[i]:match("%(pid (%d+)%)")
      assert.is_true(pid == nil and s.hover[i]:find("idle", 1, true) ~= nil or
                     f.ran[tonumber(pid)] == true, s.hover[i])
    end
  end
end

describe("the HTML report #linux #heavy", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmtree(dir) end)

  if not have_chromium then
    pending("needs Debian's chromium (" .. CHROMIUM .. ") to load the pages")
  else
    for _, name in ipairs(FIXTURES) do
      it("draws " .. name .. ": CPU lanes, event lanes, tables, no script error", function()
        local t <close> = assert(kl.open(TESTDATA .. name))
        local out = dir .. "/" .. name .. ".html"
        local r = assert(kl.report.html(t, out))
        assert.equal(#H.read(out), r.bytes)
        local page = browse(dir, out)
        check_page(page, facts(TESTDATA .. name))
        if name == "trappy_raw_trace.dat" then
          assert.same({"CPU 0", "CPU 1", "CPU 2", "CPU 5", "ftrace"}, page.summary.labels)
          assert.is_true(page.summary.painted.group > 0)
        elseif name == "trappy_trace.dat" then
          -- no context switches: no CPU lane, the events by group all the same
          assert.same({"ftrace", "thermal"}, page.summary.labels)
        end
      end)
    end

    it("merges below the resolution and still draws the lanes", function()
      local t <close> = assert(kl.open(TESTDATA .. "trappy_raw_trace.dat"))
      local out = dir .. "/merged.html"
      assert(kl.report.html(t, out, {buckets = 40, exact_slices = 20}))
      local page = browse(dir, out)
      check_page(page, facts(TESTDATA .. "trappy_raw_trace.dat"))
      local merged = 0
      for _, h in ipairs(page.summary.hover) do
        if h and h:find("(merged ", 1, true) then merged = merged + 1 end
      end
      assert.is_true(merged > 0, dkjson.encode(page.summary.hover))
    end)

    it("shows a script error in the page, which the checks would see", function()
      local out = dir .. "/broken.html"
      assert(kl.report.html(TESTDATA .. "trappy_raw_trace.dat", out))
      local text = H.read(out):gsub('(<script type="application/json" id="kl%-data">)', "%1{")
      local f = assert(io.open(out, "w"))
      f:write(text)
      f:close()
      local page = browse(dir, out)
      assert.is_nil(page.summary)
      assert.matches('<ul id="kl%-errors"><li>[^<]*JSON', page.dom)
      assert.is_true(#page.console > 0)
    end)

    describe("on a fresh capture #linux", function()
      local name
      before_each(function() name = H.name("html") end)
      after_each(function() H.cleanup(name) end)

      it("has the workload's processes and TCP connections; a hostile comm stays text",
         function()
        local cap = dir .. "/fresh.dat"
        local s = assert(kl.start{name = name, flags = {"cswitch", "process", "tcpip"},
                                  file = cap, circular_mb = 4})
        -- a shell that names itself like markup, burns a little CPU and sleeps
        assert(os.execute([[sh -c 'printf %s "</script><i>x" > /proc/self/comm; i=0; ]] ..
          [[while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.02; sleep 0.02']]))
        local port = H.tcp_connections(3)
        assert(s:stop())
        local out = dir .. "/fresh.html"
        local r = assert(kl.report.html(cap, out))
        assert.is_true(r.events > 0)
        local raw = H.read(out)
        -- only the page's own three script elements end: the comm is escaped in the data
        local ends = 0
        for _ in raw:lower():gmatch("</script") do ends = ends + 1 end
        assert.equal(3, ends)
        assert.truthy(raw:find([["\u003c/script\u003e\u003ci\u003ex"]], 1, true))
        local page = browse(dir, out)
        check_page(page, facts(cap))
        assert.is_nil(page.dom:find("<i>x", 1, true))
        assert.truthy(page.dom:find("&lt;/script&gt;&lt;i&gt;x", 1, true))
        local labels = table.concat(page.summary.labels, ",")
        assert.matches(",process,", labels .. ",")
        assert.matches(",tcpip,", labels .. ",")
        -- three connections: each seen from both ends, to and from the listener
        local tcp = rows(page.dom, "kl-tcp")
        local to, from = 0, 0
        for _, row in ipairs(tcp) do
          if row:find("127.0.0.1:" .. port .. "</td><td[^>]*>←") then from = from + 1 end
          if row:find("→</td><td[^>]*>127.0.0.1:" .. port .. "<") then to = to + 1 end
        end
        assert.equal(3, to)
        assert.equal(3, from)
        assert.equal(6, page.summary.rows.tcp)
      end)

      it("marks where the ring dropped events", function()
        local cap = dir .. "/lost.dat"
        -- a buffering session: the ring alone, overwritten when full (a file
        -- session would stream to disk and lose nothing)
        local s = assert(kl.start{name = name, flags = {"systemcall", "cswitch"},
                                  circular_mb = 1})
        -- about 600000 system calls: many times what a 1 MB ring holds
        -- (in ten bursts with a short sleep between: context switches all along
        -- the data the ring keeps, so that the page has CPU lanes to draw)
        assert(os.execute("for i in 1 2 3 4 5 6 7 8 9 10; do env -u LD_PRELOAD dd if=/dev/zero " ..
                          "of=/dev/null bs=1 count=30000 2>/dev/null; sleep 0.01; done"))
        assert(s:stop(cap))
        local markers, cpus = 0, {}
        do
          local t <close> = assert(kl.open(cap))
          for ev in t:events{names = "lost_events"} do
            markers = markers + 1
            cpus[ev.cpu] = true
          end
        end
        assert.is_true(markers > 0, "the ring dropped nothing")
        local out = dir .. "/lost.html"
        assert(kl.report.html(cap, out))
        local page = browse(dir, out)
        check_page(page, facts(cap))
        assert.equal(1, page.summary.lost_lanes)
        assert.equal("lost events", page.summary.labels[1])
        assert.is_true(page.summary.painted.lost > 0)
        assert.matches('<div class="fact bad half"><div class="k">lost</div>', page.dom)
        -- the export has them too, as global instants on the CPU's track
        local jout = dir .. "/lost.json"
        assert(kl.report.chrome_json(cap, jout))
        local doc = dkjson.decode(H.read(jout))
        local n = 0
        for _, e in ipairs(doc.traceEvents) do
          if e.name == "lost_events" then
            n = n + 1
            assert.is_true(cpus[e.tid])
          end
        end
        assert.equal(markers, n)
      end)
    end)
  end
end)

describe("the HTML report's file #linux #heavy", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmtree(dir) end)
  local cap = TESTDATA .. "trappy_trace_idle.dat"

  it("is written 0600, never through a symlink, replaced only with overwrite", function()
    local out = dir .. "/r.html"
    assert(kl.report.html(cap, out))
    local p = io.popen("stat -c %a " .. H.q(out))
    assert.equal("600", p:read("l"))
    p:close()
    local before = H.read(out)
    local ok, err, code = kl.report.html(cap, out)
    assert.is_nil(ok)
    assert.equal("already_exists", code, err)
    assert.equal(before, H.read(out))
    assert(kl.report.html(cap, out, {overwrite = true}))
    local target = dir .. "/target"
    os.execute(("ln -s %s %s"):format(H.q(target), H.q(dir .. "/link.html")))
    ok, err, code = kl.report.html(cap, dir .. "/link.html", {overwrite = true})
    assert.is_nil(ok)
    assert.equal("bad_path", code)
    assert.matches("symbolic link", err)
    assert.is_false(H.exists(target))
    ok, err, code = kl.report.html(cap, dir, {overwrite = true})
    assert.is_nil(ok)
    assert.equal("bad_path", code, err)
    -- nothing but the report and the link is left in the folder (no temporary files)
    local p2 = io.popen("ls -A " .. H.q(dir))
    assert.equal("link.html\nr.html\n", p2:read("a"))
    p2:close()
  end)

  it("reports an unreadable capture without writing anything", function()
    local ok, _, code = kl.report.html("/nonexistent/x.dat", dir .. "/x.html")
    assert.is_nil(ok)
    assert.equal("not_found", code)
    assert.is_false(H.exists(dir .. "/x.html"))
  end)

  it("is what 'kernellogger report --html' writes", function()
    local out = dir .. "/cli.html"
    local p = io.popen(("lua5.4 bin/kernellogger report --html %s %s 2>&1"):format(H.q(out),
      H.q(cap)))
    local text = p:read("a")
    assert.is_true(p:close(), text)
    assert.matches("cli%.html: HTML report of .*trappy_trace_idle%.dat", text)
    assert.truthy(H.read(out):find('<canvas id="kl-timeline">', 1, true))
    local ok, _, rc = os.execute("lua5.4 bin/kernellogger report --html 2>/dev/null")
    assert.is_nil(ok)
    assert.equal(2, rc)
  end)
end)

describe("kernellogger.timeline #linux #heavy", function()
  it("keeps at most a bounded number of slices and buckets per CPU lane", function()
    local t <close> = assert(kl.open(TESTDATA .. "trappy_raw_trace.dat"))
    local exact = timeline.build(t)
    local n = 0
    for _, c in ipairs(exact.cpus) do n = n + #c.slices // 3 end
    assert.is_false(exact.merged)
    local m = timeline.build(t, {buckets = 50, exact_slices = 30})
    assert.is_true(m.merged)
    local busy_exact, busy_merged = 0, 0
    for _, p in ipairs(exact.procs_stats) do
      if p.pid ~= 0 then busy_exact = busy_exact + p.cpu_ns end
    end
    for _, p in ipairs(m.procs_stats) do
      if p.pid ~= 0 then busy_merged = busy_merged + p.cpu_ns end
    end
    assert.equal(busy_exact, busy_merged)  -- the CPU time is counted exactly either way
    local drawn, buckets = 0, 0
    for _, c in ipairs(m.cpus) do
      buckets = buckets + #c.merged // 3
      assert.is_true(#c.slices // 3 <= 2 * 50)
      assert.is_true(#c.merged // 3 <= 50 + 1)
      for i = 2, #c.slices, 3 do assert.is_true(c.slices[i] >= m.bucket_ns) end
      for i = 3, #c.merged, 3 do
        drawn = drawn + c.merged[i] * m.bucket_ns // 1000
        assert.is_true(c.merged[i] >= 0 and c.merged[i] <= 1000)
      end
      for i = 2, #c.slices, 3 do drawn = drawn + c.slices[i] end
    end
    -- what the merged lanes show adds up to the busy time, within the per-mille rounding
    assert.is_true(math.abs(drawn - busy_merged) <= buckets * (m.bucket_ns // 1000 + 1))
    assert.is_true(n > 30)
  end)
end)

describe("kernellogger.json and kernellogger.html.escape", function()
  local json = require "kernellogger.json"
  local html = require "kernellogger.html"

  it("write strings that cannot end a script element or start markup", function()
    assert.equal([["\u003c/script\u003e\u003cimg onerror=x\u003e"]],
                 json.string("</script><img onerror=x>"))
    assert.equal([["\u003c!--\u0026amp;"]], json.string("<!--&amp;"))
    assert.equal([["a\u2028b\u2029c"]], json.string("a\226\128\168b\226\128\169c"))
    assert.equal([["\"\\\n\t\u0001"]], json.string('"\\\n\t\1'))
    -- bytes that are not UTF-8 read as Latin-1; valid UTF-8 stays
    assert.equal('"ÿx€"', json.string("\255x€"))
    assert.equal("&lt;/title&gt;&amp;&quot;&#39;", html.escape("</title>&\"'"))
  end)

  it("encodes what dkjson decodes back", function()
    local v = {a = {1, 2.5, -3, "x"}, b = json.object{}, c = {}, d = true, e = "é\0",
               n = 2^53 + 0.0, big = math.mininteger}
    local decoded = dkjson.decode(json.encode(v))
    assert.same({1, 2.5, -3, "x"}, decoded.a)
    assert.same({}, decoded.b)
    assert.same({}, decoded["c"])
    assert.is_true(decoded.d)
    assert.equal("é\0", decoded.e)
    assert.equal(math.mininteger, decoded.big)
    assert.equal("null", json.encode(0 / 0))
  end)
end)

-- ---------------------------------------------------------------------------
-- Hostile input: the cases a tester found, one row each. Both writers of the
-- report module (the HTML page and the Trace Event Format export) share them.
-- ---------------------------------------------------------------------------

local WRITERS = {
  {name = "kl.report.html", fn = function(...) return kl.report.html(...) end,
   cmd = "report --html"},
  {name = "kl.report.chrome_json", fn = function(...) return kl.report.chrome_json(...) end,
   cmd = "export --chrome-json"},
}

local function put(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function listing(dir)
  local p = io.popen("ls -A " .. H.q(dir))
  local s = p:read("a")
  p:close()
  return s
end

--- A stand-in for a Trace: info() and events() over a list of event tables.
local function fake_trace(events, first, last)
  return {
    path = "fake.dat",
    info = function()
      return {format = "trace.dat", version = 6, cpus = 2, first_ts = first or 1000,
              last_ts = last or 5000, events = {}}
    end,
    events = function()
      local i = 0
      return function()
        i = i + 1
        local ev = events[i]
        if type(ev) == "function" then return ev() end
        return ev
      end
    end,
  }
end

local NIL = {}  -- a field the record lacks
local function event(base, change)
  local ev = {}
  for k, v in pairs(base) do ev[k] = v end
  for k, v in pairs(change or {}) do
    if v == NIL then ev[k] = nil else ev[k] = v end
  end
  return ev
end

local OPEN = {name = "sys_enter_openat", system = "syscalls", time = 2000, cpu = 0, pid = 7,
              comm = "cat", dfd = -100}
local SWITCH = {name = "sched_switch", system = "sched", time = 3000, cpu = 1, pid = 7,
                comm = "cat", prev_pid = 7, prev_comm = "cat", next_pid = 0,
                next_comm = "swapper/1"}
local LOST = {name = "lost_events", system = "ftrace", time = 2500, cpu = 0, lost = 3}
local TCP = {name = "inet_sock_set_state", system = "sock", time = 2600, cpu = 0, pid = 7,
             comm = "curl", skaddr = 1234, oldstate = 7, newstate = 2, protocol = 6, family = 2,
             saddr = "127.0.0.1", daddr = "127.0.0.1", sport = 5000, dport = 80}
local RETRANS = {name = "tcp_retransmit_skb", system = "tcp", time = 2700, cpu = 0, pid = 7,
                 skaddr = 1234, family = 2, saddr = "127.0.0.1", daddr = "127.0.0.1",
                 sport = 5000, dport = 80}

-- Damaged records (bit flips in a capture): {base, change, records left out}.
local DAMAGED = {
  {OPEN, {pid = NIL}, 0},
  {OPEN, {pid = "x"}, 0},
  {OPEN, {pid = 1.5}, 0},
  {OPEN, {comm = NIL}, 0},
  {OPEN, {comm = 42}, 0},
  {OPEN, {cpu = NIL}, 1},
  {OPEN, {time = NIL}, 1},
  {OPEN, {time = 2.5}, 1},
  {OPEN, {name = NIL}, 1},
  {OPEN, {system = NIL}, 0},
  {OPEN, {name = 7}, 1},
  {OPEN, {time = 1 << 62}, 0},
  {OPEN, {time = 0}, 0},
  {SWITCH, {prev_pid = NIL}, 1},
  {SWITCH, {next_pid = 1.5}, 1},
  {SWITCH, {prev_comm = 5, next_comm = NIL}, 0},
  {SWITCH, {time = 1 << 62}, 0},
  {LOST, {lost = NIL}, 0},
  {LOST, {cpu = NIL}, 1},
  {LOST, {system = NIL, lost = -1}, 0},
  {TCP, {skaddr = NIL}, 0},
  {TCP, {sport = "x", saddr = 5}, 0},
  {TCP, {pid = NIL, comm = NIL}, 0},
  {RETRANS, {sport = NIL, saddr = NIL}, 0},
  {RETRANS, {pid = "?"}, 0},
}

describe("the report writers given hostile input #linux #heavy", function()
  local dir, cap
  before_each(function()
    dir = H.tmpdir()
    cap = TESTDATA .. "trappy_trace_idle.dat"
  end)
  after_each(function() H.rmtree(dir) end)

  -- Output names that are refused: {name, prepare the folder, code, message}.
  local BAD_OUT = {
    {"z.html\n", function(d) put(d .. "/z.html", "precious") end, "bad_path", "0x0a"},
    {"q\nfoo", function(d) os.execute("ln -s " .. H.q(d .. "/victim") .. " " .. H.q(d .. "/q")) end,
     "bad_path", "0x0a"},
    {"c\0d", nil, "bad_path", "NUL byte"},
    {"tab\there", nil, "bad_path", "0x09"},
    {"del\127", nil, "bad_path", "0x7f"},
    {"esc\27[31m", nil, "bad_path", "0x1b"},
    {"link", function(d) os.execute("ln -s " .. H.q(d .. "/victim") .. " " .. H.q(d .. "/link")) end,
     "bad_path", "symbolic link"},
    {"sub/", function(d) os.execute("mkdir " .. H.q(d .. "/sub")) end, "bad_path", "folder"},
    {"sub", function(d) os.execute("mkdir " .. H.q(d .. "/sub")) end, "bad_path", "folder"},
    {"missing/x.html", nil, "bad_path", "missing/x.html"},
    {"old.html", function(d) put(d .. "/old.html", "precious") end, "already_exists",
     "file exists"},
  }
  for _, w in ipairs(WRITERS) do
    for _, row in ipairs(BAD_OUT) do
      local name, prepare, code, pattern = row[1], row[2], row[3], row[4]
      it(("%s refuses the output %q (%s), changing nothing"):format(w.name, name, code), function()
        if prepare then prepare(dir) end
        local before = listing(dir)
        local precious = {}
        for f in before:gmatch("[^\n]+") do precious[f] = H.read(dir .. "/" .. f) end
        local ok, err, got = w.fn(cap, dir .. "/" .. name)
        assert.is_nil(ok)
        assert.equal(code, got, err)
        assert.truthy(err:find(pattern, 1, true), err)
        assert.falsy(err:find("%.lua:%d+:"), err)
        assert.equal(before, listing(dir))  -- no temporary file, nothing new
        for f, s in pairs(precious) do assert.equal(s, H.read(dir .. "/" .. f), f) end
        assert.is_false(H.exists(dir .. "/victim"))
      end)
    end

    it(w.name .. " refuses a capture path with a NUL byte or a control character", function()
      for _, bad in ipairs{cap .. "\0.html", "a\nb.dat"} do
        local ok, err, code = w.fn(bad, dir .. "/out")
        assert.is_nil(ok)
        assert.equal("bad_path", code)
        assert.matches("capture path", err)
      end
      -- kl.open itself: a NUL byte would cut the name short, so it is refused
      local ok, err = pcall(kl.open, cap .. "\0.x")
      assert.is_false(ok)
      assert.matches("NUL byte", err)
      assert.equal("", listing(dir))
    end)

    it(w.name .. " writes a file whose name starts with '-', and the command too", function()
      assert(w.fn(cap, dir .. "/-o"))
      local copy = dir .. "/-cap.dat"
      put(copy, H.read(cap))
      local cmd = ("cd %s && lua5.4 %s/bin/kernellogger %s -x -- -cap.dat 2>&1"):format(
        H.q(dir), H.q(os.getenv("PWD")), w.cmd)
      local p = io.popen(cmd)
      local text = p:read("a")
      assert.is_true(p:close(), text)
      assert.equal("-cap.dat\n-o\n-x\n", listing(dir))
      local _, _, rc = os.execute(("cd %s && lua5.4 %s/bin/kernellogger %s -y -cap.dat " ..
        "2>/dev/null"):format(H.q(dir), H.q(os.getenv("PWD")), w.cmd))
      assert.equal(2, rc)  -- '-cap.dat' without '--' is an option: refused, not guessed
    end)

    -- Wrong arguments of the Lua API: {args (the output in dir, "CAP"), message}.
    local BAD_ARGS = {
      {{42, "o"}, "argument #1 %(trace%)"},
      {{true, "o"}, "argument #1 %(trace%)"},
      {{{}, "o"}, "argument #1 %(trace%)"},
      {{"", "o"}, "argument #1 %(trace%)"},
      {{"CLOSED", "o"}, "Trace is closed"},
      {{"CAP"}, "argument #2 %(path%)"},
      {{"CAP", ""}, "argument #2 %(path%)"},
      {{"CAP", 42}, "argument #2 %(path%)"},
      {{"CAP", "o", 5}, "argument #3 %(options%)"},
      {{"CAP", "o", {bogus = 1}}, 'unknown field "bogus"'},
      {{"CAP", "o", {overwrite = "yes"}}, "options%.overwrite: a boolean expected"},
      {{"CAP", "o", {overwrite = 1}}, "options%.overwrite: a boolean expected"},
      {{"CAP", "o", {title = ""}}, "options%.title: a non%-empty string expected"},
      {{"CAP", "o", {title = 3}}, "options%.title"},
    }
    if w.name == "kl.report.html" then
      BAD_ARGS[#BAD_ARGS + 1] = {{"CAP", "o", {buckets = 0}}, "options%.buckets: a positive integer"}
      BAD_ARGS[#BAD_ARGS + 1] = {{"CAP", "o", {rate_bins = 2.5}}, "options%.rate_bins"}
    else
      BAD_ARGS[#BAD_ARGS + 1] = {{"CAP", "o", {buckets = 10}}, 'unknown field "buckets"'}
    end
    for _, row in ipairs(BAD_ARGS) do
      it(("%s raises for %s"):format(w.name, row[2]:gsub("%%", "")), function()
        local args = {}
        for i = 1, 3 do
          local a = row[1][i]
          if a == "CAP" then a = cap
          elseif a == "CLOSED" then a = assert(kl.open(cap)); a:close()
          elseif a == "o" then a = dir .. "/o" end
          args[i] = a
        end
        local ok, err = pcall(w.fn, args[1], args[2], args[3])
        assert.is_false(ok)
        assert.matches(row[2], err)
        assert.matches("^kernellogger%.", err)  -- the function's name, no Lua position
        assert.equal("", listing(dir))
      end)
    end

    it(w.name .. " keeps going over damaged records and counts what it left out", function()
      for i, row in ipairs(DAMAGED) do
        local bad = event(row[1], row[2])
        local evs = {event(OPEN, {time = 1000}), event(SWITCH, {time = 1500, cpu = 0}), bad,
                     event(OPEN, {time = 4000, cpu = 1})}
        local out = ("%s/d%d"):format(dir, i)
        local r, err = w.fn(fake_trace(evs), out)
        assert.is_table(r, ("row %d: %s"):format(i, tostring(err)))
        local text = H.read(out)
        if w.name == "kl.report.html" then
          local d = dkjson.decode(unescape(text:match(
            '<script type="application/json" id="kl%-data">(.-)</script>')))
          assert.equal(row[3], d.facts.skipped, "row " .. i)
        else
          local doc = dkjson.decode(text)
          assert.equal(row[3], doc.skipped_records, "row " .. i)
          assert.equal(row[3], r.skipped, "row " .. i)
        end
      end
    end)

    it(w.name .. " returns the reader's failure, removing the temporary file", function()
      local header = fake_trace({})
      header.info = function() return nil, "fake.dat: bad header", "invalid" end
      local FAILING = {  -- {trace, message, code}
        {fake_trace{event(OPEN), function() error("fake.dat: record 2 damaged [invalid]") end},
         "fake.dat: record 2 damaged", "invalid"},
        {fake_trace{event(OPEN), function() error("out of luck") end}, "out of luck", "io"},
        {header, "fake.dat: bad header", "invalid"},
      }
      for _, row in ipairs(FAILING) do
        local ok, err, code = w.fn(row[1], dir .. "/x")
        assert.is_nil(ok)
        assert.equal(row[2], err)
        assert.equal(row[3], code)
        assert.equal("", listing(dir))
      end
    end)

    it(w.name .. " raises Ctrl-C again once the temporary file is gone", function()
      local evs = {event(OPEN), function() error("interrupted!") end}
      local ok, err = pcall(w.fn, fake_trace(evs), dir .. "/x")
      assert.is_false(ok)
      assert.matches("interrupted!", err)
      assert.equal("", listing(dir))
      -- a real SIGINT, sent while the capture is read, in a fresh process
      local code = ([[
        local kl = require "kernellogger"
        local core = require "kernellogger.core"
        local t0 = core._monotime()
        local t = {info = function() return {format = "x", cpus = 1, first_ts = 0,
                                             last_ts = 10} end,
                   events = function()
                     -- (os.execute would have SIGINT ignored while the shell runs)
                     io.popen("sleep 0.3; kill -INT " .. core._getpid()):close()
                     return function()
                       if core._monotime() - t0 < 20 then
                         return {name = "e", system = "s", time = 1, cpu = 0}
                       end
                     end
                   end}
        local r, e = pcall(kl.report.%s, t, %q)
        io.write(tostring(r), " ", tostring(e))
      ]]):format(w.name:match("[%w_]+$"), dir .. "/y")
      local _, out = H.run_lua(code)
      assert.matches("false .*interrupted!", out)
      assert.equal("", listing(dir))
    end)

    it(w.name .. " says disk_full on a full disk and access_denied on a read-only one", function()
      local mnt = dir .. "/mnt"
      os.execute("mkdir " .. H.q(mnt))
      assert.is_true(os.execute(("mount -t tmpfs -o size=8k tmpfs %s"):format(H.q(mnt))))
      local big = TESTDATA .. "trappy_trace.dat"
      local ok, err, code = w.fn(big, mnt .. "/out")
      assert.is_nil(ok)
      assert.equal("disk_full", code, err)
      assert.falsy(err:find("%.lua:%d+:"), err)
      assert.matches("No space left on device", err)
      assert.equal("", listing(mnt))
      assert.is_true(os.execute(("mount -o remount,ro %s"):format(H.q(mnt))))
      ok, err, code = w.fn(big, mnt .. "/out")
      assert.is_nil(ok)
      assert.equal("access_denied", code, err)
      os.execute("umount " .. H.q(mnt))
    end)
  end

  it("shows an open Trace's path, not its tostring, and exports it as the source", function()
    local t <close> = assert(kl.open(cap))
    assert(kl.report.html(t, dir .. "/t.html"))
    local page = H.read(dir .. "/t.html")
    assert.truthy(page:find("<title>kernellogger report: " .. cap .. "</title>", 1, true))
    assert.falsy(page:find("kernellogger.Trace", 1, true))
    assert(kl.report.chrome_json(t, dir .. "/t.json"))
    assert.equal(cap, dkjson.decode(H.read(dir .. "/t.json")).otherData.source)
  end)

  it("says 'empty capture' for a capture without events, no fake span or times", function()
    assert(kl.report.html(fake_trace({}, 0, 0), dir .. "/e.html"))
    local text = H.read(dir .. "/e.html")
    local d = dkjson.decode(unescape(text:match(
      '<script type="application/json" id="kl%-data">(.-)</script>')))
    assert.is_true(d.facts.empty)
    assert.is_false(d.facts.first)
    assert.is_false(d.facts.last)
    if have_chromium then
      local page = browse(dir, dir .. "/e.html")
      assert.same({}, page.console)
      assert.truthy(page.dom:find("empty capture", 1, true))
      assert.falsy(page.dom:find(">1 ns<", 1, true))
      assert.falsy(page.dom:find("0.000", 1, true))
    end
  end)

  -- Command lines that are usage errors (exit 2): one per row, CAP the capture.
  local USAGE = {
    "report --html A --html B CAP",
    "report --html A --width 20 CAP",
    "report --html A --top 3 CAP",
    "report --html CAP",
    "report --html A CAP CAP",
    "export --chrome-json A --chrome-json B CAP",
    "export --chrome-json A CAP CAP",
    "export --chrome-json A --bogus CAP",
  }
  for _, line in ipairs(USAGE) do
    it(("'kernellogger %s' is a usage error"):format(line), function()
      local cmd = line:gsub("CAP", H.q(cap)):gsub(" ([AB]) ", function(x)
        return " " .. H.q(dir .. "/" .. x) .. " "
      end)
      local ok, _, rc = os.execute("lua5.4 bin/kernellogger " .. cmd .. " >/dev/null 2>&1")
      assert.is_nil(ok)
      assert.equal(2, rc)
      assert.equal("", listing(dir))
    end)
  end
end)
