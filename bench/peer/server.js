// The Node.js peer of huddle-bench: a plain Socket.IO 4.8 server with the
// part of huddle's /chat contract the benchmark uses, written as teams write
// it today — default settings, no tuning. With REDIS_URL set it uses the
// official Redis adapter, so several of these form one cluster.
//
//   PORT=3100 JWT_SECRET=... [REDIS_URL=redis://127.0.0.1:6379] node server.js
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const jwt = require("jsonwebtoken");

const port = Number(process.env.PORT || 3100);
const secret = process.env.JWT_SECRET;
if (!secret) {
  console.error("JWT_SECRET is required");
  process.exit(1);
}

const httpServer = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
    return;
  }
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer);

// Per-conversation message counter (in memory, per node).
const seqs = new Map();
let nextId = 0;

const chat = io.of("/chat");

chat.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  try {
    const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
    socket.data.userId = claims.sub;
    socket.data.name = claims.name || claims.sub;
    next();
  } catch (e) {
    const err = new Error("unauthorized");
    err.data = { code: e.name === "TokenExpiredError" ? "token_expired" : "unauthorized" };
    next(err);
  }
});

const fail = (code, message) => ({ ok: false, error: { code, message } });

chat.on("connection", (socket) => {
  socket.join(`user:${socket.data.userId}`);

  socket.on("conversation:join", (payload, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    const id = payload && payload.conversationId;
    if (typeof id !== "string" || id === "") {
      reply(fail("bad_request", "conversationId is required"));
      return;
    }
    socket.join(`conversation:${id}`);
    reply({ ok: true, lastSeq: seqs.get(id) || 0 });
  });

  socket.on("conversation:leave", (payload, ack) => {
    const id = payload && payload.conversationId;
    if (typeof id === "string") socket.leave(`conversation:${id}`);
    if (typeof ack === "function") ack({ ok: true });
  });

  socket.on("send_message", (payload, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    const { conversationId, text, clientId } = payload || {};
    if (typeof conversationId !== "string" || typeof text !== "string" || text.length === 0) {
      reply(fail("bad_request", "conversationId and text are required"));
      return;
    }
    const seq = (seqs.get(conversationId) || 0) + 1;
    seqs.set(conversationId, seq);
    nextId += 1;
    const message = {
      id: `${port}-${nextId}`,
      seq,
      conversationId,
      senderId: socket.data.userId,
      text,
      clientId: typeof clientId === "string" ? clientId : null,
      createdAt: new Date().toISOString(),
    };
    chat.to(`conversation:${conversationId}`).emit("new_message", message);
    reply({ ok: true, message });
  });
});

async function main() {
  if (process.env.REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
    console.error(`peer: Redis adapter on ${process.env.REDIS_URL}`);
  }
  httpServer.listen(port, "127.0.0.1", () => console.error(`peer: listening on 127.0.0.1:${port}`));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

const stop = () => io.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
