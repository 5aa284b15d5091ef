//! tokio transports: one driver task per connection owns the socket. No Python here.
