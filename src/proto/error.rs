//! The protocol core's own errors: what the peer sent that cannot be decoded, what the caller
//! asked that cannot be sent, and what the peer answered that cannot be used. Nothing here
//! knows sockets or deadlines; `crate::Error` wraps these for the transports.

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

/// An error of the sans-IO core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    #[error("protocol error from the peer: {0}")]
    Decode(#[from] DecodeError),
    /// Refused before anything was sent: an invalid action or option. The text says which.
    #[error("{0}")]
    Usage(String),
    #[error("protocol error from the peer: {0}")]
    Remote(String),
    #[error("authentication failed: {0}")]
    Auth(String),
}

pub type ProtoResult<T> = std::result::Result<T, ProtoError>;
