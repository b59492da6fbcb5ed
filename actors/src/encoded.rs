//! Outgoing packets, encoded once and shared.
//!
//! A broadcast is serialized a single time into an [`Encoded`]: each frame is
//! stored as a complete WebSocket frame (unmasked server header + Engine.IO
//! payload), so every WebSocket recipient writes the same bytes, and a
//! long-polling recipient takes a zero-copy slice of the payload. Cloning an
//! `Encoded` only bumps reference counts.

use crate::protocol::engineio;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;

/// Room kept in front of a payload for the WebSocket header (at most 10 bytes
/// for an unmasked server frame).
const HEADER_ROOM: usize = 10;

/// One WebSocket frame: header and payload in one buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    ws: Bytes,
    header_len: u8,
    binary: bool,
}

impl Frame {
    /// Builds a frame by letting `write` append the payload. The header is
    /// written in front afterwards, so the payload is never copied.
    pub fn build(binary: bool, size_hint: usize, write: impl FnOnce(&mut BytesMut)) -> Frame {
        let mut buf = BytesMut::with_capacity(HEADER_ROOM + size_hint);
        buf.put_bytes(0, HEADER_ROOM);
        write(&mut buf);
        let len = buf.len() - HEADER_ROOM;
        let mut header = [0u8; HEADER_ROOM];
        header[0] = 0x80 | if binary { 0x2 } else { 0x1 };
        let header_len = if len < 126 {
            header[1] = len as u8;
            2
        } else if len <= u16::MAX as usize {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = HEADER_ROOM - header_len;
        buf[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
        let ws = buf.freeze().slice(start..);
        Frame {
            ws,
            header_len: header_len as u8,
            binary,
        }
    }

    /// A text frame holding `payload` (already including the Engine.IO type).
    pub fn text(payload: &[u8]) -> Frame {
        Frame::build(false, payload.len(), |b| b.extend_from_slice(payload))
    }

    /// A binary frame holding `payload`.
    pub fn binary(payload: &[u8]) -> Frame {
        Frame::build(true, payload.len(), |b| b.extend_from_slice(payload))
    }

    /// The complete WebSocket frame.
    pub fn ws_bytes(&self) -> &Bytes {
        &self.ws
    }

    /// The Engine.IO payload without the WebSocket header.
    pub fn payload(&self) -> Bytes {
        self.ws.slice(self.header_len as usize..)
    }

    /// Whether this is a binary frame.
    pub fn is_binary(&self) -> bool {
        self.binary
    }
}

/// An Engine.IO packet ready to send: a text frame and, for Socket.IO binary
/// packets, the binary attachment frames that follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    head: Frame,
    attachments: Option<Arc<[Frame]>>,
}

impl Encoded {
    /// A packet made of one frame.
    pub fn single(head: Frame) -> Self {
        Encoded {
            head,
            attachments: None,
        }
    }

    /// A text frame followed by binary attachment frames.
    pub fn with_attachments(head: Frame, attachments: Vec<Frame>) -> Self {
        Encoded {
            head,
            attachments: if attachments.is_empty() {
                None
            } else {
                Some(attachments.into())
            },
        }
    }

    /// Encodes a plain Engine.IO packet (ping, pong, noop, close, open...).
    pub fn engine(packet: &engineio::Packet) -> Self {
        match packet {
            engineio::Packet::Binary(b) => Encoded::single(Frame::binary(b)),
            other => Encoded::single(Frame::build(false, 16, |buf| other.encode_text(buf))),
        }
    }

    /// The frames in wire order.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        std::iter::once(&self.head).chain(self.attachments.iter().flat_map(|a| a.iter()))
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        1 + self.attachments.as_ref().map_or(0, |a| a.len())
    }

    /// Total bytes on a WebSocket.
    pub fn ws_len(&self) -> usize {
        self.frames().map(|f| f.ws.len()).sum()
    }

    /// Appends this packet to a long-polling payload: text as is, binary as
    /// `b` + base64, separated by the record separator.
    pub fn write_polling(&self, out: &mut BytesMut) {
        for frame in self.frames() {
            if !out.is_empty() {
                out.put_u8(engineio::RECORD_SEPARATOR);
            }
            let payload = &frame.ws[frame.header_len as usize..];
            if frame.binary {
                out.put_u8(b'b');
                let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
                out.extend_from_slice(encoded.as_bytes());
            } else {
                out.extend_from_slice(payload);
            }
        }
    }
}

/// A WebSocket close frame with a status code.
pub fn close_frame(code: u16) -> Bytes {
    let mut b = BytesMut::with_capacity(4);
    b.put_u8(0x88);
    b.put_u8(2);
    b.put_u16(code);
    b.freeze()
}

/// A WebSocket pong frame answering a ping with `data` (at most 125 bytes).
pub fn pong_frame(data: &[u8]) -> Bytes {
    let data = &data[..data.len().min(125)];
    let mut b = BytesMut::with_capacity(2 + data.len());
    b.put_u8(0x8A);
    b.put_u8(data.len() as u8);
    b.extend_from_slice(data);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_frame_has_two_byte_header() {
        let f = Frame::text(b"4hello");
        assert_eq!(&f.ws_bytes()[..], b"\x81\x064hello");
        assert_eq!(&f.payload()[..], b"4hello");
    }

    #[test]
    fn medium_and_large_frames_use_extended_lengths() {
        let p = vec![b'a'; 300];
        let f = Frame::text(&p);
        assert_eq!(&f.ws_bytes()[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(f.payload().len(), 300);
        let p = vec![7u8; 70_000];
        let f = Frame::binary(&p);
        assert_eq!(f.ws_bytes()[0], 0x82);
        assert_eq!(f.ws_bytes()[1], 127);
        assert_eq!(&f.ws_bytes()[2..10], &70_000u64.to_be_bytes());
        assert_eq!(f.payload().len(), 70_000);
    }

    #[test]
    fn polling_form_base64_encodes_binary_frames() {
        let e = Encoded::with_attachments(
            Frame::text(b"451-[\"x\",{\"_placeholder\":true,\"num\":0}]"),
            vec![Frame::binary(&[1, 2, 3, 4])],
        );
        let mut out = BytesMut::new();
        e.write_polling(&mut out);
        assert_eq!(
            &out[..],
            b"451-[\"x\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA=="
        );
        assert_eq!(e.frame_count(), 2);
    }

    #[test]
    fn close_and_pong_frames() {
        assert_eq!(&close_frame(1009)[..], &[0x88, 2, 0x03, 0xf1]);
        assert_eq!(&pong_frame(b"hi")[..], &[0x8a, 2, b'h', b'i']);
    }
}
