// Engine.IO v4 compliance of the echo server's `/engine.io/` endpoint: the
// behaviours the official engine.io-protocol test suite checks (handshake,
// errors, messages, heartbeat, close, upgrade), written from the spec with raw
// HTTP and raw WebSocket, plus huddle's own limits (maxPayload) and a check
// with the official engine.io-client.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket as EngineSocket } from "engine.io-client";
import {
  startEchoServer,
  openPolling,
  request,
  RawSocket,
  within,
  sleep,
  PING_INTERVAL,
  PING_TIMEOUT,
  MAX_PAYLOAD,
} from "./helpers/echo-server.mjs";

const T = { timeout: 10_000 };

let server;
let base;
let wsBase;

before(async () => {
  server = await startEchoServer();
  base = `${server.url}/engine.io/`;
  wsBase = `${server.wsUrl}/engine.io/`;
});

after(async () => {
  await server?.stop();
});

const pollUrl = (sid) => `${base}?EIO=4&transport=polling&sid=${sid}`;
const wsUrl = (sid) => `${wsBase}?EIO=4&transport=websocket${sid ? `&sid=${sid}` : ""}`;

const newSession = () => openPolling(server.url, "/engine.io");

async function post(sid, body) {
  const res = await request(pollUrl(sid), { method: "POST", body });
  return { status: res.status, text: await res.text() };
}

async function poll(sid, ms) {
  const res = await request(pollUrl(sid), {}, ms);
  return { status: res.status, text: await res.text() };
}

function assertHandshake(value, upgrades) {
  assert.deepEqual(Object.keys(value).sort(), [
    "maxPayload",
    "pingInterval",
    "pingTimeout",
    "sid",
    "upgrades",
  ]);
  assert.equal(typeof value.sid, "string");
  assert.ok(value.sid.length > 0);
  assert.deepEqual(value.upgrades, upgrades);
  assert.equal(value.pingInterval, PING_INTERVAL);
  assert.equal(value.pingTimeout, PING_TIMEOUT);
  assert.equal(value.maxPayload, MAX_PAYLOAD);
}

/** Opens a WebSocket-only session; resolves after the OPEN packet. */
async function openWebSocket(opts) {
  const socket = new RawSocket(wsUrl(), opts);
  const open = await socket.next();
  assert.ok(open.startsWith("0"), `expected OPEN, got ${open}`);
  return socket;
}

/** A WebSocket handshake the server must refuse with HTTP `status`. */
async function assertWebSocketRefused(url, status = 400) {
  const socket = new RawSocket(url);
  await socket.waitClose();
  assert.equal(socket.status, status);
}

describe("Engine.IO handshake over HTTP long-polling", () => {
  it("opens a session with an OPEN packet carrying the handshake", T, async () => {
    const res = await request(`${base}?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.equal(text[0], "0");
    assertHandshake(JSON.parse(text.substring(1)), ["websocket"]);
  });

  it("gives every session its own sid", T, async () => {
    const a = await newSession();
    const b = await newSession();
    assert.notEqual(a, b);
  });

  it("answers cross-origin requests (CORS is open)", T, async () => {
    const res = await request(`${base}?EIO=4&transport=polling`, {
      headers: { Origin: "http://example.test" },
    });
    await res.text();
    assert.equal(res.status, 200);
    assert.ok(res.headers.get("access-control-allow-origin"));
  });

  it("refuses a missing or invalid EIO version with HTTP 400", T, async () => {
    for (const q of ["transport=polling", "EIO=abc&transport=polling", "EIO=3&transport=polling"]) {
      const res = await request(`${base}?${q}`);
      assert.equal(res.status, 400, q);
      const body = await res.json();
      assert.equal(body.code, 5, q);
    }
  });

  it("refuses a missing or unknown transport with HTTP 400", T, async () => {
    for (const q of ["EIO=4", "EIO=4&transport=abc"]) {
      const res = await request(`${base}?${q}`);
      assert.equal(res.status, 400, q);
      const body = await res.json();
      assert.equal(body.code, 0, q);
      assert.equal(body.message, "Transport unknown");
    }
  });

  it("refuses a handshake with another method than GET with HTTP 400", T, async () => {
    for (const method of ["POST", "PUT"]) {
      const res = await request(`${base}?EIO=4&transport=polling`, { method });
      assert.equal(res.status, 400, method);
      await res.text();
    }
  });

  it("refuses an unknown sid with HTTP 400 (code 1)", T, async () => {
    const get = await request(pollUrl("does-not-exist"));
    assert.equal(get.status, 400);
    assert.equal((await get.json()).code, 1);
    const push = await request(pollUrl("does-not-exist"), { method: "POST", body: "4x" });
    assert.equal(push.status, 400);
    assert.equal((await push.json()).code, 1);
  });
});

describe("Engine.IO handshake over WebSocket", () => {
  it("opens a session with an OPEN packet and no upgrades", T, async () => {
    const socket = new RawSocket(wsUrl());
    const data = await socket.next();
    assert.equal(data[0], "0");
    assertHandshake(JSON.parse(data.substring(1)), []);
    socket.close();
  });

  it("refuses a missing or invalid EIO version", T, async () => {
    await assertWebSocketRefused(`${wsBase}?transport=websocket`);
    await assertWebSocketRefused(`${wsBase}?EIO=abc&transport=websocket`);
  });

  it("refuses a missing or unknown transport", T, async () => {
    await assertWebSocketRefused(`${wsBase}?EIO=4`);
    await assertWebSocketRefused(`${wsBase}?EIO=4&transport=abc`);
  });

  it("refuses an unknown sid", T, async () => {
    await assertWebSocketRefused(wsUrl("does-not-exist"));
  });
});

describe("Engine.IO messages over HTTP long-polling", () => {
  it("echoes a payload of one text packet", T, async () => {
    const sid = await newSession();
    assert.deepEqual(await post(sid, "4hello"), { status: 200, text: "ok" });
    assert.deepEqual(await poll(sid), { status: 200, text: "4hello" });
  });

  it("echoes a payload of several text packets, separated by 0x1e", T, async () => {
    const sid = await newSession();
    const payload = "4test1\x1e4test2\x1e4test3";
    assert.deepEqual(await post(sid, payload), { status: 200, text: "ok" });
    assert.deepEqual(await poll(sid), { status: 200, text: payload });
  });

  it("echoes text and binary packets, binary as 'b' + base64", T, async () => {
    const sid = await newSession();
    const payload = "4hello\x1ebAQIDBA==";
    assert.deepEqual(await post(sid, payload), { status: 200, text: "ok" });
    assert.deepEqual(await poll(sid), { status: 200, text: payload });
  });

  it("keeps UTF-8 text intact", T, async () => {
    const sid = await newSession();
    const payload = "4hello €亜Б 🎉";
    assert.deepEqual(await post(sid, payload), { status: 200, text: "ok" });
    assert.deepEqual(await poll(sid), { status: 200, text: payload });
  });

  it("answers a pending poll as soon as a message arrives", T, async () => {
    const sid = await newSession();
    const pending = poll(sid);
    await sleep(20);
    assert.deepEqual(await post(sid, "4late"), { status: 200, text: "ok" });
    assert.deepEqual(await pending, { status: 200, text: "4late" });
  });

  it("closes the session upon an invalid packet", T, async () => {
    const sid = await newSession();
    try {
      const res = await request(pollUrl(sid), { method: "POST", body: "abc" });
      assert.equal(res.status, 400);
      await res.text();
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      // the server may also drop the request
    }
    assert.equal((await poll(sid)).status, 400);
  });

  it("closes the session upon two concurrent polls", T, async () => {
    const sid = await newSession();
    const first = poll(sid);
    await sleep(5);
    const second = await poll(sid);
    // The reference server answers 500; 400 is what the suite prefers.
    assert.ok([400, 500].includes(second.status), `status ${second.status}`);
    assert.deepEqual(await first, { status: 200, text: "1" });
    assert.equal((await poll(sid)).status, 400);
  });

  it("closes the session when a pending poll is cancelled", T, async () => {
    const sid = await newSession();
    const controller = new AbortController();
    const pending = fetch(pollUrl(sid), { signal: controller.signal }).catch(() => null);
    await sleep(20);
    controller.abort();
    await pending;
    await sleep(20);
    assert.equal((await poll(sid)).status, 400);
  });

  it("refuses a body over maxPayload with HTTP 413 and closes the session", T, async () => {
    const sid = await newSession();
    const body = "4" + "x".repeat(MAX_PAYLOAD + 10);
    const res = await request(pollUrl(sid), { method: "POST", body });
    assert.equal(res.status, 413);
    await res.text();
    assert.equal((await poll(sid)).status, 400);
  });

  it("accepts a body of exactly maxPayload bytes", T, async () => {
    const sid = await newSession();
    const body = "4" + "y".repeat(MAX_PAYLOAD - 1);
    assert.deepEqual(await post(sid, body), { status: 200, text: "ok" });
    const echoed = await poll(sid);
    assert.equal(echoed.status, 200);
    assert.equal(echoed.text.length, MAX_PAYLOAD);
  });
});

describe("Engine.IO messages over WebSocket", () => {
  it("echoes a text packet", T, async () => {
    const socket = await openWebSocket();
    socket.send("4hello");
    assert.equal(await socket.next(), "4hello");
    socket.close();
  });

  it("echoes a binary packet as a binary frame", T, async () => {
    const socket = await openWebSocket();
    socket.send(Uint8Array.from([1, 2, 3, 4]));
    assert.deepEqual(await socket.next(), Uint8Array.from([1, 2, 3, 4]));
    socket.close();
  });

  it("closes the session upon an invalid packet", T, async () => {
    const socket = await openWebSocket();
    socket.send("abc");
    await socket.waitClose();
  });

  it("closes with 1009 upon a frame over maxPayload", T, async () => {
    const socket = await openWebSocket({ autoPong: true });
    socket.send("4" + "z".repeat(MAX_PAYLOAD + 10));
    const { code } = await socket.waitClose(3000);
    assert.equal(code, 1009);
  });
});

describe("Engine.IO heartbeat", () => {
  it("pings a polling client every pingInterval; pongs keep it alive", T, async () => {
    const sid = await newSession();
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      assert.deepEqual(await poll(sid), { status: 200, text: "2" });
      const waited = Date.now() - started;
      // Later than pingInterval + pingTimeout, the client would give up.
      assert.ok(waited < PING_INTERVAL + PING_TIMEOUT, `ping came after ${waited} ms`);
      assert.deepEqual(await post(sid, "3"), { status: 200, text: "ok" });
    }
  });

  it("closes a polling session that does not pong within pingTimeout", T, async () => {
    const sid = await newSession();
    await sleep(PING_INTERVAL + PING_TIMEOUT + 10);
    assert.equal((await poll(sid)).status, 400);
  });

  it("pings a WebSocket client every pingInterval; pongs keep it alive", T, async () => {
    const socket = await openWebSocket();
    for (let i = 0; i < 3; i++) {
      assert.equal(await socket.next(1000), "2");
      socket.send("3");
    }
    assert.equal(socket.isClosed, false);
    socket.close();
  });

  it("closes a WebSocket session that does not pong", T, async () => {
    const started = Date.now();
    const socket = await openWebSocket();
    assert.equal(await socket.next(), "2");
    await socket.waitClose(2000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${elapsed} ms`);
  });
});

describe("Engine.IO close", () => {
  it("ends the pending poll with a noop when the client closes over polling", T, async () => {
    const sid = await newSession();
    const pending = poll(sid);
    await sleep(20);
    const closing = await post(sid, "1");
    assert.equal(closing.status, 200);
    assert.deepEqual(await pending, { status: 200, text: "6" });
    assert.equal((await poll(sid)).status, 400);
  });

  it("closes the WebSocket when the client sends CLOSE", T, async () => {
    const socket = await openWebSocket();
    socket.send("1");
    await socket.waitClose();
  });
});

describe("Engine.IO upgrade from long-polling to WebSocket", () => {
  it("answers the probe, ends the poll with a noop, then carries messages", T, async () => {
    const sid = await newSession();
    const socket = new RawSocket(wsUrl(sid));
    assert.equal(await within(2000, socket.opened, "open"), true);
    socket.send("2probe");
    assert.equal(await socket.next(), "3probe");
    assert.deepEqual(await poll(sid), { status: 200, text: "6" });
    socket.send("5");
    socket.send("4hello");
    assert.equal(await socket.next(), "4hello");
    socket.close();
  });

  it("moves packets queued for polling to the WebSocket", T, async () => {
    const sid = await newSession();
    assert.deepEqual(await post(sid, "4queued"), { status: 200, text: "ok" });
    const socket = new RawSocket(wsUrl(sid));
    await within(2000, socket.opened, "open");
    socket.send("2probe");
    assert.equal(await socket.next(), "3probe");
    socket.send("5");
    assert.equal(await socket.next(), "4queued");
    socket.close();
  });

  it("refuses HTTP requests with the same sid after the upgrade", T, async () => {
    const sid = await newSession();
    const socket = new RawSocket(wsUrl(sid));
    await within(2000, socket.opened, "open");
    socket.send("2probe");
    assert.equal(await socket.next(), "3probe");
    socket.send("5");
    await sleep(20);
    assert.equal((await poll(sid)).status, 400);
    assert.equal((await post(sid, "4x")).status, 400);
    socket.send("4hello");
    assert.equal(await socket.next(), "4hello");
    socket.close();
  });

  it("refuses a second WebSocket with the same sid after the upgrade", T, async () => {
    const sid = await newSession();
    const socket = new RawSocket(wsUrl(sid));
    await within(2000, socket.opened, "open");
    socket.send("2probe");
    assert.equal(await socket.next(), "3probe");
    socket.send("5");
    await sleep(20);
    const second = new RawSocket(wsUrl(sid));
    await second.waitClose();
    assert.equal(second.status, 400);
    socket.send("4hello");
    assert.equal(await socket.next(), "4hello");
    socket.close();
  });

  it("keeps the polling session alive when the upgrade is abandoned", T, async () => {
    const sid = await newSession();
    const socket = new RawSocket(wsUrl(sid));
    await within(2000, socket.opened, "open");
    socket.send("2probe");
    assert.equal(await socket.next(), "3probe");
    socket.close();
    // The server answers the close at once (well before the first ping).
    await socket.waitClose(250);
    assert.deepEqual(await poll(sid), { status: 200, text: "6" });
    assert.deepEqual(await post(sid, "4still here"), { status: 200, text: "ok" });
    assert.deepEqual(await poll(sid), { status: 200, text: "4still here" });
  });
});

describe("Engine.IO with the official engine.io-client", () => {
  for (const transports of [["polling", "websocket"], ["websocket"], ["polling"]]) {
    it(`echoes text and binary with transports ${transports.join("+")}`, T, async () => {
      const socket = new EngineSocket(server.url, {
        path: "/engine.io/",
        transports,
        upgrade: transports.length > 1,
      });
      try {
        await within(3000, new Promise((r) => socket.once("open", r)), "open");
        if (transports.length > 1) {
          await within(3000, new Promise((r) => socket.once("upgrade", r)), "upgrade");
          assert.equal(socket.transport.name, "websocket");
        }
        const received = [];
        const done = new Promise((resolve) => {
          socket.on("message", (m) => {
            received.push(m);
            if (received.length === 2) resolve();
          });
        });
        socket.send("hello");
        socket.send(Uint8Array.from([9, 8, 7]));
        await within(3000, done, "echoes");
        assert.equal(received[0], "hello");
        assert.deepEqual(new Uint8Array(received[1]), Uint8Array.from([9, 8, 7]));
        // Stays up across several heartbeats.
        await sleep(PING_INTERVAL * 2 + PING_TIMEOUT);
        assert.equal(socket.readyState, "open");
      } finally {
        socket.close();
      }
    });
  }
});
