/* A line chart on a plain <canvas>, drawn from scratch (no libraries).

   The canvas carries data-points, the number of points drawn, so a test can tell that real
   data rendered. */

import { cssColor, el, fmtClock, fmtPct, fmtRate, isNum, latest } from "./format.js";

const MIN_SPAN_S = 60; // charts span at least a minute, so young data grows from the right
// A context series (capacity) sets the scale only when within this factor of the others,
// so a capacity far above demand does not flatten demand and served to the axis.
const CONTEXT_RATIO = 3;
const PLAN_CHANGE = { label: "plan change", color: "--event", style: "dashed" };

function niceStep(range, targetTicks) {
  const raw = range / Math.max(1, targetTicks);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].find((m) => m * magnitude >= raw) ?? 10;
  return step * magnitude;
}

function timeStep(spanS) {
  return [5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find((s) => spanS / s <= 6) ?? 3600;
}

function relativeLabel(seconds, stepS) {
  if (seconds === 0) return "now";
  return stepS >= 60 ? `−${seconds / 60} min` : `−${seconds} s`;
}

/** One line chart over the shared time axis: series drawn as line, dashed line or area,
    plan changes as vertical markers, a crosshair and legend values under the mouse. */
export class LineChart {
  constructor(spec) {
    this.spec = spec;
    this.data = { t: [], values: [], events: [], windowS: 1 };
    this.hover = null; // bin index under the mouse, or null
    this.canvas = el("canvas", { role: "img", "aria-label": spec.title, "data-points": "0" });
    this.legendTime = el("span", { class: "legend-time" }, "latest");
    this.offScale = null; // the context series' peak when it is above the scale
    this.legendValues = spec.series.map(() => el("span", { class: "legend-value" }, "–"));
    const items = spec.series.map((s, k) =>
      el(
        "span",
        { class: "legend-item" },
        this.swatch(s),
        `${s.label} `,
        this.legendValues[k],
      ),
    );
    this.root = el(
      "div",
      { class: "chart", "data-chart": spec.kind },
      el("div", { class: "chart-title" }, el("span", {}, spec.title), this.legendTime),
      el(
        "div",
        { class: "legend" },
        ...items,
        el("span", { class: "legend-item" }, this.swatch(PLAN_CHANGE), PLAN_CHANGE.label),
      ),
      this.canvas,
    );
    this.canvas.addEventListener("mousemove", (e) => this.onMouse(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.hover = null;
      this.draw();
    });
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  swatch(series) {
    const swatch = el("span", { class: `swatch ${series.style}` });
    swatch.style.background = `var(${series.color})`;
    swatch.style.borderColor = `var(${series.color})`;
    return swatch;
  }

  update(t, family, events, windowS) {
    this.data = { t, values: this.spec.series.map((s) => family[s.key]), events, windowS };
    if (this.hover !== null && this.hover >= t.length) this.hover = null;
    this.draw();
  }

  /** Plot area and the scales of the last draw (for the mouse). */
  geometry(width, height) {
    const { t, windowS } = this.data;
    const box = { left: 48, right: width - 12, top: 10, bottom: height - 22 };
    const tEnd = t.length ? t[t.length - 1] : 0;
    const span = Math.max(MIN_SPAN_S, t.length ? tEnd - t[0] + windowS : 0);
    const tStart = tEnd - span;
    const x = (ti) => box.left + ((ti - tStart) / span) * (box.right - box.left);
    return { box, tStart, tEnd, span, x };
  }

  yRange() {
    const all = this.data.values.flat().filter(isNum);
    this.offScale = null;
    if (this.spec.kind === "rate") {
      const pick = (context) =>
        this.spec.series.flatMap((s, k) => (!!s.context === context ? this.data.values[k] : []));
      let top = Math.max(1, ...pick(false).filter(isNum));
      const contextTop = Math.max(0, ...pick(true).filter(isNum));
      if (contextTop <= CONTEXT_RATIO * top) top = Math.max(top, contextTop);
      const step = niceStep(top * 1.1, 4);
      const yMax = Math.ceil((top * 1.1) / step) * step;
      if (contextTop > yMax) this.offScale = contextTop;
      return [0, yMax];
    }
    if (!all.length) return [0, 1];
    const low = Math.min(...all);
    const bottom = Math.max(0, Math.min(0.9, Math.floor((low - 0.02) * 20) / 20));
    return [bottom, Math.max(1, ...all)];
  }

  draw() {
    const canvas = this.canvas;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return; // not laid out (hidden): the next update draws
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    const g = this.geometry(width, height);
    const [yMin, yMax] = this.yRange();
    g.y = (v) =>
      g.box.bottom - ((Math.min(v, yMax) - yMin) / (yMax - yMin)) * (g.box.bottom - g.box.top);
    this.drawGrid(ctx, g, yMin, yMax);
    let points = 0;
    if (this.data.t.length) {
      this.drawEvents(ctx, g);
      this.spec.series.forEach((s, k) => {
        points += this.drawSeries(ctx, g, s, this.data.values[k]);
      });
      if (this.hover !== null) this.drawCrosshair(ctx, g, this.hover);
      if (this.offScale !== null) this.drawOffScale(ctx, g);
    }
    if (!points) {
      const note = this.data.t.length ? "No requests in this window" : "Waiting for data…";
      ctx.fillStyle = cssColor("--muted");
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(note, (g.box.left + g.box.right) / 2, (g.box.top + g.box.bottom) / 2);
    }
    canvas.dataset.points = String(points);
    this.updateLegend();
  }

  drawGrid(ctx, g, yMin, yMax) {
    const { box } = g;
    ctx.lineWidth = 1;
    ctx.strokeStyle = cssColor("--grid");
    ctx.fillStyle = cssColor("--muted");
    ctx.setLineDash([]);
    const step = niceStep(yMax - yMin, 4);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = Math.ceil(yMin / step - 1e-9) * step; v <= yMax + 1e-9; v += step) {
      const y = Math.round(g.y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.right, y);
      ctx.stroke();
      const label =
        this.spec.kind === "ratio" ? `${+(100 * v).toFixed(1)}%` : `${+v.toFixed(2)}`;
      ctx.fillText(label, box.left - 6, y);
    }
    ctx.textBaseline = "top";
    const tick = timeStep(g.span);
    for (let ago = 0; ago <= g.span + 1e-9; ago += tick) {
      const x = g.x(g.tEnd - ago);
      ctx.textAlign = ago === 0 ? "right" : "center";
      ctx.fillText(relativeLabel(ago, tick), ago === 0 ? box.right : x, box.bottom + 6);
    }
  }

  /** Says that the context series (capacity) runs above the top of the scale. */
  drawOffScale(ctx, g) {
    const series = this.spec.series.find((s) => s.context);
    ctx.fillStyle = cssColor(series.color);
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    const note = `${series.label} ↑ ${fmtRate(this.offScale)}/s, above the scale`;
    ctx.fillText(note, g.box.right - 4, g.box.top + 4);
  }

  drawEvents(ctx, g) {
    ctx.strokeStyle = cssColor("--event");
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    for (const event of this.data.events) {
      const shown = event.changed && isNum(event.time) && event.time >= g.tStart;
      if (!shown || event.time > g.tEnd) continue;
      const x = Math.round(g.x(event.time)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, g.box.top);
      ctx.lineTo(x, g.box.bottom);
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  /** Draws one series, breaking the line at nulls; returns how many points it drew. */
  drawSeries(ctx, g, series, values) {
    const { t } = this.data;
    const color = cssColor(series.color);
    const segments = [];
    let current = [];
    for (let i = 0; i < t.length; i++) {
      if (isNum(values[i]) && isNum(t[i])) current.push([g.x(t[i]), g.y(values[i])]);
      else if (current.length) {
        segments.push(current);
        current = [];
      }
    }
    if (current.length) segments.push(current);
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = series.style === "area" ? 1.5 : 2;
    ctx.lineJoin = "round";
    ctx.setLineDash(series.style === "dashed" ? [6, 4] : []);
    let points = 0;
    for (const segment of segments) {
      points += segment.length;
      if (segment.length === 1) {
        ctx.beginPath();
        ctx.arc(segment[0][0], segment[0][1], 2.5, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      segment.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (series.style === "area") {
        ctx.save();
        ctx.globalAlpha = 0.14;
        ctx.lineTo(segment[segment.length - 1][0], g.box.bottom);
        ctx.lineTo(segment[0][0], g.box.bottom);
        ctx.closePath();
        ctx.fill();
        ctx.restore();
        ctx.beginPath();
        segment.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    return points;
  }

  drawCrosshair(ctx, g, i) {
    const x = Math.round(g.x(this.data.t[i])) + 0.5;
    ctx.strokeStyle = cssColor("--muted");
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, g.box.top);
    ctx.lineTo(x, g.box.bottom);
    ctx.stroke();
    this.spec.series.forEach((s, k) => {
      const v = this.data.values[k][i];
      if (!isNum(v)) return;
      ctx.fillStyle = cssColor(s.color);
      ctx.beginPath();
      ctx.arc(x, g.y(v), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    });
  }

  updateLegend() {
    const i = this.hover;
    const format = this.spec.kind === "ratio" ? fmtPct : fmtRate;
    this.spec.series.forEach((s, k) => {
      const values = this.data.values[k] || [];
      this.legendValues[k].textContent = format(i === null ? latest(values) : values[i]);
    });
    this.legendTime.textContent = i === null ? "latest" : `at ${fmtClock(this.data.t[i])}`;
  }

  onMouse(event) {
    const { t } = this.data;
    if (!t.length) return;
    const rect = this.canvas.getBoundingClientRect();
    const g = this.geometry(rect.width, rect.height);
    const fraction = (event.clientX - rect.left - g.box.left) / (g.box.right - g.box.left);
    const at = g.tStart + fraction * g.span;
    let best = 0;
    for (let i = 1; i < t.length; i++) if (Math.abs(t[i] - at) < Math.abs(t[best] - at)) best = i;
    this.hover = Math.abs(t[best] - at) <= g.span / 20 ? best : null;
    this.draw();
  }
}
