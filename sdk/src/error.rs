//! The error a plugin returns for one message: a message for humans and a retryable flag.

use std::fmt;

/// Why a message could not be processed.
///
/// The pipeline's failure policy reads [`Error::is_retryable`]: a retryable error is tried
/// again with backoff, a fatal one goes straight to the dead-letter topic (or halts the
/// pipeline, as the policy says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    retryable: bool,
}

impl Error {
    /// The message itself is bad (malformed payload, failed validation): retrying cannot help.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error { message: message.into(), retryable: false }
    }

    /// Something outside the message failed and may succeed later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Error { message: message.into(), retryable: true }
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A payload that does not parse is the message's fault: fatal.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::fatal(format!("invalid JSON payload: {e}"))
    }
}

/// A payload that does not decode is the message's fault: fatal.
impl From<rmp_serde::decode::Error> for Error {
    fn from(e: rmp_serde::decode::Error) -> Self {
        Error::fatal(format!("invalid MessagePack payload: {e}"))
    }
}

impl From<rmp_serde::encode::Error> for Error {
    fn from(e: rmp_serde::encode::Error) -> Self {
        Error::fatal(format!("cannot encode MessagePack: {e}"))
    }
}
