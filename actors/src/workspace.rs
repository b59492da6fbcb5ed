//! The workspace actor: one per active workspace on this node.
//!
//! It owns the membership cache used for fast `room:join` checks (user →
//! role, loaded from the store on first use) and routes the workspace's
//! domain events to their rooms, in the order it receives them.
//!
//! Senders: [`Collab`](crate::collab::Collab) — `Authorize` for socket
//! checks, `Forget` after a member change (the HTTP handler awaits it
//! before answering, so the next check reads the store), `Route` for every
//! write. It is started on first use and stops after `idle` without
//! messages; `stopping()` unregisters it from the directory, and a sender
//! that finds it gone starts a new one (or, for `Route`, emits directly:
//! routing is a pure function of the event).

use crate::engine::WeakEngine;
use crate::events::DomainEvent;
use crate::ids::{UserId, WorkspaceId};
use crate::model::Role;
use crate::store::prelude::*;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Entries kept in a membership cache before it is cleared.
const CACHE_MAX: usize = 10_000;

/// The workspace actor.
pub struct WorkspaceActor {
    id: WorkspaceId,
    store: Arc<dyn DocumentStore>,
    engine: WeakEngine,
    /// user → role (`None`: known not to be a member).
    members: HashMap<UserId, Option<Role>>,
    /// Bumped by every `Forget`: a store read that started before it must
    /// not fill the cache with what it read.
    epoch: u64,
    idle: Duration,
    last_used: Instant,
    directory: Weak<crate::collab::Collab>,
}

impl WorkspaceActor {
    /// An actor for workspace `id`.
    pub fn new(
        id: WorkspaceId,
        store: Arc<dyn DocumentStore>,
        engine: WeakEngine,
        idle: Duration,
        directory: Weak<crate::collab::Collab>,
    ) -> Self {
        WorkspaceActor {
            id,
            store,
            engine,
            members: HashMap::new(),
            epoch: 0,
            idle,
            last_used: Instant::now(),
            directory,
        }
    }
}

impl Actor for WorkspaceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::debug!("workspace actor {} started", self.id);
        let tick = (self.idle / 2).max(Duration::from_millis(50));
        ctx.run_interval(tick, |act, ctx| {
            if act.last_used.elapsed() >= act.idle {
                ctx.stop();
            }
        });
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        if let Some(dir) = self.directory.upgrade() {
            dir.unregister(&self.id, &ctx.address());
        }
        log::debug!("workspace actor {} stopping", self.id);
        Running::Stop
    }
}

/// The role of `user` in this workspace (`None`: not a member).
#[derive(Message)]
#[rtype(result = "Result<Option<Role>, StoreError>")]
pub struct Authorize {
    pub user: UserId,
}

/// Drops the cached membership of `user` (it changed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget {
    pub user: UserId,
}

/// Emits a domain event of this workspace to its rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route {
    pub event: DomainEvent,
}

impl Handler<Authorize> for WorkspaceActor {
    type Result = ResponseActFuture<Self, Result<Option<Role>, StoreError>>;

    fn handle(&mut self, msg: Authorize, _: &mut Self::Context) -> Self::Result {
        self.last_used = Instant::now();
        if let Some(role) = self.members.get(&msg.user) {
            return Box::pin(fut::ready(Ok(*role)));
        }
        let store = self.store.clone();
        let ws = self.id.clone();
        let user = msg.user.clone();
        let epoch = self.epoch;
        Box::pin(
            async move { store.member(&ws, &user).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let role = res?.map(|m| m.role);
                    if act.epoch == epoch {
                        if act.members.len() >= CACHE_MAX {
                            act.members.clear();
                        }
                        act.members.insert(msg.user, role);
                    }
                    // An actor that has only ever said "not a member" (a
                    // workspace id made up, or of a workspace the asker is
                    // not in) holds nothing worth keeping: it stops at once
                    // instead of living `idle`, so made-up ids cannot pile
                    // actors up.
                    if role.is_none() && !act.members.values().any(Option::is_some) {
                        ctx.stop();
                    }
                    Ok(role)
                }),
        )
    }
}

impl Handler<Forget> for WorkspaceActor {
    type Result = ();
    fn handle(&mut self, msg: Forget, _: &mut Self::Context) {
        self.last_used = Instant::now();
        self.members.remove(&msg.user);
        self.epoch += 1;
    }
}

impl Handler<Route> for WorkspaceActor {
    type Result = ();
    fn handle(&mut self, msg: Route, _: &mut Self::Context) {
        self.last_used = Instant::now();
        if let Some(engine) = self.engine.upgrade() {
            route(&engine, &msg.event);
        }
    }
}

/// Emits `event` to its rooms of namespace `/` (serialized once).
pub fn route(engine: &crate::Engine, event: &DomainEvent) {
    engine.emit("/", &event.rooms(), None, event.name(), &event.payload());
}
