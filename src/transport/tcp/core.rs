//! The routing state of one TCP session, whichever thread moves its bytes: encoding and
//! registering actions, decoding and routing what was read, deadlines and keepalive. No I/O
//! here: the async driver (`serve.rs`) and the shared socket (`direct.rs`) feed it bytes and
//! write out what it encodes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use log::{trace, warn};
use tokio::time::Instant;

use crate::error::{DecodeError, Error, ListBound, Result};
use crate::proto::{
    Action, ActionIds, Correlator, Decoder, Expect, Message, Outcome, Replay, Routed,
};
use crate::transport::command::{Command, Reply, Request};
use crate::transport::deadline::deadline_after;
use crate::transport::options::Options;
use crate::transport::outcome::{clone_err, judge};
use crate::transport::shared::Shared;

/// An action on the wire, waiting for its outcome.
pub(super) struct Pending {
    reply: Reply,
    action: String,
    token: Option<u64>,
    started: Instant,
}

/// The options routing needs, copied out of `Options` once.
#[derive(Clone, Copy)]
struct Limits {
    action_timeout: Duration,
    keepalive: Option<Duration>,
    list_limit: usize,
    max_list_bytes: usize,
}

/// One session's decoder, correlator and unsent bytes, plus what outlives the session
/// (`ids`, `replay`), which the driver takes back when the session ends.
pub(super) struct Core {
    pub(super) shared: Arc<Shared>,
    limits: Limits,
    pub(super) ids: ActionIds,
    /// The mask and filters a new session gets again.
    pub(super) replay: Replay,
    pub(super) decoder: Decoder,
    correlator: Correlator<Pending>,
    /// Encoded, not yet written.
    pub(super) out: Vec<u8>,
    pub(super) last_read: Instant,
    keepalive_out: bool,
    /// Decoded while waiting for the banner, before anyone routes messages.
    pub(super) backlog: VecDeque<std::result::Result<Message, DecodeError>>,
    /// Bytes of list items collected so far, per pending ActionID (`max_list_bytes`).
    list_bytes: HashMap<String, usize>,
}

impl Core {
    pub(super) fn new(shared: Arc<Shared>, o: &Options, ids: ActionIds, replay: Replay) -> Core {
        Core {
            shared,
            limits: Limits {
                action_timeout: o.action_timeout,
                keepalive: o.keepalive,
                list_limit: o.list_limit,
                max_list_bytes: o.max_list_bytes,
            },
            ids,
            replay,
            decoder: Decoder::new(),
            correlator: Correlator::new().with_list_limit(o.list_limit),
            out: Vec::with_capacity(4096),
            last_read: Instant::now(),
            keepalive_out: false,
            backlog: VecDeque::new(),
            list_bytes: HashMap::new(),
        }
    }

    /// Bytes read from the socket (on the loop's thread if `by_loop`): counted and handed to
    /// the decoder.
    pub(super) fn feed(&mut self, bytes: &[u8], by_loop: bool) {
        self.last_read = Instant::now();
        self.shared.stats_mut(|st| {
            st.bytes_read += bytes.len() as u64;
            st.loop_reads += u64::from(by_loop);
            st.driver_reads += u64::from(!by_loop);
        });
        self.decoder.feed(bytes);
    }

    /// The action's list (if it had one) no longer counts against `max_list_bytes`. Most
    /// actions have none: an empty map is not hashed into (SipHash of the ActionID, for every
    /// completion of a Ping flood).
    fn forget_list_bytes(&mut self, action_id: &str) {
        if !self.list_bytes.is_empty() {
            self.list_bytes.remove(action_id);
        }
    }

    pub(super) fn next_message(&mut self) -> Option<std::result::Result<Message, DecodeError>> {
        self.backlog
            .pop_front()
            .or_else(|| self.decoder.next_message())
    }

    /// When `tick` has something to do next: the earliest deadline, or the keepalive Ping.
    pub(super) fn due(&self) -> Option<Instant> {
        let next_deadline = self.correlator.next_deadline().map(Instant::from_std);
        let keepalive_at = self
            .limits
            .keepalive
            .filter(|_| !self.keepalive_out)
            .map(|k| deadline_after(self.last_read, k));
        [next_deadline, keepalive_at].into_iter().flatten().min()
    }

    /// The latest the driver may sleep: a new action's deadline is then never earlier than its
    /// timer unless the action asked for less than the default (see `send`).
    pub(super) fn idle_wake(&self, now: Instant) -> Instant {
        deadline_after(now, self.limits.action_timeout)
    }

    /// Applies a handle's command; `Some` for the close, which the driver carries out.
    pub(super) fn command(&mut self, cmd: Command) -> Option<Reply> {
        match cmd {
            Command::Actions(reqs) => {
                for req in reqs {
                    self.send(req);
                }
            }
            Command::Cancel(token) => self.cancel(token),
            Command::Close(reply) => return Some(reply),
        }
        None
    }

    /// Encodes a Logoff into `out`; false if it could not be.
    pub(super) fn encode_logoff(&mut self) -> bool {
        let id = self.ids.next_id();
        Action::new("Logoff")
            .encode(Some(&id), &mut self.out)
            .is_ok()
    }

    /// During a logoff: drains what was decoded, true once the Goodbye is among it.
    pub(super) fn goodbye_arrived(&mut self) -> bool {
        while let Some(Ok(msg)) = self.decoder.next_message() {
            if msg.has_value("Response", "Goodbye") {
                return true;
            }
        }
        false
    }

    pub(super) fn cancel(&mut self, token: u64) {
        self.correlator.cancel_where(|p| p.token == Some(token));
    }

    /// Registers and encodes one request into `out`. Returns its deadline.
    pub(super) fn send(&mut self, req: Request) -> Option<Instant> {
        let id = match req.action.action_id() {
            Some(id) => id.to_owned(),
            None => self.ids.next_id(),
        };
        if let Err(e) = req.action.encode(Some(&id), &mut self.out) {
            self.shared.deliver(req.reply, Err(e.into()));
            return None;
        }
        self.replay.note(&req.action);
        let timeout = req.timeout.unwrap_or(self.limits.action_timeout);
        let now = Instant::now();
        let token = match req.reply {
            Reply::Queued(t) => Some(t),
            _ => None,
        };
        let pending = Pending {
            reply: req.reply,
            action: req.action.name().to_owned(),
            token,
            started: now,
        };
        let deadline = deadline_after(now, timeout);
        if let Err(pending) =
            self.correlator
                .register(id.clone(), req.expect, Some(deadline.into_std()), pending)
        {
            let len = self.out.len();
            // Take the bytes back: nothing is sent for a refused action.
            if let Ok(bytes) = req.action.to_bytes(Some(&id)) {
                self.out.truncate(len.saturating_sub(bytes.len()));
            }
            self.shared.deliver(
                pending.reply,
                Err(Error::Usage(format!(
                    "ActionID {id:?} is already in flight"
                ))),
            );
            return None;
        }
        Some(deadline)
    }

    /// Deadlines and keepalive. Returns a reason when the connection must be dropped.
    pub(super) fn tick(&mut self) -> Option<String> {
        let now = Instant::now();
        self.correlator.cancel_where(|p| p.reply.gone());
        for expired in self.correlator.expire(now.into_std()) {
            self.forget_list_bytes(&expired.action_id);
            let pending = expired.token;
            if matches!(pending.reply, Reply::Keepalive) {
                return Some("keepalive Ping unanswered: the connection is half-open".into());
            }
            let err = Error::Timeout {
                action: pending.action.clone(),
                action_id: expired.action_id,
                seconds: now.duration_since(pending.started).as_secs_f64(),
                partial: expired.partial.map(Box::new),
            };
            self.shared.deliver(pending.reply, Err(err));
        }
        if let Some(interval) = self.limits.keepalive {
            if !self.keepalive_out && now >= deadline_after(self.last_read, interval) {
                self.keepalive_out = true;
                let timeout = interval.min(Duration::from_secs(10));
                self.send(Request {
                    action: Action::new("Ping"),
                    expect: Expect::Auto,
                    timeout: Some(timeout),
                    reply: Reply::Keepalive,
                });
            }
        }
        None
    }

    /// The session ended: every action it still owes fails with `error`.
    pub(super) fn fail_pending(&mut self, error: &Error) {
        for expired in self.correlator.drain() {
            self.shared
                .deliver(expired.token.reply, Err(clone_err(error)));
        }
    }

    /// Decodes and routes everything buffered.
    pub(super) fn process(&mut self) {
        let mut events = Vec::new();
        // Handed over together after the read, so that a burst of replies wakes the loop once
        // (pushing them one by one lets the loop wake, drain and sleep again for each).
        let mut done = Vec::new();
        let mut messages = 0u64;
        let mut orphans = 0u64;
        let mut errors = 0u64;
        let mut published = 0u64;
        while let Some(item) = self.next_message() {
            let msg = match item {
                Ok(msg) => msg,
                Err(e) => {
                    // One oversized message is dropped; the stream goes on.
                    warn!("amiwire: dropped a message: {e}");
                    errors += 1;
                    continue;
                }
            };
            messages += 1;
            // An event flood with nothing pending: straight to the batch. Through `route` each
            // event is moved in and out of `Routed`, copies that cost the driver 20-30 ns an event.
            if msg.is_event() && self.correlator.is_empty() {
                events.push(msg);
                continue;
            }
            if let Some((action_id, pending)) = self.past_list_bytes(&msg) {
                let error = Error::ListTooLong {
                    action: pending.action,
                    action_id,
                    limit: self.limits.max_list_bytes,
                    bound: ListBound::Bytes,
                    partial: None,
                };
                self.settle(pending.reply, Err(error), &mut done);
            }
            match self.correlator.route(msg) {
                Routed::Event(ev) => events.push(ev),
                Routed::Done(c) => {
                    self.forget_list_bytes(&c.action_id);
                    published += self.publish_before_probe(&c.token.reply, &mut events);
                    self.complete(c.token, c.outcome, &mut done);
                }
                Routed::DoneAndEvent(c, ev) => {
                    self.forget_list_bytes(&c.action_id);
                    published += self.publish_before_probe(&c.token.reply, &mut events);
                    self.complete(c.token, c.outcome, &mut done);
                    events.push(ev);
                }
                Routed::Absorbed => {}
                Routed::Orphan(msg) => {
                    orphans += 1;
                    trace!("amiwire: unmatched response dropped: {msg:?}");
                }
                Routed::TooLong(given_up) => {
                    let pending = given_up.token;
                    self.forget_list_bytes(&given_up.action_id);
                    let error = Error::ListTooLong {
                        action: pending.action,
                        action_id: given_up.action_id,
                        limit: self.limits.list_limit,
                        bound: ListBound::Items,
                        partial: given_up.partial.map(Box::new),
                    };
                    self.settle(pending.reply, Err(error), &mut done);
                }
            }
        }
        let n_events = published + events.len() as u64;
        // Events first: a result the loop can take (it may be settling others right now) must
        // find the live state and the streams already past the events that came before it.
        let streams = self.shared.push_events(events);
        let results = self.shared.queue_completions(done);
        // One wake-up for both; `wake_for_results` tells a loop reading the socket itself that
        // only futures need settling.
        if streams {
            self.shared.wake();
        } else if results {
            self.shared.wake_for_results();
        }
        self.shared.stats_mut(|st| {
            st.messages += messages;
            st.events += n_events;
            st.orphans += orphans;
            st.decode_errors += errors;
        });
    }

    /// A probe's view must include the events before its answer: they are published now
    /// rather than with the rest of the read. Returns how many were.
    fn publish_before_probe(&self, reply: &Reply, events: &mut Vec<Message>) -> u64 {
        if !matches!(reply, Reply::Probe(_)) {
            return 0;
        }
        let n = events.len() as u64;
        self.shared.publish(std::mem::take(events));
        n
    }

    /// Counts the bytes of a pending action's list items; past `max_list_bytes` the action is
    /// given up (the correlator drains the rest of its list) and returned to be failed.
    fn past_list_bytes(&mut self, msg: &Message) -> Option<(String, Pending)> {
        // Most events belong to no action: with nothing pending, skip the header scan that
        // looking for an ActionID costs every event of a flood.
        if !msg.is_event() || self.correlator.is_empty() {
            return None;
        }
        let id = msg.action_id()?;
        if !self.correlator.is_pending(&id) {
            return None;
        }
        let used = self.list_bytes.entry(id.to_string()).or_default();
        *used += msg.heap_size();
        if *used <= self.limits.max_list_bytes {
            return None;
        }
        self.list_bytes.remove(id.as_ref());
        let pending = self.correlator.cancel(&id)?;
        Some((id.into_owned(), pending))
    }

    /// Settles one action; a `Reply::Queued` result joins `done`, the read's batch.
    fn complete(
        &mut self,
        pending: Pending,
        outcome: Outcome,
        done: &mut Vec<(u64, Result<Outcome>)>,
    ) {
        match pending.reply {
            Reply::Keepalive => self.keepalive_out = false,
            reply => self.settle(reply, judge(&pending.action, outcome), done),
        }
    }

    /// A `Reply::Queued` result joins `done`, the read's batch; any other is delivered now.
    fn settle(
        &self,
        reply: Reply,
        result: Result<Outcome>,
        done: &mut Vec<(u64, Result<Outcome>)>,
    ) {
        match reply {
            Reply::Queued(token) => done.push((token, result)),
            reply => self.shared.deliver(reply, result),
        }
    }
}
