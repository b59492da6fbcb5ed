// Socket helpers around the official socket.io-client: connect and wait
// (bounded), emit with an acknowledgement (bounded), record events, and
// assert that an event does not come. Every socket and manager made here is
// closed by the server's cleanups, so a test never leaves a client running.

import { io, Manager } from "socket.io-client";

export const WAIT_MS = 5_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with `what` unless `promise` settles first. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function track(server, socket) {
  server.cleanups?.push(() => {
    socket.disconnect();
    socket.io.engine?.close();
  });
  return socket;
}

/**
 * A socket to namespace `nsp` on its own connection (forceNew), not yet
 * connected. Reconnection is off unless `opts.reconnection` says otherwise.
 */
export function makeSocket(server, nsp, opts = {}) {
  const socket = io(`${server.url}${nsp}`, {
    forceNew: true,
    autoConnect: false,
    reconnection: false,
    timeout: WAIT_MS,
    ...opts,
  });
  return track(server, socket);
}

/** A Manager (one Engine.IO connection) for multiplexing namespaces. */
export function makeManager(server, opts = {}) {
  const manager = new Manager(server.url, {
    autoConnect: false,
    reconnection: false,
    timeout: WAIT_MS,
    ...opts,
  });
  server.cleanups?.push(() => {
    manager.reconnection(false);
    for (const socket of Object.values(manager.nsps)) socket.disconnect();
    manager.engine?.close();
  });
  return manager;
}

/** Connects `socket` and resolves once CONNECT is answered; rejects on connect_error or timeout. */
export function connected(socket, ms = WAIT_MS) {
  if (socket.connected) return Promise.resolve(socket);
  const p = new Promise((resolve, reject) => {
    const onConnect = () => {
      socket.off("connect_error", onError);
      resolve(socket);
    };
    const onError = (err) => {
      socket.off("connect", onConnect);
      const e = new Error(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`);
      e.cause = err;
      reject(e);
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  socket.connect();
  return withTimeout(p, ms, `connect to ${socket.nsp}`);
}

/** Connects and resolves with the connect_error the server answered; rejects if it connects. */
export function connectError(socket, ms = WAIT_MS) {
  const p = new Promise((resolve, reject) => {
    socket.once("connect", () => reject(new Error(`${socket.nsp}: connected, expected connect_error`)));
    socket.once("connect_error", resolve);
  });
  socket.connect();
  return withTimeout(p, ms, `connect_error on ${socket.nsp}`);
}

/** A connected `/chat` (or other namespace) socket for `user`, token in the auth payload. */
export async function connectAs(server, user, nsp = "/chat", opts = {}) {
  const { auth, ...rest } = opts;
  const socket = makeSocket(server, nsp, { auth: { token: user.token, ...auth }, ...rest });
  return connected(socket);
}

/** Emits with an acknowledgement and resolves with the ack's first argument. */
export function ack(socket, event, ...args) {
  return socket.timeout(WAIT_MS).emitWithAck(event, ...args);
}

/** Resolves with the arguments of the next `event` on `emitter`. */
export function once(emitter, event, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    ms,
    `event ${event}`,
  );
}

/** Records every `event` of `socket` (with all its arguments and the time it came). */
export class Recorder {
  constructor(socket, events) {
    this.socket = socket;
    this.events = [];
    this.waiters = [];
    for (const event of events) {
      socket.on(event, (...args) => {
        this.events.push({ event, args, at: Date.now() });
        this.waiters = this.waiters.filter((w) => !w());
      });
    }
  }

  /** Recorded events named `event`. */
  of(event) {
    return this.events.filter((e) => e.event === event);
  }

  /** Payloads (first arguments) of recorded `event`s. */
  payloads(event) {
    return this.of(event).map((e) => e.args[0]);
  }

  /** Resolves once `pred(this)` holds; rejects after `ms`. */
  until(pred, ms = WAIT_MS, what = "recorded events") {
    if (pred(this)) return Promise.resolve(this);
    const p = new Promise((resolve) => {
      this.waiters.push(() => {
        if (pred(this)) {
          resolve(this);
          return true;
        }
        return false;
      });
    });
    return withTimeout(p, ms, `${what} (have ${JSON.stringify(this.events.map((e) => e.event))})`);
  }

  /** Resolves once `n` events named `event` were recorded. */
  count(event, n, ms = WAIT_MS) {
    return this.until((r) => r.of(event).length >= n, ms, `${n} × ${event}`);
  }
}

/** Resolves if no `event` reaches `socket` within `ms`; rejects with it otherwise. */
export function noEvent(socket, event, ms = 300) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => {
      clearTimeout(timer);
      reject(new Error(`unexpected ${event}: ${JSON.stringify(args)}`));
    };
    const timer = setTimeout(() => {
      socket.off(event, handler);
      resolve();
    }, ms);
    socket.on(event, handler);
  });
}
