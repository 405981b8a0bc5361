/* The reply of /rheostat/timeseries, checked, and the sums the headline numbers need.

   The newest 1-s bin is still filling (the server counts a request when it finishes), so
   `normalise` keeps only the complete bins before it. */

import { isNum, naturalCompare } from "./format.js";

/** The reply, checked and trimmed to its complete bins; anything malformed becomes empty. */
export function normalise(raw, seriesKeys) {
  const obj = (x) => (x && typeof x === "object" && !Array.isArray(x) ? x : {});
  const data = obj(raw);
  const t = Array.isArray(data.t) && data.t.every(isNum) ? data.t : [];
  const windowS = isNum(data.window_s) && data.window_s > 0 ? data.window_s : 1;
  const complete = t.length > 1 ? t.length - 1 : t.length;
  const families = {};
  for (const name of Object.keys(obj(data.families)).sort(naturalCompare)) {
    const family = obj(data.families[name]);
    families[name] = {};
    for (const key of seriesKeys) {
      const values = Array.isArray(family[key]) ? family[key] : [];
      families[name][key] = values.slice(0, complete).map((v) => (isNum(v) ? v : null));
    }
  }
  const events = markChanges(
    (Array.isArray(data.events) ? data.events : []).filter((e) => e && typeof e === "object"),
  );
  return {
    windowS,
    t: t.slice(0, complete),
    serverNowS: t.length ? t[t.length - 1] + windowS : null,
    families,
    plan: obj(data.plan),
    events,
    totals: obj(data.totals),
  };
}

/** Copies of the events (oldest first), each with `changed`: whether its assignment differs
    from the one before (a re-plan may well keep the plan as it was). */
function markChanges(events) {
  let before = null;
  return events.map((event) => {
    const given = event.assignment;
    const assignment = given && typeof given === "object" && !Array.isArray(given) ? given : null;
    const key = assignment && JSON.stringify(Object.entries(assignment).sort());
    const changed = key !== null && key !== before;
    if (key !== null) before = key;
    return { ...event, assignment, changed };
  });
}

/** Sum of one series over all families at bin i (null when no family has a value). */
function sumAt(families, key, i) {
  let total = null;
  for (const family of Object.values(families)) {
    const v = family[key][i];
    if (isNum(v)) total = (total ?? 0) + v;
  }
  return total;
}

export function meanOverBins(data, key, seconds) {
  const n = data.t.length;
  let total = 0;
  let bins = 0;
  for (let i = Math.max(0, n - Math.round(seconds / data.windowS)); i < n; i++) {
    const v = sumAt(data.families, key, i);
    if (v !== null) {
      total += v;
      bins += 1;
    }
  }
  return bins ? total / bins : null;
}

/** Mean of `key` over the last `seconds`, over all families, weighted by `weightKey`
    (request counts); a plain mean where no weight is known. */
export function weightedMean(data, key, weightKey, seconds) {
  const n = data.t.length;
  let sum = 0;
  let weights = 0;
  let plain = 0;
  let count = 0;
  for (let i = Math.max(0, n - Math.round(seconds / data.windowS)); i < n; i++) {
    for (const family of Object.values(data.families)) {
      const v = family[key][i];
      if (!isNum(v)) continue;
      const w = family[weightKey][i];
      if (isNum(w) && w > 0) {
        sum += v * w;
        weights += w;
      }
      plain += v;
      count += 1;
    }
  }
  if (weights > 0) return sum / weights;
  return count ? plain / count : null;
}
