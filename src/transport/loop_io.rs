//! The asyncio loop's way into a session whose socket it may read and write itself (plain
//! TCP): replies and events then reach their futures with no thread hop, and actions leave
//! without waking the driver. The driver still owns the session: it reads whenever the loop
//! does not (a stalled loop, a flood), keeps the deadlines and the keepalive, and ends it.

use std::os::fd::RawFd;

use super::command::Request;

pub trait LoopIo: Send + Sync {
    /// The socket to watch for reading (`loop.add_reader`) while [`LoopIo::wanted`].
    fn fd(&self) -> RawFd;

    /// Whether the loop should watch the socket now: false once the session is over, and
    /// while the driver reads a flood (the loop would wake for nothing).
    fn wanted(&self) -> bool;

    /// The loop watches the socket and is running: it reads from now on. (Its reader
    /// callback alone cannot tell: the driver, reading meanwhile, may drain every packet
    /// before the loop's poll reports it.)
    fn take_reading(&self);

    /// The loop's reader callback: reads what is there and routes it as the driver would
    /// (completions and events go to the same queues, wake-ups through the same waker).
    fn on_readable(&self);

    /// Sends the requests now from the caller's thread, or queues them for whoever holds the
    /// session next if it is busy (never waits); gives them back if the session is over (they
    /// then take the driver's path, which knows what to tell their waiters).
    fn submit(&self, requests: Vec<Request>) -> Result<(), Vec<Request>>;

    /// Forgets the action of a `Reply::Queued` token; false if the session is over or busy
    /// (the cancel then takes the driver's path).
    fn cancel(&self, token: u64) -> bool;
}
