//! Event subscriptions: filters evaluated in Rust, and bounded per-subscriber queues.
//!
//! The driver pushes into a queue without ever waiting: when a queue is full its overflow
//! policy decides (drop the oldest, drop the newest, or end the subscription) and a counter
//! records it. A consumer that stalls therefore never stalls the socket reader, and Asterisk
//! (which drops clients that do not read within 100 ms) never sees a slow client.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use regex::Regex;

use crate::proto::Message;

/// Case-insensitive glob (`*`, `?`) over event names and header values.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Glob(Regex),
    Regex(Regex),
}

impl Matcher {
    /// A pattern with `*`, `?` or `[` is a glob; anything else matches exactly (ignoring case).
    pub fn glob(pattern: &str) -> Result<Matcher, String> {
        if !pattern.contains(['*', '?', '[']) {
            return Ok(Matcher::Exact(pattern.to_owned()));
        }
        let mut re = String::from("(?is)^");
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                '[' => {
                    let mut class = String::from("[");
                    if chars.peek() == Some(&'!') {
                        chars.next();
                        class.push('^');
                    }
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        if c == '\\' || c == '[' {
                            class.push('\\');
                        }
                        class.push(c);
                    }
                    class.push(']');
                    re.push_str(&class);
                }
                other => re.push_str(&regex::escape(&other.to_string())),
            }
        }
        re.push('$');
        Regex::new(&re)
            .map(Matcher::Glob)
            .map_err(|e| format!("bad pattern {pattern:?}: {e}"))
    }

    /// A regular expression, searched (not anchored) like Python's `re.search`.
    pub fn regex(pattern: &str) -> Result<Matcher, String> {
        Regex::new(pattern)
            .map(Matcher::Regex)
            .map_err(|e| format!("bad regex {pattern:?}: {e}"))
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s.eq_ignore_ascii_case(value),
            Matcher::Glob(re) | Matcher::Regex(re) => re.is_match(value),
        }
    }
}

/// Which events a subscriber wants: any of the name patterns (none = all), and for every
/// header condition, any of its matchers.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub names: Vec<Matcher>,
    pub headers: Vec<(String, Vec<Matcher>)>,
}

impl Filter {
    pub fn matches(&self, msg: &Message) -> bool {
        if !self.names.is_empty() {
            let Some(name) = msg.event_name() else {
                return false;
            };
            if !self.names.iter().any(|m| m.matches(&name)) {
                return false;
            }
        }
        self.headers.iter().all(|(header, matchers)| {
            msg.get(header)
                .is_some_and(|value| matchers.iter().any(|m| m.matches(&value)))
        })
    }
}

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
}

#[derive(Debug)]
pub struct Subscription {
    pub filter: Filter,
    capacity: usize,
    overflow: Overflow,
    queue: Mutex<VecDeque<Message>>,
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
    pub delivered: u64,
    pub dropped: u64,
    /// Reconnects seen: events may be missing around each.
    pub gaps: u64,
    pub closed: bool,
    pub overflowed: bool,
}

impl Subscription {
    pub fn new(filter: Filter, capacity: usize, overflow: Overflow) -> Subscription {
        Subscription {
            filter,
            capacity: capacity.max(1),
            overflow,
            queue: Mutex::new(VecDeque::new()),
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

    /// Queues the matching events; returns true when the consumer must be woken.
    pub fn push_batch<'a>(&self, events: impl Iterator<Item = &'a Message>) -> bool {
        self.push_owned(events.filter(|m| self.filter.matches(m)).cloned())
    }

    /// Queues events that already passed the filter (moved in: no copy).
    pub fn push_owned(&self, events: impl Iterator<Item = Message>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut added = false;
        {
            let Ok(mut queue) = self.queue.lock() else {
                return false;
            };
            for msg in events {
                if queue.len() >= self.capacity {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    match self.overflow {
                        Overflow::DropOldest => {
                            queue.pop_front();
                        }
                        Overflow::DropNewest => continue,
                        Overflow::Disconnect => {
                            self.overflowed.store(true, Ordering::Release);
                            self.closed.store(true, Ordering::Release);
                            added = true;
                            break;
                        }
                    }
                }
                queue.push_back(msg);
                added = true;
            }
        }
        added && self.take_armed()
    }

    fn take_armed(&self) -> bool {
        self.notify.notify_one();
        self.armed.swap(false, Ordering::AcqRel)
    }

    /// Up to `max` queued events, oldest first, without waiting.
    pub fn drain(&self, max: usize) -> Vec<Message> {
        let Ok(mut queue) = self.queue.lock() else {
            return Vec::new();
        };
        let n = max.min(queue.len());
        let out: Vec<Message> = queue.drain(..n).collect();
        self.delivered
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// The consumer is about to wait: returns false if there is already something to take
    /// (or the subscription ended), in which case it must not wait.
    pub fn arm(&self) -> bool {
        self.armed.store(true, Ordering::Release);
        let empty = self.queue.lock().map(|q| q.is_empty()).unwrap_or(false);
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
        SubscriptionStats {
            queued: self.queue.lock().map(|q| q.len()).unwrap_or(0),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Acquire),
            overflowed: self.overflowed.load(Ordering::Acquire),
        }
    }

    /// For Rust consumers: the next batch, waiting while empty. `None` once closed and drained.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<Message>> {
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
