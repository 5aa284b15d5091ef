//! amiwire: the Asterisk Manager Interface (AMI) in Rust, for Python.
//!
//! - [`proto`]: sans-IO framing, messages, actions and ActionID correlation;
//! - [`transport`]: the tokio client (one driver task per connection);
//! - [`sim`]: the embedded AMI simulator;
//! - `py` (feature `python`): the only PyO3 code.

pub mod error;
pub mod proto;
pub mod sim;
pub mod transport;

#[cfg(feature = "python")]
mod py;

pub use error::{DecodeError, DecodeErrorKind, Error, ListBound, Result};
