// Starts the real huddle binary for a test, as an operator would run it
// (PROTOCOL.md section 8): its own loopback port, a fresh DATA_DIR, fixed
// token secrets the tests know, and per-test settings through
// HUDDLE__SECTION__KEY variables. The server's log goes to a file whose tail
// is attached to a failing test's error; `restart()` starts the binary again
// on the same DATA_DIR (and port), and `stop()` sends SIGTERM and waits.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = path.resolve(here, "..");
const repoRoot = path.resolve(nodeDir, "..", "..");

/** Access-token secret of every test server (≥ 32 bytes). */
export const JWT_SECRET = "huddle-client-tests-jwt-secret-0123456789abcdef";
/** Refresh-token secret of every test server (≥ 32 bytes). */
export const REFRESH_SECRET = "huddle-client-tests-refresh-secret-0123456789abcdef";

/** The binary under test: $HUDDLE_BIN, else ../../target/debug/huddle from tests/node. */
export const HUDDLE_BIN = path.resolve(
  nodeDir,
  process.env.HUDDLE_BIN ?? path.join("..", "..", "target", "debug", "huddle"),
);

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

const running = new Set();
process.on("exit", () => {
  for (const child of running) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** A loopback TCP port that is free right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A huddle process under test. */
export class HuddleServer {
  /**
   * `openFilesSoftLimit`: start the binary with this soft open-files limit
   * (through util-linux's `prlimit`, the hard limit left as it is), as a
   * shell's or service manager's default would.
   */
  constructor({ env = {}, dataDir, openFilesSoftLimit } = {}) {
    this.openFilesSoftLimit = openFilesSoftLimit;
    this.base = fs.mkdtempSync(path.join(os.tmpdir(), "huddle-node-"));
    this.dataDir = dataDir ?? path.join(this.base, "data");
    fs.mkdirSync(this.dataDir, { recursive: true });
    this.logFile = path.join(this.base, "server.log");
    this.extraEnv = env;
    this.port = undefined;
    this.child = undefined;
    this.exit = undefined;
    this.starts = 0;
  }

  /** `http://127.0.0.1:<port>` */
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the binary and resolves once GET /health answers 200. */
  async start() {
    if (!fs.existsSync(HUDDLE_BIN)) {
      throw new Error(`huddle binary not found at ${HUDDLE_BIN} (build it, or set HUDDLE_BIN)`);
    }
    let lastError;
    // A port found free may be taken before the server binds it: retry once
    // or twice with another.
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.port === undefined || attempt > 0) this.port = await freePort();
      try {
        await this.#spawnAndWait();
        return this;
      } catch (err) {
        lastError = err;
        await this.#kill();
        if (!/binding|Address already in use/i.test(this.log())) break;
      }
    }
    throw new Error(`${lastError.message}\n--- server log ---\n${this.logTail()}`);
  }

  async #spawnAndWait() {
    this.starts += 1;
    fs.appendFileSync(this.logFile, `\n===== start #${this.starts} on port ${this.port} =====\n`);
    const fd = fs.openSync(this.logFile, "a");
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_BACKTRACE: "1",
      RUST_LOG: process.env.HUDDLE_RUST_LOG ?? "info,huddle=debug,huddle_actors=debug",
      HUDDLE_CONFIG_DIR: path.join(repoRoot, "config"),
      HUDDLE_ENV: "test",
      HOST: "127.0.0.1",
      PORT: String(this.port),
      DATA_DIR: this.dataDir,
      JWT_SECRET,
      REFRESH_SECRET,
      // Settings given to the whole run (HUDDLE__SECTION__KEY in the runner's
      // environment), then the test's own, which win.
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("HUDDLE__"))),
      ...this.extraEnv,
    };
    // prlimit execs the binary: the child's pid is the server's.
    const [cmd, args] =
      this.openFilesSoftLimit === undefined
        ? [HUDDLE_BIN, []]
        : ["prlimit", [`--nofile=${this.openFilesSoftLimit}:`, HUDDLE_BIN]];
    const child = spawn(cmd, args, { env, cwd: this.base, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    this.child = child;
    this.exit = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
    });
    running.add(child);
    let exited = false;
    this.exit.then(() => (exited = true));

    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (exited) {
        const { code, signal } = await this.exit;
        throw new Error(`huddle exited during startup (code ${code}, signal ${signal})`);
      }
      try {
        const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`huddle did not answer GET /health within ${START_TIMEOUT_MS} ms`);
  }

  async #kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
      await this.exit;
    }
  }

  /**
   * Sends SIGTERM and waits for the process to exit (SIGKILL after a
   * timeout). Resolves to `{ code, signal }`.
   */
  async stop() {
    const child = this.child;
    if (!child) return undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const result = await this.exit;
      clearTimeout(timer);
      return result;
    }
    return this.exit;
  }

  /** Stops the server and starts it again on the same DATA_DIR and port. */
  async restart() {
    await this.stop();
    await this.start();
    return this;
  }

  /** Stops the server and removes its data (keeps the directory when asked). */
  async dispose({ keep = false } = {}) {
    await this.stop();
    if (!keep) fs.rmSync(this.base, { recursive: true, force: true });
  }

  /** The whole log so far. */
  log() {
    try {
      return fs.readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }

  /** The last `lines` lines of the log. */
  logTail(lines = 80) {
    return this.log().split("\n").slice(-lines).join("\n");
  }
}

/** Starts a server with extra environment variables. */
export async function startServer(opts = {}) {
  const server = new HuddleServer(opts);
  await server.start();
  return server;
}

/**
 * Runs `fn(server)` against a fresh server and always stops it. On failure
 * the server's log tail is appended to the error, and its directory kept.
 * Functions pushed on `server.cleanups` (closing clients) run before the stop.
 */
export async function withServer(opts, fn) {
  if (typeof opts === "function") [opts, fn] = [{}, opts];
  const server = await startServer(opts);
  server.cleanups = [];
  let failed = false;
  try {
    return await fn(server);
  } catch (err) {
    failed = true;
    const tail = `\n--- huddle log (${server.logFile}) ---\n${server.logTail()}`;
    if (err instanceof Error) {
      err.message += tail;
      throw err;
    }
    throw new Error(String(err) + tail);
  } finally {
    for (const cleanup of server.cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // best effort
      }
    }
    await server.dispose({ keep: failed });
  }
}
