// A small Socket.IO v5 / Engine.IO v4 client, written for huddle's test page.
//
// Two layers, as in the protocol:
//   Engine  — one Engine.IO session: HTTP long-polling first, then the
//             upgrade to WebSocket (probe "2probe" / "3probe", then "5"),
//             heartbeat answers (server "2" ping → client "3" pong) and a
//             timeout when pings stop.
//   Manager — Socket.IO over that session: namespace multiplexing, packet
//             encoding (with binary attachments), acknowledgements, and
//             reconnection with exponential backoff. Each namespace is a
//             Socket; on reconnect a Socket sends its session id (pid) and the
//             offset of the last packet it received, so the server can replay
//             what it missed (connection state recovery → socket.recovered).
//
// Everything sent and received is reported through `manager.on("packet")`
// so the page can show an event log.

const EIO_PATH = "/socket.io/";
const SEP = "\x1e"; // record separator between packets of one polling payload

/** A minimal event emitter. */
class Emitter {
  constructor() { this._handlers = new Map(); }
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, []);
    this._handlers.get(event).push(fn);
    return this;
  }
  off(event, fn) {
    const list = this._handlers.get(event) || [];
    this._handlers.set(event, fn ? list.filter((f) => f !== fn) : []);
    return this;
  }
  _fire(event, ...args) {
    for (const fn of [...(this._handlers.get(event) || [])]) {
      try { fn(...args); } catch (err) { console.error(`handler of ${event} failed`, err); }
    }
  }
}

// --- base64 helpers (binary packets over long-polling are "b" + base64) ---
function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out.buffer;
}
const isBinary = (v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v);
const asBytes = (v) => (v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength));

// ---------------------------------------------------------------- Engine.IO

/**
 * One Engine.IO v4 session. Events: open(handshake), message(data),
 * transport(name), upgrade(name), close(reason), frame(dir, text) — the last
 * for heartbeats, so the log can show them.
 */
export class Engine extends Emitter {
  constructor(base, { transports = ["polling", "websocket"], query = {} } = {}) {
    super();
    this.base = base.replace(/\/$/, "");
    this.transports = transports;
    this.query = query;
    this.transport = null; // "polling" | "websocket"
    this.state = "opening";
    this.sid = null;
    this._writeBuffer = [];
    this._posting = false;
    this._upgrading = false;
    this._ws = null;
    this._pingTimer = null;
    this._polls = new AbortController();
  }

  _url(transport, scheme) {
    const q = new URLSearchParams({ ...this.query, EIO: "4", transport });
    if (this.sid) q.set("sid", this.sid);
    if (transport === "polling") q.set("t", Date.now().toString(36) + Math.random().toString(36).slice(2, 6));
    let url = `${this.base}${EIO_PATH}?${q}`;
    if (scheme === "ws") url = url.replace(/^http/, "ws");
    return url;
  }

  open() {
    if (this.transports[0] === "websocket") this._openWebSocket(false);
    else this._poll();
    return this;
  }

  // --- long-polling: a GET loop for reading, POSTs for writing ---
  async _poll() {
    this.transport = "polling";
    while (this.state !== "closed" && this.transport === "polling") {
      let text;
      try {
        const res = await fetch(this._url("polling"), { signal: this._polls.signal, cache: "no-store" });
        if (!res.ok) throw new Error(`polling GET answered ${res.status}`);
        text = await res.text();
      } catch (err) {
        if (this._upgrading) { this._finishUpgrade(); return; }
        if (this.transport === "polling") this._close(`transport error: ${err.message}`);
        return;
      }
      for (const part of text.split(SEP)) this._onPacket(part.startsWith("b") ? fromBase64(part.slice(1)) : part, true);
      // Once the WebSocket probe succeeded, the server ends this GET with a
      // noop; the upgrade completes when no GET is in flight any more.
      if (this._upgrading) { this._finishUpgrade(); return; }
    }
  }

  async _flushPolling() {
    if (this._posting || !this._writeBuffer.length || this.state !== "open") return;
    const batch = this._writeBuffer.splice(0);
    const body = batch.map((p) => (typeof p === "string" ? p : "b" + toBase64(asBytes(p)))).join(SEP);
    this._posting = true;
    try {
      const res = await fetch(this._url("polling"), { method: "POST", body, headers: { "Content-Type": "text/plain;charset=UTF-8" } });
      if (!res.ok) throw new Error(`polling POST answered ${res.status}`);
    } catch (err) {
      this._close(`transport error: ${err.message}`);
      return;
    } finally {
      this._posting = false;
    }
    this._flush();
  }

  // --- WebSocket: either the first transport, or the upgrade target ---
  _openWebSocket(probe) {
    const ws = new WebSocket(this._url("websocket", "ws"));
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onopen = () => {
      if (probe) { this._fire("frame", "out", "2probe"); ws.send("2probe"); }
      else this.transport = "websocket";
    };
    ws.onmessage = (ev) => {
      if (probe && this.transport === "polling") {
        if (ev.data === "3probe") {
          this._fire("frame", "in", "3probe");
          this._upgrading = true; // the polling loop finishes the upgrade once its GET ends
        }
        return;
      }
      this._onPacket(ev.data, false);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      if (this.transport === "websocket") this._close(`websocket closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
      else { this._ws = null; this._upgrading = false; } // failed probe: stay on polling
    };
  }

  _finishUpgrade() {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return;
    this._upgrading = false;
    this._fire("frame", "out", "5");
    this._ws.send("5");
    this.transport = "websocket";
    this._fire("transport", "websocket");
    this._fire("upgrade", "websocket");
    this._flush();
  }

  // --- packets ---
  _onPacket(data, viaPolling) {
    if (typeof data !== "string") { this._fire("message", data); return; } // binary message
    const type = data[0];
    const body = data.slice(1);
    switch (type) {
      case "0": { // open: { sid, upgrades, pingInterval, pingTimeout, maxPayload }
        this.handshake = JSON.parse(body);
        this.sid = this.handshake.sid;
        this.state = "open";
        if (!viaPolling) this.transport = "websocket";
        this._resetPingTimer();
        this._fire("transport", this.transport);
        this._fire("open", this.handshake);
        if (this.transport === "polling" && this.handshake.upgrades.includes("websocket") && this.transports.includes("websocket")) {
          this._openWebSocket(true);
        }
        this._flush();
        break;
      }
      case "1": this._close("server closed the session"); break;
      case "2": // ping: answer at once
        this._fire("frame", "in", "2");
        this._resetPingTimer();
        this._send("3");
        this._fire("frame", "out", "3");
        break;
      case "4": this._fire("message", body); break;
      case "6": break; // noop (ends a GET during the upgrade)
      default: break;
    }
  }

  _resetPingTimer() {
    clearTimeout(this._pingTimer);
    const { pingInterval = 25000, pingTimeout = 20000 } = this.handshake || {};
    this._pingTimer = setTimeout(() => this._close("ping timeout"), pingInterval + pingTimeout);
  }

  /** Sends a Socket.IO packet (text) or a binary attachment. */
  write(data) { this._send(typeof data === "string" ? "4" + data : data); }

  _send(packet) { this._writeBuffer.push(packet); this._flush(); }

  _flush() {
    if (this.state !== "open" || this._upgrading) return;
    if (this.transport === "websocket") {
      for (const p of this._writeBuffer.splice(0)) this._ws.send(p);
    } else {
      this._flushPolling();
    }
  }

  /** Closes the session on purpose. */
  close() {
    if (this.state === "closed") return;
    if (this.state === "open") {
      try { if (this.transport === "websocket") this._ws.send("1"); else fetch(this._url("polling"), { method: "POST", body: "1" }); } catch { /* gone already */ }
    }
    this._close("client closed", true);
  }

  _close(reason, deliberate = false) {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this._pingTimer);
    this._polls.abort();
    if (this._ws) { const ws = this._ws; this._ws = null; try { ws.close(); } catch { /* ignore */ } }
    this._fire("close", reason, deliberate);
  }
}

// ---------------------------------------------------------------- Socket.IO

const T = { CONNECT: 0, DISCONNECT: 1, EVENT: 2, ACK: 3, CONNECT_ERROR: 4, BINARY_EVENT: 5, BINARY_ACK: 6 };
const RESERVED = new Set(["connect", "connect_error", "disconnect"]);

/** Replaces binary values by placeholders; returns [data, attachments]. */
function deconstruct(data, buffers = []) {
  if (isBinary(data)) { buffers.push(data); return [{ _placeholder: true, num: buffers.length - 1 }, buffers]; }
  if (Array.isArray(data)) return [data.map((v) => deconstruct(v, buffers)[0]), buffers];
  if (data && typeof data === "object" && !(data instanceof Date)) {
    const out = {};
    for (const [k, v] of Object.entries(data)) out[k] = deconstruct(v, buffers)[0];
    return [out, buffers];
  }
  return [data, buffers];
}
function reconstruct(data, buffers) {
  if (data && data._placeholder === true && typeof data.num === "number") return buffers[data.num];
  if (Array.isArray(data)) return data.map((v) => reconstruct(v, buffers));
  if (data && typeof data === "object") {
    for (const k of Object.keys(data)) data[k] = reconstruct(data[k], buffers);
  }
  return data;
}

/** `<type>[<attachments>-][<nsp>,][<id>][<json>]` */
function encode({ type, nsp, id, data }) {
  let attachments = [];
  if (data !== undefined && (type === T.EVENT || type === T.ACK)) {
    [data, attachments] = deconstruct(data);
    if (attachments.length) type = type === T.EVENT ? T.BINARY_EVENT : T.BINARY_ACK;
  }
  let s = String(type);
  if (attachments.length) s += attachments.length + "-";
  if (nsp && nsp !== "/") s += nsp + ",";
  if (id !== undefined) s += id;
  if (data !== undefined) s += JSON.stringify(data);
  return [s, attachments];
}

function decode(text) {
  let i = 1;
  const p = { type: Number(text[0]), nsp: "/", attachments: 0 };
  if (p.type === T.BINARY_EVENT || p.type === T.BINARY_ACK) {
    const dash = text.indexOf("-", i);
    p.attachments = Number(text.slice(i, dash));
    i = dash + 1;
  }
  if (text[i] === "/") {
    const comma = text.indexOf(",", i);
    p.nsp = comma < 0 ? text.slice(i) : text.slice(i, comma);
    i = comma < 0 ? text.length : comma + 1;
  }
  const idStart = i;
  while (i < text.length && text[i] >= "0" && text[i] <= "9") i++;
  if (i > idStart) p.id = Number(text.slice(idStart, i));
  if (i < text.length) p.data = JSON.parse(text.slice(i));
  return p;
}

/**
 * One connection to a huddle server, shared by every namespace.
 * Events: transport(name), upgrade(name), open, close(reason),
 * reconnect_attempt(n), packet(dir, nsp, summary).
 */
export class Manager extends Emitter {
  constructor(base = location.origin, { transports, reconnectionDelay = 1000, reconnectionDelayMax = 5000 } = {}) {
    super();
    this.base = base;
    this.transports = transports;
    this.delay = reconnectionDelay;
    this.delayMax = reconnectionDelayMax;
    this.sockets = new Map();
    this.engine = null;
    this.attempts = 0;
    this._pending = null; // a binary packet waiting for its attachments
    this._closed = false;
  }

  /** The Socket of a namespace (one per namespace). */
  socket(nsp = "/", opts = {}) {
    if (!this.sockets.has(nsp)) this.sockets.set(nsp, new Socket(this, nsp, opts));
    return this.sockets.get(nsp);
  }

  get transport() { return this.engine && this.engine.state === "open" ? this.engine.transport : null; }

  _open() {
    if (this.engine && this.engine.state !== "closed") return;
    this._closed = false;
    const engine = new Engine(this.base, { transports: this.transports });
    this.engine = engine;
    engine.on("transport", (t) => this._fire("transport", t));
    engine.on("upgrade", (t) => this._fire("upgrade", t));
    engine.on("frame", (dir, f) => this._fire("packet", dir, "engine", f === "2" ? "ping" : f === "3" ? "pong" : f));
    engine.on("open", (hs) => {
      this.attempts = 0;
      this._fire("open", hs);
      for (const s of this.sockets.values()) if (s._wanted) s._sendConnect();
    });
    engine.on("message", (m) => this._onMessage(m));
    engine.on("close", (reason, deliberate) => {
      this._pending = null;
      for (const s of this.sockets.values()) s._onClose(reason);
      this._fire("close", reason);
      if (!deliberate && !this._closed) this._reconnect();
    });
    engine.open();
  }

  _reconnect() {
    this.attempts += 1;
    const base = Math.min(this.delayMax, this.delay * 2 ** (this.attempts - 1));
    const wait = base * (0.5 + Math.random() * 0.5); // jitter, so a node's clients don't all come back at once
    this._fire("reconnect_attempt", this.attempts, Math.round(wait));
    clearTimeout(this._retry);
    this._retry = setTimeout(() => this._open(), wait);
  }

  /** Drops the transport as a network failure would (to try recovery). */
  dropTransport() { if (this.engine) this.engine._close("dropped by the user"); }

  close() {
    this._closed = true;
    clearTimeout(this._retry);
    if (this.engine) this.engine.close();
  }

  _write(packet) {
    const [text, attachments] = encode(packet);
    this._fire("packet", "out", packet.nsp, summarize(text, attachments));
    if (!this.engine || this.engine.state !== "open") return false;
    this.engine.write(text);
    for (const a of attachments) this.engine.write(asBytes(a).slice().buffer);
    return true;
  }

  _onMessage(m) {
    if (typeof m !== "string") { // an attachment of the pending binary packet
      if (!this._pending) return;
      this._pending.buffers.push(m);
      if (this._pending.buffers.length === this._pending.attachments) {
        const p = this._pending;
        this._pending = null;
        p.data = reconstruct(p.data, p.buffers);
        this._dispatch(p, summarize(p.text, p.buffers));
      }
      return;
    }
    let p;
    try { p = decode(m); } catch (err) { console.warn("undecodable packet", m, err); return; }
    if (p.attachments) { p.buffers = []; p.text = m; this._pending = p; return; }
    this._dispatch(p, summarize(m, []));
  }

  _dispatch(p, summary) {
    this._fire("packet", "in", p.nsp, summary);
    const s = this.sockets.get(p.nsp);
    if (s) s._onPacket(p);
  }
}

function summarize(text, attachments) {
  const extra = attachments.length ? ` + ${attachments.length} binary (${attachments.map((a) => a.byteLength).join(", ")} bytes)` : "";
  return (text.length > 400 ? text.slice(0, 400) + "…" : text) + extra;
}

/**
 * A namespace on a Manager's connection. Events: connect, connect_error(err),
 * disconnect(reason), and the server's events. `emit(ev, ...args, ack?)`
 * sends (buffered while disconnected); `request(ev, data)` resolves to the
 * acknowledgement.
 */
export class Socket extends Emitter {
  constructor(manager, nsp, { auth = {} } = {}) {
    super();
    this.io = manager;
    this.nsp = nsp;
    this.auth = auth; // an object, or a function returning one (fresh tokens)
    this.connected = false;
    this.recovered = false;
    this.id = null;
    this._pid = null; // the session to recover
    this._offset = null; // the last packet received, for recovery
    this._acks = new Map();
    this._nextAck = 0;
    this._buffer = [];
    this._wanted = false;
  }

  connect() {
    this._wanted = true;
    if (this.io.engine && this.io.engine.state === "open") this._sendConnect();
    else this.io._open();
    return this;
  }

  disconnect() {
    if (this.connected) this.io._write({ type: T.DISCONNECT, nsp: this.nsp });
    this._wanted = false;
    this._pid = null;
    this._onClose("io client disconnect");
    return this;
  }

  _sendConnect() {
    const auth = { ...(typeof this.auth === "function" ? this.auth() : this.auth) };
    if (this._pid) { auth.pid = this._pid; auth.offset = this._offset; }
    this.io._write({ type: T.CONNECT, nsp: this.nsp, data: auth });
  }

  emit(event, ...args) {
    if (RESERVED.has(event)) throw new Error(`"${event}" is a reserved event name`);
    const packet = { type: T.EVENT, nsp: this.nsp, data: [event, ...args] };
    if (typeof args[args.length - 1] === "function") {
      const id = this._nextAck++;
      this._acks.set(id, packet.data.pop());
      packet.id = id;
    }
    if (this.connected) this.io._write(packet);
    else this._buffer.push(packet);
    return this;
  }

  /** Emits with an acknowledgement; resolves to it, rejects after `timeout` ms. */
  request(event, data, timeout = 15000) {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => { done = true; reject(new Error(`${event}: no acknowledgement within ${timeout} ms`)); }, timeout);
      this.emit(event, data, (ack) => { if (!done) { clearTimeout(timer); resolve(ack); } });
    });
  }

  _onPacket(p) {
    switch (p.type) {
      case T.CONNECT: {
        const { sid, pid } = p.data || {};
        this.recovered = Boolean(pid && this._pid === pid);
        this.id = sid;
        this._pid = pid || null;
        this.connected = true;
        for (const packet of this._buffer.splice(0)) this.io._write(packet);
        this._fire("connect");
        break;
      }
      case T.CONNECT_ERROR: {
        const err = new Error(p.data?.message || "connect error");
        err.data = p.data?.data;
        this._fire("connect_error", err);
        break;
      }
      case T.EVENT:
      case T.BINARY_EVENT: {
        const args = p.data || [];
        const event = args.shift();
        if (p.id !== undefined) {
          let sent = false;
          args.push((...reply) => { if (!sent) { sent = true; this.io._write({ type: T.ACK, nsp: this.nsp, id: p.id, data: reply }); } });
        }
        // With recovery on, server broadcasts end with their offset (a string).
        if (this._pid && args.length && typeof args[args.length - 1] === "string") this._offset = args[args.length - 1];
        this._fire(event, ...args);
        break;
      }
      case T.ACK:
      case T.BINARY_ACK: {
        const fn = this._acks.get(p.id);
        if (fn) { this._acks.delete(p.id); fn(...(p.data || [])); }
        break;
      }
      case T.DISCONNECT:
        this._wanted = false;
        this._onClose("io server disconnect");
        break;
      default: break;
    }
  }

  _onClose(reason) {
    if (!this.connected) return;
    this.connected = false;
    this._fire("disconnect", reason);
  }
}
