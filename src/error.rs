//! The crate's error type: the protocol core's errors (`proto::ProtoError`) and what the
//! transports add (I/O, a lost or closed connection, deadlines). The split between the peer's
//! fault (`Protocol`) and the caller's fault (`Usage`) follows h11's RemoteProtocolError /
//! LocalProtocolError.

use crate::proto::Message;

use crate::proto::error::ProtoError;
pub use crate::proto::error::{DecodeError, DecodeErrorKind};

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
        "action {action} (ActionID {action_id}) listed more than {limit} {}; given up (raise {} to collect more)",
        bound.unit(),
        bound.option()
    )]
    ListTooLong {
        action: String,
        action_id: String,
        /// In items or bytes, as `bound` says.
        limit: usize,
        bound: ListBound,
        /// The response and the first `limit` items (none when the bytes ran out: keeping
        /// them is what the byte limit prevents).
        partial: Option<Box<crate::proto::Outcome>>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Which limit a list ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListBound {
    /// `list_limit` items.
    Items,
    /// `max_list_bytes` bytes of items.
    Bytes,
}

impl ListBound {
    pub fn unit(self) -> &'static str {
        match self {
            ListBound::Items => "items",
            ListBound::Bytes => "bytes",
        }
    }

    /// The option that raises it.
    pub fn option(self) -> &'static str {
        match self {
            ListBound::Items => "list_limit",
            ListBound::Bytes => "max_list_bytes",
        }
    }
}

impl From<ProtoError> for Error {
    fn from(e: ProtoError) -> Error {
        match e {
            ProtoError::Decode(e) => Error::Protocol(e),
            ProtoError::Usage(text) => Error::Usage(text),
            ProtoError::Remote(text) => Error::Remote(text),
            ProtoError::Auth(text) => Error::Auth(text),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
