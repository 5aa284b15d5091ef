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

pub use client::{Client, Info, Reply, Request, State, Stats, Transition};
pub use events::{Filter, Matcher, Overflow, Subscription, SubscriptionStats, Wake};
pub use options::{Auth, EventMask, Http, Options, Reconnect, Tls};
