// Namespace /file-upload with the official socket.io-client (PROTOCOL.md
// section 6, README "Uploads and downloads"): chunked uploads in base64 and
// as binary attachments, progress on every device of the user, resuming from
// a new connection, downloading the bytes back over HTTP, and the errors a
// client sees for bad input.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { test } from "node:test";
import { withServer } from "./helpers/server.mjs";
import * as api from "./helpers/api.mjs";
import { ack, connectAs, Recorder, sleep, WAIT_MS } from "./helpers/client.mjs";

const T = { timeout: 60_000 };
const NSP = "/file-upload";
const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;
const UPLOAD_EVENTS = ["upload_progress", "upload_completed", "upload_error", "upload_cancelled", "chunk_error"];

const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");

/** `size` bytes of printable ASCII (text/plain: no NUL byte), different on every call. */
function textBytes(size) {
  const raw = crypto.randomBytes(size);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = i % 80 === 79 ? 0x0a : 0x20 + (raw[i] % 95);
  return out;
}

const chunkOf = (buf, i, size = CHUNK) => buf.subarray(i * size, Math.min(buf.length, (i + 1) * size));

function assertFailed(res, code, what) {
  assert.equal(res?.ok, false, `${what}: ${JSON.stringify(res)}`);
  assert.equal(res.error?.code, code, `${what}: ${JSON.stringify(res)}`);
}

const errorCode = (e) => (typeof e === "string" ? e : e?.code);

async function initiate(socket, params) {
  const res = await ack(socket, "initiate_upload", params);
  assert.equal(res?.ok, true, `initiate_upload ${params.uploadId}: ${JSON.stringify(res)}`);
  assert.equal(typeof res.sessionId, "string", "sessionId");
  return res;
}

async function sendChunk(socket, session, uploadId, buf, i, { binary = false, checksum = true } = {}) {
  const bytes = chunkOf(buf, i, session.chunkSize);
  const payload = {
    sessionId: session.sessionId,
    uploadId,
    chunkIndex: i,
    chunkData: binary ? Buffer.from(bytes) : bytes.toString("base64"),
  };
  if (checksum) payload.checksum = sha256(bytes);
  const res = await ack(socket, "upload_chunk", payload);
  assert.equal(res?.ok, true, `upload_chunk ${uploadId}#${i}: ${JSON.stringify(res)}`);
  assert.equal(res.chunkIndex, i, `upload_chunk ${uploadId}#${i}: chunkIndex in the ack`);
  return res;
}

async function complete(socket, session, uploadId) {
  const res = await ack(socket, "complete_upload", { sessionId: session.sessionId, uploadId });
  assert.equal(res?.ok, true, `complete_upload ${uploadId}: ${JSON.stringify(res)}`);
  assert.equal(typeof res.file?.id, "string", `complete_upload ${uploadId}: file`);
  return res.file;
}

/** GET the file's downloadUrl with the user's Bearer token; resolves to the bytes. */
async function download(server, user, file) {
  assert.equal(typeof file.downloadUrl, "string", `downloadUrl: ${JSON.stringify(file)}`);
  const url = new URL(file.downloadUrl, server.url).toString();
  const res = await fetch(url, {
    headers: { authorization: `Bearer ${user.token}` },
    signal: AbortSignal.timeout(10_000),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, `GET ${file.downloadUrl}: ${res.status} ${bytes.subarray(0, 300).toString()}`);
  return bytes;
}

function assertFile(file, { fileName, size, mimeType, hash }) {
  assert.equal(file.fileName, fileName, `fileName: ${JSON.stringify(file)}`);
  assert.equal(file.size, size, "size");
  assert.equal(file.mimeType, mimeType, "mimeType");
  assert.equal(file.sha256, hash, "sha256");
}

test("1 MiB in 64 KiB base64 chunks: the other device sees progress rise to 100, then upload_completed; the download has the same SHA-256", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const phone = await connectAs(server, ann, NSP, { auth: { deviceId: "phone" } });
    const laptop = await connectAs(server, ann, NSP, { auth: { deviceId: "laptop" }, transports: ["websocket"] });
    const watch = new Recorder(laptop, UPLOAD_EVENTS);
    const own = new Recorder(phone, ["chunk_error", "upload_error"]);

    const data = textBytes(MiB);
    const hash = sha256(data);
    const uploadId = api.randomId("up");
    const session = await initiate(phone, {
      uploadId,
      fileName: "notes.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    });
    assert.equal(session.chunkSize, CHUNK);
    assert.equal(session.totalChunks, 16);
    assert.deepEqual(session.receivedChunks, []);

    for (let i = 0; i < session.totalChunks; i++) await sendChunk(phone, session, uploadId, data, i);
    const file = await complete(phone, session, uploadId);
    assertFile(file, { fileName: "notes.txt", size: MiB, mimeType: "text/plain", hash });

    await watch.count("upload_completed", 1);
    await watch.until(
      (r) => r.payloads("upload_progress").some((p) => p.progress === 100),
      WAIT_MS,
      "upload_progress at 100 on the other device",
    );
    await sleep(300); // anything late would show up now
    const progress = watch.payloads("upload_progress").filter((p) => p.uploadId === uploadId);
    assert.ok(progress.length >= 1, "the other device got upload_progress");
    for (const p of progress) {
      assert.ok(Number.isInteger(p.progress) && p.progress >= 0 && p.progress <= 100, `progress ${JSON.stringify(p)}`);
      assert.equal(p.totalChunks, 16, `totalChunks ${JSON.stringify(p)}`);
    }
    for (let i = 1; i < progress.length; i++) {
      assert.ok(
        progress[i].progress >= progress[i - 1].progress,
        `progress decreased: ${JSON.stringify(progress.map((p) => p.progress))}`,
      );
      assert.ok(progress[i].completedChunks >= progress[i - 1].completedChunks, "completedChunks decreased");
    }
    const last = progress[progress.length - 1];
    assert.equal(last.progress, 100, `last progress: ${JSON.stringify(progress.map((p) => p.progress))}`);
    assert.equal(last.completedChunks, 16);
    assert.equal(last.bytesReceived, MiB);
    // The last progress event precedes the completion.
    const lastProgressAt = watch.events.findLastIndex((e) => e.event === "upload_progress");
    const completedAt = watch.events.findIndex((e) => e.event === "upload_completed");
    assert.ok(lastProgressAt < completedAt, `order: ${JSON.stringify(watch.events.map((e) => e.event))}`);

    const [completed] = watch.payloads("upload_completed");
    assert.equal(completed.uploadId, uploadId);
    assert.equal(completed.file.id, file.id);
    assertFile(completed.file, { fileName: "notes.txt", size: MiB, mimeType: "text/plain", hash });
    assert.equal(watch.of("upload_completed").length, 1, "upload_completed once");
    assert.equal(watch.of("upload_error").length + own.of("upload_error").length, 0, "no upload_error");
    assert.equal(watch.of("chunk_error").length + own.of("chunk_error").length, 0, "no chunk_error");

    const bytes = await download(server, ann, file);
    assert.equal(bytes.length, MiB, "downloaded length");
    assert.equal(sha256(bytes), hash, "downloaded SHA-256");

    // Initiating the completed uploadId again answers the file.
    const again = await ack(laptop, "initiate_upload", {
      uploadId,
      fileName: "notes.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    });
    assert.equal(again.ok, true, JSON.stringify(again));
    assert.equal(again.completed, true, JSON.stringify(again));
    assert.equal(again.file?.id, file.id);
  }));

test("an upload abandoned half-way resumes from a new connection: receivedChunks lists what was sent, only the rest is sent", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const data = textBytes(MiB);
    const hash = sha256(data);
    const uploadId = api.randomId("resume");
    const params = {
      uploadId,
      fileName: "half.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    };

    const first = await connectAs(server, ann, NSP, { auth: { deviceId: "phone" } });
    const s1 = await initiate(first, params);
    assert.equal(s1.totalChunks, 16);
    const sent = [];
    for (let i = 0; i < s1.totalChunks / 2; i++) {
      await sendChunk(first, s1, uploadId, data, i);
      sent.push(i);
    }
    first.disconnect();
    first.io.engine?.close();
    await sleep(300);

    const second = await connectAs(server, ann, NSP, { auth: { deviceId: "laptop" }, transports: ["websocket"] });
    const rec = new Recorder(second, UPLOAD_EVENTS);
    const s2 = await initiate(second, params);
    assert.equal(s2.sessionId, s1.sessionId, "resuming keeps the sessionId");
    assert.equal(s2.chunkSize, CHUNK);
    assert.equal(s2.totalChunks, 16);
    assert.deepEqual([...s2.receivedChunks].sort((a, b) => a - b), sent, "receivedChunks lists exactly the chunks sent");

    const have = new Set(s2.receivedChunks);
    for (let i = 0; i < s2.totalChunks; i++) if (!have.has(i)) await sendChunk(second, s2, uploadId, data, i);
    const file = await complete(second, s2, uploadId);
    assertFile(file, { fileName: "half.txt", size: MiB, mimeType: "text/plain", hash });
    await rec.count("upload_completed", 1);
    assert.equal(rec.of("chunk_error").length, 0, "no chunk_error");

    const bytes = await download(server, ann, file);
    assert.equal(sha256(bytes), hash, "downloaded SHA-256");
  }));

test("the server killed (SIGKILL) mid-upload: after a restart the upload resumes with every acknowledged chunk listed, and completes intact", T, () =>
  withServer(async (server) => {
    const bob = await api.externalUser(server.url, "Bob");
    const data = textBytes(MiB);
    const hash = sha256(data);
    const uploadId = api.randomId("crash");
    const params = {
      uploadId,
      fileName: "crash.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    };

    const first = await connectAs(server, bob, NSP, { transports: ["websocket"] });
    const s1 = await initiate(first, params);
    const sent = [];
    for (let i = 0; i < 10; i++) {
      await sendChunk(first, s1, uploadId, data, i);
      sent.push(i);
    }
    // A chunk's record is made durable at most 100 ms after its ack (README
    // "Group commit"); wait longer, then kill the process without warning.
    await sleep(500);
    first.disconnect();
    server.child.kill("SIGKILL");
    const { signal } = await server.exit;
    assert.equal(signal, "SIGKILL");
    await server.start();

    const second = await connectAs(server, bob, NSP, { transports: ["websocket"] });
    server.cleanups.push(() => second.disconnect());
    const s2 = await initiate(second, params);
    assert.equal(s2.sessionId, s1.sessionId, "the session survived the crash");
    assert.deepEqual([...s2.receivedChunks].sort((a, b) => a - b), sent, "every acknowledged chunk is listed");
    for (let i = sent.length; i < s2.totalChunks; i++) await sendChunk(second, s2, uploadId, data, i);
    const file = await complete(second, s2, uploadId);
    assertFile(file, { fileName: "crash.txt", size: MiB, mimeType: "text/plain", hash });
    assert.equal(sha256(await download(server, bob, file)), hash, "downloaded SHA-256");
  }));

test("binary chunks (chunkData as a Buffer attachment) upload the same bytes", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const s = await connectAs(server, ann, NSP);
    const rec = new Recorder(s, UPLOAD_EVENTS);
    // 3 full chunks and a short last one.
    const data = textBytes(3 * CHUNK + 1234);
    const hash = sha256(data);
    const uploadId = api.randomId("bin");
    const session = await initiate(s, {
      uploadId,
      fileName: "binary.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    });
    assert.equal(session.totalChunks, 4);
    for (let i = 0; i < session.totalChunks; i++) await sendChunk(s, session, uploadId, data, i, { binary: true });
    // A repeated chunk is accepted (idempotent).
    await sendChunk(s, session, uploadId, data, 1, { binary: true });
    const file = await complete(s, session, uploadId);
    assertFile(file, { fileName: "binary.txt", size: data.length, mimeType: "text/plain", hash });
    await rec.count("upload_completed", 1);
    assert.equal(rec.of("chunk_error").length, 0, `chunk_error: ${JSON.stringify(rec.payloads("chunk_error"))}`);

    const bytes = await download(server, ann, file);
    assert.equal(bytes.length, data.length);
    assert.equal(sha256(bytes), hash, "downloaded SHA-256");
  }));

test("chunks sent without waiting for their acks run side by side; complete_upload sent right after them waits for them", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const s = await connectAs(server, ann, NSP);
    const data = textBytes(24 * CHUNK + 77);
    const hash = sha256(data);
    const uploadId = api.randomId("par");
    const session = await initiate(s, {
      uploadId,
      fileName: "parallel.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    });
    // Every chunk, in reverse order, then complete_upload, all at once: the
    // chunks may be acknowledged in any order, complete_upload only after
    // all of them.
    const acked = [];
    const chunks = [];
    for (let i = session.totalChunks - 1; i >= 0; i--) {
      chunks.push(sendChunk(s, session, uploadId, data, i).then(() => acked.push(i)));
    }
    const done = ack(s, "complete_upload", { sessionId: session.sessionId, uploadId }).then((res) => ({
      res,
      ackedBefore: acked.length,
    }));
    await Promise.all(chunks);
    const { res, ackedBefore } = await done;
    assert.equal(res?.ok, true, `complete_upload: ${JSON.stringify(res)}`);
    assert.equal(ackedBefore, session.totalChunks, "complete_upload answered after every chunk");
    assertFile(res.file, { fileName: "parallel.txt", size: data.length, mimeType: "text/plain", hash });
    assert.equal(sha256(await download(server, ann, res.file)), hash, "downloaded SHA-256");
  }));

test("an expired upload is gone before the sweeper runs: initiating its id starts over, and it no longer counts toward the five", T, () =>
  // Sessions expire a second after their last chunk; the sweeper runs once an hour.
  withServer(
    { env: { HUDDLE__UPLOADS__SESSION_TTL_SECS: "1", HUDDLE__UPLOADS__SWEEP_INTERVAL_SECS: "3600" } },
    async (server) => {
      const ann = await api.externalUser(server.url, "Ann");
      const s = await connectAs(server, ann, NSP);
      const data = textBytes(2 * CHUNK);
      const params = (uploadId) => ({ uploadId, fileName: `${uploadId}.txt`, fileSize: data.length, mimeType: "text/plain", chunkSize: CHUNK });
      const ids = Array.from({ length: 5 }, () => api.randomId("exp"));
      const first = await initiate(s, params(ids[0]));
      await sendChunk(s, first, ids[0], data, 0);
      for (const id of ids.slice(1)) await initiate(s, params(id));
      assertFailed(await ack(s, "initiate_upload", params(api.randomId("sixth"))), "too_many_uploads", "a sixth while five live");
      // Resuming within the window keeps the session and its chunk.
      const again = await initiate(s, params(ids[0]));
      assert.equal(again.sessionId, first.sessionId);
      assert.deepEqual(again.receivedChunks, [0]);

      await sleep(1_500);
      const fresh = await initiate(s, params(ids[0]));
      assert.notEqual(fresh.sessionId, first.sessionId, "an expired session is not resumed");
      assert.deepEqual(fresh.receivedChunks, [], "nothing of the expired session is kept");
      // The other four expired too: they no longer count.
      for (let k = 0; k < 4; k++) await initiate(s, params(api.randomId("after")));
      assertFailed(await ack(s, "initiate_upload", params(api.randomId("sixth"))), "too_many_uploads", "five live again");
      // An empty file is bad input, not too large.
      assertFailed(await ack(s, "initiate_upload", { ...params(api.randomId("empty")), fileSize: 0 }), "bad_request", "fileSize 0");
    },
  ));

test("bad input: invalid base64, a sixth concurrent upload, completing with chunks missing", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const s = await connectAs(server, ann, NSP, { auth: { deviceId: "phone" } });
    const other = await connectAs(server, ann, NSP, { auth: { deviceId: "laptop" } });
    const rec = new Recorder(s, UPLOAD_EVENTS);
    const otherRec = new Recorder(other, UPLOAD_EVENTS);
    const data = textBytes(4 * CHUNK);
    const params = (uploadId) => ({
      uploadId,
      fileName: `${uploadId}.txt`,
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
    });

    // Invalid base64: a failed ack, chunk_error to the sender only, session intact.
    const badId = api.randomId("bad");
    const bad = await initiate(s, params(badId));
    const badRes = await ack(s, "upload_chunk", {
      sessionId: bad.sessionId,
      uploadId: badId,
      chunkIndex: 0,
      chunkData: "!!!! this is not base64 ####",
    });
    assertFailed(badRes, "bad_request", "invalid base64");
    await rec.count("chunk_error", 1);
    const [ce] = rec.payloads("chunk_error");
    assert.equal(ce.uploadId, badId, JSON.stringify(ce));
    assert.equal(ce.chunkIndex, 0, JSON.stringify(ce));
    assert.equal(errorCode(ce.error), "bad_request", `chunk_error.error: ${JSON.stringify(ce)}`);
    await sleep(200);
    assert.equal(otherRec.of("chunk_error").length, 0, "chunk_error reached another device");
    // No chunkData at all: the same, for chunk 1.
    const noData = await ack(s, "upload_chunk", { sessionId: bad.sessionId, uploadId: badId, chunkIndex: 1 });
    assertFailed(noData, "bad_request", "no chunkData");
    assert.match(noData.error?.message ?? "", /chunkData/, JSON.stringify(noData));
    await rec.count("chunk_error", 2);
    assert.equal(rec.payloads("chunk_error")[1].chunkIndex, 1, JSON.stringify(rec.payloads("chunk_error")));
    // The session stayed intact: the right chunks are accepted afterwards.
    await sendChunk(s, bad, badId, data, 0);
    await sendChunk(s, bad, badId, data, 1);

    // Completing with chunks missing: incomplete, missingChunks, session kept.
    const incId = api.randomId("inc");
    const inc = await initiate(s, params(incId));
    assert.equal(inc.totalChunks, 4);
    await sendChunk(s, inc, incId, data, 0);
    await sendChunk(s, inc, incId, data, 2);
    const incRes = await ack(s, "complete_upload", { sessionId: inc.sessionId, uploadId: incId });
    assertFailed(incRes, "incomplete", "complete with chunks missing");
    await rec.until(
      (r) => r.payloads("upload_error").some((p) => p.uploadId === incId),
      WAIT_MS,
      "upload_error incomplete",
    );
    const ue = rec.payloads("upload_error").find((p) => p.uploadId === incId);
    assert.equal(ue.error?.code, "incomplete", JSON.stringify(ue));
    assert.deepEqual([...ue.error.missingChunks].sort((a, b) => a - b), [1, 3], JSON.stringify(ue));
    // upload_error goes to every device of the user.
    await otherRec.until(
      (r) => r.payloads("upload_error").some((p) => p.uploadId === incId),
      WAIT_MS,
      "upload_error on the other device",
    );
    // The session was kept: resuming lists the two chunks, and finishing works.
    const incAgain = await initiate(other, params(incId));
    assert.equal(incAgain.sessionId, inc.sessionId);
    assert.deepEqual([...incAgain.receivedChunks].sort((a, b) => a - b), [0, 2]);
    await sendChunk(other, incAgain, incId, data, 1);
    await sendChunk(other, incAgain, incId, data, 3);
    const incFile = await complete(other, incAgain, incId);
    assert.equal(incFile.sha256, sha256(data));

    // In progress now: bad (1). Four more make five; the sixth is refused.
    const ids = [badId];
    const sessions = { [badId]: bad };
    for (let k = 0; k < 4; k++) {
      const id = api.randomId("many");
      sessions[id] = await initiate(s, params(id));
      ids.push(id);
    }
    const sixth = await ack(s, "initiate_upload", params(api.randomId("sixth")));
    assertFailed(sixth, "too_many_uploads", "sixth concurrent upload");
    // Resuming one of the five is not a new upload.
    const resumed = await initiate(other, params(ids[1]));
    assert.equal(resumed.sessionId, sessions[ids[1]].sessionId);

    // Cancelling one frees a place.
    const cancelled = ids[4];
    const cRes = await ack(s, "cancel_upload", {
      sessionId: sessions[cancelled].sessionId,
      uploadId: cancelled,
      reason: "user",
    });
    assert.equal(cRes?.ok, true, `cancel_upload: ${JSON.stringify(cRes)}`);
    await otherRec.until(
      (r) => r.payloads("upload_cancelled").some((p) => p.uploadId === cancelled),
      WAIT_MS,
      "upload_cancelled on the other device",
    );
    await initiate(s, params(api.randomId("after-cancel")));

    assert.equal(s.connected, true, "the connection survived the bad input");
  }));

test("a whole-file sha256 that the bytes do not match: complete_upload answers checksum_mismatch and the session is discarded, so the uploadId starts over", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const s = await connectAs(server, ann, NSP);
    const data = textBytes(3 * CHUNK + 100);
    // The declared SHA-256 is that of the same bytes with one changed.
    const other = Buffer.from(data);
    other[other.length - 1] = other[other.length - 1] === 0x41 ? 0x42 : 0x41;
    const params = {
      uploadId: api.randomId("sum"),
      fileName: "sum.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: sha256(other),
    };
    assert.notEqual(params.sha256, sha256(data));

    const first = await initiate(s, params);
    assert.equal(first.totalChunks, 4);
    // Every chunk is right (its own checksum matches): only the whole file is not.
    for (let i = 0; i < first.totalChunks; i++) await sendChunk(s, first, params.uploadId, data, i);
    const res = await ack(s, "complete_upload", { sessionId: first.sessionId, uploadId: params.uploadId });
    assertFailed(res, "checksum_mismatch", "complete_upload with a wrong sha256");

    // Discarded: the same uploadId is a new session holding nothing.
    const again = await initiate(s, params);
    assert.notEqual(again.sessionId, first.sessionId, "the discarded session is not resumed");
    assert.deepEqual(again.receivedChunks, [], "nothing of the discarded session is kept");
    assert.equal(again.totalChunks, 4);
  }));

test("re-initiating a known uploadId with a different chunkSize or a different sha256 is a conflict, and the session stays as it was", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const phone = await connectAs(server, ann, NSP, { auth: { deviceId: "phone" } });
    const laptop = await connectAs(server, ann, NSP, { auth: { deviceId: "laptop" } });
    const data = textBytes(4 * CHUNK);
    const hash = sha256(data);
    const params = {
      uploadId: api.randomId("conf"),
      fileName: "conf.txt",
      fileSize: data.length,
      mimeType: "text/plain",
      chunkSize: CHUNK,
      sha256: hash,
    };
    const session = await initiate(phone, params);
    await sendChunk(phone, session, params.uploadId, data, 0);
    await sendChunk(phone, session, params.uploadId, data, 1);

    assertFailed(
      await ack(phone, "initiate_upload", { ...params, chunkSize: CHUNK / 2 }),
      "conflict",
      "a different chunkSize",
    );
    assertFailed(
      await ack(laptop, "initiate_upload", { ...params, sha256: sha256(textBytes(data.length)) }),
      "conflict",
      "a different sha256, from another device",
    );

    // Neither changed the session: it resumes with its chunks and completes.
    const resumed = await initiate(laptop, params);
    assert.equal(resumed.sessionId, session.sessionId);
    assert.equal(resumed.chunkSize, CHUNK);
    assert.equal(resumed.totalChunks, 4);
    assert.deepEqual([...resumed.receivedChunks].sort((a, b) => a - b), [0, 1]);
    await sendChunk(laptop, resumed, params.uploadId, data, 2);
    await sendChunk(laptop, resumed, params.uploadId, data, 3);
    const file = await complete(laptop, resumed, params.uploadId);
    assertFile(file, { fileName: "conf.txt", size: data.length, mimeType: "text/plain", hash });
  }));

test("text/plain whose second chunk holds a NUL byte: chunk_error unsupported_media_type to the sender, upload_error to every device, the session is discarded", T, () =>
  withServer(async (server) => {
    const ann = await api.externalUser(server.url, "Ann");
    const phone = await connectAs(server, ann, NSP, { auth: { deviceId: "phone" } });
    const laptop = await connectAs(server, ann, NSP, { auth: { deviceId: "laptop" } });
    const rec = new Recorder(phone, UPLOAD_EVENTS);
    const otherRec = new Recorder(laptop, UPLOAD_EVENTS);
    const data = textBytes(3 * CHUNK);
    data[CHUNK + 500] = 0x00;
    const uploadId = api.randomId("nul");
    const params = { uploadId, fileName: "nul.txt", fileSize: data.length, mimeType: "text/plain", chunkSize: CHUNK };

    const session = await initiate(phone, params);
    await sendChunk(phone, session, uploadId, data, 0);
    const bytes = chunkOf(data, 1);
    const res = await ack(phone, "upload_chunk", {
      sessionId: session.sessionId,
      uploadId,
      chunkIndex: 1,
      chunkData: bytes.toString("base64"),
      checksum: sha256(bytes),
    });
    assertFailed(res, "unsupported_media_type", "a NUL byte in chunk 1 of text/plain");

    await rec.count("chunk_error", 1);
    const [ce] = rec.payloads("chunk_error");
    assert.equal(ce.uploadId, uploadId, JSON.stringify(ce));
    assert.equal(ce.chunkIndex, 1, JSON.stringify(ce));
    assert.equal(errorCode(ce.error), "unsupported_media_type", JSON.stringify(ce));
    for (const [who, r] of [["the sender", rec], ["the other device", otherRec]]) {
      await r.until((x) => x.payloads("upload_error").some((p) => p.uploadId === uploadId), WAIT_MS, `upload_error on ${who}`);
      const ue = r.payloads("upload_error").find((p) => p.uploadId === uploadId);
      assert.equal(ue.error?.code, "unsupported_media_type", `${who}: ${JSON.stringify(ue)}`);
    }
    await sleep(200);
    assert.equal(otherRec.of("chunk_error").length, 0, "chunk_error reached another device");

    // Discarded: the uploadId starts over with a new, empty session.
    const again = await initiate(laptop, params);
    assert.notEqual(again.sessionId, session.sessionId, "the discarded session is not resumed");
    assert.deepEqual(again.receivedChunks, [], "nothing of the discarded session is kept");
  }));
