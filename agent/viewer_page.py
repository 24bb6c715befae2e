r"""The viewer's page: one HTML file with its CSS and JavaScript inline (no server, no network, no CDN).

It loads `data/index.js` with a `<script src>` (browsers refuse `fetch()` of `file://`), draws the list from
its columns, fetches `data/text.js` for search once the list is up, and an episode's chunk when one is opened.
Every piece of data reaches the DOM as text (`append(string)`, `textContent`): never as markup. Filters live in
the URL's hash (`#category=search&status=ok&reward=fail&ep=TASK%230`), so a link can open the page filtered.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>toolgym trajectories</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa;font-size:14px}
header{background:#23324a;color:#fff;padding:8px 16px}
header h1{font-size:17px;margin:0 0 2px}
#summary{font-size:12px;opacity:.85}
main{padding:10px 16px}
#filters{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:end;margin-bottom:8px}
#filters label{display:flex;flex-direction:column;font-size:11px;color:#555}
#filters select,#filters input{font-size:13px;padding:2px}
#q{width:260px}
table.list{border-collapse:collapse;width:100%;background:#fff}
table.list th,table.list td{border-bottom:1px solid #e3e3e3;padding:3px 6px;text-align:left;font-size:13px;vertical-align:top}
table.list tr:hover td{background:#eef4ff}
table.list td.snip{color:#555;max-width:520px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.ok{color:#0a7d2c;font-weight:600}.bad{color:#b00020;font-weight:600}.mid{color:#b26a00;font-weight:600}
.pager{margin:8px 0;display:flex;gap:8px;align-items:center}
button{font-size:13px}
.badge{display:inline-block;border-radius:3px;padding:0 5px;font-size:11px;background:#e8e8ee;margin-right:4px}
.badge.err{background:#fde2e4;color:#8a0016}
.badge.drop{background:#fff1cc;color:#6b4b00}
.cols{display:grid;gap:14px}
.cols.two{grid-template-columns:1fr 1fr}
.side{background:#fff;border:1px solid #ddd;border-radius:4px;padding:8px 10px;min-width:0}
.side h2{font-size:15px;margin:2px 0 6px}
.facts{font-size:12px;color:#333;margin:4px 0}
.item{border-left:3px solid #ccc;padding:4px 8px;margin:8px 0}
.item.user{border-color:#3b6fd6}.item.system{border-color:#999}.item.step{border-color:#2a9d5c}
.item.malformed{border-color:#b00020;background:#fff5f5}.item.final{border-color:#6c3bd6}
.item h3{font-size:12px;margin:0 0 3px;color:#444;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;margin:2px 0;font-size:12px;background:#f4f4f6;padding:4px 6px;border-radius:3px}
.call{margin:4px 0 4px 6px;border:1px solid #e0e0e0;border-radius:3px;padding:3px 6px}
.call .name{font-family:monospace;font-weight:600}
.bar{display:flex;height:10px;width:100%;max-width:420px;background:#eee;border-radius:2px;overflow:hidden;margin:3px 0}
.bar span{display:block;height:100%}
.m{background:#4c78a8}.t{background:#f58518}.l{background:#aaa}
.legend span{display:inline-block;width:9px;height:9px;margin:0 3px 0 8px}
details>summary{cursor:pointer;font-size:12px;color:#444}
.muted{color:#777;font-size:12px}
a{color:#1a56c4}
</style></head>
<body>
<header><h1 id="title">toolgym trajectories</h1><div id="summary">loading...</div></header>
<main>
<section id="list-view">
<div id="filters"></div>
<div class="pager" id="pager-top"></div>
<table class="list"><thead id="list-head"></thead><tbody id="list-body"></tbody></table>
<div class="pager" id="pager-bottom"></div>
</section>
<section id="episode-view" hidden></section>
<noscript>This page needs JavaScript.</noscript>
</main>
<script>
"use strict";
(function () {
const TG = (window.TG = {});
const PAGE_SIZE = 100;
let IX = null, R = null, T = null, N = 0, TEXT = null, LOW = null, KEYS = null, CURRENT = [], FIRST = true, TOKEN = 0;
const chunks = new Map(), waiting = new Map();
const $ = (id) => document.getElementById(id);

// Every node is built here: strings become text nodes, never markup.
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  if (props) for (const k in props) {
    const v = props[k];
    if (v == null || v === false) continue;
    if (k === "cls") e.className = v;
    else if (k === "on") for (const ev in v) e.addEventListener(ev, v[ev]);
    else if (k === "href") e.setAttribute("href", "#" + String(v));
    else e.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const pre = (text) => el("pre", null, text == null ? "" : String(text));
function pretty(args) { try { return JSON.stringify(JSON.parse(args), null, 1); } catch (e) { return args; } }
const fmt = (x, d) => (x == null ? "-" : Number(x).toFixed(d));
const side = (r, s) => (IX.pairs ? IX.pairs[s][r] : s === 0 ? r : -1);
const either = (r) => { const a = side(r, 0); return a >= 0 ? [0, a] : [1, side(r, 1)]; };
const keyOf = (s, i) => T.task[R[s].cols.task[i]] + "#" + R[s].cols.sample[i];
const rowKey = (r) => { const [s, i] = either(r); return keyOf(s, i); };
function rewardClass(reward, success) { return success ? "ok" : reward > 0 ? "mid" : "bad"; }

function params() { return new URLSearchParams(location.hash.slice(1)); }
function setParams(p) { const h = p.toString(); if (location.hash.slice(1) !== h) location.hash = h; else route(); }

TG.index = function (data) {
  IX = data; R = data.runs; T = data.tables;
  N = IX.pairs ? IX.pairs[0].length : R[0].cols.task.length;
  const names = R.map((r) => r.name + " (" + r.policy.join(", ") + ")");
  $("title").textContent = (R.length > 1 ? "compare: " : "") + R.map((r) => r.name).join(" vs ");
  document.title = $("title").textContent + " - toolgym";
  $("summary").textContent = R.map((r, s) => {
    const c = r.cols, n = c.task.length; let ok = 0; for (let i = 0; i < n; i++) ok += c.success[i];
    return (R.length > 1 ? "ABCD"[s] + ": " : "") + names[s] + ": " + n + " episodes, " + (n ? (100 * ok / n).toFixed(1) : "0") + "% success";
  }).join("   |   ");
  buildFilters();
  window.addEventListener("hashchange", route);
  route();
};
TG.text = function (data) { TEXT = data; LOW = null; if ($("episode-view").hidden) renderList(); };
TG.chunk = function (dir, n, data) {
  const s = R.findIndex((r) => r.dir === dir), key = s + ":" + n;
  chunks.set(key, data);
  for (const [res, , j] of waiting.get(key) || []) res(data[j]);
  waiting.delete(key);
};
function loadText() {
  if (TEXT || document.getElementById("tg-text")) return;
  document.head.append(el("script", { src: "data/text.js", id: "tg-text" }));
}
function episode(s, i) {
  const n = Math.floor(i / IX.chunk), key = s + ":" + n, j = i % IX.chunk;
  if (chunks.has(key)) return Promise.resolve(chunks.get(key)[j]);
  return new Promise((res, rej) => {
    let w = waiting.get(key);
    if (!w) {
      waiting.set(key, (w = []));
      const sc = el("script", { src: "data/" + R[s].dir + "/" + String(n).padStart(4, "0") + ".js" });
      sc.onerror = () => { for (const [, fail] of waiting.get(key) || []) fail(new Error("cannot load " + sc.src)); waiting.delete(key); sc.remove(); };
      document.head.append(sc);
    }
    w.push([res, rej, j]);
  });
}

// --- filters ----------------------------------------------------------------------------------------------
const FILTERS = ["category", "domain", "difficulty", "status", "reward", "error", "stop", "flipped", "side", "sort"];
function counts(col, s) { const m = new Map(), c = R[s].cols[col]; for (const v of c) m.set(v, (m.get(v) || 0) + 1); return m; }
function select(name, label, options) {
  const sel = el("select", { id: "f-" + name, "data-filter": name, on: { change: applyControls } },
    el("option", { value: "" }, "all"), options.map(([v, text]) => el("option", { value: v }, text)));
  return el("label", null, label, sel);
}
function tableOptions(col, table) {
  const m = counts(col, 0);
  return table.map((name, id) => [name, id]).filter(([, id]) => m.has(id)).map(([name, id]) => [name, name + " (" + m.get(id) + ")"]);
}
function buildFilters() {
  const f = $("filters");
  const diffs = [...counts("difficulty", 0).entries()].sort((a, b) => a[0] - b[0]);
  const errs = counts("errors", 0), kinds = [];
  T.error.forEach((kind, b) => { let n = 0; for (const [mask, c] of errs) if (mask & (1 << b)) n += c; if (n) kinds.push([kind, kind + " (" + n + ")"]); });
  f.append(
    el("label", null, "search prompts, task ids, tools", el("input", { id: "q", type: "search", placeholder: "words...", on: { input: debounce(applyControls, 250) } })),
    select("category", "category", tableOptions("category", T.category)),
    select("domain", "domain", tableOptions("domain", T.domain)),
    select("difficulty", "difficulty", diffs.map(([d, n]) => [String(d), d + " (" + n + ")"])),
    select("status", "status", tableOptions("status", T.status)),
    select("reward", "reward", [["success", "success (reward 1)"], ["fail", "failed (reward < 1)"], ["partial", "partial (0 < reward < 1)"], ["zero", "zero"]]),
    select("error", "error kind", [["any", "any error"], ["none", "no error"], ...kinds]),
    select("stop", "stop reason", tableOptions("stop", T.stop)),
  );
  if (R.length > 1) {
    f.append(select("flipped", "flipped", [["any", "success differs"], ["fixed", "failed in A, passed in B"], ["broken", "passed in A, failed in B"], ["both", "in both runs"]]));
    f.append(select("side", "status/reward/error of", [["b", "run B"]]));
    $("f-side").firstChild.textContent = "run A";
  }
  f.append(select("sort", "sort", [["reward", "reward, lowest first"], ["steps", "steps, most first"], ["wall", "time, longest first"], ["calls", "tool calls, most first"]]));
  $("f-sort").firstChild.textContent = "task, sample";
  f.append(el("span", { id: "count", cls: "muted" }));
}
function debounce(fn, ms) { let t = 0; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }
function applyControls() {
  if ($("list-view").hidden) return; // a late keystroke's timer must not close the episode just opened
  const p = new URLSearchParams();
  const q = $("q").value.trim(); if (q) p.set("q", q);
  for (const name of FILTERS) { const c = $("f-" + name); if (c && c.value) p.set(name, c.value); }
  setParams(p);
}
function syncControls(p) {
  if (document.activeElement !== $("q")) $("q").value = p.get("q") || "";
  for (const name of FILTERS) { const c = $("f-" + name); if (c) c.value = p.get(name) || ""; }
}
function matcher(p) {
  const s = p.get("side") === "b" ? 1 : 0, checks = [];
  const task = (col, id) => (r) => { const [k, i] = either(r); return R[k].cols[col][i] === id; };
  for (const col of ["category", "domain"]) if (p.has(col)) checks.push(task(col, T[col].indexOf(p.get(col))));
  if (p.has("difficulty")) checks.push(task("difficulty", Number(p.get("difficulty"))));
  const C = R[s].cols, own = (test) => (r) => { const i = side(r, s); return i >= 0 && test(i); };
  for (const col of ["status", "stop"]) if (p.has(col)) { const id = T[col].indexOf(p.get(col)); checks.push(own((i) => C[col][i] === id)); }
  let reward = p.get("reward");
  if (p.get("success") === "1") reward = "success"; else if (p.get("success") === "0") reward = "fail";
  if (reward === "success") checks.push(own((i) => C.success[i] === 1));
  else if (reward === "fail") checks.push(own((i) => C.success[i] === 0));
  else if (reward === "partial") checks.push(own((i) => C.reward[i] > 0 && C.reward[i] < 1));
  else if (reward === "zero") checks.push(own((i) => C.reward[i] <= 0));
  const err = p.get("error");
  if (err === "any") checks.push(own((i) => C.errors[i] !== 0));
  else if (err === "none") checks.push(own((i) => C.errors[i] === 0));
  else if (err) { const bit = 1 << T.error.indexOf(err); checks.push(own((i) => (C.errors[i] & bit) !== 0)); }
  const flip = p.get("flipped");
  if (flip && R.length > 1) {
    const A = R[0].cols.success, B = R[1].cols.success;
    checks.push((r) => {
      const a = side(r, 0), b = side(r, 1);
      if (a < 0 || b < 0) return false;
      if (flip === "fixed") return !A[a] && B[b] === 1;
      if (flip === "broken") return A[a] === 1 && !B[b];
      if (flip === "both") return true;
      return A[a] !== B[b];
    });
  }
  const terms = (p.get("q") || "").toLowerCase().split(/\s+/).filter(Boolean);
  if (terms.length) {
    if (TEXT && !LOW) LOW = TEXT.map((t) => t[1].toLowerCase());
    const tools = T.tool.map((t) => t.toLowerCase()), tasks = T.task.map((t) => t.toLowerCase());
    checks.push((r) => terms.every((term) => {
      for (let s2 = 0; s2 < R.length; s2++) {
        const i = side(r, s2); if (i < 0) continue;
        const c = R[s2].cols, t = c.task[i];
        if (tasks[t].includes(term) || (LOW && LOW[t].includes(term))) return true;
        for (const id of c.tools[i]) if (tools[id].includes(term)) return true;
      }
      return false;
    }));
  }
  return (r) => { for (const c of checks) if (!c(r)) return false; return true; };
}
function filtered(p) {
  const ok = matcher(p), out = [];
  for (let r = 0; r < N; r++) if (ok(r)) out.push(r);
  const sort = p.get("sort"), s = p.get("side") === "b" ? 1 : 0, C = R[s].cols;
  const val = (r) => { const i = side(r, s); return i < 0 ? null : C[sort][i]; };
  if (sort === "reward") out.sort((a, b) => (val(a) ?? 2) - (val(b) ?? 2) || a - b);
  else if (sort && C[sort]) out.sort((a, b) => (val(b) ?? -1) - (val(a) ?? -1) || a - b);
  return out;
}

// --- the list ---------------------------------------------------------------------------------------------
function renderList() {
  if (!IX) return;
  const p = params();
  syncControls(p);
  CURRENT = filtered(p);
  const pages = Math.max(1, Math.ceil(CURRENT.length / PAGE_SIZE));
  const page = Math.min(pages, Math.max(1, Number(p.get("page")) || 1));
  $("count").textContent = CURRENT.length + " of " + N + " episodes" + ((p.get("q") && !TEXT) ? " (prompt text still loading: searched task ids and tools)" : "");
  const two = R.length > 1;
  const head = ["task", "sample", "category", "domain", "diff."];
  for (const r of R) head.push(...(two ? [r.dir.toUpperCase() + " reward", r.dir.toUpperCase() + " status", r.dir.toUpperCase() + " steps"] : ["reward", "status", "stop", "steps", "calls", "time (s)", "errors"]));
  head.push("prompt");
  $("list-head").replaceChildren(el("tr", null, head.map((h) => el("th", null, h))));
  const body = [];
  for (const r of CURRENT.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE)) {
    const [k, i] = either(r), c = R[k].cols, t = c.task[i];
    const q = params(); q.set("ep", keyOf(k, i));
    const cells = [el("td", null, el("a", { href: q.toString() }, T.task[t])), el("td", null, c.sample[i]),
      el("td", null, T.category[c.category[i]]), el("td", null, T.domain[c.domain[i]]), el("td", null, c.difficulty[i])];
    R.forEach((run, s) => {
      const j = side(r, s), C = run.cols;
      if (j < 0) { cells.push(el("td", { cls: "muted" }, "-"), el("td"), el("td")); if (!two) cells.push(el("td"), el("td"), el("td"), el("td")); return; }
      cells.push(el("td", { cls: rewardClass(C.reward[j], C.success[j]) }, fmt(C.reward[j], 2)), el("td", null, T.status[C.status[j]]));
      if (!two) cells.push(el("td", null, T.stop[C.stop[j]]));
      cells.push(el("td", null, C.steps[j]));
      if (!two) cells.push(el("td", null, C.calls[j]), el("td", null, fmt(C.wall[j], 2)), el("td", null, errorNames(C.errors[j]).join(" ")));
    });
    cells.push(el("td", { cls: "snip" }, TEXT ? TEXT[t][0] : ""));
    body.push(el("tr", { "data-row": r }, cells));
  }
  $("list-body").replaceChildren(...body);
  for (const id of ["pager-top", "pager-bottom"]) $(id).replaceChildren(pager(page, pages));
  if (FIRST) {
    FIRST = false;
    performance.mark("tg-first-list");
    window.TG_FIRST_LIST_MS = performance.now();
    setTimeout(loadText, 0);
  }
}
function errorNames(mask) { const out = []; T.error.forEach((k, b) => { if (mask & (1 << b)) out.push(k); }); return out; }
function pager(page, pages) {
  const go = (n) => () => { const p = params(); p.set("page", String(n)); setParams(p); };
  return el("span", null,
    el("button", { disabled: page <= 1 || null, on: { click: go(page - 1) } }, "previous"),
    " page " + page + " of " + pages + " ",
    el("button", { disabled: page >= pages || null, on: { click: go(page + 1) } }, "next"));
}

// --- an episode -------------------------------------------------------------------------------------------
function route() {
  if (!IX) return;
  const p = params(), key = p.get("ep");
  if (!key) { $("episode-view").hidden = true; $("list-view").hidden = false; renderList(); return; }
  $("list-view").hidden = true; $("episode-view").hidden = false;
  if (!KEYS) { KEYS = new Map(); for (let r = 0; r < N; r++) KEYS.set(rowKey(r), r); }
  if (FIRST) { FIRST = false; setTimeout(loadText, 0); }
  renderEpisode(KEYS.get(key), key, p);
}
function renderEpisode(r, key, p) {
  const view = $("episode-view"), token = ++TOKEN;
  const back = new URLSearchParams(p); back.delete("ep");
  const nav = el("div", { cls: "pager" }, el("a", { href: back.toString(), id: "back" }, "back to the list"));
  if (!CURRENT.length && r !== undefined) CURRENT = filtered(back);
  const at = CURRENT.indexOf(r);
  for (const [label, d] of [["previous", -1], ["next", 1]]) {
    const other = CURRENT[at + d];
    if (at >= 0 && other !== undefined) { const q = new URLSearchParams(back); q.set("ep", rowKey(other)); nav.append(el("a", { href: q.toString() }, label)); }
  }
  if (r === undefined) { view.replaceChildren(nav, el("p", null, "No episode " + key + " in this view.")); return; }
  const cols = el("div", { cls: "cols" + (R.length > 1 ? " two" : "") });
  view.replaceChildren(nav, cols);
  R.forEach((run, s) => {
    const box = el("div", { cls: "side", id: "side-" + run.dir }, el("p", { cls: "muted" }, "loading..."));
    cols.append(box);
    const i = side(r, s);
    if (i < 0) { box.replaceChildren(el("h2", null, run.name), el("p", { cls: "muted" }, "This run has no episode " + key + ".")); return; }
    episode(s, i).then((ep) => { if (token === TOKEN) box.replaceChildren(...episodeNodes(run, ep)); },
      (e) => { if (token === TOKEN) box.replaceChildren(el("p", { cls: "bad" }, String(e.message))); });
  });
}
function timingBar(model, tools, loop) {
  const sum = (model || 0) + (tools || 0) + (loop || 0) || 1, w = (x) => "width:" + (100 * (x || 0) / sum).toFixed(2) + "%";
  return el("div", { cls: "bar", title: "model " + fmt(model, 3) + " s, tools " + fmt(tools, 3) + " s, loop " + fmt(loop, 3) + " s" },
    el("span", { cls: "m", style: w(model) }), el("span", { cls: "t", style: w(tools) }), el("span", { cls: "l", style: w(loop) }));
}
function episodeNodes(run, ep) {
  const out = [];
  const rc = rewardClass(ep.reward, ep.success);
  out.push(el("h2", null, (R.length > 1 ? run.dir.toUpperCase() + ": " + run.name + " - " : "") + ep.key));
  out.push(el("div", { cls: "facts" },
    el("span", { cls: rc + " reward" }, "reward " + fmt(ep.reward, 3) + (ep.success ? " (success)" : "")),
    " · status " + ep.status + " · stop " + ep.stop_reason + " · " + ep.category + " / " + ep.domain + " · difficulty " + ep.difficulty +
    " · env " + ep.env_id + " · policy " + ep.policy + " · tokens " + ep.tokens[0] + " / " + ep.tokens[1] + " · infra retries " + ep.infra_retries));
  const tm = ep.timing;
  out.push(el("div", { cls: "facts timing" }, "time: " + fmt(ep.wall_s, 3) + " s wall; model " + fmt(tm.model_s, 3) + " s, tools " + fmt(tm.tools_s, 3) + " s, loop " + fmt(tm.loop_s, 3) + " s",
    el("span", { cls: "legend" }, el("span", { cls: "m" }), "model", el("span", { cls: "t" }), "tools", el("span", { cls: "l" }), "loop")));
  out.push(timingBar(tm.model_s, tm.tools_s, tm.loop_s));
  if (ep.error) out.push(el("div", { cls: "item malformed" }, el("h3", null, "episode error"), pre(ep.error)));
  const verdict = el("div", { cls: "item final verdict" }, el("h3", null, "verdict"));
  if (ep.verdict) {
    verdict.append(el("div", null, el("span", { cls: rc }, "reward " + fmt(ep.verdict.reward, 3)), " — ", el("span", { cls: "reason" }, ep.verdict.reason || "(no reason given)")));
    if (ep.verdict.turns.length) verdict.append(el("details", null, el("summary", null, "per user turn (" + ep.verdict.turns.length + ")"), ep.verdict.turns.map(pre)));
  } else verdict.append(el("div", { cls: "muted" }, "no verdict (the episode did not terminate)"));
  verdict.append(el("h3", null, "final answer"), ep.answer ? pre(ep.answer) : el("div", { cls: "muted" }, "none"));
  out.push(verdict);
  if (ep.tools.length) out.push(el("details", { cls: "facts" }, el("summary", null, "tools offered (" + ep.tools.length + ")"), el("div", null, ep.tools.join(", "))));
  for (const it of ep.items) out.push(itemNode(it));
  return out;
}
function itemNode(it) {
  if (it.t === "system") return el("details", { cls: "item system" }, el("summary", null, "system prompt"), pre(it.text));
  if (it.t === "user") return el("div", { cls: "item user" }, el("h3", null, "user turn " + it.turn + (it.name ? " (" + it.name + ")" : "")), pre(it.text));
  if (it.t === "tool") return el("div", { cls: "item step" }, el("h3", null, "tool result " + it.name + " (no matching call)"), pre(it.text));
  if (it.t === "malformed") return el("div", { cls: "item malformed" },
    el("h3", null, "step " + it.step + ": malformed output (went back to the model as an error, never reached the environment)"),
    pre(it.text), it.errors.map((e) => el("div", null, el("span", { cls: "badge err" }, "parse"), e)));
  const head = el("h3", null, it.step == null ? "assistant (no step record)" : "step " + it.step);
  if (it.model_s != null) head.append(" · model " + fmt(it.model_s, 3) + " s · tools " + fmt(it.tools_s, 3) + " s · loop " + fmt(it.loop_s, 3) + " s · tokens " + it.tokens[0] + " / " + it.tokens[1]);
  if (it.strategy) head.append(" · context: " + it.strategy);
  const box = el("div", { cls: "item step" }, head);
  if (it.model_s != null) box.append(timingBar(it.model_s, it.tools_s, it.loop_s));
  if (it.reasoning != null) {
    const summary = el("summary", null, "reasoning (" + it.reasoning.length + " characters)");
    if (it.dropped) summary.append(" ", el("span", { cls: "badge drop", title: "the thinking rule drops earlier reasoning when a new user message arrives" },
      "dropped from the context at user turn " + it.dropped[0] + " (message " + it.dropped[1] + ")"));
    else summary.append(" ", el("span", { cls: "badge" }, "kept in the context"));
    box.append(el("details", { cls: "reasoning" }, summary, pre(it.reasoning)));
  }
  if (it.text) box.append(pre(it.text));
  for (const c of it.calls) {
    const call = el("div", { cls: "call" }, el("span", { cls: "name" }, c.name), c.kind ? el("span", { cls: "badge err" }, c.kind) : null, pre(pretty(c.args)));
    call.append(c.result == null ? el("div", { cls: "muted" }, "no result recorded") : el("div", null, el("div", { cls: "muted" }, "result"), pre(c.result)));
    box.append(call);
  }
  for (const e of it.errors) box.append(el("div", null, el("span", { cls: "badge err" }, e.kind), e.detail));
  return box;
}
})();
</script>
<script src="data/index.js"></script>
</body></html>
"""
