// vigil's dashboard: reads the HTTP API and its event stream; no framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { me: null, tags: [], restarts: {}, lastSeq: 0, events: [], refresh: {} };
const HOUR = 3600 * 1000;
const BUCKETS = 24;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
  return e;
}

class Unauthorized extends Error {}

// On TCP the token lives in this tab only (sessionStorage) and goes in the Authorization header of
// every request: never in a cookie, which a browser would send to every port of the host.
const TOKEN_KEY = "vigil_token";

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (t) h["authorization"] = "Bearer " + t;
  return h;
}

async function api(path, opts) {
  const o = Object.assign({ credentials: "omit" }, opts || {});
  o.headers = authHeaders(o.headers);
  const r = await fetch(path, o);
  if (r.status === 401) throw new Unauthorized();
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// Writes are JSON: vigild refuses anything else, which is what keeps other sites from sending them.
function post(path, body) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
}

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function ago(ms) {
  return ms ? duration(Date.now() - ms) + " ago" : "never";
}

// Restarts of the last hour in BUCKETS bars.
function sparkline(times) {
  const ns = "http://www.w3.org/2000/svg";
  const w = 96, h = 18, bw = w / BUCKETS;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const counts = new Array(BUCKETS).fill(0);
  const now = Date.now();
  for (const t of times || []) {
    const age = now - t;
    if (age >= 0 && age < HOUR) counts[BUCKETS - 1 - Math.floor(age / (HOUR / BUCKETS))] += 1;
  }
  const max = Math.max(1, ...counts);
  const base = document.createElementNS(ns, "line");
  for (const [k, v] of [["x1", 0], ["x2", w], ["y1", h - 0.5], ["y2", h - 0.5]]) base.setAttribute(k, v);
  svg.append(base);
  counts.forEach((c, i) => {
    if (!c) return;
    const r = document.createElementNS(ns, "rect");
    const bh = Math.max(2, (c / max) * (h - 2));
    r.setAttribute("x", i * bw + 0.5);
    r.setAttribute("y", h - 1 - bh);
    r.setAttribute("width", bw - 1);
    r.setAttribute("height", bh);
    const t = document.createElementNS(ns, "title");
    t.textContent = c + " restart" + (c > 1 ? "s" : "");
    r.append(t);
    svg.append(r);
  });
  return svg;
}

function mayChange(t) {
  return state.me && (state.me.uid === 0 || state.me.uid === t.uid);
}

async function act(tag, what) {
  try {
    await post("/api/tags/" + encodeURIComponent(tag) + "/" + what, what === "stop" ? { wait_ms: 10000 } : {});
  } catch (e) {
    toast(what + " " + tag + ": " + e.message);
  }
  loadTags();
}

function renderTags() {
  const body = $("#tags tbody");
  const rows = state.tags.map((t) => {
    const running = t.state === "running";
    const can = mayChange(t);
    const pids = (t.procs || []).map((p) => p.pid).join(" ");
    const up = running && t.started_ms ? duration(Date.now() - t.started_ms) : "";
    const btn = (label, what, enabled) =>
      el("button", { class: "small", "data-action": what, "data-tag": t.name, onclick: (ev) => { ev.stopPropagation(); act(t.name, what); } }, label);
    const start = btn("start", "start"), stop = btn("stop", "stop"), restart = btn("restart", "restart");
    start.disabled = !can || running;
    stop.disabled = !can || t.state === "stopped";
    restart.disabled = !can;
    const tr = el("tr", { class: "tag", "data-tag": t.name, onclick: () => showLog(t.name) },
      el("td", {}, el("strong", {}, t.name)),
      el("td", {}, el("span", { class: "state " + t.state, "data-state": t.state }, t.state)),
      el("td", { class: "muted" }, pids),
      el("td", {}, up),
      el("td", {}, Math.max(0, (t.starts || 0) - 1)),
      el("td", {}, sparkline(state.restarts[t.name])),
      el("td", { class: "muted" }, t.uid),
      el("td", {}, start, " ", stop, " ", restart));
    if (t.reason) tr.title = t.reason;
    return tr;
  });
  body.replaceChildren(...rows);
  const running = state.tags.filter((t) => t.state === "running").length;
  const failed = state.tags.filter((t) => t.state === "failed").length;
  $("#summary").textContent = state.tags.length + " tags · " + running + " running" + (failed ? " · " + failed + " failed" : "");
}

async function loadTags() {
  state.tags = await api("/api/tags");
  state.tags.sort((a, b) => a.name.localeCompare(b.name));
  renderTags();
}

async function showLog(tag) {
  $("#log-panel").hidden = false;
  $("#log-tag").textContent = tag;
  try {
    const l = await api("/api/tags/" + encodeURIComponent(tag) + "/logs?lines=200");
    $("#log").textContent = l.lines.join("\n") || "(empty)";
  } catch (e) {
    $("#log").textContent = e.message;
  }
}

function renderEvents() {
  const f = $("#event-filter").value.trim().toLowerCase();
  const shown = state.events.filter((e) => !f || (e.name + " " + e.subject).toLowerCase().includes(f)).slice(0, 300);
  $("#events").replaceChildren(...shown.map((e) =>
    el("li", { class: e.lost ? "lost" : "" },
      el("span", { class: "seq" }, e.seq),
      el("span", { class: "muted" }, new Date(e.time_ms).toLocaleTimeString()),
      el("span", { class: "name" }, e.name),
      el("span", {}, e.subject))));
}

function noteRestart(e) {
  if (e.name === "sys.vigil.pmf.tag.restart") (state.restarts[e.subject] = state.restarts[e.subject] || []).push(e.time_ms);
}

async function loadPsm() {
  const m = await api("/api/psm/members");
  const exit = (x) => !x.exit ? "" : x.exit.code !== undefined ? "exit " + x.exit.code : x.exit.name || (x.exit.unknown ? "unknown" : "");
  $("#psm tbody").replaceChildren(...m.map((x) =>
    el("tr", {}, el("td", {}, x.category), el("td", {}, x.pid), el("td", {}, x.state),
      el("td", {}, exit(x)), el("td", { class: "argv" }, (x.argv || []).join(" ")))));
}

async function loadCmap() {
  const prefix = $("#cmap-prefix").value;
  const keys = await api("/api/cmap/keys?prefix=" + encodeURIComponent(prefix));
  $("#cmap tbody").replaceChildren(...keys.slice(0, 500).map((k) =>
    el("tr", {}, el("td", {}, k.key), el("td", { class: "muted" }, k.type), el("td", {}, k.value))));
}

async function loadSam() {
  const s = await api("/api/sam");
  $("#sam tbody").replaceChildren(...s.map((a) =>
    el("tr", {}, el("td", {}, a.pid), el("td", {}, a.name), el("td", {}, a.instance),
      el("td", {}, a.state), el("td", { class: "muted" }, ago(a.last_heartbeat_ms)))));
}

async function loadNodes() {
  const [n, q] = await Promise.all([api("/api/nodes"), api("/api/quorum")]);
  $("#nodes tbody").replaceChildren(...n.map((x) =>
    el("tr", {}, el("td", {}, x.name + (x.this_node ? " (this)" : "")), el("td", {}, x.id),
      el("td", {}, el("span", { class: "pill " + (x.state === "up" ? "ok" : "bad") }, x.state)),
      el("td", { class: "muted" }, ago(x.since_ms)), el("td", { class: "muted" }, x.version))));
  const qp = $("#quorum");
  qp.textContent = q.quorate ? "quorate" : "not quorate";
  qp.className = "pill " + (q.quorate ? "ok" : "bad");
}

// Reloads a part at most every `ms` (300 ms by default), however many events ask for it.
function soon(name, fn, ms = 300) {
  if (state.refresh[name]) return;
  state.refresh[name] = setTimeout(() => { state.refresh[name] = null; fn().catch(() => {}); }, ms);
}

// One Server-Sent Event from its lines (the fields of the SSE format that vigild sends).
function parseEvent(block) {
  const ev = { event: "message", data: [], id: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") ev.event = value;
    else if (field === "data") ev.data.push(value);
    else if (field === "id") ev.id = value;
  }
  return ev;
}

function onEvent(ev) {
  if (ev.event === "lost") {
    const l = JSON.parse(ev.data.join("\n"));
    state.events.unshift({ seq: l.to, time_ms: Date.now(), name: "lost events " + l.from + "–" + l.to, subject: "", lost: true });
    renderEvents();
    soon("tags", loadTags);
    return;
  }
  if (ev.event !== "message" || !ev.data.length) return;
  const e = JSON.parse(ev.data.join("\n"));
  state.events.unshift(e);
  state.events.length = Math.min(state.events.length, 2000);
  noteRestart(e);
  renderEvents();
  if (e.name.startsWith("sys.vigil.pmf")) soon("tags", loadTags);
  if (e.name.startsWith("sys.unix.psm")) soon("psm", loadPsm);
  if (e.name.startsWith("sys.vigil.sam")) soon("sam", loadSam);
  if (e.name.startsWith("sys.vigil.node")) soon("nodes", loadNodes);
  // vigild mirrors tags and SAM applications into CMAP (vigil.pmf.*, resources.process.*): the browser
  // follows, at most once a second, since a whole prefix is read again.
  if (e.name.startsWith("sys.vigil.pmf") || e.name.startsWith("sys.vigil.sam")) soon("cmap", loadCmap, 1000);
}

// The event stream read with fetch (EventSource cannot send the Authorization header), parsed as it
// arrives; after a break it resumes with Last-Event-ID, the sequence number of the last event seen.
async function streamOnce(live) {
  const headers = authHeaders({ accept: "text/event-stream", "last-event-id": String(state.lastSeq) });
  const r = await fetch("/api/events", { headers, credentials: "omit", cache: "no-store" });
  if (r.status === 401) throw new Unauthorized();
  if (!r.ok || !r.body) throw new Error("the event stream answered " + r.status);
  live.textContent = "live";
  live.className = "pill ok";
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const ev = parseEvent(buf.slice(0, end));
      buf = buf.slice(end + 2);
      if (ev.id !== null && /^[0-9]+$/.test(ev.id)) state.lastSeq = Number(ev.id);
      onEvent(ev);
    }
  }
}

async function stream() {
  const live = $("#live");
  let wait = 1000;
  for (;;) {
    try {
      await streamOnce(live);
      wait = 1000;
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin();
    }
    live.textContent = "reconnecting";
    live.className = "pill bad";
    await new Promise((ok) => setTimeout(ok, wait));
    wait = Math.min(wait * 2, 30000);
  }
}

async function start() {
  try {
    state.me = await api("/api/whoami");
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin();
    throw e;
  }
  $("#login").hidden = true;
  const d = await api("/api/daemon");
  $("#node").textContent = d.node + " · vigild " + d.version + " · pid " + d.pid;
  state.lastSeq = d.last_seq;
  const after = Math.max(0, d.last_seq - 2000);
  const recent = await api("/api/events/stored?limit=2000&after=" + after);
  recent.forEach(noteRestart);
  state.events = recent.reverse();
  renderEvents();
  await Promise.all([loadTags(), loadPsm(), loadCmap(), loadSam(), loadNodes()].map((p) => p.catch((e) => toast(e.message))));
  stream().catch((e) => toast(e.message));
  // Uptimes and sparklines move with time, not only with events.
  setInterval(renderTags, 5000);
}

function showLogin() {
  $("#login").hidden = false;
  $("#live").textContent = "signed out";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    try {
      await api("/api/whoami");
      $("#login-error").textContent = "";
      await start();
    } catch (e) {
      if (e instanceof Unauthorized) sessionStorage.removeItem(TOKEN_KEY);
      $("#login-error").textContent = e instanceof Unauthorized ? "wrong token" : e.message;
    }
  });
  $("#log-close").addEventListener("click", () => { $("#log-panel").hidden = true; });
  $("#event-filter").addEventListener("input", renderEvents);
  $("#cmap-prefix").addEventListener("input", () => soon("cmap", loadCmap));
  start().catch((e) => toast(e.message));
});
