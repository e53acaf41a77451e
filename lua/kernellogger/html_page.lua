--- The static parts of the HTML report: its style sheet and its script.
--
-- `kernellogger.html` writes them around the capture's data (a JSON document
-- in a `<script type="application/json">` element). The script reads the data
-- with `JSON.parse` and puts every string from the capture into the page with
-- `textContent`, never as markup. Nothing is loaded from the network.
-- @module kernellogger.html_page

-- The style sheet and the script are JavaScript and CSS, not Lua: their lines
-- follow those languages' layout.
-- luacheck: no max line length
local M = {}

M.CSS = [[
:root{--bg:#f5f6f8;--card:#fff;--ink:#1d2330;--mute:#677085;--line:#e3e6ec;--accent:#2f6fde;--lost:#d62f2f}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:18px;font-weight:600;letter-spacing:.2px}
header h1 .file{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-weight:400;color:#b8c4dc;margin-left:8px}
main{padding:16px 24px 40px;max-width:1600px;margin:0 auto}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:0 0 16px}
.card h2{margin:0 0 10px;font-size:15px;font-weight:600}
.card h2 small{font-weight:400;color:var(--mute);margin-left:6px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px 16px}
.fact .k{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.fact .v{font-size:16px;font-variant-numeric:tabular-nums;word-break:break-all}
.fact.wide{grid-column:span 3}.fact.half{grid-column:span 2}
.fact.bad .v{color:var(--lost);font-weight:600}
.toolbar{display:flex;gap:6px;align-items:center;margin-bottom:8px;flex-wrap:wrap}
.toolbar button{border:1px solid var(--line);background:#fff;border-radius:5px;padding:3px 10px;cursor:pointer;font:inherit}
.toolbar button:hover{border-color:var(--accent);color:var(--accent)}
.toolbar .range{color:var(--mute);margin-left:8px;font-variant-numeric:tabular-nums}
.toolbar .hint{color:var(--mute);margin-left:auto;font-size:12px}
#kl-timeline-wrap{position:relative}
#kl-timeline{display:block;width:100%;cursor:grab;border-top:1px solid var(--line)}
#kl-timeline.drag{cursor:grabbing}
#kl-tip{position:absolute;pointer-events:none;background:rgba(29,35,48,.95);color:#fff;padding:6px 9px;border-radius:5px;font-size:12px;max-width:460px;white-space:pre-wrap;word-break:break-word;z-index:5}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:8px;font-size:12px;color:var(--mute)}
.legend span i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.rates{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.rate .t{display:flex;justify-content:space-between;font-size:12px;color:var(--mute)}
.rate .t b{color:var(--ink);font-weight:600}
.rate canvas{width:100%;height:56px;display:block;background:#fafbfc;border:1px solid var(--line);border-radius:4px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mute);font-weight:600;font-size:12px;position:sticky;top:0;background:var(--card)}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.m{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.scroll{max-height:420px;overflow:auto}
.bar{display:inline-block;height:8px;background:var(--accent);opacity:.55;border-radius:2px;vertical-align:0}
.empty{color:var(--mute);font-style:italic}
.sw{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:6px}
#kl-errors{background:#fde8e8;color:#8a1c1c;border:1px solid #f3b5b5;border-radius:8px;padding:8px 12px 8px 28px;margin:0 0 16px}
#kl-summary{display:none}
footer{color:var(--mute);font-size:12px;text-align:center;padding:8px}
]]

M.ONERROR = [[
window.onerror = function (msg, src, line) {
  var box = document.getElementById("kl-errors");
  if (!box) return false;
  box.hidden = false;
  var li = document.createElement("li");
  li.textContent = String(msg) + (line ? " (line " + line + ")" : "");
  box.appendChild(li);
  return false;
};
]]

M.JS = [==[
(function () {
"use strict";
var D = JSON.parse(document.getElementById("kl-data").textContent);
var $ = function (id) { return document.getElementById(id); };
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function thousands(n) { return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
function dur(ns) {
  var a = Math.abs(ns);
  if (a < 1e3) return ns.toFixed(0) + " ns";
  if (a < 1e6) return (ns / 1e3).toFixed(a < 1e4 ? 2 : 1) + " µs";
  if (a < 1e9) return (ns / 1e6).toFixed(a < 1e7 ? 2 : 1) + " ms";
  return (ns / 1e9).toFixed(a < 1e10 ? 3 : 2) + " s";
}
function hash(s) { var h = 2166136261; for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return h >>> 0; }
// colours by process name: the names that used the most CPU get a palette of
// distinct colours, in that order; the others a muted colour from their name
var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
               "#ff9da7", "#3b5b92", "#8cd17d", "#d37295", "#499894", "#f1ce63", "#a0cbe8", "#86bcb6"];
var nameColour = {}, ranked = [];
D.tables.by_cpu.forEach(function (r) { if (!(r[0] in nameColour) && ranked.length < PALETTE.length) { nameColour[r[0]] = PALETTE[ranked.length]; ranked.push(r[0]); } });
var colour = D.procs.map(function (p) {
  if (p[0] in nameColour) return nameColour[p[0]];
  var h = hash(p[0]);
  return "hsl(" + (h % 360) + "," + (22 + (h >> 9) % 18) + "%," + (62 + (h >> 17) % 14) + "%)";
});
var GROUP_COLOURS = ["#2f6fde", "#e07b24", "#2a9d6f", "#9b4dca", "#c2407a", "#0f8fa8", "#8c6d1f", "#5566aa", "#b0413e", "#3f8f3f"];
function procLabel(i) { var p = D.procs[i]; return p ? p[0] + " (pid " + p[1] + ")" : "?"; }

/* ---- facts ---- */
function facts() {
  var f = D.facts, box = $("kl-facts");
  var rows = [["file", f.file], ["format", f.format + (f.version ? " v" + f.version : "")],
    ["CPUs", f.cpus], ["clock", f.clock || "(not recorded)"], ["span", f.empty ? "empty capture" : dur(D.span)],
    ["events", thousands(f.events)], ["event types", thousands(f.types)],
    ["lost", f.lost_markers ? thousands(f.lost) + " in " + f.lost_markers + " drop" + (f.lost_markers == 1 ? "" : "s") + (f.lost_unknown ? " (" + f.lost_unknown + " uncounted)" : "") : "none"],
    ["first", f.first || "—"], ["last", f.last || "—"]];
  if (f.skipped) rows.push(["skipped", thousands(f.skipped) + " damaged record" + (f.skipped == 1 ? "" : "s")]);
  rows.forEach(function (r) {
    var d = el("div", "fact" + (r[0] === "lost" && f.lost_markers ? " bad" : "") + (r[0] === "file" ? " wide" : r[0] === "first" || r[0] === "last" || r[0] === "lost" ? " half" : ""));
    d.appendChild(el("div", "k", r[0]));
    d.appendChild(el("div", "v", r[1]));
    box.appendChild(d);
  });
}

/* ---- timeline ---- */
var cv = $("kl-timeline"), ctx = cv.getContext("2d"), tip = $("kl-tip");
var LABEL = 132, AXIS = 26, GAP = 6;
var lanes = [], view = {a: 0, b: D.span}, W = 0, H = 0, dpr = window.devicePixelRatio || 1;
var cpuH = Math.max(10, Math.min(26, Math.floor(420 / Math.max(1, D.cpus.length))));
function layout() {
  lanes = [];
  var y = AXIS;
  if (D.lost.length) { lanes.push({kind: "lost", y: y, h: 12, label: "lost events"}); y += 12 + GAP; }
  D.cpus.forEach(function (c) { lanes.push({kind: "cpu", y: y, h: cpuH, label: "CPU " + c.cpu, cpu: c}); y += cpuH + 1; });
  if (D.cpus.length) y += GAP;
  D.groups.forEach(function (g, gi) {
    if (!g.lane) return;
    lanes.push({kind: "group", y: y, h: 16, label: g.name, g: g, colour: GROUP_COLOURS[gi % GROUP_COLOURS.length]});
    y += 17;
  });
  H = y + 4;
}
function xOf(t) { return LABEL + (t - view.a) / (view.b - view.a) * (W - LABEL - 8); }
function tOf(x) { return view.a + (x - LABEL) / (W - LABEL - 8) * (view.b - view.a); }
function lowerBound(arr, stride, t) { // first entry whose start >= t (arr sorted by start)
  var lo = 0, hi = arr.length / stride;
  while (lo < hi) { var mid = (lo + hi) >> 1; if (arr[mid * stride] < t) lo = mid + 1; else hi = mid; }
  return lo;
}
function niceStep(range, px) {
  var raw = range / Math.max(1, px / 110), p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}
function drawAxis() {
  if (D.facts.empty) return;  /* no time to show */
  var step = niceStep(view.b - view.a, W - LABEL);
  ctx.fillStyle = "#677085"; ctx.strokeStyle = "#eceef2"; ctx.font = "11px system-ui,sans-serif"; ctx.textBaseline = "middle";
  for (var t = Math.ceil(view.a / step) * step; t <= view.b; t += step) {
    var x = Math.round(xOf(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, AXIS - 6); ctx.lineTo(x, H); ctx.stroke();
    ctx.fillText(dur(t), x + 3, AXIS / 2);
  }
}
function drawCpu(l) {
  var c = l.cpu, bw = D.bucket_ns, y = l.y, h = l.h;
  ctx.fillStyle = "#f1f3f6"; ctx.fillRect(LABEL, y, W - LABEL - 8, h);
  var m = c.merged, n = m.length / 3;
  for (var i = lowerBound(m, 3, Math.floor(view.a / bw) - 1); i < n; i++) {
    var b = m[i * 3]; if (b * bw > view.b) break;
    var x0 = xOf(b * bw), x1 = xOf((b + 1) * bw), bh = Math.max(1, h * m[i * 3 + 2] / 1000);
    ctx.fillStyle = colour[m[i * 3 + 1]]; ctx.globalAlpha = 0.8;
    ctx.fillRect(x0, y + h - bh, Math.max(1, x1 - x0), bh);
  }
  ctx.globalAlpha = 1;
  var s = c.slices, k = s.length / 3, lastPx = -1;
  // the slices of a CPU never overlap: only the one before the first in view can reach into it
  var start = Math.max(0, lowerBound(s, 3, view.a) - 1);
  for (var j = start; j < k; j++) {
    var a = s[j * 3]; if (a > view.b) break;
    var e = a + s[j * 3 + 1]; if (e < view.a) continue;
    var xa = xOf(a), xe = xOf(e), px = Math.floor(xa);
    if (xe - xa < 1 && px === lastPx) continue;
    lastPx = px;
    ctx.fillStyle = colour[s[j * 3 + 2]];
    ctx.fillRect(xa, y, Math.max(1, xe - xa - (xe - xa > 4 ? 1 : 0)), h);  // a gap between wide slices
  }
}
function drawGroup(l) {
  var g = l.g, y = l.y, h = l.h;
  ctx.fillStyle = "#f7f8fa"; ctx.fillRect(LABEL, y, W - LABEL - 8, h);
  ctx.fillStyle = l.colour;
  var bw = D.bucket_ns;
  var perPx = (view.b - view.a) / (W - LABEL - 8);
  if (g.marks && (perPx < bw * 2 || !g.buckets.length)) {
    var lastPx = -1;
    g.marks.forEach(function (mk) {
      if (mk[0] < view.a || mk[0] > view.b) return;
      var px = Math.floor(xOf(mk[0])); if (px === lastPx) return; lastPx = px;
      ctx.fillRect(px, y + 2, 2, h - 4);
    });
    return;
  }
  var max = 1, bk = g.buckets;
  for (var i = 1; i < bk.length; i += 2) if (bk[i] > max) max = bk[i];
  for (var j = 0; j < bk.length; j += 2) {
    var t = bk[j] * bw; if (t + bw < view.a || t > view.b) continue;
    var x0 = xOf(t), x1 = xOf(t + bw);
    ctx.globalAlpha = 0.25 + 0.75 * Math.log(1 + bk[j + 1]) / Math.log(1 + max);
    ctx.fillRect(x0, y + 2, Math.max(2, x1 - x0), h - 4);
  }
  ctx.globalAlpha = 1;
}
function drawLost(l) {
  var bw = D.bucket_ns;
  D.lost.forEach(function (e) {
    var t = (e[0] + 0.5) * bw; if (t < view.a || t > view.b) return;
    var x = Math.round(xOf(t)) + 0.5;
    ctx.strokeStyle = "rgba(214,47,47,.55)"; ctx.beginPath(); ctx.moveTo(x, l.y + l.h); ctx.lineTo(x, H); ctx.stroke();
    ctx.fillStyle = "#d62f2f"; ctx.beginPath(); ctx.moveTo(x - 5, l.y); ctx.lineTo(x + 5, l.y); ctx.lineTo(x, l.y + l.h); ctx.fill();
  });
}
function draw() {
  W = cv.clientWidth || 1200;
  cv.width = Math.round(W * dpr); cv.height = Math.round(H * dpr); cv.style.height = H + "px";
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  drawAxis();
  lanes.forEach(function (l) { if (l.kind === "cpu") drawCpu(l); else if (l.kind === "group") drawGroup(l); });
  lanes.forEach(function (l) { if (l.kind === "lost") drawLost(l); });
  ctx.fillStyle = "#fff"; ctx.fillRect(0, AXIS - 4, LABEL - 4, H);
  ctx.font = "12px system-ui,sans-serif"; ctx.textBaseline = "middle";
  lanes.forEach(function (l) {
    ctx.fillStyle = l.kind === "lost" ? "#d62f2f" : l.kind === "cpu" ? "#1d2330" : "#3b4356";
    ctx.fillText(l.label, 6, l.y + l.h / 2 + 0.5, LABEL - 12);
  });
  $("kl-range").textContent = D.facts.empty ? "empty capture" : dur(view.a) + " – " + dur(view.b) + "  (" + dur(view.b - view.a) + " shown)" +
    (D.merged ? " · CPU slices shorter than " + dur(D.bucket_ns) + " merged" : "");
}
function zoom(f, x) {
  var t = tOf(x === undefined ? (LABEL + W) / 2 : x), span = view.b - view.a;
  var ns = Math.min(D.span, Math.max(1000, span * f));
  var a = t - (t - view.a) * ns / span;
  a = Math.max(0, Math.min(D.span - ns, a));
  view = {a: a, b: a + ns}; draw();
}
function pan(dx) {
  var span = view.b - view.a, a = view.a - dx / (W - LABEL - 8) * span;
  a = Math.max(0, Math.min(D.span - span, a));
  view = {a: a, b: a + span}; draw();
}
function hit(x, y) {
  var l = null;
  lanes.forEach(function (c) { if (y >= c.y && y < c.y + c.h) l = c; });
  if (!l || x < LABEL) return null;
  var t = tOf(x), tol = 4 * (view.b - view.a) / (W - LABEL - 8), bw = D.bucket_ns, b = Math.floor(t / bw);
  if (l.kind === "cpu") {
    var s = l.cpu.slices, i = lowerBound(s, 3, t + 1) - 1;
    for (var j = i; j >= Math.max(0, i - 64); j--) {
      if (s[j * 3] <= t + tol && s[j * 3] + s[j * 3 + 1] >= t - tol) {
        return l.label + "\n" + procLabel(s[j * 3 + 2]) + "\nran " + dur(s[j * 3 + 1]) + " from " + dur(s[j * 3]);
      }
    }
    var m = l.cpu.merged, k = lowerBound(m, 3, b);
    if (k * 3 < m.length && m[k * 3] === b) {
      return l.label + " at " + dur(b * bw) + " (merged " + dur(bw) + ")\nmostly " + procLabel(m[k * 3 + 1]) + "\nbusy " + (m[k * 3 + 2] / 10).toFixed(1) + "% of the bucket";
    }
    return l.label + " at " + dur(t) + "\nidle";
  }
  if (l.kind === "group") {
    var g = l.g;
    if (g.marks) {
      var best = null, bd = tol;
      g.marks.forEach(function (mk) { var d = Math.abs(mk[0] - t); if (d <= bd) { bd = d; best = mk; } });
      if (best) return D.types[best[1]][0] + " at " + dur(best[0]) + "\n" + procLabel(best[2]) + (best[3] ? "\n" + best[3] : "");
    }
    var bk = g.buckets;
    for (var q = 0; q < bk.length; q += 2) {
      if (Math.abs(bk[q] - b) <= Math.max(1, tol / bw)) return g.name + ": " + thousands(bk[q + 1]) + (bk[q + 1] === 1 ? " event in " : " events in ") + dur(bk[q] * bw) + " – " + dur((bk[q] + 1) * bw);
    }
    return null;
  }
  var out = [];
  D.lost.forEach(function (e) { if (Math.abs((e[0] + 0.5) * bw - t) <= tol + bw) out.push("CPU " + e[1] + ": " + (e[2] ? thousands(e[2]) + " events lost" : "events lost (uncounted)") + " at " + dur(e[0] * bw)); });
  return out.length ? out.join("\n") : null;
}
function timeline() {
  layout(); draw();
  var drag = null;
  cv.addEventListener("wheel", function (e) { e.preventDefault(); var r = cv.getBoundingClientRect(); zoom(e.deltaY > 0 ? 1.25 : 0.8, e.clientX - r.left); }, {passive: false});
  cv.addEventListener("mousedown", function (e) { drag = e.clientX; cv.classList.add("drag"); });
  window.addEventListener("mouseup", function () { drag = null; cv.classList.remove("drag"); });
  cv.addEventListener("mousemove", function (e) {
    var r = cv.getBoundingClientRect(), x = e.clientX - r.left, y = e.clientY - r.top;
    if (drag !== null) { pan(e.clientX - drag); drag = e.clientX; tip.hidden = true; return; }
    var text = hit(x, y);
    if (!text) { tip.hidden = true; return; }
    tip.textContent = text; tip.hidden = false;
    tip.style.left = Math.min(x + 14, W - 300) + "px"; tip.style.top = (y + 14) + "px";
  });
  cv.addEventListener("mouseleave", function () { tip.hidden = true; });
  cv.addEventListener("dblclick", function (e) { var r = cv.getBoundingClientRect(); zoom(0.5, e.clientX - r.left); });
  $("kl-zin").onclick = function () { zoom(0.5); };
  $("kl-zout").onclick = function () { zoom(2); };
  $("kl-left").onclick = function () { pan((W - LABEL) / 3); };
  $("kl-right").onclick = function () { pan(-(W - LABEL) / 3); };
  $("kl-reset").onclick = function () { view = {a: 0, b: D.span}; draw(); };
  window.addEventListener("resize", draw);
  var legend = $("kl-legend");
  ranked.forEach(function (name) {
    var sp = el("span"), i = el("i"); i.style.background = nameColour[name];
    sp.appendChild(i); sp.appendChild(document.createTextNode(name)); legend.appendChild(sp);
  });
}

/* ---- rates ---- */
function rates() {
  var box = $("kl-rates"), binS = D.rate_bin_ns / 1e9, n = 0;
  D.groups.forEach(function (g, gi) {
    var d = el("div", "rate"), t = el("div", "t"), max = 0;
    g.rate.forEach(function (v) { if (v > max) max = v; });
    t.appendChild(el("b", null, g.name));
    t.appendChild(el("span", null, thousands(g.count) + " events · peak " + thousands(max / binS) + "/s"));
    var c = el("canvas"); d.appendChild(t); d.appendChild(c); box.appendChild(d);
    var w = c.clientWidth || 340, h = 56; c.width = w * dpr; c.height = h * dpr;
    var x = c.getContext("2d"); x.setTransform(dpr, 0, 0, dpr, 0, 0);
    x.fillStyle = GROUP_COLOURS[gi % GROUP_COLOURS.length]; x.globalAlpha = 0.75;
    var bwid = w / g.rate.length;
    g.rate.forEach(function (v, i) { if (!v) return; var bh = Math.max(1, (h - 4) * v / max); x.fillRect(i * bwid, h - bh, Math.max(1, bwid - 0.3), bh); });
    n++;
  });
  if (!n) box.appendChild(el("div", "empty", "no events"));
  return n;
}

/* ---- tables ---- */
function table(id, head, rows, fmt) {
  var box = $(id), tb = el("table"), tr = el("tr");
  head.forEach(function (h) { tr.appendChild(el("th", h[1], h[0])); });
  var thead = el("thead"); thead.appendChild(tr); tb.appendChild(thead);
  var body = el("tbody");
  rows.forEach(function (r) {
    var row = el("tr");
    fmt(r).forEach(function (c, i) {
      var td = el("td", head[i][1]);
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      row.appendChild(td);
    });
    body.appendChild(row);
  });
  tb.appendChild(body);
  if (!rows.length) { box.appendChild(el("div", "empty", "none in this capture")); return 0; }
  var sc = el("div", "scroll"); sc.appendChild(tb); box.appendChild(sc);
  return rows.length;
}
function share(v, total) {
  var f = el("span"), pct = total > 0 ? 100 * v / total : 0, b = el("span", "bar");
  b.style.width = Math.max(1, Math.round(pct * 0.6)) + "px";
  f.appendChild(b); f.appendChild(document.createTextNode(" " + pct.toFixed(1) + "%"));
  return f;
}
function named(name, pi) {
  var f = el("span"), s = el("span", "sw"); s.style.background = colour[pi];
  f.appendChild(s); f.appendChild(document.createTextNode(name)); return f;
}
function tables() {
  var T = D.tables, counts = {};
  var cpuTotal = D.span * Math.max(1, D.cpus.length);
  counts.by_cpu = table("kl-by-cpu", [["process"], ["pid", "n"], ["CPU time", "n"], ["of all CPUs"], ["slices", "n"]], T.by_cpu,
    function (r) { return [named(r[0], r[4]), r[1], dur(r[2]), share(r[2], cpuTotal), thousands(r[3])]; });
  counts.by_events = table("kl-by-events", [["process"], ["pid", "n"], ["events", "n"], ["share"]], T.by_events,
    function (r) { return [named(r[0], r[3]), r[1], thousands(r[2]), share(r[2], D.facts.events)]; });
  counts.tcp = table("kl-tcp", [["t", "n"], ["from", "m"], [""], ["to", "m"], ["process"], ["retx", "n"], ["rst", "n"], ["states", "m"]], T.tcp,
    function (r) { return [dur(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]]; });
  counts.tcp_events = table("kl-tcp-events", [["t", "n"], ["event"], ["from", "m"], ["to", "m"], ["process"]], T.tcp_events,
    function (r) { return [dur(r[0]), r[1], r[2], r[3], r[4]]; });
  counts.types = table("kl-types", [["event"], ["group"], ["count", "n"], ["share"]], T.types,
    function (r) { return [r[0], r[2], thousands(r[1]), share(r[1], D.facts.events)]; });
  $("kl-tcp-note").textContent = T.tcp_note;
  return counts;
}

/* ---- a summary for tests and scripts: what was drawn ---- */
var pixels = null;
function painted(kind) { // coloured pixels (not the grey backgrounds) in the lanes of a kind
  if (!pixels) pixels = ctx.getImageData(0, 0, cv.width, cv.height).data;
  var n = 0, x0 = Math.round(LABEL * dpr), w = cv.width;
  lanes.forEach(function (l) {
    if (l.kind !== kind) return;
    for (var y = Math.round(l.y * dpr); y < Math.round((l.y + l.h) * dpr); y++) {
      for (var x = x0; x < w; x++) {
        var i = (y * w + x) * 4, hi = Math.max(pixels[i], pixels[i + 1], pixels[i + 2]), lo = Math.min(pixels[i], pixels[i + 1], pixels[i + 2]);
        if (pixels[i + 3] > 0 && hi - lo > 40) n++;
      }
    }
  });
  return n;
}
facts();
timeline();
var rateCharts = rates(), rows = tables();
var sum = {cpu_lanes: 0, group_lanes: 0, lost_lanes: 0, rate_charts: rateCharts, rows: rows,
           painted: {cpu: painted("cpu"), group: painted("group"), lost: painted("lost")},
           errors: $("kl-errors").children.length};
sum.labels = lanes.map(function (l) { return l.label; });
// what hovering the middle of each lane would show (the tooltip's text)
sum.hover = lanes.map(function (l) { return hit((LABEL + W) / 2, l.y + l.h / 2); });
lanes.forEach(function (l) { sum[l.kind + "_lanes"]++; });
sum.ms = Math.round(performance.now());  // since the navigation began: parse, data, drawing
$("kl-summary").textContent = JSON.stringify(sum);
document.body.setAttribute("data-ready", "1");
})();
]==]

return M
