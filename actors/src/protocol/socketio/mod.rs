//! Socket.IO v5 packets: the text inside an Engine.IO message, and the binary
//! attachments that follow a BINARY_EVENT / BINARY_ACK.
//!
//! Wire format (the Engine.IO `4` prefix is not part of it):
//!
//! ```text
//! <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
//! ```
//!
//! The namespace is omitted for `/`. Decoding follows `socket.io-parser`: the
//! namespace runs from a leading `/` to the first `,` or to the end of the
//! text (so `0/admin` is a CONNECT to `/admin`), digits after it are the ack
//! id, and the rest must be one JSON value of the shape the type requires. A
//! few checks are stricter than the reference parser, which would accept the
//! packet only to fail later: EVENT and ACK need their payload, ACK its id,
//! and CONNECT / DISCONNECT / CONNECT_ERROR may not carry an id.
//!
//! Outgoing events are written by [`write_event`] / [`write_ack`] straight
//! into a buffer, once per broadcast, from already-serialized arguments.
//! The binary attachments of a packet are collected and its placeholders
//! resolved in `binary` (re-exported here).

use bytes::{BufMut, BytesMut};
use serde_json::Value;

use super::DecodeError;

mod binary;
pub use binary::*;

/// The most binary attachments one packet may announce. The reference parser
/// has no limit; this one keeps a peer from making the server wait for (and
/// buffer) an unbounded number of frames. Generous for any real event.
pub const MAX_ATTACHMENTS: usize = 256;

/// Event names a peer may not emit: they are the names of the socket's own
/// lifecycle events (the same list as `socket.io-parser`).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Joins a namespace (client), or accepts the join with `{ sid }` (server).
    Connect = 0,
    /// Leaves a namespace.
    Disconnect = 1,
    /// An event: `["name", ...args]`, with an ack id when the sender wants an
    /// answer.
    Event = 2,
    /// The answer to an event: `[...args]`.
    Ack = 3,
    /// Refuses a CONNECT: `{ message, data? }`.
    ConnectError = 4,
    /// An event whose args contain binary attachments.
    BinaryEvent = 5,
    /// An ack whose args contain binary attachments.
    BinaryAck = 6,
}

impl PacketKind {
    /// The kind for a type character (`'0'`..`'6'`).
    pub fn from_char(c: char) -> Option<PacketKind> {
        Some(match c {
            '0' => PacketKind::Connect,
            '1' => PacketKind::Disconnect,
            '2' => PacketKind::Event,
            '3' => PacketKind::Ack,
            '4' => PacketKind::ConnectError,
            '5' => PacketKind::BinaryEvent,
            '6' => PacketKind::BinaryAck,
            _ => return None,
        })
    }

    /// The type character written on the wire.
    pub fn as_char(self) -> char {
        char::from(b'0' + self as u8)
    }

    /// BINARY_EVENT and BINARY_ACK, which announce attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }
}

/// One Socket.IO packet (for binary kinds, without its attachments: see
/// [`Reassembler`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketKind,
    /// The namespace; `"/"` when absent on the wire.
    pub nsp: String,
    /// The acknowledgement id.
    pub id: Option<u64>,
    /// The JSON payload; binary arguments appear as [`placeholder`]s.
    pub data: Option<Value>,
    /// The number of binary attachments announced (binary kinds only; 0
    /// otherwise).
    pub attachments: usize,
}

impl Packet {
    /// A packet of `kind` in `nsp`, with no id, data or attachments.
    pub fn new(kind: PacketKind, nsp: impl Into<String>) -> Packet {
        Packet {
            kind,
            nsp: nsp.into(),
            id: None,
            data: None,
            attachments: 0,
        }
    }

    /// Decodes the text of an Engine.IO message (the part after `4`).
    ///
    /// Checks per kind: CONNECT data absent or an object; DISCONNECT no data;
    /// EVENT / BINARY_EVENT a non-empty array whose first element is a string
    /// that is not a [reserved](RESERVED_EVENTS) name; ACK / BINARY_ACK an id
    /// and an array; CONNECT_ERROR an object or a string; binary kinds
    /// `<n>-` (at most [`MAX_ATTACHMENTS`]) and placeholders that index the
    /// announced attachments. Trailing characters after the JSON are
    /// rejected.
    pub fn decode(text: &str) -> Result<Packet, DecodeError> {
        let bytes = text.as_bytes();
        let Some(first) = text.chars().next() else {
            return Err(DecodeError::Empty);
        };
        let kind = PacketKind::from_char(first).ok_or(DecodeError::UnknownPacketType(first))?;
        let mut i = 1; // the type character is ASCII here

        let mut attachments = 0;
        if kind.is_binary() {
            let digits = count_digits(&bytes[i..]);
            if digits == 0 || bytes.get(i + digits) != Some(&b'-') {
                return Err(DecodeError::MissingAttachments);
            }
            attachments = text[i..i + digits]
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= MAX_ATTACHMENTS)
                .ok_or(DecodeError::TooManyAttachments)?;
            i += digits + 1;
        }

        let nsp = if bytes.get(i) == Some(&b'/') {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |p| i + p);
            let nsp = &text[i..end];
            if nsp.chars().any(char::is_control) {
                return Err(DecodeError::InvalidNamespace);
            }
            i = (end + 1).min(bytes.len());
            nsp.to_owned()
        } else {
            "/".to_owned()
        };

        let digits = count_digits(&bytes[i..]);
        let id = if digits > 0 {
            let id = text[i..i + digits]
                .parse::<u64>()
                .map_err(|_| DecodeError::InvalidAckId)?;
            i += digits;
            Some(id)
        } else {
            None
        };

        let rest = &text[i..];
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(rest)
                    .map_err(|e| DecodeError::InvalidJson(e.to_string()))?,
            )
        };

        let packet = Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        };
        packet.validate()?;
        Ok(packet)
    }

    /// The shape rules of [`Packet::decode`], once the fields are split.
    fn validate(&self) -> Result<(), DecodeError> {
        use DecodeError::{InvalidAckId, InvalidPayload};
        match self.kind {
            PacketKind::Connect | PacketKind::Disconnect | PacketKind::ConnectError
                if self.id.is_some() =>
            {
                return Err(InvalidAckId);
            }
            PacketKind::Ack | PacketKind::BinaryAck if self.id.is_none() => {
                return Err(InvalidAckId);
            }
            _ => {}
        }
        match (self.kind, &self.data) {
            (PacketKind::Connect, None | Some(Value::Object(_))) => {}
            (PacketKind::Connect, Some(_)) => {
                return Err(InvalidPayload("CONNECT data must be an object"))
            }
            (PacketKind::Disconnect, None) => {}
            (PacketKind::Disconnect, Some(_)) => {
                return Err(InvalidPayload("DISCONNECT carries no data"))
            }
            (PacketKind::ConnectError, Some(Value::Object(_) | Value::String(_))) => {}
            (PacketKind::ConnectError, _) => {
                return Err(InvalidPayload(
                    "CONNECT_ERROR data must be an object or a string",
                ))
            }
            (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(args))) => {
                match args.first() {
                    Some(Value::String(name)) if RESERVED_EVENTS.contains(&name.as_str()) => {
                        return Err(InvalidPayload("reserved event name"))
                    }
                    Some(Value::String(_)) => {}
                    _ => return Err(InvalidPayload("EVENT data must start with the event name")),
                }
            }
            (PacketKind::Event | PacketKind::BinaryEvent, _) => {
                return Err(InvalidPayload("EVENT data must be a non-empty array"))
            }
            (PacketKind::Ack | PacketKind::BinaryAck, Some(Value::Array(_))) => {}
            (PacketKind::Ack | PacketKind::BinaryAck, _) => {
                return Err(InvalidPayload("ACK data must be an array"))
            }
        }
        if self.kind.is_binary() {
            if self.attachments > MAX_ATTACHMENTS {
                return Err(DecodeError::TooManyAttachments);
            }
            if let Some(data) = &self.data {
                if !placeholders_valid(data, self.attachments) {
                    return Err(DecodeError::InvalidPlaceholder);
                }
            }
        }
        Ok(())
    }

    /// Encodes to the wire text (without the Engine.IO `4`): e.g.
    /// `2/chat,12["ev",1]`, `0{"sid":"x"}`,
    /// `451-["ev",{"_placeholder":true,"num":0}]`. The `/` namespace is
    /// omitted, other namespaces are followed by `,`.
    pub fn encode(&self) -> String {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        // Everything written is UTF-8 (ASCII, a `String`, or serde_json text).
        String::from_utf8_lossy(&out).into_owned()
    }

    /// [`Packet::encode`], appended to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(16 + self.nsp.len());
        out.put_u8(b'0' + self.kind as u8);
        if self.kind.is_binary() {
            put_u64(out, self.attachments as u64);
            out.put_u8(b'-');
        }
        put_nsp(out, &self.nsp);
        if let Some(id) = self.id {
            put_u64(out, id);
        }
        if let Some(data) = &self.data {
            // A `Value` always serializes (string keys, finite numbers) and a
            // BytesMut never refuses a write.
            let _ = serde_json::to_writer(out.writer(), data);
        }
    }

    /// The event name of an EVENT / BINARY_EVENT (the first element of its
    /// data).
    pub fn event_name(&self) -> Option<&str> {
        match (self.kind, &self.data) {
            (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(args))) => {
                args.first().and_then(Value::as_str)
            }
            _ => None,
        }
    }
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[at..]);
}

fn put_nsp(out: &mut BytesMut, nsp: &str) {
    if !nsp.is_empty() && nsp != "/" {
        out.put_slice(nsp.as_bytes());
        out.put_u8(b',');
    }
}

/// Writes `s` as a JSON string, escaped as `JSON.stringify` does.
fn put_json_str(out: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut clean_from = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.put_slice(&bytes[clean_from..i]);
        if escape.is_empty() {
            out.put_slice(b"\\u00");
            out.put_u8(HEX[usize::from(c >> 4)]);
            out.put_u8(HEX[usize::from(c & 0xf)]);
        } else {
            out.put_slice(escape);
        }
        clean_from = i + 1;
    }
    out.put_slice(&bytes[clean_from..]);
    out.put_u8(b'"');
}

fn put_args(out: &mut BytesMut, first: bool, args: &[&[u8]]) {
    for (i, arg) in args.iter().enumerate() {
        if !(first && i == 0) {
            out.put_u8(b',');
        }
        out.put_slice(arg);
    }
}

fn args_len(args: &[&[u8]]) -> usize {
    args.iter().map(|a| a.len() + 1).sum()
}

/// Fast path used for every outgoing event (called once per broadcast, not
/// per recipient): writes `[4]2[/nsp,][id]["event",<args...>]` into `out`.
/// `with_eio_prefix` writes the leading Engine.IO `4`.
///
/// `args` are already-serialized JSON values (each a complete JSON text), so
/// callers can serialize structs directly; they are copied as they are, not
/// checked.
pub fn write_event(
    out: &mut BytesMut,
    with_eio_prefix: bool,
    nsp: &str,
    ack_id: Option<u64>,
    event: &str,
    args: &[&[u8]],
) {
    out.reserve(32 + nsp.len() + event.len() + args_len(args));
    if with_eio_prefix {
        out.put_u8(b'4');
    }
    out.put_u8(b'2');
    put_nsp(out, nsp);
    if let Some(id) = ack_id {
        put_u64(out, id);
    }
    out.put_u8(b'[');
    put_json_str(out, event);
    put_args(out, false, args);
    out.put_u8(b']');
}

/// Same for an acknowledgement: `[4]3[/nsp,]<id>[<args...>]`.
pub fn write_ack(
    out: &mut BytesMut,
    with_eio_prefix: bool,
    nsp: &str,
    ack_id: u64,
    args: &[&[u8]],
) {
    out.reserve(32 + nsp.len() + args_len(args));
    if with_eio_prefix {
        out.put_u8(b'4');
    }
    out.put_u8(b'3');
    put_nsp(out, nsp);
    put_u64(out, ack_id);
    out.put_u8(b'[');
    put_args(out, true, args);
    out.put_u8(b']');
}

#[cfg(test)]
mod tests;
