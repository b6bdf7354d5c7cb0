// The playground: lists the served models, opens a session on the chosen one and streams its steps, plotting
// inputs, outputs, the hidden state and each step's round trip. `window.playground.state` is what the page
// shows, for tests and for the curious.

import { Problem, Session, apiKey, call, setApiKey } from "./api.js";
import { Heatmap, LineChart } from "./charts.js";
import { panelFor } from "./panels.js";

const $ = (sel) => document.querySelector(sel);

const state = {
  models: [],
  model: null, // the model's JSON from GET /v1/models
  panel: null, // the panel's kind
  sessionId: null,
  step: 0,
  inputs: [], // per step since the last reset: the input values
  outputs: [], // per step: the first output's values at that step
  states: [], // per step: every state's values, concatenated
  latencies: [], // per step: round trip in ms
  running: false,
  firstPointAt: null, // ms from navigation start to the first streamed point
  error: null, // {title, detail} of the problem on show
  continuation: "",
  saved: null,
};

let session = null;
let panel = null;
let chain = Promise.resolve();
const heatmap = new Heatmap($("#heatmap"));
const latencyChart = new LineChart($("#latency-chart"), { window: 120, zero: true });

// One session operation at a time, in order (a reset waits for the step in flight).
function serial(fn) {
  const run = chain.then(fn);
  chain = run.catch(() => {});
  return run;
}

export function showError(err) {
  if (!(err instanceof Problem)) {
    console.error(err);
    err = new Problem({ title: "Error in the page", detail: String(err && err.message ? err.message : err) }, 0);
  }
  state.error = { title: err.title, detail: err.detail, status: err.status };
  $("#error .title").textContent = err.title;
  $("#error .detail").textContent = err.detail;
  $("#error").hidden = false;
  if (panel) panel.draw();
  drawShared();
  updateStatus();
}

function clearError() {
  state.error = null;
  $("#error").hidden = true;
}

function emptyMessage() {
  if (state.error) return [state.error.title, state.error.detail];
  if (!session) return ["No session", "choose a model"];
  return ["Waiting for the first step", ""];
}

function drawShared() {
  const empty = emptyMessage();
  heatmap.draw(state.states, state.states.length ? undefined : empty);
  latencyChart.draw(
    [{ label: "round trip ms", color: "#7a52c7", data: state.latencies.map((v, i) => [i, v]) }],
    state.latencies.length ? undefined : empty,
  );
}

function clearSeries() {
  state.inputs = [];
  state.outputs = [];
  state.states = [];
  state.latencies = [];
}

function fmtExpiry() {
  if (!session) return "–";
  if (session.closed) return "gone";
  const left = Math.round((session.expiresAt - Date.now()) / 1000);
  const at = new Date(session.expiresAt).toLocaleTimeString();
  return left > 0 ? `${at} (in ${left} s idle)` : `${at} (expired)`;
}

function updateStatus() {
  $("#model-name").textContent = state.model ? state.model.name : "–";
  $("#session-id").textContent = session ? session.id : "–";
  $("#step").textContent = String(state.step);
  $("#expiry").textContent = fmtExpiry();
  const n = state.latencies.length;
  if (n) {
    const sorted = state.latencies.slice(-50).sort((a, b) => a - b);
    const med = sorted[Math.floor(sorted.length / 2)];
    $("#latency").textContent = `${state.latencies[n - 1].toFixed(1)} ms (median ${med.toFixed(1)})`;
  } else $("#latency").textContent = "–";
  $("#transport").textContent = session ? session.transport : "";
  const live = !!session && !session.closed;
  for (const id of ["#reset", "#save", "#delete"]) $(id).disabled = !live;
  $("#restore").disabled = !live || !state.saved;
  $("#new-session").disabled = !state.model || !state.model.sessions;
  if (panel && panel.update) panel.update();
}

// Send one chunk (values for T timesteps) and record it; one point per timestep.
async function send(values) {
  return serial(async () => {
    if (!session) throw new Problem({ title: "No session", detail: "open a session first" }, 0);
    const reply = await session.send(values);
    const steps = reply.step - state.step;
    const outSize = session.layout.outputs[0].size;
    const inSize = session.int ? 1 : session.features;
    const T = values.length / inSize;
    for (let t = 0; t < T; t++) {
      state.inputs.push(values.slice(t * inSize, (t + 1) * inSize));
      const out = reply.outputs[0];
      state.outputs.push(session.layout.outputs[0].seq ? out.slice(t * outSize, (t + 1) * outSize) : out);
    }
    state.states.push(reply.states.flat());
    state.latencies.push(reply.ms);
    state.step = reply.step;
    if (state.firstPointAt === null) state.firstPointAt = performance.now();
    clearError();
    if (panel) panel.draw();
    drawShared();
    updateStatus();
    return { ...reply, steps };
  });
}

// The streaming loop of panels that generate their inputs (signal, orbit): `panel.next()` gives each step.
let loop = Promise.resolve();
let generation = 0;

function run() {
  if (state.running || !session) return loop;
  state.running = true;
  loop = streamLoop(panel, session, ++generation);
  return loop;
}

async function streamLoop(panel, session, mine) {
  updateStatus();
  try {
    while (generation === mine && !session.closed) {
      const started = performance.now();
      const stopAfter = panel.stopAfter();
      if (stopAfter > 0 && state.inputs.length >= stopAfter) break;
      await send(panel.next());
      const wait = 1000 / panel.speed() - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } catch (err) {
    showError(err);
  } finally {
    if (generation === mine) state.running = false;
    updateStatus();
  }
}

function pause() {
  state.running = false;
  generation += 1;
}

async function openSession() {
  pause();
  await loop;
  const old = session;
  session = null;
  state.sessionId = null;
  state.step = 0;
  state.saved = null;
  $("#saved").textContent = "";
  clearSeries();
  if (old) {
    old.close();
    if (!old.closed) call("DELETE", old.path()).catch(() => {});
  }
  if (!state.model.sessions) {
    updateStatus();
    return;
  }
  try {
    session = await Session.open(state.model);
    state.sessionId = session.id;
    clearError();
    if (panel && panel.reset) panel.reset();
  } catch (err) {
    showError(err);
  }
  if (panel) panel.draw();
  drawShared();
  updateStatus();
}

async function reset(states, snapshot) {
  pause();
  try {
    await serial(() => session.reset(states));
    state.step = session.step;
    clearSeries();
    clearError();
    if (panel && panel.reset) panel.reset(snapshot || (states ? state.saved.panel : undefined));
  } catch (err) {
    showError(err);
  }
  if (panel) panel.draw();
  drawShared();
  updateStatus();
}

async function saveState() {
  try {
    const info = await serial(() => session.get());
    state.saved = { states: info.states, step: info.step, panel: panel && panel.snapshot ? panel.snapshot() : null };
    $("#saved").textContent = `saved the state at step ${info.step}`;
  } catch (err) {
    showError(err);
  }
  updateStatus();
}

async function deleteSession() {
  pause();
  try {
    await serial(() => session.remove());
    showError(session.closed);
  } catch (err) {
    showError(err);
  }
  updateStatus();
}

function signature(model) {
  const t = (x) => `${x.name} ${x.dtype} [${x.shape.map((d) => (d === null ? "·" : d)).join(",")}]`;
  const lines = [
    ...model.inputs.map((x) => "in  " + t(x)),
    ...model.outputs.map((x) => "out " + t(x)),
    ...model.states.map((x) => "st  " + t(x)),
  ];
  if (model.status !== "ready") lines.push(model.status + (model.error ? `: ${model.error}` : ""));
  return lines.join("\n");
}

function renderModels() {
  const list = $("#models");
  list.textContent = "";
  for (const m of state.models) {
    const li = document.createElement("li");
    li.dataset.model = m.name;
    const ok = m.status === "ready";
    li.className = (ok ? "" : "off ") + (state.model && state.model.name === m.name ? "selected" : "");
    li.innerHTML = "<b></b> <span class=muted></span><div class=sig></div>";
    li.querySelector("b").textContent = m.name;
    li.querySelector("span").textContent = m.sessions ? "" : "(predict only)";
    li.querySelector(".sig").textContent = signature(m);
    if (ok) li.onclick = () => select(m.name);
    list.append(li);
  }
  if (!state.models.length) list.innerHTML = "<li class=muted>No models are served.</li>";
}

async function select(name, view) {
  const model = state.models.find((m) => m.name === name);
  if (!model) return;
  pause();
  if (panel && panel.destroy) panel.destroy();
  await loop;
  await chain;
  state.model = model;
  renderModels();
  history.replaceState(null, "", "#" + encodeURIComponent(name) + (view ? "/" + view : ""));
  const ctx = {
    state, send, run, pause, serial, showError, clearError, updateStatus, reset,
    session: () => session,
    panel: () => panel,
    redraw: () => { drawShared(); updateStatus(); },
  };
  panel = await panelFor(model, $("#panel"), ctx, view);
  state.panel = panel.kind;
  $("#view-json").textContent = panel.kind === "json" ? "Back to the live view" : "JSON inputs";
  await openSession();
  if (panel.autostart && session) run();
}

async function loadModels() {
  try {
    state.models = (await call("GET", "v1/models")).models;
  } catch (err) {
    if (err.status === 401) {
      $("#key-form").hidden = false;
      $("#key-input").focus();
    }
    $("#models").innerHTML = "<li class=muted>No model list.</li>";
    showError(err);
    return;
  }
  $("#key-form").hidden = true;
  $("#forget-key").hidden = !apiKey();
  clearError();
  renderModels();
  const [hashName, view] = decodeURIComponent(location.hash.slice(1)).split("/");
  const ready = state.models.filter((m) => m.status === "ready");
  const pick =
    ready.find((m) => m.name === hashName) ||
    ready.find((m) => m.name === "forecaster") ||
    ready.find((m) => m.sessions) ||
    ready[0];
  if (pick) await select(pick.name, pick.name === hashName ? view : undefined);
  else {
    const failed = state.models.find((m) => m.error);
    const detail = failed ? `${failed.name}: ${failed.error}` : "the server has no model ready yet";
    showError(new Problem({ title: "No model is ready", detail }, 503));
  }
}

$("#reset").onclick = () => reset();
$("#restore").onclick = () => reset(state.saved.states);
$("#save").onclick = () => saveState();
$("#delete").onclick = () => deleteSession();
$("#new-session").onclick = async () => {
  await openSession();
  if (panel.autostart && session) run();
};
$("#view-json").onclick = () => state.model && select(state.model.name, panel.kind === "json" ? undefined : "json");
$("#key-form").onsubmit = (ev) => {
  ev.preventDefault();
  setApiKey($("#key-input").value.trim());
  $("#key-input").value = "";
  loadModels();
};
$("#forget-key").onclick = () => {
  setApiKey(null);
  location.reload();
};
setInterval(() => {
  if (session) $("#expiry").textContent = fmtExpiry();
}, 500);
window.addEventListener("hashchange", () => {
  const [name, view] = decodeURIComponent(location.hash.slice(1)).split("/");
  if (state.models.some((m) => m.name === name)) select(name, view);
});
window.addEventListener("resize", () => {
  if (panel) panel.draw();
  drawShared();
});

window.playground = { state, select, reset, run, pause, send, session: () => session, panel: () => panel };
drawShared();
loadModels();
