//! The wire protocol between clients and `weir serve`: an API boundary.
//!
//! A connection carries frames in both directions. A frame is a 4-byte big-endian length and
//! that many bytes of MessagePack (rmp-serde, structs as maps with field names):
//! a [`RequestFrame`] from the client, a [`ResponseFrame`] from the server. Every request has
//! an id chosen by the client, and its response carries the same id, so a client may send
//! many requests without waiting (pipelining); responses may come back in any order.
//! Requests on one connection are *submitted* in the order they arrive, so produces from one
//! connection keep their order.
//!
//! The first request on a connection must be [`Request::Hello`]. A frame larger than the
//! server's limit, or one that does not decode, gets an error response with id 0 and the
//! connection is closed; other connections are unaffected.
//!
//! Compatibility: fields are added with `#[serde(default)]`; [`ErrorCode`] numbers are never
//! reused; a breaking change bumps [`PROTOCOL_VERSION`].

mod messages;
mod types;

pub use messages::*;
pub use types::*;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

/// Version spoken by this build, checked in [`Request::Hello`]. Version 2: pipeline sources
/// are typed ([`Source`]).
pub const PROTOCOL_VERSION: u32 = 2;

/// The server's default frame limit (`weir serve --max-frame-bytes`): a produce request
/// carries a batch, so this bounds a batch; 16 MiB holds 100,000 typical messages.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Deploys of components larger than this are sent in parts of this size
/// ([`Request::UploadPluginPart`]), far under the frame limit.
pub const PLUGIN_UPLOAD_PART_BYTES: usize = 4 * 1024 * 1024;

/// Most bytes one fetch returns, under the frame limit with room for headers.
pub const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024;

/// A topic's default largest message value (Kafka's default too).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A queue's default most messages held.
pub const QUEUE_MAX_MESSAGES: usize = 1_000_000;

/// The default [`Sandbox`] of a plugin deployed without one; the server's limits module says
/// why each value is what it is.
pub mod sandbox_defaults {
    /// Linear memory of one instance.
    pub const MEMORY_BYTES: usize = 64 * 1024 * 1024;
    /// CPU time of one `process` call.
    pub const CPU_MS_PER_BATCH: u64 = 5_000;
    /// Output bytes of one batch of one step.
    pub const OUTPUT_BYTES_PER_BATCH: usize = 64 * 1024 * 1024;
    /// Largest state value.
    pub const STATE_VALUE_BYTES: usize = 1024 * 1024;
    /// State bytes one batch of one step may write.
    pub const STATE_BYTES_PER_BATCH: usize = 64 * 1024 * 1024;
    /// Log lines per second.
    pub const LOG_LINES_PER_S: u32 = 100;
}

/// Encode a frame body (without the length prefix, which the codec adds).
pub fn encode<T: Serialize>(frame: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec_named(frame)
        .map(Bytes::from)
        .map_err(|e| WireError::new(ErrorCode::Internal, format!("cannot encode frame: {e}")))
}

/// Decode a frame body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(body)
        .map_err(|e| WireError::new(ErrorCode::MalformedFrame, format!("malformed frame of {} bytes: {e}", body.len())))
}

/// The length-delimited codec both sides use, bounded at `max_frame_bytes`.
pub fn codec(max_frame_bytes: usize) -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Numeric error codes: explicit, stable, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum ErrorCode {
    /// A bug or an unexpected condition on the server.
    Internal = 1,
    /// The frame did not decode.
    MalformedFrame = 2,
    /// The frame exceeds the server's limit.
    FrameTooLarge = 3,
    /// `Hello` was missing, or the protocol version is not spoken.
    Handshake = 4,
    /// An argument is invalid; the message names it.
    InvalidArgument = 5,
    /// The topic does not exist.
    UnknownTopic = 6,
    /// The topic exists already.
    TopicExists = 7,
    /// A message is larger than allowed.
    MessageTooLarge = 8,
    /// The plugin (or version) does not exist.
    UnknownPlugin = 9,
    /// The plugin file is not a valid weir component; the message says what is wrong.
    InvalidPlugin = 10,
    /// The pipeline does not exist.
    UnknownPipeline = 11,
    /// The pipeline exists already.
    PipelineExists = 12,
    /// A storage failure; the message says what to do.
    Storage = 13,
    /// The server is shutting down.
    ShuttingDown = 14,
    /// A limit was hit (connections, in-flight requests); retry later.
    Busy = 15,
    /// The plugin's `init` refused its config.
    PluginInit = 16,
    /// The resource is in use (a plugin used by a pipeline).
    InUse = 17,
    /// Authentication failed or is missing.
    Unauthenticated = 18,
    /// The token may not do this.
    Forbidden = 19,
    /// A wait (request/reply) timed out.
    Timeout = 20,
    /// The named entity (group, queue, exchange) does not exist.
    NotFound = 21,
    /// The entity exists already.
    AlreadyExists = 22,
    /// The queue does not exist.
    UnknownQueue = 23,
    /// The exchange does not exist.
    UnknownExchange = 24,
    /// No binding matched and there is no alternate exchange.
    Unroutable = 25,
    /// The consumer group rebalanced; heartbeat for the new assignment.
    Rebalanced = 26,
    /// The receipt no longer names a current delivery.
    StaleReceipt = 27,
    /// The queue is full.
    QueueFull = 28,
    /// A record the topic's schema check refused; the message names it and why.
    InvalidRecord = 29,
    /// The server's disk is below its free-space floor; writes resume by themselves when
    /// space returns (retry later).
    DiskFull = 30,
}

impl ErrorCode {
    /// Every code, for decoding.
    const ALL: [ErrorCode; 30] = [
        ErrorCode::Internal,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::Handshake,
        ErrorCode::InvalidArgument,
        ErrorCode::UnknownTopic,
        ErrorCode::TopicExists,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnknownPlugin,
        ErrorCode::InvalidPlugin,
        ErrorCode::UnknownPipeline,
        ErrorCode::PipelineExists,
        ErrorCode::Storage,
        ErrorCode::ShuttingDown,
        ErrorCode::Busy,
        ErrorCode::PluginInit,
        ErrorCode::InUse,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::Timeout,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::UnknownQueue,
        ErrorCode::UnknownExchange,
        ErrorCode::Unroutable,
        ErrorCode::Rebalanced,
        ErrorCode::StaleReceipt,
        ErrorCode::QueueFull,
        ErrorCode::InvalidRecord,
        ErrorCode::DiskFull,
    ];
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c as u16
    }
}

impl TryFrom<u16> for ErrorCode {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == v).ok_or_else(|| format!("unknown error code {v}"))
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(*self as u16)
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u16::deserialize(d)?;
        // An unknown code from a newer server still surfaces, as Internal with its text.
        Ok(ErrorCode::try_from(v).unwrap_or(ErrorCode::Internal))
    }
}

/// An error as it travels: a code for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong, with what input, and what to do next.
    pub message: String,
}

impl WireError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }

    /// An invalid-argument error.
    pub fn invalid(message: impl Into<String>) -> Self {
        WireError::new(ErrorCode::InvalidArgument, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c as u16), "duplicate code {c:?}");
            assert_eq!(ErrorCode::try_from(c as u16).unwrap(), c);
        }
        assert!(ErrorCode::try_from(0).is_err());
        // Codes are part of the protocol: a renumbering would break every client.
        assert_eq!(u16::from(ErrorCode::UnknownTopic), 6);
        assert_eq!(u16::from(ErrorCode::InvalidPlugin), 10);
        assert_eq!(u16::from(ErrorCode::AlreadyExists), 22);
    }

    #[test]
    fn frames_round_trip() {
        let f = RequestFrame { id: 7, request: Request::DescribeTopic { name: "t".into() } };
        let back: RequestFrame = decode(&encode(&f).unwrap()).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.request, Request::DescribeTopic { name } if name == "t"));
        let err = decode::<RequestFrame>(b"\xc1garbage").unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedFrame);
    }
}
