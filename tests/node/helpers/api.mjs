// HTTP helpers for the client tests: the account and conversation endpoints
// of PROTOCOL.md sections 2 and 7, called with fetch exactly as an app would,
// and HS256 tokens minted with node's crypto, as another service sharing
// JWT_SECRET would (for expired, foreign and wrongly signed tokens).

import crypto from "node:crypto";
import { JWT_SECRET } from "./server.mjs";

const HTTP_TIMEOUT_MS = 10_000;

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** Signs `claims` as an HS256 JWT with `secret`. */
export function signJwt(claims, secret = JWT_SECRET) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac("sha256", secret).update(`${header}.${body}`).digest();
  return `${header}.${body}.${b64url(sig)}`;
}

const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * An access token for `sub` as another service would issue it: `exp` in
 * `ttl` seconds (negative: already expired), optional `name`.
 */
export function mintToken({ sub, name, ttl = 3600, secret = JWT_SECRET, extra = {} } = {}) {
  const claims = { sub: sub ?? randomId("ext"), exp: nowSecs() + ttl, iat: nowSecs(), ...extra };
  if (name !== undefined) claims.name = name;
  return signJwt(claims, secret);
}

/** A fresh id with a readable prefix. */
export function randomId(prefix = "u") {
  return `${prefix}-${crypto.randomBytes(6).toString("hex")}`;
}

/**
 * One HTTP request: resolves to `{ status, headers, body }` (body parsed as
 * JSON when it is JSON, else text).
 */
export async function request(baseUrl, method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h["content-type"] = "application/json";
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  const text = await res.text();
  let parsed = text;
  if ((res.headers.get("content-type") ?? "").includes("json") && text.length > 0) {
    parsed = JSON.parse(text);
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Throws with the response when the status is not the expected one. */
export function expectStatus(res, status, what = "request") {
  if (res.status !== status) {
    throw new Error(`${what}: expected HTTP ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  }
  return res.body;
}

export const register = (baseUrl, body) => request(baseUrl, "POST", "/api/v1/auth/register", { body });
export const login = (baseUrl, body) => request(baseUrl, "POST", "/api/v1/auth/login", { body });
export const refresh = (baseUrl, refreshToken) =>
  request(baseUrl, "POST", "/api/v1/auth/refresh", { body: { refreshToken } });
export const me = (baseUrl, token) => request(baseUrl, "GET", "/api/v1/auth/me", { token });

/**
 * A user for a test, the way a deployment with its own identity service
 * makes one: a token with a new `sub`, whose first use creates the record.
 * Resolves to `{ id, name, token }`.
 */
export async function externalUser(baseUrl, name = "User") {
  const id = randomId(name.toLowerCase().replace(/[^a-z0-9]/g, "") || "u");
  const token = mintToken({ sub: id, name });
  const body = expectStatus(await me(baseUrl, token), 200, "GET /auth/me");
  if (body.id !== id) throw new Error(`GET /auth/me answered id ${body.id}, wanted ${id}`);
  return { id, name, token };
}

/** Registers a user with a password account. Resolves to `{ id, name, email, password, token, refreshToken, user }`. */
export async function registeredUser(baseUrl, name = "User") {
  const email = `${randomId(name.toLowerCase())}@example.test`;
  const password = "correct horse battery staple";
  const body = expectStatus(await register(baseUrl, { email, password, name }), 201, "register");
  return {
    id: body.user.id,
    name,
    email,
    password,
    token: body.accessToken,
    refreshToken: body.refreshToken,
    user: body.user,
  };
}

/** POST /conversations as `owner` with `members` (user objects or ids); resolves to the conversation. */
export async function createConversation(baseUrl, owner, members, { title } = {}) {
  const memberIds = members.map((m) => (typeof m === "string" ? m : m.id));
  const body = { memberIds };
  if (title !== undefined) body.title = title;
  const res = await request(baseUrl, "POST", "/api/v1/conversations", { token: owner.token, body });
  if (res.status !== 201 && res.status !== 200) expectStatus(res, 201, "POST /conversations");
  return res.body;
}

/** GET /conversations/{id}/messages with `before`/`limit`; resolves to the response. */
export function history(baseUrl, user, conversationId, { before, limit } = {}) {
  const q = new URLSearchParams();
  if (before !== undefined) q.set("before", String(before));
  if (limit !== undefined) q.set("limit", String(limit));
  const qs = q.toString();
  return request(
    baseUrl,
    "GET",
    `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages${qs ? `?${qs}` : ""}`,
    { token: user.token },
  );
}
