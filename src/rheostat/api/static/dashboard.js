/* rheostat's live page: polls /rheostat/timeseries once a second and redraws.

   No libraries and nothing to download. Every string from the server goes into the page
   through textContent or attributes, never innerHTML (see `el`). */

import { LineChart } from "./chart.js";
import {
  el, fmtAgo, fmtClock, fmtCount, fmtPct, fmtRate, isNum, naturalCompare, splitKey,
} from "./format.js";
import { meanOverBins, normalise, weightedMean } from "./series.js";

const SOURCE = "/rheostat/timeseries";
const POLL_MS = 1000;
const TIMEOUT_MS = 2500; // a reply slower than this counts as the server not answering
const RATE_WINDOW_S = 5; // "requests/s now" is the mean of the last complete seconds
const MINUTE_S = 60;
const MAX_EVENTS = 30;
const CHANGED_FLASH_MS = 3000;

const THROUGHPUT = {
  title: "Throughput (requests/s)",
  kind: "rate",
  series: [
    { key: "capacity_rps", label: "capacity", color: "--capacity", style: "area", context: true },
    { key: "served_rps", label: "served", color: "--served", style: "line" },
    { key: "demand_rps", label: "demand", color: "--demand", style: "dashed" }, // on top
  ],
};
const QUALITY = {
  title: "Served accuracy and SLO attainment (%)",
  kind: "ratio",
  series: [
    { key: "accuracy", label: "accuracy", color: "--accuracy", style: "line" },
    { key: "slo_attainment", label: "SLO attainment", color: "--slo", style: "line" },
  ],
};
const SERIES_KEYS = [...THROUGHPUT.series, ...QUALITY.series].map((s) => s.key);

const state = {
  lastOkMs: 0, // client clock of the last good reply
  families: new Map(), // family name -> {section, meta, charts}
  planSignature: null,
  plan: {},
  eventsSignature: null,
};

// -- sections -------------------------------------------------------------------------------

function setCard(id, value, sub, level) {
  const card = document.getElementById(id);
  card.querySelector('[data-field="value"]').textContent = value;
  if (sub !== undefined) card.querySelector('[data-field="sub"]').textContent = sub;
  card.classList.remove("good", "warn", "bad");
  if (level) card.classList.add(level);
}

function renderHeadline(data) {
  const hasBins = data.t.length > 0;
  const none = (x) => (hasBins ? x ?? 0 : null);
  const demand = none(meanOverBins(data, "demand_rps", RATE_WINDOW_S));
  const served = none(meanOverBins(data, "served_rps", RATE_WINDOW_S));
  const capacity = meanOverBins(data, "capacity_rps", RATE_WINDOW_S);
  setCard(
    "card-rate",
    fmtRate(demand),
    `served ${fmtRate(served)}/s · capacity ${fmtRate(capacity)}/s (last ${RATE_WINDOW_S} s)`,
  );
  const slo = weightedMean(data, "slo_attainment", "demand_rps", MINUTE_S);
  const violations = data.totals.slo_violations;
  const sloLevel = !isNum(slo) ? null : slo >= 0.98 ? "good" : slo >= 0.9 ? "warn" : "bad";
  const plural = violations === 1 ? "" : "s";
  const violationText = `${fmtCount(violations)} SLO violation${plural} since start`;
  setCard("card-slo", fmtPct(slo), violationText, sloLevel);
  const accuracy = weightedMean(data, "accuracy", "served_rps", MINUTE_S);
  setCard("card-accuracy", fmtPct(accuracy), "mean over answered requests");
  const shed = data.totals.shed;
  const requests = data.totals.requests;
  const share = isNum(shed) && isNum(requests) && requests > 0 ? shed / requests : null;
  const sub = share === null
    ? "requests refused under overload"
    : `${fmtPct(share)} of ${fmtCount(requests)} requests since start`;
  const level =
    !isNum(shed) ? null : shed === 0 ? "good" : share !== null && share < 0.05 ? "warn" : "bad";
  setCard("card-shed", fmtCount(shed), sub, level);
}

function renderPlan(plan) {
  const signature = JSON.stringify(plan);
  if (signature === state.planSignature) return;
  const tbody = document.querySelector("#plan-table tbody");
  const devices = Object.keys(plan).sort(naturalCompare);
  const rows = devices.map((device) => {
    const key = typeof plan[device] === "string" ? plan[device] : null;
    const row = el("tr", { "data-device": device, "data-variant": key ?? "" });
    row.append(el("td", {}, device));
    if (key === null) row.append(el("td", { class: "idle", colspan: 2 }, "idle"));
    else row.append(...splitKey(key).map((part) => el("td", {}, part)));
    const before = state.planSignature === null ? key : state.plan[device];
    if (before !== key) row.classList.add("changed");
    return row;
  });
  if (!rows.length) {
    rows.push(el("tr", { class: "empty-row" }, el("td", { colspan: 3 }, "No devices reported.")));
  }
  tbody.replaceChildren(...rows);
  state.plan = plan;
  state.planSignature = signature;
  setTimeout(() => rows.forEach((row) => row.classList.remove("changed")), CHANGED_FLASH_MS);
}

/** One re-plan: time, reason and, where it changed the plan, its status, solve time and the
    new assignment; a re-plan that kept the plan is one dimmed line of time and reason. */
function eventItem(event) {
  const head = el(
    "div",
    { class: "event-head" },
    el("span", { class: "event-time" }, fmtClock(event.time)),
    el("span", { class: "event-ago", "data-time": isNum(event.time) ? event.time : "" }),
  );
  const reason = el("div", { class: "event-reason" }, String(event.reason ?? "(no reason given)"));
  if (!event.changed) {
    head.append(el("span", { class: "kept" }, event.assignment ? "plan kept" : "no plan"));
    return el("li", { class: "unchanged" }, head, reason);
  }
  const status = typeof event.status === "string" ? event.status : "unknown";
  head.append(el("span", { class: `badge ${status === "optimal" ? "ok" : "other"}` }, status));
  if (isNum(event.solve_time_s)) {
    head.append(el("span", {}, `solved in ${(1000 * event.solve_time_s).toFixed(0)} ms`));
  }
  const chips = el("div", { class: "chips" });
  for (const device of Object.keys(event.assignment).sort(naturalCompare)) {
    const key = event.assignment[device];
    const text = `${device} → ${typeof key === "string" ? key : "idle"}`;
    chips.append(el("span", { class: "chip" }, text));
  }
  return el("li", { class: "changed" }, head, reason, chips);
}

function renderEvents(events, serverNowS) {
  const list = document.getElementById("events");
  const recent = events.slice(-MAX_EVENTS).reverse(); // newest first
  const signature = JSON.stringify(recent);
  if (signature !== state.eventsSignature) {
    const items = recent.map(eventItem);
    if (!items.length) items.push(el("li", { class: "empty" }, "No plan changes yet."));
    list.replaceChildren(...items);
    state.eventsSignature = signature;
  }
  for (const span of list.querySelectorAll(".event-ago[data-time]")) {
    const time = parseFloat(span.dataset.time);
    if (isNum(time) && isNum(serverNowS)) span.textContent = fmtAgo(serverNowS - time);
  }
}

function familySection(name) {
  const throughput = new LineChart(THROUGHPUT);
  const quality = new LineChart(QUALITY);
  const meta = el("span", { class: "family-meta" });
  const section = el(
    "article",
    { class: "family", "data-family": name },
    el("div", { class: "family-head" }, el("h3", {}, name), meta),
    el("div", { class: "charts" }, throughput.root, quality.root),
  );
  return { section, meta, charts: [throughput, quality] };
}

function renderFamilies(data) {
  const container = document.getElementById("families");
  const names = Object.keys(data.families);
  for (const [name, entry] of state.families) {
    if (!names.includes(name)) {
      entry.section.remove();
      state.families.delete(name);
    }
  }
  const shown = [...container.querySelectorAll(":scope > .family")];
  const inOrder =
    shown.length === names.length && shown.every((s, k) => s.dataset.family === names[k]);
  for (const name of names) {
    if (!state.families.has(name)) state.families.set(name, familySection(name));
    const entry = state.families.get(name);
    if (!inOrder) container.append(entry.section); // sections in name order
    const family = data.families[name];
    for (const chart of entry.charts) chart.update(data.t, family, data.events, data.windowS);
    const serving = Object.keys(data.plan)
      .filter((d) => typeof data.plan[d] === "string" && splitKey(data.plan[d])[0] === name)
      .sort(naturalCompare)
      .map((d) => `${splitKey(data.plan[d])[1]} on ${d}`);
    entry.meta.textContent = serving.length ? `serving ${serving.join(", ")}` : "not on any device";
  }
  document.getElementById("families-empty").hidden = names.length > 0;
}

function render(data) {
  renderHeadline(data);
  renderPlan(data.plan);
  renderEvents(data.events, data.serverNowS);
  renderFamilies(data);
}

// -- the loop -------------------------------------------------------------------------------

function setStatus(kind, text) {
  const status = document.getElementById("status");
  status.className = `status status-${kind}`;
  document.getElementById("status-text").textContent = text;
  document.body.classList.toggle("stale", kind === "disconnected");
}

async function fetchSeries() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const reply = await fetch(SOURCE, { cache: "no-store", signal: abort.signal });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    return await reply.json();
  } finally {
    clearTimeout(timer);
  }
}

async function poll() {
  const started = performance.now();
  let raw = null;
  try {
    raw = await fetchSeries();
  } catch (err) {
    const why = err.name === "AbortError" ? ` (no answer in ${TIMEOUT_MS / 1000} s)`
      : err.message.startsWith("HTTP") ? ` (${err.message})` : "";
    const ago = fmtAgo((Date.now() - state.lastOkMs) / 1000);
    const since = state.lastOkMs ? ` · last data ${ago}` : "";
    setStatus("disconnected", `disconnected${why}${since}`);
  }
  if (raw !== null) {
    try {
      render(normalise(raw, SERIES_KEYS));
      state.lastOkMs = Date.now();
      setStatus("live", "live");
      document.getElementById("updated").textContent = `Updated ${fmtClock(Date.now() / 1000)}.`;
    } catch (err) {
      reportError(err); // a bug in this page, not the server: report it, keep polling
    }
  }
  setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
}

poll();
