// Two nodes behind one Redis (issue 5; PROTOCOL.md sections 1, 2, 4, 5, 6):
// with the official socket.io-client, no user can tell which node they are
// on. Chat both ways, task events from an API call on the other node,
// presence across nodes and a killed node's users going offline, the
// connection limit counted across nodes, member removal acting on every
// node, an upload started on one node and finished on the other, and
// connection state recovery on the other node.

import assert from "node:assert/strict";
import { test } from "node:test";
import * as api from "./helpers/api.mjs";
import { ack, connectAs, connectError, makeSocket, noEvent, once, Recorder, sleep } from "./helpers/client.mjs";
import { Balancer, withCluster } from "./helpers/cluster.mjs";

const T = { timeout: 90_000 };

async function call(node, user, method, path, body, status) {
  const res = await api.request(node.url, method, `/api/v1${path}`, { token: user.token, body });
  return api.expectStatus(res, status, `${method} ${path}`);
}

const send = (socket, conv, text) =>
  ack(socket, "send_message", { conversationId: conv.id, text, clientId: api.randomId("c") }).then((r) => {
    assert.equal(r.ok, true, JSON.stringify(r));
    return r.message;
  });

async function joinConversation(socket, conv) {
  const res = await ack(socket, "conversation:join", { conversationId: conv.id });
  assert.equal(res.ok, true, JSON.stringify(res));
}

// `user`'s /chat socket through the balancer `lb`, reconnecting 800 ms after
// a drop (to wherever `lb` points then), over WebSocket only.
const viaBalancer = (lb, cleanups, user) =>
  connectAs({ url: lb.url, cleanups }, user, "/chat", {
    transports: ["websocket"],
    reconnection: true,
    reconnectionDelay: 800,
    reconnectionDelayMax: 800,
    randomizationFactor: 0,
  });

// Ann on node 1 and Bob on node 2 (both returned) in one conversation, both joined, each
// socket's new_message recorded.
async function conversationAcross(n1, n2) {
  const ann = await api.externalUser(n1.url, "Ann");
  const bob = await api.externalUser(n2.url, "Bob");
  const conv = await api.createConversation(n1.url, ann, [bob]);
  const a = await connectAs(n1, ann);
  const b = await connectAs(n2, bob);
  await joinConversation(a, conv);
  await joinConversation(b, conv);
  return { ann, bob, conv, a, b, ra: new Recorder(a, ["new_message"]), rb: new Recorder(b, ["new_message"]) };
}

test("a chat message from a client on node 1 reaches a client on node 2, and back", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const { conv, a, b, ra, rb } = await conversationAcross(n1, n2);

    const m1 = await send(a, conv, "hello from node 1");
    const m2 = await send(b, conv, "hello from node 2");
    await ra.count("new_message", 2);
    await rb.count("new_message", 2);
    // Each socket got each message once, in the same order, seq gap-free.
    for (const rec of [ra, rb]) {
      assert.deepEqual(
        rec.payloads("new_message").map((m) => [m.seq, m.text]),
        [
          [m1.seq, "hello from node 1"],
          [m2.seq, "hello from node 2"],
        ],
      );
    }
    assert.equal(m2.seq, m1.seq + 1);
    await sleep(300);
    assert.equal(ra.of("new_message").length, 2, "no duplicate on node 1");
    assert.equal(rb.of("new_message").length, 2, "no duplicate on node 2");
  }),
);

test("the last seq the other node reports counts a message as soon as its sender is answered", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    // A two-person conversation without a title is the pair's direct one:
    // creating it again returns it, with its last seq.
    const { ann, bob, conv, a, b } = await conversationAcross(n1, n2);
    // One message at a time: each is stored alone, and its sender is
    // answered before the conversation record's lastSeq catches up.
    for (let n = 1; n <= 3; n++) {
      const m = await send(a, conv, `one at a time ${n}`);
      assert.equal(m.seq, n);
      const joined = await ack(b, "conversation:join", { conversationId: conv.id });
      assert.deepEqual([joined.ok, joined.lastSeq], [true, n], "join ack on node 2");
      const listed = await call(n2, bob, "GET", "/conversations", undefined, 200);
      assert.equal(listed.items.find((c) => c.id === conv.id).lastSeq, n, "list on node 2");
      const again = await api.request(n2.url, "POST", "/api/v1/conversations", {
        token: bob.token,
        body: { memberIds: [ann.id] },
      });
      assert.deepEqual([again.status, again.body.id, again.body.lastSeq], [200, conv.id, n], "the pair's conversation again");
    }
  }));

test("members on both nodes sending at once into one conversation: every seq once, each sender's in order, retries answered", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const { conv, a, b, ra, rb } = await conversationAcross(n1, n2);
    const EACH = 40;
    // Every send goes out at once (the server pipelines them); every
    // eighth repeats the client id of the one before it, as a retry does.
    const burst = (socket, who) => {
      const ids = [];
      for (let i = 0; i < EACH; i++) ids.push(i % 8 === 7 ? ids[i - 1] : `${who}-${i}-${api.randomId("c")}`);
      return Promise.all(
        ids.map((clientId, i) => ack(socket, "send_message", { conversationId: conv.id, text: `${who} ${i}`, clientId })),
      ).then((replies) => ({ ids, replies }));
    };
    const results = await Promise.all([burst(a, "ann"), burst(b, "bob")]);
    const fresh = EACH - EACH / 8;
    const total = 2 * fresh;
    for (const { ids, replies } of results) {
      for (const r of replies) assert.equal(r.ok, true, JSON.stringify(r));
      const seqs = [];
      for (let i = 0; i < EACH; i++) {
        if (ids[i] === ids[i - 1]) {
          // The retry is answered with the message its first send stored.
          assert.deepEqual(replies[i].message, replies[i - 1].message);
        } else {
          seqs.push(replies[i].message.seq);
        }
      }
      assert.equal(seqs.length, fresh);
      // One client's messages take seqs in the order it sent them.
      assert.deepEqual([...seqs].sort((x, y) => x - y), seqs);
    }
    await ra.count("new_message", total);
    await rb.count("new_message", total);
    await sleep(300);
    for (const rec of [ra, rb]) {
      const seqs = rec.payloads("new_message").map((m) => m.seq);
      assert.equal(seqs.length, total, "each message once");
      assert.deepEqual([...seqs].sort((x, y) => x - y), Array.from({ length: total }, (_, i) => i + 1));
    }
    const joined = await ack(b, "conversation:join", { conversationId: conv.id });
    assert.equal(joined.lastSeq, total);
  }));

test("a task created through the API of node 2 reaches a project room on node 1", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const owner = await api.externalUser(n1.url, "Olga");
    const ws = (await call(n2, owner, "POST", "/workspaces", { name: "Acme" }, 201)).id;
    const project = (await call(n2, owner, "POST", `/workspaces/${ws}/projects`, { name: "Launch" }, 201)).id;
    const s = await connectAs(n1, owner, "/");
    const rec = new Recorder(s, ["task:created", "task:moved"]);
    const joined = await ack(s, "room:join", { workspaceId: ws, projectId: project });
    assert.equal(joined.ok, true, JSON.stringify(joined));

    const task = await call(n2, owner, "POST", `/projects/${project}/tasks`, { title: "Ship it" }, 201);
    await rec.count("task:created", 1);
    assert.equal(rec.payloads("task:created")[0].task.id, task.id);
    await call(n2, owner, "PATCH", `/tasks/${task.id}`, { status: "done" }, 200);
    await rec.count("task:moved", 1);
    assert.equal(rec.payloads("task:moved")[0].toStatus, "done");
  }),
);

test("presence of a user on node 2 is seen on node 1, and they go offline when node 2 is killed", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const owner = await api.externalUser(n1.url, "Olga");
    const bob = await api.externalUser(n1.url, "Bob");
    const ws = (await call(n1, owner, "POST", "/workspaces", { name: "Acme" }, 201)).id;
    await call(n1, owner, "POST", `/workspaces/${ws}/members`, { userId: bob.id, role: "member" }, 201);
    const watcher = await connectAs(n1, owner, "/");
    const rec = new Recorder(watcher, ["presence:user_online", "presence:user_offline"]);
    assert.equal((await ack(watcher, "room:join", { workspaceId: ws })).ok, true);

    await connectAs(n2, bob, "/");
    await rec.until((r) => r.payloads("presence:user_online").some((p) => p.userId === bob.id));
    // A second device on node 1 does not make Bob "online" again.
    const bob2 = await connectAs(n1, bob, "/chat");
    await sleep(500);
    assert.equal(rec.payloads("presence:user_online").filter((p) => p.userId === bob.id).length, 1);
    bob2.disconnect();

    // Node 2 dies without closing anything: Bob's last connection is gone
    // once node 2 stops refreshing its liveness (node_ttl 1.5 s + beat 0.3 s
    // + grace 0.3 s in these tests).
    const killedAt = Date.now();
    n2.child.kill("SIGKILL");
    await rec.until((r) => r.payloads("presence:user_offline").some((p) => p.userId === bob.id), 10_000);
    const took = Date.now() - killedAt;
    assert.ok(took < 10_000, `offline after ${took} ms`);
    assert.equal(rec.payloads("presence:user_offline").filter((p) => p.userId === bob.id).length, 1);
  }),
);

test("the connection limit counts connections on every node", T, () =>
  withCluster({ env: { HUDDLE__LIMITS__MAX_CONNECTIONS_PER_USER: "2" } }, async ({ nodes: [n1, n2] }) => {
    const ann = await api.externalUser(n1.url, "Ann");
    await connectAs(n1, ann, "/chat");
    const second = await connectAs(n2, ann, "/chat");
    for (const node of [n1, n2]) {
      const s = makeSocket(node, "/chat", { auth: { token: ann.token } });
      const err = await connectError(s);
      assert.equal(err.data?.code, "too_many_connections", JSON.stringify(err));
    }
    // Closing one on node 2 frees a slot for node 1.
    second.disconnect();
    second.io.engine.close();
    await sleep(300);
    await connectAs(n1, ann, "/chat");
  }),
);

test("a member removed through node 2 leaves the rooms of their sockets on node 1", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const owner = await api.externalUser(n1.url, "Olga");
    const bob = await api.externalUser(n1.url, "Bob");
    const ws = (await call(n1, owner, "POST", "/workspaces", { name: "Acme" }, 201)).id;
    const project = (await call(n1, owner, "POST", `/workspaces/${ws}/projects`, { name: "P" }, 201)).id;
    await call(n1, owner, "POST", `/workspaces/${ws}/members`, { userId: bob.id, role: "member" }, 201);
    const b = await connectAs(n1, bob, "/");
    assert.equal((await ack(b, "room:join", { workspaceId: ws, projectId: project })).ok, true);
    const rec = new Recorder(b, ["task:created"]);
    await call(n2, owner, "POST", `/projects/${project}/tasks`, { title: "seen" }, 201);
    await rec.count("task:created", 1);

    await call(n2, owner, "DELETE", `/workspaces/${ws}/members/${bob.id}`, undefined, 200);
    await sleep(500);
    await call(n2, owner, "POST", `/projects/${project}/tasks`, { title: "not seen" }, 201);
    await noEvent(b, "task:created", 800);
    // Node 1's cached membership was dropped too: Bob cannot join again.
    const again = await ack(b, "room:join", { projectId: project });
    assert.equal(again.ok, false, JSON.stringify(again));
    assert.equal(again.error.code, "forbidden");
  }),
);

test("an upload started on node 1 resumes and completes on node 2; a device on node 1 sees its progress and completion", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const ann = await api.externalUser(n1.url, "Ann");
    const chunk = 64 * 1024;
    const data = Buffer.alloc(chunk * 3 + 100);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) % 251;
    const params = { uploadId: api.randomId("up"), fileName: "data.txt", fileSize: data.length, mimeType: "application/zip", chunkSize: chunk };
    // A zip must start with its magic bytes.
    data.write("PK\u0003\u0004", 0, "latin1");
    const chunkOf = (i) => data.subarray(i * chunk, Math.min(data.length, (i + 1) * chunk));

    // Another device of Ann's stays on node 1 throughout.
    const watcher = await connectAs(n1, ann, "/file-upload", { auth: { deviceId: "tablet" } });
    const watched = new Recorder(watcher, ["upload_progress", "upload_completed"]);
    const u1 = await connectAs(n1, ann, "/file-upload");
    const init1 = await ack(u1, "initiate_upload", params);
    assert.equal(init1.ok, true, JSON.stringify(init1));
    for (const i of [0, 1]) {
      const r = await ack(u1, "upload_chunk", { sessionId: init1.sessionId, uploadId: params.uploadId, chunkIndex: i, chunkData: chunkOf(i) });
      assert.equal(r.ok, true, JSON.stringify(r));
    }
    u1.disconnect();

    const u2 = await connectAs(n2, ann, "/file-upload");
    const init2 = await ack(u2, "initiate_upload", params);
    assert.equal(init2.ok, true, JSON.stringify(init2));
    assert.equal(init2.sessionId, init1.sessionId, "same session on the other node");
    assert.deepEqual(init2.receivedChunks, [0, 1]);
    for (const i of [2, 3]) {
      const r = await ack(u2, "upload_chunk", { sessionId: init2.sessionId, uploadId: params.uploadId, chunkIndex: i, chunkData: chunkOf(i) });
      assert.equal(r.ok, true, JSON.stringify(r));
    }
    const done = await ack(u2, "complete_upload", { sessionId: init2.sessionId, uploadId: params.uploadId });
    assert.equal(done.ok, true, JSON.stringify(done));
    assert.equal(done.file.size, data.length);
    const res = await fetch(`${n1.url}${done.file.downloadUrl}`, { headers: { authorization: `Bearer ${ann.token}` } });
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(data), "node 1 serves the bytes assembled on node 2");

    // What node 2 did reached the device on node 1.
    await watched.count("upload_completed", 1);
    const completed = watched.payloads("upload_completed")[0];
    assert.equal(completed.uploadId, params.uploadId);
    assert.equal(completed.file.id, done.file.id);
    const progress = watched.payloads("upload_progress").filter((p) => p.uploadId === params.uploadId);
    assert.equal(progress.at(-1)?.progress, 100, JSON.stringify(progress));
    const values = progress.map((p) => p.progress);
    assert.deepEqual(values, [...values].sort((x, y) => x - y), "progress only rises");
  }),
);

test("a user's expired uploads stop counting at once, however many other users' expired uploads wait for the sweeper", T, () =>
  // Sessions expire six seconds after they start: longer than making all of
  // them takes, so none has expired when Ann's sixth is refused (else that
  // refusal's sweep would already clear some); the sweeper runs once an hour.
  withCluster(
    { env: { HUDDLE__UPLOADS__SESSION_TTL_SECS: "6", HUDDLE__UPLOADS__SWEEP_INTERVAL_SECS: "3600" } },
    async ({ nodes: [n1, n2] }) => {
      const params = (uploadId) => ({ uploadId, fileName: `${uploadId}.txt`, fileSize: 1000, mimeType: "text/plain" });
      const fill = async (node, user) => {
        const s = await connectAs(node, user, "/file-upload");
        for (let i = 0; i < 5; i++) {
          const res = await ack(s, "initiate_upload", params(api.randomId("up")));
          assert.equal(res?.ok, true, JSON.stringify(res));
        }
        return s;
      };
      // 105 sessions of 21 other users, all expiring before Ann's: more than
      // the sweeper takes in one round (100).
      const started = Date.now();
      for (let u = 0; u < 21; u++) {
        const other = await api.externalUser(n1.url, `Other${u}`);
        (await fill(u % 2 ? n2 : n1, other)).close();
      }
      const ann = await api.externalUser(n1.url, "Ann");
      const s = await fill(n2, ann);
      const sixth = await ack(s, "initiate_upload", params(api.randomId("sixth")));
      assert.equal(sixth?.error?.code, "too_many_uploads", JSON.stringify(sixth));
      assert.ok(Date.now() - started < 6_000, "no session had expired when the sixth was refused");
      await sleep(6_500);
      // Ann's five have expired (after the 105 others): a new upload starts,
      // on the other node.
      const again = await connectAs(n1, ann, "/file-upload");
      const res = await ack(again, "initiate_upload", params(api.randomId("after")));
      assert.equal(res?.ok, true, `after expiry: ${JSON.stringify(res)}`);
    },
  ));


test("a client that drops from node 1 and reconnects to node 2 recovers what it missed", T, () =>
  withCluster(async ({ nodes: [n1, n2], cleanups }) => {
    const lb = await new Balancer(n1).start();
    cleanups.push(() => lb.close());
    const ann = await api.externalUser(n1.url, "Ann");
    const bob = await api.externalUser(n1.url, "Bob");
    const conv = await api.createConversation(n1.url, ann, [bob]);
    const a = await connectAs(n1, ann);
    await joinConversation(a, conv);
    const b = await viaBalancer(lb, cleanups, bob);
    await joinConversation(b, conv);
    const rec = new Recorder(b, ["new_message"]);
    await send(a, conv, "before");
    await rec.count("new_message", 1);

    lb.switchTo(n2);
    await once(b, "disconnect");
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push(await send(a, conv, `missed ${i}`));
    await once(b, "connect", 10_000);
    assert.equal(b.recovered, true, "recovered on node 2");
    await rec.count("new_message", 4);
    assert.deepEqual(
      rec.payloads("new_message").map((m) => m.text),
      ["before", "missed 0", "missed 1", "missed 2"],
    );
    // And it is live on node 2 now.
    await send(a, conv, "after");
    await rec.count("new_message", 5);
  }),
);

test("a client in several rooms, one never used, recovers on the other node what every room got, in order, once each", T, () =>
  withCluster(async ({ nodes: [n1, n2], cleanups }) => {
    const lb = await new Balancer(n1).start();
    cleanups.push(() => lb.close());
    const ann = await api.externalUser(n1.url, "Ann");
    const bob = await api.externalUser(n1.url, "Bob");
    const convs = [];
    for (const title of ["one", "two", "quiet"]) convs.push(await api.createConversation(n1.url, ann, [bob], { title }));
    const [c1, c2] = convs;
    const a = await connectAs(n1, ann);
    for (const c of [c1, c2]) await joinConversation(a, c);
    const b = await viaBalancer(lb, cleanups, bob);
    // The third conversation never has a broadcast: its room has no log.
    for (const c of convs) await joinConversation(b, c);
    const rec = new Recorder(b, ["new_message"]);
    await send(a, c1, "before");
    await rec.count("new_message", 1);

    lb.switchTo(n2);
    await once(b, "disconnect");
    const sent = [];
    for (let i = 0; i < 6; i++) sent.push(await send(a, i % 2 ? c2 : c1, `missed ${i}`));
    await once(b, "connect", 10_000);
    assert.equal(b.recovered, true, "recovered on node 2");
    await rec.count("new_message", 7);
    await sleep(300);
    assert.deepEqual(
      rec.payloads("new_message").map((m) => m.text),
      ["before", ...sent.map((m) => m.text)],
      "each missed message once, in the order sent across both rooms",
    );
    // Live in every room on node 2, the quiet one included.
    await joinConversation(a, convs[2]);
    await send(a, convs[2], "after");
    await rec.count("new_message", 8);
  }),
);

test("every client of a node that drains (SIGTERM) recovers on the other node what it missed", T, () =>
  withCluster(async ({ nodes: [n1, n2], cleanups }) => {
    const lb = await new Balancer(n1).start();
    cleanups.push(() => lb.close());
    const ann = await api.externalUser(n2.url, "Ann");
    const users = [];
    for (let i = 0; i < 40; i++) users.push(await api.externalUser(n1.url, `U${i}`));
    const conv = await api.createConversation(n2.url, ann, users);
    const a = await connectAs(n2, ann);
    await joinConversation(a, conv);
    const clients = [];
    for (const u of users) {
      const c = await connectAs({ url: lb.url, cleanups }, u, "/chat", {
        transports: ["websocket"],
        reconnection: true,
        reconnectionDelay: 1500,
        reconnectionDelayMax: 1500,
        randomizationFactor: 0,
      });
      await joinConversation(c, conv);
      clients.push({ c, rec: new Recorder(c, ["new_message"]) });
    }
    await send(a, conv, "before");
    await Promise.all(clients.map(({ rec }) => rec.count("new_message", 1)));

    // The node drains: it closes every connection ("going away") and keeps
    // running until each one's recovery record is written, so the other
    // node can restore them.
    lb.switchTo(n2);
    const gone = clients.map(({ c }) => once(c, "disconnect", 10_000));
    const stopped = n1.stop();
    await Promise.all(gone);
    const missed = [await send(a, conv, "missed 0"), await send(a, conv, "missed 1")];
    await stopped;
    await Promise.all(clients.map(({ c }) => (c.connected ? null : once(c, "connect", 15_000))));
    for (const [i, { c, rec }] of clients.entries()) {
      assert.equal(c.recovered, true, `client ${i} recovered on node 2`);
      await rec.count("new_message", 3);
      assert.deepEqual(
        rec.payloads("new_message").map((m) => m.text),
        ["before", ...missed.map((m) => m.text)],
        `client ${i}`,
      );
    }
  }),
);

/** A counter of the node's GET /metrics (Prometheus text), 0 when absent. */
async function metric(node, name) {
  const res = await fetch(`${node.url}/metrics`);
  assert.equal(res.status, 200);
  const line = (await res.text()).split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

test("a node receives no traffic for rooms it has no members in", T, () =>
  withCluster(async ({ nodes: [n1, n2] }) => {
    const ann = await api.externalUser(n1.url, "Ann");
    const bob = await api.externalUser(n1.url, "Bob");
    const cat = await api.externalUser(n1.url, "Cat");
    const conv = await api.createConversation(n1.url, ann, [bob, cat]);
    const a = await connectAs(n1, ann);
    const b = await connectAs(n1, bob);
    await joinConversation(a, conv);
    await joinConversation(b, conv);
    const rb = new Recorder(b, ["new_message"]);
    const before = await metric(n2, "huddle_bridge_received_total");
    for (let i = 0; i < 20; i++) await send(a, conv, `local ${i}`);
    await rb.count("new_message", 20);
    await sleep(300);
    assert.equal(await metric(n2, "huddle_bridge_received_total"), before, "node 2 has no member: it hears nothing");
    assert.ok((await metric(n1, "huddle_bridge_published_total")) >= 20);

    // Once Cat joins on node 2, node 2 receives the room's traffic.
    const c = await connectAs(n2, cat);
    await joinConversation(c, conv);
    const rc = new Recorder(c, ["new_message"]);
    await send(a, conv, "now node 2 listens");
    await rc.count("new_message", 1);
    assert.ok((await metric(n2, "huddle_bridge_received_total")) > before);
  }),
);

test("the publish API of node 1 reaches rooms on both nodes", T, () =>
  withCluster({ env: { SERVICE_KEYS: "cluster-test-service-key" } }, async ({ nodes: [n1, n2] }) => {
    const ann = await api.externalUser(n1.url, "Ann");
    const bob = await api.externalUser(n1.url, "Bob");
    const a = await connectAs(n1, ann, "/");
    const b = await connectAs(n2, bob, "/");
    const ra = new Recorder(a, ["deploy:finished"]);
    const rb = new Recorder(b, ["deploy:finished"]);
    const res = await api.request(n1.url, "POST", "/api/v1/publish", {
      headers: { authorization: "Bearer cluster-test-service-key" },
      body: { rooms: [`user:${ann.id}`, `user:${bob.id}`], event: "deploy:finished", data: { build: 42 } },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    await ra.count("deploy:finished", 1);
    await rb.count("deploy:finished", 1);
    assert.deepEqual(rb.payloads("deploy:finished")[0], { build: 42 });
  }),
);
