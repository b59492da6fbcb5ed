//! Namespace `/chat`: conversations, persisted messages with gap-free `seq`,
//! typing indicators with the auto-stop, and read markers.
//!
//! Events are decoded once into `ChatEvent` and dispatched with one match.
//! A message is persisted before it is broadcast, and a retry with the same
//! `clientId` returns the stored message without broadcasting it again.
//! `share_file` posts a file message; sharing grants every member of the
//! conversation read access to the file ([`share_file`] is also what an
//! upload targeted at a conversation calls on completion).
//! A new text message that @mentions members of the conversation notifies
//! them through the collaboration layer, as a comment's mention does.

use crate::collab::{may_mention, Collab, MentionScope, Mentioning};
use crate::engine::Engine;
use crate::ids::{ConversationId, RoomName, UserId};
use crate::model::{FileRecord, Message, MessageBody, NewMessage};
use crate::namespace::{
    DisconnectReason, EventError, IncomingEvent, Namespace, Ordered, Reply, Socket,
};
use crate::registry::ConnId;
use crate::store::prelude::*;
use crate::wire;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the chat namespace.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Typing stops by itself this long after the last `typing:start`.
    pub typing_timeout: Duration,
    /// Longest message text, in characters.
    pub max_message_chars: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            typing_timeout: Duration::from_secs(5),
            max_message_chars: 10_000,
        }
    }
}

/// Longest id or client id accepted from a client.
const MAX_ID_LEN: usize = 128;
/// Conversations whose member list is kept in memory.
const MEMBER_CACHE_MAX: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationRef {
    conversation_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendMessage {
    conversation_id: String,
    text: String,
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShareFile {
    file_id: String,
    conversation_id: String,
    message: Option<String>,
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadMarker {
    conversation_id: String,
    seq: u64,
}

/// The events of `/chat`, decoded from the wire.
#[derive(Debug)]
enum ChatEvent {
    Join(ConversationRef),
    Leave(ConversationRef),
    Send(SendMessage),
    Share(ShareFile),
    TypingStart(ConversationRef),
    TypingStop(ConversationRef),
    Read(ReadMarker),
}

impl ChatEvent {
    fn decode(event: &IncomingEvent) -> Result<ChatEvent, EventError> {
        let ev = match event.name.as_str() {
            "conversation:join" => ChatEvent::Join(event.decode_payload()?),
            "conversation:leave" => ChatEvent::Leave(event.decode_payload()?),
            "send_message" => ChatEvent::Send(event.decode_payload()?),
            "share_file" => ChatEvent::Share(event.decode_payload()?),
            "typing:start" => ChatEvent::TypingStart(event.decode_payload()?),
            "typing:stop" => ChatEvent::TypingStop(event.decode_payload()?),
            "message:read" => ChatEvent::Read(event.decode_payload()?),
            other => {
                return Err(EventError::bad_request(format!(
                    "unknown event {:?} in /chat",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        Ok(ev)
    }
}

fn check_id(id: &str, what: &str) -> Result<(), EventError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EventError::bad_request(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

fn room(conversation: &str) -> RoomName {
    RoomName(format!("conversation:{conversation}"))
}

/// A message's client view as JSON text.
fn view_json(message: &Message) -> Result<Bytes, EventError> {
    serde_json::to_vec(&wire::MessageView(message))
        .map(Bytes::from)
        .map_err(|e| {
            log::error!("cannot serialize message {}: {e}", message.id);
            EventError::internal()
        })
}

/// Maps a store failure to the client's error, keeping the cause in the log.
fn store_error(e: StoreError) -> EventError {
    match e {
        StoreError::NotFound(_) => EventError::not_found("conversation not found"),
        StoreError::Conflict(m) => EventError::new("conflict", m),
        other => {
            log::error!(
                "chat store error: {other}: {:?}",
                std::error::Error::source(&other)
            );
            EventError::internal()
        }
    }
}

/// Shares `file` into a conversation: grants every member read access, then
/// appends the file message and, when it is new (not an idempotent retry of
/// `client_id`), broadcasts `new_file_message` to the conversation's room.
/// The caller has checked that `sender` is a member and may read the file.
pub async fn share_file(
    store: &dyn DocumentStore,
    engine: &Engine,
    file: &FileRecord,
    conversation: &ConversationId,
    sender: &UserId,
    message: Option<String>,
    client_id: Option<String>,
) -> Result<Message, StoreError> {
    let conv = store
        .conversation(conversation)
        .await?
        .ok_or_else(|| StoreError::NotFound("conversation not found".to_owned()))?;
    // Grant first, so a member who sees the message can download at once.
    store.grant_file_read(&file.id, &conv.member_ids).await?;
    let (stored, created) = store
        .append_message(NewMessage {
            conversation_id: conversation.clone(),
            sender_id: sender.clone(),
            client_id,
            body: MessageBody::File {
                file_info: wire::file_info(file),
                message,
            },
        })
        .await?;
    if created {
        engine.emit(
            "/chat",
            &[room(conversation.as_str())],
            None,
            "new_file_message",
            &wire::message(&stored),
        );
    }
    Ok(stored)
}

/// Who is typing where: (connection, conversation) → generation of the last
/// `typing:start`, so a timer only stops the typing it started.
type TypingKey = (ConnId, String);

/// The `/chat` namespace.
pub struct ChatNamespace {
    store: Arc<dyn DocumentStore>,
    /// Makes the notifications of @mentions.
    collab: Arc<Collab>,
    config: ChatConfig,
    /// Conversation id → member ids. Membership of a conversation does not
    /// change after creation, so entries never go stale.
    members: Mutex<HashMap<String, Arc<HashSet<UserId>>>>,
    typing: Arc<Mutex<HashMap<TypingKey, u64>>>,
    generation: std::sync::atomic::AtomicU64,
    /// Conversation id → lock held from storing a message to broadcasting
    /// it, so `new_message` reaches every socket in `seq` order even when
    /// members send at once from connections on different worker threads.
    /// For a store that cannot order appends it starts
    /// ([`ChatStore::orders_appends`]).
    send_order: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Conversation id → the order in which its messages are published, for
    /// a store that orders the appends it starts: several appends of one
    /// conversation are in the store at once (they share its group commit),
    /// and each is published only after those started before it.
    sequencers: Mutex<HashMap<String, Arc<Mutex<Sequencer>>>>,
}

/// A broadcast waiting for its turn.
type Publish = Box<dyn FnOnce() + Send>;

/// Publishes a conversation's messages in the order their appends were
/// started (which is their `seq` order).
#[derive(Default)]
struct Sequencer {
    /// Turns handed out.
    issued: u64,
    /// The next turn to publish.
    next: u64,
    /// Finished turns waiting for an earlier one, with what they publish.
    ready: std::collections::BTreeMap<u64, Option<Publish>>,
}

impl Sequencer {
    fn finish(&mut self, turn: u64, publish: Option<Publish>) {
        self.ready.insert(turn, publish);
        while let Some(publish) = self.ready.remove(&self.next) {
            self.next += 1;
            if let Some(publish) = publish {
                publish();
            }
        }
    }
}

/// A place in a conversation's publishing order. Dropped unfinished (its
/// append failed, or the handler was cancelled) it publishes nothing and
/// lets the later ones go.
struct Turn {
    sequencer: Arc<Mutex<Sequencer>>,
    turn: u64,
    done: bool,
}

impl Turn {
    fn finish(mut self, publish: Option<Publish>) {
        self.done = true;
        lock(&self.sequencer).finish(self.turn, publish);
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.sequencer).finish(self.turn, None);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The conversation's entry of a per-conversation map, made when missing.
/// A full map first drops the entries nobody holds (a lock nobody holds or
/// waits for, a sequencer with no turn out).
fn per_conversation<T: Default>(
    map: &Mutex<HashMap<String, Arc<T>>>,
    conversation: &str,
) -> Arc<T> {
    let mut all = lock(map);
    if all.len() >= MEMBER_CACHE_MAX {
        all.retain(|_, entry| Arc::strong_count(entry) > 1);
    }
    all.entry(conversation.to_owned()).or_default().clone()
}

impl ChatNamespace {
    /// A chat namespace persisting to `store`, notifying @mentions through
    /// `collab`.
    pub fn new(store: Arc<dyn DocumentStore>, collab: Arc<Collab>, config: ChatConfig) -> Self {
        ChatNamespace {
            store,
            collab,
            config,
            members: Mutex::new(HashMap::new()),
            typing: Arc::new(Mutex::new(HashMap::new())),
            generation: Default::default(),
            send_order: Mutex::new(HashMap::new()),
            sequencers: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `new` and broadcasts it as `new_message` when it was created,
    /// in `seq` order among the conversation's messages; its view (as JSON
    /// text, encoded once for the broadcast and the ack) and whether it was
    /// created. `ordered` is let go once the message's place is fixed.
    async fn store_and_publish(
        &self,
        socket: &Socket,
        conversation: &str,
        new: NewMessage,
        ordered: Option<Ordered>,
    ) -> Result<(Bytes, bool), EventError> {
        if !self.store.orders_appends() {
            let order = per_conversation(&self.send_order, conversation);
            let _in_seq_order = order.lock().await;
            let started = Instant::now();
            let appended = self.store.append_message(new).await;
            socket.engine().metrics().message_stored(started.elapsed());
            let (message, created) = appended.map_err(store_error)?;
            let view = view_json(&message)?;
            if created {
                self.stop_typing(socket, conversation);
                socket.broadcast_json(&[room(conversation)], "new_message", &view);
            }
            return Ok((view, created));
        }
        // Starting the append and taking the turn together makes turns
        // follow the store's order of the appends.
        let sequencer = per_conversation(&self.sequencers, conversation);
        let started = Instant::now();
        let (pending, turn) = {
            let mut s = lock(&sequencer);
            let pending = self.store.start_append(new).map_err(store_error)?;
            s.issued += 1;
            (pending, s.issued - 1)
        };
        let turn = Turn {
            sequencer,
            turn,
            done: false,
        };
        // Its seq follows this connection's earlier messages: the next may
        // start.
        drop(ordered);
        // Other members' messages to this conversation start while this one
        // is stored (they share a group commit); `turn` keeps the broadcasts
        // in `seq` order.
        let appended = pending.await;
        socket.engine().metrics().message_stored(started.elapsed());
        let (message, created) = appended.map_err(store_error)?;
        let view = match view_json(&message) {
            Ok(view) => view,
            Err(e) => {
                turn.finish(None);
                return Err(e);
            }
        };
        if !created {
            turn.finish(None);
            return Ok((view, created));
        }
        self.stop_typing(socket, conversation);
        let sender = socket.clone();
        let rooms = [room(conversation)];
        let shared = view.clone();
        turn.finish(Some(Box::new(move || {
            sender.broadcast_json(&rooms, "new_message", &shared);
        })));
        Ok((view, created))
    }

    /// `send_message`: checks, stores and broadcasts; acks
    /// `{ ok, message }`.
    async fn send(
        &self,
        socket: &Socket,
        m: SendMessage,
        ordered: Option<Ordered>,
    ) -> Result<Reply, EventError> {
        let members = self
            .require_member(&m.conversation_id, socket.user_id())
            .await?;
        let chars = m.text.chars().count();
        if chars == 0 || chars > self.config.max_message_chars {
            return Err(EventError::bad_request(format!(
                "text must be 1 to {} characters",
                self.config.max_message_chars
            )));
        }
        if let Some(c) = &m.client_id {
            check_id(c, "clientId")?;
        }
        let new = NewMessage {
            conversation_id: ConversationId::from(m.conversation_id.as_str()),
            sender_id: socket.user_id().clone(),
            client_id: m.client_id,
            body: MessageBody::Text {
                text: m.text.clone(),
            },
        };
        let (view, created) = self
            .store_and_publish(socket, &m.conversation_id, new, ordered)
            .await?;
        if created && may_mention(&m.text) {
            // A retry was told already; the message is stored and
            // sent whatever becomes of its notifications.
            let link = format!("/conversations/{}", m.conversation_id);
            let mentioning = Mentioning {
                text: &m.text,
                author: socket.user_id(),
                author_name: socket.name(),
                scope: MentionScope::Users(&members),
                link: &link,
            };
            if let Err(e) = self.collab.notify_mentions(mentioning).await {
                log::error!(
                    "chat mentions failed: {e}: {:?}",
                    std::error::Error::source(&e)
                );
            }
        }
        let mut ack = Vec::with_capacity(view.len() + 24);
        ack.extend_from_slice(br#"{"ok":true,"message":"#);
        ack.extend_from_slice(&view);
        ack.push(b'}');
        Ok(Reply::encoded(ack))
    }

    /// The conversation's members; fails with `not_found` unless the user
    /// is one of them (a non-member learns nothing about the conversation).
    async fn require_member(
        &self,
        conversation: &str,
        user: &UserId,
    ) -> Result<Arc<HashSet<UserId>>, EventError> {
        check_id(conversation, "conversationId")?;
        let cached = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(conversation)
            .cloned();
        let members = match cached {
            Some(m) => m,
            None => {
                let conv = self
                    .store
                    .conversation(&ConversationId::from(conversation))
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| EventError::not_found("conversation not found"))?;
                let set: Arc<HashSet<UserId>> = Arc::new(conv.member_ids.into_iter().collect());
                let mut cache = self.members.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= MEMBER_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(conversation.to_owned(), set.clone());
                set
            }
        };
        if members.contains(user) {
            Ok(members)
        } else {
            Err(EventError::not_found("conversation not found"))
        }
    }

    fn typing_payload(socket: &Socket, conversation: &str) -> Value {
        json!({ "userId": socket.user_id(), "name": socket.name(), "conversationId": conversation })
    }

    fn start_typing(&self, socket: &Socket, conversation: String) {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (socket.conn_id(), conversation.clone());
        self.typing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), generation);
        socket.broadcast_others(
            &[room(&conversation)],
            "typing:user_typing",
            &Self::typing_payload(socket, &conversation),
        );
        let typing = self.typing.clone();
        let socket = socket.clone();
        let timeout = self.config.typing_timeout;
        actix::spawn(async move {
            tokio::time::sleep(timeout).await;
            let expired = {
                let mut t = typing.lock().unwrap_or_else(|e| e.into_inner());
                if t.get(&key) == Some(&generation) {
                    t.remove(&key);
                    true
                } else {
                    false
                }
            };
            if expired {
                socket.broadcast_others(
                    &[room(&key.1)],
                    "typing:user_stopped",
                    &Self::typing_payload(&socket, &key.1),
                );
            }
        });
    }

    fn stop_typing(&self, socket: &Socket, conversation: &str) {
        let was_typing = self
            .typing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(socket.conn_id(), conversation.to_owned()))
            .is_some();
        if was_typing {
            socket.broadcast_others(
                &[room(conversation)],
                "typing:user_stopped",
                &Self::typing_payload(socket, conversation),
            );
        }
    }

    async fn handle(
        &self,
        socket: &Socket,
        event: ChatEvent,
        ordered: Option<Ordered>,
    ) -> Result<Reply, EventError> {
        match event {
            ChatEvent::Join(r) => {
                self.require_member(&r.conversation_id, socket.user_id())
                    .await?;
                socket.join(vec![room(&r.conversation_id)]).await?;
                let last_seq = self
                    .store
                    .last_seq(&ConversationId::from(r.conversation_id.as_str()))
                    .await
                    .map_err(store_error)?
                    .unwrap_or(0);
                Ok(Reply::one(
                    json!({ "ok": true, "conversationId": r.conversation_id, "lastSeq": last_seq }),
                ))
            }
            ChatEvent::Leave(r) => {
                check_id(&r.conversation_id, "conversationId")?;
                self.stop_typing(socket, &r.conversation_id);
                socket.leave(vec![room(&r.conversation_id)]).await?;
                Ok(Reply::one(json!({ "ok": true })))
            }
            ChatEvent::Send(m) => self.send(socket, m, ordered).await,
            ChatEvent::Share(f) => {
                self.require_member(&f.conversation_id, socket.user_id())
                    .await?;
                check_id(&f.file_id, "fileId")?;
                if let Some(c) = &f.client_id {
                    check_id(c, "clientId")?;
                }
                if let Some(text) = &f.message {
                    if text.chars().count() > self.config.max_message_chars {
                        return Err(EventError::bad_request(format!(
                            "message must be at most {} characters",
                            self.config.max_message_chars
                        )));
                    }
                }
                // A file the sender cannot read is "not found": ids leak nothing.
                let file = self
                    .store
                    .file(&f.file_id)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| EventError::not_found("file not found"))?;
                if !self
                    .store
                    .can_read_file(&file.id, socket.user_id())
                    .await
                    .map_err(store_error)?
                {
                    return Err(EventError::not_found("file not found"));
                }
                let message = share_file(
                    &*self.store,
                    socket.engine(),
                    &file,
                    &ConversationId::from(f.conversation_id.as_str()),
                    socket.user_id(),
                    f.message.filter(|m| !m.is_empty()),
                    f.client_id,
                )
                .await
                .map_err(store_error)?;
                Ok(Reply::one(
                    json!({ "ok": true, "message": wire::message(&message) }),
                ))
            }
            ChatEvent::TypingStart(r) => {
                self.require_member(&r.conversation_id, socket.user_id())
                    .await?;
                self.start_typing(socket, r.conversation_id);
                Ok(Reply::one(json!({ "ok": true })))
            }
            ChatEvent::TypingStop(r) => {
                check_id(&r.conversation_id, "conversationId")?;
                self.stop_typing(socket, &r.conversation_id);
                Ok(Reply::one(json!({ "ok": true })))
            }
            ChatEvent::Read(r) => {
                self.require_member(&r.conversation_id, socket.user_id())
                    .await?;
                let conversation = ConversationId::from(r.conversation_id.as_str());
                // A read marker past the last message would stick there
                // (markers only move forward) and hide every later one.
                let last = self
                    .store
                    .last_seq(&conversation)
                    .await
                    .map_err(store_error)?
                    .unwrap_or(0);
                if r.seq > last {
                    return Err(EventError::bad_request(format!(
                        "seq {} is past the conversation's last message ({last})",
                        r.seq
                    )));
                }
                self.store
                    .mark_read(&conversation, socket.user_id(), r.seq)
                    .await
                    .map_err(store_error)?;
                socket.broadcast(
                    &[room(&r.conversation_id)],
                    "message:read",
                    &json!({ "conversationId": r.conversation_id, "userId": socket.user_id(), "seq": r.seq }),
                );
                Ok(Reply::one(json!({ "ok": true })))
            }
        }
    }
}

#[async_trait(?Send)]
impl Namespace for ChatNamespace {
    async fn on_event(
        &self,
        socket: &Socket,
        mut event: IncomingEvent,
    ) -> Result<Reply, EventError> {
        let ordered = event.ordered.take();
        let decoded = ChatEvent::decode(&event)?;
        self.handle(socket, decoded, ordered).await
    }

    /// A connection's next `send_message` may start once this one's append
    /// has started (which fixes its seq), with a store that orders them.
    fn pipelines(&self, event: &str) -> bool {
        event == "send_message" && self.store.orders_appends()
    }

    /// Nothing in the chat contract is addressed to a user's `/chat`
    /// sockets as a whole (mentions notify through `/`): a chat socket is in
    /// the conversation rooms it joins and no room of its user, which spares
    /// every connected user a room actor (and a Redis subscription).
    fn joins_user_room(&self) -> bool {
        false
    }

    async fn on_disconnect(&self, socket: &Socket, _reason: DisconnectReason) {
        let mine: Vec<String> = {
            let mut t = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<TypingKey> = t
                .keys()
                .filter(|(conn, _)| *conn == socket.conn_id())
                .cloned()
                .collect();
            keys.into_iter()
                .map(|k| {
                    t.remove(&k);
                    k.1
                })
                .collect()
        };
        for conversation in mine {
            socket.broadcast_others(
                &[room(&conversation)],
                "typing:user_stopped",
                &Self::typing_payload(socket, &conversation),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Publish, Sequencer, Turn};
    use std::sync::{Arc, Mutex};

    /// Turns finished out of order publish in turn order; a turn dropped
    /// unfinished publishes nothing and holds nobody up.
    #[test]
    fn a_sequencer_publishes_in_turn_order() {
        let seq = Arc::new(Mutex::new(Sequencer::default()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let turn = |n: u64| {
            seq.lock().unwrap().issued += 1;
            Turn {
                sequencer: seq.clone(),
                turn: n,
                done: false,
            }
        };
        let publish = |v: u64| -> Option<Publish> {
            let out = out.clone();
            Some(Box::new(move || out.lock().unwrap().push(v)))
        };
        let (t0, t1, t2, t3) = (turn(0), turn(1), turn(2), turn(3));
        t2.finish(publish(2));
        t1.finish(publish(1));
        assert!(out.lock().unwrap().is_empty(), "turn 0 is not done");
        drop(t0);
        assert_eq!(*out.lock().unwrap(), [1, 2]);
        t3.finish(None);
        turn(4).finish(publish(4));
        assert_eq!(*out.lock().unwrap(), [1, 2, 4]);
        assert!(seq.lock().unwrap().ready.is_empty());
    }
}
