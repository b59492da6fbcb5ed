// Namespace / (PROTOCOL.md section 4) with the official socket.io-client:
// every server event — who receives it, who does not (non-members, other
// projects), and that the sender's own second device sees its changes —
// room:join authorization, presence, viewing, typing with the auto-stop,
// permissions (viewers never write, a removed member stops hearing), and the
// HTTP side of section 7 that feeds them: notifications (assignment,
// comment, @mention in a comment and in chat) and search with a typo.

import assert from "node:assert/strict";
import { test } from "node:test";
import { withServer } from "./helpers/server.mjs";
import * as api from "./helpers/api.mjs";
import { ack, connectAs, noEvent, once, Recorder, sleep, WAIT_MS } from "./helpers/client.mjs";

const T = { timeout: 60_000 };
const QUIET_MS = 400;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const ROOT_EVENTS = [
  "task:created",
  "task:updated",
  "task:moved",
  "task:deleted",
  "comment:created",
  "comment:updated",
  "comment:deleted",
  "member:joined",
  "member:left",
  "member:role_changed",
  "presence:user_online",
  "presence:user_offline",
  "presence:users_viewing",
  "typing:user_typing",
  "typing:user_stopped",
  "notification",
];

/** An HTTP call as `user` that must answer `status`; resolves to the body. */
async function call(server, user, method, path, body, status) {
  const res = await api.request(server.url, method, `/api/v1${path}`, { token: user.token, body });
  return api.expectStatus(res, status, `${method} ${path}`);
}

async function workspace(server, owner, name = "Acme") {
  return (await call(server, owner, "POST", "/workspaces", { name }, 201)).id;
}

async function addMember(server, ws, by, user, role = "member") {
  return call(server, by, "POST", `/workspaces/${ws}/members`, { userId: user.id, role }, 201);
}

/** A workspace of a new user `ownerName` with new users `memberNames` as members. */
async function team(server, ownerName, memberNames) {
  const owner = await api.externalUser(server.url, ownerName);
  const ws = await workspace(server, owner);
  const members = [];
  for (const name of memberNames) {
    const user = await api.externalUser(server.url, name);
    await addMember(server, ws, owner, user);
    members.push(user);
  }
  return { owner, members, ws };
}

async function project(server, ws, by, name = "Launch") {
  return (await call(server, by, "POST", `/workspaces/${ws}/projects`, { name }, 201)).id;
}

async function createTask(server, projectId, by, body) {
  return call(server, by, "POST", `/projects/${projectId}/tasks`, body, 201);
}

/** A connected `/` socket of `user` recording every event of section 4. */
async function rootSocket(server, user, opts = {}) {
  const socket = await connectAs(server, user, "/", opts);
  return { socket, rec: new Recorder(socket, ROOT_EVENTS) };
}

async function joinRooms(socket, rooms) {
  const res = await ack(socket, "room:join", rooms);
  assert.equal(res.ok, true, `room:join ${JSON.stringify(rooms)}: ${JSON.stringify(res)}`);
  return res;
}

function assertFailed(res, code, what) {
  assert.equal(res?.ok, false, `${what}: ${JSON.stringify(res)}`);
  assert.equal(res.error?.code, code, `${what}: ${JSON.stringify(res)}`);
}

/** Waits QUIET_MS, then asserts that each recorder got `event` exactly `n` times. */
async function settledCount(recs, event, n) {
  await sleep(QUIET_MS);
  for (const [who, rec] of Object.entries(recs)) {
    assert.equal(rec.of(event).length, n, `${who}: ${n} × ${event}, got ${JSON.stringify(rec.payloads(event))}`);
  }
}

test("task and comment events reach their rooms once, the sender's second device included, and no one else", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const cy = await api.externalUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob);
    const p1 = await project(server, ws, ann, "One");
    const p2 = await project(server, ws, ann, "Two");
    const cyWs = await workspace(server, cy, "Elsewhere");
    const cyProject = await project(server, cyWs, cy);

    // Ann on two devices in project One; Bob in project Two only; Cy is no member.
    const a1 = await rootSocket(server, ann);
    const a2 = await rootSocket(server, ann);
    const b = await rootSocket(server, bob);
    const c = await rootSocket(server, cy);
    const joined = await joinRooms(a1.socket, { workspaceId: ws, projectId: p1 });
    assert.deepEqual([...joined.rooms].sort(), [`project:${p1}`, `workspace:${ws}`].sort());
    await joinRooms(a2.socket, { workspaceId: ws, projectId: p1 });
    await joinRooms(b.socket, { projectId: p2 });
    await joinRooms(c.socket, { workspaceId: cyWs, projectId: cyProject });
    // Cy cannot join Ann's rooms, by any of their ids.
    assertFailed(await ack(c.socket, "room:join", { workspaceId: ws }), "forbidden", "non-member workspace");
    assertFailed(await ack(c.socket, "room:join", { projectId: p1 }), "forbidden", "non-member project");

    // Ann creates a task through the API: both her devices hear it once.
    const task = await createTask(server, p1, ann, { title: "Ship it", tags: ["release"] });
    await Promise.all([a1.rec.count("task:created", 1), a2.rec.count("task:created", 1)]);
    const created = a1.rec.payloads("task:created")[0];
    assert.equal(created.workspaceId, ws);
    assert.equal(created.projectId, p1);
    assert.equal(created.actorId, ann.id);
    assert.equal(created.task.id, task.id);
    assert.equal(created.task.title, "Ship it");
    assert.equal(created.task.status, "todo");
    assert.deepEqual(a2.rec.payloads("task:created")[0], created);
    await settledCount({ bob: b.rec, cy: c.rec }, "task:created", 0);

    // Bob views the task's room; Ann's second device also joins it: still once each.
    await joinRooms(b.socket, { taskId: task.id });
    await joinRooms(a2.socket, { taskId: task.id });

    // A change of fields is an update; of status, a move; both, both.
    await call(server, bob, "PATCH", `/tasks/${task.id}`, { title: "Ship it now" }, 200);
    await Promise.all([a1.rec.count("task:updated", 1), a2.rec.count("task:updated", 1), b.rec.count("task:updated", 1)]);
    const updated = b.rec.payloads("task:updated")[0];
    assert.equal(updated.task.title, "Ship it now");
    assert.equal(updated.actorId, bob.id);
    assert.equal(updated.projectId, p1);

    await call(server, ann, "PATCH", `/tasks/${task.id}`, { status: "in_progress" }, 200);
    await Promise.all([a1.rec.count("task:moved", 1), b.rec.count("task:moved", 1)]);
    const moved = a1.rec.payloads("task:moved")[0];
    assert.equal(moved.fromStatus, "todo");
    assert.equal(moved.toStatus, "in_progress");
    assert.equal(moved.task.status, "in_progress");
    assert.equal(moved.actorId, ann.id);

    await call(server, ann, "PATCH", `/tasks/${task.id}`, { status: "done", priority: "high" }, 200);
    await Promise.all([a2.rec.count("task:moved", 2), a2.rec.count("task:updated", 2)]);
    await settledCount({ a1: a1.rec, a2: a2.rec, bob: b.rec }, "task:moved", 2);
    await settledCount({ a1: a1.rec, a2: a2.rec, bob: b.rec }, "task:updated", 2);
    await settledCount({ cy: c.rec }, "task:updated", 0);

    // A task in project Two reaches Bob, not Ann's project-One sockets.
    await createTask(server, p2, ann, { title: "Other" });
    await b.rec.count("task:created", 1);
    await settledCount({ a1: a1.rec, a2: a2.rec }, "task:created", 1);

    // Comments go to the task room only.
    const comment = await call(server, bob, "POST", `/tasks/${task.id}/comments`, { body: "looks good" }, 201);
    await Promise.all([b.rec.count("comment:created", 1), a2.rec.count("comment:created", 1)]);
    const cc = b.rec.payloads("comment:created")[0];
    assert.equal(cc.taskId, task.id);
    assert.equal(cc.workspaceId, ws);
    assert.equal(cc.projectId, p1);
    assert.equal(cc.actorId, bob.id);
    assert.equal(cc.comment.id, comment.id);
    assert.equal(cc.comment.body, "looks good");
    await call(server, bob, "PATCH", `/comments/${comment.id}`, { body: "looks great" }, 200);
    await Promise.all([b.rec.count("comment:updated", 1), a2.rec.count("comment:updated", 1)]);
    assert.equal(a2.rec.payloads("comment:updated")[0].comment.body, "looks great");
    await call(server, ann, "DELETE", `/comments/${comment.id}`, undefined, 200);
    await Promise.all([b.rec.count("comment:deleted", 1), a2.rec.count("comment:deleted", 1)]);
    assert.equal(b.rec.payloads("comment:deleted")[0].actorId, ann.id);
    // Ann's first device is in the project, not the task room.
    for (const e of ["comment:created", "comment:updated", "comment:deleted"]) {
      await settledCount({ a1: a1.rec, cy: c.rec }, e, 0);
    }

    // Delete (soft): project and task rooms.
    await call(server, ann, "DELETE", `/tasks/${task.id}`, undefined, 200);
    await Promise.all([a1.rec.count("task:deleted", 1), a2.rec.count("task:deleted", 1), b.rec.count("task:deleted", 1)]);
    assert.equal(a1.rec.payloads("task:deleted")[0].task.id, task.id);
    await settledCount({ a1: a1.rec, a2: a2.rec, bob: b.rec }, "task:deleted", 1);
    await settledCount({ cy: c.rec }, "task:deleted", 0);
  }));

test("room:join is all or none; room:leave stops the events", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const cy = await api.externalUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob);
    const p = await project(server, ws, ann);
    const cyWs = await workspace(server, cy, "Cy's");
    const cyProject = await project(server, cyWs, cy);

    const b = await rootSocket(server, bob);
    // One room Bob may not join spoils the whole request.
    assertFailed(await ack(b.socket, "room:join", { workspaceId: ws, projectId: cyProject }), "forbidden", "mixed join");
    assertFailed(await ack(b.socket, "room:join", { taskId: "no-such-task" }), "forbidden", "unknown task");
    await addMember(server, ws, ann, cy);
    await settledCount({ bob: b.rec }, "member:joined", 0);
    await createTask(server, p, ann, { title: "Unheard" });
    await settledCount({ bob: b.rec }, "task:created", 0);

    // Malformed payloads are bad requests, and the connection stays up.
    assertFailed(await ack(b.socket, "room:join", { workspaceId: 42 }), "bad_request", "wrong type");

    await joinRooms(b.socket, { workspaceId: ws, projectId: p });
    await createTask(server, p, ann, { title: "Heard" });
    await b.rec.count("task:created", 1);
    const left = await ack(b.socket, "room:leave", { projectId: p });
    assert.equal(left.ok, true, JSON.stringify(left));
    await createTask(server, p, ann, { title: "Unheard again" });
    await settledCount({ bob: b.rec }, "task:created", 1);
  }));

test("member events; a viewer cannot write; a removed member gets member:left and then nothing", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const cy = await api.externalUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob);
    const p = await project(server, ws, ann);
    const task = await createTask(server, p, ann, { title: "Watched" });

    const a1 = await rootSocket(server, ann);
    const a2 = await rootSocket(server, ann);
    const b = await rootSocket(server, bob);
    const c = await rootSocket(server, cy);
    for (const s of [a1, a2]) await joinRooms(s.socket, { workspaceId: ws });
    await joinRooms(b.socket, { workspaceId: ws, projectId: p, taskId: task.id });

    // Ann adds Cy: every socket in the workspace room, hers included.
    await addMember(server, ws, ann, cy, "viewer");
    await Promise.all([a1.rec.count("member:joined", 1), a2.rec.count("member:joined", 1), b.rec.count("member:joined", 1)]);
    const mj = a2.rec.payloads("member:joined")[0];
    assert.equal(mj.workspaceId, ws);
    assert.equal(mj.actorId, ann.id);
    assert.deepEqual(mj.member, { userId: cy.id, name: "Cy", role: "viewer" });
    await settledCount({ cy: c.rec }, "member:joined", 0);

    // The viewer reads, joins rooms, and never writes.
    await call(server, cy, "GET", `/tasks/${task.id}`, undefined, 200);
    await joinRooms(c.socket, { workspaceId: ws, taskId: task.id });
    const denied = await api.request(server.url, "POST", `/api/v1/projects/${p}/tasks`, {
      token: cy.token,
      body: { title: "nope" },
    });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, "forbidden");
    for (const [method, path, body] of [
      ["PATCH", `/tasks/${task.id}`, { title: "nope" }],
      ["DELETE", `/tasks/${task.id}`, undefined],
      ["POST", `/tasks/${task.id}/comments`, { body: "nope" }],
    ]) {
      const res = await api.request(server.url, method, `/api/v1${path}`, { token: cy.token, body });
      assert.equal(res.status, 403, `${method} ${path}: ${JSON.stringify(res.body)}`);
    }
    await settledCount({ ann: a1.rec, bob: b.rec }, "task:updated", 0);

    // Role change.
    await call(server, ann, "PATCH", `/workspaces/${ws}/members/${cy.id}`, { role: "member" }, 200);
    await Promise.all([a1.rec.count("member:role_changed", 1), c.rec.count("member:role_changed", 1)]);
    const rc = c.rec.payloads("member:role_changed")[0];
    assert.deepEqual(rc.member, { userId: cy.id, name: "Cy", role: "member" });
    assert.equal(rc.actorId, ann.id);
    await call(server, cy, "POST", `/tasks/${task.id}/comments`, { body: "now I may" }, 201);

    // Removal: Bob hears member:left about himself, then nothing more.
    await call(server, ann, "DELETE", `/workspaces/${ws}/members/${bob.id}`, undefined, 200);
    await Promise.all([a1.rec.count("member:left", 1), b.rec.count("member:left", 1)]);
    const ml = b.rec.payloads("member:left")[0];
    assert.equal(ml.member.userId, bob.id);
    assert.equal(ml.workspaceId, ws);
    await createTask(server, p, ann, { title: "After Bob" });
    await call(server, ann, "PATCH", `/tasks/${task.id}`, { title: "Still watched?" }, 200);
    await call(server, ann, "POST", `/tasks/${task.id}/comments`, { body: "bye" }, 201);
    await addMember(server, ws, ann, await api.externalUser(server.url, "Dee"));
    await a1.rec.count("member:joined", 2);
    await sleep(QUIET_MS);
    const afterLeft = b.rec.events.slice(b.rec.events.findIndex((e) => e.event === "member:left") + 1);
    assert.deepEqual(
      afterLeft.filter((e) => !e.event.startsWith("presence:")).map((e) => e.event),
      [],
      "a removed member hears nothing of the workspace",
    );
    // And cannot join again.
    assertFailed(await ack(b.socket, "room:join", { workspaceId: ws }), "forbidden", "removed member join");
    const gone = await api.request(server.url, "GET", `/api/v1/tasks/${task.id}`, { token: bob.token });
    assert.equal(gone.status, 404);
  }));

test("a recovered / socket gets the notifications it missed while away (its user room), once each, in order", T, () =>
  withServer(async (server) => {
    const { owner: ann, members: [bob], ws } = await team(server, "Ann", ["Bob"]);
    const p = await project(server, ws, ann);
    const b = await connectAs(server, bob, "/", {
      transports: ["websocket"],
      reconnection: true,
      reconnectionDelay: 300,
      reconnectionDelayMax: 300,
      randomizationFactor: 0,
    });
    const rec = new Recorder(b, ["notification", "connect"]);
    // A first notification gives the client an offset to recover from.
    await createTask(server, p, ann, { title: "One", assigneeId: bob.id });
    await rec.count("notification", 1);

    const gone = once(b, "disconnect");
    b.io.engine.transport.ws.terminate();
    await gone;
    await createTask(server, p, ann, { title: "Two", assigneeId: bob.id });
    await createTask(server, p, ann, { title: "Three", assigneeId: bob.id });

    await rec.count("connect", 1, WAIT_MS + 2_000);
    assert.equal(b.recovered, true, "the / socket recovered");
    await rec.count("notification", 3);
    await sleep(QUIET_MS);
    const got = rec.payloads("notification");
    assert.equal(got.length, 3, JSON.stringify(got));
    assert.deepEqual(got.map((n) => n.unreadCount), [1, 2, 3], "every one once, in order");
    assert.equal(new Set(got.map((n) => n.id)).size, 3);
    // Live ones keep coming without joining anything again.
    await createTask(server, p, ann, { title: "Four", assigneeId: bob.id });
    await rec.count("notification", 4);
    assert.equal(rec.payloads("notification")[3].unreadCount, 4);
  }));

test("a member removed while away is not given the workspace's rooms back by a recovered reconnect, nor what was sent there", T, () =>
  withServer(async (server) => {
    const { owner: ann, members: [bob, cy], ws } = await team(server, "Ann", ["Bob", "Cy"]);
    const p = await project(server, ws, ann);
    const reconnecting = { reconnection: true, reconnectionDelay: 300, reconnectionDelayMax: 300, randomizationFactor: 0 };
    // Bob is removed while away; Cy, who stays a member, shows what a
    // recovery brings back.
    const away = {};
    for (const [who, user] of [["bob", bob], ["cy", cy]]) {
      const socket = await connectAs(server, user, "/", { transports: ["websocket"], ...reconnecting });
      await joinRooms(socket, { workspaceId: ws, projectId: p });
      away[who] = { socket, rec: new Recorder(socket, [...ROOT_EVENTS, "connect"]) };
    }
    await createTask(server, p, ann, { title: "Before" });
    await Promise.all(Object.values(away).map(({ rec }) => rec.count("task:created", 1)));

    for (const { socket } of Object.values(away)) {
      const gone = once(socket, "disconnect");
      socket.io.engine.transport.ws.terminate();
      await gone;
    }
    await call(server, ann, "DELETE", `/workspaces/${ws}/members/${bob.id}`, undefined, 200);
    await createTask(server, p, ann, { title: "While away" });

    for (const { rec } of Object.values(away)) await rec.count("connect", 1, WAIT_MS + 2_000);
    assert.equal(away.cy.socket.recovered, true, "Cy's socket recovered");
    assert.equal(away.bob.socket.recovered, true, "Bob's socket recovered (its session), without the rooms");
    await away.cy.rec.count("task:created", 2);
    assert.deepEqual(away.cy.rec.payloads("task:created").map((e) => e.task.title), ["Before", "While away"]);

    await createTask(server, p, ann, { title: "After" });
    await call(server, ann, "PATCH", `/workspaces/${ws}/members/${cy.id}`, { role: "viewer" }, 200);
    await away.cy.rec.count("task:created", 3);
    await away.cy.rec.count("member:role_changed", 1);
    await sleep(QUIET_MS);
    const afterDrop = away.bob.rec.events.filter((e) => e.event !== "connect" && !e.event.startsWith("presence:"));
    assert.deepEqual(
      afterDrop.map((e) => [e.event, e.args[0]?.task?.title ?? null]),
      [["task:created", "Before"]],
      "Bob heard nothing of the workspace after his removal: not replayed, not live",
    );
    assertFailed(await ack(away.bob.socket, "room:join", { workspaceId: ws }), "forbidden", "removed member join");
  }));

test("presence: online on the first connection, away, offline after the last one closes", T, () =>
  withServer({ env: { HUDDLE__COLLAB__OFFLINE_GRACE_MS: "300" } }, async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const cy = await api.externalUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob);
    const a = await rootSocket(server, ann);
    await joinRooms(a.socket, { workspaceId: ws });
    const c = await rootSocket(server, cy); // not in Ann's workspace

    // Bob's first connection, on /chat, makes him online; a second one does
    // not again. Each names its device (`deviceId`), and presence says which.
    const bobChat = await connectAs(server, bob, "/chat", { auth: { deviceId: "phone" } });
    await a.rec.until((r) => r.payloads("presence:user_online").some((p) => p.userId === bob.id));
    const on = a.rec.payloads("presence:user_online").find((p) => p.userId === bob.id);
    assert.equal(on.status, "online");
    assert.match(on.at, ISO_UTC);
    assert.equal(on.deviceId, "phone");
    const b = await rootSocket(server, bob, { auth: { deviceId: "laptop" } });
    await sleep(QUIET_MS);
    assert.equal(a.rec.payloads("presence:user_online").filter((p) => p.userId === bob.id).length, 1);

    // presence:update.
    assert.equal((await ack(b.socket, "presence:update", { status: "away" })).ok, true);
    await a.rec.until((r) => r.payloads("presence:user_online").some((p) => p.userId === bob.id && p.status === "away"));
    assert.equal(a.rec.payloads("presence:user_online").find((p) => p.status === "away").deviceId, "laptop");
    assertFailed(await ack(b.socket, "presence:update", { status: "sleeping" }), "bad_request", "bad status");

    // Closing one of two connections is not offline; closing the last is.
    b.socket.disconnect();
    await sleep(300 + QUIET_MS);
    assert.equal(a.rec.of("presence:user_offline").length, 0);
    bobChat.disconnect();
    await a.rec.count("presence:user_offline", 1, 5_000);
    const off = a.rec.payloads("presence:user_offline")[0];
    assert.equal(off.userId, bob.id);
    assert.equal(off.status, "offline");
    assert.match(off.at, ISO_UTC);
    assert.equal(off.deviceId, undefined, "offline is the user's, on no device");
    assert.equal(c.rec.payloads("presence:user_online").filter((p) => p.userId === bob.id).length, 0);
    assert.equal(c.rec.of("presence:user_offline").length, 0);

    // A quick reconnect within the grace is no offline at all.
    const again = await rootSocket(server, bob);
    await a.rec.until((r) => r.payloads("presence:user_online").filter((p) => p.userId === bob.id).length >= 3);
    again.socket.disconnect();
    await connectAs(server, bob, "/");
    await sleep(300 + QUIET_MS);
    assert.equal(a.rec.of("presence:user_offline").length, 1);
  }));

test("presence:viewing lists the viewers of a task and updates on leaving, viewing another and disconnect", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const cy = await api.externalUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob, "viewer");
    const p = await project(server, ws, ann);
    const t1 = await createTask(server, p, ann, { title: "One" });
    const t2 = await createTask(server, p, ann, { title: "Two" });

    const a = await rootSocket(server, ann);
    await joinRooms(a.socket, { taskId: t1.id });
    const b = await rootSocket(server, bob);
    await joinRooms(b.socket, { taskId: t1.id });
    const viewersOf = (rec, taskId) => rec.payloads("presence:users_viewing").filter((v) => v.taskId === taskId);
    const last = (list) => list[list.length - 1];

    assert.equal((await ack(a.socket, "presence:viewing", { taskId: t1.id })).ok, true);
    await b.rec.until((r) => viewersOf(r, t1.id).length >= 1);
    assert.deepEqual(last(viewersOf(b.rec, t1.id)).users, [{ userId: ann.id, name: "Ann" }]);
    assert.equal((await ack(b.socket, "presence:viewing", { taskId: t1.id })).ok, true);
    await a.rec.until((r) => viewersOf(r, t1.id).some((v) => v.users.length === 2));
    assert.deepEqual(
      last(viewersOf(a.rec, t1.id)).users.map((u) => u.userId).sort(),
      [ann.id, bob.id].sort(),
    );

    // A non-member cannot view.
    const c = await rootSocket(server, cy);
    assertFailed(await ack(c.socket, "presence:viewing", { taskId: t1.id }), "forbidden", "non-member viewing");

    // Viewing another task ends the first.
    await joinRooms(b.socket, { taskId: t2.id });
    assert.equal((await ack(b.socket, "presence:viewing", { taskId: t2.id })).ok, true);
    await a.rec.until((r) => {
      const l = last(viewersOf(r, t1.id));
      return l.users.length === 1 && l.users[0].userId === ann.id;
    });
    await b.rec.until((r) => viewersOf(r, t2.id).some((v) => v.users.length === 1));
    assert.deepEqual(last(viewersOf(b.rec, t2.id)).users, [{ userId: bob.id, name: "Bob" }]);

    // Leaving the task room ends viewing.
    await joinRooms(b.socket, { taskId: t1.id });
    assert.equal((await ack(b.socket, "presence:viewing", { taskId: t1.id })).ok, true);
    await a.rec.until((r) => last(viewersOf(r, t1.id)).users.length === 2);
    assert.equal((await ack(b.socket, "room:leave", { taskId: t1.id })).ok, true);
    await a.rec.until((r) => last(viewersOf(r, t1.id)).users.length === 1);

    // So does a disconnect.
    assert.equal((await ack(a.socket, "room:join", { taskId: t2.id })).ok, true);
    assert.equal((await ack(b.socket, "presence:viewing", { taskId: t2.id })).ok, true);
    await a.rec.until((r) => viewersOf(r, t2.id).length >= 1 && last(viewersOf(r, t2.id)).users.length === 1);
    b.socket.disconnect();
    await a.rec.until((r) => last(viewersOf(r, t2.id)).users.length === 0);
  }));

test("typing in a task room reaches the others, not the sender, and stops by itself", T, () =>
  withServer({ env: { HUDDLE__CHAT__TYPING_TIMEOUT_MS: "500" } }, async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const bob = await api.externalUser(server.url, "Bob");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob, "viewer");
    const p = await project(server, ws, ann);
    const task = await createTask(server, p, ann, { title: "Typed on" });
    const other = await createTask(server, p, ann, { title: "Quiet" });

    const a1 = await rootSocket(server, ann);
    const a2 = await rootSocket(server, ann);
    const b = await rootSocket(server, bob);
    for (const s of [a1, a2, b]) await joinRooms(s.socket, { taskId: task.id });
    const o = await rootSocket(server, ann);
    await joinRooms(o.socket, { taskId: other.id });

    // A viewer may type; Ann's devices hear it, Bob's own socket does not.
    assert.equal((await ack(b.socket, "typing:start", { taskId: task.id, commentId: "c-1" })).ok, true);
    await Promise.all([a1.rec.count("typing:user_typing", 1), a2.rec.count("typing:user_typing", 1)]);
    const typing = a1.rec.payloads("typing:user_typing")[0];
    assert.deepEqual(typing, { userId: bob.id, name: "Bob", taskId: task.id, commentId: "c-1" });
    const started = a1.rec.of("typing:user_typing")[0].at;
    // Auto-stop after the timeout.
    await a1.rec.count("typing:user_stopped", 1, 3_000);
    const stoppedAfter = a1.rec.of("typing:user_stopped")[0].at - started;
    assert.ok(stoppedAfter >= 400, `stopped after ${stoppedAfter} ms`);
    assert.equal(a1.rec.payloads("typing:user_stopped")[0].userId, bob.id);
    await settledCount({ bob: b.rec, other: o.rec }, "typing:user_typing", 0);
    assert.equal(o.rec.of("typing:user_stopped").length, 0);

    // An explicit stop; a start keeps it going.
    assert.equal((await ack(a1.socket, "typing:start", { taskId: task.id })).ok, true);
    await b.rec.count("typing:user_typing", 1);
    // Ann's other device is not the sending socket: it hears her typing.
    await a2.rec.count("typing:user_typing", 2);
    assert.equal((await ack(a1.socket, "typing:stop", { taskId: task.id })).ok, true);
    await b.rec.count("typing:user_stopped", 1);
    await sleep(700);
    assert.equal(b.rec.of("typing:user_stopped").length, 1, "no second stop after an explicit one");

    // Typing where you are not a member is refused.
    const cy = await api.externalUser(server.url, "Cy");
    const c = await rootSocket(server, cy);
    assertFailed(await ack(c.socket, "typing:start", { taskId: task.id }), "forbidden", "non-member typing");
  }));

test("notifications: assignment, comment, @mention in a comment and in chat, with unreadCount", T, () =>
  withServer(async (server) => {
    const ann = await api.registeredUser(server.url, "Ann");
    const bob = await api.registeredUser(server.url, "Bob");
    const cy = await api.registeredUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    await addMember(server, ws, ann, bob);
    const p = await project(server, ws, ann);

    const a = await rootSocket(server, ann);
    const b1 = await rootSocket(server, bob);
    const b2 = await rootSocket(server, bob);
    const c = await rootSocket(server, cy);

    // Assigned to Bob: both his devices.
    const task = await createTask(server, p, ann, { title: "Review", assigneeId: bob.id });
    await Promise.all([b1.rec.count("notification", 1), b2.rec.count("notification", 1)]);
    const n1 = b1.rec.payloads("notification")[0];
    assert.equal(n1.type, "task_assigned");
    assert.equal(n1.unreadCount, 1);
    assert.equal(n1.link, `/tasks/${task.id}`);
    assert.equal(typeof n1.id, "string");
    assert.equal(typeof n1.title, "string");
    assert.equal(typeof n1.body, "string");
    assert.match(n1.createdAt, ISO_UTC);
    assert.deepEqual(b2.rec.payloads("notification")[0], n1);
    // Never for your own actions.
    await createTask(server, p, ann, { title: "Mine", assigneeId: ann.id });
    await settledCount({ ann: a.rec }, "notification", 0);

    // Bob comments on Ann's task: Ann is told.
    await call(server, bob, "POST", `/tasks/${task.id}/comments`, { body: "on it" }, 201);
    await a.rec.count("notification", 1);
    assert.equal(a.rec.payloads("notification")[0].type, "task_comment");
    assert.equal(a.rec.payloads("notification")[0].unreadCount, 1);

    // Ann mentions Bob (a member) and Cy (not one) in a comment.
    await call(server, ann, "POST", `/tasks/${task.id}/comments`, { body: `@${bob.user.username} and @${cy.user.username}, see this` }, 201);
    await b1.rec.count("notification", 2);
    const mention = b1.rec.payloads("notification")[1];
    assert.equal(mention.type, "mention");
    assert.equal(mention.unreadCount, 2);
    await settledCount({ cy: c.rec }, "notification", 0);
    assert.equal(a.rec.of("notification").length, 1);

    // A chat message mentioning Bob (a member of the conversation) and Cy (not one).
    const conv = await api.createConversation(server.url, ann, [bob], { title: "Review chat" });
    const chat = await connectAs(server, ann, "/chat");
    const sent = await ack(chat, "send_message", {
      conversationId: conv.id,
      text: `ping @${bob.user.username} and @${cy.user.username} and @${ann.user.username}`,
      clientId: "mention-1",
    });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    await Promise.all([b1.rec.count("notification", 3), b2.rec.count("notification", 3)]);
    const chatMention = b2.rec.payloads("notification")[2];
    assert.equal(chatMention.type, "mention");
    assert.equal(chatMention.unreadCount, 3);
    assert.equal(chatMention.link, `/conversations/${conv.id}`);
    // A retry of the same clientId is no new message and no new notification.
    await ack(chat, "send_message", { conversationId: conv.id, text: "ping again", clientId: "mention-1" });
    await settledCount({ bob1: b1.rec, bob2: b2.rec }, "notification", 3);
    assert.equal(c.rec.of("notification").length, 0);
    assert.equal(a.rec.of("notification").length, 1);

    // Over HTTP: unread list, read one, read all.
    const unread = await call(server, bob, "GET", "/notifications?unread=true", undefined, 200);
    assert.equal(unread.unreadCount, 3);
    assert.deepEqual(unread.items.map((n) => n.type), ["mention", "mention", "task_assigned"]);
    const read = await call(server, bob, "POST", `/notifications/${unread.items[0].id}/read`, {}, 200);
    assert.equal(read.unreadCount, 2);
    const notMine = await api.request(server.url, "POST", `/api/v1/notifications/${unread.items[1].id}/read`, {
      token: cy.token,
      body: {},
    });
    assert.equal(notMine.status, 404);
    await call(server, bob, "POST", "/notifications/read-all", {}, 200);
    const none = await call(server, bob, "GET", "/notifications?unread=true", undefined, 200);
    assert.deepEqual(none.items, []);
    assert.equal(none.unreadCount, 0);
  }));

/** Asserts a `notification` event's shape (section 4) and its type, link and unreadCount. */
function assertNotification(n, { type, link, unreadCount }, what) {
  const at = `${what}: ${JSON.stringify(n)}`;
  assert.equal(n.type, type, at);
  assert.equal(n.link, link, at);
  assert.equal(n.unreadCount, unreadCount, at);
  assert.equal(typeof n.id, "string", at);
  assert.equal(typeof n.title, "string", at);
  assert.equal(typeof n.body, "string", at);
  assert.match(n.createdAt, ISO_UTC, at);
}

/** Waits QUIET_MS, then asserts how many `notification` events each recorder got. */
async function notificationCounts(recs, want) {
  await sleep(QUIET_MS);
  for (const [who, n] of Object.entries(want)) {
    const got = recs[who].payloads("notification");
    assert.equal(got.length, n, `${who}: ${n} notification(s), got ${JSON.stringify(got)}`);
  }
}

test("a user keeps the newest collab.notifications_kept_per_user notifications: older ones go, read or not, and unreadCount follows", T, () =>
  withServer({ env: { HUDDLE__COLLAB__NOTIFICATIONS_KEPT_PER_USER: "3" } }, async (server) => {
    const { owner: ann, ws, members: [bob] } = await team(server, "Ann", ["Bob"]);
    const p = await project(server, ws, ann);
    const b = await rootSocket(server, bob);
    const tasks = [];
    for (let i = 1; i <= 2; i++) {
      tasks.push(await createTask(server, p, ann, { title: `T${i}`, assigneeId: bob.id }));
    }
    await b.rec.count("notification", 2);
    // Bob reads the first one.
    const first = b.rec.payloads("notification")[0];
    await call(server, bob, "POST", `/notifications/${first.id}/read`, {}, 200);
    for (let i = 3; i <= 5; i++) {
      tasks.push(await createTask(server, p, ann, { title: `T${i}`, assigneeId: bob.id }));
    }
    await b.rec.count("notification", 5);
    // T3: three kept, none goes; T4: T1 (read) goes; T5: T2 (unread) goes.
    assert.deepEqual(b.rec.payloads("notification").map((n) => n.unreadCount), [1, 2, 2, 3, 3]);
    const all = await call(server, bob, "GET", "/notifications", undefined, 200);
    assert.deepEqual(all.items.map((n) => n.link), tasks.slice(2).reverse().map((t) => `/tasks/${t.id}`));
    assert.equal(all.unreadCount, 3);
    const second = b.rec.payloads("notification")[1];
    const gone = await api.request(server.url, "POST", `/api/v1/notifications/${second.id}/read`, { token: bob.token, body: {} });
    assert.equal(gone.status, 404);
    // Ann's own list is hers: nothing of Bob's limit touches it.
    const annList = await call(server, ann, "GET", "/notifications", undefined, 200);
    assert.deepEqual(annList.items, []);
  }));

test("notifications: a PATCH that reassigns tells the new assignee; a comment tells the assignee and the creator; never your own actions; reading lowers unreadCount", T, () =>
  withServer(async (server) => {
    const { owner: ann, members: [bob, cy, dee], ws } = await team(server, "Ann", ["Bob", "Cy", "Dee"]);
    const p = await project(server, ws, ann);
    const a = await rootSocket(server, ann);
    const b = await rootSocket(server, bob);
    const c = await rootSocket(server, cy);
    const d = await rootSocket(server, dee);
    const recs = { ann: a.rec, bob: b.rec, cy: c.rec, dee: d.rec };
    const latest = (rec) => rec.payloads("notification").at(-1);

    // A task without an assignee tells no one; assigning it by PATCH tells the assignee.
    const task = await createTask(server, p, ann, { title: "Review" });
    const link = `/tasks/${task.id}`;
    await notificationCounts(recs, { ann: 0, bob: 0, cy: 0, dee: 0 });
    const assigned = await call(server, ann, "PATCH", `/tasks/${task.id}`, { assigneeId: bob.id }, 200);
    assert.equal(assigned.assigneeId, bob.id);
    await b.rec.count("notification", 1);
    assertNotification(latest(b.rec), { type: "task_assigned", link, unreadCount: 1 }, "assigned by PATCH");
    await notificationCounts(recs, { ann: 0, bob: 1, cy: 0, dee: 0 });
    const bobList = await call(server, bob, "GET", "/notifications?unread=true", undefined, 200);
    assert.equal(bobList.unreadCount, 1);
    assert.deepEqual(
      bobList.items.map(({ id, type, link: l }) => ({ id, type, link: l })),
      [{ id: latest(b.rec).id, type: "task_assigned", link }],
    );

    // Changing other fields, or naming the same assignee again, is no new assignment.
    await call(server, ann, "PATCH", `/tasks/${task.id}`, { title: "Review the plan" }, 200);
    await call(server, ann, "PATCH", `/tasks/${task.id}`, { assigneeId: bob.id }, 200);
    await notificationCounts(recs, { ann: 0, bob: 1, cy: 0, dee: 0 });

    // Reassigned to Cy (with a move): Cy is told, Bob is not told again.
    const reassigned = await call(server, ann, "PATCH", `/tasks/${task.id}`, { assigneeId: cy.id, status: "in_progress" }, 200);
    assert.equal(reassigned.assigneeId, cy.id);
    await c.rec.count("notification", 1);
    assertNotification(latest(c.rec), { type: "task_assigned", link, unreadCount: 1 }, "reassigned");
    await notificationCounts(recs, { ann: 0, bob: 1, cy: 1, dee: 0 });

    // Assigning a task to yourself by PATCH tells no one.
    const own = await createTask(server, p, bob, { title: "Bob's own" });
    await call(server, bob, "PATCH", `/tasks/${own.id}`, { assigneeId: bob.id }, 200);
    await notificationCounts(recs, { ann: 0, bob: 1, cy: 1, dee: 0 });

    // Dee comments on Ann's task assigned to Cy: both are told; Bob, no
    // longer the assignee, and Dee herself are not.
    await call(server, dee, "POST", `/tasks/${task.id}/comments`, { body: "a question" }, 201);
    await Promise.all([a.rec.count("notification", 1), c.rec.count("notification", 2)]);
    assertNotification(latest(a.rec), { type: "task_comment", link, unreadCount: 1 }, "creator told of a comment");
    assertNotification(latest(c.rec), { type: "task_comment", link, unreadCount: 2 }, "assignee told of a comment");
    await notificationCounts(recs, { ann: 1, bob: 1, cy: 2, dee: 0 });

    // The assignee comments: only the creator is told; the creator comments: only the assignee.
    await call(server, cy, "POST", `/tasks/${task.id}/comments`, { body: "an answer" }, 201);
    await a.rec.count("notification", 2);
    assertNotification(latest(a.rec), { type: "task_comment", link, unreadCount: 2 }, "assignee's comment");
    await notificationCounts(recs, { ann: 2, bob: 1, cy: 2, dee: 0 });
    await call(server, ann, "POST", `/tasks/${task.id}/comments`, { body: "thanks" }, 201);
    await c.rec.count("notification", 3);
    assertNotification(latest(c.rec), { type: "task_comment", link, unreadCount: 3 }, "creator's comment");
    await notificationCounts(recs, { ann: 2, bob: 1, cy: 3, dee: 0 });

    // Ann's task assigned to Ann: her own comment tells no one; Bob's tells
    // her once, though she is both its creator and its assignee.
    const mine = await createTask(server, p, ann, { title: "Ann's own", assigneeId: ann.id });
    await call(server, ann, "POST", `/tasks/${mine.id}/comments`, { body: "note to self" }, 201);
    await notificationCounts(recs, { ann: 2, bob: 1, cy: 3, dee: 0 });
    await call(server, bob, "POST", `/tasks/${mine.id}/comments`, { body: "can I help?" }, 201);
    await a.rec.count("notification", 3);
    assertNotification(latest(a.rec), { type: "task_comment", link: `/tasks/${mine.id}`, unreadCount: 3 }, "creator and assignee");
    await notificationCounts(recs, { ann: 3, bob: 1, cy: 3, dee: 0 });

    // Cy's unread list: what was pushed, newest first.
    const pushed = c.rec.payloads("notification");
    const unread = await call(server, cy, "GET", "/notifications?unread=true", undefined, 200);
    assert.equal(unread.unreadCount, 3);
    const fields = ({ id, type, title, body, link: l, createdAt }) => ({ id, type, title, body, link: l, createdAt });
    assert.deepEqual(unread.items.map(fields), [...pushed].reverse().map(fields));

    // Reading one lowers unreadCount by one, once; it leaves the unread list, not the list.
    const oldest = pushed[0].id;
    const read = await call(server, cy, "POST", `/notifications/${oldest}/read`, {}, 200);
    assert.equal(read.unreadCount, 2);
    const again = await call(server, cy, "POST", `/notifications/${oldest}/read`, {}, 200);
    assert.equal(again.unreadCount, 2, "reading a read notification changes nothing");
    const afterRead = await call(server, cy, "GET", "/notifications?unread=true", undefined, 200);
    assert.equal(afterRead.unreadCount, 2);
    assert.deepEqual(afterRead.items.map((n) => n.id), [pushed[2].id, pushed[1].id]);
    const everything = await call(server, cy, "GET", "/notifications", undefined, 200);
    assert.deepEqual(everything.items.map((n) => n.id), [pushed[2].id, pushed[1].id, pushed[0].id]);
    assert.equal(everything.unreadCount, 2);
    // The next notification counts from there.
    await call(server, ann, "POST", `/tasks/${task.id}/comments`, { body: "one more thing" }, 201);
    await c.rec.count("notification", 4);
    assertNotification(latest(c.rec), { type: "task_comment", link, unreadCount: 3 }, "after reading one");

    // Read-all: zero for Cy, and the next one counts from zero; Ann's are hers.
    const all = await call(server, cy, "POST", "/notifications/read-all", {}, 200);
    assert.equal(all.unreadCount, 0);
    const none = await call(server, cy, "GET", "/notifications?unread=true", undefined, 200);
    assert.deepEqual(none.items, []);
    assert.equal(none.unreadCount, 0);
    await call(server, dee, "POST", `/tasks/${task.id}/comments`, { body: "last one" }, 201);
    await Promise.all([c.rec.count("notification", 5), a.rec.count("notification", 4)]);
    assertNotification(latest(c.rec), { type: "task_comment", link, unreadCount: 1 }, "after read-all");
    assertNotification(latest(a.rec), { type: "task_comment", link, unreadCount: 4 }, "someone else's read-all");
    await notificationCounts(recs, { ann: 4, bob: 1, cy: 5, dee: 0 });
  }));

test("search ranks tasks and tolerates a typo; non-members learn nothing", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const cy = await api.externalUser(server.url, "Cy");
    const ws = await workspace(server, ann);
    const p = await project(server, ws, ann);
    const backend = await createTask(server, p, ann, { title: "Backend migration", tags: ["infra"] });
    const mentioned = await createTask(server, p, ann, { title: "Docs", description: "explain the backend" });
    await createTask(server, p, ann, { title: "Unrelated", description: "nothing here" });

    const search = (user, q) =>
      api.request(server.url, "GET", `/api/v1/workspaces/${ws}/search?q=${encodeURIComponent(q)}`, { token: user.token });
    const exact = api.expectStatus(await search(ann, "backend"), 200, "search");
    assert.equal(exact.total, 2);
    assert.equal(exact.items[0].id, backend.id, "a title match ranks first");
    assert.equal(exact.items[1].id, mentioned.id);
    for (const typo of ["bakcend", "backnd", "backends", "bxckend"]) {
      const res = api.expectStatus(await search(ann, typo), 200, `search ${typo}`);
      assert.ok(res.total >= 1, `${typo}: ${JSON.stringify(res)}`);
      assert.equal(res.items[0].id, backend.id, typo);
    }
    const tag = api.expectStatus(await search(ann, "infra"), 200, "tag search");
    assert.deepEqual(tag.items.map((t) => t.id), [backend.id]);
    assert.equal((await search(cy, "backend")).status, 404);
  }));

/** An HTTP call as `user` that must fail with `status` and error `code`. */
async function refused(server, user, method, path, body, status, code) {
  const res = await api.request(server.url, method, `/api/v1${path}`, { token: user.token, body });
  assert.equal(res.status, status, `${method} ${path}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, code, `${method} ${path}: ${JSON.stringify(res.body)}`);
}

test("workspaces, members, projects and comments over HTTP: lists are the caller's, members added by email, the owner stays, comments changed by their author or an admin only", T, () =>
  withServer(async (server) => {
    const ann = await api.registeredUser(server.url, "Ann");
    const bob = await api.registeredUser(server.url, "Bob");
    const cy = await api.registeredUser(server.url, "Cy");
    const dee = await api.registeredUser(server.url, "Dee");
    const eve = await api.externalUser(server.url, "Eve");
    const ws = await workspace(server, ann, "Acme");
    const bobWs = await workspace(server, bob, "Bob's");
    const eveWs = await workspace(server, eve, "Elsewhere");
    const members = `/workspaces/${ws}/members`;

    // Added by email (case-insensitive), with the role asked for.
    const added = await call(server, ann, "POST", members, { email: bob.email, role: "member" }, 201);
    assert.equal(added.userId, bob.id);
    assert.equal(added.name, "Bob");
    assert.equal(added.role, "member");
    assert.equal((await call(server, ann, "POST", members, { email: cy.email.toUpperCase(), role: "member" }, 201)).userId, cy.id);
    assert.equal((await call(server, ann, "POST", members, { email: dee.email, role: "admin" }, 201)).role, "admin");
    // Twice is a conflict, by email or by id; an unknown email is not found.
    await refused(server, ann, "POST", members, { email: bob.email, role: "member" }, 409, "conflict");
    await refused(server, ann, "POST", members, { userId: bob.id, role: "viewer" }, 409, "conflict");
    await refused(server, ann, "POST", members, { email: `nobody-${api.randomId()}@example.test`, role: "member" }, 404, "not_found");
    // A member does not manage members.
    await refused(server, bob, "POST", members, { userId: eve.id, role: "member" }, 403, "forbidden");

    // GET /workspaces: the caller's workspaces only, each with the caller's role.
    const mine = async (user) => {
      const list = await call(server, user, "GET", "/workspaces", undefined, 200);
      assert.equal(list.nextCursor, null);
      return list.items.map(({ id, name, role }) => ({ id, name, role })).sort((x, y) => x.id.localeCompare(y.id));
    };
    const byId = (xs) => xs.sort((x, y) => x.id.localeCompare(y.id));
    assert.deepEqual(await mine(ann), [{ id: ws, name: "Acme", role: "owner" }]);
    assert.deepEqual(await mine(bob), byId([{ id: ws, name: "Acme", role: "member" }, { id: bobWs, name: "Bob's", role: "owner" }]));
    assert.deepEqual(await mine(dee), [{ id: ws, name: "Acme", role: "admin" }]);
    assert.deepEqual(await mine(eve), [{ id: eveWs, name: "Elsewhere", role: "owner" }]);

    // GET members: everyone, with name and role, for any member.
    const memberList = async (user) => {
      const list = await call(server, user, "GET", members, undefined, 200);
      assert.equal(list.nextCursor, null);
      return list.items.map(({ userId, name, role }) => ({ userId, name, role })).sort((x, y) => x.userId.localeCompare(y.userId));
    };
    const everyone = [
      { userId: ann.id, name: "Ann", role: "owner" },
      { userId: bob.id, name: "Bob", role: "member" },
      { userId: cy.id, name: "Cy", role: "member" },
      { userId: dee.id, name: "Dee", role: "admin" },
    ].sort((x, y) => x.userId.localeCompare(y.userId));
    assert.deepEqual(await memberList(cy), everyone);

    // The owner is neither removed nor demoted, by an admin or by herself.
    await refused(server, dee, "PATCH", `${members}/${ann.id}`, { role: "member" }, 409, "conflict");
    await refused(server, dee, "DELETE", `${members}/${ann.id}`, undefined, 409, "conflict");
    await refused(server, ann, "PATCH", `${members}/${ann.id}`, { role: "admin" }, 409, "conflict");
    assert.deepEqual(await memberList(bob), everyone);

    // Projects: those of this workspace, as created, oldest first.
    const p1 = await call(server, ann, "POST", `/workspaces/${ws}/projects`, { name: "One", description: "the first" }, 201);
    assert.deepEqual({ workspaceId: p1.workspaceId, name: p1.name, description: p1.description }, { workspaceId: ws, name: "One", description: "the first" });
    const p2 = await call(server, bob, "POST", `/workspaces/${ws}/projects`, { name: "Two" }, 201);
    assert.equal(p2.workspaceId, ws);
    await project(server, eveWs, eve, "Not Acme's");
    const projects = await call(server, dee, "GET", `/workspaces/${ws}/projects`, undefined, 200);
    assert.deepEqual(projects.items, [p1, p2]);
    assert.equal(projects.nextCursor, null);

    // Comments of a task: oldest first, paged by cursor.
    const task = await createTask(server, p1.id, ann, { title: "Discuss" });
    const comments = `/tasks/${task.id}/comments`;
    const c1 = await call(server, ann, "POST", comments, { body: "first" }, 201);
    const c2 = await call(server, bob, "POST", comments, { body: "second" }, 201);
    const c3 = await call(server, cy, "POST", comments, { body: "third" }, 201);
    assert.deepEqual([c1, c2, c3].map((x) => [x.taskId, x.authorId, x.body]), [
      [task.id, ann.id, "first"],
      [task.id, bob.id, "second"],
      [task.id, cy.id, "third"],
    ]);
    const listed = await call(server, dee, "GET", comments, undefined, 200);
    assert.deepEqual(listed, { items: [c1, c2, c3], nextCursor: null });
    const page1 = await call(server, bob, "GET", `${comments}?limit=2`, undefined, 200);
    assert.deepEqual(page1.items, [c1, c2]);
    assert.equal(typeof page1.nextCursor, "string");
    const page2 = await call(server, bob, "GET", `${comments}?limit=2&cursor=${encodeURIComponent(page1.nextCursor)}`, undefined, 200);
    assert.deepEqual(page2, { items: [c3], nextCursor: null });

    // A member who is not the author may neither edit nor delete.
    await refused(server, bob, "PATCH", `/comments/${c1.id}`, { body: "hijacked" }, 403, "forbidden");
    await refused(server, bob, "DELETE", `/comments/${c1.id}`, undefined, 403, "forbidden");
    await refused(server, cy, "PATCH", `/comments/${c2.id}`, { body: "hijacked" }, 403, "forbidden");
    assert.deepEqual((await call(server, ann, "GET", comments, undefined, 200)).items, [c1, c2, c3]);

    // An admin and the owner may, whoever wrote it.
    const byAdmin = await call(server, dee, "PATCH", `/comments/${c2.id}`, { body: "edited by an admin" }, 200);
    assert.deepEqual([byAdmin.id, byAdmin.authorId, byAdmin.body], [c2.id, bob.id, "edited by an admin"]);
    await call(server, dee, "DELETE", `/comments/${c1.id}`, undefined, 200);
    const byOwner = await call(server, ann, "PATCH", `/comments/${c3.id}`, { body: "edited by the owner" }, 200);
    assert.deepEqual([byOwner.id, byOwner.authorId, byOwner.body], [c3.id, cy.id, "edited by the owner"]);
    await refused(server, dee, "PATCH", `/comments/${c1.id}`, { body: "gone" }, 404, "not_found");
    const after = await call(server, bob, "GET", comments, undefined, 200);
    assert.deepEqual(after.items.map((x) => [x.id, x.authorId, x.body]), [
      [c2.id, bob.id, "edited by an admin"],
      [c3.id, cy.id, "edited by the owner"],
    ]);
    assert.equal(after.nextCursor, null);
  }));
