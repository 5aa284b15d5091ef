//! tokio transports: one driver task per connection owns the socket. No Python here.
//!
//! `client` is the handle, `start` spawns its driver under the `supervisor`, which owns the
//! lifecycle (connect, serve, reconnect with the one `backoff`, shutdown) for both drivers:
//! `tcp` and `http`. Handles and drivers meet in `shared` and talk through `command`.

mod backoff;
mod budget;
pub mod client;
mod command;
mod deadline;
pub mod events;
mod filter;
mod http;
pub mod live;
mod loop_io;
pub mod options;
mod outcome;
mod record;
mod shared;
mod start;
mod state;
mod supervisor;
mod tcp;
mod tls;

pub use client::Client;
pub use command::{Reply, Request};
pub use events::{
    DEFAULT_QUEUE_BYTES, Filter, Matcher, Overflow, QueueLimits, Queued, Subscription,
    SubscriptionStats, Wake,
};
pub use live::{Live, LiveStatus};
pub use loop_io::LoopIo;
pub use options::{Auth, EventMask, Http, Options, Reconnect, Tls};
pub use shared::{Info, Stats};
pub use start::Start;
pub use state::{State, Transition};
