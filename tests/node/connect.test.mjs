// Connecting with the official socket.io-client, as web and mobile apps do:
// transports and the upgrade (PROTOCOL.md section 1), authentication and the
// per-user connection limit (section 2), accounts over HTTP (sections 2, 7).

import assert from "node:assert/strict";
import { test } from "node:test";
import { withServer, REFRESH_SECRET } from "./helpers/server.mjs";
import * as api from "./helpers/api.mjs";
import {
  ack,
  connectAs,
  connected,
  connectError,
  makeManager,
  makeSocket,
  once,
  Recorder,
  sleep,
  WAIT_MS,
} from "./helpers/client.mjs";

const T = { timeout: 60_000 };

/** Two users with a conversation between them. */
async function pair(server) {
  const ann = await api.externalUser(server.url, "Ann");
  const bob = await api.externalUser(server.url, "Bob");
  const conv = await api.createConversation(server.url, ann, [bob]);
  return { ann, bob, conv };
}

/** A full round trip on an already connected /chat socket: join, send, and see the broadcast come back. */
async function roundTrip(socket, conv, text) {
  const joined = await ack(socket, "conversation:join", { conversationId: conv.id });
  assert.equal(joined.ok, true, JSON.stringify(joined));
  const incoming = once(socket, "new_message");
  const sent = await ack(socket, "send_message", { conversationId: conv.id, text, clientId: api.randomId("c") });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const [msg] = await incoming;
  assert.equal(msg.text, text);
  assert.equal(msg.id, sent.message.id);
}

test("default transports: long-polling first, then upgraded to WebSocket, and events flow after", T, () =>
  withServer(async (server) => {
    const { ann, conv } = await pair(server);
    const socket = makeSocket(server, "/chat", { auth: { token: ann.token } });
    const seen = {};
    const upgraded = new Promise((resolve) => {
      socket.io.on("open", () => {
        seen.first = socket.io.engine.transport.name;
        socket.io.engine.once("upgrade", (transport) => resolve(transport.name));
      });
    });
    await connected(socket);
    assert.equal(seen.first, "polling", "the default client opens with HTTP long-polling");
    const to = await Promise.race([upgraded, sleep(WAIT_MS).then(() => "no upgrade")]);
    assert.equal(to, "websocket", "the connection is upgraded to WebSocket");
    assert.equal(socket.io.engine.transport.name, "websocket");
    await roundTrip(socket, conv, "over the upgraded transport");
    assert.equal(socket.connected, true);
  }));

test('transports: ["websocket"] connects over WebSocket only', T, () =>
  withServer(async (server) => {
    const { ann, conv } = await pair(server);
    const socket = makeSocket(server, "/chat", { auth: { token: ann.token }, transports: ["websocket"] });
    const transports = [];
    socket.io.on("open", () => transports.push(socket.io.engine.transport.name));
    await connected(socket);
    assert.deepEqual(transports, ["websocket"]);
    await roundTrip(socket, conv, "websocket only");
  }));

test("polling only: events and broadcasts flow over long-polling, no upgrade", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await pair(server);
    const a = makeSocket(server, "/chat", { auth: { token: ann.token }, transports: ["polling"] });
    let upgrades = 0;
    a.io.on("open", () => a.io.engine.on("upgrade", () => upgrades++));
    await connected(a);
    assert.equal(a.io.engine.transport.name, "polling");
    await roundTrip(a, conv, "polling only");
    // A broadcast made by someone else reaches the polling client (pushed
    // through a pending GET).
    const b = await connectAs(server, bob);
    await ack(b, "conversation:join", { conversationId: conv.id });
    const incoming = once(a, "new_message");
    await ack(b, "send_message", { conversationId: conv.id, text: "to a polling client", clientId: "p1" });
    const [msg] = await incoming;
    assert.equal(msg.senderId, bob.id);
    await sleep(300);
    assert.equal(upgrades, 0);
    assert.equal(a.io.engine.transport.name, "polling");
  }));

test("the token is accepted in the auth payload and in the handshake query", T, () =>
  withServer(async (server) => {
    const { ann, bob, conv } = await pair(server);
    for (const [how, opts] of [
      ["auth", { auth: { token: ann.token, deviceId: "web-1" } }],
      ["query", { query: { token: bob.token } }],
      ["query, websocket", { query: { token: bob.token }, transports: ["websocket"] }],
    ]) {
      const user = how === "auth" ? ann : bob;
      const socket = makeSocket(server, "/chat", opts);
      await connected(socket).catch((e) => assert.fail(`${how}: ${e.message}`));
      // The socket acts as the token's user: it may join the user's
      // conversation, and its messages carry the user's id.
      const joined = await ack(socket, "conversation:join", { conversationId: conv.id });
      assert.equal(joined.ok, true, `${how}: ${JSON.stringify(joined)}`);
      const sent = await ack(socket, "send_message", { conversationId: conv.id, text: how, clientId: api.randomId() });
      assert.equal(sent.message.senderId, user.id, how);
      socket.disconnect();
    }
  }));

test("refused: bad, wrongly signed, expired, refresh or missing token → CONNECT_ERROR with its code", T, () =>
  withServer(async (server) => {
    const someone = api.randomId("x");
    const cases = [
      ["garbage token", { auth: { token: "not.a.jwt" } }, "unauthorized"],
      ["another secret", { auth: { token: api.mintToken({ sub: someone, secret: "some-other-service-secret-0123456789abcdef" }) } }, "unauthorized"],
      ["refresh secret", { auth: { token: api.mintToken({ sub: someone, secret: REFRESH_SECRET }) } }, "unauthorized"],
      ["tampered payload", { auth: { token: tamper(api.mintToken({ sub: someone })) } }, "unauthorized"],
      ["expired", { auth: { token: api.mintToken({ sub: someone, ttl: -60 }) } }, "token_expired"],
      ["expired, in the query", { query: { token: api.mintToken({ sub: someone, ttl: -60 }) } }, "token_expired"],
      ["no token", {}, "unauthorized"],
      ["empty auth token", { auth: { token: "" } }, "unauthorized"],
      ["no token, websocket", { transports: ["websocket"] }, "unauthorized"],
    ];
    for (const nsp of ["/", "/chat"]) {
      for (const [name, opts, code] of cases) {
        const socket = makeSocket(server, nsp, opts);
        const err = await connectError(socket).catch((e) => assert.fail(`${nsp} ${name}: ${e.message}`));
        assert.equal(typeof err.message, "string", `${nsp} ${name}: message`);
        assert.ok(err.message.length > 0, `${nsp} ${name}: message`);
        assert.equal(err.data?.code, code, `${nsp} ${name}: ${JSON.stringify(err.data)}`);
        assert.equal(socket.connected, false);
        socket.disconnect();
      }
    }
    // The user of the refused tokens was never created.
    const res = await api.createConversation(server.url, await api.externalUser(server.url, "Cy"), [someone]).catch((e) => e);
    assert.match(String(res.message ?? res), /404/);
  }));

function tamper(token) {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url").toString());
  claims.sub = "someone-else";
  return [h, Buffer.from(JSON.stringify(claims)).toString("base64url"), s].join(".");
}

test("a token from another service with a new sub is accepted and creates the user", T, () =>
  withServer(async (server) => {
    const sub = api.randomId("svc");
    const token = api.mintToken({ sub, name: "Dana From Elsewhere" });
    // First contact is the socket, not HTTP.
    const socket = makeSocket(server, "/chat", { auth: { token } });
    await connected(socket);
    // The new user can now be added to a conversation by id...
    const ann = await api.externalUser(server.url, "Ann");
    const conv = await api.createConversation(server.url, ann, [sub]);
    assert.ok(conv.memberIds.includes(sub));
    // ...and the socket acts as it.
    const joined = await ack(socket, "conversation:join", { conversationId: conv.id });
    assert.equal(joined.ok, true, JSON.stringify(joined));
    // The record carries the name from the token.
    const me = api.expectStatus(await api.me(server.url, token), 200);
    assert.equal(me.id, sub);
    assert.equal(me.name, "Dana From Elsewhere");
    assert.equal(typeof me.username, "string");
  }));

test("per-user connection limit: namespaces share a connection, the extra one is refused, closing frees a slot", T, () =>
  withServer({ env: { HUDDLE__LIMITS__MAX_CONNECTIONS_PER_USER: "2" } }, async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const auth = { token: ann.token };

    // Connection 1: two namespaces multiplexed on one Engine.IO session.
    const m1 = makeManager(server);
    const root1 = m1.socket("/", { auth });
    const chat1 = m1.socket("/chat", { auth });
    await connected(root1);
    await connected(chat1);
    assert.equal(m1.engine.id, root1.io.engine.id);

    // Connection 2.
    const second = makeSocket(server, "/chat", { auth });
    await connected(second);
    assert.notEqual(second.io.engine.id, m1.engine.id);

    // Connection 3 is one too many, on either namespace and transport.
    for (const [nsp, transports] of [["/chat", undefined], ["/", ["websocket"]]]) {
      const third = makeSocket(server, nsp, { auth, ...(transports ? { transports } : {}) });
      const err = await connectError(third);
      assert.equal(err.data?.code, "too_many_connections", JSON.stringify(err.data));
      third.disconnect();
    }

    // The limit is per user: someone else still connects.
    const bob = await api.externalUser(server.url, "Bob");
    await connectAs(server, bob);

    // The existing connections still work.
    assert.equal(root1.connected && chat1.connected && second.connected, true);
    const conv = await api.createConversation(server.url, ann, [bob]);
    assert.equal((await ack(chat1, "conversation:join", { conversationId: conv.id })).ok, true);

    // Closing connection 2 frees its slot (the close is asynchronous: allow
    // the server a moment to see it).
    second.disconnect();
    const deadline = Date.now() + WAIT_MS;
    let fourth;
    for (;;) {
      fourth = makeSocket(server, "/chat", { auth });
      try {
        await connected(fourth);
        break;
      } catch (e) {
        assert.equal(e.cause?.data?.code, "too_many_connections", e.message);
        fourth.disconnect();
        if (Date.now() > deadline) assert.fail("the slot of a closed connection was never freed");
        await sleep(100);
      }
    }
    assert.equal(fourth.connected, true);
    // And the limit holds again.
    const fifth = makeSocket(server, "/", { auth });
    assert.equal((await connectError(fifth)).data?.code, "too_many_connections");
  }));

test("a node started with a soft open-files limit of 256 raises it and holds 400 connections", T, () =>
  withServer(
    { openFilesSoftLimit: 256, env: { HUDDLE__LIMITS__MAX_CONNECTIONS_PER_USER: "1000" } },
    async (server) => {
      const { bob, conv } = await pair(server);
      const sockets = [];
      // Fifty at a time: connecting, not the burst, is what is tested.
      for (let i = 0; i < 400; i += 50) {
        const batch = Array.from({ length: 50 }, () =>
          connectAs(server, bob, "/chat", { transports: ["websocket"] }),
        );
        sockets.push(...(await Promise.all(batch)));
      }
      assert.equal(sockets.filter((s) => s.connected).length, 400);
      // Every one of them is served: each joins the conversation, and a
      // message reaches all of them.
      await Promise.all(sockets.map((s) => ack(s, "conversation:join", { conversationId: conv.id })));
      const all = Promise.all(sockets.map((s) => once(s, "new_message")));
      const sent = await ack(sockets[0], "send_message", { conversationId: conv.id, text: "to 400", clientId: api.randomId("c") });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      const got = await all;
      assert.ok(got.every(([m]) => m.id === sent.message.id));

      assert.match(server.log(), /open files: soft limit raised from 256 to \d+/);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const gauge = (name) => Number(metrics.match(new RegExp(`^${name} (\\d+)$`, "m"))?.[1]);
      assert.ok(gauge("process_max_fds") > 256, `process_max_fds ${gauge("process_max_fds")}`);
      assert.ok(gauge("process_open_fds") >= 400, `process_open_fds ${gauge("process_open_fds")}`);
      // The allocator's own figures: 400 connections hold at least 400 KB.
      assert.ok(gauge("huddle_heap_allocated_bytes") > 400_000, `heap ${gauge("huddle_heap_allocated_bytes")}`);
      assert.ok(gauge("huddle_heap_resident_bytes") >= gauge("huddle_heap_allocated_bytes"));
    },
  ));

test("a node holding limits.max_connections refuses new ones with 503 on every transport, and takes them again once one closes", T, () =>
  withServer({ env: { HUDDLE__LIMITS__MAX_CONNECTIONS: "3" } }, async (server) => {
    const { ann, bob, conv } = await pair(server);
    const held = [
      await connectAs(server, ann),
      await connectAs(server, bob, "/chat", { transports: ["websocket"] }),
      await connectAs(server, bob),
    ];

    // A fourth Engine.IO handshake, by hand: 503 with a JSON reason.
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { code: 4, message: "Too many connections on this node" });
    // The official client, either transport: connect_error, and no session.
    for (const transports of [undefined, ["websocket"]]) {
      const extra = makeSocket(server, "/chat", { auth: { token: ann.token }, ...(transports ? { transports } : {}) });
      await connectError(extra);
      extra.disconnect();
    }
    // Those connected still chat.
    assert.equal((await ack(held[0], "conversation:join", { conversationId: conv.id })).ok, true);
    assert.equal((await ack(held[0], "send_message", { conversationId: conv.id, text: "still here", clientId: api.randomId("c") })).ok, true);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const refused = Number(metrics.match(/^huddle_connections_refused_total (\d+)$/m)?.[1]);
    assert.ok(refused >= 3, `huddle_connections_refused_total ${refused}`);
    assert.match(server.log(), /new connection refused: this node holds 3 of at most 3/);

    // One closes: a new one gets its place (the close is asynchronous).
    held.pop().disconnect();
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const next = makeSocket(server, "/chat", { auth: { token: ann.token }, transports: ["websocket"] });
      try {
        await connected(next);
        break;
      } catch (e) {
        next.disconnect();
        if (Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }));

test("accounts: register, login, refresh rotation over HTTP, then connect with the access token", T, () =>
  withServer(async (server) => {
    const email = `${api.randomId("erin")}@Example.Test`;
    const password = "s3cret-enough";
    const reg = await api.register(server.url, { email, password, name: "Erin", username: "erin_x" });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const { user } = reg.body;
    assert.equal(typeof user.id, "string");
    assert.equal(user.name, "Erin");
    assert.equal(user.username, "erin_x");
    assert.equal(user.email.toLowerCase(), email.toLowerCase());
    assert.equal(user.password, undefined);
    assert.equal(user.passwordHash, undefined);
    assert.equal(typeof reg.body.accessToken, "string");
    assert.equal(typeof reg.body.refreshToken, "string");

    // Same email in other case → 409; short password → 400; both in the contract's error shape.
    const dup = await api.register(server.url, { email: email.toUpperCase(), password, name: "Other" });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, "conflict");
    const short = await api.register(server.url, { email: `${api.randomId()}@example.test`, password: "1234567", name: "S" });
    assert.equal(short.status, 400);
    assert.equal(short.body.error.code, "bad_request");

    // Login, email case-insensitive; a wrong password is refused.
    const bad = await api.login(server.url, { email, password: "wrong password" });
    assert.equal(bad.status, 401);
    const li = await api.login(server.url, { email: email.toLowerCase(), password });
    assert.equal(li.status, 200, JSON.stringify(li.body));
    assert.equal(li.body.user.id, user.id);

    // Refresh rotates: a new pair, and the old refresh token stops working.
    const r1 = await api.refresh(server.url, li.body.refreshToken);
    assert.equal(r1.status, 200, JSON.stringify(r1.body));
    assert.equal(r1.body.user.id, user.id);
    assert.notEqual(r1.body.refreshToken, li.body.refreshToken);
    const again = await api.refresh(server.url, li.body.refreshToken);
    assert.equal(again.status, 401);
    assert.ok(["unauthorized", "token_expired"].includes(again.body.error.code));
    const r2 = await api.refresh(server.url, r1.body.refreshToken);
    assert.equal(r2.status, 200);
    // An access token is not a refresh token.
    assert.equal((await api.refresh(server.url, r2.body.accessToken)).status, 401);

    // Every access token issued works for HTTP and for sockets.
    for (const token of [reg.body.accessToken, li.body.accessToken, r2.body.accessToken]) {
      assert.equal(api.expectStatus(await api.me(server.url, token), 200).id, user.id);
      const socket = makeSocket(server, "/chat", { auth: { token } });
      await connected(socket);
      socket.disconnect();
    }

    // And a registered user chats: Erin and a second account.
    const fay = await api.registeredUser(server.url, "Fay");
    const erin = { id: user.id, token: r2.body.accessToken };
    const conv = await api.createConversation(server.url, erin, [fay]);
    const fs = await connectAs(server, fay);
    await ack(fs, "conversation:join", { conversationId: conv.id });
    const es = await connectAs(server, erin, "/chat", { transports: ["websocket"] });
    await ack(es, "conversation:join", { conversationId: conv.id });
    const rec = new Recorder(fs, ["new_message"]);
    await ack(es, "send_message", { conversationId: conv.id, text: "hi Fay", clientId: "e1" });
    await rec.count("new_message", 1);
    assert.equal(rec.payloads("new_message")[0].senderId, user.id);
  }));

test("HTTP with a bad or expired bearer token answers 401 in the contract's shape", T, () =>
  withServer(async (server) => {
    const none = await api.request(server.url, "GET", "/api/v1/auth/me");
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, "unauthorized");
    assert.equal(typeof none.body.error.message, "string");
    const expired = await api.me(server.url, api.mintToken({ sub: api.randomId(), ttl: -10 }));
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error.code, "token_expired");
    const forged = await api.me(server.url, api.mintToken({ secret: "x".repeat(40) }));
    assert.equal(forged.status, 401);
    assert.equal(forged.body.error.code, "unauthorized");
  }));

test("heartbeats: with a short pingInterval the connection stays up on every transport", T, () =>
  withServer(
    { env: { HUDDLE__ENGINE__PING_INTERVAL_MS: "150", HUDDLE__ENGINE__PING_TIMEOUT_MS: "300" } },
    async (server) => {
      const { ann, bob, conv } = await pair(server);
      const sockets = [
        makeSocket(server, "/chat", { auth: { token: ann.token } }),
        makeSocket(server, "/chat", { auth: { token: ann.token }, transports: ["websocket"] }),
        makeSocket(server, "/chat", { auth: { token: bob.token }, transports: ["polling"] }),
      ];
      const recs = sockets.map((s) => new Recorder(s, ["disconnect"]));
      let pings = 0;
      for (const s of sockets) {
        s.io.on("open", () => s.io.engine.on("ping", () => pings++));
        await connected(s);
      }
      // The handshake carried the configured interval, and pings flow.
      await sleep(1_500);
      assert.ok(pings >= 3 * 5, `only ${pings} pings in 1.5 s at a 150 ms interval`);
      for (const [i, s] of sockets.entries()) {
        assert.equal(recs[i].of("disconnect").length, 0, `socket ${i} was disconnected: ${JSON.stringify(recs[i].events)}`);
        assert.equal(s.connected, true);
        assert.equal((await ack(s, "conversation:join", { conversationId: conv.id })).ok, true);
      }
      assert.equal(sockets[0].io.engine.transport.name, "websocket", "upgraded despite pings in flight");
    },
  ));

test("a packet over maxPayload closes that connection only; the server keeps serving", T, () =>
  withServer({ env: { HUDDLE__ENGINE__MAX_PAYLOAD: "20000", HUDDLE__UPLOADS__MAX_CHUNK_SIZE: "8192", HUDDLE__UPLOADS__DEFAULT_CHUNK_SIZE: "8192" } }, async (server) => {
    const { ann, bob, conv } = await pair(server);
    const b = await connectAs(server, bob);
    await ack(b, "conversation:join", { conversationId: conv.id });
    const recB = new Recorder(b, ["new_message", "disconnect"]);
    for (const transports of [["websocket"], ["polling"]]) {
      const a = await connectAs(server, ann, "/chat", { transports });
      const gone = once(a, "disconnect");
      a.emit("send_message", { conversationId: conv.id, text: "z".repeat(30_000), clientId: api.randomId() });
      const [reason] = await gone;
      assert.equal(typeof reason, "string", `${transports}: disconnected (${reason})`);
      // Nothing of it was stored or broadcast; a new connection works.
      const again = await connectAs(server, ann, "/chat", { transports });
      const ok = await ack(again, "send_message", { conversationId: conv.id, text: "small", clientId: api.randomId() });
      assert.equal(ok.ok, true);
      again.disconnect();
    }
    assert.equal(api.expectStatus(await api.request(server.url, "GET", "/health"), 200).status, "ok");
    await recB.count("new_message", 2);
    assert.deepEqual(recB.payloads("new_message").map((m) => m.seq), [1, 2]);
    assert.equal(recB.of("disconnect").length, 0, "the other user's connection was not affected");
  }));

test("socket events over the per-connection rate limit get rate_limited, and the connection stays up", T, () =>
  withServer({ env: { HUDDLE__RATE_LIMITS__SOCKET_EVENTS_PER_SECOND: "5" } }, async (server) => {
    const { ann, conv } = await pair(server);
    const a = await connectAs(server, ann, "/chat", { transports: ["websocket"] });
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => ack(a, "conversation:join", { conversationId: conv.id })),
    );
    const ok = answers.filter((r) => r.ok === true).length;
    const limited = answers.filter((r) => r.ok === false && r.error?.code === "rate_limited").length;
    assert.equal(ok + limited, 12, JSON.stringify(answers));
    assert.ok(ok >= 1 && ok <= 5, `${ok} of 12 events allowed in one second at 5/s`);
    assert.ok(limited >= 7);
    // Without an ack, the refusal is an `error` event.
    const errors = new Recorder(a, ["error"]);
    for (let i = 0; i < 8; i++) a.emit("typing:stop", { conversationId: conv.id });
    await errors.until((r) => r.of("error").some((e) => e.args[0]?.code === "rate_limited"), WAIT_MS, "rate_limited error event");
    await sleep(1_100);
    assert.equal(a.connected, true);
    assert.equal((await ack(a, "conversation:join", { conversationId: conv.id })).ok, true);
  }));

test("at the default limits a burst of 100 events in one go (the per-second limit) is all accepted, the 101st refused", T, () =>
  withServer(async (server) => {
    const { ann, conv } = await pair(server);
    for (const transports of [["websocket"], ["polling"]]) {
      const a = await connectAs(server, ann, "/chat", { transports });
      // Emitted at once: on polling they travel in a few POSTs of many
      // packets each, on the WebSocket back to back; all of them wait in the
      // connection's pipeline together.
      const answers = await Promise.all(
        Array.from({ length: 101 }, () => ack(a, "conversation:join", { conversationId: conv.id })),
      );
      const codes = answers.map((r) => (r.ok ? "ok" : r.error?.code));
      assert.deepEqual(codes.slice(0, 100), Array(100).fill("ok"), `${transports}: ${JSON.stringify(answers.find((r) => !r.ok))}`);
      assert.equal(codes[100], "rate_limited", transports.join());
      a.disconnect();
    }
  }));

test("register and login are rate limited per IP with 429 and Retry-After", T, () =>
  withServer({ env: { HUDDLE__RATE_LIMITS__AUTH_IP_PER_MINUTE: "3" } }, async (server) => {
    const statuses = [];
    let last;
    for (let i = 0; i < 4; i++) {
      last = await api.login(server.url, { email: "nobody@example.test", password: "whatever123" });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 429]);
    assert.equal(last.body.error.code, "rate_limited");
    const retry = Number(last.headers.get("retry-after"));
    // The sliding-window counter may advise up to two windows.
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 120, `Retry-After: ${last.headers.get("retry-after")}`);
    const reg = await api.register(server.url, { email: "new@example.test", password: "long enough", name: "N" });
    assert.equal(reg.status, 429);
    // Other endpoints are not affected.
    const u = await api.externalUser(server.url, "Ann");
    assert.equal(u.id.length > 0, true);
  }));
