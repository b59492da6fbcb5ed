//! Engine.IO v4 packets and HTTP long-polling payloads.
//!
//! A packet is one type character (`0`..`6`) followed by optional data. Over
//! WebSocket each packet is its own frame and binary data is a binary frame
//! as is; over HTTP long-polling several packets share a body, separated by
//! the record separator `0x1e`, and binary data travels as `b` + base64.
//!
//! Decoding follows `engine.io-parser`: any packet type may carry data (it is
//! ignored for close, upgrade and noop), an unknown type character is an
//! error, and a `b` prefix marks base64 binary wherever a text packet is
//! expected.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use super::DecodeError;

/// The Engine.IO protocol revision this codec speaks (`EIO=4`).
pub const PROTOCOL: u8 = 4;

/// Separates packets in a polling payload.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// Standard alphabet; padded on output, padding optional on input (browsers
/// pad, but nothing is gained by rejecting a client that does not).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0` + the JSON handshake text (see [`Handshake`]).
    Open(Bytes),
    /// `1`: the transport is closing.
    Close,
    /// `2` + optional data (`probe` during an upgrade).
    Ping(Bytes),
    /// `3` + optional data, echoing the ping's.
    Pong(Bytes),
    /// `4` + UTF-8 text (validated); holds the bytes after the `4`.
    Message(Bytes),
    /// A binary message: a WebSocket binary frame, or `b` + base64 in a
    /// polling payload. Holds the decoded bytes.
    Binary(Bytes),
    /// `5`: the client completes an upgrade to WebSocket.
    Upgrade,
    /// `6`: does nothing; ends a pending poll during an upgrade.
    Noop,
}

impl Packet {
    /// Decodes one text packet (a WebSocket text frame, or one segment of a
    /// polling payload). The data of `Open`/`Ping`/`Pong`/`Message` are
    /// zero-copy slices of `data`; a `b` segment is base64-decoded into
    /// [`Packet::Binary`].
    pub fn decode_text(data: Bytes) -> Result<Packet, DecodeError> {
        let Some(&first) = data.first() else {
            return Err(DecodeError::Empty);
        };
        let text = std::str::from_utf8(&data).map_err(|_| DecodeError::InvalidUtf8)?;
        let packet = match first {
            b'0' => Packet::Open(data.slice(1..)),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(data.slice(1..)),
            b'3' => Packet::Pong(data.slice(1..)),
            b'4' => Packet::Message(data.slice(1..)),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            b'b' => Packet::Binary(Bytes::from(
                BASE64
                    .decode(&data[1..])
                    .map_err(|_| DecodeError::InvalidBase64)?,
            )),
            _ => {
                let c = text.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(DecodeError::UnknownPacketType(c));
            }
        };
        Ok(packet)
    }

    /// A WebSocket binary frame is a binary message as is.
    pub fn decode_binary(data: Bytes) -> Packet {
        Packet::Binary(data)
    }

    /// Appends the text encoding of this packet (`4hello`, `2probe`, ...).
    /// `Binary` is written as `b` + base64 (the polling form); over WebSocket
    /// send its bytes as a binary frame instead.
    pub fn encode_text(&self, out: &mut BytesMut) {
        match self {
            Packet::Open(data) => put_typed(out, b'0', data),
            Packet::Close => out.put_u8(b'1'),
            Packet::Ping(data) => put_typed(out, b'2', data),
            Packet::Pong(data) => put_typed(out, b'3', data),
            Packet::Message(data) => put_typed(out, b'4', data),
            Packet::Upgrade => out.put_u8(b'5'),
            Packet::Noop => out.put_u8(b'6'),
            Packet::Binary(data) => {
                out.put_u8(b'b');
                put_base64(out, data);
            }
        }
    }

    /// The text of a `Message` (already validated as UTF-8 when decoded from
    /// the wire; `None` for other packets, or for a hand-built `Message` that
    /// is not UTF-8).
    pub fn text(&self) -> Option<&str> {
        match self {
            Packet::Message(data) => std::str::from_utf8(data).ok(),
            _ => None,
        }
    }
}

fn put_typed(out: &mut BytesMut, kind: u8, data: &[u8]) {
    out.reserve(1 + data.len());
    out.put_u8(kind);
    out.put_slice(data);
}

fn put_base64(out: &mut BytesMut, data: &[u8]) {
    let Some(len) = base64::encoded_len(data.len(), true) else {
        return; // only when the length overflows usize: cannot be in memory
    };
    let start = out.len();
    out.resize(start + len, 0);
    let written = BASE64.encode_slice(data, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Decodes an HTTP long-polling request body: packets separated by `0x1e`; a
/// segment starting with `b` is base64 binary. An empty body, or an empty
/// segment, is an error (the reference parser reports it as a parse error).
pub fn decode_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packets =
        Vec::with_capacity(1 + body.iter().filter(|&&b| b == RECORD_SEPARATOR).count());
    let mut start = 0;
    while start <= body.len() {
        let end = body[start..]
            .iter()
            .position(|&b| b == RECORD_SEPARATOR)
            .map_or(body.len(), |p| start + p);
        packets.push(Packet::decode_text(body.slice(start..end))?);
        start = end + 1;
    }
    Ok(packets)
}

/// Encodes packets as one polling response body (`0x1e` between them, binary
/// as `b` + base64).
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Packet>, out: &mut BytesMut) {
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(RECORD_SEPARATOR);
        }
        packet.encode_text(out);
    }
}

/// The handshake sent in the OPEN packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The Engine.IO session id, sent back by the client as `?sid=`.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` while polling,
    /// `[]` on a WebSocket-only session).
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the client has to answer a ping with a pong.
    pub ping_timeout: u64,
    /// The largest body or frame, in bytes, the server accepts.
    pub max_payload: u64,
}

impl Handshake {
    /// The OPEN packet carrying this handshake as JSON.
    pub fn to_packet(&self) -> Packet {
        let mut json = BytesMut::with_capacity(128);
        // Writing into a BytesMut cannot fail, nor can serializing strings and
        // integers, so the result carries no information.
        let _ = serde_json::to_writer((&mut json).writer(), self);
        Packet::Open(json.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Packet, DecodeError> {
        Packet::decode_text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn encoded(p: &Packet) -> String {
        let mut out = BytesMut::new();
        p.encode_text(&mut out);
        String::from_utf8(out.to_vec()).expect("encoder writes UTF-8")
    }

    fn payload(packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_payload(packets, &mut out);
        out.to_vec()
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    // --- literal frames from the Engine.IO v4 spec -------------------------

    #[test]
    fn spec_handshake_example() {
        let hs = Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1000000,
        };
        let open = hs.to_packet();
        assert_eq!(
            encoded(&open),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let Packet::Open(json) = text(&encoded(&open)).unwrap() else {
            panic!("not an open packet");
        };
        assert_eq!(serde_json::from_slice::<Handshake>(&json).unwrap(), hs);
    }

    #[test]
    fn spec_socketio_sample_session_open() {
        // From the Socket.IO spec's sample session (request n°1).
        let hs = Handshake {
            sid: "lv_VI97HAXpY6yYWAAAC".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 5000,
            max_payload: 1000000,
        };
        assert_eq!(
            encoded(&hs.to_packet()),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}"#
        );
        let ws_only = Handshake {
            upgrades: vec![],
            ..hs
        };
        assert!(encoded(&ws_only.to_packet()).contains(r#""upgrades":[]"#));
    }

    #[test]
    fn spec_heartbeat_and_upgrade_frames() {
        assert_eq!(text("2").unwrap(), Packet::Ping(Bytes::new()));
        assert_eq!(text("3").unwrap(), Packet::Pong(Bytes::new()));
        assert_eq!(text("2probe").unwrap(), Packet::Ping(b("probe")));
        assert_eq!(text("3probe").unwrap(), Packet::Pong(b("probe")));
        assert_eq!(text("5").unwrap(), Packet::Upgrade);
        assert_eq!(text("6").unwrap(), Packet::Noop);
        assert_eq!(text("1").unwrap(), Packet::Close);

        assert_eq!(encoded(&Packet::Ping(Bytes::new())), "2");
        assert_eq!(encoded(&Packet::Pong(b("probe"))), "3probe");
        assert_eq!(encoded(&Packet::Ping(b("probe"))), "2probe");
        assert_eq!(encoded(&Packet::Upgrade), "5");
        assert_eq!(encoded(&Packet::Noop), "6");
        assert_eq!(encoded(&Packet::Close), "1");
    }

    #[test]
    fn spec_websocket_message_frames() {
        assert_eq!(text("4hello").unwrap(), Packet::Message(b("hello")));
        assert_eq!(
            text("4HelloWorld").unwrap(),
            Packet::Message(b("HelloWorld"))
        );
        assert_eq!(encoded(&Packet::Message(b("hello"))), "4hello");
        assert_eq!(text("4").unwrap(), Packet::Message(Bytes::new()));
        assert_eq!(text("4hello").unwrap().text(), Some("hello"));
        assert_eq!(Packet::Ping(b("x")).text(), None);
        // "Binary payloads are sent as is, without modification."
        let frame = Bytes::from_static(&[1, 2, 3, 4]);
        assert_eq!(Packet::decode_binary(frame.clone()), Packet::Binary(frame));
    }

    #[test]
    fn spec_polling_payload_text_only() {
        let got = decode_payload(b("4hello\x1e2\x1e4world")).unwrap();
        let want = vec![
            Packet::Message(b("hello")),
            Packet::Ping(Bytes::new()),
            Packet::Message(b("world")),
        ];
        assert_eq!(got, want);
        assert_eq!(payload(&want), b"4hello\x1e2\x1e4world");
    }

    #[test]
    fn spec_polling_payload_with_binary() {
        let got = decode_payload(b("4hello\x1ebAQIDBA==")).unwrap();
        let want = vec![
            Packet::Message(b("hello")),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(got, want);
        assert_eq!(payload(&want), b"4hello\x1ebAQIDBA==");
    }

    #[test]
    fn polling_payload_with_multibyte_text_and_binary() {
        // The v3 -> v4 history note: "€" is 3 bytes; the separator makes
        // lengths irrelevant.
        let body = "4hello\x1e4€\x1ebAQIDBA==";
        let got = decode_payload(Bytes::from(body)).unwrap();
        assert_eq!(
            got,
            vec![
                Packet::Message(b("hello")),
                Packet::Message(Bytes::from("€")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ]
        );
        assert_eq!(got[1].text(), Some("€"));
        assert_eq!(payload(&got), body.as_bytes());
    }

    #[test]
    fn spec_socketio_sample_session_polling_body() {
        let got = decode_payload(b("42[\"hello\"]\x1e42[\"world\"]")).unwrap();
        assert_eq!(
            got,
            vec![
                Packet::Message(b("2[\"hello\"]")),
                Packet::Message(b("2[\"world\"]")),
            ]
        );
        assert_eq!(
            decode_payload(b("40")).unwrap(),
            vec![Packet::Message(b("0"))]
        );
    }

    #[test]
    fn decoding_is_zero_copy() {
        let body = Bytes::from("4hello\x1e2probe");
        let packets = decode_payload(body.clone()).unwrap();
        let Packet::Message(m) = &packets[0] else {
            panic!()
        };
        let Packet::Ping(p) = &packets[1] else {
            panic!()
        };
        assert_eq!(m.as_ptr(), body[1..].as_ptr());
        assert_eq!(p.as_ptr(), body[8..].as_ptr());
    }

    // --- leniency, as engine.io-parser ---------------------------------------

    #[test]
    fn data_on_dataless_types_is_ignored() {
        assert_eq!(text("1foo").unwrap(), Packet::Close);
        assert_eq!(text("5probe").unwrap(), Packet::Upgrade);
        assert_eq!(text("6x").unwrap(), Packet::Noop);
    }

    #[test]
    fn b_prefix_is_accepted_in_any_text_packet() {
        assert_eq!(
            text("bAQID").unwrap(),
            Packet::Binary(Bytes::from_static(&[1, 2, 3]))
        );
        // A zero-length buffer is a lone "b".
        assert_eq!(text("b").unwrap(), Packet::Binary(Bytes::new()));
        assert_eq!(
            decode_payload(b("b\x1e4x")).unwrap(),
            vec![Packet::Binary(Bytes::new()), Packet::Message(b("x"))]
        );
        assert_eq!(encoded(&Packet::Binary(Bytes::new())), "b");
        // Unpadded base64 is accepted too.
        assert_eq!(
            text("bAQIDBA").unwrap(),
            Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        );
    }

    #[test]
    fn binary_round_trips_through_base64() {
        let data: Vec<u8> = (0..=255).collect();
        let p = Packet::Binary(Bytes::from(data));
        let mut out = BytesMut::from(&b"prefix"[..]);
        p.encode_text(&mut out);
        assert!(out.starts_with(b"prefixb"));
        assert_eq!(text(std::str::from_utf8(&out[6..]).unwrap()).unwrap(), p);
    }

    #[test]
    fn every_packet_round_trips() {
        let all = vec![
            Packet::Open(b("{\"sid\":\"x\"}")),
            Packet::Close,
            Packet::Ping(b("probe")),
            Packet::Pong(Bytes::new()),
            Packet::Message(b("2[\"ev\",\"a\\u001eb\"]")),
            Packet::Binary(Bytes::from_static(&[0, 0x1e, 0xff])),
            Packet::Upgrade,
            Packet::Noop,
        ];
        let body = payload(&all);
        assert_eq!(decode_payload(Bytes::from(body)).unwrap(), all);
        for p in &all {
            assert_eq!(&text(&encoded(p)).unwrap(), p);
        }
    }

    #[test]
    fn encode_payload_of_one_and_none() {
        assert_eq!(payload(&[Packet::Noop]), b"6");
        assert_eq!(payload(&[]), b"");
    }

    // --- garbage -------------------------------------------------------------

    #[test]
    fn rejects_garbage() {
        assert_eq!(text(""), Err(DecodeError::Empty));
        assert_eq!(text("abc"), Err(DecodeError::UnknownPacketType('a')));
        assert_eq!(text("7"), Err(DecodeError::UnknownPacketType('7')));
        assert_eq!(text("€"), Err(DecodeError::UnknownPacketType('€')));
        assert_eq!(text("\0"), Err(DecodeError::UnknownPacketType('\0')));
        assert_eq!(text("\x1e"), Err(DecodeError::UnknownPacketType('\x1e')));
        assert_eq!(text("b!!!"), Err(DecodeError::InvalidBase64));
        assert_eq!(text("bA"), Err(DecodeError::InvalidBase64));
        assert_eq!(text("bAQ ID"), Err(DecodeError::InvalidBase64));
        assert_eq!(
            Packet::decode_text(Bytes::from_static(b"4\xff\xfe")),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            Packet::decode_text(Bytes::from_static(b"\xc3")),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn rejects_garbage_payloads() {
        assert_eq!(decode_payload(Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b("\x1e")), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b("4a\x1e")), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b("4a\x1e\x1e4b")), Err(DecodeError::Empty));
        assert_eq!(
            decode_payload(b("abc")),
            Err(DecodeError::UnknownPacketType('a'))
        );
        // EIO v3 length-prefixed framing is not understood: like the reference
        // parser, "6:4hello" reads as a noop carrying ignored data.
        assert_eq!(decode_payload(b("6:4hello")), Ok(vec![Packet::Noop]));
        assert_eq!(
            decode_payload(b("4ok\x1eb!")),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            decode_payload(Bytes::from_static(b"4ok\x1e4\x80")),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn never_panics_on_short_inputs() {
        // Every 0-, 1- and 2-byte input.
        assert!(Packet::decode_text(Bytes::new()).is_err());
        for a in 0..=255u8 {
            let _ = Packet::decode_text(Bytes::from(vec![a]));
            let _ = decode_payload(Bytes::from(vec![a]));
            for c in 0..=255u8 {
                let _ = Packet::decode_text(Bytes::from(vec![a, c]));
                let _ = decode_payload(Bytes::from(vec![a, c, RECORD_SEPARATOR, c]));
            }
        }
    }
}
