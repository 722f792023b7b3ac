// The page: sign in, search, a call's detail and player, live calls, the audit log.
import { api, session, subscribe, Unauthorized } from "./api.js";
import { Player, formatClock } from "./player.js";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
};
const local = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "—");
const localTime = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "—");
const humanReason = (r) => r.replaceAll("_", " ").toLowerCase();

let me = null, nextCursor = null, selectedKey = null, liveAbort = null;
const live = new Map();
const player = new Player({ audio: $("audio"), canvas: $("wave"), button: $("play"), icon: $("play-icon"), time: $("time"), speed: $("speed") });

function toast(text) {
  const t = $("toast"); t.textContent = text; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function failed(error) {
  if (error instanceof Unauthorized) { signOut(error.message); return; }
  if (error.name !== "AbortError") toast(error.message);
}

function badges(call) {
  const out = [el("span", { class: `badge b-${call.status}` }, call.status.toLowerCase())];
  if (call.abnormal_reason) out.push(el("span", { class: "badge b-reason", title: "Abnormal end" }, humanReason(call.abnormal_reason)));
  if (call.recording?.partial) out.push(el("span", { class: "badge b-partial", title: "Audio is known to be missing" }, "partial"));
  if (!call.recording && call.status !== "ACTIVE") out.push(el("span", { class: "badge b-none" }, "no recording"));
  return out;
}

function parties(call) {
  return el("span", { class: "parties" }, call.near_end_addr || "?", el("span", { class: "arrow", "aria-label": "with" }, "⇄"), call.far_end_addr || "?");
}

// ---- sign in -------------------------------------------------------------------------------
async function signIn(token) {
  session.token = token;
  try { me = await api("/me"); } catch (e) { session.token = null; throw e; }
  $("signin").hidden = true; $("nav").hidden = false; $("who").hidden = false;
  $("who-name").textContent = me.name; $("who-role").textContent = me.role;
  $("audit-tab").hidden = me.role === "viewer";
  show(location.hash.slice(1) || "calls");
  search();
  startLive();
}

function signOut(message) {
  session.token = null; me = null; player.stop();
  liveAbort?.abort();
  for (const id of ["nav", "who", "view-calls", "view-live", "view-audit"]) $(id).hidden = true;
  $("signin").hidden = false;
  $("signin-error").hidden = !message; $("signin-error").textContent = message || "";
  $("token").value = ""; $("token").focus();
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await signIn($("token").value.trim()); } catch (error) {
    $("signin-error").hidden = false;
    $("signin-error").textContent = error instanceof Unauthorized ? "This token is not valid." : error.message;
  }
});
$("sign-out").addEventListener("click", () => signOut());

// ---- views -----------------------------------------------------------------------------------
function show(view) {
  if (!["calls", "live", "audit"].includes(view) || (view === "audit" && me.role === "viewer")) view = "calls";
  for (const v of ["calls", "live", "audit"]) $(`view-${v}`).hidden = v !== view;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.toggleAttribute("aria-current", tab.dataset.view === view);
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
  }
  history.replaceState(null, "", `#${view}`);
  if (view === "audit") loadAudit();
}
for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.view));

// ---- search ----------------------------------------------------------------------------------
function filters() {
  const form = new FormData($("search"));
  const params = {};
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    params[k] = k.startsWith("started_") ? new Date(v).toISOString() : v;  // local -> UTC
  }
  return params;
}

async function search(append = false) {
  try {
    const page = await api("/calls", { params: { ...filters(), limit: 25, cursor: append ? nextCursor : undefined } });
    if (!append) $("results").replaceChildren();
    for (const call of page.data) $("results").append(resultRow(call));
    nextCursor = page.next_cursor;
    $("more").hidden = !nextCursor;
    $("empty").hidden = page.count > 0;
    $("result-count").textContent = `${page.count.toLocaleString()} call${page.count === 1 ? "" : "s"}`;
  } catch (error) { failed(error); }
}

function resultRow(call) {
  const duration = call.recording ? formatClock(call.recording.duration_ms / 1000)
    : call.ended_at ? formatClock((new Date(call.ended_at) - new Date(call.started_at)) / 1000) : "live";
  const row = el("tr", { class: "call", tabindex: "0", "data-key": call.call_key, "aria-selected": String(call.call_key === selectedKey) },
    el("td", {}, local(call.started_at), el("div", { class: "sub" }, call.cluster_id)),
    el("td", {}, parties(call), el("div", { class: "sub" }, [call.near_end_device, call.far_end_device].filter(Boolean).join(" · "))),
    el("td", { class: "num" }, duration),
    el("td", {}, badges(call)));
  const open = () => openCall(call.call_key);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); }
    if (e.key === "ArrowDown") row.nextElementSibling?.focus();
    if (e.key === "ArrowUp") row.previousElementSibling?.focus();
  });
  return row;
}

$("search").addEventListener("submit", (e) => { e.preventDefault(); search(); });
$("search").addEventListener("reset", () => setTimeout(search));
$("more").addEventListener("click", () => search(true));

// ---- one call --------------------------------------------------------------------------------
async function openCall(key) {
  selectedKey = key;
  for (const row of $("results").children) row.setAttribute("aria-selected", String(row.dataset.key === key));
  try {
    const call = await api(`/calls/${encodeURIComponent(key)}`);
    renderCall(call);
    if (call.recording) {
      const urls = await api(`/calls/${encodeURIComponent(key)}/playback`, { method: "POST" });
      player.load(urls.play_url, call.recording.duration_ms, call.recording.gaps);
      $("download").hidden = !urls.download_url;
      if (urls.download_url) { $("download").href = urls.download_url; $("download").setAttribute("download", ""); }
      api(`/calls/${encodeURIComponent(key)}/peaks`, { params: { buckets: 400 } })
        .then((p) => { if (selectedKey === key) player.setPeaks(p); }).catch(failed);
    }
  } catch (error) { failed(error); }
}

function renderCall(call) {
  $("detail").hidden = false;
  $("d-title").replaceChildren(parties({ near_end_addr: call.parties[0].number, far_end_addr: call.parties[1].number }));
  $("d-sub").textContent = `${local(call.started_at)}${call.ended_at ? " – " + localTime(call.ended_at) : " · in progress"}`;
  $("d-badges").replaceChildren(...badges({ ...call, recording: call.recording }));
  const rec = call.recording;
  $("player").hidden = !rec;
  $("verify").hidden = !rec || me.role === "viewer";
  $("verify-result").hidden = true;
  $("no-recording").hidden = !!rec;
  $("no-recording").textContent = call.status === "ACTIVE" ? "The call is in progress; its recording appears when it ends."
    : "No recording has been archived for this call.";
  if (!rec) player.stop();
  const facts = [
    ["Call key", el("span", { class: "mono" }, call.call_key)],
    ["Near end", `${call.parties[0].number || "?"}${call.parties[0].device ? " on " + call.parties[0].device : ""}`],
    ["Far end", `${call.parties[1].number || "?"}${call.parties[1].device ? " on " + call.parties[1].device : ""}`],
    ["Cluster", call.cluster_id], ["Segments", String(call.segments)],
  ];
  if (call.abnormal_detail) facts.push(["Abnormal end", call.abnormal_detail]);
  if (rec) {
    facts.push(["Recording", `${rec.format.toUpperCase()} · ${rec.channels === 2 ? "stereo (near left, far right)" : "mono"} · ${rec.sample_rate / 1000} kHz · ${(rec.size_bytes / 1024).toFixed(0)} KiB`]);
    facts.push(["Length", formatClock(rec.duration_ms / 1000)]);
    facts.push(["SHA-256", el("span", { class: "mono" }, rec.sha256)]);
    facts.push(["Object", el("span", { class: "mono" }, rec.object_key + (rec.version_id ? ` (version ${rec.version_id})` : ""))]);
  }
  $("d-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("d-legs").replaceChildren(...call.legs.map((leg) => el("tr", {},
    el("td", {}, leg.leg === "NEAR_END" ? "near end" : "far end", leg.on_hold ? el("span", { class: "badge b-partial" }, "on hold") : null),
    el("td", {}, String(leg.segment)), el("td", {}, leg.recorder_id), el("td", {}, leg.codec),
    el("td", {}, localTime(leg.started_at)), el("td", {}, leg.ended_at ? `${localTime(leg.ended_at)} (${leg.end_reason || "?"})` : "—"),
    el("td", { class: "num" }, `${leg.packets_lost} / ${leg.packets_received}`))));
  const gaps = rec ? rec.gaps : [];
  $("d-gaps").replaceChildren(...(gaps.length ? gaps.map((g) => el("li", {},
    `${formatClock(g.start_ms / 1000)} for ${(g.duration_ms / 1000).toFixed(1)} s — ${humanReason(g.cause)}${g.leg ? " (" + (g.leg === "NEAR_END" ? "near end" : "far end") + ")" : ""}`))
    : [el("li", { class: "muted" }, rec ? "None: the recording is continuous." : "—")]));
}

const CHECKS = { object_sha256: "Recording hash", manifest_signature: "Daily manifest signature", manifest_entry: "Listed in the manifest" };
$("verify").addEventListener("click", async () => {
  const box = $("verify-result");
  box.hidden = false; box.textContent = "Re-hashing the stored recording…";
  try {
    const result = await api(`/calls/${encodeURIComponent(selectedKey)}/verify`);
    const mark = (ok) => (ok === true ? el("span", { class: "ok" }, "✓") : ok === false ? el("span", { class: "bad" }, "✗") : el("span", { class: "wait" }, "…"));
    box.replaceChildren(el("strong", {}, result.ok ? "Integrity verified" : "Integrity check FAILED"),
      ...result.checks.map((c) => el("div", { class: "check" }, mark(c.ok),
        el("span", {}, el("strong", {}, CHECKS[c.name] || c.name), " — ", c.detail))));
  } catch (error) { box.textContent = error.message; }
});

// ---- live ------------------------------------------------------------------------------------
function renderLive() {
  const calls = [...live.values()].filter((c) => c.status === "ACTIVE").sort((a, b) => b.started_at.localeCompare(a.started_at));
  $("live-count").textContent = String(calls.length);
  $("live-count").classList.toggle("zero", calls.length === 0);
  $("live-empty").hidden = calls.length > 0;
  $("live-list").replaceChildren(...calls.map((c) => el("button", { type: "button", class: "live-card ghost", onclick: () => { show("calls"); openCall(c.call_key); } },
    el("div", {}, el("div", {}, parties(c)), el("div", { class: "elapsed", "data-start": c.started_at }, formatClock((Date.now() - new Date(c.started_at)) / 1000)),
      el("div", { class: "sub" }, `since ${localTime(c.started_at)} · ${c.recorders.join(", ")}`)))));
}
setInterval(() => {
  for (const node of document.querySelectorAll(".elapsed[data-start]")) {
    node.textContent = formatClock((Date.now() - new Date(node.dataset.start)) / 1000);
  }
}, 1000);

async function startLive() {
  liveAbort?.abort();
  liveAbort = new AbortController();
  const signal = liveAbort.signal;
  while (!signal.aborted && session.token) {
    try {
      $("live-state").textContent = "connected";
      await subscribe("/live/calls", (event, data) => {
        if (event === "snapshot") { live.clear(); for (const c of data) live.set(c.call_key, c); }
        else if (event === "call") {
          live.set(data.call_key, data);
          if (data.call_key === selectedKey && data.status !== "ACTIVE") openCall(selectedKey);
        }
        renderLive();
      }, signal);
    } catch (error) { if (error instanceof Unauthorized) { failed(error); return; } }
    if (signal.aborted) return;
    $("live-state").textContent = "reconnecting…";
    await new Promise((r) => setTimeout(r, 3000));
  }
}

// ---- audit -----------------------------------------------------------------------------------
async function loadAudit() {
  try {
    const page = await api("/audit", { params: { call_key: $("a-call").value.trim(), limit: 200 } });
    $("audit-empty").hidden = page.data.length > 0;
    $("audit-rows").replaceChildren(...page.data.map((a) => el("tr", {},
      el("td", {}, local(a.time)), el("td", {}, a.actor), el("td", {}, a.role),
      el("td", {}, el("span", { class: `badge ${a.action === "VERIFY" ? "b-COMPLETED" : "b-ACTIVE"}` }, a.action.toLowerCase()), a.outcome ? el("div", { class: "sub" }, a.outcome) : null),
      el("td", { class: "mono" }, a.call_key),
      el("td", { class: "num" }, a.range_start === null ? "—" : `${a.range_start}–${a.range_end}`),
      el("td", { class: "sub" }, a.client_addr || "?"))));
  } catch (error) { failed(error); }
}
$("audit-form").addEventListener("submit", (e) => { e.preventDefault(); loadAudit(); });

// ---- start -----------------------------------------------------------------------------------
if (session.token) signIn(session.token).catch(() => signOut()); else signOut();
