//! The crate's one error type. The split between the peer's fault (`Protocol`) and the
//! caller's fault (`Usage`) follows h11's RemoteProtocolError / LocalProtocolError.

use crate::proto::Message;

/// What went wrong while decoding bytes from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// One line exceeded `Limits::max_line`.
    LineTooLong,
    /// One message had more lines than `Limits::max_lines`.
    TooManyLines,
    /// One message exceeded `Limits::max_message`.
    MessageTooLarge,
}

impl DecodeErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LineTooLong => "line too long",
            Self::TooManyLines => "too many lines in one message",
            Self::MessageTooLarge => "message too large",
        }
    }
}

/// A message that could not be decoded. The decoder has already skipped it and
/// resynchronised at the next blank line: one bad message never costs the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} at byte {offset} (message starting at byte {message_offset}): {detail}", kind.as_str())]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    /// Stream offset of the byte where the limit was crossed.
    pub offset: u64,
    /// Stream offset of the first byte of the offending message.
    pub message_offset: u64,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection lost: {reason}")]
    ConnectionLost { reason: String },
    #[error("client closed: {reason}")]
    Closed { reason: String },
    #[error("protocol error from the peer: {0}")]
    Protocol(#[from] DecodeError),
    #[error("protocol error from the peer: {0}")]
    Remote(String),
    /// Refused before anything was sent: an invalid action, option or certificate file. The
    /// text says which, so it carries no prefix.
    #[error("{0}")]
    Usage(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("action {action} failed: {message}")]
    ActionFailed {
        action: String,
        message: String,
        response: Box<Message>,
        /// For list actions and Command: what arrived with the failure.
        events: Vec<Message>,
    },
    #[error("action {action} (ActionID {action_id}) timed out after {seconds:.3} s")]
    Timeout {
        action: String,
        action_id: String,
        seconds: f64,
        /// Whatever arrived before the deadline (a list's first items, say).
        partial: Option<Box<crate::proto::Outcome>>,
    },
    #[error(
        "action {action} (ActionID {action_id}) listed more than {limit} items; given up (raise list_limit to collect more)"
    )]
    ListTooLong {
        action: String,
        action_id: String,
        limit: usize,
        /// The response and the first `limit` items.
        partial: Option<Box<crate::proto::Outcome>>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
