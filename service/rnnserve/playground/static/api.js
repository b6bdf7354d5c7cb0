// The rnnserve API as the page uses it: every URL relative to the page (so a root path behind a proxy works),
// problem+json errors as `Problem`, sessions, and the binary stream of one session.

const KEY = "rnnserve-api-key";

export class Problem extends Error {
  constructor(body, status) {
    super(`${body.title || "Error"}: ${body.detail || ""}`);
    this.title = body.title || `HTTP ${status}`;
    this.detail = body.detail || "";
    this.status = body.status || status;
    this.body = body;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY); // this tab only; never in a URL
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function url(path) {
  // page at /prefix/ -> /prefix/v1/...; the page itself decides the base, never the server
  return new URL(path, document.baseURI).toString();
}

function headers(extra) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function problemOf(resp) {
  let body;
  try {
    body = await resp.json();
  } catch {
    body = {};
  }
  if (typeof body !== "object" || body === null || !body.title) {
    body = { title: `HTTP ${resp.status} ${resp.statusText}`, detail: body && body.error ? body.error : "" };
  }
  return new Problem(body, resp.status);
}

export async function call(method, path, body) {
  let resp;
  try {
    resp = await fetch(url(path), {
      method,
      headers: headers(body === undefined ? {} : { "content-type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new Problem({ title: "The server cannot be reached", detail: String(err.message || err) }, 0);
  }
  if (!resp.ok) throw await problemOf(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

// The stream went away without a problem of the session's own (code 1006, 1011, ...).
export class StreamLost extends Problem {
  constructor(detail) {
    super({ title: "The stream was lost", detail }, 0);
  }
}

const prod = (shape) => shape.reduce((n, d) => n * (d === null ? 1 : d), 1);

// Values per timestep of each output and each state (batch 1; free dimensions count 1).
export function layout(model) {
  return {
    outputs: model.outputs.map((t) => ({ name: t.name, size: prod(t.shape.slice(2)), seq: t.shape.length >= 3 })),
    states: model.states.map((t) => ({ name: t.name, size: prod(t.shape.slice(1)) })),
  };
}

// One session of one model: opened on creation, stepped over a binary WebSocket (or binary HTTP when an API key
// is set: a browser cannot put a key on a WebSocket, and the page never puts it in a URL).
export class Session {
  static async open(model) {
    const info = await call("POST", "v1/sessions", { model: model.name, batch_size: 1 });
    return new Session(model, info);
  }

  constructor(model, info) {
    this.model = model;
    this.id = info.session_id;
    this.step = info.step;
    this.ttlMs = Math.max(0, Date.parse(info.expires_at) - Date.now());
    this.expiresAt = Date.parse(info.expires_at);
    this.layout = layout(model);
    const input = model.inputs[0];
    this.int = input.dtype === "int64";
    this.features = prod(input.shape.slice(2));
    this.ws = null;
    this.pending = [];
    this.closed = null; // a Problem once the session is gone
    this.transport = apiKey() ? "HTTP binary (API key)" : "WebSocket binary";
  }

  path(tail = "") {
    return `v1/sessions/${encodeURIComponent(this.id)}${tail}`;
  }

  touch() {
    this.expiresAt = Date.now() + this.ttlMs;
  }

  async get() {
    const info = await call("GET", this.path());
    this.step = info.step;
    this.expiresAt = Date.parse(info.expires_at);
    return info;
  }

  async reset(states) {
    const r = await call("POST", this.path("/reset"), states ? { states } : {});
    this.step = r.step;
    this.touch();
    return r;
  }

  async remove() {
    this.close();
    await call("DELETE", this.path());
    this.closed = new Problem({ title: "Session deleted", detail: `session ${this.id} was deleted` }, 410);
  }

  close() {
    if (this.ws) this.ws.close();
    this.ws = null;
  }

  encode(values) {
    return this.int ? new BigInt64Array(values.map((v) => BigInt(v))) : new Float32Array(values);
  }

  // One chunk of T timesteps (values: T * features numbers, or T token ids) -> {step, outputs, states, ms}.
  async send(values) {
    if (this.closed) throw this.closed;
    const data = this.encode(values);
    const before = this.step;
    if (!apiKey() && !this.wsFailed) {
      try {
        await this.connect(); // not part of the step's round trip
      } catch (err) {
        if (!(err instanceof StreamLost)) throw err;
        this.wsFailed = err.detail; // nothing was sent: HTTP from this step on
        this.transport = `HTTP binary (the WebSocket ${err.detail})`;
      }
    }
    let started = performance.now();
    let buf;
    if (apiKey() || this.wsFailed) buf = await this.sendHttp(data);
    else {
      try {
        buf = await this.sendWs(data);
      } catch (err) {
        if (!(err instanceof StreamLost)) throw err;
        // The WebSocket failed (a proxy that does not pass it, a server error): go on with binary HTTP steps.
        // The chunk is sent again only if the session did not take it (its step is still ours).
        this.wsFailed = err.detail;
        this.transport = `HTTP binary (the WebSocket ${err.detail})`;
        if ((await this.get()).step !== before) throw err;
        started = performance.now();
        buf = await this.sendHttp(data);
      }
    }
    const ms = performance.now() - started;
    const reply = this.decode(buf, values.length / (this.int ? 1 : this.features));
    this.step = reply.step;
    this.touch();
    return { ...reply, ms };
  }

  async sendHttp(data) {
    let resp;
    try {
      resp = await fetch(url(this.path(`/step?return_state=true&seq=${this.step}`)), {
        method: "POST",
        headers: headers({
          "content-type": "application/octet-stream",
          accept: "application/octet-stream",
          "x-shape": this.int ? `1,${data.length}` : `1,${data.length / this.features},${this.features}`,
        }),
        body: data,
      });
    } catch (err) {
      throw new Problem({ title: "The server cannot be reached", detail: String(err.message || err) }, 0);
    }
    if (!resp.ok) {
      const p = await problemOf(resp);
      if (p.status === 404) this.closed = p;
      throw p;
    }
    const body = await resp.arrayBuffer();
    const out = new Uint8Array(8 + body.byteLength);
    new DataView(out.buffer).setBigUint64(0, BigInt(resp.headers.get("x-step")), true);
    out.set(new Uint8Array(body), 8);
    return out.buffer;
  }

  connect() {
    if (this.ws) return this.ws.ready;
    const shape = this.int ? "1,1" : `1,1,${this.features}`;
    const wsUrl = url(this.path(`/stream?shape=${shape}&return_state=true`)).replace(/^http/, "ws");
    const ws = new WebSocket(wsUrl);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.ready = new Promise((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new StreamLost("could not be opened"));
    });
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        const body = JSON.parse(ev.data);
        const p = new Problem(body, body.status);
        if (p.status === 404) this.closed = p;
        const next = this.pending.shift();
        if (next) next.reject(p);
        else this.lastProblem = p;
      } else {
        const next = this.pending.shift();
        if (next) next.resolve(ev.data);
      }
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      let p = this.closed || this.lastProblem;
      if (!p && ev.code === 4404) p = new Problem({ title: "Session not found", detail: ev.reason || this.id }, 404);
      if (!p) p = new StreamLost(`closed with code ${ev.code}${ev.reason ? ": " + ev.reason : ""}`);
      if (ev.code === 4404) this.closed = p;
      for (const next of this.pending.splice(0)) next.reject(p);
    };
    return ws.ready;
  }

  async sendWs(data) {
    await this.connect();
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.ws.send(data);
    });
  }

  // The binary reply: 8-byte little-endian step, then the outputs' float32 values, then the states'.
  decode(buf, steps) {
    const step = Number(new DataView(buf).getBigUint64(0, true));
    const all = new Float32Array(buf, 8);
    const outputs = [];
    let at = 0;
    for (const o of this.layout.outputs) {
      const n = o.seq ? o.size * steps : o.size;
      outputs.push(Array.from(all.subarray(at, at + n)));
      at += n;
    }
    const states = [];
    for (const s of this.layout.states) {
      states.push(Array.from(all.subarray(at, at + s.size)));
      at += s.size;
    }
    return { step, outputs, states };
  }
}
