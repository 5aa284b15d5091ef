//! tokio transports: one driver task per connection owns the socket. No Python here.

mod backoff;
mod budget;
pub mod client;
mod deadline;
pub mod events;
pub mod http;
pub mod options;
mod record;
mod tls;

pub use client::{Client, Info, Reply, Request, Start, State, Stats, Transition};
pub use events::{
    DEFAULT_QUEUE_BYTES, Filter, Matcher, Overflow, QueueLimits, Subscription, SubscriptionStats,
    Wake,
};
pub use options::{Auth, EventMask, Http, Options, Reconnect, Tls};
