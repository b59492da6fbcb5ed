use super::*;
use bytes::Bytes;
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
        '0', '1', '2', '3', '4', '5', '6', '-', '/', ',', '[', ']', '{', '}', '"', '9', 'a', '€',
        '\0',
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
