// Headway's status page: summaries from /api/v1/syncs, live progress from /api/v1/events,
// "Sync now" and "Rebuild everything" through the same authenticated API as curl.
"use strict";

const state = { syncs: [], progress: {}, rebuild: null, reloadTimer: null };
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

const key = (s) => `${s.namespace}/${s.name}`;
const seconds = (x) => (x == null ? "" : x < 10 ? `${x.toFixed(2)} s` : `${x.toFixed(1)} s`);
const shortRev = (r) => (r ? r.replace(/@sha1:([0-9a-f]{10})[0-9a-f]*/, "@$1") : "—");

function showError(text) {
  const p = $("#error");
  p.textContent = text || "";
  p.hidden = !text;
}

async function load() {
  try {
    const r = await fetch("/api/v1/syncs");
    if (!r.ok) throw new Error(`GET /api/v1/syncs: ${r.status} ${(await r.json().catch(() => ({}))).error || ""}`);
    state.syncs = await r.json();
    showError("");
    render();
    checkRebuildDone();
  } catch (e) {
    showError(String(e.message || e));
  }
}

function reloadSoon() {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(load, 300);
}

function runText(run) {
  if (!run) return "—";
  const stages = (run.stages || []).map((s) => `${s.name} ${seconds(s.durationSeconds)}`).join(", ");
  return `${run.result} in ${seconds(run.durationSeconds)}${stages ? ` (${stages})` : ""}`;
}

function progressText(p) {
  if (!p) return "";
  if (p.event === "runFinished") return p.ok ? `done in ${seconds(p.durationSeconds)}` : `failed: ${p.reason || ""} ${p.message || ""}`;
  const name = p.detail || p.stage || "starting";
  if (p.event === "stageProgress") return `${name} ${p.done}/${p.total}`;
  if (p.event === "stageStarted") return p.total ? `${name} 0/${p.total}` : `${name}…`;
  if (p.event === "stageFinished") return `${name} done (${seconds(p.durationSeconds)})`;
  return `${p.run === "rebuild" ? "rebuild" : "sync"} started`;
}

function render() {
  const body = $("#syncs tbody");
  body.replaceChildren();
  if (state.syncs.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: 9, class: "empty" }, "No GitSync.")));
    return;
  }
  for (const s of state.syncs) {
    const k = key(s);
    const o = s.objects || {};
    const objects = `${o.current || 0}/${o.total || 0} current` + (o.failed ? `, ${o.failed} failed` : "") + (o.inProgress ? `, ${o.inProgress} in progress` : "");
    const drift = s.drifted ? `${s.drifted} drifted` + (s.drift && s.drift.length ? `: ${s.drift.slice(0, 3).map((d) => d.object).join(", ")}` : "") : "none";
    const button = el("button", { type: "button", class: "sync-now", "data-sync": k, onclick: () => syncNow(s) }, "Sync now");
    body.append(
      el("tr", { "data-sync": k },
        el("td", {}, el("strong", {}, k), el("br"), el("code", {}, `${s.url} ${s.reference}${s.path ? ` /${s.path}` : ""}`)),
        el("td", {}, el("span", { class: `phase phase-${s.phase}` }, s.phase), el("br"), s.message || ""),
        el("td", { class: "rev" }, shortRev(s.revision)),
        el("td", {}, objects),
        el("td", {}, drift),
        el("td", {}, runText(s.lastReconcile)),
        el("td", {}, runText(s.lastRebuild)),
        el("td", { class: "progress" }, progressText(state.progress[k])),
        el("td", {}, button)));
  }
}

function ask(title, text) {
  return new Promise((resolve) => {
    const d = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    const input = $("#token");
    input.value = sessionStorage.getItem("headway-token") || "";
    d.addEventListener("close", function onClose() {
      d.removeEventListener("close", onClose);
      if (d.returnValue === "ok" && input.value.trim()) {
        sessionStorage.setItem("headway-token", input.value.trim());
        resolve(input.value.trim());
      } else resolve(null);
    });
    d.returnValue = "";
    d.showModal();
    input.focus();
  });
}

async function post(path, token, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await r.json().catch(() => ({}));
  if (r.status !== 202) throw new Error(`${r.status}: ${answer.error || r.statusText}`);
  return answer;
}

async function syncNow(s) {
  const token = await ask("Sync now", `Ask the controller to sync ${key(s)} now.`);
  if (!token) return;
  try {
    await post(`/api/v1/syncs/${encodeURIComponent(s.namespace)}/${encodeURIComponent(s.name)}/sync`, token);
    state.progress[key(s)] = { event: "requested" };
    showError("");
    render();
  } catch (e) {
    showError(`Sync now: ${e.message}`);
  }
}

async function rebuildAll() {
  const token = await ask("Rebuild everything",
    `Re-fetch and re-apply every object of all ${state.syncs.length} GitSyncs, then wait until they are healthy.`);
  if (!token) return;
  try {
    const started = Date.now();
    const answer = await post("/api/v1/rebuild", token, { all: true });
    state.rebuild = { started, done: null, syncs: {} };
    for (const r of answer.requests) state.rebuild.syncs[`${r.namespace}/${r.name}`] = { state: "requested", stage: "", ok: null, seconds: null };
    showError("");
    renderRebuild();
  } catch (e) {
    showError(`Rebuild everything: ${e.message}`);
  }
}

function renderRebuild() {
  const rb = state.rebuild;
  const section = $("#recovery");
  if (!rb) { section.hidden = true; return; }
  section.hidden = false;
  const body = $("#recovery-table tbody");
  body.replaceChildren();
  for (const [k, v] of Object.entries(rb.syncs)) {
    const cls = v.ok === true ? "ok" : v.ok === false ? "fail" : "";
    body.append(el("tr", { "data-sync": k }, el("td", {}, k), el("td", { class: cls }, v.state), el("td", { class: "stage" }, v.stage), el("td", {}, seconds(v.seconds))));
  }
  const entries = Object.values(rb.syncs);
  const finished = entries.filter((v) => v.ok !== null).length;
  const summary = $("#recovery-summary");
  if (rb.done != null) {
    const failed = entries.filter((v) => v.ok === false).length;
    summary.className = failed ? "fail" : "ok";
    summary.textContent = failed
      ? `Rebuild finished with ${failed} failed of ${entries.length}; time ${seconds(rb.done)}`
      : `Recovered: ${entries.length} GitSync${entries.length === 1 ? "" : "s"} rebuilt, time to recover ${seconds(rb.done)}`;
  } else {
    summary.className = "";
    summary.textContent = `Rebuilding: ${finished}/${entries.length} done, ${seconds((Date.now() - rb.started) / 1000)} so far`;
  }
}

function checkRebuildDone() {
  const rb = state.rebuild;
  if (!rb || rb.done != null) return;
  // Fallback when events were missed: a lastRebuild that ended after the click.
  for (const s of state.syncs) {
    const v = rb.syncs[key(s)];
    if (!v || v.ok !== null || !s.lastRebuild) continue;
    const end = Date.parse(s.lastRebuild.end);
    if (end >= rb.started - 1000 && s.phase !== "Progressing") {
      v.ok = s.lastRebuild.result === "Succeeded";
      v.state = v.ok ? "succeeded" : `failed: ${s.lastRebuild.result}`;
      v.seconds = s.lastRebuild.durationSeconds;
    }
  }
  const entries = Object.values(rb.syncs);
  if (entries.length && entries.every((v) => v.ok !== null)) rb.done = (Date.now() - rb.started) / 1000;
  renderRebuild();
}

// Every progress event this page received, as "<run> <event> <stage>" (for whoever debugs the
// page, and for the browser test).
window.headwayLog = [];

function onProgress(p) {
  const k = key(p.sync);
  window.headwayLog.push(`${p.run} ${p.event} ${p.detail || p.stage || ""}`.trim());
  state.progress[k] = p;
  const cell = document.querySelector(`#syncs tr[data-sync="${CSS.escape(k)}"] .progress`);
  if (cell) cell.textContent = progressText(p);
  const rb = state.rebuild;
  if (rb && rb.done == null && rb.syncs[k] && p.run === "rebuild") {
    const v = rb.syncs[k];
    if (p.event === "runFinished") {
      v.ok = p.ok;
      v.state = p.ok ? "succeeded" : `failed: ${p.reason || ""}`;
      v.seconds = p.durationSeconds;
      v.stage = "";
    } else {
      v.state = "running";
      v.stage = progressText(p);
    }
    const entries = Object.values(rb.syncs);
    if (entries.every((x) => x.ok !== null)) rb.done = (Date.now() - rb.started) / 1000;
    renderRebuild();
  }
  if (p.event === "runFinished") reloadSoon();
}

function connect() {
  const es = new EventSource("/api/v1/events");
  es.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").className = "badge on"; });
  es.addEventListener("error", () => { $("#live").textContent = "reconnecting"; $("#live").className = "badge off"; });
  es.addEventListener("progress", (m) => { try { onProgress(JSON.parse(m.data)); } catch (e) { console.warn(e); } });
  es.addEventListener("lagged", reloadSoon);
}

$("#rebuild-all").addEventListener("click", rebuildAll);
connect();
load();
setInterval(() => { load(); if (state.rebuild && state.rebuild.done == null) renderRebuild(); }, 5000);
