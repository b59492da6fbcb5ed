//! The wire codec: Engine.IO v4 framing ([`engineio`]) and Socket.IO v5
//! packets ([`socketio`]).
//!
//! Pure code, no I/O: bytes in, packets out, and back. The transports and the
//! connection actor own the sockets and call into this module; everything here
//! is unit-tested against the literal frames of the official protocol specs
//! (`socketio/engine.io-protocol` and `socketio/socket.io-protocol`) and the
//! behaviour of the reference parsers (`engine.io-parser`, `socket.io-parser`).
//!
//! Decoding never panics: any input either decodes or yields a
//! [`DecodeError`], which the caller turns into closing the session, as the
//! reference server does with a "parse error".

pub mod engineio;
pub mod socketio;

/// Why a frame could not be decoded (one shared error type for both layers).
///
/// Every variant means the peer sent something the protocol does not allow;
/// the reference server closes the connection in each case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A packet (or a polling payload, or one of its segments) with no bytes.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type of the layer.
    #[error("unknown packet type {0:?}")]
    UnknownPacketType(char),
    /// A text packet that is not valid UTF-8.
    #[error("text packet is not valid UTF-8")]
    InvalidUtf8,
    /// A `b` (binary) segment of a polling payload that is not valid base64.
    #[error("binary packet is not valid base64")]
    InvalidBase64,
    /// A namespace containing control characters.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// An acknowledgement id that overflows, is missing where required
    /// (ACK, BINARY_ACK) or present where not allowed (CONNECT, DISCONNECT,
    /// CONNECT_ERROR).
    #[error("invalid acknowledgement id")]
    InvalidAckId,
    /// The payload is not JSON (the serde_json message says where).
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    /// The payload is JSON but not of the shape the packet type requires.
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// A BINARY_EVENT / BINARY_ACK without a `<n>-` attachment count.
    #[error("binary packet without a valid attachment count")]
    MissingAttachments,
    /// A binary packet announcing more than
    /// [`socketio::MAX_ATTACHMENTS`] attachments.
    #[error("binary packet announces too many attachments")]
    TooManyAttachments,
    /// A placeholder whose `num` does not index one of the announced
    /// attachments (or is not a number).
    #[error("placeholder does not refer to an announced attachment")]
    InvalidPlaceholder,
    /// A text packet arrived while the attachments of a binary packet were
    /// still expected.
    #[error("packet received while binary attachments were expected")]
    AttachmentsPending,
    /// Binary data arrived while no binary packet was waiting for attachments.
    #[error("binary data received when no attachment was expected")]
    UnexpectedBinary,
    /// The attachments of one binary packet add up to more than allowed.
    #[error("binary attachments larger than allowed")]
    AttachmentsTooLarge,
}
