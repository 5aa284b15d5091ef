//! tokio transports: one driver task per connection owns the socket. No Python here.

pub mod client;
pub mod events;
pub mod http;
pub mod options;
mod record;
mod tls;

pub use client::{Client, Info, Reply, Request, State, Stats, Transition};
pub use events::{Filter, Matcher, Overflow, Subscription, SubscriptionStats, Wake};
pub use options::{Auth, EventMask, Http, Options, Reconnect, Tls};
