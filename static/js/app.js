// huddle test page: every feature of the client contract, by hand.
// HTTP calls go to /api/v1 with the access token; realtime goes through one
// Socket.IO connection (sio.js) multiplexing "/", "/chat" and "/file-upload".

import { Manager } from "./sio.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c != null) node.append(c);
  return node;
};
const STATUSES = [["todo", "To do"], ["in_progress", "In progress"], ["in_review", "In review"], ["done", "Done"]];
const state = {
  user: null, ws: null, project: null, task: null, conv: null,
  tasks: new Map(), members: new Map(), convs: [], reads: new Map(),
  uploads: new Map(), // uploadId → { row, file?, paused, sessionId, ... }
};
const showError = (id, err) => { $(id).textContent = err ? (err.message || String(err)) : ""; };

// ------------------------------------------------------------- event log
const logList = $("#log");
function log(kind, text) {
  if (/^(ping|pong)$/.test(text.split(" ").pop()) && !$("#log-heartbeat").checked) return;
  const t = new Date().toLocaleTimeString([], { hour12: false });
  logList.append(el("li", { className: kind }, el("span", { className: "t", textContent: t }), text));
  while (logList.children.length > 500) logList.firstChild.remove();
  logList.scrollTop = logList.scrollHeight;
}
$("#log-clear").onclick = () => logList.replaceChildren();

// ------------------------------------------------------------- HTTP
const tokens = {
  get access() { return localStorage.getItem("huddle.access"); },
  get refresh() { return localStorage.getItem("huddle.refresh"); },
  set(a, r) { localStorage.setItem("huddle.access", a); localStorage.setItem("huddle.refresh", r); },
  clear() { localStorage.removeItem("huddle.access"); localStorage.removeItem("huddle.refresh"); },
};

let refreshing = null;
/** Trades the refresh token for new ones (once at a time; another tab may have done it already). */
async function refreshTokens() {
  refreshing ??= (async () => {
    const before = tokens.refresh;
    const res = await fetch("/api/v1/auth/refresh", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refreshToken: before }) });
    if (res.ok) { const body = await res.json(); tokens.set(body.accessToken, body.refreshToken); return; }
    if (tokens.refresh !== before) return; // rotated by another tab meanwhile
    throw new Error("session expired: log in again");
  })().finally(() => { refreshing = null; });
  return refreshing;
}

async function api(method, path, body, retry = true) {
  const headers = { authorization: `Bearer ${tokens.access}` };
  const init = { method, headers };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  log("out", `HTTP ${method} ${path}`);
  const res = await fetch(`/api/v1${path}`, init);
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  log(res.ok ? "in" : "err", `HTTP ${res.status} ${method} ${path}`);
  if (res.status === 401 && retry && tokens.refresh) { await refreshTokens(); return api(method, path, body, false); }
  if (!res.ok) throw new Error(data?.error?.message || `${method} ${path}: HTTP ${res.status}`);
  return data;
}

// ------------------------------------------------------------- auth
$("#auth-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const mode = ev.submitter?.value || "login";
  const body = { email: form.email.value, password: form.password.value };
  if (mode === "register") body.name = form.name.value || form.email.value.split("@")[0];
  showError("#auth-error");
  try {
    const res = await fetch(`/api/v1/auth/${mode}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) throw new Error(data?.error?.message || `HTTP ${res.status}`);
    tokens.set(data.accessToken, data.refreshToken);
    localStorage.setItem("huddle.user", JSON.stringify(data.user));
    start(data.user);
  } catch (err) { showError("#auth-error", err); }
});
$("#logout").onclick = () => { tokens.clear(); localStorage.removeItem("huddle.user"); location.reload(); };

// ------------------------------------------------------------- sockets
let manager, root, chat, files;
function connect() {
  manager = new Manager(location.origin);
  const auth = () => ({ token: tokens.access, deviceId: `web-${sessionStorage.tab ??= Math.random().toString(36).slice(2, 8)}` });
  root = manager.socket("/", { auth });
  chat = manager.socket("/chat", { auth });
  files = manager.socket("/file-upload", { auth });
  const conn = $("#conn"), tr = $("#transport");
  // Tokens stay out of the log (it is for reading, and for screenshots).
  const redact = (text) => text.replace(/"(token|accessToken|refreshToken)":"[^"]*"/g, '"$1":"…"');
  manager.on("packet", (dir, nsp, text) => log(nsp === "engine" ? "sys" : dir, `${dir === "out" ? "→" : "←"} ${nsp === "engine" ? "eio" : nsp} ${redact(text)}`));
  manager.on("transport", (t) => { tr.textContent = t; log("sys", `transport: ${t}`); });
  manager.on("upgrade", (t) => { tr.textContent = `polling → ${t}`; log("sys", `upgraded to ${t}`); });
  manager.on("close", (reason) => { conn.textContent = "disconnected"; conn.className = "badge off"; log("err", `connection closed: ${reason}`); });
  manager.on("reconnect_attempt", (n, ms) => { conn.textContent = `reconnecting (#${n})`; conn.className = "badge wait"; log("sys", `reconnecting in ${ms} ms (attempt ${n})`); });
  for (const s of [root, chat, files]) {
    s.on("connect", () => {
      log("sys", `${s.nsp} connected (sid ${s.id}${s.recovered ? ", state recovered" : ""})`);
      if (s === root) { conn.textContent = "connected"; conn.className = "badge on"; $("#recovered").hidden = !s.recovered; }
      if (!s.recovered) rejoin(s); // a recovered socket is still in its rooms
    });
    s.on("connect_error", async (err) => {
      log("err", `${s.nsp} connect error: ${err.message} (${err.data?.code})`);
      if (err.data?.code === "token_expired") { try { await refreshTokens(); s.connect(); } catch (e) { showError("#auth-error", e); } }
    });
    s.on("disconnect", (reason) => log("sys", `${s.nsp} disconnected: ${reason}`));
    s.on("error", (e) => log("err", `${s.nsp} error event: ${e.code} ${e.message}`));
    s.connect();
  }
  $("#drop").hidden = false;
  $("#drop").onclick = () => manager.dropTransport();
  bindRoot(); bindChat(); bindUploads();
}

/** After a fresh (not recovered) connect, join the rooms the page shows again. */
function rejoin(s) {
  if (s === root && state.ws) joinBoardRooms();
  if (s === root && state.task) root.request("room:join", { taskId: state.task.id });
  if (s === chat && state.conv) chat.request("conversation:join", { conversationId: state.conv.id });
}

// ------------------------------------------------------------- workspaces
async function loadWorkspaces() {
  try {
    const { items } = await api("GET", "/workspaces");
    $("#ws-list").replaceChildren(...items.map((w) => el("li", { textContent: w.name, className: state.ws?.id === w.id ? "active" : "", onclick: () => openWorkspace(w) })));
    if (!items.length) $("#ws-list").append(el("li", { className: "hint", textContent: "No workspace yet: create one." }));
    showError("#ws-error");
    return items;
  } catch (err) { showError("#ws-error", err); return []; }
}
$("#ws-refresh").onclick = loadWorkspaces;
$("#ws-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { const w = await api("POST", "/workspaces", { name: ev.target.name.value }); ev.target.reset(); await loadWorkspaces(); openWorkspace(w); }
  catch (err) { showError("#ws-error", err); }
});

async function openWorkspace(w) {
  localStorage.setItem("huddle.ws", w.id);
  state.ws = w; state.project = null; state.tasks.clear();
  $("#ws-panel").hidden = false; $("#search-form").hidden = false;
  $("#search-results").replaceChildren();
  renderConversations();
  renderBoard(); loadWorkspaces();
  await Promise.all([loadProjects(), loadMembers()]);
  joinBoardRooms();
}
async function joinBoardRooms() {
  const ack = await root.request("room:join", { workspaceId: state.ws.id, ...(state.project ? { projectId: state.project.id } : {}) });
  if (!ack.ok) showError("#board-error", ack.error);
}
async function loadProjects() {
  try {
    const { items } = await api("GET", `/workspaces/${state.ws.id}/projects`);
    if (!state.project) { const last = items.find((p) => p.id === localStorage.getItem("huddle.project")); if (last) openProject(last); }
    $("#project-list").replaceChildren(...items.map((p) => el("li", { textContent: p.name, className: state.project?.id === p.id ? "active" : "", onclick: () => openProject(p) })));
  } catch (err) { showError("#ws-panel-error", err); }
}
$("#project-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { const p = await api("POST", `/workspaces/${state.ws.id}/projects`, { name: ev.target.name.value }); ev.target.reset(); await loadProjects(); openProject(p); }
  catch (err) { showError("#ws-panel-error", err); }
});
async function loadMembers() {
  try {
    const { items } = await api("GET", `/workspaces/${state.ws.id}/members`);
    const before = state.members;
    state.members = new Map(items.map((m) => [m.userId, { ...m, status: before.get(m.userId)?.status ?? (m.userId === state.user.id ? "online" : "") }]));
    renderMembers();
  } catch (err) { showError("#ws-panel-error", err); }
}
function renderMembers() {
  const list = [...state.members.values()];
  $("#member-list").replaceChildren(...list.map((m) => el("li", {}, el("span", { className: `dot ${m.status || ""}` }), m.name, el("span", { className: "hint", textContent: m.role }))));
  const others = list.filter((m) => m.userId !== state.user.id);
  $("#conv-form").hidden = !others.length; // a chat needs someone else: add a member first
  $("#conv-form").member.replaceChildren(...others.map((m) => el("option", { value: m.userId, textContent: m.name })));
  $("#task-assignee").replaceChildren(el("option", { value: "", textContent: "nobody" }), ...list.map((m) => el("option", { value: m.userId, textContent: m.name })));
  if (state.task) $("#task-assignee").value = state.task.assigneeId || "";
  if (state.convs.length) renderConversations();
}
$("#member-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await api("POST", `/workspaces/${state.ws.id}/members`, { email: ev.target.email.value, role: "member" }); ev.target.reset(); loadMembers(); showError("#ws-panel-error"); }
  catch (err) { showError("#ws-panel-error", err); }
});

// ------------------------------------------------------------- board
async function openProject(p) {
  localStorage.setItem("huddle.project", p.id);
  state.project = p;
  $("#board-title").textContent = `Task board — ${p.name}`;
  $("#task-form").hidden = false;
  loadProjects();
  await joinBoardRooms();
  try {
    const { items } = await api("GET", `/projects/${p.id}/tasks?limit=200`);
    state.tasks = new Map(items.map((t) => [t.id, t]));
    renderBoard();
  } catch (err) { showError("#board-error", err); }
}
function renderBoard(flashId) {
  const board = $("#board");
  if (!state.project) { board.replaceChildren(); return; }
  board.replaceChildren(...STATUSES.map(([status, label], i) => {
    const tasks = [...state.tasks.values()].filter((t) => t.status === status);
    const col = el("div", { className: "column" }, el("h3", {}, label, el("span", { textContent: tasks.length })));
    col.dataset.status = status;
    col.ondragover = (e) => { e.preventDefault(); col.classList.add("over"); };
    col.ondragleave = () => col.classList.remove("over");
    col.ondrop = (e) => { e.preventDefault(); col.classList.remove("over"); moveTask(e.dataTransfer.getData("text/task"), status); };
    for (const t of tasks) {
      const card = el("div", { className: `task${t.id === flashId ? " flash" : ""}`, draggable: true, onclick: () => openTask(t) },
        el("div", { className: "title", textContent: t.title }),
        el("div", { className: "meta" }, el("span", { className: `prio ${t.priority}`, textContent: t.priority }),
          t.attachments?.length ? `${t.attachments.length} file(s)` : null,
          el("span", { className: "moves" },
            i > 0 ? el("button", { textContent: "◀", title: `Move to ${STATUSES[i - 1][1]}`, onclick: (e) => { e.stopPropagation(); moveTask(t.id, STATUSES[i - 1][0]); } }) : null,
            i < 3 ? el("button", { textContent: "▶", title: `Move to ${STATUSES[i + 1][1]}`, onclick: (e) => { e.stopPropagation(); moveTask(t.id, STATUSES[i + 1][0]); } }) : null)));
      card.dataset.taskId = t.id;
      card.ondragstart = (e) => e.dataTransfer.setData("text/task", t.id);
      col.append(card);
    }
    return col;
  }));
}
async function moveTask(id, status) {
  try { showError("#board-error"); await api("PATCH", `/tasks/${id}`, { status }); }
  catch (err) { showError("#board-error", err); }
}
$("#task-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  try { await api("POST", `/projects/${state.project.id}/tasks`, { title: f.title.value, priority: f.priority.value }); f.reset(); showError("#board-error"); }
  catch (err) { showError("#board-error", err); }
});

function bindRoot() {
  const onTask = (ev) => (d) => {
    if (d.projectId !== state.project?.id) return;
    if (ev === "task:deleted") state.tasks.delete(d.task.id); else state.tasks.set(d.task.id, d.task);
    renderBoard(d.task.id);
    if (state.task?.id === d.task.id) { state.task = d.task; renderTaskMeta(); }
  };
  for (const ev of ["task:created", "task:updated", "task:moved", "task:deleted"]) root.on(ev, onTask(ev));
  root.on("comment:created", (d) => { if (d.taskId === state.task?.id) appendComment(d.comment); });
  root.on("comment:updated", (d) => { if (d.taskId === state.task?.id) openTask(state.task); });
  root.on("comment:deleted", (d) => { if (d.taskId === state.task?.id) openTask(state.task); });
  for (const ev of ["member:joined", "member:left", "member:role_changed"]) root.on(ev, (d) => { if (d.workspaceId === state.ws?.id) loadMembers(); });
  const presence = (d) => { const m = state.members.get(d.userId); if (m) { m.status = d.status === "offline" ? "" : d.status; renderMembers(); } };
  root.on("presence:user_online", presence);
  root.on("presence:user_offline", (d) => presence({ ...d, status: "offline" }));
  root.on("presence:users_viewing", (d) => { if (d.taskId === state.task?.id) $("#task-viewers").textContent = `Viewing: ${d.users.map((u) => u.name).join(", ")}`; });
  const typers = new Map();
  root.on("typing:user_typing", (d) => { if (d.taskId === state.task?.id) { typers.set(d.userId, d.name); showTypers("#task-typing", typers); } });
  root.on("typing:user_stopped", (d) => { typers.delete(d.userId); showTypers("#task-typing", typers); });
  root.on("notification", (n) => { setUnread(n.unreadCount); if (!$("#notif-panel").hidden) loadNotifications(); });
}
const showTypers = (id, typers) => { $(id).textContent = typers.size ? `${[...typers.values()].join(", ")} ${typers.size > 1 ? "are" : "is"} typing…` : ""; };

// ------------------------------------------------------------- task detail and comments
async function openTask(t) {
  if (state.task && state.task.id !== t.id) root.request("room:leave", { taskId: state.task.id });
  state.task = t;
  $("#task-panel").hidden = false;
  renderTaskMeta();
  $("#task-viewers").textContent = ""; $("#task-typing").textContent = "";
  const ack = await root.request("room:join", { taskId: t.id });
  if (!ack.ok) return showError("#task-error", ack.error);
  root.emit("presence:viewing", { taskId: t.id });
  try {
    const { items } = await api("GET", `/tasks/${t.id}/comments?limit=100`);
    $("#comment-list").replaceChildren();
    items.forEach(appendComment);
  } catch (err) { showError("#task-error", err); }
}
function renderTaskMeta() {
  const t = state.task;
  $("#task-assignee").value = t.assigneeId || "";
  $("#task-priority").value = t.priority;
  $("#task-title").textContent = t.title;
  $("#task-meta").textContent = `${STATUSES.find(([s]) => s === t.status)?.[1]} · ${t.priority} priority${t.attachments?.length ? ` · ${t.attachments.length} attachment(s)` : ""}`;
}
function appendComment(c) {
  const who = state.members.get(c.authorId)?.name || c.authorName || "someone";
  $("#comment-list").append(el("li", {}, el("span", { className: "who", textContent: who }), c.body));
}
const patchTask = async (patch) => {
  try { await api("PATCH", `/tasks/${state.task.id}`, patch); showError("#task-error"); } catch (err) { showError("#task-error", err); renderTaskMeta(); }
};
$("#task-assignee").onchange = (e) => patchTask({ assigneeId: e.target.value || null });
$("#task-priority").onchange = (e) => patchTask({ priority: e.target.value });
$("#task-delete").onclick = async () => {
  try { await api("DELETE", `/tasks/${state.task.id}`); $("#task-close").click(); } catch (err) { showError("#task-error", err); }
};
$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const { items, total } = await api("GET", `/workspaces/${state.ws.id}/search?q=${encodeURIComponent(ev.target.q.value)}&limit=10`);
    $("#search-results").replaceChildren(el("li", { className: "hint", textContent: `${total} result(s)` }),
      ...items.map((t) => el("li", { textContent: `${t.title} — ${STATUSES.find(([s]) => s === t.status)?.[1]}`, onclick: () => openTask(t) })));
  } catch (err) { showError("#board-error", err); }
});
$("#task-close").onclick = () => { root.request("room:leave", { taskId: state.task.id }); state.task = null; $("#task-panel").hidden = true; };
typingEmitter($("#comment-form").body, () => root, () => state.task && { taskId: state.task.id });
$("#comment-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { await api("POST", `/tasks/${state.task.id}/comments`, { body: ev.target.body.value }); root.emit("typing:stop", { taskId: state.task.id }); ev.target.reset(); showError("#task-error"); }
  catch (err) { showError("#task-error", err); }
});

/** typing:start on input (at most every 2 s), typing:stop after 3 s idle or on submit. */
function typingEmitter(input, socket, payload) {
  let last = 0, idle;
  input.addEventListener("input", () => {
    const p = payload(); if (!p) return;
    if (Date.now() - last > 2000) { socket().emit("typing:start", p); last = Date.now(); }
    clearTimeout(idle);
    idle = setTimeout(() => { socket().emit("typing:stop", p); last = 0; }, 3000);
  });
}

// ------------------------------------------------------------- notifications
const setUnread = (n) => { $("#unread").textContent = n; $("#unread").className = n ? "count" : "count zero"; };
async function loadNotifications() {
  try {
    const { items } = await api("GET", "/notifications");
    $("#notif-list").replaceChildren(...items.map((n) => el("li", { className: n.read ? "" : "unread", onclick: async () => { await api("POST", `/notifications/${n.id}/read`); loadNotifications(); } },
      n.title, el("small", { textContent: `${n.body} · ${new Date(n.createdAt).toLocaleString()}` }))));
    if (!items.length) $("#notif-list").append(el("li", { className: "hint", textContent: "Nothing yet. Assign a task, comment, or @mention someone." }));
    const unread = await api("GET", "/notifications?unread=true");
    setUnread(unread.items.length);
  } catch (err) { $("#notif-list").replaceChildren(el("li", { className: "error", textContent: err.message })); }
}
$("#bell").onclick = () => { const p = $("#notif-panel"); p.hidden = !p.hidden; if (!p.hidden) loadNotifications(); };
$("#notif-read-all").onclick = async () => { await api("POST", "/notifications/read-all"); loadNotifications(); };

// ------------------------------------------------------------- chat
async function loadConversations() {
  try {
    const { items } = await api("GET", "/conversations");
    state.convs = items;
    renderConversations();
    if (!state.conv) { const last = items.find((c) => c.id === localStorage.getItem("huddle.conv")); if (last) openConversation(last); }
    showError("#conv-error");
  } catch (err) { showError("#conv-error", err); }
}
function renderConversations() {
  $("#conv-list").replaceChildren(...state.convs.map((c) => el("li", { textContent: convTitle(c), className: state.conv?.id === c.id ? "active" : "", onclick: () => openConversation(c) })));
  if (!state.convs.length) $("#conv-list").append(el("li", { className: "hint", textContent: state.ws ? "No conversation yet: pick a member below." : "Open a workspace to start one." }));
}
const convTitle = (c) => c.title || (c.memberIds || []).filter((id) => id !== state.user.id).map((id) => state.members.get(id)?.name || names.get(id) || `user ${id.slice(0, 6)}`).join(", ") || "(just you)";
const names = new Map(); // user id → name, learned from messages and typing
$("#conv-refresh").onclick = loadConversations;
$("#conv-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try { const c = await api("POST", "/conversations", { workspaceId: state.ws.id, memberIds: [ev.target.member.value] }); await loadConversations(); openConversation(c); }
  catch (err) { showError("#conv-error", err); }
});

async function openConversation(c) {
  if (state.conv && state.conv.id !== c.id) chat.emit("conversation:leave", { conversationId: state.conv.id });
  localStorage.setItem("huddle.conv", c.id);
  state.conv = c; state.reads = new Map();
  $("#chat-title").textContent = `Chat — ${convTitle(c)}`;
  $("#chat-form").hidden = false;
  $("#messages").replaceChildren();
  loadConversations();
  const ack = await chat.request("conversation:join", { conversationId: c.id });
  if (!ack.ok) return showError("#chat-error", ack.error);
  try {
    const { items } = await api("GET", `/conversations/${c.id}/messages?limit=50`);
    items.forEach(appendMessage);
    markRead();
  } catch (err) { showError("#chat-error", err); }
}
function appendMessage(m) {
  if (m.conversationId !== state.conv?.id || document.getElementById(`msg-${m.id}`)) return;
  const mine = m.senderId === state.user.id;
  if (m.senderName) names.set(m.senderId, m.senderName);
  const who = mine ? "you" : state.members.get(m.senderId)?.name || "them";
  const body = m.fileInfo
    ? el("span", { className: "file" }, `File: ${m.fileInfo.fileName} (${fmtBytes(m.fileInfo.size)})`, el("button", { className: "secondary", textContent: "download", onclick: () => download(m.fileInfo) }), m.message ? ` ${m.message}` : null)
    : el("span", { textContent: m.text });
  const li = el("li", { id: `msg-${m.id}`, className: mine ? "mine" : "" }, el("span", { className: "who", textContent: who }), body, el("span", { className: "receipt" }));
  li.dataset.seq = m.seq;
  li.dataset.sender = m.senderId;
  $("#messages").append(li);
  $("#messages").scrollTop = $("#messages").scrollHeight;
  renderReceipts();
}
/** "Seen by …" under the newest message each other member has read. */
function renderReceipts() {
  const items = [...$("#messages").children];
  for (const li of items) li.querySelector(".receipt").textContent = "";
  for (const [userId, seq] of state.reads) {
    if (userId === state.user.id) continue;
    // Under the newest message they have read that they did not send themselves.
    const target = items.filter((li) => Number(li.dataset.seq) <= seq && li.dataset.sender !== userId).pop();
    if (target) { const r = target.querySelector(".receipt"); r.textContent = `${r.textContent ? r.textContent + ", " : "Seen by "}${state.members.get(userId)?.name || "them"}`; }
  }
}
function markRead() {
  const last = $("#messages").lastElementChild;
  if (last && state.conv && document.visibilityState === "visible") chat.emit("message:read", { conversationId: state.conv.id, seq: Number(last.dataset.seq) });
}
document.addEventListener("visibilitychange", markRead);
function bindChat() {
  chat.on("new_message", (m) => { appendMessage(m); markRead(); });
  chat.on("new_file_message", (m) => { appendMessage(m); markRead(); });
  chat.on("message:read", (d) => { if (d.conversationId === state.conv?.id) { state.reads.set(d.userId, Math.max(d.seq, state.reads.get(d.userId) || 0)); renderReceipts(); } });
  const typers = new Map();
  chat.on("typing:user_typing", (d) => { if (d.conversationId === state.conv?.id) { typers.set(d.userId, d.name); showTypers("#chat-typing", typers); } });
  chat.on("typing:user_stopped", (d) => { typers.delete(d.userId); showTypers("#chat-typing", typers); });
}
typingEmitter($("#chat-form").text, () => chat, () => state.conv && { conversationId: state.conv.id });
$("#chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = ev.target.text.value;
  const clientId = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  ev.target.reset();
  chat.emit("typing:stop", { conversationId: state.conv.id });
  try {
    const ack = await chat.request("send_message", { conversationId: state.conv.id, text, clientId });
    if (!ack.ok) throw new Error(ack.error.message);
    showError("#chat-error");
  } catch (err) { showError("#chat-error", err); ev.target.text.value = text; }
});

// ------------------------------------------------------------- uploads
const fmtBytes = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (data) => (crypto.subtle ? hex(await crypto.subtle.digest("SHA-256", data)) : undefined);
const guessType = (f) => f.type || ({ txt: "text/plain", csv: "text/csv", pdf: "application/pdf", zip: "application/zip" })[f.name.split(".").pop().toLowerCase()] || "application/octet-stream";

const zone = $("#drop-zone");
zone.ondragover = (e) => { e.preventDefault(); zone.classList.add("over"); };
zone.ondragleave = () => zone.classList.remove("over");
zone.ondrop = (e) => { e.preventDefault(); zone.classList.remove("over"); [...e.dataTransfer.files].forEach(startUpload); };
$("#file-input").onchange = (e) => { [...e.target.files].forEach(startUpload); e.target.value = ""; };

/** The row of an upload, created on first sight (this tab's own, or another device's progress). */
function uploadRow(uploadId, name) {
  let u = state.uploads.get(uploadId);
  if (u) return u;
  const bar = el("div");
  const status = el("span", { className: "status", textContent: "starting…" });
  const actions = el("div", { className: "actions" });
  const row = el("li", {}, el("div", { className: "name", textContent: name || uploadId }), el("div", { className: "bar" }, bar), status, actions);
  row.dataset.uploadId = uploadId;
  $("#uploads").prepend(row);
  u = { uploadId, row, bar, status, actions, paused: false };
  state.uploads.set(uploadId, u);
  return u;
}
function setProgress(u, pct, text, cls = "") {
  u.bar.style.width = `${pct}%`;
  u.row.dataset.progress = pct;
  u.status.textContent = text;
  u.status.className = `status ${cls}`;
}
function setActions(u, ...buttons) { u.actions.replaceChildren(...buttons.filter(Boolean).map(([label, fn]) => el("button", { className: "secondary", textContent: label, onclick: fn }))); }

async function startUpload(file) {
  // The same file (name, size, date) keeps its id, so dropping it again — in
  // any tab, after a reload — resumes where the server stopped.
  const uploadId = `${file.name}-${file.size}-${file.lastModified}`.replace(/[^\w.-]+/g, "_").slice(0, 120);
  const u = uploadRow(uploadId, file.name);
  if (u.fileDone) { u.fileDone = null; u.row.classList.remove("done"); }
  Object.assign(u, { file, paused: false, cancelled: false, local: true });
  setProgress(u, 0, `hashing ${fmtBytes(file.size)}…`);
  try { u.sha256 = await sha256(await file.arrayBuffer()); } catch { u.sha256 = undefined; }
  await sendUpload(u);
}

async function sendUpload(u) {
  const { file } = u;
  setActions(u, ["pause", () => { u.paused = true; }], ["cancel", () => cancelUpload(u)]);
  try {
    const init = await files.request("initiate_upload", { uploadId: u.uploadId, fileName: file.name, fileSize: file.size, mimeType: guessType(file), ...(u.sha256 ? { sha256: u.sha256 } : {}) });
    if (!init.ok) throw new Error(init.error.message);
    if (init.completed) return uploadDone(u, init.file);
    Object.assign(u, { sessionId: init.sessionId, chunkSize: init.chunkSize, total: init.totalChunks });
    const have = new Set(init.receivedChunks);
    for (let i = 0; i < init.totalChunks; i++) {
      if (have.has(i)) continue;
      if (u.paused) { setProgress(u, Number(u.row.dataset.progress || 0), `paused at ${u.row.dataset.progress || 0}% — resume continues from the chunks the server holds`, ""); setActions(u, ["resume", () => { u.paused = false; sendUpload(u); }], ["cancel", () => cancelUpload(u)]); return; }
      if (u.cancelled) return;
      const bytes = new Uint8Array(await file.slice(i * u.chunkSize, (i + 1) * u.chunkSize).arrayBuffer());
      const ack = await files.request("upload_chunk", { sessionId: u.sessionId, uploadId: u.uploadId, chunkIndex: i, chunkData: bytes, checksum: await sha256(bytes) });
      if (!ack.ok) throw new Error(ack.error.message);
    }
    const done = await files.request("complete_upload", { sessionId: u.sessionId, uploadId: u.uploadId }, 60000);
    if (!done.ok) throw new Error(done.error.message);
    uploadDone(u, done.file);
  } catch (err) {
    setProgress(u, Number(u.row.dataset.progress || 0), err.message, "bad");
    setActions(u, ["retry", () => sendUpload(u)], ["cancel", () => cancelUpload(u)]);
  }
}
async function cancelUpload(u) {
  u.cancelled = true; u.paused = true;
  if (!u.sessionId) { u.row.remove(); state.uploads.delete(u.uploadId); return; }
  const ack = await files.request("cancel_upload", { sessionId: u.sessionId, uploadId: u.uploadId, reason: "cancelled by the user" });
  if (!ack.ok) setProgress(u, 0, ack.error.message, "bad");
}
function uploadDone(u, file) {
  if (u.fileDone) return;
  u.fileDone = file;
  u.row.querySelector(".name").textContent = file.fileName;
  u.row.classList.add("done");
  setProgress(u, 100, `completed · ${fmtBytes(file.size)}`, "done");
  setActions(u, ["download", () => download(file)], ["share to chat", () => shareFile(u, file)]);
}
async function shareFile(u, file) {
  if (!state.conv) { setProgress(u, 100, "open a conversation first, then share", "bad"); return; }
  const ack = await chat.request("share_file", { fileId: file.id, conversationId: state.conv.id });
  setProgress(u, 100, ack.ok ? `shared in ${convTitle(state.conv)}` : ack.error.message, ack.ok ? "done" : "bad");
}
/** Downloads through a one-time download link (no token in the URL bar). */
async function download(file) {
  try {
    const { url } = await api("POST", `/files/${file.id}/download-token`, { permission: "download", oneTime: true });
    el("a", { href: url, download: file.fileName }).click();
  } catch (err) { showError("#chat-error", err); }
}
function bindUploads() {
  files.on("upload_progress", (p) => {
    const u = uploadRow(p.uploadId);
    if (u.fileDone) return;
    setProgress(u, p.progress, `${p.progress}% · chunk ${p.completedChunks}/${p.totalChunks} · ${fmtBytes(p.bytesReceived)}${u.local ? "" : " (another device)"}`);
  });
  files.on("upload_completed", (d) => uploadDone(uploadRow(d.uploadId, d.file.fileName), d.file));
  files.on("upload_cancelled", (d) => { const u = uploadRow(d.uploadId); u.cancelled = true; setProgress(u, 0, `cancelled${d.reason ? `: ${d.reason}` : ""}`, "bad"); setActions(u); });
  files.on("upload_error", (d) => setProgress(uploadRow(d.uploadId), Number(uploadRow(d.uploadId).row.dataset.progress || 0), d.error.message || d.error.code, "bad"));
  files.on("chunk_error", (d) => log("err", `chunk ${d.chunkIndex} of ${d.uploadId}: ${d.error?.message || d.error}`));
}

// ------------------------------------------------------------- start
async function start(user) {
  state.user = user;
  $("#auth").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  $("#me").textContent = `${user.name} (@${user.username})`;
  connect();
  $("#presence").hidden = false;
  $("#presence").onchange = (e) => root.request("presence:update", { status: e.target.value });
  const last = (await loadWorkspaces()).find((w) => w.id === localStorage.getItem("huddle.ws"));
  if (last) await openWorkspace(last);
  loadConversations();
  loadNotifications();
}
const saved = localStorage.getItem("huddle.user");
if (saved && tokens.access) {
  // Check the saved session (refreshing it if needed) before using it.
  api("GET", "/auth/me").then((me) => start(me.user || me)).catch(() => { tokens.clear(); localStorage.removeItem("huddle.user"); });
}
