//! The live state of one client (issue 12): `proto::live::LiveState` fed by the driver with every
//! event it publishes, rebuilt from the PBX's own lists on connect and after every reconnect, and
//! published as an O(1) [`View`] for readers and as a stream of [`Change`]s.
//!
//! It runs on the driver's task, never on the consumer's thread: reading the view costs a
//! clone of a few pointers, and a consumer that stalls never delays the state.
//!
//! A rebuild asks for `CoreShowChannels` and `BridgeList` (then `BridgeInfo` per bridge, for the
//! members' order) while holding back the events that arrive meanwhile; the lists are applied
//! first, then the held events in order, and the rebuild's one change set is published. An
//! answer describes the PBX at some moment after the hold began, so every held event is either
//! older than the answer (the state machine tolerates such an event: the events that follow it
//! bring the answer's values again, and a late `Hangup` gives a vanished channel its cause) or
//! newer (applied after it, in order, as it must be). That holds over TCP and over HTTP, where an
//! answer and the WaitEvent polls travel separately and their order on arrival says nothing.

mod rebuild;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::budget::ByteBudget;
use super::command::Command;
use super::events::{Filter, Overflow, QueueLimits, Queued, Subscription};
use crate::proto::Message;
use crate::proto::live::{Change, LiveConfig, LiveState, LiveStats, Text, View};

pub(super) use rebuild::start as start_rebuild;

/// The most bytes of events held back while a rebuild's lists are on their way. Past it the
/// held events are dropped and the lists asked for again (they will describe the PBX after
/// every dropped event).
const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

impl Queued for Change {
    /// The entry a change names is shared with the view, but a queued change keeps that version
    /// alive after the view moved on: it is counted whole.
    fn heap_size(&self) -> usize {
        let entry = match self {
            Change::ChannelAdded(c)
            | Change::ChannelChanged { channel: c, .. }
            | Change::ChannelRemoved { channel: c, .. } => c.memory_size(),
            Change::BridgeAdded(b)
            | Change::BridgeChanged { bridge: b, .. }
            | Change::BridgeRemoved(b) => std::mem::size_of_val(&**b) + b.members.capacity() * 24,
            Change::CallAdded(c) | Change::CallChanged(c) | Change::CallRemoved(c) => {
                std::mem::size_of_val(&**c) + c.channels.capacity() * 24
            }
        };
        std::mem::size_of::<Change>() + entry
    }
}

/// What a reader may know about the live state besides the view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStatus {
    pub stats: LiveStats,
    /// A rebuild is under way: the view is the one from before the gap (or empty).
    pub rebuilding: bool,
    /// Rebuilds whose held events passed the limit and whose lists were asked for again.
    pub rebuild_retries: u64,
    /// Why the last rebuild could not get the PBX's lists (the view then follows events only).
    pub rebuild_error: Option<String>,
}

#[derive(Default)]
struct Held {
    events: Vec<Message>,
    bytes: usize,
    overflowed: bool,
}

struct Inner {
    state: LiveState,
    /// Present while a rebuild's lists are on their way.
    held: Option<Held>,
    /// Which rebuild is current: answers to an older one are ignored.
    generation: u64,
    status: LiveStatus,
}

/// The change queues: those of every change, and those of one call's, by its Linkedid.
#[derive(Default)]
struct Subscribers {
    all: Vec<Arc<Subscription<Change>>>,
    by_call: HashMap<Text, Vec<Arc<Subscription<Change>>>>,
}

impl Subscribers {
    fn retain(&mut self, keep: impl Fn(&Arc<Subscription<Change>>) -> bool) {
        self.all.retain(&keep);
        self.by_call.retain(|_, subs| {
            subs.retain(&keep);
            !subs.is_empty()
        });
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Subscription<Change>>> {
        self.all.iter().chain(self.by_call.values().flatten())
    }
}

/// What became of a rebuild's lists.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Finished {
    /// Applied and published (the loop must be woken: someone may wait for the rebuild).
    Done,
    /// The held events overflowed: the lists must be asked for again (holding starts afresh).
    AskAgain,
    /// A newer rebuild began (a new session): these lists describe nothing current.
    Stale,
}

/// The PBX's lists, as answered, for one rebuild.
pub(super) struct Lists {
    pub(super) channels: Vec<Message>,
    pub(super) bridges: Vec<Message>,
    /// One `BridgeInfo` answer (items and completion) per bridge.
    pub(super) members: Vec<Vec<Message>>,
}

/// One client's live state.
pub struct Live {
    inner: Mutex<Inner>,
    subs: Mutex<Subscribers>,
    /// The client's event budget: queued changes count against it like queued events.
    budget: Arc<ByteBudget>,
    /// The handles' queue, for the rebuild's actions (weak: the rebuild never keeps a client
    /// alive whose handles are gone).
    commands: mpsc::WeakUnboundedSender<Command>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned one still holds consistent data.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Live {
    pub(super) fn new(
        config: LiveConfig,
        budget: Arc<ByteBudget>,
        commands: mpsc::WeakUnboundedSender<Command>,
    ) -> Live {
        Live {
            inner: Mutex::new(Inner {
                state: LiveState::new(config),
                held: None,
                generation: 0,
                status: LiveStatus::default(),
            }),
            subs: Mutex::new(Subscribers::default()),
            budget,
            commands,
        }
    }

    /// A consistent copy of the state as of the last batch of events; O(1).
    ///
    /// Taken from the state machine when asked, not published after every batch: a view shares
    /// the maps' nodes and the channels, so while one is alive the next update of each entry
    /// copies it; taken on demand, only the entries changed after a read pay that. (Within the
    /// noise of `benches/bench_live.py` either way: the state's own reads dominate.)
    pub fn view(&self) -> View {
        lock(&self.inner).state.view()
    }

    /// The view, unless a rebuild is under way (it then describes the PBX before the gap).
    pub fn settled_view(&self) -> Option<View> {
        let inner = lock(&self.inner);
        inner.held.is_none().then(|| inner.state.view())
    }

    pub fn status(&self) -> LiveStatus {
        let inner = lock(&self.inner);
        LiveStatus {
            stats: inner.state.stats(),
            rebuilding: inner.held.is_some(),
            ..inner.status.clone()
        }
    }

    /// A queue of the changes from now on, within `limits`.
    /// A queue of the changes from now on, within `limits`; with `linkedid`, only that call's
    /// (its channels and the call itself), found by key rather than by testing every change
    /// against every call's queue: a dialer follows thousands of calls at once.
    pub fn subscribe(
        &self,
        limits: QueueLimits,
        overflow: Overflow,
        linkedid: Option<&str>,
    ) -> Arc<Subscription<Change>> {
        let sub = Arc::new(Subscription::bounded(
            Filter::default(),
            limits,
            overflow,
            self.budget.clone(),
        ));
        let mut subs = lock(&self.subs);
        subs.retain(|s| !s.is_closed());
        match linkedid {
            Some(id) => subs.by_call.entry(id.into()).or_default().push(sub.clone()),
            None => subs.all.push(sub.clone()),
        }
        sub
    }

    pub fn unsubscribe(&self, sub: &Arc<Subscription<Change>>) {
        sub.discard();
        lock(&self.subs).retain(|s| !Arc::ptr_eq(s, sub));
    }

    /// Applies a batch of events (or holds them during a rebuild); true when a change consumer
    /// must be woken.
    pub(super) fn observe(&self, events: &[Message]) -> bool {
        let mut inner = lock(&self.inner);
        if let Some(held) = &mut inner.held {
            hold(held, events, MAX_HELD_BYTES);
            return false;
        }
        let now = SystemTime::now();
        let mut changes = Vec::new();
        for event in events {
            changes.extend(inner.state.apply(event, now));
        }
        self.publish(&inner, changes)
    }

    /// Starts a rebuild: events are held from now until its lists are applied. Returns its
    /// generation, which its answers must name.
    pub(super) fn begin_rebuild(&self) -> u64 {
        let mut inner = lock(&self.inner);
        inner.state.begin_rebuild();
        inner.held = Some(Held::default());
        inner.generation += 1;
        inner.generation
    }

    /// The lists of rebuild `generation` arrived: applies them, then the held events, and
    /// publishes the one change set.
    pub(super) fn finish_rebuild(&self, generation: u64, lists: &Lists) -> Finished {
        let mut inner = lock(&self.inner);
        if inner.generation != generation || inner.held.is_none() {
            return Finished::Stale;
        }
        if inner.held.as_ref().is_some_and(|h| h.overflowed) {
            inner.held = Some(Held::default());
            inner.status.rebuild_retries += 1;
            return Finished::AskAgain;
        }
        let now = SystemTime::now();
        let held = inner.held.take().unwrap_or_default();
        let state = &mut inner.state;
        state.rebuild_channels(&lists.channels, now);
        state.rebuild_bridges(&lists.bridges);
        for answer in &lists.members {
            state.rebuild_bridge_members(answer);
        }
        for event in &held.events {
            state.apply(event, now);
        }
        let changes = state.finish_rebuild();
        inner.status.rebuild_error = None;
        self.publish(&inner, changes);
        Finished::Done
    }

    /// Rebuild `generation` could not get the PBX's lists (refused, timed out): the held events
    /// are applied and the state goes on from events alone, saying why it may be inexact.
    pub(super) fn abandon_rebuild(&self, generation: u64, why: String) -> bool {
        let mut inner = lock(&self.inner);
        if inner.generation != generation {
            return false;
        }
        let now = SystemTime::now();
        let held = inner.held.take().unwrap_or_default();
        for event in &held.events {
            inner.state.apply(event, now);
        }
        let changes = inner.state.finish_rebuild();
        inner.status.rebuild_error = Some(why);
        self.publish(&inner, changes)
    }

    /// Queues `changes`; true when a consumer must be woken. Called with the state locked
    /// (`inner`): a reader who takes the view and then drains a change stream has every change
    /// that view includes.
    fn publish(&self, _inner: &Inner, changes: Vec<Change>) -> bool {
        if changes.is_empty() {
            return false;
        }
        let subs = lock(&self.subs);
        let mut wake = false;
        if !subs.by_call.is_empty() {
            let mut of_call: HashMap<&str, Vec<Change>> = HashMap::new();
            for change in &changes {
                if let Some(id) = change
                    .linkedid()
                    .filter(|id| subs.by_call.contains_key(*id))
                {
                    of_call.entry(id).or_default().push(change.clone());
                }
            }
            for (id, changes) in of_call {
                for sub in subs.by_call.get(id).into_iter().flatten() {
                    wake |= sub.push_owned(changes.iter().cloned());
                }
            }
        }
        for sub in &subs.all {
            wake |= sub.push_owned(changes.iter().cloned());
        }
        wake
    }

    /// Ends every change stream (the client closed, or failed for good with `failure`).
    pub(super) fn finish(&self, failure: Option<&str>) -> bool {
        let mut wake = false;
        for sub in lock(&self.subs).iter() {
            wake |= match failure {
                Some(reason) => sub.fail(reason),
                None => sub.close(),
            };
        }
        wake
    }
}

/// Holds `events` for the rebuild, unless the held ones would pass `limit` bytes: then every
/// held event is dropped and the rebuild marked to ask for the lists again.
fn hold(held: &mut Held, events: &[Message], limit: usize) {
    if held.overflowed {
        return;
    }
    let bytes: usize = events.iter().map(Message::heap_size).sum();
    if held.bytes + bytes > limit {
        held.overflowed = true;
        held.events = Vec::new();
        held.bytes = 0;
        return;
    }
    held.bytes += bytes;
    held.events.extend_from_slice(events);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        let (tx, _) = mpsc::unbounded_channel();
        let budget = Arc::new(ByteBudget::new("max_event_bytes", usize::MAX));
        Live::new(LiveConfig::default(), budget, tx.downgrade())
    }

    fn newchannel(uniqueid: &str) -> Message {
        let text = format!(
            "Event: Newchannel\r\nChannel: PJSIP/{uniqueid}\r\nChannelState: 4\r\n\
             Uniqueid: {uniqueid}\r\nLinkedid: {uniqueid}\r\n\r\n"
        );
        Message::parse_one(text.as_bytes()).unwrap_or_else(|| panic!("{text}"))
    }

    fn no_lists() -> Lists {
        Lists {
            channels: Vec::new(),
            bridges: Vec::new(),
            members: Vec::new(),
        }
    }

    #[test]
    fn held_events_past_the_limit_are_dropped_and_the_lists_asked_for_again() {
        let mut held = Held::default();
        hold(&mut held, &[newchannel("1")], 10_000);
        assert_eq!(held.events.len(), 1);
        hold(&mut held, &[newchannel("2"), newchannel("3")], 300);
        assert!(held.overflowed);
        assert!(held.events.is_empty() && held.bytes == 0);
        hold(&mut held, &[newchannel("4")], 10_000);
        assert!(held.events.is_empty(), "nothing is held once overflowed");

        let live = live();
        let generation = live.begin_rebuild();
        if let Some(held) = &mut lock(&live.inner).held {
            held.overflowed = true;
        }
        let finished = live.finish_rebuild(generation, &no_lists());
        assert_eq!(finished, Finished::AskAgain);
        assert_eq!(live.status().rebuild_retries, 1);
        assert!(live.status().rebuilding, "still rebuilding, holding afresh");
        live.observe(&[newchannel("5")]);
        assert!(live.view().channel("5").is_none(), "held, not applied");
        let finished = live.finish_rebuild(generation, &no_lists());
        assert_eq!(finished, Finished::Done);
        assert!(
            live.view().channel("5").is_some(),
            "applied after the lists"
        );
        assert!(!live.status().rebuilding);
    }

    #[test]
    fn answers_to_an_older_rebuild_are_ignored() {
        let live = live();
        let old = live.begin_rebuild();
        let current = live.begin_rebuild();
        live.observe(&[newchannel("1")]);
        assert_eq!(live.finish_rebuild(old, &no_lists()), Finished::Stale);
        assert!(live.status().rebuilding, "the old answer changed nothing");
        let finished = live.finish_rebuild(current, &no_lists());
        assert_eq!(finished, Finished::Done);
        assert!(live.view().channel("1").is_some());
    }

    #[test]
    fn a_call_s_queue_gets_that_call_s_changes_only() {
        let live = live();
        let every = live.subscribe(QueueLimits::default(), Overflow::DropOldest, None);
        let one = live.subscribe(QueueLimits::default(), Overflow::DropOldest, Some("A"));
        live.observe(&[newchannel("A"), newchannel("B")]);
        let linkedids = |changes: Vec<Change>| -> Vec<String> {
            let ids = changes
                .iter()
                .filter_map(|c| c.linkedid().map(str::to_owned));
            ids.collect()
        };
        assert_eq!(
            linkedids(one.drain(100)),
            ["A", "A"],
            "its channel and its call"
        );
        assert_eq!(linkedids(every.drain(100)).len(), 4);
        live.unsubscribe(&one);
        assert_eq!(lock(&live.subs).by_call.len(), 0);
    }
}
