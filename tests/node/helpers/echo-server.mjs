// Starts the protocol echo server (examples/protocol_echo.rs) on a free
// loopback port for one test file, and small raw-protocol helpers shared by
// the compliance tests.
//
// The binary comes from HUDDLE_ECHO_BIN, else the debug build of the example
// relative to tests/node. Build it first:
//   cargo build --example protocol_echo

import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = path.resolve(here, "..");

/** The settings the echo server is started with (the suites' reference values). */
export const PING_INTERVAL = 300;
export const PING_TIMEOUT = 200;
export const MAX_PAYLOAD = 1_000_000;
export const CONNECT_TIMEOUT = 1000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts the echo server and waits until it answers a handshake.
 * Returns `{ url, wsUrl, stop }`; `stop()` kills it and waits for the exit.
 */
export async function startEchoServer() {
  const bin = process.env.HUDDLE_ECHO_BIN
    ? path.resolve(process.env.HUDDLE_ECHO_BIN)
    : path.resolve(nodeDir, "../../target/debug/examples/protocol_echo");
  const port = await freePort();
  const child = spawn(bin, [], {
    env: { ...process.env, PORT: String(port), RUST_LOG: process.env.RUST_LOG ?? "warn" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once("error", (err) => {
      exited = { error: err };
      resolve(exited);
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      const timer = sleep(3000).then(() => {
        if (!exited) child.kill("SIGKILL");
      });
      await Promise.race([exit, timer]);
      await exit;
    }
  };
  // At most ~15 s for the server to come up.
  for (let i = 0; i < 150; i++) {
    if (exited) {
      throw new Error(`echo server ${bin} exited early: ${JSON.stringify(exited)}`);
    }
    try {
      const res = await fetch(`${url}/engine.io/?EIO=4&transport=polling`, {
        signal: AbortSignal.timeout(1000),
      });
      await res.text();
      if (res.status === 200) {
        return { url, wsUrl: url.replace("http", "ws"), stop };
      }
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  await stop();
  throw new Error(`echo server ${bin} did not answer on port ${port}`);
}

/** Rejects after `ms` with a message naming what was awaited. */
export function within(ms, promise, what = "operation") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** fetch with a bound on its duration (a long poll included). */
export function request(url, options = {}, ms = 3000) {
  return fetch(url, { ...options, signal: options.signal ?? AbortSignal.timeout(ms) });
}

/** Opens an Engine.IO long-polling session and returns its sid. */
export async function openPolling(base, prefix) {
  const res = await request(`${base}${prefix}/?EIO=4&transport=polling`);
  const text = await res.text();
  if (res.status !== 200 || !text.startsWith("0")) {
    throw new Error(`handshake failed: ${res.status} ${text}`);
  }
  return JSON.parse(text.substring(1)).sid;
}

/**
 * A raw WebSocket whose messages are queued, so none is lost between two
 * awaits. Text frames come out as strings, binary frames as Uint8Array.
 * With `autoPong`, server pings ("2") are answered and not queued.
 */
export class RawSocket {
  constructor(url, { autoPong = false } = {}) {
    this.autoPong = autoPong;
    this.queue = [];
    this.waiters = [];
    this.ws = new WebSocket(url);
    this.error = null;
    this.status = null;
    // A refused handshake surfaces as an error naming the HTTP status.
    this.ws.on("error", (err) => {
      this.error = err;
      const m = /Unexpected server response: (\d+)/.exec(err.message);
      if (m) this.status = Number(m[1]);
    });
    this.opened = new Promise((resolve) => this.ws.once("open", () => resolve(true)));
    this.closed = new Promise((resolve) =>
      this.ws.once("close", (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.flushWaiters();
      }),
    );
    this.isClosed = false;
    this.closed.then(() => {
      this.isClosed = true;
    });
    this.ws.on("message", (data, isBinary) => {
      const item = isBinary ? new Uint8Array(data) : data.toString();
      if (this.autoPong && item === "2") {
        this.ws.send("3");
        return;
      }
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(item);
      else this.queue.push(item);
    });
  }

  flushWaiters() {
    for (const w of this.waiters.splice(0)) {
      w.reject(new Error("socket closed while waiting for a message"));
    }
  }

  /** The next message (string or Uint8Array), within `ms`. */
  next(ms = 2000) {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.isClosed) return Promise.reject(new Error("socket is closed"));
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      this.waiters.push(waiter);
    });
    return within(ms, p, "a WebSocket message").catch((e) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw e;
    });
  }

  /** The next `count` messages. */
  async take(count, ms = 2000) {
    const out = [];
    for (let i = 0; i < count; i++) out.push(await this.next(ms));
    return out;
  }

  send(data) {
    this.ws.send(data);
  }

  /** Resolves `{ code, reason }` when the server closes, within `ms`. */
  waitClose(ms = 2000) {
    return within(ms, this.closed, "the WebSocket to close");
  }

  close() {
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate();
    } else if (!this.isClosed) {
      this.ws.close();
    }
  }
}

export { sleep };
