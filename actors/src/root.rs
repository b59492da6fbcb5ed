//! Namespace `/`, the default one every `io(url)` connects to. Each socket is
//! in its `user:{id}` room (the engine joins it on connect), so notifications
//! and server publishes reach every device. The workspace, project and task
//! events of the contract's section 4 (`room:join`, presence, typing) are
//! served here by the collaboration layer; until then an event answers
//! `bad_request` naming it.

use crate::namespace::{EventError, IncomingEvent, Namespace, Reply, Socket};
use async_trait::async_trait;

/// The `/` namespace.
#[derive(Debug, Default)]
pub struct RootNamespace;

#[async_trait(?Send)]
impl Namespace for RootNamespace {
    async fn on_event(&self, _socket: &Socket, event: IncomingEvent) -> Result<Reply, EventError> {
        Err(EventError::bad_request(format!(
            "unknown event {:?} in /",
            event.name.chars().take(64).collect::<String>()
        )))
    }
}
