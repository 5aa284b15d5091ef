//! The pending-action table: routes every inbound message to the action waiting for it, to the
//! event stream, or to the orphan bin. Sans-IO: deadlines are `Instant`s the caller passes in.
//!
//! Rules, all from the protocol (never from `Message` text):
//! - a response with a pending ActionID resolves a single action;
//! - `EventList: start` on the response opens a list that collects every event with that
//!   ActionID until one carrying `EventList: Complete` / `Cancelled` (or the completion event
//!   the caller declared, for Asterisk 11 lists that send no `EventList`);
//! - an async Originate resolves on the `OriginateResponse` event with its ActionID; other
//!   sessions' OriginateResponses (ids never issued here) are ordinary events;
//! - events that merely echo an ActionID (UserEvent) after their action resolved are events;
//! - responses matching no pending action are orphans (log and drop, never hand to a waiter);
//! - a list that grows past the item limit is given up with what it collected (a runaway or
//!   huge list must not take memory without end); its remaining items are absorbed.

use std::collections::BTreeMap;
use std::time::Instant;

use super::error::{ProtoError, ProtoResult};
use super::message::Message;

/// Items one list may collect unless the caller sets another limit: far above what real
/// PBXes list (a large dialplan has some tens of thousands of priorities), low enough that a
/// runaway list stays a few hundred megabytes at most.
pub const DEFAULT_LIST_LIMIT: usize = 250_000;

/// What the caller expects an action to produce.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Expect {
    /// One response, or a list if the response says `EventList: start`.
    #[default]
    Auto,
    /// A list even without `EventList: start` (legacy servers), ended by `EventList: Complete`
    /// or by the named event when given.
    List { complete: Option<String> },
    /// An async Originate: the response, then the `OriginateResponse` event.
    Originate,
}

/// What an action produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub response: Message,
    /// List items, in arrival order.
    pub events: Vec<Message>,
    /// The list's completion event, or the `OriginateResponse` of a tracked Originate.
    pub complete: Option<Message>,
}

impl Outcome {
    fn new(response: Message) -> Outcome {
        Outcome {
            response,
            events: Vec::new(),
            complete: None,
        }
    }

    /// `Response: Success` (or `Follows`), and for a tracked Originate a successful
    /// `OriginateResponse`.
    pub fn is_success(&self) -> bool {
        let ok = !self.response.has_value("Response", "Error");
        match &self.complete {
            Some(c) if c.event_name().as_deref() == Some("OriginateResponse") => {
                ok && c.has_value("Response", "Success")
            }
            _ => ok,
        }
    }

    /// For lists: whether `ListItems` (when present) matches the items collected.
    pub fn list_items_match(&self) -> bool {
        let Some(complete) = &self.complete else {
            return true;
        };
        match complete
            .get("ListItems")
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            Some(n) => n == self.events.len(),
            None => true,
        }
    }
}

/// A finished action and the caller's token for it.
#[derive(Debug)]
pub struct Completion<T> {
    pub action_id: String,
    pub token: T,
    pub outcome: Outcome,
}

/// An action given up on (its deadline passed, its list grew too long, the connection went),
/// with whatever had arrived.
#[derive(Debug)]
pub struct Expired<T> {
    pub action_id: String,
    pub token: T,
    pub partial: Option<Outcome>,
}

/// Where one inbound message went.
#[derive(Debug)]
pub enum Routed<T> {
    /// An event for the subscribers.
    Event(Message),
    /// An action finished.
    Done(Completion<T>),
    /// An action finished on an event subscribers should also see (OriginateResponse).
    DoneAndEvent(Completion<T>, Message),
    /// Absorbed: a list item, a list start, or the remains of a cancelled list.
    Absorbed,
    /// A response nobody waits for (no ActionID, unknown or truncated ActionID).
    Orphan(Message),
    /// A list passed the item limit: the caller gets what it collected; the rest of the list
    /// is absorbed.
    TooLong(Expired<T>),
}

#[derive(Debug)]
enum Stage {
    AwaitResponse,
    InList,
    AwaitOriginateResponse,
}

#[derive(Debug)]
struct Pending<T> {
    expect: Expect,
    stage: Stage,
    outcome: Option<Outcome>,
    deadline: Option<(Instant, u64)>,
    /// `None` once the caller gave up on a list that is still being drained.
    token: Option<T>,
}

#[derive(Debug)]
pub struct Correlator<T> {
    /// foldhash, randomly seeded: only the client inserts ActionIDs (a server can only look
    /// them up), and SipHash cost 60-100 ns of the driver's time per action.
    pending: foldhash::HashMap<String, Pending<T>>,
    deadlines: BTreeMap<(Instant, u64), String>,
    seq: u64,
    orphans: u64,
    list_limit: usize,
}

impl<T> Default for Correlator<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Correlator<T> {
    pub fn new() -> Correlator<T> {
        Correlator {
            pending: foldhash::HashMap::default(),
            deadlines: BTreeMap::new(),
            seq: 0,
            orphans: 0,
            list_limit: DEFAULT_LIST_LIMIT,
        }
    }

    /// At most `limit` items per list (at least one); see [`Routed::TooLong`].
    pub fn with_list_limit(mut self, limit: usize) -> Correlator<T> {
        self.list_limit = limit.max(1);
        self
    }

    /// Actions awaited (cancelled lists still draining included).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn is_pending(&self, action_id: &str) -> bool {
        self.pending
            .get(action_id)
            .is_some_and(|p| p.token.is_some())
    }

    /// Responses that matched nothing so far.
    pub fn orphan_count(&self) -> u64 {
        self.orphans
    }

    /// Starts waiting for `action_id`. Fails (returning the token) if the id is in flight.
    pub fn register(
        &mut self,
        action_id: String,
        expect: Expect,
        deadline: Option<Instant>,
        token: T,
    ) -> Result<(), T> {
        if self.pending.contains_key(&action_id) {
            return Err(token);
        }
        let deadline = deadline.map(|at| {
            self.seq += 1;
            self.deadlines.insert((at, self.seq), action_id.clone());
            (at, self.seq)
        });
        let pending = Pending {
            expect,
            stage: Stage::AwaitResponse,
            outcome: None,
            deadline,
            token: Some(token),
        };
        self.pending.insert(action_id, pending);
        Ok(())
    }

    /// The caller gave up (task cancelled). A list already under way keeps being drained up to
    /// its end so that its items never leak out as events; anything else is forgotten.
    pub fn cancel(&mut self, action_id: &str) -> Option<T> {
        self.give_up(action_id).map(|(token, _)| token)
    }

    /// Takes the caller's token and what arrived so far. A list under way stays registered,
    /// tokenless, to absorb the rest of its items; anything else is removed.
    fn give_up(&mut self, action_id: &str) -> Option<(T, Option<Outcome>)> {
        let pending = self.pending.get_mut(action_id)?;
        if !matches!(pending.stage, Stage::InList) {
            let removed = self.remove(action_id)?;
            return removed.token.map(|token| (token, removed.outcome));
        }
        let token = pending.token.take()?;
        let partial = pending.outcome.take();
        if let Some(key) = pending.deadline.take() {
            self.deadlines.remove(&key);
        }
        Some((token, partial))
    }

    /// Cancels every action whose token satisfies `gone` (a closed reply channel, say).
    pub fn cancel_where(&mut self, mut gone: impl FnMut(&T) -> bool) -> usize {
        let ids: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.token.as_ref().is_some_and(&mut gone))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.cancel(id);
        }
        ids.len()
    }

    fn remove(&mut self, action_id: &str) -> Option<Pending<T>> {
        let pending = self.pending.remove(action_id)?;
        if let Some(key) = pending.deadline {
            self.deadlines.remove(&key);
        }
        Some(pending)
    }

    /// The earliest deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(at, _)| *at)
    }

    /// Expires every action whose deadline is at or before `now`. Like [`Self::cancel`], a
    /// list under way keeps being drained so that its late items never surface as events.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired<T>> {
        let due: Vec<String> = self
            .deadlines
            .range(..=(now, u64::MAX))
            .map(|(_, id)| id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| {
                let (token, partial) = self.give_up(&id)?;
                Some(Expired {
                    action_id: id,
                    token,
                    partial,
                })
            })
            .collect()
    }

    /// Ends every pending action (the connection is gone): the caller fails each token.
    pub fn drain(&mut self) -> Vec<Expired<T>> {
        self.deadlines.clear();
        self.pending
            .drain()
            .filter_map(|(id, p)| {
                p.token.map(|token| Expired {
                    action_id: id,
                    token,
                    partial: p.outcome,
                })
            })
            .collect()
    }

    pub fn route(&mut self, msg: Message) -> Routed<T> {
        // With nothing pending, an event is an event: skip the ActionID scan (the common case
        // of an event flood).
        let id = if self.pending.is_empty() {
            None
        } else {
            msg.action_id().map(|id| id.into_owned())
        };
        let Some(id) = id.filter(|id| self.pending.contains_key(id)) else {
            return if msg.is_event() {
                Routed::Event(msg)
            } else {
                self.orphans += 1;
                Routed::Orphan(msg)
            };
        };
        if msg.is_event() {
            self.route_event(id, msg)
        } else {
            self.route_response(id, msg)
        }
    }

    fn route_response(&mut self, id: String, msg: Message) -> Routed<T> {
        let Some(pending) = self.pending.get_mut(&id) else {
            return Routed::Orphan(msg);
        };
        if !matches!(pending.stage, Stage::AwaitResponse) {
            // A second response for the same id: not ours to deliver.
            self.orphans += 1;
            return Routed::Orphan(msg);
        }
        let failed = msg.has_value("Response", "Error");
        let list_start = msg
            .get_bytes("EventList")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"start"));
        let next = if failed {
            None
        } else if list_start || matches!(pending.expect, Expect::List { .. }) {
            Some(Stage::InList)
        } else if pending.expect == Expect::Originate {
            Some(Stage::AwaitOriginateResponse)
        } else {
            None
        };
        match next {
            Some(stage) => {
                pending.stage = stage;
                pending.outcome = Some(Outcome::new(msg));
                Routed::Absorbed
            }
            None => self.complete(&id, Outcome::new(msg)),
        }
    }

    fn route_event(&mut self, id: String, msg: Message) -> Routed<T> {
        let Some(pending) = self.pending.get_mut(&id) else {
            return Routed::Event(msg);
        };
        match pending.stage {
            Stage::InList => {
                let ends = msg.get_bytes("EventList").is_some_and(|v| {
                    v.eq_ignore_ascii_case(b"complete") || v.eq_ignore_ascii_case(b"cancelled")
                }) || matches!(&pending.expect, Expect::List { complete: Some(name) }
                        if msg.event_name().is_some_and(|n| n.eq_ignore_ascii_case(name)));
                if !ends {
                    let Some(outcome) =
                        pending.outcome.as_mut().filter(|_| pending.token.is_some())
                    else {
                        return Routed::Absorbed;
                    };
                    if outcome.events.len() < self.list_limit {
                        outcome.events.push(msg);
                        return Routed::Absorbed;
                    }
                    return match self.give_up(&id) {
                        Some((token, partial)) => Routed::TooLong(Expired {
                            action_id: id,
                            token,
                            partial,
                        }),
                        None => Routed::Absorbed,
                    };
                }
                let Some(finished) = self.remove(&id) else {
                    return Routed::Absorbed;
                };
                match (finished.token, finished.outcome) {
                    (Some(token), Some(mut outcome)) => {
                        outcome.complete = Some(msg);
                        Routed::Done(Completion {
                            action_id: id,
                            token,
                            outcome,
                        })
                    }
                    _ => Routed::Absorbed,
                }
            }
            Stage::AwaitOriginateResponse
                if msg.event_name().as_deref() == Some("OriginateResponse") =>
            {
                let Some(mut result) = pending.outcome.take() else {
                    return Routed::Event(msg);
                };
                result.complete = Some(msg.clone());
                match self.complete(&id, result) {
                    Routed::Done(c) => Routed::DoneAndEvent(c, msg),
                    other => other,
                }
            }
            _ => Routed::Event(msg),
        }
    }

    fn complete(&mut self, id: &str, outcome: Outcome) -> Routed<T> {
        match self.remove(id).and_then(|p| p.token) {
            Some(token) => Routed::Done(Completion {
                action_id: id.to_owned(),
                token,
                outcome,
            }),
            None => Routed::Absorbed,
        }
    }
}

/// Command output as text, exact: one line per `Output:` header (Asterisk 14+), then the raw
/// legacy body (Asterisk <= 13), each line ending in `\n`, whitespace untouched. Both forms of
/// the same CLI output give the same text, and a `Response: Follows` reply that carries
/// `Output:` headers before its body (some servers and proxies write it so) loses neither.
///
/// A `Response: Follows` reply without a body is one whose text a lossy HTTP encoding did
/// not keep (Asterisk 13's `/mxml` turns CLI lines into attribute names, see
/// [`super::http`]): that is `ProtoError::Remote`, never an empty string.
pub fn command_output(response: &Message) -> ProtoResult<String> {
    let mut text = String::new();
    for line in response.get_all_bytes("Output") {
        text.push_str(&super::message::decode_text(line));
        text.push('\n');
    }
    match response.body() {
        Some(body) => text.push_str(&super::message::decode_text(body)),
        None if text.is_empty() && response.has_value("Response", "Follows") => {
            return Err(ProtoError::Remote(
                "this Command reply lost its text on the way: Asterisk 13 rewrites CLI lines \
                 into attribute names over /mxml and /amxml; use /rawman (or /manager) for \
                 Command"
                    .into(),
            ));
        }
        None => {}
    }
    Ok(text)
}
