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

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use super::DecodeError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dec(s: &str) -> Packet {
        Packet::decode(s).unwrap_or_else(|e| panic!("{s:?} should decode: {e}"))
    }

    fn pk(
        kind: PacketKind,
        nsp: &str,
        id: Option<u64>,
        data: Option<Value>,
        attachments: usize,
    ) -> Packet {
        Packet {
            kind,
            nsp: nsp.into(),
            id,
            data,
            attachments,
        }
    }

    /// Decodes `wire`, checks it equals `want`, and that encoding gives `wire`
    /// back.
    fn round_trip(wire: &str, want: Packet) {
        assert_eq!(dec(wire), want, "decoding {wire:?}");
        assert_eq!(want.encode(), wire, "encoding {want:?}");
        let mut out = BytesMut::from(&b"4"[..]);
        want.encode_into(&mut out);
        assert_eq!(&out[..], format!("4{wire}").as_bytes());
    }

    fn ph(n: usize) -> Value {
        placeholder(n)
    }

    // --- the Socket.IO v5 spec's "Packet encoding" tables ----------------

    #[test]
    fn spec_connection_table() {
        use PacketKind::*;
        round_trip("0", pk(Connect, "/", None, None, 0));
        round_trip(
            r#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
            pk(
                Connect,
                "/",
                None,
                Some(json!({"sid": "wZX3oN0bSVIhsaknAAAI"})),
                0,
            ),
        );
        round_trip("0/admin,", pk(Connect, "/admin", None, None, 0));
        round_trip(
            r#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            pk(
                Connect,
                "/admin",
                None,
                Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"})),
                0,
            ),
        );
        round_trip(
            r#"4{"message":"Not authorized"}"#,
            pk(
                ConnectError,
                "/",
                None,
                Some(json!({"message": "Not authorized"})),
                0,
            ),
        );
    }

    #[test]
    fn spec_sending_table() {
        use PacketKind::*;
        round_trip(r#"2["foo"]"#, pk(Event, "/", None, Some(json!(["foo"])), 0));
        round_trip(
            r#"2/admin,["bar"]"#,
            pk(Event, "/admin", None, Some(json!(["bar"])), 0),
        );
        round_trip(
            r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            pk(BinaryEvent, "/", None, Some(json!(["baz", ph(0)])), 1),
        );
        round_trip(
            r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            pk(
                BinaryEvent,
                "/admin",
                None,
                Some(json!(["baz", ph(0), ph(1)])),
                2,
            ),
        );
    }

    #[test]
    fn spec_acknowledgement_table() {
        use PacketKind::*;
        round_trip(
            r#"212["foo"]"#,
            pk(Event, "/", Some(12), Some(json!(["foo"])), 0),
        );
        round_trip("312[]", pk(Ack, "/", Some(12), Some(json!([])), 0));
        round_trip(
            r#"2/admin,13["foo"]"#,
            pk(Event, "/admin", Some(13), Some(json!(["foo"])), 0),
        );
        round_trip(
            r#"3/admin,13["bar"]"#,
            pk(Ack, "/admin", Some(13), Some(json!(["bar"])), 0),
        );
        round_trip(
            r#"51-14["foo",{"_placeholder":true,"num":0}]"#,
            pk(BinaryEvent, "/", Some(14), Some(json!(["foo", ph(0)])), 1),
        );
        round_trip(
            r#"314["bar"]"#,
            pk(Ack, "/", Some(14), Some(json!(["bar"])), 0),
        );
        round_trip(
            r#"215["foo"]"#,
            pk(Event, "/", Some(15), Some(json!(["foo"])), 0),
        );
        round_trip(
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
            pk(BinaryAck, "/", Some(15), Some(json!(["bar", ph(0)])), 1),
        );
    }

    #[test]
    fn spec_disconnection_table() {
        round_trip("1", pk(PacketKind::Disconnect, "/", None, None, 0));
        round_trip(
            "1/admin,",
            pk(PacketKind::Disconnect, "/admin", None, None, 0),
        );
    }

    #[test]
    fn spec_sample_session_frames() {
        use PacketKind::*;
        // The WebSocket frames of the sample session, without the EIO '4'.
        round_trip("0/admin,", pk(Connect, "/admin", None, None, 0));
        round_trip(
            r#"0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}"#,
            pk(
                Connect,
                "/admin",
                None,
                Some(json!({"sid": "-G5j-67EZFp-q59rADQM"})),
                0,
            ),
        );
        round_trip(
            r#"2/admin,1["tellme"]"#,
            pk(Event, "/admin", Some(1), Some(json!(["tellme"])), 0),
        );
        round_trip(
            r#"61-/admin,1[{"_placeholder":true,"num":0}]"#,
            pk(BinaryAck, "/admin", Some(1), Some(json!([ph(0)])), 1),
        );
        round_trip(
            r#"2["hey","Jude"]"#,
            pk(Event, "/", None, Some(json!(["hey", "Jude"])), 0),
        );
        round_trip(
            r#"2["hello"]"#,
            pk(Event, "/", None, Some(json!(["hello"])), 0),
        );
    }

    #[test]
    fn brief_examples() {
        use PacketKind::*;
        round_trip(
            r#"0/admin,{"token":"123"}"#,
            pk(Connect, "/admin", None, Some(json!({"token": "123"})), 0),
        );
        round_trip(
            r#"4/admin,{"message":"Not authorized"}"#,
            pk(
                ConnectError,
                "/admin",
                None,
                Some(json!({"message": "Not authorized"})),
                0,
            ),
        );
        round_trip(
            r#"2["hello",1]"#,
            pk(Event, "/", None, Some(json!(["hello", 1])), 0),
        );
        round_trip(
            r#"2/admin,456["project:delete",123]"#,
            pk(
                Event,
                "/admin",
                Some(456),
                Some(json!(["project:delete", 123])),
                0,
            ),
        );
        round_trip(
            "3/admin,456[]",
            pk(Ack, "/admin", Some(456), Some(json!([])), 0),
        );
        round_trip(
            r#"51-["hello",{"_placeholder":true,"num":0}]"#,
            pk(BinaryEvent, "/", None, Some(json!(["hello", ph(0)])), 1),
        );
        round_trip(
            r#"61-/admin,456[{"_placeholder":true,"num":0}]"#,
            pk(BinaryAck, "/admin", Some(456), Some(json!([ph(0)])), 1),
        );
    }

    // --- what the official compliance suite sends and expects --------------

    #[test]
    fn compliance_suite_frames() {
        use PacketKind::*;
        assert_eq!(
            dec(r#"0{"token":"123"}"#).data,
            Some(json!({"token": "123"}))
        );
        assert_eq!(dec("0/custom,").nsp, "/custom");
        assert_eq!(
            dec(r#"0/custom,{"token":"abc"}"#).data,
            Some(json!({"token": "abc"}))
        );
        // A namespace may end the text without a comma.
        assert_eq!(dec("0/random"), pk(Connect, "/random", None, None, 0));
        assert_eq!(dec("1/custom"), pk(Disconnect, "/custom", None, None, 0));
        round_trip(
            r#"4/random,{"message":"Invalid namespace"}"#,
            pk(
                ConnectError,
                "/random",
                None,
                Some(json!({"message": "Invalid namespace"})),
                0,
            ),
        );
        round_trip(
            r#"2["auth",{}]"#,
            pk(Event, "/", None, Some(json!(["auth", {}])), 0),
        );
        round_trip(
            r#"2/custom,["auth",{"token":"abc"}]"#,
            pk(
                Event,
                "/custom",
                None,
                Some(json!(["auth", {"token": "abc"}])),
                0,
            ),
        );
        round_trip(
            r#"2["message",1,"2",{"3":[true]}]"#,
            pk(
                Event,
                "/",
                None,
                Some(json!(["message", 1, "2", {"3": [true]}])),
                0,
            ),
        );
        round_trip(
            r#"2456["message-with-ack",1,"2",{"3":[false]}]"#,
            pk(
                Event,
                "/",
                Some(456),
                Some(json!(["message-with-ack", 1, "2", {"3": [false]}])),
                0,
            ),
        );
        round_trip(
            r#"3456[1,"2",{"3":[false]}]"#,
            pk(
                Ack,
                "/",
                Some(456),
                Some(json!([1, "2", {"3": [false]}])),
                0,
            ),
        );
        round_trip(
            r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            pk(
                BinaryEvent,
                "/",
                None,
                Some(json!(["message", ph(0), ph(1)])),
                2,
            ),
        );
        round_trip(
            r#"52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            pk(
                BinaryEvent,
                "/",
                Some(789),
                Some(json!(["message-with-ack", ph(0), ph(1)])),
                2,
            ),
        );
        round_trip(
            r#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            pk(BinaryAck, "/", Some(789), Some(json!([ph(0), ph(1)])), 2),
        );
    }

    #[test]
    fn compliance_suite_rejections() {
        // "invalid format (unknown packet type)": 4abc
        assert_eq!(
            Packet::decode("abc"),
            Err(DecodeError::UnknownPacketType('a'))
        );
        // "invalid payload format": 42{}
        assert!(matches!(
            Packet::decode("2{}"),
            Err(DecodeError::InvalidPayload(_))
        ));
        // "invalid ack id": 42abc[...]
        assert!(matches!(
            Packet::decode(r#"2abc["message-with-ack",1,"2",{"3":[false]}]"#),
            Err(DecodeError::InvalidJson(_))
        ));
    }

    // --- per-kind validation ------------------------------------------------

    #[test]
    fn validates_payload_shape_per_kind() {
        use DecodeError::*;
        let payload_err = |s: &str| matches!(Packet::decode(s), Err(InvalidPayload(_)));
        // CONNECT: absent or an object.
        assert!(payload_err("0[]"));
        assert!(payload_err(r#"0"x""#));
        assert!(payload_err("0null"));
        // DISCONNECT: nothing.
        assert!(payload_err("1{}"));
        assert!(payload_err("1/admin,[]"));
        // EVENT: non-empty array starting with a string.
        assert!(payload_err("2"));
        assert!(payload_err("2[]"));
        assert!(payload_err("2[1]"));
        assert!(payload_err("2[null]"));
        assert!(payload_err(r#"2{"a":1}"#));
        assert!(payload_err(r#"2"ev""#));
        assert!(payload_err("212"));
        assert!(payload_err(r#"51-[{"_placeholder":true,"num":0}]"#));
        // Reserved names.
        for name in RESERVED_EVENTS {
            assert!(payload_err(&format!(r#"2["{name}"]"#)), "{name}");
        }
        assert!(Packet::decode(r#"2["connection"]"#).is_ok());
        // ACK: an id and an array.
        assert_eq!(Packet::decode("3[]"), Err(InvalidAckId));
        assert_eq!(Packet::decode("3/admin,[]"), Err(InvalidAckId));
        assert!(payload_err("312"));
        assert!(payload_err("312{}"));
        assert_eq!(Packet::decode(r#"61-["x"]"#), Err(InvalidAckId));
        // CONNECT_ERROR: an object or a string.
        assert!(payload_err("4"));
        assert!(payload_err("4[]"));
        assert!(payload_err("4/admin,"));
        assert_eq!(
            dec(r#"4"Not authorized""#).data,
            Some(json!("Not authorized"))
        );
        // No ack id on CONNECT, DISCONNECT, CONNECT_ERROR.
        assert_eq!(Packet::decode("012{}"), Err(InvalidAckId));
        assert_eq!(Packet::decode("0/admin,7"), Err(InvalidAckId));
        assert_eq!(Packet::decode("13"), Err(InvalidAckId));
        assert_eq!(Packet::decode(r#"42{"message":"x"}"#), Err(InvalidAckId));
    }

    #[test]
    fn binary_packets_need_an_attachment_count() {
        use DecodeError::*;
        assert_eq!(Packet::decode(r#"5["a"]"#), Err(MissingAttachments));
        assert_eq!(Packet::decode(r#"5-["a"]"#), Err(MissingAttachments));
        assert_eq!(Packet::decode(r#"51["a"]"#), Err(MissingAttachments));
        assert_eq!(Packet::decode("5"), Err(MissingAttachments));
        assert_eq!(Packet::decode("6"), Err(MissingAttachments));
        assert_eq!(Packet::decode(r#"5a-["a"]"#), Err(MissingAttachments));
        assert_eq!(
            Packet::decode(r#"5/admin,1-["a"]"#),
            Err(MissingAttachments)
        );
        assert_eq!(Packet::decode("61-"), Err(InvalidAckId));
        assert_eq!(Packet::decode(r#"5257-["a"]"#), Err(TooManyAttachments));
        assert_eq!(
            Packet::decode(r#"599999999999999999999999-["a"]"#),
            Err(TooManyAttachments)
        );
        assert_eq!(dec(r#"5256-["a"]"#).attachments, 256);
        // Zero attachments is legal; a leading zero too.
        assert_eq!(dec(r#"50-["a"]"#).attachments, 0);
        assert_eq!(
            dec(r#"501-["a",{"_placeholder":true,"num":0}]"#).attachments,
            1
        );
    }

    #[test]
    fn placeholders_must_index_announced_attachments() {
        use DecodeError::InvalidPlaceholder;
        assert_eq!(
            Packet::decode(r#"51-["a",{"_placeholder":true,"num":1}]"#),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            Packet::decode(r#"50-["a",{"_placeholder":true,"num":0}]"#),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            Packet::decode(r#"51-["a",{"_placeholder":true,"num":-1}]"#),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            Packet::decode(r#"51-["a",{"_placeholder":true,"num":0.5}]"#),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            Packet::decode(r#"51-["a",{"_placeholder":true,"num":"0"}]"#),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            Packet::decode(r#"51-["a",{"_placeholder":true}]"#),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            Packet::decode(r#"61-1[{"x":[{"_placeholder":true,"num":3}]}]"#),
            Err(InvalidPlaceholder)
        );
        // Not a placeholder unless `_placeholder` is `true`.
        assert!(Packet::decode(r#"51-["a",{"_placeholder":"yes","num":9}]"#).is_ok());
        // Nested placeholders are fine.
        assert!(Packet::decode(
            r#"52-["a",{"file":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]"#
        )
        .is_ok());
        // Non-binary packets treat the shape as plain data.
        assert!(Packet::decode(r#"2["a",{"_placeholder":true,"num":5}]"#).is_ok());
    }

    // --- namespaces and ack ids ----------------------------------------------

    #[test]
    fn namespace_parsing() {
        assert_eq!(dec(r#"2/chat,12["ev",1]"#).nsp, "/chat");
        assert_eq!(dec(r#"2/chat,12["ev",1]"#).id, Some(12));
        assert_eq!(dec(r#"2/,["ev"]"#).nsp, "/");
        assert_eq!(dec(r#"2/a/b,["ev"]"#).nsp, "/a/b");
        assert_eq!(dec(r#"2/ünï,["ev"]"#).nsp, "/ünï");
        // Without a comma the namespace swallows the rest, so an event has
        // no data (as in socket.io-parser).
        assert!(matches!(
            Packet::decode(r#"2/chat["ev"]"#),
            Err(DecodeError::InvalidPayload(_))
        ));
        assert!(Packet::decode(r#"2/chat["ev",1]"#).is_err());
        // A namespace must start with '/': otherwise it is read as JSON.
        assert!(matches!(
            Packet::decode(r#"2chat,["ev"]"#),
            Err(DecodeError::InvalidJson(_))
        ));
        assert!(matches!(
            Packet::decode("0admin,"),
            Err(DecodeError::InvalidJson(_))
        ));
        assert_eq!(
            Packet::decode("0/ad\0min,"),
            Err(DecodeError::InvalidNamespace)
        );
        assert_eq!(
            Packet::decode("0/ad\nmin,"),
            Err(DecodeError::InvalidNamespace)
        );
        // Encoding omits "/" and also "" (as the reference encoder does).
        assert_eq!(Packet::new(PacketKind::Connect, "").encode(), "0");
        assert_eq!(Packet::new(PacketKind::Connect, "/").encode(), "0");
    }

    #[test]
    fn ack_id_parsing() {
        assert_eq!(dec(r#"20["a"]"#).id, Some(0));
        assert_eq!(dec(r#"2007["a"]"#).id, Some(7));
        let max = format!(r#"2{}["a"]"#, u64::MAX);
        assert_eq!(dec(&max).id, Some(u64::MAX));
        assert_eq!(dec(&max).encode(), max);
        let over = r#"218446744073709551616["a"]"#;
        assert_eq!(Packet::decode(over), Err(DecodeError::InvalidAckId));
        let huge = format!(r#"3/admin,{}[]"#, "9".repeat(400));
        assert_eq!(Packet::decode(&huge), Err(DecodeError::InvalidAckId));
        // Only ASCII digits count.
        assert!(Packet::decode(r#"2١٢["a"]"#).is_err());
        assert!(Packet::decode(r#"2+1["a"]"#).is_err());
        assert!(Packet::decode(r#"2 1["a"]"#).is_err());
    }

    // --- garbage -----------------------------------------------------------

    #[test]
    fn rejects_garbage() {
        use DecodeError::*;
        assert_eq!(Packet::decode(""), Err(Empty));
        assert_eq!(Packet::decode("7"), Err(UnknownPacketType('7')));
        assert_eq!(Packet::decode("9[]"), Err(UnknownPacketType('9')));
        assert_eq!(Packet::decode("€"), Err(UnknownPacketType('€')));
        assert_eq!(Packet::decode("\0"), Err(UnknownPacketType('\0')));
        assert_eq!(Packet::decode("b"), Err(UnknownPacketType('b')));
        assert_eq!(Packet::decode(" 2[\"a\"]"), Err(UnknownPacketType(' ')));
        let json_err = |s: &str| matches!(Packet::decode(s), Err(InvalidJson(_)));
        assert!(json_err(r#"2["a""#));
        assert!(json_err(r#"2["a"]x"#));
        assert!(json_err(r#"2["a"]["b"]"#));
        assert!(json_err(r#"2["a"],"#));
        assert!(json_err(r#"0{"token":}"#));
        assert!(json_err("2 "));
        assert!(json_err("2\0[\"a\"]"));
        assert!(json_err("2[\"a\0\"]"));
        assert!(json_err(r#"2["a",1e999]"#));
        assert!(json_err(r#"2["a",NaN]"#));
        assert!(json_err(r#"2['a']"#));
        // Deep nesting stops at serde_json's recursion limit, not the stack.
        let deep = format!(r#"2["a",{}{}]"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(json_err(&deep));
        // Whitespace around the JSON is JSON.
        assert_eq!(dec("2 [\"a\"] \n").data, Some(json!(["a"])));
    }

    #[test]
    fn never_panics_on_short_inputs() {
        let alphabet = [
            '0', '1', '2', '3', '4', '5', '6', '-', '/', ',', '[', ']', '{', '}', '"', '9', 'a',
            '€', '\0',
        ];
        let mut s = String::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        s.clear();
                        s.extend([a, b, c, d]);
                        let _ = Packet::decode(&s);
                        let _ = Packet::decode(&s[..a.len_utf8()]);
                        let _ = Packet::decode(&s[..a.len_utf8() + b.len_utf8()]);
                    }
                }
            }
        }
    }

    // --- encoding ------------------------------------------------------------

    #[test]
    fn encode_examples_from_the_api() {
        let mut p = pk(
            PacketKind::Event,
            "/chat",
            Some(12),
            Some(json!(["ev", 1])),
            0,
        );
        assert_eq!(p.encode(), r#"2/chat,12["ev",1]"#);
        p = pk(PacketKind::Connect, "/", None, Some(json!({"sid": "x"})), 0);
        assert_eq!(p.encode(), r#"0{"sid":"x"}"#);
        p = pk(
            PacketKind::BinaryEvent,
            "/",
            None,
            Some(json!(["ev", ph(0)])),
            1,
        );
        let mut out = BytesMut::new();
        out.put_u8(b'4');
        p.encode_into(&mut out);
        assert_eq!(&out[..], br#"451-["ev",{"_placeholder":true,"num":0}]"#);
        // Attachment counts are written for binary kinds only.
        p = pk(PacketKind::Event, "/", None, Some(json!(["ev"])), 3);
        assert_eq!(p.encode(), r#"2["ev"]"#);
        p = pk(PacketKind::BinaryAck, "/x", Some(0), Some(json!([])), 0);
        assert_eq!(p.encode(), "60-/x,0[]");
    }

    #[test]
    fn round_trips_unicode_and_escapes() {
        let p = pk(
            PacketKind::Event,
            "/chat",
            Some(3),
            Some(json!(["send_message", {"text": "héllo \"wörld\" \n\t\u{1e} 🎉 \\ </script>"}])),
            0,
        );
        assert_eq!(dec(&p.encode()), p);
    }

    #[test]
    fn kind_helpers() {
        for (c, k) in ('0'..='6').zip([
            PacketKind::Connect,
            PacketKind::Disconnect,
            PacketKind::Event,
            PacketKind::Ack,
            PacketKind::ConnectError,
            PacketKind::BinaryEvent,
            PacketKind::BinaryAck,
        ]) {
            assert_eq!(PacketKind::from_char(c), Some(k));
            assert_eq!(k.as_char(), c);
            assert_eq!(k.is_binary(), c >= '5');
        }
        assert_eq!(PacketKind::from_char('7'), None);
        assert_eq!(dec(r#"2["ev",1]"#).event_name(), Some("ev"));
        assert_eq!(
            dec(r#"51-["up",{"_placeholder":true,"num":0}]"#).event_name(),
            Some("up")
        );
        assert_eq!(dec(r#"31["ev"]"#).event_name(), None);
    }

    // --- write_event / write_ack ------------------------------------------

    fn event(prefix: bool, nsp: &str, id: Option<u64>, name: &str, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = BytesMut::new();
        write_event(&mut out, prefix, nsp, id, name, &args);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn ack(prefix: bool, nsp: &str, id: u64, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = BytesMut::new();
        write_ack(&mut out, prefix, nsp, id, &args);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn write_event_outputs() {
        assert_eq!(event(false, "/", None, "foo", &[]), r#"2["foo"]"#);
        assert_eq!(event(true, "/", None, "foo", &[]), r#"42["foo"]"#);
        assert_eq!(
            event(true, "/", None, "hey", &[r#""Jude""#]),
            r#"42["hey","Jude"]"#
        );
        assert_eq!(
            event(false, "/admin", None, "bar", &[]),
            r#"2/admin,["bar"]"#
        );
        assert_eq!(
            event(false, "/admin", Some(13), "foo", &[]),
            r#"2/admin,13["foo"]"#
        );
        assert_eq!(event(false, "", Some(12), "foo", &[]), r#"212["foo"]"#);
        assert_eq!(
            event(
                true,
                "/chat",
                Some(12),
                "ev",
                &["1", r#"{"a":[true,null]}"#, "\"x\""]
            ),
            r#"42/chat,12["ev",1,{"a":[true,null]},"x"]"#
        );
        assert_eq!(event(true, "/", None, "auth", &["{}"]), r#"42["auth",{}]"#);
        // The output is what the decoder (and so the client) reads.
        let text = event(
            false,
            "/chat",
            Some(7),
            "new_message",
            &[r#"{"id":"m1","seq":1}"#],
        );
        assert_eq!(
            dec(&text),
            pk(
                PacketKind::Event,
                "/chat",
                Some(7),
                Some(json!(["new_message", {"id": "m1", "seq": 1}])),
                0
            )
        );
    }

    #[test]
    fn write_event_escapes_the_name_like_json() {
        for name in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\ncr\rtab\t",
            "\u{0}\u{1}\u{8}\u{c}\u{1e}\u{1f}\u{7f}",
            "é🎉</",
            "",
        ] {
            let text = event(false, "/", None, name, &[]);
            let want = format!("2[{}]", serde_json::to_string(name).unwrap());
            assert_eq!(text, want, "{name:?}");
            assert_eq!(
                serde_json::from_str::<Value>(&text[1..]).unwrap(),
                json!([name])
            );
        }
    }

    #[test]
    fn write_ack_outputs() {
        assert_eq!(ack(false, "/", 12, &[]), "312[]");
        assert_eq!(ack(true, "/", 12, &[]), "4312[]");
        assert_eq!(
            ack(false, "/admin", 13, &[r#""bar""#]),
            r#"3/admin,13["bar"]"#
        );
        assert_eq!(ack(false, "/admin", 456, &[]), "3/admin,456[]");
        assert_eq!(
            ack(true, "/", 456, &["1", r#""2""#, r#"{"3":[false]}"#]),
            r#"43456[1,"2",{"3":[false]}]"#
        );
        assert_eq!(
            ack(true, "/chat", u64::MAX, &[r#"{"ok":true}"#]),
            format!(r#"43/chat,{}[{{"ok":true}}]"#, u64::MAX)
        );
        let text = ack(false, "/file-upload", 0, &[r#"{"ok":true,"chunkIndex":3}"#]);
        assert_eq!(
            dec(&text),
            pk(
                PacketKind::Ack,
                "/file-upload",
                Some(0),
                Some(json!([{"ok": true, "chunkIndex": 3}])),
                0
            )
        );
    }

    #[test]
    fn writers_append() {
        let mut out = BytesMut::from(&b"xx"[..]);
        write_ack(&mut out, false, "/", 1, &[]);
        write_event(&mut out, false, "/", None, "e", &[]);
        assert_eq!(&out[..], br#"xx31[]2["e"]"#);
    }

    // --- Reassembler ---------------------------------------------------------

    #[test]
    fn reassembler_passes_plain_packets_through() {
        let mut r = Reassembler::default();
        let p = dec(r#"2["a"]"#);
        assert_eq!(r.push_packet(p.clone()), Ok(Some((p, vec![]))));
        assert!(!r.is_waiting());
        let z = dec(r#"50-["a"]"#);
        assert_eq!(r.push_packet(z.clone()), Ok(Some((z, vec![]))));
        assert!(!r.is_waiting());
    }

    #[test]
    fn reassembler_collects_attachments_in_order() {
        // The compliance suite's "packet with binary attachments".
        let mut r = Reassembler::default();
        let header =
            dec(r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        assert_eq!(r.push_packet(header.clone()), Ok(None));
        assert!(r.is_waiting());
        let one = Bytes::from_static(&[1, 2, 3]);
        let two = Bytes::from_static(&[4, 5, 6]);
        assert_eq!(r.push_binary(one.clone(), usize::MAX), Ok(None));
        assert!(r.is_waiting());
        let (packet, atts) = r.push_binary(two.clone(), usize::MAX).unwrap().unwrap();
        assert!(!r.is_waiting());
        assert_eq!(packet, header);
        assert_eq!(atts, vec![one.clone(), two.clone()]);
        let args = packet.data.as_ref().unwrap().as_array().unwrap();
        assert_eq!(resolve_placeholder(&args[1], &atts), Some(&one));
        assert_eq!(resolve_placeholder(&args[2], &atts), Some(&two));
        assert_eq!(resolve_placeholder(&args[0], &atts), None);
        // Ready for the next packet.
        assert!(r.push_packet(dec(r#"2["a"]"#)).unwrap().is_some());
    }

    #[test]
    fn reassembler_stops_holding_attachments_past_the_limit() {
        let mut r = Reassembler::default();
        let header = dec(r#"53-["a",{"_placeholder":true,"num":0}]"#);
        assert_eq!(r.push_packet(header.clone()), Ok(None));
        let kib = Bytes::from(vec![7u8; 1024]);
        assert_eq!(r.push_binary(kib.clone(), 2048), Ok(None));
        assert_eq!(r.push_binary(kib.clone(), 2048), Ok(None));
        assert_eq!(
            r.push_binary(Bytes::from_static(b"x"), 2048),
            Err(DecodeError::AttachmentsTooLarge)
        );
        assert!(!r.is_waiting(), "what it held is dropped");
        // Exactly at the limit is allowed.
        assert_eq!(r.push_packet(header), Ok(None));
        assert_eq!(r.push_binary(kib.clone(), 2048), Ok(None));
        assert_eq!(r.push_binary(kib.clone(), 2048), Ok(None));
        assert!(r.push_binary(Bytes::new(), 2048).unwrap().is_some());
    }

    #[test]
    fn reassembler_rejects_out_of_order_input() {
        let mut r = Reassembler::default();
        assert_eq!(
            r.push_binary(Bytes::from_static(b"x"), usize::MAX),
            Err(DecodeError::UnexpectedBinary)
        );
        let header = dec(r#"61-4[{"_placeholder":true,"num":0}]"#);
        assert_eq!(r.push_packet(header.clone()), Ok(None));
        assert_eq!(
            r.push_packet(dec(r#"2["a"]"#)),
            Err(DecodeError::AttachmentsPending)
        );
        // After an error the reassembler starts afresh.
        assert!(!r.is_waiting());
        assert_eq!(r.push_packet(header.clone()), Ok(None));
        assert_eq!(r.push_packet(header), Err(DecodeError::AttachmentsPending));
        assert_eq!(
            r.push_binary(Bytes::new(), usize::MAX),
            Err(DecodeError::UnexpectedBinary)
        );
    }

    #[test]
    fn reassembler_checks_hand_built_packets() {
        let mut r = Reassembler::default();
        let mut p = pk(
            PacketKind::BinaryEvent,
            "/",
            None,
            Some(json!(["a", ph(1)])),
            1,
        );
        assert_eq!(
            r.push_packet(p.clone()),
            Err(DecodeError::InvalidPlaceholder)
        );
        p.attachments = MAX_ATTACHMENTS + 1;
        assert_eq!(r.push_packet(p), Err(DecodeError::TooManyAttachments));
        // A huge count does not preallocate (it is refused first).
        let p = pk(
            PacketKind::BinaryEvent,
            "/",
            None,
            Some(json!(["a"])),
            usize::MAX,
        );
        assert_eq!(r.push_packet(p), Err(DecodeError::TooManyAttachments));
        assert!(!r.is_waiting());
    }

    // --- placeholders --------------------------------------------------------

    #[test]
    fn placeholder_helpers() {
        assert_eq!(placeholder(0), json!({"_placeholder": true, "num": 0}));
        assert_eq!(
            serde_json::to_string(&placeholder(3)).unwrap(),
            r#"{"_placeholder":true,"num":3}"#
        );
        let atts = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert_eq!(resolve_placeholder(&placeholder(1), &atts), Some(&atts[1]));
        assert_eq!(resolve_placeholder(&placeholder(2), &atts), None);
        assert_eq!(
            resolve_placeholder(&json!({"_placeholder": false, "num": 0}), &atts),
            None
        );
        assert_eq!(resolve_placeholder(&json!({"num": 0}), &atts), None);
        assert_eq!(
            resolve_placeholder(&json!({"_placeholder": true, "num": -1}), &atts),
            None
        );
        assert_eq!(resolve_placeholder(&json!("x"), &atts), None);

        assert!(placeholders_valid(
            &json!(["a", placeholder(0), {"k": [placeholder(1)]}]),
            2
        ));
        assert!(!placeholders_valid(
            &json!(["a", placeholder(0), {"k": [placeholder(2)]}]),
            2
        ));
        assert!(!placeholders_valid(&json!([{"_placeholder": true}]), 5));
        assert!(!placeholders_valid(&placeholder(0), 0));
        assert!(placeholders_valid(
            &json!([1, "two", null, {"three": 3}]),
            0
        ));
        // Placeholders are found at any depth.
        let mut deep = placeholder(0);
        for _ in 0..1_000 {
            deep = Value::Array(vec![deep]);
        }
        assert!(placeholders_valid(&deep, 1));
        assert!(!placeholders_valid(&deep, 0));
    }
}
