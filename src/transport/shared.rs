//! State shared between the handles and the driver: completions and the waker, subscribers,
//! the state log, server info and counters. No Python objects in here.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::budget::ByteBudget;
use super::command::{Command, Reply, Request};
use super::events::{Subscription, Wake};
use super::live::{self, Live};
use super::loop_io::LoopIo;
use super::outcome::closed;
use super::state::{State, StateLog};
use crate::error::{Error, Result};
use crate::proto::live::LiveConfig;
use crate::proto::{Message, Outcome};

#[derive(Clone, Debug, Default)]
pub struct Info {
    pub banner: Option<String>,
    pub ami_version: Option<String>,
    pub asterisk_version: Option<String>,
}

/// Counters a user can read to see what the connection went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub messages: u64,
    pub events: u64,
    pub orphans: u64,
    pub decode_errors: u64,
    pub reconnects: u64,
    pub bytes_read: u64,
    /// Socket reads made on the asyncio loop's thread and by the driver (plain TCP shares
    /// the reading; over TLS and HTTP the driver reads alone).
    pub loop_reads: u64,
    pub driver_reads: u64,
    /// Times the driver took the reading over from a loop that had not read waiting data in
    /// time, and times a flood was handed to it.
    pub stall_takeovers: u64,
    pub flood_handovers: u64,
    /// Bytes the event queues hold now, and the most they may (`max_event_bytes`).
    pub queued_event_bytes: usize,
    pub max_event_bytes: usize,
}

/// State shared between the handle(s) and the driver. No Python objects in here.
pub struct Shared {
    pub(super) completions: Mutex<Completions>,
    pub(super) waker: Mutex<Option<Arc<dyn Wake>>>,
    pub(super) subs: Mutex<Vec<Arc<Subscription>>>,
    pub(super) state: Mutex<StateLog>,
    pub(super) info: Mutex<Info>,
    pub(super) stats: Mutex<Stats>,
    /// Why the connection failed for good, once it did.
    pub(super) failure: Mutex<Option<String>>,
    /// The bytes every subscription's queue holds together (`Options::max_event_bytes`).
    pub(super) event_budget: Arc<ByteBudget>,
    /// The live state, when the client keeps one: fed every event before the streams.
    pub(super) live: Option<Arc<Live>>,
    /// The session the loop may read and write itself, while there is one (plain TCP).
    direct: Mutex<Option<Arc<dyn LoopIo>>>,
}

impl Shared {
    /// `commands` is the handles' queue, for the actions the live state's rebuild sends.
    pub(super) fn new(
        max_event_bytes: usize,
        live: Option<LiveConfig>,
        commands: mpsc::WeakUnboundedSender<Command>,
    ) -> Shared {
        let event_budget = Arc::new(ByteBudget::new("max_event_bytes", max_event_bytes));
        Shared {
            live: live.map(|config| Arc::new(Live::new(config, event_budget.clone(), commands))),
            event_budget,
            completions: Mutex::new(Completions::default()),
            waker: Mutex::new(None),
            subs: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            state: Mutex::new(StateLog::default()),
            info: Mutex::new(Info::default()),
            stats: Mutex::new(Stats::default()),
            direct: Mutex::new(None),
        }
    }

    pub(super) fn set_direct(&self, session: Arc<dyn LoopIo>) {
        if let Ok(mut slot) = self.direct.lock() {
            *slot = Some(session);
        }
    }

    /// `session` is over; a newer one stays.
    pub(super) fn clear_direct(&self, session: &dyn LoopIo) {
        if let Ok(mut slot) = self.direct.lock() {
            let same = slot
                .as_ref()
                .is_some_and(|s| std::ptr::addr_eq(Arc::as_ptr(s), session as *const dyn LoopIo));
            if same {
                *slot = None;
            }
        }
    }

    pub(super) fn direct(&self) -> Option<Arc<dyn LoopIo>> {
        self.direct.lock().ok().and_then(|slot| slot.clone())
    }

    /// Sends requests from this thread when the session allows it (`LoopIo`), else hands them
    /// to the driver through `tx`: either way in the order they were sent. Gives them back if
    /// the driver is gone.
    pub(super) fn send_requests(
        &self,
        tx: &mpsc::UnboundedSender<Command>,
        requests: Vec<Request>,
    ) -> std::result::Result<(), Vec<Request>> {
        let requests = match self.direct() {
            Some(direct) => match direct.submit(requests) {
                Ok(()) => return Ok(()),
                Err(requests) => requests,
            },
            None => requests,
        };
        tx.send(Command::Actions(requests))
            .map_err(|rejected| match rejected.0 {
                Command::Actions(requests) => requests,
                _ => Vec::new(),
            })
    }

    /// A session is about to open after a gap (or for the first time): the live state, if
    /// kept, holds the events from now on for its rebuild. Returns that rebuild.
    pub(super) fn begin_live_rebuild(&self) -> Option<u64> {
        self.live.as_ref().map(|live| live.begin_rebuild())
    }

    /// The session of `rebuild` is ready: asks the PBX for the lists the rebuild needs.
    pub(super) fn rebuild_live(self: &Arc<Self>, rebuild: Option<u64>, timeout: Duration) {
        if let (Some(live), Some(generation)) = (&self.live, rebuild) {
            live::start_rebuild(live.clone(), self.clone(), generation, timeout);
        }
    }

    pub(super) fn wake(&self) {
        if let Some(waker) = self.waker() {
            waker.wake();
        }
    }

    /// `wake` for finished actions only (see `Wake::wake_for_results`).
    pub(super) fn wake_for_results(&self) {
        if let Some(waker) = self.waker() {
            waker.wake_for_results();
        }
    }

    fn waker(&self) -> Option<Arc<dyn Wake>> {
        self.waker.lock().ok().and_then(|w| w.clone())
    }

    pub(super) fn deliver(&self, reply: Reply, result: Result<Outcome>) {
        match reply {
            Reply::Oneshot(tx) => {
                let _ = tx.send(result);
            }
            Reply::Queued(token) => {
                if self.queue_completions(vec![(token, result)]) {
                    self.wake_for_results();
                }
            }
            Reply::Probe(tx) => {
                let view = self.live.as_ref().and_then(|live| live.settled_view());
                let _ = tx.send((result, view));
            }
            Reply::Keepalive => {}
        }
    }

    /// Appends to the completion queue; true if it was empty (the loop must be woken).
    pub(super) fn queue_completions(&self, mut done: Vec<(u64, Result<Outcome>)>) -> bool {
        if done.is_empty() {
            return false;
        }
        match self.completions.lock() {
            Ok(mut c) => {
                for (token, _) in &done {
                    c.outstanding.remove(token);
                }
                let was_empty = c.done.is_empty();
                if was_empty {
                    std::mem::swap(&mut c.done, &mut done);
                } else {
                    c.done.append(&mut done);
                }
                was_empty
            }
            Err(_) => false,
        }
    }

    /// Tokens whose result will be queued here (a `Reply::Queued` handed to the driver).
    pub(super) fn expect(&self, tokens: impl Iterator<Item = u64>) {
        if let Ok(mut c) = self.completions.lock() {
            c.outstanding.extend(tokens);
        }
    }

    /// The driver task died (a bug): every token it still owed fails now, so that no waiter
    /// waits for a result that cannot come.
    pub(super) fn fail_outstanding(&self, why: &str) {
        let owed: Vec<u64> = match self.completions.lock() {
            Ok(c) => c.outstanding.iter().copied().collect(),
            Err(_) => return,
        };
        self.fail_owed(owed, || Error::Internal(why.to_owned()));
    }

    /// Fails those of `tokens` still owed a result (work that was abandoned, say), leaving
    /// alone any that got theirs meanwhile: a waiter is settled once.
    pub(super) fn fail_owed(
        &self,
        tokens: impl IntoIterator<Item = u64>,
        error: impl Fn() -> Error,
    ) {
        let failed = match self.completions.lock() {
            Ok(mut c) => tokens
                .into_iter()
                .filter(|token| c.outstanding.remove(token))
                .map(|token| (token, Err(error())))
                .collect(),
            Err(_) => return,
        };
        if self.queue_completions(failed) {
            self.wake_for_results();
        }
    }

    pub(super) fn set_state(&self, state: State, reason: Option<String>) {
        // Logged once, by the Python side, which knows the user and the address.
        match self.state.lock() {
            Ok(mut log) if log.current != state => log.record(state, reason),
            _ => return,
        };
        self.wake();
    }

    /// Hands events to every subscriber; the last one gets them moved, not copied.
    pub(super) fn publish(&self, events: Vec<Message>) {
        if self.push_events(events) {
            self.wake();
        }
    }

    /// `publish` without the wake-up; true if a subscriber needs one.
    pub(super) fn push_events(&self, events: Vec<Message>) -> bool {
        if events.is_empty() {
            return false;
        }
        let mut wake = self.live.as_ref().is_some_and(|live| live.observe(&events));
        let subs = self.subs.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some((last, others)) = subs.split_last() {
            for sub in others {
                wake |= sub.push_batch(events.iter());
            }
            wake |= last.push_owned(events.into_iter().filter(|m| last.filter.matches(m)));
        }
        wake
    }

    pub(super) fn each_sub(&self, f: impl Fn(&Subscription) -> bool) {
        let subs = self.subs.lock().map(|s| s.clone()).unwrap_or_default();
        let mut wake = false;
        for sub in subs.iter() {
            wake |= f(sub);
        }
        if wake {
            self.wake();
        }
    }

    /// The client is closed for good: records why, publishes the state, and ends every
    /// subscription, failed with the reason when the connection broke (`failed`) rather than
    /// being closed on purpose. In that order, so that a subscriber joining meanwhile is ended
    /// the same way (see `Client::subscribe`).
    pub(super) fn finish(&self, reason: &str, failed: bool) {
        if let (true, Ok(mut slot)) = (failed, self.failure.lock()) {
            *slot = Some(reason.to_owned());
        }
        self.set_state(State::Closed, Some(reason.to_owned()));
        if let Some(live) = &self.live {
            if live.finish(failed.then_some(reason)) {
                self.wake();
            }
        }
        if failed {
            self.each_sub(|s| s.fail(reason));
        } else {
            self.each_sub(Subscription::close);
        }
    }

    /// The error for an action the closed client cannot take, with why it closed.
    pub(super) fn closed_error(&self) -> Error {
        match self.state.lock() {
            Ok(log) if log.current == State::Closed => Error::Closed {
                reason: log
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the client is closed".into()),
            },
            _ => closed(),
        }
    }

    pub(super) fn stats_mut(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
        }
    }
}

/// Results for `Reply::Queued` waiters, and the tokens still owed one.
#[derive(Default)]
pub(super) struct Completions {
    pub(super) done: Vec<(u64, Result<Outcome>)>,
    pub(super) outstanding: HashSet<u64>,
}
