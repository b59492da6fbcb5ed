// Socket.IO v5 compliance of the echo server's `/socket.io/` endpoint: the
// behaviours the official socket.io-protocol test suite checks (the Engine.IO
// layer under `/socket.io/`, namespace CONNECT and CONNECT_ERROR, DISCONNECT,
// events, acknowledgements, binary attachments, invalid packets, the connect
// timeout), written from the spec with raw HTTP and raw WebSocket; then the
// official socket.io-client with each transport set, binary both ways, and
// several namespaces multiplexed on one connection.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
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
  CONNECT_TIMEOUT,
} from "./helpers/echo-server.mjs";

const T = { timeout: 10_000 };

let server;
let base;
let wsBase;

before(async () => {
  server = await startEchoServer();
  base = `${server.url}/socket.io/`;
  wsBase = `${server.wsUrl}/socket.io/`;
});

after(async () => {
  await server?.stop();
});

const pollUrl = (sid) => `${base}?EIO=4&transport=polling&sid=${sid}`;
const wsUrl = (sid) => `${wsBase}?EIO=4&transport=websocket${sid ? `&sid=${sid}` : ""}`;

const newSession = () => openPolling(server.url, "/socket.io");

async function post(sid, body) {
  const res = await request(pollUrl(sid), { method: "POST", body });
  return { status: res.status, text: await res.text() };
}

async function poll(sid, ms) {
  const res = await request(pollUrl(sid), {}, ms);
  return { status: res.status, text: await res.text() };
}

/**
 * Polls until `count` packets (pings answered and left out) have arrived:
 * packets sent one after another may come in one payload or several.
 */
async function pollPackets(sid, count) {
  const got = [];
  for (let i = 0; i < count + 3 && got.length < count; i++) {
    const { status, text } = await poll(sid);
    assert.equal(status, 200, text);
    for (const p of text.split("\x1e")) {
      if (p === "2") await post(sid, "3");
      else got.push(p);
    }
  }
  return got;
}

/** An Engine.IO session over WebSocket, past its OPEN packet. */
async function openWebSocket(opts = { autoPong: true }) {
  const socket = new RawSocket(wsUrl(), opts);
  const open = await socket.next();
  assert.equal(open[0], "0", `expected OPEN, got ${open}`);
  return socket;
}

/** A WebSocket connected to the main namespace, past CONNECT and `auth`. */
async function connectMain() {
  const socket = await openWebSocket();
  socket.send("40");
  const connect = await socket.next();
  assert.ok(connect.startsWith("40{"), connect);
  assert.equal(await socket.next(), '42["auth",{}]');
  return socket;
}

/** Checks a CONNECT answer `40<nsp>{"sid":...}` and returns the sid. */
function assertConnectAnswer(data, prefix) {
  assert.ok(data.startsWith(prefix), `${data} should start with ${prefix}`);
  const handshake = JSON.parse(data.substring(prefix.length));
  assert.deepEqual(Object.keys(handshake), ["sid"]);
  assert.equal(typeof handshake.sid, "string");
  return handshake.sid;
}

describe("Engine.IO under /socket.io/", () => {
  it("opens a polling session with the handshake fields", T, async () => {
    const res = await request(`${base}?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.equal(text[0], "0");
    const value = JSON.parse(text.substring(1));
    assert.deepEqual(Object.keys(value).sort(), [
      "maxPayload",
      "pingInterval",
      "pingTimeout",
      "sid",
      "upgrades",
    ]);
    assert.deepEqual(value.upgrades, ["websocket"]);
    assert.equal(value.pingInterval, PING_INTERVAL);
    assert.equal(value.pingTimeout, PING_TIMEOUT);
    assert.equal(value.maxPayload, MAX_PAYLOAD);
  });

  it("opens a WebSocket session with no upgrades", T, async () => {
    const socket = new RawSocket(wsUrl());
    const data = await socket.next();
    assert.equal(data[0], "0");
    const value = JSON.parse(data.substring(1));
    assert.deepEqual(value.upgrades, []);
    assert.equal(value.pingInterval, PING_INTERVAL);
    assert.equal(value.pingTimeout, PING_TIMEOUT);
    assert.equal(value.maxPayload, MAX_PAYLOAD);
    socket.close();
  });

  it("refuses a bad EIO version, transport or method with HTTP 400", T, async () => {
    for (const q of [
      "transport=polling",
      "EIO=abc&transport=polling",
      "EIO=4",
      "EIO=4&transport=abc",
    ]) {
      const res = await request(`${base}?${q}`);
      assert.equal(res.status, 400, q);
      await res.text();
    }
    for (const method of ["POST", "PUT"]) {
      const res = await request(`${base}?EIO=4&transport=polling`, { method });
      assert.equal(res.status, 400, method);
      await res.text();
    }
    for (const q of ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc"]) {
      const socket = new RawSocket(`${wsBase}?${q}`);
      await socket.waitClose();
      assert.equal(socket.status, 400, q);
    }
  });

  it("pings a polling client, which pongs", T, async () => {
    const sid = await newSession();
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await poll(sid), { status: 200, text: "2" });
      assert.equal((await post(sid, "3")).status, 200);
    }
  });

  it("closes a polling session upon ping timeout", T, async () => {
    const sid = await newSession();
    await sleep(PING_INTERVAL + PING_TIMEOUT + 10);
    assert.equal((await poll(sid)).status, 400);
  });

  it("pings a WebSocket client, which pongs", T, async () => {
    const socket = await openWebSocket({ autoPong: false });
    for (let i = 0; i < 3; i++) {
      assert.equal(await socket.next(1000), "2");
      socket.send("3");
    }
    socket.close();
  });

  it("closes a WebSocket session upon ping timeout", T, async () => {
    const socket = await openWebSocket({ autoPong: false });
    await socket.waitClose(2000);
  });

  it("ends the pending poll with a noop when the client closes", T, async () => {
    const sid = await newSession();
    const pending = poll(sid);
    await sleep(20);
    assert.equal((await post(sid, "1")).status, 200);
    assert.deepEqual(await pending, { status: 200, text: "6" });
    assert.equal((await poll(sid)).status, 400);
  });

  it("closes the WebSocket when the client sends CLOSE", T, async () => {
    const socket = await openWebSocket();
    socket.send("1");
    await socket.waitClose();
  });

  it("upgrades to WebSocket with 2probe / 3probe / 5", T, async () => {
    const sid = await newSession();
    const socket = new RawSocket(wsUrl(sid), { autoPong: true });
    await within(2000, socket.opened, "open");
    socket.send("2probe");
    assert.equal(await socket.next(), "3probe");
    assert.deepEqual(await poll(sid), { status: 200, text: "6" });
    socket.send("5");
    socket.send("40");
    assertConnectAnswer(await socket.next(), "40");
    assert.equal(await socket.next(), '42["auth",{}]');
    socket.close();
  });

  it("refuses polling and a second WebSocket with the sid after the upgrade", T, async () => {
    const sid = await newSession();
    const socket = new RawSocket(wsUrl(sid), { autoPong: true });
    await within(2000, socket.opened, "open");
    // The suite sends both without waiting for the probe's answer.
    socket.send("2probe");
    socket.send("5");
    assert.equal(await socket.next(), "3probe");
    await sleep(20);
    assert.equal((await poll(sid)).status, 400);
    const second = new RawSocket(wsUrl(sid));
    await second.waitClose();
    assert.equal(second.status, 400);
    socket.close();
  });
});

describe("Socket.IO CONNECT", () => {
  it("connects to the main namespace and emits auth with an empty payload", T, async () => {
    const socket = await openWebSocket();
    socket.send("40");
    assertConnectAnswer(await socket.next(), "40");
    assert.equal(await socket.next(), '42["auth",{}]');
    socket.close();
  });

  it("connects to the main namespace with an auth payload", T, async () => {
    const socket = await openWebSocket();
    socket.send('40{"token":"123"}');
    assertConnectAnswer(await socket.next(), "40");
    assert.equal(await socket.next(), '42["auth",{"token":"123"}]');
    socket.close();
  });

  it("connects to a custom namespace", T, async () => {
    const socket = await openWebSocket();
    socket.send("40/custom,");
    assertConnectAnswer(await socket.next(), "40/custom,");
    assert.equal(await socket.next(), '42/custom,["auth",{}]');
    socket.close();
  });

  it("connects to a custom namespace with an auth payload", T, async () => {
    const socket = await openWebSocket();
    socket.send('40/custom,{"token":"abc"}');
    assertConnectAnswer(await socket.next(), "40/custom,");
    assert.equal(await socket.next(), '42/custom,["auth",{"token":"abc"}]');
    socket.close();
  });

  it("gives each namespace of a connection its own socket id", T, async () => {
    const socket = await openWebSocket();
    socket.send("40");
    const main = assertConnectAnswer(await socket.next(), "40");
    await socket.next();
    socket.send("40/custom,");
    const custom = assertConnectAnswer(await socket.next(), "40/custom,");
    await socket.next();
    assert.notEqual(main, custom);
    socket.close();
  });

  it("refuses an unknown namespace with CONNECT_ERROR, keeping the connection", T, async () => {
    const socket = await openWebSocket();
    socket.send("40/random");
    assert.equal(await socket.next(), '44/random,{"message":"Invalid namespace"}');
    socket.send("40");
    assertConnectAnswer(await socket.next(), "40");
    socket.close();
  });

  it("closes the connection upon an invalid handshake packet", T, async () => {
    const socket = await openWebSocket();
    socket.send("4abc");
    await socket.waitClose();
  });

  it("closes a session that joins no namespace within the connect timeout", T, async () => {
    const started = Date.now();
    const socket = await openWebSocket({ autoPong: true });
    await socket.waitClose(CONNECT_TIMEOUT + 1500);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= CONNECT_TIMEOUT - 100, `closed after ${elapsed} ms`);
  });

  it("keeps a session that joined a namespace past the connect timeout", T, async () => {
    const socket = await connectMain();
    await sleep(CONNECT_TIMEOUT + 200);
    assert.equal(socket.isClosed, false);
    socket.send('42["message","still here"]');
    assert.equal(await socket.next(), '42["message-back","still here"]');
    socket.close();
  });

  it("keeps a session that joined a namespace and left it, past the connect timeout", T, async () => {
    // As the reference server: the timeout is only for the first CONNECT.
    const socket = await connectMain();
    socket.send("41");
    await sleep(CONNECT_TIMEOUT + 200);
    assert.equal(socket.isClosed, false);
    socket.send("40");
    assertConnectAnswer(await socket.next(), "40");
    socket.close();
  });

  it("connects over long-polling", T, async () => {
    const sid = await newSession();
    assert.equal((await post(sid, '40{"token":"p"}')).status, 200);
    const [connect, auth] = await pollPackets(sid, 2);
    assertConnectAnswer(connect, "40");
    assert.equal(auth, '42["auth",{"token":"p"}]');
  });
});

describe("Socket.IO DISCONNECT", () => {
  it("leaves the main namespace; the Engine.IO session stays up", T, async () => {
    const socket = await openWebSocket({ autoPong: false });
    socket.send("40");
    await socket.next();
    await socket.next();
    socket.send("41");
    // Nothing but the next heartbeat: the session is still open.
    assert.equal(await socket.next(1000), "2");
    socket.send("3");
    socket.send("40");
    assertConnectAnswer(await socket.next(), "40");
    socket.close();
  });

  it("connects then disconnects a custom namespace, the main one goes on", T, async () => {
    const socket = await connectMain();
    socket.send("40/custom");
    assertConnectAnswer(await socket.next(), "40/custom,");
    assert.equal(await socket.next(), '42/custom,["auth",{}]');
    socket.send("41/custom");
    socket.send('42["message","message to main namespace"]');
    assert.equal(await socket.next(), '42["message-back","message to main namespace"]');
    socket.close();
  });
});

describe("Socket.IO events and acknowledgements", () => {
  it("answers an event", T, async () => {
    const socket = await connectMain();
    socket.send('42["message",1,"2",{"3":[true]}]');
    assert.equal(await socket.next(), '42["message-back",1,"2",{"3":[true]}]');
    socket.close();
  });

  it("answers an event with binary attachments", T, async () => {
    const socket = await connectMain();
    socket.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    socket.send(Uint8Array.from([1, 2, 3]));
    socket.send(Uint8Array.from([4, 5, 6]));
    const [head, a, b] = await socket.take(3);
    assert.equal(
      head,
      '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
    );
    assert.deepEqual(a, Uint8Array.from([1, 2, 3]));
    assert.deepEqual(b, Uint8Array.from([4, 5, 6]));
    socket.close();
  });

  it("acknowledges an event", T, async () => {
    const socket = await connectMain();
    socket.send('42456["message-with-ack",1,"2",{"3":[false]}]');
    assert.equal(await socket.next(), '43456[1,"2",{"3":[false]}]');
    socket.close();
  });

  it("acknowledges an event with binary attachments", T, async () => {
    const socket = await connectMain();
    socket.send(
      '452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
    );
    socket.send(Uint8Array.from([1, 2, 3]));
    socket.send(Uint8Array.from([4, 5, 6]));
    const [head, a, b] = await socket.take(3);
    assert.equal(head, '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    assert.deepEqual(a, Uint8Array.from([1, 2, 3]));
    assert.deepEqual(b, Uint8Array.from([4, 5, 6]));
    socket.close();
  });

  it("acknowledges in a custom namespace", T, async () => {
    const socket = await openWebSocket();
    socket.send("40/custom,");
    await socket.take(2);
    socket.send('42/custom,7["message-with-ack","x"]');
    assert.equal(await socket.next(), '43/custom,7["x"]');
    socket.close();
  });

  it("carries binary events and acks over long-polling as 'b' + base64", T, async () => {
    const sid = await newSession();
    assert.equal((await post(sid, "40")).status, 200);
    const [connect, auth] = await pollPackets(sid, 2);
    assertConnectAnswer(connect, "40");
    assert.equal(auth, '42["auth",{}]');
    const body = [
      '451-["message",{"_placeholder":true,"num":0}]',
      "bAQID",
      '451-12["message-with-ack",{"_placeholder":true,"num":0}]',
      "bBAUG",
    ].join("\x1e");
    assert.deepEqual(await post(sid, body), { status: 200, text: "ok" });
    const expected = [
      '451-["message-back",{"_placeholder":true,"num":0}]',
      "bAQID",
      '461-12[{"_placeholder":true,"num":0}]',
      "bBAUG",
    ];
    assert.deepEqual(await pollPackets(sid, 4), expected);
  });

});

describe("Socket.IO invalid packets close the connection", () => {
  for (const [what, packet] of [
    ["unknown packet type", "4abc"],
    ["payload that is not an array", "42{}"],
    ["invalid ack id", '42abc["message-with-ack",1,"2",{"3":[false]}]'],
    ["unexpected binary attachment", null],
  ]) {
    it(what, T, async () => {
      const socket = await connectMain();
      socket.send(packet ?? Uint8Array.from([1, 2, 3]));
      await socket.waitClose();
    });
  }
});

describe("Socket.IO with the official socket.io-client", () => {
  const opened = [];

  after(() => {
    for (const s of opened) s.disconnect();
  });

  function client(nsp, opts) {
    const socket = io(`${server.url}${nsp}`, {
      reconnection: false,
      forceNew: true,
      timeout: 3000,
      ...opts,
    });
    opened.push(socket);
    return socket;
  }

  function once(emitter, event, what = event) {
    return within(3000, new Promise((resolve) => emitter.once(event, resolve)), what);
  }

  async function exercise(socket) {
    const auth = once(socket, "auth");
    await once(socket, "connect");
    assert.deepEqual(await auth, { token: "t-1" });
    const back = once(socket, "message-back");
    socket.emit("message", "hi", 2, { three: [true] });
    assert.deepEqual(
      await new Promise((resolve) => socket.once("message-back", (...args) => resolve(args))),
      ["hi", 2, { three: [true] }],
    );
    await back;
    const acked = await socket.timeout(3000).emitWithAck("message-with-ack", { a: 1 }, "b");
    assert.deepEqual(acked, { a: 1 });
  }

  it("connects with the default transports and upgrades to WebSocket", T, async () => {
    const socket = client("/", { auth: { token: "t-1" } });
    const upgraded = once(socket.io.engine, "upgrade", "the upgrade");
    await exercise(socket);
    await upgraded;
    assert.equal(socket.io.engine.transport.name, "websocket");
    // Still answering once upgraded, and across several heartbeats.
    await sleep(PING_INTERVAL * 2 + PING_TIMEOUT);
    assert.equal(socket.connected, true);
    assert.deepEqual(await socket.timeout(3000).emitWithAck("message-with-ack", 5), 5);
    socket.disconnect();
  });

  it("connects with WebSocket only", T, async () => {
    const socket = client("/", { auth: { token: "t-1" }, transports: ["websocket"] });
    await exercise(socket);
    assert.equal(socket.io.engine.transport.name, "websocket");
    await sleep(PING_INTERVAL * 2 + PING_TIMEOUT);
    assert.equal(socket.connected, true);
    socket.disconnect();
  });

  it("connects with long-polling only", T, async () => {
    const socket = client("/", {
      auth: { token: "t-1" },
      transports: ["polling"],
      upgrade: false,
    });
    await exercise(socket);
    assert.equal(socket.io.engine.transport.name, "polling");
    await sleep(PING_INTERVAL * 2 + PING_TIMEOUT);
    assert.equal(socket.connected, true);
    socket.disconnect();
  });

  for (const transports of [["websocket"], ["polling"]]) {
    it(`carries binary both ways over ${transports[0]}`, T, async () => {
      const socket = client("/custom", { transports, upgrade: false });
      await once(socket, "connect");
      const blob = Buffer.from([0, 1, 2, 253, 254, 255]);
      const nested = { file: Buffer.from("hello"), list: [Buffer.from([7])] };
      const back = new Promise((resolve) =>
        socket.once("message-back", (...args) => resolve(args)),
      );
      socket.emit("message", blob, nested, "text");
      const [b1, b2, b3] = await within(3000, back, "message-back");
      assert.deepEqual(Buffer.from(b1), blob);
      assert.deepEqual(Buffer.from(b2.file), Buffer.from("hello"));
      assert.deepEqual(Buffer.from(b2.list[0]), Buffer.from([7]));
      assert.equal(b3, "text");
      const acked = await socket.timeout(3000).emitWithAck("message-with-ack", blob);
      assert.deepEqual(Buffer.from(acked), blob);
      socket.disconnect();
    });
  }

  it("multiplexes several namespaces on one connection", T, async () => {
    const url = server.url;
    const main = io(`${url}/`, { reconnection: false, auth: { token: "main" } });
    const custom = io(`${url}/custom`, { reconnection: false, auth: { token: "custom" } });
    opened.push(main, custom);
    assert.equal(main.io, custom.io, "both sockets share one Manager");
    const [authMain, authCustom] = await Promise.all([once(main, "auth"), once(custom, "auth")]);
    assert.deepEqual(authMain, { token: "main" });
    assert.deepEqual(authCustom, { token: "custom" });
    assert.notEqual(main.id, custom.id);
    const [a, b] = await Promise.all([
      main.timeout(3000).emitWithAck("message-with-ack", "to main"),
      custom.timeout(3000).emitWithAck("message-with-ack", "to custom"),
    ]);
    assert.equal(a, "to main");
    assert.equal(b, "to custom");
    // Leaving one namespace leaves the other connected on the same engine.
    const engine = main.io.engine;
    custom.disconnect();
    await sleep(100);
    assert.equal(main.connected, true);
    assert.equal(main.io.engine, engine);
    assert.equal(await main.timeout(3000).emitWithAck("message-with-ack", "again"), "again");
    main.disconnect();
  });

  it("reports an unknown namespace as connect_error", T, async () => {
    const socket = client("/random");
    const err = await once(socket, "connect_error");
    assert.equal(err.message, "Invalid namespace");
  });
});
