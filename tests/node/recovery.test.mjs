// Connection state recovery (PROTOCOL.md section 1) with the official
// socket.io-client: a client whose transport drops gets, after reconnecting
// within recovery.max_disconnect_ms, the packets it missed in its rooms, in
// order, with `socket.recovered === true`; after the window it starts over.

import assert from "node:assert/strict";
import { test } from "node:test";
import { withServer } from "./helpers/server.mjs";
import * as api from "./helpers/api.mjs";
import { ack, connectAs, connected, makeManager, noEvent, once, Recorder, sleep, WAIT_MS } from "./helpers/client.mjs";

const T = { timeout: 60_000 };

/** Ann and Bob in a conversation; Bob's socket reconnects by itself after `delay` ms. */
async function setup(server, { delay = 600, transports } = {}) {
  const ann = await api.externalUser(server.url, "Ann");
  const bob = await api.externalUser(server.url, "Bob");
  const conv = await api.createConversation(server.url, ann, [bob]);
  const a = await connectAs(server, ann);
  const b = await connectAs(server, bob, "/chat", {
    reconnection: true,
    reconnectionDelay: delay,
    reconnectionDelayMax: delay,
    randomizationFactor: 0,
    ...(transports ? { transports } : {}),
  });
  for (const s of [a, b]) {
    const res = await ack(s, "conversation:join", { conversationId: conv.id });
    assert.equal(res.ok, true);
  }
  const rec = new Recorder(b, ["new_message", "message:read", "connect", "disconnect"]);
  return { ann, bob, conv, a, b, rec };
}

const send = (socket, conv, text) =>
  ack(socket, "send_message", { conversationId: conv.id, text, clientId: api.randomId("c") }).then((r) => {
    assert.equal(r.ok, true, JSON.stringify(r));
    return r.message;
  });

/** Drops the client's transport as a network failure would. */
const drops = {
  "the WebSocket is killed (no close frame)": (socket) => socket.io.engine.transport.ws.terminate(),
  "socket.io.engine.close()": (socket) => socket.io.engine.close(),
};

for (const [how, drop] of Object.entries(drops)) {
  test(`recovery after a transport drop (${how}): missed messages arrive in order, socket.recovered is true`, T, () =>
    withServer(async (server) => {
      const transports = how.includes("WebSocket") ? ["websocket"] : undefined;
      const { ann, conv, a, b, rec } = await setup(server, { transports });
      if (!transports) {
        // Default transports: make sure the upgrade is done, so what drops
        // is the WebSocket of an upgraded session.
        if (b.io.engine.transport.name !== "websocket") await once(b.io.engine, "upgrade");
      }
      const first = await send(a, conv, "before the drop");
      await rec.count("new_message", 1);
      assert.notEqual(b.recovered, true, "a fresh connection is not recovered");
      const sidBefore = b.id;

      // The drop; while Bob is away Ann writes and reads.
      const disconnected = once(b, "disconnect");
      drop(b);
      await disconnected;
      const missed = [];
      for (let i = 1; i <= 5; i++) missed.push(await send(a, conv, `missed ${i}`));
      const read = await ack(a, "message:read", { conversationId: conv.id, seq: 6 });
      assert.equal(read.ok, true);
      const awayUntil = Date.now();

      // Bob's client reconnects by itself.
      await rec.count("connect", 1, WAIT_MS + 2_000);
      assert.equal(b.recovered, true, "socket.recovered after a reconnect within the window");
      assert.equal(b.id, sidBefore, "the recovered socket keeps its id");
      await rec.count("new_message", 6);
      await rec.count("message:read", 1);
      await sleep(200);

      const got = rec.of("new_message");
      assert.deepEqual(
        got.map((e) => e.args[0]),
        [first, ...missed],
        "every message once, in order",
      );
      for (const e of got.slice(1)) {
        assert.ok(e.at >= rec.of("connect")[0].at, "the missed messages came after the reconnect");
        assert.ok(e.at >= awayUntil, "the missed messages were not delivered while away");
      }
      // The read marker came after the messages sent before it.
      const order = rec.events.filter((e) => e.event !== "disconnect").map((e) => e.event);
      assert.deepEqual(order.slice(-2), ["new_message", "message:read"]);
      assert.deepEqual(rec.payloads("message:read")[0], { conversationId: conv.id, userId: ann.id, seq: 6 });

      // Still in the room without joining again: live messages keep coming.
      const live = await send(a, conv, "after the reconnect");
      await rec.count("new_message", 7);
      assert.deepEqual(rec.payloads("new_message")[6], live);
      assert.equal(b.connected, true);
      // And Bob's socket works for events again.
      const mine = await send(b, conv, "I am back");
      assert.equal(mine.seq, 8);
    }));
}

test("a polling-only client recovers too", T, () =>
  withServer(async (server) => {
    const { conv, a, b, rec } = await setup(server, { transports: ["polling"] });
    await send(a, conv, "one");
    await rec.count("new_message", 1);
    const disconnected = once(b, "disconnect");
    b.io.engine.close();
    await disconnected;
    await send(a, conv, "two");
    await send(a, conv, "three");
    await rec.count("connect", 1, WAIT_MS + 2_000);
    assert.equal(b.recovered, true);
    await rec.count("new_message", 3);
    await sleep(150);
    assert.deepEqual(rec.payloads("new_message").map((m) => m.text), ["one", "two", "three"]);
  }));

test("a reconnect after recovery.max_disconnect_ms is not recovered: new socket, rooms to join again, history has the gap", T, () =>
  withServer({ env: { HUDDLE__RECOVERY__MAX_DISCONNECT_MS: "300" } }, async (server) => {
    // Bob reconnects only after 1.2 s, well past the 300 ms window.
    const { bob, conv, a, b, rec } = await setup(server, { delay: 1_200, transports: ["websocket"] });
    await send(a, conv, "seen");
    await rec.count("new_message", 1);
    const sidBefore = b.id;

    const disconnected = once(b, "disconnect");
    b.io.engine.transport.ws.terminate();
    await disconnected;
    const missed = [await send(a, conv, "missed 1"), await send(a, conv, "missed 2")];

    await rec.count("connect", 1, WAIT_MS + 3_000);
    assert.notEqual(b.recovered, true, "not recovered after the window");
    assert.notEqual(b.id, sidBefore, "a new socket id");
    // Nothing is replayed, and the socket is no longer in the conversation room.
    await sleep(300);
    assert.equal(rec.of("new_message").length, 1);
    await send(a, conv, "while not joined");
    await noEvent(b, "new_message", 300);
    // The app catches up from history and joins again.
    const hist = api.expectStatus(await api.history(server.url, bob, conv.id, { before: 4 }), 200);
    assert.deepEqual(hist.items.slice(1), missed);
    const join = await ack(b, "conversation:join", { conversationId: conv.id });
    assert.equal(join.lastSeq, 4);
    const live = await send(a, conv, "live again");
    await rec.count("new_message", 2);
    assert.deepEqual(rec.payloads("new_message")[1], live);
  }));

test("a client that disconnects on purpose and connects again is not recovered", T, () =>
  withServer(async (server) => {
    const { conv, a, b, rec } = await setup(server, { transports: ["websocket"] });
    await send(a, conv, "seen");
    await rec.count("new_message", 1);
    b.disconnect();
    await send(a, conv, "missed");
    await sleep(100);
    b.connect();
    await rec.count("connect", 1);
    assert.notEqual(b.recovered, true);
    await sleep(300);
    assert.equal(rec.of("new_message").length, 1, "nothing replayed after a deliberate disconnect");
  }));

test("repeated drops while messages keep flowing: every message exactly once, in seq order", T, () =>
  withServer({ env: { HUDDLE__RATE_LIMITS__SOCKET_EVENTS_PER_SECOND: "0" } }, async (server) => {
    const { ann, conv, b, rec } = await setup(server, { delay: 30, transports: ["websocket"] });
    const writers = [];
    for (let i = 0; i < 2; i++) writers.push(await connectAs(server, ann, "/chat", { transports: ["websocket"] }));
    let stop = false;
    let lastSeq = 0;
    const pumps = writers.map(async (w) => {
      while (!stop) {
        const r = await ack(w, "send_message", { conversationId: conv.id, text: "tick", clientId: api.randomId() });
        assert.equal(r.ok, true, JSON.stringify(r));
        lastSeq = Math.max(lastSeq, r.message.seq);
      }
    });
    // Recovery needs the offset of a packet already received.
    await rec.count("new_message", 1);
    for (let round = 0; round < 10; round++) {
      await sleep(50);
      const connects = rec.of("connect").length;
      b.io.engine.transport.ws.terminate();
      await rec.count("connect", connects + 1, WAIT_MS);
      assert.equal(b.recovered, true, `round ${round}: not recovered`);
    }
    stop = true;
    await Promise.all(pumps);
    await rec.until((r) => r.payloads("new_message").at(-1)?.seq === lastSeq, WAIT_MS, `message ${lastSeq}`);
    await sleep(100);
    const seqs = rec.payloads("new_message").map((m) => m.seq);
    assert.ok(lastSeq > 20, `only ${lastSeq} messages were sent`);
    assert.deepEqual(seqs, Array.from({ length: lastSeq }, (_, i) => i + 1));
  }));

test("on a multiplexed connection each namespace recovers on its own offset", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const conv = await api.createConversation(server.url, ann, [bob]);
    const a = await connectAs(server, ann);
    await ack(a, "conversation:join", { conversationId: conv.id });
    const manager = makeManager(server, {
      transports: ["websocket"],
      reconnection: true,
      reconnectionDelay: 300,
      reconnectionDelayMax: 300,
      randomizationFactor: 0,
    });
    const root = await connected(manager.socket("/", { auth: { token: bob.token } }));
    const chat = await connected(manager.socket("/chat", { auth: { token: bob.token } }));
    await ack(chat, "conversation:join", { conversationId: conv.id });
    const rec = new Recorder(chat, ["new_message", "connect"]);
    const rootRec = new Recorder(root, ["connect"]);
    await send(a, conv, "one");
    await rec.count("new_message", 1);
    const rootSid = root.id;

    manager.engine.transport.ws.terminate();
    await once(chat, "disconnect");
    await send(a, conv, "two");
    await rec.count("connect", 1, WAIT_MS);
    await rootRec.count("connect", 1, WAIT_MS);
    assert.equal(chat.recovered, true, "/chat recovered");
    assert.equal(root.recovered, false, "/ got no broadcast before the drop, so it has no offset to recover from");
    assert.notEqual(root.id, rootSid);
    await rec.count("new_message", 2);
    assert.deepEqual(rec.payloads("new_message").map((m) => m.text), ["one", "two"]);
  }));
