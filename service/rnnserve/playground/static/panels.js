// One panel per kind of model: a streamed signal (one float input, e.g. forecaster), a 2-D trajectory (two
// features in, two out, e.g. orbit), text (token ids with a vocabulary file, e.g. chargru), and JSON inputs for
// any model.

import { Problem, call } from "./api.js";
import { LineChart, PathChart } from "./charts.js";

const el = (html) => {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content;
};
const num = (root, sel) => Number(root.querySelector(sel).value);
const gauss = () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
const features = (t) => t.shape.slice(2).reduce((n, d) => n * (d === null ? 1 : d), 1);

export async function panelFor(model, root, ctx, view) {
  root.textContent = "";
  const input = model.inputs[0];
  const one = model.inputs.length === 1 && model.sessions;
  if (view !== "json" && one && input.dtype === "int64" && input.vocabulary) {
    try {
      const vocab = await call("GET", `playground/vocab/${encodeURIComponent(model.name)}`);
      return textPanel(model, root, ctx, vocab);
    } catch {
      // no vocabulary file: JSON inputs
    }
  }
  if (view !== "json" && one && input.dtype === "float32" && input.shape.length === 3) {
    const out = model.outputs[0];
    if (features(input) === 2 && out.shape.length === 3 && features(out) === 2) return orbitPanel(model, root, ctx);
    return signalPanel(model, root, ctx);
  }
  return jsonPanel(model, root, ctx);
}

// ---- streamed panels: start / pause, step once, speed, noise, stop after N steps --------------------------------

function streamControls(root, ctx, extra) {
  root.append(
    el(`<div class="controls">
      <button id="start" class="primary">Start</button>
      <button id="step-once">Step once</button>
      <label>speed <input id="speed" type="range" min="1" max="200" value="25"> <span id="speed-v">25</span>/s</label>
      <label>noise σ <input id="noise" type="range" min="0" max="0.5" step="0.01" value="0.1"> <span id="noise-v">0.10</span></label>
      ${extra}
      <label>stop after <input id="stop-after" type="number" min="0" value="0"> steps (0 = never)</label>
    </div>`),
  );
  for (const id of ["speed", "noise"]) {
    const inp = root.querySelector(`#${id}`);
    inp.oninput = () => (root.querySelector(`#${id}-v`).textContent = id === "noise" ? Number(inp.value).toFixed(2) : inp.value);
  }
  root.querySelector("#start").onclick = () => (ctx.state.running ? ctx.pause() : ctx.run());
  root.querySelector("#step-once").onclick = async (ev) => {
    ctx.pause();
    ev.target.disabled = true;
    try {
      await ctx.send(ctx.panel().next());
    } catch (err) {
      ctx.showError(err);
    } finally {
      ev.target.disabled = false;
    }
  };
  return {
    speed: () => num(root, "#speed"),
    stopAfter: () => num(root, "#stop-after"),
    noise: () => num(root, "#noise"),
    update() {
      const live = !!ctx.session() && !ctx.session().closed;
      root.querySelector("#start").textContent = ctx.state.running ? "Pause" : "Start";
      root.querySelector("#start").disabled = !live;
      root.querySelector("#step-once").disabled = !live || ctx.state.running;
    },
  };
}

function mse(pairs) {
  if (!pairs.length) return NaN;
  return pairs.reduce((s, [a, b]) => s + (a - b) ** 2, 0) / pairs.length;
}

function signalPanel(model, root, ctx) {
  const F = features(model.inputs[0]);
  const forecast = features(model.outputs[0]) === F; // output t forecasts input t+1 (as the forecaster does)
  const base = streamControls(
    root,
    ctx,
    `<label>period <input id="period" type="number" min="4" max="200" value="24"></label>
     <label>amplitude <input id="amp" type="number" min="0" max="5" step="0.1" value="1"></label>`,
  );
  root.append(el(`<figure><figcaption>Input signal and the model's ${forecast ? "one-step forecast" : "output"}
    <span id="score" class="muted"></span></figcaption><canvas id="chart" height="230"></canvas></figure>`));
  const chart = new LineChart(root.querySelector("#chart"), { window: 120 });
  let t = 0;
  const phase = Math.random() * 2 * Math.PI;
  const panel = {
    kind: "signal",
    autostart: true,
    ...base,
    chart,
    next() {
      const amp = num(root, "#amp");
      const period = num(root, "#period") || 24;
      const values = [];
      for (let f = 0; f < F; f++)
        values.push(amp * Math.sin((2 * Math.PI * t) / period + phase + (f * Math.PI) / 2) + base.noise() * gauss());
      t += 1;
      return values;
    },
    draw() {
      const { inputs, outputs } = ctx.state;
      const shift = forecast ? 1 : 0;
      chart.draw(
        [
          { label: "input", color: "#2f6fde", data: inputs.map((v, i) => [i, v[0]]) },
          {
            label: forecast ? "forecast of the next value" : "output[0]",
            color: "#e8772e",
            width: 2,
            data: outputs.map((v, i) => [i + shift, v[0]]),
          },
        ],
        ctx.state.error && !inputs.length ? [ctx.state.error.title, ctx.state.error.detail] : undefined,
      );
      if (forecast) {
        const pairs = [], naive = [];
        for (let i = Math.max(10, inputs.length - 50); i < inputs.length; i++) {
          pairs.push([outputs[i - 1][0], inputs[i][0]]);
          naive.push([inputs[i - 1][0], inputs[i][0]]);
        }
        root.querySelector("#score").textContent = pairs.length
          ? ` · last ${pairs.length} steps: MSE ${mse(pairs).toFixed(3)}, naive ${mse(naive).toFixed(3)}`
          : "";
      }
    },
  };
  return panel;
}

function orbitPanel(model, root, ctx) {
  const base = streamControls(
    root,
    ctx,
    `<label>period <input id="period" type="number" min="4" max="200" value="24"></label>
     <label>a <input id="a" type="number" min="0.1" max="3" step="0.1" value="1.2"></label>
     <label>b <input id="b" type="number" min="0.1" max="3" step="0.1" value="0.8"></label>
     <label><input id="reverse" type="checkbox"> clockwise</label>`,
  );
  root.append(el(`<div class="row"><figure><figcaption>True path (blue) and the model's prediction of the next
    point (orange), drawn ahead of the current point <span id="score" class="muted"></span></figcaption>
    <canvas id="chart" height="300"></canvas></figure>
    <figure><figcaption>x and y over time, with their forecasts</figcaption><canvas id="xy" height="300"></canvas>
    </figure></div>`));
  const chart = new PathChart(root.querySelector("#chart"), { window: 60 });
  const xy = new LineChart(root.querySelector("#xy"), { window: 80 });
  let t = 0;
  const phase = Math.random() * 2 * Math.PI;
  return {
    kind: "orbit",
    autostart: true,
    ...base,
    chart,
    next() {
      const w = ((root.querySelector("#reverse").checked ? -2 : 2) * Math.PI) / (num(root, "#period") || 24);
      const n = base.noise();
      const p = [num(root, "#a") * Math.cos(w * t + phase) + n * gauss(), num(root, "#b") * Math.sin(w * t + phase) + n * gauss()];
      t += 1;
      return p;
    },
    draw() {
      const { inputs, outputs, error } = ctx.state;
      const empty = error && !inputs.length ? [error.title, error.detail] : undefined;
      const marks = inputs.length
        ? [{ from: inputs[inputs.length - 1], at: outputs[outputs.length - 1], color: "#e8772e" }]
        : [];
      chart.draw(
        [
          { label: "true path", color: "#2f6fde", data: inputs, line: true },
          { label: "predicted next point", color: "#e8772e", data: outputs, radius: 2.6 },
        ],
        marks,
        empty,
      );
      xy.draw(
        [
          { label: "x", color: "#2f6fde", data: inputs.map((v, i) => [i, v[0]]) },
          { label: "x forecast", color: "#2f6fde", dash: [4, 3], data: outputs.map((v, i) => [i + 1, v[0]]) },
          { label: "y", color: "#1b9e77", data: inputs.map((v, i) => [i, v[1]]) },
          { label: "y forecast", color: "#1b9e77", dash: [4, 3], data: outputs.map((v, i) => [i + 1, v[1]]) },
        ],
        empty,
      );
      const pairs = [];
      for (let i = Math.max(10, inputs.length - 50); i < inputs.length; i++)
        for (const k of [0, 1]) pairs.push([outputs[i - 1][k], inputs[i][k]]);
      root.querySelector("#score").textContent = pairs.length ? ` · MSE over the last ${pairs.length / 2} steps ${mse(pairs).toFixed(3)}` : "";
    },
  };
}

// ---- text: each typed character is one step; the top-k next characters; continue greedily or with a temperature

function textPanel(model, root, ctx, vocab) {
  const tokens = vocab.tokens;
  const pad = vocab.pad_id ?? 0;
  const ids = new Map(tokens.map((ch, i) => [ch, i]).filter(([, i]) => i !== pad));
  const normalize = (s) => [...s.toLowerCase().replace(/\s+/g, " ")].filter((ch) => ids.has(ch)).join("");
  root.append(
    el(`<div class="controls"><label style="flex:1">Type (lower-cased, whitespace collapsed; ${tokens.length - 1}
      characters: <code></code>)<textarea id="text" rows="3" spellcheck="false"
      placeholder="twinkle, twinkle, "></textarea></label></div>
    <div class="controls"><span class="muted">most likely next:</span> <span id="topk"></span></div>
    <div class="controls"><button id="continue" class="primary">Continue</button>
      <label><input id="continue-n" type="number" min="1" max="500" value="40"> characters</label>
      <label>temperature <input id="temperature" type="number" min="0" max="3" step="0.1" value="0"> (0 = greedy)</label>
    </div>
    <div class="controls"><span class="muted">continued:</span> <span id="continuation"></span></div>
    <figure><figcaption>Per step: the probability the model gave to the character that came (blue) and its top
      probability (orange)</figcaption><canvas id="chart" height="150"></canvas></figure>`),
  );
  root.querySelector("code").textContent = tokens.filter((_, i) => i !== pad).join("");
  const box = root.querySelector("#text");
  const chart = new LineChart(root.querySelector("#chart"), { window: 120, zero: true });
  let consumed = ""; // what the session has read
  let syncing = null;
  let generating = false;
  let destroyed = false;

  const last = () => ctx.state.outputs[ctx.state.outputs.length - 1];

  // Bring the session up to the box: appended characters one step each; any other edit resets and replays.
  async function sync() {
    while (!destroyed) {
      const target = normalize(box.value);
      if (target === consumed) return;
      if (target.startsWith(consumed)) {
        const ch = target[consumed.length];
        consumed += ch;
        await ctx.send([ids.get(ch)]);
      } else {
        await ctx.reset(undefined, { consumed: "", text: box.value });
        consumed = target;
        if (target) await ctx.send([...target].map((ch) => ids.get(ch)));
      }
    }
  }

  function schedule() {
    if (!syncing)
      syncing = sync()
        .catch((err) => ctx.showError(err))
        .finally(() => {
          syncing = null;
          if (!destroyed && normalize(box.value) !== consumed && !ctx.state.error) schedule();
        });
    return syncing;
  }

  box.oninput = () => {
    if (!generating) schedule();
  };

  function choose(probs, temperature) {
    const p = probs.map((v, i) => (i === pad ? 0 : v));
    if (!(temperature > 0)) return p.indexOf(Math.max(...p));
    const w = p.map((v) => Math.pow(Math.max(v, 1e-12), 1 / temperature));
    let r = Math.random() * w.reduce((a, b) => a + b, 0);
    for (let i = 0; i < w.length; i++) if ((r -= w[i]) <= 0) return i;
    return w.length - 1;
  }

  root.querySelector("#continue").onclick = async (ev) => {
    ev.target.disabled = true;
    generating = true;
    try {
      await schedule();
      ctx.state.continuation = "";
      const n = num(root, "#continue-n");
      const temperature = num(root, "#temperature");
      for (let i = 0; i < n && !destroyed; i++) {
        if (!last()) throw new Problem({ title: "Nothing to continue", detail: "type at least one character first" }, 0);
        const id = choose(last(), temperature);
        const ch = tokens[id];
        ctx.state.continuation += ch;
        root.querySelector("#continuation").textContent = ctx.state.continuation;
        box.value += ch;
        consumed += ch;
        await ctx.send([id]);
      }
    } catch (err) {
      ctx.showError(err);
    } finally {
      generating = false;
      ev.target.disabled = false;
      if (!destroyed) schedule(); // what was typed meanwhile
    }
  };

  return {
    kind: "text",
    autostart: false,
    chart,
    destroy() {
      destroyed = true;
    },
    reset(snapshot) {
      consumed = snapshot ? snapshot.consumed : "";
      box.value = snapshot ? snapshot.text : "";
      ctx.state.continuation = "";
      root.querySelector("#continuation").textContent = "";
    },
    snapshot: () => ({ consumed, text: box.value }),
    update() {
      root.querySelector("#continue").disabled = generating || !ctx.session() || !!ctx.session().closed;
    },
    draw() {
      const { inputs, outputs, error } = ctx.state;
      const topk = root.querySelector("#topk");
      topk.textContent = "";
      const probs = last();
      if (probs) {
        const order = probs.map((p, i) => [p, i]).filter(([, i]) => i !== pad).sort((a, b) => b[0] - a[0]);
        for (const [p, i] of order.slice(0, 5)) {
          const span = document.createElement("span");
          span.innerHTML = "<b></b> ";
          span.querySelector("b").textContent = tokens[i] === " " ? "␣" : tokens[i];
          span.append(`${(100 * p).toFixed(1)}%`);
          topk.append(span);
        }
      }
      chart.draw(
        [
          { label: "p(char that came)", color: "#2f6fde", data: inputs.slice(1).map((v, i) => [i + 1, outputs[i][v[0]]]) },
          { label: "top p", color: "#e8772e", data: outputs.map((v, i) => [i, Math.max(...v)]) },
        ],
        error && !inputs.length ? [error.title, error.detail] : ["Type to start", "each character is one step"],
      );
    },
  };
}

// ---- JSON inputs for any model: random or uploaded; session step or stateless predict, with the states ---------

function jsonPanel(model, root, ctx) {
  root.append(
    el(`<div class="controls"><button id="json-random">Random inputs</button>
      <label>timesteps <input id="json-t" type="number" min="1" max="1000" value="4"></label>
      <label>or a file <input id="json-file" type="file" accept=".json,application/json"></label></div>
    <textarea id="json" rows="8" spellcheck="false"></textarea>
    <div class="controls"><button id="json-step" class="primary">Step the session</button>
      <button id="json-predict">Predict (stateless)</button></div>
    <pre id="json-out" class="muted">Outputs and states appear here.</pre>`),
  );
  const box = root.querySelector("#json");
  const out = root.querySelector("#json-out");

  function random() {
    const T = num(root, "#json-t") || 1;
    const one = (t) => {
      const dims = t.shape.slice(2).map((d) => d ?? 1);
      const leaf = () => (t.dtype === "int64" ? 1 + Math.floor(Math.random() * ((t.vocabulary || 2) - 1)) : +(2 * Math.random() - 1).toFixed(3));
      const fill = (ds) => (ds.length ? Array.from({ length: ds[0] }, () => fill(ds.slice(1))) : leaf());
      return [Array.from({ length: T }, () => fill(dims))];
    };
    const inputs = model.inputs.length === 1 ? one(model.inputs[0]) : Object.fromEntries(model.inputs.map((t) => [t.name, one(t)]));
    box.value = JSON.stringify(inputs);
  }

  function parsed() {
    try {
      return JSON.parse(box.value);
    } catch (err) {
      throw new Problem({ title: "Invalid JSON", detail: `the inputs are not JSON: ${err.message}` }, 0);
    }
  }

  function show(reply) {
    const text = JSON.stringify(reply, (k, v) => (typeof v === "number" ? +v.toPrecision(6) : v), 1);
    out.textContent = text.length > 20000 ? text.slice(0, 20000) + "\n…" : text;
    out.className = "";
  }

  root.querySelector("#json-random").onclick = random;
  root.querySelector("#json-file").onchange = async (ev) => {
    const file = ev.target.files[0];
    if (file) box.value = await file.text();
  };
  root.querySelector("#json-predict").onclick = async () => {
    try {
      const body = { inputs: parsed(), return_state: true };
      show(await call("POST", `v1/models/${encodeURIComponent(model.name)}/predict`, body));
      ctx.clearError();
    } catch (err) {
      ctx.showError(err);
    }
  };
  root.querySelector("#json-step").onclick = async () => {
    try {
      const session = ctx.session();
      const inputs = parsed();
      const started = performance.now();
      const reply = await ctx.serial(() => call("POST", session.path("/step"), { inputs, return_state: true, seq: ctx.state.step }));
      const ms = performance.now() - started;
      session.touch();
      session.step = reply.step;
      Object.assign(ctx.state, { step: reply.step });
      ctx.state.states.push(reply.states.map((s) => s.flat(Infinity)).flat());
      ctx.state.latencies.push(ms);
      if (ctx.state.firstPointAt === null) ctx.state.firstPointAt = performance.now();
      show(reply);
      ctx.clearError();
      ctx.redraw();
    } catch (err) {
      ctx.showError(err);
    }
  };
  random();
  return {
    kind: "json",
    autostart: false,
    draw() {},
    update() {
      root.querySelector("#json-step").disabled = !ctx.session() || !!ctx.session().closed;
    },
  };
}
