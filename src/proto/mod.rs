//! The sans-IO protocol core: no sockets, no clock, no Python. Bytes in, messages out;
//! actions in, bytes out; time is passed in by the caller.

pub mod action;
pub mod auth;
pub mod correlator;
pub mod decoder;
mod documented_events;
pub mod error;
pub mod event_type;
pub mod http;
pub mod live;
pub mod login;
pub mod message;

pub use action::{Action, ActionIds};
pub use auth::md5_key;
pub use correlator::{
    Completion, Correlator, DEFAULT_LIST_LIMIT, Expect, Expired, Outcome, Routed, command_output,
};
pub use decoder::{Decoder, Limits, decode_all};
pub use error::{DecodeError, DecodeErrorKind, ProtoError, ProtoResult};
pub use event_type::EventType;
pub use login::{Login, Progress, Replay, SessionInfo};
pub use message::{Header, Kind, Message, decode_text};
