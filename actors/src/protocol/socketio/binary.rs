//! Binary packets: the attachments that follow a BINARY_EVENT / BINARY_ACK,
//! collected by the [`Reassembler`], and the placeholders that stand for
//! them in the packet's data.

use super::{Packet, MAX_ATTACHMENTS};
use crate::protocol::DecodeError;
use bytes::Bytes;
use serde_json::Value;

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    attachments: Vec<Bytes>,
    /// Bytes of the attachments so far.
    bytes: usize,
}

/// Collects the binary attachments that follow a BINARY_EVENT / BINARY_ACK
/// header. One per connection: Socket.IO sends a header's attachments right
/// after it, before any other packet.
///
/// The completed packet keeps its binary kind and attachment count; resolve
/// its placeholders with [`resolve_placeholder`]. After an error the
/// reassembler is empty again (the caller is expected to close the
/// connection, as the reference server does).
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Boxed: every connection holds a reassembler, few hold a packet in it.
    pending: Option<Box<Pending>>,
}

impl Reassembler {
    /// Feed a decoded text packet. Returns `Ok(Some((packet, vec![])))` at
    /// once for non-binary packets and for binary packets announcing 0
    /// attachments; `Ok(None)` while waiting for attachments;
    /// `Err(AttachmentsPending)` if a binary packet is already pending.
    pub fn push_packet(&mut self, p: Packet) -> Result<Option<(Packet, Vec<Bytes>)>, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::AttachmentsPending);
        }
        if !p.kind.is_binary() {
            return Ok(Some((p, Vec::new())));
        }
        if p.attachments > MAX_ATTACHMENTS {
            return Err(DecodeError::TooManyAttachments);
        }
        if let Some(data) = &p.data {
            if !placeholders_valid(data, p.attachments) {
                return Err(DecodeError::InvalidPlaceholder);
            }
        }
        if p.attachments == 0 {
            return Ok(Some((p, Vec::new())));
        }
        self.pending = Some(Box::new(Pending {
            attachments: Vec::with_capacity(p.attachments),
            packet: p,
            bytes: 0,
        }));
        Ok(None)
    }

    /// Feed a binary attachment. `Err(UnexpectedBinary)` if none is
    /// expected, `Err(AttachmentsTooLarge)` as soon as the packet's
    /// attachments add up to more than `max_total` bytes (nothing more of it
    /// is held); `Ok(Some(..))` when the last one arrives.
    pub fn push_binary(
        &mut self,
        b: Bytes,
        max_total: usize,
    ) -> Result<Option<(Packet, Vec<Bytes>)>, DecodeError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        pending.bytes += b.len();
        if pending.bytes > max_total {
            self.pending = None;
            return Err(DecodeError::AttachmentsTooLarge);
        }
        pending.attachments.push(b);
        if pending.attachments.len() < pending.packet.attachments {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| {
            let Pending {
                packet,
                attachments,
                ..
            } = *p;
            (packet, attachments)
        }))
    }

    /// Whether a binary packet is waiting for attachments.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }
}

/// `{"_placeholder":true,"num":n}`: stands for attachment `n` in the data of
/// a binary packet.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// Whether `v` is an object marked `"_placeholder": true`.
fn is_placeholder(v: &Value) -> bool {
    v.get("_placeholder") == Some(&Value::Bool(true))
}

fn placeholder_num(v: &Value) -> Option<usize> {
    v.get("num")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

/// If `v` is a placeholder whose num indexes `attachments`, the attachment.
pub fn resolve_placeholder<'a>(v: &Value, attachments: &'a [Bytes]) -> Option<&'a Bytes> {
    if !is_placeholder(v) {
        return None;
    }
    attachments.get(placeholder_num(v)?)
}

/// Checks that every placeholder in `data` has a num < `attachments` (a
/// malformed packet otherwise, as `socket.io-parser` decides). A placeholder
/// is any object with `"_placeholder": true`; its `num` must be a
/// non-negative integer.
pub fn placeholders_valid(data: &Value, attachments: usize) -> bool {
    // An explicit stack: a hand-built Value may nest deeper than the call
    // stack allows (serde_json limits parsed ones to 128 levels).
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(_) if is_placeholder(v) => match placeholder_num(v) {
                Some(n) if n < attachments => {}
                _ => return false,
            },
            Value::Object(map) => stack.extend(map.values()),
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    true
}
