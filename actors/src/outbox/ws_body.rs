//! The WebSocket writer's side of the queue: the frames it takes, and the
//! close that ends one WebSocket without ending the session.

use super::Outbox;
use crate::encoded::close_frame;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll};

/// What [`Outbox::poll_websocket`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum WsBatch {
    /// Frames were appended.
    Frames,
    /// Nothing is left: the close frame with this code, then the end.
    Close(u16),
}

/// Ends one WebSocket body without closing the session: the reader of an
/// upgrade's WebSocket uses it when the client gives the upgrade up, so the
/// client's close is answered and the session stays on long-polling.
#[derive(Debug, Default)]
pub struct WsEnd {
    code: Mutex<Option<u16>>,
    waker: AtomicWaker,
}

impl WsEnd {
    /// The body sends a close frame with `code`, then ends.
    pub fn end(&self, code: u16) {
        *self.code.lock().unwrap_or_else(|e| e.into_inner()) = Some(code);
        self.waker.wake();
    }

    fn take(&self) -> Option<u16> {
        self.code.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What a WebSocket sends: frames from the outbox, then a close frame.
pub struct WsBody {
    outbox: std::sync::Arc<Outbox>,
    end: std::sync::Arc<WsEnd>,
    done: bool,
}

impl WsBody {
    /// A body draining `outbox`.
    pub fn new(outbox: std::sync::Arc<Outbox>) -> Self {
        WsBody {
            outbox,
            end: Default::default(),
            done: false,
        }
    }

    /// The handle that ends this body alone.
    pub fn end_handle(&self) -> std::sync::Arc<WsEnd> {
        self.end.clone()
    }

    /// Appends the next frames to `out` (about `max` at most; the close
    /// frame last): ready with `true` when it appended some, with `false`
    /// once the close frame has been handed out; pending until there is
    /// something.
    pub fn poll_frames(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
        max: usize,
    ) -> Poll<bool> {
        if self.done {
            return Poll::Ready(false);
        }
        if let Some(code) = self.end.take() {
            return Poll::Ready(self.finish(out, code));
        }
        match self.outbox.poll_websocket(cx, out, max) {
            Poll::Ready(WsBatch::Frames) => Poll::Ready(true),
            Poll::Ready(WsBatch::Close(code)) => Poll::Ready(self.finish(out, code)),
            Poll::Pending => {
                // Registered only on the way to sleeping, and checked again
                // after, so an end between the two checks is not missed.
                self.end.waker.register(cx.waker());
                match self.end.take() {
                    Some(code) => Poll::Ready(self.finish(out, code)),
                    None => Poll::Pending,
                }
            }
        }
    }

    fn finish(&mut self, out: &mut VecDeque<Bytes>, code: u16) -> bool {
        self.done = true;
        out.push_back(close_frame(code));
        true
    }
}
