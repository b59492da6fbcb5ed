// Two huddle nodes as a team runs them (PROTOCOL.md section 8): separate
// processes on loopback sharing one Redis (REDIS_URL, a key prefix of their
// own per test), one MongoDB-compatible document store (a database of their
// own per test) and one blob directory, so any node can serve any client.
//
// The shared servers come from the test command: HUDDLE_TEST_REDIS_URL
// (scripts/redis-test-server.sh) and MONGO_SECANTUS_URI
// (scripts/mongo-test-servers.sh). `RedisProcess` starts a private
// redis-server for tests that stop and restart it; `Balancer` is a TCP
// proxy standing in for the load balancer, whose target can be switched to
// send a reconnecting client to the other node.

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort, HuddleServer } from "./server.mjs";
import { randomId } from "./api.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The shared Redis and MongoDB of the run; throws when the test command did not start them. */
export function sharedServers() {
  const redis = process.env.HUDDLE_TEST_REDIS_URL;
  const mongo = process.env.MONGO_SECANTUS_URI;
  if (!redis || !mongo) {
    throw new Error(
      "cluster tests need HUDDLE_TEST_REDIS_URL and MONGO_SECANTUS_URI (scripts/test.sh starts both servers)",
    );
  }
  return { redis, mongo };
}

/** Settings that make presence changes and dead nodes quick to observe in tests. */
export const FAST_PRESENCE = {
  HUDDLE__COLLAB__OFFLINE_GRACE_MS: "300",
  HUDDLE__REDIS__HEARTBEAT_MS: "300",
  HUDDLE__REDIS__NODE_TTL_MS: "1500",
};

/**
 * Runs `fn({ nodes: [n1, n2], redisUrl, prefix })` against two fresh nodes and
 * always stops them; on failure both logs are attached to the error.
 */
export async function withCluster(opts, fn) {
  if (typeof opts === "function") [opts, fn] = [{}, opts];
  const shared = sharedServers();
  const redisUrl = opts.redisUrl ?? shared.redis;
  const prefix = randomId("t");
  const blobs = fs.mkdtempSync(path.join(os.tmpdir(), "huddle-cluster-blobs-"));
  const env = {
    REDIS_URL: redisUrl,
    HUDDLE__REDIS__KEY_PREFIX: prefix,
    MONGODB_URI: shared.mongo,
    MONGODB_DB: `huddle_${prefix}`,
    ...FAST_PRESENCE,
    ...(opts.env ?? {}),
  };
  const nodes = [new HuddleServer({ env, dataDir: blobs }), new HuddleServer({ env, dataDir: blobs })];
  const cleanups = [];
  for (const n of nodes) n.cleanups = cleanups;
  let failed = false;
  try {
    for (const n of nodes) await n.start();
    return await fn({ nodes, redisUrl, prefix, cleanups });
  } catch (err) {
    failed = true;
    const logs = nodes
      .map((n, i) => `\n--- node ${i + 1} log (${n.logFile}) ---\n${n.logTail(60)}`)
      .join("");
    if (err instanceof Error) {
      err.message += logs;
      throw err;
    }
    throw new Error(String(err) + logs);
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // best effort
      }
    }
    for (const n of nodes) await n.dispose({ keep: failed });
    if (!failed) fs.rmSync(blobs, { recursive: true, force: true });
  }
}

/** A redis-server of the test's own, which it may stop and start again on the same port. */
export class RedisProcess {
  async start() {
    if (this.port === undefined) this.port = await freePort();
    this.child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    this.exited = new Promise((r) => this.child.on("exit", r));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (await this.#answers()) return this;
      await sleep(50);
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }

  #answers() {
    return new Promise((resolve) => {
      const c = net.connect(this.port, "127.0.0.1");
      c.on("connect", () => {
        c.write("PING\r\n");
      });
      c.on("data", (d) => {
        c.destroy();
        resolve(d.toString().startsWith("+PONG"));
      });
      c.on("error", () => resolve(false));
    });
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Kills it (as a crash would) and waits until it is gone. */
  async stop() {
    if (this.child && this.child.exitCode === null) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }
}

/** A TCP proxy in front of the nodes: clients connect to it; `target` picks the node. */
export class Balancer {
  constructor(target) {
    this.target = target;
    this.sockets = new Set();
  }

  async start() {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, "127.0.0.1");
      const pair = [client, upstream];
      for (const s of pair) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => pair.forEach((p) => p.destroy()));
        s.on("close", () => pair.forEach((p) => p.destroy()));
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Drops every connection (the client sees its transport close) and sends new ones to `target`. */
  switchTo(target) {
    this.target = target;
    for (const s of this.sockets) s.destroy();
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}
