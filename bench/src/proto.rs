//! Engine.IO v4 / Socket.IO v5 frames, as far as the bench needs them.
//!
//! Pure code over byte slices: classify an Engine.IO packet, split a
//! Socket.IO packet into type, namespace, ack id and data, and find the few
//! fields the bench reads (`"ok":true`, a string field, the send timestamp in
//! a message text) by byte search. Nothing here parses JSON or allocates, so
//! reading a delivery costs a few scans of its bytes.

/// Engine.IO packet types the bench tells apart.
#[derive(Debug, PartialEq, Eq)]
pub enum Engine<'a> {
    /// `0{...}`: the handshake, with its JSON.
    Open(&'a [u8]),
    /// `1`: the server closes the session.
    Close,
    /// `2`: the server's heartbeat; answer `3`.
    Ping,
    /// `4...`: a Socket.IO packet.
    Message(&'a [u8]),
    /// Anything else (pong, upgrade, noop, garbage).
    Other,
}

/// Classifies one WebSocket text frame as an Engine.IO packet.
pub fn engine(frame: &[u8]) -> Engine<'_> {
    match frame.first() {
        Some(b'0') => Engine::Open(&frame[1..]),
        Some(b'1') => Engine::Close,
        Some(b'2') => Engine::Ping,
        Some(b'4') => Engine::Message(&frame[1..]),
        _ => Engine::Other,
    }
}

/// Socket.IO packet types.
pub const CONNECT: u8 = 0;
/// DISCONNECT.
pub const DISCONNECT: u8 = 1;
/// EVENT.
pub const EVENT: u8 = 2;
/// ACK.
pub const ACK: u8 = 3;
/// CONNECT_ERROR.
pub const CONNECT_ERROR: u8 = 4;

/// One Socket.IO packet, borrowed from its frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// 0 CONNECT … 6 BINARY_ACK.
    pub kind: u8,
    /// Binary attachments announced (`5`/`6` packets), else 0.
    pub attachments: u32,
    /// Namespace; `/` when the packet names none.
    pub nsp: &'a [u8],
    /// Ack id, when the packet carries one.
    pub id: Option<u64>,
    /// The JSON data that follows (may be empty).
    pub data: &'a [u8],
}

/// Splits a Socket.IO packet (the part after Engine.IO's `4`).
pub fn packet(msg: &[u8]) -> Option<Packet<'_>> {
    let (&first, mut rest) = msg.split_first()?;
    if !(b'0'..=b'6').contains(&first) {
        return None;
    }
    let kind = first - b'0';
    let mut attachments = 0;
    if kind == 5 || kind == 6 {
        let dash = rest.iter().position(|&b| b == b'-')?;
        attachments = parse_u64(&rest[..dash])? as u32;
        rest = &rest[dash + 1..];
    }
    let mut nsp: &[u8] = b"/";
    if rest.first() == Some(&b'/') {
        match rest.iter().position(|&b| b == b',') {
            Some(comma) => {
                nsp = &rest[..comma];
                rest = &rest[comma + 1..];
            }
            None => {
                nsp = rest;
                rest = &[];
            }
        }
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if digits > 0 {
        Some(parse_u64(&rest[..digits])?)
    } else {
        None
    };
    Some(Packet {
        kind,
        attachments,
        nsp,
        id,
        data: &rest[digits..],
    })
}

/// Parses ASCII decimal digits (all of them, at least one).
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let at = from
            + hay[from..=hay.len() - needle.len()]
                .iter()
                .position(|&b| b == first)?;
        if hay[at + 1..at + needle.len()] == *tail {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether an ack's data says `"ok":true`.
pub fn is_ok(data: &[u8]) -> bool {
    find(data, b"\"ok\":true").is_some()
}

/// The value of the first string field `"key":"value"` (no escapes inside).
pub fn string_field<'a>(data: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(at) = find(&data[from..], key.as_bytes()) {
        let start = from + at;
        let after = start + key.len();
        // A match must be a whole key: `"key":"`.
        if start > 0 && data[start - 1] == b'"' && data[after..].starts_with(b"\":\"") {
            let value = &data[after + 3..];
            let end = value.iter().position(|&b| b == b'"')?;
            return Some(&value[..end]);
        }
        from = after;
    }
    None
}

/// Prefix of every message text the bench sends: `t=<nanoseconds>;`.
pub const STAMP: &[u8] = b"\"text\":\"t=";

/// The send timestamp carried in a `new_message` (or ack) frame: the digits
/// after `"text":"t=`.
pub fn text_timestamp(data: &[u8]) -> Option<u64> {
    let at = find(data, STAMP)? + STAMP.len();
    let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    parse_u64(&data[at..at + digits])
}

/// Whether an EVENT's data is the event `name` (`["name",...`).
pub fn is_event(data: &[u8], name: &str) -> bool {
    data.len() > name.len() + 3
        && data[0] == b'['
        && data[1] == b'"'
        && data[2..].starts_with(name.as_bytes())
        && data[2 + name.len()] == b'"'
}

/// The text of a message sent at `stamp_ns`: `t=<ns>;` padded with `x` to
/// `len` bytes (or longer, when the stamp alone needs more).
pub fn message_text(out: &mut String, stamp_ns: u64, len: usize) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(out, "t={stamp_ns};");
    while out.len() < len {
        out.push('x');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_packets() {
        assert_eq!(
            engine(b"0{\"sid\":\"a\"}"),
            Engine::Open(b"{\"sid\":\"a\"}")
        );
        assert_eq!(engine(b"2"), Engine::Ping);
        assert_eq!(engine(b"1"), Engine::Close);
        assert_eq!(engine(b"40/chat,{}"), Engine::Message(b"0/chat,{}"));
        assert_eq!(engine(b"3"), Engine::Other);
        assert_eq!(engine(b""), Engine::Other);
    }

    #[test]
    fn connect_and_connect_error() {
        let p = packet(b"0/chat,{\"sid\":\"x\"}").unwrap();
        assert_eq!((p.kind, p.nsp, p.id), (CONNECT, &b"/chat"[..], None));
        assert_eq!(p.data, b"{\"sid\":\"x\"}");
        let p =
            packet(b"4/chat,{\"message\":\"no\",\"data\":{\"code\":\"unauthorized\"}}").unwrap();
        assert_eq!(p.kind, CONNECT_ERROR);
        assert_eq!(p.nsp, b"/chat");
    }

    #[test]
    fn events_and_acks() {
        let p = packet(b"3/chat,12[{\"ok\":true,\"lastSeq\":0}]").unwrap();
        assert_eq!((p.kind, p.nsp, p.id), (ACK, &b"/chat"[..], Some(12)));
        assert!(is_ok(p.data));
        let p = packet(b"2/chat,[\"new_message\",{\"text\":\"t=5;x\"},\"17\"]").unwrap();
        assert_eq!((p.kind, p.id), (EVENT, None));
        assert!(is_event(p.data, "new_message"));
        assert!(!is_event(p.data, "new_messag"));
        assert!(!is_event(p.data, "new_message_x"));
        // The root namespace names none; a namespace alone has no data.
        let p = packet(b"2[\"hello\"]").unwrap();
        assert_eq!((p.nsp, p.data), (&b"/"[..], &b"[\"hello\"]"[..]));
        let p = packet(b"1/chat").unwrap();
        assert_eq!(
            (p.kind, p.nsp, p.data),
            (DISCONNECT, &b"/chat"[..], &b""[..])
        );
        let p = packet(b"3/file-upload,7[{\"ok\":false}]").unwrap();
        assert!(!is_ok(p.data));
    }

    #[test]
    fn binary_packets() {
        let p = packet(b"51-/file-upload,3[\"upload_chunk\",{\"_placeholder\":true,\"num\":0}]")
            .unwrap();
        assert_eq!((p.kind, p.attachments, p.id), (5, 1, Some(3)));
        assert_eq!(p.nsp, b"/file-upload");
        assert!(packet(b"5x-[]").is_none());
        assert!(packet(b"9").is_none());
        assert!(packet(b"").is_none());
    }

    #[test]
    fn timestamp_search() {
        let frame = b"2/chat,[\"new_message\",{\"id\":\"m1\",\"seq\":3,\"conversationId\":\"c\",\"senderId\":\"u\",\"text\":\"t=1234567890123;xxxx\",\"clientId\":\"a\",\"createdAt\":\"2026\"},\"99\"]";
        assert_eq!(text_timestamp(frame), Some(1_234_567_890_123));
        assert_eq!(text_timestamp(b"{\"text\":\"hello\"}"), None);
        assert_eq!(text_timestamp(b"{\"text\":\"t=\"}"), None);
        assert_eq!(text_timestamp(b""), None);
    }

    #[test]
    fn message_text_carries_the_stamp_and_pads() {
        let mut s = String::new();
        message_text(&mut s, 42, 100);
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("t=42;xx"));
        let frame = format!("{{\"text\":\"{s}\"}}");
        assert_eq!(text_timestamp(frame.as_bytes()), Some(42));
        message_text(&mut s, 123_456, 3);
        assert_eq!(s, "t=123456;");
    }

    #[test]
    fn string_fields() {
        let data = b"[{\"ok\":true,\"sessionId\":\"s-1\",\"uploadSessionId\":\"no\"}]";
        assert_eq!(string_field(data, "sessionId"), Some(&b"s-1"[..]));
        let data = b"[{\"uploadSessionId\":\"no\",\"sessionId\":\"yes\"}]";
        assert_eq!(string_field(data, "sessionId"), Some(&b"yes"[..]));
        assert_eq!(string_field(b"{\"id\":3}", "id"), None);
    }

    #[test]
    fn find_edges() {
        assert_eq!(find(b"abc", b"c"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"", b"a"), None);
        assert_eq!(find(b"abc", b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"007"), Some(7));
    }
}
