// Small canvas charts: time series, a 2-D path, a heatmap. Each keeps what it drew (`points`) for the tests.

function setup(canvas) {
  if (!canvas.dataset.height) {
    // CSS sizes the canvas: its width from the layout, its height from the height it was declared with
    canvas.dataset.height = canvas.getAttribute("height") || "150";
    canvas.style.height = `${canvas.dataset.height}px`;
  }
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.globalAlpha = 1;
  return { ctx, w, h };
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// Draws `title` and `detail` in place of a chart's data: a chart is never blank.
export function message(canvas, title, detail) {
  const { ctx, w, h } = setup(canvas);
  ctx.fillStyle = css("--muted");
  ctx.textAlign = "center";
  ctx.font = "bold 13px system-ui, sans-serif";
  ctx.fillText(title, w / 2, h / 2 - 6);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillText((detail || "").slice(0, 120), w / 2, h / 2 + 12);
}

// series: [{label, color, data: [[x, y], ...]}]; the x range is the last `window` steps.
export class LineChart {
  constructor(canvas, { window = 120, zero = false } = {}) {
    this.canvas = canvas;
    this.window = window;
    this.zero = zero; // the y axis starts at 0
    this.points = 0;
  }

  draw(series, empty = ["Waiting for the first step", ""]) {
    const all = series.flatMap((s) => s.data);
    this.points = Math.max(0, ...series.map((s) => s.data.length));
    if (!all.length) return message(this.canvas, ...empty);
    const { ctx, w, h } = setup(this.canvas);
    const xMax = Math.max(...all.map((p) => p[0]));
    const xMin = Math.max(Math.min(...all.map((p) => p[0])), xMax - this.window);
    const shown = all.filter((p) => p[0] >= xMin);
    let yMin = Math.min(...shown.map((p) => p[1]));
    let yMax = Math.max(...shown.map((p) => p[1]));
    if (yMax - yMin < 1e-6) [yMin, yMax] = [yMin - 1, yMax + 1];
    const pad = (yMax - yMin) * 0.08;
    yMin = this.zero ? 0 : yMin - pad;
    yMax += pad;
    const L = 40, R = 8, T = 18, B = 18;
    const X = (x) => L + ((x - xMin) / Math.max(1, xMax - xMin)) * (w - L - R);
    const Y = (y) => T + ((yMax - y) / (yMax - yMin)) * (h - T - B);
    ctx.strokeStyle = css("--grid");
    ctx.fillStyle = css("--muted");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const y = yMin + ((yMax - yMin) * i) / 4;
      ctx.beginPath();
      ctx.moveTo(L, Y(y));
      ctx.lineTo(w - R, Y(y));
      ctx.stroke();
      ctx.fillText(Math.abs(yMax) >= 100 ? y.toFixed(0) : Math.abs(yMax) >= 10 ? y.toFixed(1) : y.toFixed(2), L - 4, Y(y) + 4);
    }
    ctx.textAlign = "left";
    ctx.fillText(`step ${xMin}…${xMax}`, L, h - 4);
    let lx = L;
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width || 1.5;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      let first = true;
      for (const [x, y] of s.data) {
        if (x < xMin) continue;
        if (first) ctx.moveTo(X(x), Y(y));
        else ctx.lineTo(X(x), Y(y));
        first = false;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = s.color;
      ctx.fillRect(lx, 5, 10, 3);
      ctx.fillStyle = css("--fg");
      ctx.fillText(s.label, lx + 14, 11);
      lx += 24 + ctx.measureText(s.label).width;
    }
  }
}

// A 2-D path: series of [x, y] points, equal scales on both axes.
export class PathChart {
  constructor(canvas, { window = 80 } = {}) {
    this.canvas = canvas;
    this.window = window;
    this.points = 0;
  }

  draw(series, marks = [], empty = ["Waiting for the first step", ""]) {
    this.points = Math.max(0, ...series.map((s) => s.data.length));
    const recent = series.map((s) => ({ ...s, data: s.data.slice(-this.window) }));
    const all = recent.flatMap((s) => s.data).concat(marks.map((m) => m.at));
    if (!all.length) return message(this.canvas, ...empty);
    const { ctx, w, h } = setup(this.canvas);
    const span = Math.max(1.6, ...all.map((p) => Math.max(Math.abs(p[0]), Math.abs(p[1])))) * 1.08;
    const s = Math.min(w, h) / (2 * span);
    const X = (x) => w / 2 + x * s;
    const Y = (y) => h / 2 - y * s;
    ctx.strokeStyle = css("--grid");
    ctx.beginPath();
    ctx.moveTo(0, h / 2);
    ctx.lineTo(w, h / 2);
    ctx.moveTo(w / 2, 0);
    ctx.lineTo(w / 2, h);
    ctx.stroke();
    let ly = 12;
    for (const ser of recent) {
      const n = ser.data.length;
      if (ser.line && n > 1) {
        ctx.strokeStyle = ser.color;
        ctx.globalAlpha = 0.35;
        ctx.lineWidth = 1;
        ctx.beginPath();
        ser.data.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
        ctx.stroke();
      }
      ser.data.forEach(([x, y], i) => {
        ctx.globalAlpha = 0.15 + (0.85 * (i + 1)) / n;
        ctx.fillStyle = ser.color;
        ctx.beginPath();
        ctx.arc(X(x), Y(y), ser.radius || 2.2, 0, 2 * Math.PI);
        ctx.fill();
      });
      ctx.globalAlpha = 1;
      ctx.fillStyle = ser.color;
      ctx.fillRect(8, ly - 5, 10, 3);
      ctx.fillStyle = css("--fg");
      ctx.fillText(ser.label, 22, ly);
      ly += 14;
    }
    for (const m of marks) {
      if (m.from) {
        ctx.strokeStyle = m.color;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.moveTo(X(m.from[0]), Y(m.from[1]));
        ctx.lineTo(X(m.at[0]), Y(m.at[1]));
        ctx.stroke();
      }
      ctx.strokeStyle = m.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(X(m.at[0]), Y(m.at[1]), 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
}

// rows: one array of values per step (the states, concatenated); newest column on the right.
export class Heatmap {
  constructor(canvas, { window = 80 } = {}) {
    this.canvas = canvas;
    this.window = window;
  }

  draw(columns, empty = ["The hidden state appears after the first step", ""]) {
    if (!columns.length) return message(this.canvas, ...empty);
    const { ctx, w, h } = setup(this.canvas);
    const cols = columns.slice(-this.window);
    const units = cols[0].length;
    const cw = w / this.window;
    const rh = h / units;
    const x0 = w - cols.length * cw;
    cols.forEach((col, i) => {
      for (let u = 0; u < units; u++) {
        const v = Math.max(-1, Math.min(1, col[u]));
        const a = Math.round(255 * (1 - Math.abs(v)));
        ctx.fillStyle = v >= 0 ? `rgb(255,${a},${a})` : `rgb(${a},${a},255)`;
        ctx.fillRect(x0 + i * cw, u * rh, Math.ceil(cw), Math.ceil(rh));
      }
    });
  }
}
