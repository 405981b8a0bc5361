/* Formatting and DOM helpers shared by the page's modules. */

/** Builds an element; string children become text nodes, so server strings stay text. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);
const pad2 = (x) => String(x).padStart(2, "0");

export function fmtRate(x) {
  if (!isNum(x)) return "–";
  return x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1);
}

export function fmtPct(x) {
  return isNum(x) ? `${(100 * x).toFixed(1)} %` : "–";
}

export function fmtCount(x) {
  return isNum(x) ? Math.round(x).toLocaleString("en-US") : "–";
}

export function fmtClock(unixS) {
  if (!isNum(unixS)) return "–";
  const d = new Date(unixS * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fmtAgo(seconds) {
  if (!isNum(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function naturalCompare(a, b) {
  return a.localeCompare(b, "en", { numeric: true });
}

/** "digits.cnn_large" -> ["digits", "cnn_large"] */
export function splitKey(key) {
  const dot = key.indexOf(".");
  return dot < 0 ? [key, ""] : [key.slice(0, dot), key.slice(dot + 1)];
}

export function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/** The last number in `values` (null when there is none). */
export function latest(values) {
  for (let i = values.length - 1; i >= 0; i--) if (isNum(values[i])) return values[i];
  return null;
}
