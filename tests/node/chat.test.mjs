// Namespace /chat with the official socket.io-client (PROTOCOL.md section 5),
// its errors (section 3), chat history over HTTP (section 7), and data that
// survives a restart of the server on the same DATA_DIR (section 8).

import assert from "node:assert/strict";
import { test } from "node:test";
import { withServer } from "./helpers/server.mjs";
import * as api from "./helpers/api.mjs";
import { ack, connectAs, noEvent, Recorder, sleep } from "./helpers/client.mjs";

const T = { timeout: 60_000 };
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Ann and Bob with a conversation, Cy outside it. */
async function setup(server) {
  const ann = await api.externalUser(server.url, "Ann");
  const bob = await api.externalUser(server.url, "Bob");
  const cy = await api.externalUser(server.url, "Cy");
  const conv = await api.createConversation(server.url, ann, [bob]);
  return { ann, bob, cy, conv };
}

async function joined(socket, conv) {
  const res = await ack(socket, "conversation:join", { conversationId: conv.id });
  assert.equal(res.ok, true, `join: ${JSON.stringify(res)}`);
  return res;
}

function assertFailed(res, code, what) {
  assert.equal(res?.ok, false, `${what}: ${JSON.stringify(res)}`);
  assert.equal(res.error?.code, code, `${what}: ${JSON.stringify(res)}`);
  assert.equal(typeof res.error.message, "string", `${what}: message`);
}

function assertMessage(m, { conv, sender, text, clientId, seq }) {
  assert.equal(typeof m.id, "string");
  assert.ok(m.id.length > 0);
  assert.equal(m.conversationId, conv.id);
  assert.equal(m.senderId, sender.id);
  assert.equal(m.text, text);
  assert.equal(m.clientId, clientId);
  if (seq !== undefined) assert.equal(m.seq, seq);
  assert.match(m.createdAt, ISO_UTC);
}

test("conversation:join is for members only; lastSeq counts the messages", T, () =>
  withServer(async (server) => {
    const { ann, cy, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const first = await joined(a, conv);
    assert.equal(first.lastSeq, 0);

    const c = await connectAs(server, cy);
    assertFailed(await ack(c, "conversation:join", { conversationId: conv.id }), "not_found", "non-member join");
    assertFailed(await ack(c, "conversation:join", { conversationId: "no-such-conversation" }), "not_found", "unknown conversation");
    // A non-member cannot post either, and sees nothing of the conversation.
    const rec = new Recorder(c, ["new_message"]);
    assertFailed(
      await ack(c, "send_message", { conversationId: conv.id, text: "let me in", clientId: "x1" }),
      "not_found",
      "non-member send",
    );
    await ack(a, "send_message", { conversationId: conv.id, text: "one", clientId: "a1" });
    await ack(a, "send_message", { conversationId: conv.id, text: "two", clientId: "a2" });
    await sleep(200);
    assert.equal(rec.of("new_message").length, 0, "a non-member got a message");

    // The refusal left Cy's connection up and usable.
    assert.equal(c.connected, true);
    const own = await api.createConversation(server.url, cy, [ann]);
    await joined(c, own);

    // Joining again answers the current lastSeq.
    const again = await ack(a, "conversation:join", { conversationId: conv.id });
    assert.equal(again.ok, true);
    assert.equal(again.lastSeq, 2);
  }));

test("send_message: acked with the message, seq gap-free, new_message to every socket in the room exactly once", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    const annPhone = await connectAs(server, ann, "/chat", { auth: { deviceId: "phone" } });
    const annLaptop = await connectAs(server, ann, "/chat", { auth: { deviceId: "laptop" }, transports: ["websocket"] });
    const bobWeb = await connectAs(server, bob);
    for (const s of [annPhone, annLaptop, bobWeb]) await joined(s, conv);
    const recs = [annPhone, annLaptop, bobWeb].map((s) => new Recorder(s, ["new_message"]));

    const acks = [];
    for (const [i, text] of ["first", "second", "third"].entries()) {
      const res = await ack(annPhone, "send_message", { conversationId: conv.id, text, clientId: `ann-${i}` });
      assert.equal(res.ok, true, JSON.stringify(res));
      assertMessage(res.message, { conv, sender: ann, text, clientId: `ann-${i}`, seq: i + 1 });
      acks.push(res.message);
    }
    // Bob answers: the same sequence continues.
    const reply = await ack(bobWeb, "send_message", { conversationId: conv.id, text: "fourth", clientId: "bob-0" });
    assertMessage(reply.message, { conv, sender: bob, text: "fourth", clientId: "bob-0", seq: 4 });
    acks.push(reply.message);
    assert.equal(new Set(acks.map((m) => m.id)).size, 4, "message ids are unique");

    for (const [name, rec] of [["sending socket", recs[0]], ["sender's other device", recs[1]], ["other user", recs[2]]]) {
      await rec.count("new_message", 4);
      await sleep(150);
      const got = rec.of("new_message");
      assert.equal(got.length, 4, `${name} got each message once`);
      assert.deepEqual(
        got.map((e) => e.args[0]),
        acks,
        `${name} got the acked messages, in order`,
      );
      // Every broadcast carries its recovery offset as a last, string argument,
      // increasing from one message to the next.
      const offsets = got.map((e) => e.args[e.args.length - 1]);
      for (const o of offsets) assert.equal(typeof o, "string", `${name}: offset ${JSON.stringify(o)}`);
      assert.equal(got[0].args.length, 2, `${name}: new_message args`);
      const nums = offsets.map(BigInt);
      for (let i = 1; i < nums.length; i++) assert.ok(nums[i] > nums[i - 1], `${name}: offsets increase`);
    }
  }));

test("send_message with the clientId of an earlier message returns it and broadcasts nothing", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    await joined(a, conv);
    await joined(b, conv);
    const recA = new Recorder(a, ["new_message"]);
    const recB = new Recorder(b, ["new_message"]);

    const original = await ack(a, "send_message", { conversationId: conv.id, text: "hello", clientId: "retry-1" });
    assert.equal(original.ok, true);
    await recB.count("new_message", 1);
    await recA.count("new_message", 1);

    // The retry (e.g. after a lost ack), from another device, with other text.
    const a2 = await connectAs(server, ann, "/chat", { transports: ["websocket"] });
    const retry = await ack(a2, "send_message", { conversationId: conv.id, text: "hello (edited)", clientId: "retry-1" });
    assert.equal(retry.ok, true, JSON.stringify(retry));
    assert.deepEqual(retry.message, original.message);

    // Bob's clientId space is his own: the same clientId is a new message.
    const bobs = await ack(b, "send_message", { conversationId: conv.id, text: "mine", clientId: "retry-1" });
    assert.equal(bobs.ok, true);
    assert.equal(bobs.message.seq, 2, "no seq was used by the retry");
    assert.notEqual(bobs.message.id, original.message.id);

    await recB.count("new_message", 2);
    await sleep(200);
    assert.deepEqual(recB.payloads("new_message").map((m) => m.text), ["hello", "mine"]);
    assert.deepEqual(recA.payloads("new_message").map((m) => m.text), ["hello", "mine"]);

    const hist = api.expectStatus(await api.history(server.url, ann, conv.id), 200);
    assert.deepEqual(hist.items.map((m) => m.text), ["hello", "mine"]);
  }));

test("text must be 1 to 10,000 characters", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    await joined(a, conv);
    await joined(b, conv);
    const rec = new Recorder(b, ["new_message"]);
    assertFailed(await ack(a, "send_message", { conversationId: conv.id, text: "", clientId: "t0" }), "bad_request", "empty text");
    assertFailed(
      await ack(a, "send_message", { conversationId: conv.id, text: "x".repeat(10_001), clientId: "t1" }),
      "bad_request",
      "10,001 characters",
    );
    const max = await ack(a, "send_message", { conversationId: conv.id, text: "y".repeat(10_000), clientId: "t2" });
    assert.equal(max.ok, true, "10,000 characters are accepted");
    assert.equal(max.message.seq, 1, "refused messages used no seq");
    assert.equal(max.message.text.length, 10_000);
    await rec.count("new_message", 1);
    await sleep(150);
    assert.equal(rec.of("new_message").length, 1);
  }));

test("payloads of the wrong shape get a bad_request ack and the connection stays up", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    await joined(a, conv);
    await joined(b, conv);
    const recB = new Recorder(b, ["new_message", "message:read", "typing:user_typing"]);
    const sid = a.id;
    const bad = [
      ["send_message", { conversationId: conv.id, text: 42, clientId: "w1" }],
      ["send_message", { conversationId: 7, text: "hi", clientId: "w2" }],
      ["send_message", { conversationId: conv.id, text: ["hi"], clientId: "w3" }],
      ["send_message", { conversationId: conv.id, text: "hi", clientId: 5 }],
      ["send_message", { conversationId: conv.id }],
      ["send_message", "just a string"],
      ["send_message", null],
      ["send_message", [conv.id, "hi"]],
      // A binary attachment where text belongs (a BINARY_EVENT on the wire).
      ["send_message", { conversationId: conv.id, text: Buffer.from("hi"), clientId: "w4" }],
      ["conversation:join", { conversationId: { $ne: null } }],
      ["conversation:join", {}],
      ["conversation:join", 12],
      ["message:read", { conversationId: conv.id, seq: "1" }],
      ["message:read", { conversationId: conv.id, seq: -1 }],
      ["message:read", { conversationId: conv.id }],
      ["typing:start", { conversationId: false }],
      ["nonexistent:event", { conversationId: conv.id }],
    ];
    for (const [event, payload] of bad) {
      assertFailed(await ack(a, event, payload), "bad_request", `${event} ${JSON.stringify(payload)}`);
    }
    assert.equal(a.connected, true);
    assert.equal(a.id, sid, "same socket, no reconnect");
    // Nothing of it reached the room, and a good message still goes through.
    const ok = await ack(a, "send_message", { conversationId: conv.id, text: "still here", clientId: "ok" });
    assert.equal(ok.message.seq, 1);
    await recB.count("new_message", 1);
    await sleep(150);
    assert.deepEqual(recB.events.map((e) => e.event), ["new_message"]);
  }));

test("a bad event without an ack gets an `error` event; the connection stays up and nothing is lost", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    for (const transports of [["websocket"], ["polling"]]) {
      const a = await connectAs(server, ann, "/chat", { transports });
      const b = await connectAs(server, bob);
      await joined(a, conv);
      await joined(b, conv);
      const recA = new Recorder(a, ["error", "disconnect"]);
      const recB = new Recorder(b, ["new_message"]);
      const sid = a.id;

      a.emit("no_such_event", { conversationId: conv.id });
      await recA.count("error", 1);
      a.emit("send_message", { conversationId: conv.id, text: 99 });
      await recA.count("error", 2);
      // Sent right after a bad one, without waiting: still handled, in order.
      a.emit("send_message", { conversationId: conv.id, text: "", clientId: "e0" });
      a.emit("send_message", { conversationId: conv.id, text: `after errors ${transports}`, clientId: `e-${transports}` });
      await recA.count("error", 3);
      await recB.count("new_message", 1);

      for (const { args } of recA.of("error")) {
        assert.equal(args[0].code, "bad_request", JSON.stringify(args));
        assert.equal(typeof args[0].message, "string");
      }
      assert.equal(recB.payloads("new_message")[0].text, `after errors ${transports}`);
      assert.equal(a.connected, true);
      assert.equal(a.id, sid);
      assert.equal(recA.of("disconnect").length, 0);
      const res = await ack(a, "conversation:join", { conversationId: conv.id });
      assert.equal(res.ok, true);
      a.disconnect();
      b.disconnect();
    }
  }));

test("typing:start / typing:stop reach the others in the room, not the sender", T, () =>
  withServer(async (server) => {
    const { ann, bob, cy, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    const c = await connectAs(server, cy);
    await joined(a, conv);
    await joined(b, conv);
    const events = ["typing:user_typing", "typing:user_stopped"];
    const recA = new Recorder(a, events);
    const recB = new Recorder(b, events);
    const recC = new Recorder(c, events);

    assert.equal((await ack(a, "typing:start", { conversationId: conv.id })).ok, true);
    await recB.count("typing:user_typing", 1);
    assert.deepEqual(recB.payloads("typing:user_typing")[0], { userId: ann.id, name: "Ann", conversationId: conv.id });

    assert.equal((await ack(a, "typing:stop", { conversationId: conv.id })).ok, true);
    await recB.count("typing:user_stopped", 1);
    assert.deepEqual(recB.payloads("typing:user_stopped")[0], { userId: ann.id, name: "Ann", conversationId: conv.id });

    // Bob types (without an ack, as apps often do); Ann sees it.
    b.emit("typing:start", { conversationId: conv.id });
    await recA.count("typing:user_typing", 1);
    assert.equal(recA.payloads("typing:user_typing")[0].userId, bob.id);

    // Outsiders can neither type into the conversation nor see typing.
    assertFailed(await ack(c, "typing:start", { conversationId: conv.id }), "not_found", "non-member typing");

    await sleep(300);
    assert.equal(recA.of("typing:user_typing").length, 1, "Ann saw only Bob typing, not herself");
    assert.equal(recA.of("typing:user_stopped").length, 0);
    assert.equal(recB.of("typing:user_typing").length, 1, "Bob did not see himself typing");
    assert.equal(recC.events.length, 0, "the outsider saw nothing");

    // Bob's app goes away while he types: Ann sees him stop at once.
    b.disconnect();
    await recA.count("typing:user_stopped", 1, 2_000);
    assert.deepEqual(recA.payloads("typing:user_stopped")[0], { userId: bob.id, name: "Bob", conversationId: conv.id });
  }));

test("typing stops by itself after the configured timeout since the last typing:start", T, () =>
  withServer({ env: { HUDDLE__CHAT__TYPING_TIMEOUT_MS: "600" } }, async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    await joined(a, conv);
    await joined(b, conv);
    const rec = new Recorder(b, ["typing:user_typing", "typing:user_stopped"]);

    await ack(a, "typing:start", { conversationId: conv.id });
    await rec.count("typing:user_typing", 1);
    // Still typing at 250 ms: start again, which pushes the stop back.
    await sleep(250);
    assert.equal(rec.of("typing:user_stopped").length, 0, "stopped before the timeout");
    const restarted = Date.now();
    await ack(a, "typing:start", { conversationId: conv.id });
    await rec.count("typing:user_stopped", 1, 3_000);
    const stoppedAfter = rec.of("typing:user_stopped")[0].at - restarted;
    assert.ok(stoppedAfter >= 550, `auto-stop came ${stoppedAfter} ms after the last start`);
    assert.deepEqual(rec.payloads("typing:user_stopped")[0], { userId: ann.id, name: "Ann", conversationId: conv.id });
    await sleep(800);
    assert.equal(rec.of("typing:user_stopped").length, 1, "one stop for one typing session");

    // Sending a message also ends typing, and no timer fires later.
    await ack(a, "typing:start", { conversationId: conv.id });
    await rec.count("typing:user_typing", 3);
    await ack(a, "send_message", { conversationId: conv.id, text: "done typing", clientId: "d1" });
    await rec.count("typing:user_stopped", 2);
    await sleep(900);
    assert.equal(rec.of("typing:user_stopped").length, 2);
  }));

test("a burst of send_message without waiting keeps its order; concurrent senders share one gap-free seq", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann, "/chat", { transports: ["websocket"] });
    const b = await connectAs(server, bob, "/chat", { transports: ["polling"] });
    const watcher = await connectAs(server, bob);
    await joined(watcher, conv);
    const rec = new Recorder(watcher, ["new_message"]);
    const N = 40;
    const fromA = Array.from({ length: N }, (_, i) => ack(a, "send_message", { conversationId: conv.id, text: `a${i}`, clientId: `a${i}` }));
    const fromB = Array.from({ length: N }, (_, i) => ack(b, "send_message", { conversationId: conv.id, text: `b${i}`, clientId: `b${i}` }));
    const [acksA, acksB] = await Promise.all([Promise.all(fromA), Promise.all(fromB)]);
    for (const r of [...acksA, ...acksB]) assert.equal(r.ok, true, JSON.stringify(r));
    const seqA = acksA.map((r) => r.message.seq);
    const seqB = acksB.map((r) => r.message.seq);
    for (const seqs of [seqA, seqB]) {
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `one sender's messages keep their order: ${seqs}`);
    }
    assert.deepEqual([...seqA, ...seqB].sort((x, y) => x - y), Array.from({ length: 2 * N }, (_, i) => i + 1), "gap-free and unique");
    await rec.count("new_message", 2 * N, 10_000);
    assert.deepEqual(rec.payloads("new_message").map((m) => m.seq), Array.from({ length: 2 * N }, (_, i) => i + 1), "delivered in seq order");
  }));

test("many members sending at once, retries among them: every socket gets each new message once, in seq order", T, () =>
  withServer({ env: { HUDDLE__RATE_LIMITS__SOCKET_EVENTS_PER_SECOND: "0" } }, async (server) => {
    const owner = await api.externalUser(server.url, "Owner");
    const others = [];
    for (let i = 0; i < 5; i++) others.push(await api.externalUser(server.url, `M${i}`));
    const conv = await api.createConversation(server.url, owner, others);
    const watchers = [];
    for (const u of [owner, others[0]]) {
      const w = await connectAs(server, u);
      await joined(w, conv);
      watchers.push(new Recorder(w, ["new_message"]));
    }
    const senders = [];
    for (const u of others) senders.push(await connectAs(server, u, "/chat", { transports: ["websocket"] }));
    const N = 30;
    // Each sender fires its messages without waiting, the second half of
    // them twice (the retry must answer the original and broadcast nothing).
    const runs = senders.map((s, k) => {
      const sends = [];
      for (let i = 0; i < N; i++) {
        const body = { conversationId: conv.id, text: `s${k}-${i}`, clientId: `s${k}-${i}` };
        sends.push(ack(s, "send_message", body));
        if (i >= N / 2) sends.push(ack(s, "send_message", { ...body, text: "retry" }));
      }
      return Promise.all(sends);
    });
    const answers = (await Promise.all(runs)).flat();
    for (const r of answers) assert.equal(r.ok, true, JSON.stringify(r));
    const total = senders.length * N;
    const seqs = [...new Set(answers.map((r) => r.message.seq))].sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i + 1), "gap-free, one seq per clientId");
    for (const rec of watchers) {
      await rec.count("new_message", total, 15_000);
      await sleep(200);
      const got = rec.payloads("new_message");
      assert.equal(got.length, total, "no retry was broadcast");
      assert.deepEqual(got.map((m) => m.seq), seqs, "delivered in seq order");
      assert.ok(got.every((m) => m.text !== "retry"));
    }
  }));

test("message:read is broadcast to the room, the reader's sockets included", T, () =>
  withServer(async (server) => {
    const { ann, bob, cy, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    await joined(a, conv);
    await joined(b, conv);
    const recA = new Recorder(a, ["message:read"]);
    const recB = new Recorder(b, ["message:read"]);
    for (const i of [1, 2, 3]) await ack(a, "send_message", { conversationId: conv.id, text: `m${i}`, clientId: `m${i}` });

    const res = await ack(b, "message:read", { conversationId: conv.id, seq: 3 });
    assert.equal(res.ok, true, JSON.stringify(res));
    await recA.count("message:read", 1);
    await recB.count("message:read", 1);
    const expected = { conversationId: conv.id, userId: bob.id, seq: 3 };
    assert.deepEqual(recA.payloads("message:read")[0], expected);
    assert.deepEqual(recB.payloads("message:read")[0], expected);

    const c = await connectAs(server, cy);
    assertFailed(await ack(c, "message:read", { conversationId: conv.id, seq: 1 }), "not_found", "non-member read");
    // A marker past the last message is refused (it would stick there and
    // hide the messages still to come), and nothing is broadcast.
    assertFailed(await ack(b, "message:read", { conversationId: conv.id, seq: 4 }), "bad_request", "seq past the last message");
    assertFailed(
      await ack(b, "message:read", { conversationId: conv.id, seq: Number.MAX_SAFE_INTEGER }),
      "bad_request",
      "a huge seq",
    );
    await sleep(150);
    assert.equal(recA.of("message:read").length, 1);
    // The next message can be marked read as usual.
    await ack(a, "send_message", { conversationId: conv.id, text: "m4", clientId: "m4" });
    assert.equal((await ack(b, "message:read", { conversationId: conv.id, seq: 4 })).ok, true);
    await recA.count("message:read", 2);
    assert.equal(recA.payloads("message:read")[1].seq, 4);
  }));

test("conversation:leave stops the room's broadcasts to that socket", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    await joined(a, conv);
    await joined(b, conv);
    const rec = new Recorder(b, ["new_message"]);
    await ack(a, "send_message", { conversationId: conv.id, text: "before", clientId: "l1" });
    await rec.count("new_message", 1);
    assert.equal((await ack(b, "conversation:leave", { conversationId: conv.id })).ok, true);
    await ack(a, "send_message", { conversationId: conv.id, text: "after", clientId: "l2" });
    await noEvent(b, "new_message", 300);
    assert.equal(rec.of("new_message").length, 1);
  }));

test("every message acknowledged before the server is killed (SIGKILL) is in history after a restart; seq and idempotency go on", T, () =>
  // The socket rate limit off: 600 messages in a few seconds.
  withServer({ env: { HUDDLE__RATE_LIMITS__SOCKET_EVENTS_PER_SECOND: "0" } }, async (server) => {
    const { ann, bob, conv } = await setup(server);
    const a = await connectAs(server, ann);
    // More than one journal checkpoint's worth (512, README "Chat
    // messages on disk"), sent in bursts of 20 without waiting (within
    // max_events_pending).
    const N = 600;
    const sent = [];
    for (let start = 1; start <= N; start += 20) {
      const burst = [];
      for (let i = start; i < start + 20; i++) {
        burst.push(ack(a, "send_message", { conversationId: conv.id, text: `k ${i}`, clientId: `k${i}` }));
      }
      for (const res of await Promise.all(burst)) {
        assert.equal(res.ok, true, JSON.stringify(res));
        sent.push(res.message);
      }
    }
    assert.deepEqual(sent.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1));
    // No warning, no drain: the process dies right after the last ack.
    server.child.kill("SIGKILL");
    const { signal } = await server.exit;
    assert.equal(signal, "SIGKILL");
    await server.start();

    const seen = [];
    let before;
    for (let guard = 0; guard < 100; guard++) {
      const page = api.expectStatus(await api.history(server.url, bob, conv.id, { before, limit: 100 }), 200);
      seen.unshift(...page.items);
      if (page.nextCursor === null) break;
      before = page.nextCursor;
    }
    assert.deepEqual(seen, sent, "history holds every acknowledged message, as acknowledged");
    const b = await connectAs(server, bob);
    assert.equal((await joined(b, conv)).lastSeq, N);
    const a2 = await connectAs(server, ann);
    const again = await ack(a2, "send_message", { conversationId: conv.id, text: "again", clientId: `k${N}` });
    assert.deepEqual(again.message, sent[N - 1], "a retry after the crash answers the original");
    const next = await ack(a2, "send_message", { conversationId: conv.id, text: "after", clientId: "k-after" });
    assert.equal(next.message.seq, N + 1);
  }));

test("history: newest page first, oldest first within a page, before/limit paging to nextCursor null", T, () =>
  withServer(async (server) => {
    const { ann, bob, cy, conv } = await setup(server);
    const a = await connectAs(server, ann);
    const b = await connectAs(server, bob);
    const sent = [];
    for (let i = 1; i <= 7; i++) {
      const s = i % 3 === 0 ? b : a;
      const res = await ack(s, "send_message", { conversationId: conv.id, text: `msg ${i}`, clientId: `h${i}` });
      assert.equal(res.message.seq, i);
      sent.push(res.message);
    }

    const all = api.expectStatus(await api.history(server.url, bob, conv.id), 200);
    assert.deepEqual(all.items, sent, "history shows the messages as new_message did, oldest first");
    assert.equal(all.nextCursor, null);

    const pages = [];
    let before;
    for (let guard = 0; guard < 10; guard++) {
      const page = api.expectStatus(await api.history(server.url, ann, conv.id, { before, limit: 3 }), 200);
      pages.push(page.items.map((m) => m.seq));
      if (page.nextCursor === null) break;
      assert.notEqual(page.nextCursor, undefined);
      before = page.nextCursor;
    }
    assert.deepEqual(pages, [[5, 6, 7], [2, 3, 4], [1]]);

    const mid = api.expectStatus(await api.history(server.url, ann, conv.id, { before: 5, limit: 2 }), 200);
    assert.deepEqual(mid.items.map((m) => m.seq), [3, 4]);
    assert.notEqual(mid.nextCursor, null);
    const start = api.expectStatus(await api.history(server.url, ann, conv.id, { before: 2 }), 200);
    assert.deepEqual(start.items.map((m) => m.seq), [1]);
    assert.equal(start.nextCursor, null);

    const empty = await api.createConversation(server.url, ann, [bob, cy], { title: "empty" });
    assert.deepEqual(api.expectStatus(await api.history(server.url, ann, empty.id), 200), { items: [], nextCursor: null });

    // Members only, with the same answer as an unknown conversation.
    const outsider = await api.history(server.url, cy, conv.id);
    assert.equal(outsider.status, 404);
    assert.equal(outsider.body.error.code, "not_found");
    assert.equal((await api.history(server.url, cy, "no-such-conversation")).status, 404);
    const noAuth = await api.request(server.url, "GET", `/api/v1/conversations/${conv.id}/messages`);
    assert.equal(noAuth.status, 401);
    assert.equal((await api.history(server.url, ann, conv.id, { limit: "ten" })).status, 400);

    // The conversation list shows it with its lastSeq.
    const list = api.expectStatus(await api.request(server.url, "GET", "/api/v1/conversations", { token: bob.token }), 200);
    assert.ok(Array.isArray(list.items));
    assert.ok("nextCursor" in list);
    const mine = list.items.find((c) => c.id === conv.id);
    assert.ok(mine, "Bob's conversation is listed");
    assert.equal(mine.lastSeq, 7);
    const cyList = api.expectStatus(await api.request(server.url, "GET", "/api/v1/conversations", { token: cy.token }), 200);
    assert.ok(!cyList.items.some((c) => c.id === conv.id), "Cy does not see a conversation he is not in");
  }));

test("accounts, conversations and messages survive a restart on the same DATA_DIR", T, () =>
  withServer(async (server) => {
    const ann = await api.registeredUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const conv = await api.createConversation(server.url, ann, [bob]);
    let a = await connectAs(server, ann);
    const before = [];
    for (let i = 1; i <= 3; i++) {
      before.push((await ack(a, "send_message", { conversationId: conv.id, text: `pre ${i}`, clientId: `r${i}` })).message);
    }
    a.disconnect();
    // Bob stays connected through the restart, with the client's default
    // reconnection (a short delay to keep the test fast).
    const b = await connectAs(server, bob, "/chat", { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 500 });
    await joined(b, conv);
    const recB = new Recorder(b, ["connect", "disconnect", "new_message"]);

    // SIGTERM: the server drains and exits cleanly, then starts again.
    const exit = await server.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, "clean exit on SIGTERM");
    await recB.count("disconnect", 1);
    assert.notEqual(recB.payloads("disconnect")[0], "io server disconnect", "the drain lets clients reconnect by themselves");
    await server.start();
    // Bob's client comes back by itself.
    await recB.count("connect", 1, 10_000);
    if (!b.recovered) await joined(b, conv);

    // The account still logs in, with the same id.
    const li = await api.login(server.url, { email: ann.email, password: ann.password });
    assert.equal(li.status, 200, JSON.stringify(li.body));
    assert.equal(li.body.user.id, ann.id);
    // Tokens issued before the restart are still valid (same secret).
    assert.equal(api.expectStatus(await api.me(server.url, ann.token), 200).id, ann.id);
    // Registering the same email again is still a conflict.
    assert.equal((await api.register(server.url, { email: ann.email, password: "another password", name: "X" })).status, 409);

    // The messages are there, and seq continues without a gap.
    const hist = api.expectStatus(await api.history(server.url, bob, conv.id), 200);
    assert.deepEqual(hist.items, before);
    a = await connectAs(server, { ...ann, token: li.body.accessToken });
    const join = await ack(a, "conversation:join", { conversationId: conv.id });
    assert.equal(join.lastSeq, 3);
    const next = await ack(a, "send_message", { conversationId: conv.id, text: "post", clientId: "r4" });
    assert.equal(next.message.seq, 4);
    await recB.count("new_message", 1);
    assert.deepEqual(recB.payloads("new_message").at(-1), next.message);
    // Idempotency outlives the restart too.
    const retry = await ack(a, "send_message", { conversationId: conv.id, text: "pre 1 again", clientId: "r1" });
    assert.deepEqual(retry.message, before[0]);
    // The conversation is still unique per pair.
    const same = await api.request(server.url, "POST", "/api/v1/conversations", { token: bob.token, body: { memberIds: [ann.id] } });
    assert.equal(same.status, 200);
    assert.equal(same.body.id, conv.id);
  }));

test("a /chat socket is in the conversations it joined, not in its user's room; / and /file-upload sockets are", T, () =>
  withServer({ env: { SERVICE_KEYS: "chat-test-service-key" } }, async (server) => {
    const { ann, conv } = await setup(server);
    const chat = await connectAs(server, ann, "/chat");
    const root = await connectAs(server, ann, "/");
    const files = await connectAs(server, ann, "/file-upload");
    await joined(chat, conv);
    const recs = [chat, root, files].map((s) => new Recorder(s, ["to-user", "marker"]));
    const publish = async (namespace, rooms, event) => {
      const res = await api.request(server.url, "POST", "/api/v1/publish", {
        headers: { authorization: "Bearer chat-test-service-key" },
        body: { namespace, rooms, event, data: { namespace } },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
    };
    for (const nsp of ["/chat", "/", "/file-upload"]) await publish(nsp, [`user:${ann.id}`], "to-user");
    // Broadcasts keep their order: once the conversation's marker is in,
    // anything for the user's /chat room would have come before it.
    await publish("/chat", [`conversation:${conv.id}`], "marker");
    await recs[0].count("marker", 1);
    await recs[1].count("to-user", 1);
    await recs[2].count("to-user", 1);
    assert.deepEqual(recs[0].payloads("to-user"), []);
    assert.deepEqual(recs[1].payloads("to-user"), [{ namespace: "/" }]);
    assert.deepEqual(recs[2].payloads("to-user"), [{ namespace: "/file-upload" }]);
    for (const s of [chat, root, files]) s.disconnect();
  }));

test("a client that stops reading is closed as too slow; the others miss nothing", () =>
  withServer(
    { env: { SERVICE_KEYS: "chat-test-service-key", HUDDLE__ENGINE__OUTBOUND_QUEUE_MAX: "8" } },
    async (server) => {
      const ann = await api.externalUser(server.url, "Ann");
      const bob = await api.externalUser(server.url, "Bob");
      const slow = await connectAs(server, ann, "/", { transports: ["websocket"] });
      const fast = await connectAs(server, bob, "/", { transports: ["websocket"] });
      const recFast = new Recorder(fast, ["flood"]);
      const slowGone = new Promise((resolve) => slow.on("disconnect", resolve));
      // Ann's client stops reading its TCP socket: what the server sends
      // fills the kernel's buffers, then her queue of 8 packets.
      slow.io.engine.transport.ws._socket.pause();
      const metric = async (name) => {
        const text = await (await fetch(`${server.url}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith(`${name} `));
        return line ? Number(line.split(" ")[1]) : 0;
      };
      const blob = "x".repeat(60_000);
      let sent = 0;
      // Loopback buffers hold some megabytes: at most 600 × 60 KB.
      while (sent < 600 && (await metric("huddle_slow_clients_total")) === 0) {
        for (let i = 0; i < 20; i++, sent++) {
          const res = await api.request(server.url, "POST", "/api/v1/publish", {
            headers: { authorization: "Bearer chat-test-service-key" },
            body: { rooms: [`user:${ann.id}`, `user:${bob.id}`], event: "flood", data: { n: sent, blob } },
          });
          assert.equal(res.status, 202, JSON.stringify(res.body));
        }
      }
      assert.equal(await metric("huddle_slow_clients_total"), 1, `after ${sent} publishes`);
      // Bob's client kept reading: every packet reached him, in order.
      await recFast.count("flood", sent, 20_000);
      assert.deepEqual(
        recFast.payloads("flood").map((p) => p.n),
        Array.from({ length: sent }, (_, i) => i),
      );
      // Ann's connection is gone on the server; her client sees it once it
      // reads again.
      assert.equal(await metric("huddle_connections"), 1);
      slow.io.engine.transport.ws._socket.resume();
      await slowGone;
      assert.match(server.log(), /client too slow/);
    },
  ));
