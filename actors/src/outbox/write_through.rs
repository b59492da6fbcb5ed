//! Writing through: a delivery to a WebSocket whose writer sleeps with
//! nothing in hand is sent on the caller's thread, straight to the socket,
//! instead of waking the writer to send it.

use super::OutboxFull;
use super::{Drain, State, Wakers};
use crate::encoded::Encoded;
use crate::websocket::MAX_GATHER;
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use tokio::net::TcpStream;

/// The socket deliveries write through, and its descriptor.
///
/// The number is what a delivery reads: taking it from the `TcpStream`
/// reads the socket's own allocation, a cache (and TLB) miss on every
/// delivery to a big room (a tenth of the rooms' thread's user time), while
/// this sits in the outbox's lines, which the delivery has in hand. The
/// `Arc` beside it keeps the socket open, so the number cannot name another
/// file while it is here.
#[derive(Debug)]
pub(super) struct AttachedSocket {
    pub(super) fd: RawFd,
    pub(super) _open: Arc<TcpStream>,
}

impl State {
    /// Writes `packet` through when it can, else queues it within
    /// `capacity` (cloned only then): the wakers to wake, none when it went
    /// out whole.
    pub(super) fn send_or_queue(
        &mut self,
        packet: Cow<'_, Encoded>,
        capacity: usize,
    ) -> Result<Option<Wakers>, OutboxFull> {
        match self.write_through(&packet) {
            WriteThrough::Written => Ok(None),
            WriteThrough::Partly => Ok(Some(self.wakers())),
            WriteThrough::Queue if self.queue.len() >= capacity => Err(OutboxFull),
            WriteThrough::Queue => {
                self.queue.push_back(packet.into_owned());
                Ok(Some(self.wakers()))
            }
        }
    }

    /// Writes `packet` straight to the WebSocket when nothing else is on its
    /// way there: the WebSocket drains, its writer sleeps with nothing in
    /// hand (its waker is here) and nothing waits in the queue. A delivery
    /// then costs one system call on the caller's thread instead of a wake,
    /// a poll of the writer and the same system call on its thread; order is
    /// kept because nothing was before it. What the socket did not take goes
    /// to the front (as raw frames) and the writer is woken for it.
    fn write_through(&mut self, packet: &Encoded) -> WriteThrough {
        if !self.queue.is_empty() || packet.frame_count() > WRITE_THROUGH_FRAMES {
            return WriteThrough::Queue;
        }
        let Some(socket) = self.sleeping_socket() else {
            return WriteThrough::Queue;
        };
        let mut slices = [IoSlice::new(&[]); WRITE_THROUGH_FRAMES];
        let mut n = 0;
        for (slice, frame) in slices.iter_mut().zip(packet.frames()) {
            *slice = IoSlice::new(frame.ws_bytes());
            n += 1;
        }
        let mut written = match send_through(socket, &slices[..n]) {
            Ok(written) => written,
            // Full, or failing: the writer takes it from the queue (and
            // meets the error itself).
            Err(_) => return WriteThrough::Queue,
        };
        keep_unsent(packet, &mut written, &mut self.ws_direct);
        if self.ws_direct.is_empty() {
            WriteThrough::Written
        } else {
            WriteThrough::Partly
        }
    }

    /// The socket to write to on the WebSocket writer's behalf: the
    /// WebSocket drains, its writer sleeps (its waker is here) with nothing
    /// in hand, and a socket is attached.
    fn sleeping_socket(&self) -> Option<RawFd> {
        let asleep = self.drain == Drain::WebSocket
            && !self.closed
            && self.ws_waker.is_some()
            && self.ws_direct.is_empty();
        self.socket.as_ref().filter(|_| asleep).map(|s| s.fd)
    }

    /// Writes the queued packets to the WebSocket when writing through is
    /// possible (see [`write_through`](Self::write_through)), in system calls
    /// of whole packets, at most [`MAX_GATHER`] frames each (as the WebSocket
    /// writer takes them), until the queue is empty or the socket full; what
    /// the socket took leaves the queue, the rest of a packet it took in part
    /// goes to `ws_direct`. Whether nothing is left for the writer.
    pub(super) fn write_queued(&mut self) -> bool {
        let Some(socket) = self.sleeping_socket() else {
            return false;
        };
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_GATHER];
            let mut n = 0;
            let mut whole = 0;
            for packet in &self.queue {
                if n + packet.frame_count() > MAX_GATHER {
                    break;
                }
                for frame in packet.frames() {
                    slices[n] = IoSlice::new(frame.ws_bytes());
                    n += 1;
                }
                whole += packet.ws_len();
            }
            if n == 0 {
                // A packet of more frames than one call takes: the writer's.
                return false;
            }
            let Ok(mut written) = send_through(socket, &slices[..n]) else {
                return false;
            };
            let all = written == whole;
            while written > 0 {
                let Some(packet) = self.queue.pop_front() else {
                    break;
                };
                keep_unsent(&packet, &mut written, &mut self.ws_direct);
            }
            if !all {
                return false;
            }
        }
        true
    }
}

/// Accounts for `written` bytes of `packet`'s frames having gone out: what
/// is left of a frame the socket took in part, and the frames after it, go
/// to `ws_direct` (for the writer, ahead of the queue); `written` is reduced
/// by what this packet took.
fn keep_unsent(packet: &Encoded, written: &mut usize, ws_direct: &mut VecDeque<Bytes>) {
    for frame in packet.frames() {
        let bytes = frame.ws_bytes();
        if *written >= bytes.len() {
            *written -= bytes.len();
        } else {
            ws_direct.push_back(bytes.slice(*written..));
            *written = 0;
        }
    }
}

/// Sends `frames` on `socket` without blocking: `send` for one (most
/// packets), `sendmsg` for several. Both skip the file layer a `writev`
/// goes through (about a tenth of the kernel's part of a delivery here).
/// Tokio's readiness is not consulted: a full socket answers `WouldBlock`,
/// and the writer, which waits through tokio, finds that out itself.
pub(crate) fn send_frames(socket: &TcpStream, frames: &[IoSlice<'_>]) -> std::io::Result<usize> {
    send_through(socket.as_raw_fd(), frames)
}

/// [`send_frames`] by the socket's number, as the outbox's attached socket
/// is written (see [`AttachedSocket`]); `MSG_NOSIGNAL`, so a closed peer is
/// an error, not a signal.
fn send_through(fd: RawFd, frames: &[IoSlice<'_>]) -> std::io::Result<usize> {
    use nix::sys::socket::{send, sendmsg, MsgFlags};
    match frames {
        [one] => send(fd, one, MsgFlags::MSG_NOSIGNAL),
        _ => sendmsg::<()>(fd, frames, &[], MsgFlags::MSG_NOSIGNAL, None),
    }
    .map_err(std::io::Error::from)
}

/// Most frames a packet may have to be written through (a broadcast with
/// more binary attachments is queued).
const WRITE_THROUGH_FRAMES: usize = 4;

/// What [`State::write_through`] did.
pub(super) enum WriteThrough {
    /// Nothing: queue the packet.
    Queue,
    /// All of it is on the socket.
    Written,
    /// Part of it is; the rest waits in `ws_direct` for the writer.
    Partly,
}
