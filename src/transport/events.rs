//! Event subscriptions: filters evaluated in Rust, and bounded per-subscriber queues.
//!
//! The driver pushes into a queue without ever waiting: when a queue is full its overflow
//! policy decides (drop the oldest, drop the newest, or end the subscription) and a counter
//! records it. A consumer that stalls therefore never stalls the socket reader, and Asterisk
//! (which drops clients that do not read within 100 ms) never sees a slow client.
//!
//! "Full" is counted in bytes as well as events: per queue (`QueueLimits`) and across every
//! queue of one client (a shared `ByteBudget`), so that large events cannot take gigabytes
//! while the counts look small.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::budget::{ByteBudget, Reserve};
pub use super::filter::{Filter, Matcher};
use crate::proto::Message;

const MIB: usize = 1024 * 1024;

/// How much one event queue may hold before its overflow policy applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events (`maxsize`).
    pub max_events: usize,
    /// Bytes of the queued events (`max_bytes`).
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    /// No count limit, 64 MiB: a consumer held up for seconds on a busy PBX (some 50,000
    /// events, 20 MB) loses nothing; 10,000 events of 100 KB cannot cost a gigabyte.
    fn default() -> Self {
        QueueLimits {
            max_events: usize::MAX,
            max_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

pub const DEFAULT_QUEUE_BYTES: usize = 64 * MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropOldest,
    DropNewest,
    /// End the subscription (the consumer then gets an error), keeping the connection.
    Disconnect,
}

impl Overflow {
    pub fn parse(s: &str) -> Result<Overflow, String> {
        match s {
            "drop_oldest" => Ok(Overflow::DropOldest),
            "drop_newest" => Ok(Overflow::DropNewest),
            "disconnect" => Ok(Overflow::Disconnect),
            other => Err(format!(
                "unknown overflow policy {other:?}: use drop_oldest, drop_newest or disconnect"
            )),
        }
    }
}

/// Something to poke when a waiting consumer has work (a socket the asyncio loop watches, or a
/// tokio `Notify`). Never Python code: the driver must not wait on the interpreter.
pub trait Wake: Send + Sync {
    fn wake(&self);

    /// A wake-up for finished actions only (no events, no state change): a loop that reads
    /// the socket itself settles those right after its read, without running anything else.
    fn wake_for_results(&self) {
        self.wake();
    }
}

/// What a subscription can queue: events, or the live state's changes. Its size is what it
/// holds on the heap, counted against the queue's and the client's byte limits.
pub trait Queued: Clone + Send + Sync + 'static {
    fn heap_size(&self) -> usize;
}

impl Queued for Message {
    fn heap_size(&self) -> usize {
        Message::heap_size(self)
    }
}

#[derive(Debug)]
struct Queue<T> {
    events: VecDeque<T>,
    bytes: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            events: VecDeque::new(),
            bytes: 0,
        }
    }
}

/// A bounded queue from the driver to one consumer, of events (the default) or of other
/// [`Queued`] items.
#[derive(Debug)]
pub struct Subscription<T = Message> {
    pub filter: Filter,
    limits: QueueLimits,
    overflow: Overflow,
    queue: Mutex<Queue<T>>,
    /// Shared by every subscription of the client.
    budget: Arc<ByteBudget>,
    /// The limit the queue last ran into, for errors and reprs.
    limit_hit: Mutex<Option<String>>,
    /// The consumer found the queue empty and waits for a wake-up.
    armed: AtomicBool,
    closed: AtomicBool,
    overflowed: AtomicBool,
    delivered: AtomicU64,
    dropped: AtomicU64,
    gaps: AtomicU64,
    /// Why the connection ended, when it failed rather than being closed on purpose.
    failure: Mutex<Option<String>>,
    pub notify: tokio::sync::Notify,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    pub queued: usize,
    pub queued_bytes: usize,
    pub delivered: u64,
    pub dropped: u64,
    /// Reconnects seen: events may be missing around each.
    pub gaps: u64,
    pub closed: bool,
    pub overflowed: bool,
}

impl Subscription<Message> {
    /// Queues the matching events; returns true when the consumer must be woken.
    pub fn push_batch<'a>(&self, events: impl Iterator<Item = &'a Message>) -> bool {
        self.push_owned(events.filter(|m| self.filter.matches(m)).cloned())
    }
}

impl<T: Queued> Subscription<T> {
    /// A queue of at most `capacity` items (and the default bytes), on its own.
    pub fn new(filter: Filter, capacity: usize, overflow: Overflow) -> Subscription<T> {
        let limits = QueueLimits {
            max_events: capacity,
            ..QueueLimits::default()
        };
        let unshared = Arc::new(ByteBudget::new("max_event_bytes", usize::MAX));
        Subscription::bounded(filter, limits, overflow, unshared)
    }

    /// A queue within `limits` whose bytes also count against the client's `budget`.
    pub fn bounded(
        filter: Filter,
        limits: QueueLimits,
        overflow: Overflow,
        budget: Arc<ByteBudget>,
    ) -> Subscription<T> {
        Subscription {
            filter,
            limits: QueueLimits {
                max_events: limits.max_events.max(1),
                max_bytes: limits.max_bytes,
            },
            overflow,
            queue: Mutex::new(Queue::default()),
            budget,
            limit_hit: Mutex::new(None),
            armed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            failure: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Queues items that already passed the filter (moved in: no copy).
    pub fn push_owned(&self, events: impl Iterator<Item = T>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut added = false;
        {
            let Ok(mut queue) = self.queue.lock() else {
                return false;
            };
            let mut reserve = Reserve::new(&self.budget);
            'events: for msg in events {
                let size = msg.heap_size();
                loop {
                    let Some(limit) = self.limit_for(&queue, size, &mut reserve) else {
                        queue.bytes += size;
                        queue.events.push_back(msg);
                        added = true;
                        continue 'events;
                    };
                    self.note_limit(limit);
                    match self.overflow {
                        // An event larger than the whole queue evicts nothing.
                        Overflow::DropOldest
                            if !queue.events.is_empty() && size <= self.limits.max_bytes =>
                        {
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                            if let Some(old) = queue.events.pop_front() {
                                queue.bytes -= old.heap_size();
                                reserve.put_back(old.heap_size());
                            }
                        }
                        // Nothing left to make room with: this one goes.
                        Overflow::DropOldest | Overflow::DropNewest => {
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                            continue 'events;
                        }
                        Overflow::Disconnect => {
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                            self.overflowed.store(true, Ordering::Release);
                            self.closed.store(true, Ordering::Release);
                            added = true;
                            break 'events;
                        }
                    }
                }
            }
        }
        added && self.take_armed()
    }

    /// Which limit an event of `size` bytes would pass, if any; when none, its bytes are
    /// taken from the client's budget (through the batch's `reserve`).
    fn limit_for(
        &self,
        queue: &Queue<T>,
        size: usize,
        reserve: &mut Reserve<'_>,
    ) -> Option<String> {
        if queue.events.len() >= self.limits.max_events {
            return Some(format!("maxsize of {} events", self.limits.max_events));
        }
        if queue.bytes + size > self.limits.max_bytes {
            return Some(format!(
                "max_bytes limit of {} bytes",
                self.limits.max_bytes
            ));
        }
        (!reserve.take(size)).then(|| self.budget.describe())
    }

    fn note_limit(&self, limit: String) {
        if let Ok(mut slot) = self.limit_hit.lock() {
            if slot.as_deref() != Some(limit.as_str()) {
                *slot = Some(limit);
            }
        }
    }

    /// The limit the queue last ran into ("max_bytes limit of 67108864 bytes"), if any.
    pub fn limit_hit(&self) -> Option<String> {
        self.limit_hit.lock().ok().and_then(|l| l.clone())
    }

    fn take_armed(&self) -> bool {
        self.notify.notify_one();
        self.armed.swap(false, Ordering::AcqRel)
    }

    /// Up to `max` queued events, oldest first, without waiting.
    pub fn drain(&self, max: usize) -> Vec<T> {
        let Ok(mut queue) = self.queue.lock() else {
            return Vec::new();
        };
        let n = max.min(queue.events.len());
        let out: Vec<T> = queue.events.drain(..n).collect();
        let bytes: usize = out.iter().map(T::heap_size).sum();
        queue.bytes -= bytes;
        self.budget.give_back(bytes);
        self.delivered
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// The consumer is about to wait: returns false if there is already something to take
    /// (or the subscription ended), in which case it must not wait.
    pub fn arm(&self) -> bool {
        self.armed.store(true, Ordering::Release);
        let empty = self
            .queue
            .lock()
            .map(|q| q.events.is_empty())
            .unwrap_or(false);
        if !empty || self.closed.load(Ordering::Acquire) {
            self.armed.store(false, Ordering::Release);
            return false;
        }
        true
    }

    pub fn note_gap(&self) -> bool {
        self.gaps.fetch_add(1, Ordering::Relaxed);
        self.take_armed()
    }

    /// Ends the subscription and drops what it queued (the consumer went away).
    pub fn discard(&self) {
        self.close();
        if let Ok(mut queue) = self.queue.lock() {
            self.budget.give_back(std::mem::take(&mut *queue).bytes);
        }
    }

    /// Ends the subscription; returns true when the consumer must be woken.
    pub fn close(&self) -> bool {
        self.closed.store(true, Ordering::Release);
        self.take_armed()
    }

    /// Ends the subscription because the connection failed for good (`reason`), so that the
    /// consumer can tell it from a close on purpose.
    pub fn fail(&self, reason: &str) -> bool {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert_with(|| reason.to_owned());
        }
        self.close()
    }

    /// Why the connection failed, if that ended the subscription.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> SubscriptionStats {
        let (queued, queued_bytes) = self
            .queue
            .lock()
            .map(|q| (q.events.len(), q.bytes))
            .unwrap_or_default();
        SubscriptionStats {
            queued,
            queued_bytes,
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Acquire),
            overflowed: self.overflowed.load(Ordering::Acquire),
        }
    }

    /// For Rust consumers: the next batch, waiting while empty. `None` once closed and drained.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<T>> {
        loop {
            let notified = self.notify.notified();
            let batch = self.drain(max);
            if !batch.is_empty() {
                return Some(batch);
            }
            if self.is_closed() {
                return None;
            }
            notified.await;
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Ok(queue) = self.queue.get_mut() {
            self.budget.give_back(queue.bytes);
        }
    }
}
