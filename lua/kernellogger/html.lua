--- The HTML report of a capture: one self-contained file (inline style and
-- script, nothing from the network) that opens from disk.
--
-- It shows the capture's facts, CPU lanes (what ran on each CPU, coloured by
-- process, with zoom, pan and the process on hover), a lane of marks per event
-- group on the same time axis with the lost-event markers, an events-per-second
-- chart per group, and tables: processes by CPU time and by events, TCP
-- connections, event types. The data is reduced first (`kernellogger.timeline`)
-- so the page stays a few MB whatever the size of the capture.
--
--     local html = require "kernellogger.html"
--     assert(html.write("capture.dat", "capture.html"))
--
-- @module kernellogger.html
local json = require "kernellogger.json"
local page = require "kernellogger.html_page"
local timeline = require "kernellogger.timeline"
local tcp = require "kernellogger.tcp"
local outfile = require "kernellogger.outfile"

local M = {}

--- Rows kept in each process table.
M.TOP = 100
--- Rows kept in the TCP tables (connections; resets and retransmits).
M.TOP_TCP = 1000

--- Text escaped for HTML element content and attribute values.
-- @string s
-- @treturn string
function M.escape(s)
  return (json.utf8(tostring(s)):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;",
    [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;"}))
end

local function stamp(ns)
  if not ns then return "?" end
  return ("%d.%09d s"):format(ns // 1000000000, ns % 1000000000)
end

local function top(list, key, n)
  local l = {}
  for _, p in ipairs(list) do
    if p.pid ~= 0 and p[key] > 0 then l[#l + 1] = p end
  end
  table.sort(l, function(a, b)
    if a[key] ~= b[key] then return a[key] > b[key] end
    return a.pid < b.pid
  end)
  local out = {}
  for i = 1, math.min(n, #l) do out[i] = l[i] end
  return out
end

local function tcp_tables(r, t0)
  local conns, events = {}, {}
  local all = tcp.connections(r)
  for i = 1, math.min(#all, M.TOP_TCP) do
    local s = all[i]
    conns[#conns + 1] = {s.first - t0, tcp.endpoint(s.saddr, s.sport), s.client and "→" or "←",
      tcp.endpoint(s.daddr, s.dport), ("%s/%d"):format(s.comm or "?", math.tointeger(s.pid) or -1),
      s.retrans,
      s.resets, table.concat(s.states, " › ")}
  end
  for _, list in ipairs{r.resets, r.retrans} do
    for _, e in ipairs(list) do
      events[#events + 1] = {e.time - t0, e.what, e.from, e.to,
                             ("%s/%d"):format(e.comm or "?", math.tointeger(e.pid) or -1)}
    end
  end
  table.sort(events, function(a, b) return a[1] < b[1] end)
  local nevents = #events
  for i = M.TOP_TCP + 1, nevents do events[i] = nil end
  local note = ("%d connection ends (→ connected out, ← accepted), %d state changes, " ..
    "%d resets, %d retransmits"):format(#all, r.changes, #r.resets, #r.retrans)
  if #all > #conns or nevents > #events then
    note = note .. ("; the tables show the first %d"):format(M.TOP_TCP)
  end
  return conns, events, note
end

--- The data the page draws, from a timeline model.
-- @tparam table m `timeline.build`'s result
-- @string file the capture's name, as shown
-- @treturn table
function M.data(m, file)
  local info = m.info
  local d = {span = m.span, bucket_ns = m.bucket_ns, rate_bin_ns = m.rate_bin_ns,
             merged = m.merged, procs = m.procs, cpus = m.cpus, groups = m.groups,
             lost = m.lost}
  -- an empty capture has no span and no first or last event to show
  local empty = m.events == 0 and m.lost_markers == 0
  d.facts = json.object{file = file, format = info.format, version = info.version,
    cpus = info.cpus, clock = info.clock or false, empty = empty,
    first = not empty and stamp(info.first_ts) or false,
    last = not empty and stamp(info.last_ts) or false, events = m.events, types = #m.types,
    lost = m.lost_total, lost_markers = m.lost_markers, lost_unknown = m.lost_unknown,
    skipped = m.skipped or 0}
  local T = json.object{}
  T.by_cpu = {}
  for i, p in ipairs(top(m.procs_stats, "cpu_ns", M.TOP)) do
    T.by_cpu[i] = {p.name, p.pid, p.cpu_ns, p.slices, p.idx}
  end
  T.by_events = {}
  for i, p in ipairs(top(m.procs_stats, "events", M.TOP)) do
    T.by_events[i] = {p.name, p.pid, p.events, p.idx}
  end
  T.tcp, T.tcp_events, T.tcp_note = tcp_tables(m.tcp, m.t0)
  local types = {}
  for i, ty in ipairs(m.types) do types[i] = ty end
  table.sort(types, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  T.types = types
  d.tables = T
  d.types = m.types
  for _, g in ipairs(d.groups) do json.object(g) end
  for _, c in ipairs(d.cpus) do json.object(c) end
  return json.object(d)
end

--- The whole page as a list of strings.
-- @tparam table d `data`'s result
-- @treturn {string,...}
function M.render(d)
  local title = "kernellogger report: " .. d.facts.file
  return {
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; ",
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
    "<title>", M.escape(title), "</title>\n<style>", page.CSS, "</style>\n",
    "<script>", page.ONERROR, "</script>\n</head>\n<body>\n",
    "<header><h1>kernellogger report<span class=\"file\">", M.escape(d.facts.file),
    "</span></h1></header>\n<main>\n",
    "<ul id=\"kl-errors\" hidden></ul>\n",
    "<section class=\"card\"><h2>Capture</h2><div class=\"facts\" id=\"kl-facts\"></div></section>\n",
    "<section class=\"card\"><h2>Timeline<small>what ran on each CPU, and the events by group",
    "</small></h2>\n<div class=\"toolbar\"><button id=\"kl-zin\" title=\"zoom in\">+</button>",
    "<button id=\"kl-zout\" title=\"zoom out\">−</button><button id=\"kl-left\">◀</button>",
    "<button id=\"kl-right\">▶</button><button id=\"kl-reset\">all</button>",
    "<span class=\"range\" id=\"kl-range\"></span><span class=\"hint\">wheel: zoom · drag: pan",
    " · double-click: zoom in · hover: details</span></div>\n",
    "<div id=\"kl-timeline-wrap\"><canvas id=\"kl-timeline\"></canvas>",
    "<div id=\"kl-tip\" hidden></div></div>\n",
    "<div class=\"legend\" id=\"kl-legend\"></div></section>\n",
    "<section class=\"card\"><h2>Events per second<small>by group</small></h2>",
    "<div class=\"rates\" id=\"kl-rates\"></div></section>\n",
    "<div class=\"grid2\">",
    "<section class=\"card\"><h2>Processes by CPU time</h2><div id=\"kl-by-cpu\"></div></section>\n",
    "<section class=\"card\"><h2>Processes by events</h2><div id=\"kl-by-events\"></div></section>\n",
    "</div>\n",
    "<section class=\"card\"><h2>TCP connections<small id=\"kl-tcp-note\"></small></h2>",
    "<div id=\"kl-tcp\"></div><h2 style=\"margin-top:14px\">Resets and retransmits</h2>",
    "<div id=\"kl-tcp-events\"></div></section>\n",
    "<section class=\"card\"><h2>Event types</h2><div id=\"kl-types\"></div></section>\n",
    "</main>\n<footer>written by kernellogger · one file, no network</footer>\n",
    "<pre id=\"kl-summary\"></pre>\n",
    "<script type=\"application/json\" id=\"kl-data\">", json.encode(d), "</script>\n",
    "<script>", page.JS, "</script>\n</body>\n</html>\n",
  }
end

-- The options of `write`, with their kinds (`outfile.check_args`).
local OPTIONS = {overwrite = "boolean", title = "name", buckets = "count",
                 exact_slices = "count", exact_marks = "count", rate_bins = "count"}

--- Write the HTML report of a capture.
-- @tparam Trace|string trace an open Trace, or a capture file's path
-- @string path the HTML file to write (atomically, mode 0600; an existing
--   symbolic link or folder is refused)
-- @tparam[opt] table opts `overwrite` (boolean: replace an existing file),
--   `title` (the name shown for the capture; default its path), and
--   `kernellogger.timeline`'s `buckets`, `exact_slices`, `exact_marks`,
--   `rate_bins` (positive integers); another key or a wrong type raises
-- @treturn[1] table what was written: `bytes`, `cpus`, `groups`, `events`
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string code (`bad_path`, `already_exists`, `not_found`,
--   `disk_full`, `access_denied`, `io`, ...)
function M.write(trace, path, opts)
  local name
  name, opts = outfile.check_args("kernellogger.html.write", trace, path, opts, OPTIONS)
  return outfile.with_trace(trace, path, opts, function(t)
    local m = timeline.build(t, opts)
    local d = M.data(m, opts.title or name)
    local parts = M.render(d)
    local bytes = 0
    for _, s in ipairs(parts) do bytes = bytes + #s end
    local ok, err, code = outfile.write(path, function(f)
      for _, s in ipairs(parts) do f:write(s) end
    end, opts)
    if not ok then return nil, err, code end
    return {bytes = bytes, cpus = #m.cpus, groups = #m.groups, events = m.events}
  end)
end

return M
