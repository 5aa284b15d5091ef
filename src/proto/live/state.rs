//! The state machine: events in, the view updated in place, the change set out.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::event::EventKind;
use super::model::{
    Bridge, BridgeFields, Call, Change, Channel, ChannelFields, ChannelState, HangupCause, Map,
    Text, View,
};
use super::snapshot::{BridgeSnapshot, ChannelSnapshot, HangupSnapshot};
use crate::proto::{Message, decode_text};

/// What the live state keeps beyond the always-kept fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveConfig {
    /// Keep channel variables from `VarSet` events and `ChanVariable` headers (memory grows with
    /// every variable the dialplan sets).
    pub variables: bool,
}

/// Counters, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Events read (those about channels and bridges).
    pub events: u64,
    /// Events about a channel never seen: counted and skipped, never a reason to fail.
    pub orphan_events: u64,
    /// Events skipped during a rebuild, before the PBX's list arrived, about channels or bridges
    /// that list will bring (or that ended during the gap).
    pub rebuild_skipped: u64,
    /// Rebuilds begun.
    pub rebuilds: u64,
}

/// A change noted while an event is applied, resolved to its [`Change`] once the event is done
/// (so that an entry touched twice by one event is reported once, in its final form).
#[derive(Debug)]
enum Pending {
    ChannelAdded(Text),
    ChannelChanged(Text, ChannelFields),
    ChannelRemoved(Arc<Channel>, Option<HangupCause>),
    BridgeAdded(Text),
    BridgeChanged(Text, BridgeFields),
    BridgeRemoved(Arc<Bridge>),
    CallAdded(Text),
    CallChanged(Text),
    CallRemoved(Arc<Call>),
}

/// A rebuild in progress: the view it started from and what the gap explains.
#[derive(Debug)]
struct Rebuild {
    before: View,
    /// Causes of the hangups seen during the rebuild, for the removals it will report.
    causes: HashMap<Text, HangupCause>,
    /// Channels the PBX's list did not have (their late `Hangup`s are not orphans).
    vanished: HashSet<Text>,
    channels_listed: bool,
    bridges_listed: bool,
}

/// Channels, bridges and calls kept from the event stream. Sans-IO: the caller feeds every event
/// and passes the time in; see the module documentation for the rebuild protocol.
#[derive(Debug, Default)]
pub struct LiveState {
    view: View,
    config: LiveConfig,
    stats: LiveStats,
    pending: Vec<Pending>,
    rebuild: Option<Rebuild>,
    /// Live Local channels by name without the `;1`/`;2`: the Uniqueids of both halves. Halves
    /// are paired by name the moment both exist, whether `LocalBridge` or a list told.
    locals: foldhash::HashMap<Text, [Option<Text>; 2]>,
}

fn text(raw: &[u8]) -> Cow<'_, str> {
    decode_text(raw)
}

fn parse<T: std::str::FromStr>(raw: &[u8]) -> Option<T> {
    std::str::from_utf8(raw).ok()?.trim().parse().ok()
}

/// True when `raw` is absent (the message says nothing) or spells `current`.
fn same_text(current: &str, raw: Option<&[u8]>) -> bool {
    raw.is_none_or(|raw| current.as_bytes() == raw || *current == *text(raw))
}

fn set_text(slot: &mut Text, raw: Option<&[u8]>) {
    if !same_text(slot, raw) {
        *slot = raw.map(|raw| text(raw).into()).unwrap_or_default();
    }
}

/// The fields a snapshot would change in `channel` (a value that does not parse changes nothing).
fn snapshot_changes(channel: &Channel, snap: &ChannelSnapshot<'_>) -> ChannelFields {
    let mut fields = ChannelFields::empty();
    let mut mark = |same: bool, field| fields.set(field, !same);
    mark(same_text(&channel.name, snap.name), ChannelFields::NAME);
    mark(
        same_text(&channel.linkedid, snap.linkedid),
        ChannelFields::LINKEDID,
    );
    mark(
        snap.state
            .and_then(parse::<u8>)
            .is_none_or(|state| state == channel.state.0),
        ChannelFields::STATE,
    );
    mark(
        same_text(&channel.caller_id.number, snap.caller_num)
            && same_text(&channel.caller_id.name, snap.caller_name),
        ChannelFields::CALLER_ID,
    );
    mark(
        same_text(&channel.connected_line.number, snap.connected_num)
            && same_text(&channel.connected_line.name, snap.connected_name),
        ChannelFields::CONNECTED_LINE,
    );
    mark(
        same_text(&channel.language, snap.language),
        ChannelFields::LANGUAGE,
    );
    mark(
        same_text(&channel.account_code, snap.account_code),
        ChannelFields::ACCOUNT_CODE,
    );
    mark(
        same_text(&channel.context, snap.context)
            && same_text(&channel.exten, snap.exten)
            && snap
                .priority
                .and_then(parse::<u32>)
                .is_none_or(|p| p == channel.priority),
        ChannelFields::DIALPLAN,
    );
    fields
}

/// Writes the `fields` of a snapshot into `channel` (the others are known to be equal).
fn write_snapshot(channel: &mut Channel, snap: &ChannelSnapshot<'_>, fields: ChannelFields) {
    if fields.contains(ChannelFields::NAME) {
        set_text(&mut channel.name, snap.name);
    }
    if fields.contains(ChannelFields::LINKEDID) {
        set_text(&mut channel.linkedid, snap.linkedid);
    }
    if let Some(state) = snap.state.and_then(parse::<u8>) {
        channel.state = ChannelState(state);
    }
    if fields.contains(ChannelFields::CALLER_ID) {
        set_text(&mut channel.caller_id.number, snap.caller_num);
        set_text(&mut channel.caller_id.name, snap.caller_name);
    }
    if fields.contains(ChannelFields::CONNECTED_LINE) {
        set_text(&mut channel.connected_line.number, snap.connected_num);
        set_text(&mut channel.connected_line.name, snap.connected_name);
    }
    if fields.contains(ChannelFields::LANGUAGE) {
        set_text(&mut channel.language, snap.language);
    }
    if fields.contains(ChannelFields::ACCOUNT_CODE) {
        set_text(&mut channel.account_code, snap.account_code);
    }
    if fields.contains(ChannelFields::DIALPLAN) {
        set_text(&mut channel.context, snap.context);
        set_text(&mut channel.exten, snap.exten);
        if let Some(priority) = snap.priority.and_then(parse::<u32>) {
            channel.priority = priority;
        }
    }
}

fn bridge_snapshot_changes(bridge: &Bridge, snap: &BridgeSnapshot<'_>) -> BridgeFields {
    let mut fields = BridgeFields::empty();
    let mut mark = |same: bool, field| fields.set(field, !same);
    mark(same_text(&bridge.kind, snap.kind), BridgeFields::KIND);
    mark(
        same_text(&bridge.technology, snap.technology),
        BridgeFields::TECHNOLOGY,
    );
    mark(
        same_text(&bridge.creator, snap.creator),
        BridgeFields::CREATOR,
    );
    mark(same_text(&bridge.name, snap.name), BridgeFields::NAME);
    mark(
        same_text(&bridge.video_source_mode, snap.video_source_mode),
        BridgeFields::VIDEO_SOURCE_MODE,
    );
    fields
}

fn write_bridge_snapshot(bridge: &mut Bridge, snap: &BridgeSnapshot<'_>) {
    set_text(&mut bridge.kind, snap.kind);
    set_text(&mut bridge.technology, snap.technology);
    set_text(&mut bridge.creator, snap.creator);
    set_text(&mut bridge.name, snap.name);
    set_text(&mut bridge.video_source_mode, snap.video_source_mode);
}

/// How long a listed channel has lived: `Duration: HH:MM:SS` (CoreShowChannel) or `Seconds`
/// (Status).
fn listed_age(item: &Message) -> Duration {
    let seconds = match item.get_bytes("Duration") {
        Some(hms) => hms
            .split(|&b| b == b':')
            .try_fold(0u64, |total, part| Some(total * 60 + parse::<u64>(part)?)),
        None => item.get_bytes("Seconds").and_then(parse::<u64>),
    };
    Duration::from_secs(seconds.unwrap_or(0))
}

/// Which half of a Local channel a name is: `Local/x@ctx-0001;2` → (`Local/x@ctx-0001`, `true`).
fn local_half(name: &str) -> Option<(&str, bool)> {
    if !name.starts_with("Local/") {
        return None;
    }
    let (base, half) = name.rsplit_once(';')?;
    match half {
        "1" => Some((base, false)),
        "2" => Some((base, true)),
        _ => None,
    }
}

/// The slot of one half and that of the other.
fn halves_of(
    halves: &mut [Option<Text>; 2],
    second: bool,
) -> (&mut Option<Text>, &mut Option<Text>) {
    let [one, two] = halves;
    if second { (two, one) } else { (one, two) }
}

/// Every `ChanVariable: NAME=value` header (set by `channelvars` in manager.conf).
fn chan_variables(msg: &Message) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    msg.get_all_bytes("ChanVariable").filter_map(|pair| {
        let at = memchr::memchr(b'=', pair)?;
        let (name, value) = pair.split_at(at);
        Some((text(name), text(value.get(1..).unwrap_or_default())))
    })
}

impl LiveState {
    pub fn new(config: LiveConfig) -> LiveState {
        LiveState {
            config,
            ..LiveState::default()
        }
    }

    /// A read-only copy of the state as of the last event; O(1), never half-updated.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    pub fn stats(&self) -> LiveStats {
        self.stats
    }

    pub fn is_rebuilding(&self) -> bool {
        self.rebuild.is_some()
    }

    /// Applies one message (events about channels and bridges; anything else, list items
    /// included, is ignored) and returns what it changed. During a rebuild the view still follows
    /// the events but nothing is returned: [`LiveState::finish_rebuild`] reports it all at once.
    pub fn apply(&mut self, msg: &Message, now: SystemTime) -> Vec<Change> {
        let Some(kind) = msg.event_name_bytes().and_then(EventKind::of) else {
            return Vec::new();
        };
        if kind == EventKind::VarSet && !self.config.variables {
            return Vec::new();
        }
        self.stats.events += 1;
        match kind {
            EventKind::NewChannel => self.on_new_channel(msg, now),
            EventKind::Refresh => self.refresh_from(msg),
            EventKind::Hangup => self.on_hangup(msg),
            EventKind::Rename => self.on_rename(msg),
            EventKind::BridgeCreate | EventKind::BridgeUpdate => {
                if let Some(snap) = BridgeSnapshot::read(msg, "") {
                    self.upsert_bridge(&snap);
                }
            }
            EventKind::BridgeEnter => self.on_bridge_enter(msg),
            EventKind::BridgeLeave => self.on_bridge_leave(msg),
            EventKind::BridgeDestroy => self.on_bridge_destroy(msg),
            EventKind::BridgeMerge => self.on_bridge_merge(msg),
            EventKind::VarSet => self.on_var_set(msg),
        }
        self.take_changes()
    }

    // ---- events ----

    fn on_new_channel(&mut self, msg: &Message, now: SystemTime) {
        let Some(snap) = ChannelSnapshot::read(msg) else {
            return;
        };
        if self.view.channels.contains_key(&*text(snap.uniqueid())) {
            self.refresh(&snap);
        } else {
            self.add_channel(&snap, now);
        }
        self.read_chan_variables(msg, &snap);
    }

    /// Refreshes the channel `msg` describes; an unknown channel is an orphan.
    fn refresh_from(&mut self, msg: &Message) {
        match ChannelSnapshot::read(msg) {
            Some(snap) => {
                if self.refresh(&snap) {
                    self.read_chan_variables(msg, &snap);
                }
            }
            None => self.orphan(),
        }
    }

    fn on_hangup(&mut self, msg: &Message) {
        let Some(hangup) = HangupSnapshot::read(msg) else {
            return self.orphan();
        };
        let uniqueid = text(hangup.uniqueid());
        let cause = HangupCause {
            code: hangup.cause.and_then(parse).unwrap_or(0),
            text: text(hangup.cause_text.unwrap_or_default()).into(),
        };
        if let Some(rebuild) = &mut self.rebuild {
            rebuild
                .causes
                .insert(uniqueid.clone().into(), cause.clone());
            if rebuild.vanished.contains(&*uniqueid) {
                return;
            }
        }
        if self.view.channels.contains_key(&*uniqueid) {
            self.remove_channel(&uniqueid, Some(cause));
        } else {
            self.orphan();
        }
    }

    fn on_rename(&mut self, msg: &Message) {
        let (Some(uniqueid), Some(new_name)) = (msg.get("Uniqueid"), msg.get_bytes("Newname"))
        else {
            return self.orphan();
        };
        let known = self.view.channels.get(&*uniqueid);
        match known {
            Some(channel) if same_text(&channel.name, Some(new_name)) => {}
            Some(channel) => {
                let old_name = channel.name.clone();
                self.update_channel(&uniqueid, ChannelFields::NAME, |channel| {
                    set_text(&mut channel.name, Some(new_name))
                });
                self.relink_local(&uniqueid, Some(&old_name));
            }
            None => self.orphan(),
        }
    }

    fn on_bridge_enter(&mut self, msg: &Message) {
        let (Some(bridge), Some(channel)) =
            (BridgeSnapshot::read(msg, ""), ChannelSnapshot::read(msg))
        else {
            return self.orphan();
        };
        self.upsert_bridge(&bridge);
        if self.refresh(&channel) {
            self.set_channel_bridge(&text(channel.uniqueid()), Some(&text(bridge.id())));
        }
    }

    fn on_bridge_leave(&mut self, msg: &Message) {
        let (Some(bridge), Some(channel)) =
            (BridgeSnapshot::read(msg, ""), ChannelSnapshot::read(msg))
        else {
            return self.orphan();
        };
        self.upsert_bridge(&bridge);
        if self.refresh(&channel) {
            let uniqueid = text(channel.uniqueid());
            let in_it = self
                .view
                .channels
                .get(&*uniqueid)
                .is_some_and(|c| c.bridge.as_deref() == Some(&*text(bridge.id())));
            if in_it {
                self.set_channel_bridge(&uniqueid, None);
            }
        }
    }

    fn on_bridge_destroy(&mut self, msg: &Message) {
        match BridgeSnapshot::read(msg, "") {
            Some(snap) if self.view.bridges.contains_key(&*text(snap.id())) => {
                self.remove_bridge(&text(snap.id()))
            }
            Some(_) | None => self.orphan_bridge(),
        }
    }

    fn on_bridge_merge(&mut self, msg: &Message) {
        let (Some(to), Some(from)) = (
            BridgeSnapshot::read(msg, "To"),
            BridgeSnapshot::read(msg, "From"),
        ) else {
            return self.orphan();
        };
        self.upsert_bridge(&to);
        self.upsert_bridge(&from);
        let to = text(to.id());
        let moving = self
            .view
            .bridges
            .get(&*text(from.id()))
            .map(|b| b.members.clone())
            .unwrap_or_default();
        for member in moving {
            self.set_channel_bridge(&member, Some(&to));
        }
    }

    fn on_var_set(&mut self, msg: &Message) {
        let Some(snap) = ChannelSnapshot::read(msg) else {
            return self.orphan();
        };
        if !self.refresh(&snap) {
            return;
        }
        if let (Some(name), Some(value)) = (msg.get("Variable"), msg.get("Value")) {
            self.set_variable(&text(snap.uniqueid()), &name, &value);
        }
    }

    fn read_chan_variables(&mut self, msg: &Message, snap: &ChannelSnapshot<'_>) {
        if self.config.variables {
            let uniqueid = text(snap.uniqueid());
            for (name, value) in chan_variables(msg) {
                self.set_variable(&uniqueid, &name, &value);
            }
        }
    }

    /// An event about a channel not known: before a rebuild's channel list, that list's
    /// business; otherwise an orphan.
    fn orphan(&mut self) {
        match &self.rebuild {
            Some(rebuild) if !rebuild.channels_listed => self.stats.rebuild_skipped += 1,
            _ => self.stats.orphan_events += 1,
        }
    }

    /// The same for a bridge and the rebuild's bridge list.
    fn orphan_bridge(&mut self) {
        match &self.rebuild {
            Some(rebuild) if !rebuild.bridges_listed => self.stats.rebuild_skipped += 1,
            _ => self.stats.orphan_events += 1,
        }
    }

    // ---- channels ----

    fn add_channel(&mut self, snap: &ChannelSnapshot<'_>, created_at: SystemTime) {
        let uniqueid: Text = text(snap.uniqueid()).into();
        let mut channel = Channel::new(uniqueid.clone(), created_at);
        write_snapshot(&mut channel, snap, ChannelFields::all());
        let linkedid = channel.linkedid.clone();
        self.view
            .channels
            .insert(uniqueid.clone(), Arc::new(channel));
        self.pending.push(Pending::ChannelAdded(uniqueid.clone()));
        self.join_call(&linkedid, &uniqueid);
        self.relink_local(&uniqueid, None);
    }

    /// Applies a snapshot to a known channel; false (and an orphan counted) when it is unknown.
    fn refresh(&mut self, snap: &ChannelSnapshot<'_>) -> bool {
        let uniqueid = text(snap.uniqueid());
        let Some(current) = self.view.channels.get(&*uniqueid) else {
            self.orphan();
            return false;
        };
        let fields = snapshot_changes(current, snap);
        if fields.is_empty() {
            return true;
        }
        let old_linkedid = fields
            .contains(ChannelFields::LINKEDID)
            .then(|| current.linkedid.clone());
        let old_name = fields
            .contains(ChannelFields::NAME)
            .then(|| current.name.clone());
        self.update_channel(&uniqueid, fields, |channel| {
            write_snapshot(channel, snap, fields)
        });
        if let Some(old) = old_name {
            self.relink_local(&uniqueid, Some(&old));
        }
        if let Some(old) = old_linkedid {
            let new = self
                .view
                .channels
                .get(&*uniqueid)
                .map(|c| c.linkedid.clone());
            self.leave_call(&old, &uniqueid);
            if let Some(new) = new {
                self.join_call(&new, &uniqueid);
            }
        }
        true
    }

    /// Mutates a known channel in place (copying it only if a view still shares it).
    fn update_channel(
        &mut self,
        uniqueid: &str,
        fields: ChannelFields,
        change: impl FnOnce(&mut Channel),
    ) {
        if let Some(entry) = self.view.channels.get_mut(uniqueid) {
            change(Arc::make_mut(entry));
            self.pending
                .push(Pending::ChannelChanged(uniqueid.into(), fields));
        }
    }

    fn remove_channel(&mut self, uniqueid: &str, cause: Option<HangupCause>) {
        let Some(channel) = self.view.channels.get(uniqueid).cloned() else {
            return;
        };
        if channel.bridge.is_some() {
            self.set_channel_bridge(uniqueid, None);
        }
        self.unindex_local(uniqueid, &channel.name);
        if let Some(peer) = &channel.local_peer {
            self.set_local_peer(peer, None);
        }
        if let Some(removed) = self.view.channels.remove(uniqueid) {
            self.pending.push(Pending::ChannelRemoved(removed, cause));
        }
        self.leave_call(&channel.linkedid, uniqueid);
    }

    /// Takes a channel's former name out of the Local index (unpairing it from its peer).
    fn unindex_local(&mut self, uniqueid: &str, name: &str) {
        let Some((base, second)) = local_half(name) else {
            return;
        };
        let Some(halves) = self.locals.get_mut(base) else {
            return;
        };
        let (slot, _) = halves_of(halves, second);
        if slot.as_deref() == Some(uniqueid) {
            *slot = None;
        }
        if halves.iter().all(Option::is_none) {
            self.locals.remove(base);
        }
    }

    /// Re-files a channel in the Local index under its current name (after a birth or a name
    /// change) and pairs it with the other half of that name, if live.
    fn relink_local(&mut self, uniqueid: &str, old_name: Option<&str>) {
        let Some(channel) = self.view.channels.get(uniqueid) else {
            return;
        };
        let name = channel.name.clone();
        let old_peer = channel.local_peer.clone();
        if let Some(old) = old_name {
            self.unindex_local(uniqueid, old);
        }
        let peer = local_half(&name).and_then(|(base, second)| {
            let (slot, other) = halves_of(self.locals.entry(base.into()).or_default(), second);
            *slot = Some(uniqueid.into());
            other.clone()
        });
        if let Some(old) = old_peer.filter(|old| Some(old) != peer.as_ref()) {
            self.set_local_peer(&old, None);
        }
        self.set_local_peer(uniqueid, peer.as_deref());
        if let Some(peer) = peer {
            self.set_local_peer(&peer, Some(uniqueid));
        }
    }

    fn set_local_peer(&mut self, uniqueid: &str, peer: Option<&str>) {
        let differs = self
            .view
            .channels
            .get(uniqueid)
            .is_some_and(|c| c.local_peer.as_deref() != peer);
        if differs {
            self.update_channel(uniqueid, ChannelFields::LOCAL_PEER, |channel| {
                channel.local_peer = peer.map(Into::into)
            });
        }
    }

    fn set_variable(&mut self, uniqueid: &str, name: &str, value: &str) {
        let Some(channel) = self.view.channels.get(uniqueid) else {
            return;
        };
        let at = channel.variables.iter().position(|(n, _)| &**n == name);
        let current = at.and_then(|i| channel.variables.get(i)).map(|(_, v)| &**v);
        if current.unwrap_or_default() == value {
            return;
        }
        self.update_channel(uniqueid, ChannelFields::VARIABLES, |channel| {
            match (at, value.is_empty()) {
                // An empty value is how Asterisk reports a variable cleared.
                (Some(i), true) => {
                    channel.variables.remove(i);
                }
                (Some(i), false) => {
                    if let Some(slot) = channel.variables.get_mut(i) {
                        slot.1 = value.into();
                    }
                }
                (None, _) => channel.variables.push((name.into(), value.into())),
            }
        });
    }

    /// Moves a channel into `bridge` (or out of any), keeping both sides (the channel's `bridge`
    /// and the bridges' member lists) in step. An unknown bridge is created bare: the PBX says
    /// the channel is in it.
    fn set_channel_bridge(&mut self, uniqueid: &str, bridge: Option<&str>) {
        let Some(channel) = self.view.channels.get(uniqueid) else {
            return;
        };
        let old = channel.bridge.clone();
        if old.as_deref() == bridge {
            self.ensure_member(uniqueid, bridge);
            return;
        }
        if let Some(old) = old.as_deref() {
            self.update_bridge(old, BridgeFields::MEMBERS, |b| {
                b.members.retain(|m| &**m != uniqueid)
            });
        }
        self.update_channel(uniqueid, ChannelFields::BRIDGE, |channel| {
            channel.bridge = bridge.map(Into::into)
        });
        self.ensure_member(uniqueid, bridge);
    }

    fn ensure_member(&mut self, uniqueid: &str, bridge: Option<&str>) {
        let Some(id) = bridge else { return };
        match self.view.bridges.get(id) {
            Some(b) if b.members.iter().any(|m| &**m == uniqueid) => {}
            Some(_) => self.update_bridge(id, BridgeFields::MEMBERS, |b| {
                b.members.push(uniqueid.into())
            }),
            None => {
                let mut new = Bridge::new(id.into());
                new.members.push(uniqueid.into());
                self.view.bridges.insert(id.into(), Arc::new(new));
                self.pending.push(Pending::BridgeAdded(id.into()));
            }
        }
    }

    // ---- bridges ----

    fn upsert_bridge(&mut self, snap: &BridgeSnapshot<'_>) {
        let id = text(snap.id());
        match self.view.bridges.get(&*id) {
            Some(bridge) => {
                let fields = bridge_snapshot_changes(bridge, snap);
                if !fields.is_empty() {
                    self.update_bridge(&id, fields, |b| write_bridge_snapshot(b, snap));
                }
            }
            None => {
                let mut bridge = Bridge::new(id.clone().into());
                write_bridge_snapshot(&mut bridge, snap);
                self.view
                    .bridges
                    .insert(id.clone().into(), Arc::new(bridge));
                self.pending.push(Pending::BridgeAdded(id.into()));
            }
        }
    }

    fn update_bridge(&mut self, id: &str, fields: BridgeFields, change: impl FnOnce(&mut Bridge)) {
        if let Some(entry) = self.view.bridges.get_mut(id) {
            change(Arc::make_mut(entry));
            self.pending.push(Pending::BridgeChanged(id.into(), fields));
        }
    }

    fn remove_bridge(&mut self, id: &str) {
        let members = self
            .view
            .bridges
            .get(id)
            .map(|b| b.members.clone())
            .unwrap_or_default();
        for member in members {
            self.set_channel_bridge(&member, None);
        }
        if let Some(bridge) = self.view.bridges.remove(id) {
            self.pending.push(Pending::BridgeRemoved(bridge));
        }
    }

    // ---- calls ----

    fn join_call(&mut self, linkedid: &str, uniqueid: &str) {
        match self.view.calls.get_mut(linkedid) {
            Some(call) => {
                Arc::make_mut(call).channels.push(uniqueid.into());
                self.pending.push(Pending::CallChanged(linkedid.into()));
            }
            None => {
                let call = Call {
                    linkedid: linkedid.into(),
                    channels: vec![uniqueid.into()],
                };
                self.view.calls.insert(linkedid.into(), Arc::new(call));
                self.pending.push(Pending::CallAdded(linkedid.into()));
            }
        }
    }

    fn leave_call(&mut self, linkedid: &str, uniqueid: &str) {
        let Some(call) = self.view.calls.get_mut(linkedid) else {
            return;
        };
        let call = Arc::make_mut(call);
        call.channels.retain(|c| &**c != uniqueid);
        if call.channels.is_empty() {
            if let Some(call) = self.view.calls.remove(linkedid) {
                self.pending.push(Pending::CallRemoved(call));
            }
        } else {
            self.pending.push(Pending::CallChanged(linkedid.into()));
        }
    }

    // ---- change sets ----

    /// Resolves the changes noted for one event: one entry per channel, bridge or call, in the
    /// order first touched, with the final fields. Nothing leaves during a rebuild.
    fn take_changes(&mut self) -> Vec<Change> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        if self.rebuild.is_some() {
            self.pending.clear();
            return Vec::new();
        }
        let mut changes: Vec<Change> = Vec::with_capacity(self.pending.len());
        for pending in self.pending.drain(..) {
            if let Some(change) = resolve(&self.view, pending)
                && !merge_into(&mut changes, &change)
            {
                changes.push(change);
            }
        }
        if !changes.is_empty() {
            self.view.version += 1;
        }
        changes
    }

    // ---- rebuild ----

    /// Starts rebuilding from the PBX's own lists (on connect and after every reconnect, before
    /// asking for them). Events go on through [`LiveState::apply`]; the lists go to
    /// [`LiveState::rebuild_channels`] and [`LiveState::rebuild_bridges`] at the point their
    /// answers complete; [`LiveState::finish_rebuild`] returns everything that changed since
    /// this call as one change set. Beginning again while rebuilding keeps the first start as the
    /// point changes are counted from.
    pub fn begin_rebuild(&mut self) {
        self.stats.rebuilds += 1;
        let before = match self.rebuild.take() {
            Some(rebuild) => rebuild.before,
            None => self.view.clone(),
        };
        self.rebuild = Some(Rebuild {
            before,
            causes: HashMap::new(),
            vanished: HashSet::new(),
            channels_listed: false,
            bridges_listed: false,
        });
    }

    /// The PBX's channel list (`CoreShowChannel` or `Status` items; others are skipped), fed
    /// when the list completes: every listed channel takes the listed values (creation time
    /// counted back from its `Duration`/`Seconds`), every channel not listed is gone, bridge
    /// membership follows `BridgeId`.
    pub fn rebuild_channels<'m>(
        &mut self,
        items: impl IntoIterator<Item = &'m Message>,
        now: SystemTime,
    ) {
        let mut listed: HashSet<Text> = HashSet::new();
        for item in items {
            let Some(snap) = ChannelSnapshot::read(item) else {
                continue;
            };
            let uniqueid = text(snap.uniqueid());
            if self.view.channels.contains_key(&*uniqueid) {
                self.refresh(&snap);
            } else {
                let born = now.checked_sub(listed_age(item)).unwrap_or(now);
                self.add_channel(&snap, born);
            }
            let bridge = item.get("BridgeId").filter(|id| !id.is_empty());
            self.set_channel_bridge(&uniqueid, bridge.as_deref());
            listed.insert(uniqueid.into());
        }
        let gone: Vec<Text> = self
            .view
            .channels
            .keys()
            .filter(|id| !listed.contains(*id))
            .cloned()
            .collect();
        for uniqueid in gone {
            self.remove_channel(&uniqueid, None);
            if let Some(rebuild) = &mut self.rebuild {
                rebuild.vanished.insert(uniqueid);
            }
        }
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.channels_listed = true;
        }
    }

    /// The PBX's bridge list (`BridgeListItem` items), fed when it completes: listed bridges
    /// take the listed values, bridges not listed are gone.
    pub fn rebuild_bridges<'m>(&mut self, items: impl IntoIterator<Item = &'m Message>) {
        let mut listed: HashSet<Text> = HashSet::new();
        for item in items {
            if let Some(snap) = BridgeSnapshot::read(item, "") {
                self.upsert_bridge(&snap);
                listed.insert(text(snap.id()).into());
            }
        }
        let gone: Vec<Text> = self
            .view
            .bridges
            .keys()
            .filter(|id| !listed.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove_bridge(&id);
        }
        if let Some(rebuild) = &mut self.rebuild {
            rebuild.bridges_listed = true;
        }
    }

    /// One bridge's `BridgeInfo` answer (`BridgeInfoChannel` items and the `BridgeInfoComplete`
    /// that names the bridge), fed when it completes: the bridge's members become exactly the
    /// listed channels, in the listed order.
    pub fn rebuild_bridge_members<'m>(&mut self, items: impl IntoIterator<Item = &'m Message>) {
        let items: Vec<&Message> = items.into_iter().collect();
        let Some(bridge) = items.iter().find_map(|item| BridgeSnapshot::read(item, "")) else {
            return;
        };
        self.upsert_bridge(&bridge);
        let id = text(bridge.id());
        let mut members: Vec<Text> = Vec::new();
        for item in &items {
            if let Some(snap) = ChannelSnapshot::read(item)
                && self.refresh(&snap)
            {
                let uniqueid = text(snap.uniqueid());
                self.set_channel_bridge(&uniqueid, Some(&id));
                members.push(uniqueid.into());
            }
        }
        let former = self
            .view
            .bridges
            .get(&*id)
            .map(|b| b.members.clone())
            .unwrap_or_default();
        for member in former.iter().filter(|m| !members.contains(m)) {
            self.set_channel_bridge(member, None);
        }
        let in_order = self
            .view
            .bridges
            .get(&*id)
            .is_none_or(|b| b.members == members);
        if !in_order {
            self.update_bridge(&id, BridgeFields::MEMBERS, |b| b.members = members);
        }
    }

    /// Ends the rebuild: everything that changed since [`LiveState::begin_rebuild`] as one change
    /// set (removals carry the hangup cause when the `Hangup` was seen, `None` when the channel
    /// went during the gap). Without a rebuild in progress, nothing.
    pub fn finish_rebuild(&mut self) -> Vec<Change> {
        let Some(rebuild) = self.rebuild.take() else {
            return Vec::new();
        };
        self.pending.clear();
        let changes = diff(&rebuild.before, &self.view, &rebuild.causes);
        if !changes.is_empty() {
            self.view.version += 1;
        }
        changes
    }
}

fn resolve(view: &View, pending: Pending) -> Option<Change> {
    Some(match pending {
        Pending::ChannelAdded(id) => Change::ChannelAdded(view.channels.get(&id)?.clone()),
        Pending::ChannelChanged(id, fields) => Change::ChannelChanged {
            channel: view.channels.get(&id)?.clone(),
            fields,
        },
        Pending::ChannelRemoved(channel, cause) => Change::ChannelRemoved { channel, cause },
        Pending::BridgeAdded(id) => Change::BridgeAdded(view.bridges.get(&id)?.clone()),
        Pending::BridgeChanged(id, fields) => Change::BridgeChanged {
            bridge: view.bridges.get(&id)?.clone(),
            fields,
        },
        Pending::BridgeRemoved(bridge) => Change::BridgeRemoved(bridge),
        Pending::CallAdded(id) => Change::CallAdded(view.calls.get(&id)?.clone()),
        Pending::CallChanged(id) => Change::CallChanged(view.calls.get(&id)?.clone()),
        Pending::CallRemoved(call) => Change::CallRemoved(call),
    })
}

/// What a change is about: channel, bridge or call, and its key.
fn subject(change: &Change) -> (u8, &str) {
    match change {
        Change::ChannelAdded(c)
        | Change::ChannelChanged { channel: c, .. }
        | Change::ChannelRemoved { channel: c, .. } => (0, &c.uniqueid),
        Change::BridgeAdded(b)
        | Change::BridgeChanged { bridge: b, .. }
        | Change::BridgeRemoved(b) => (1, &b.id),
        Change::CallAdded(c) | Change::CallChanged(c) | Change::CallRemoved(c) => (2, &c.linkedid),
    }
}

/// Folds a change into an earlier one of the same entry (an addition absorbs later changes,
/// changed fields accumulate); false when there is none to fold into.
fn merge_into(changes: &mut [Change], change: &Change) -> bool {
    let Some(earlier) = changes.iter_mut().find(|c| subject(c) == subject(change)) else {
        return false;
    };
    match (earlier, change) {
        (Change::ChannelChanged { fields, .. }, Change::ChannelChanged { fields: more, .. }) => {
            *fields |= *more
        }
        (Change::BridgeChanged { fields, .. }, Change::BridgeChanged { fields: more, .. }) => {
            *fields |= *more
        }
        (
            Change::ChannelAdded(_)
            | Change::BridgeAdded(_)
            | Change::CallAdded(_)
            | Change::CallChanged(_),
            Change::ChannelChanged { .. } | Change::BridgeChanged { .. } | Change::CallChanged(_),
        ) => {}
        _ => return false,
    }
    true
}

/// Every difference between two views, as changes: removals, then changes, then additions,
/// channels before bridges before calls.
fn diff(before: &View, after: &View, causes: &HashMap<Text, HangupCause>) -> Vec<Change> {
    let mut changes = Vec::new();
    diff_maps(
        &before.channels,
        &after.channels,
        &mut changes,
        |channel| Change::ChannelRemoved {
            cause: causes.get(&channel.uniqueid).cloned(),
            channel,
        },
        |old, new| {
            let fields = old.fields_changed(&new);
            (!fields.is_empty()).then_some(Change::ChannelChanged {
                channel: new,
                fields,
            })
        },
        Change::ChannelAdded,
    );
    diff_maps(
        &before.bridges,
        &after.bridges,
        &mut changes,
        Change::BridgeRemoved,
        |old, new| {
            let fields = old.fields_changed(&new);
            (!fields.is_empty()).then_some(Change::BridgeChanged {
                bridge: new,
                fields,
            })
        },
        Change::BridgeAdded,
    );
    diff_maps(
        &before.calls,
        &after.calls,
        &mut changes,
        Change::CallRemoved,
        |old, new| (old.channels != new.channels).then_some(Change::CallChanged(new)),
        Change::CallAdded,
    );
    changes
}

fn diff_maps<T>(
    before: &Map<T>,
    after: &Map<T>,
    changes: &mut Vec<Change>,
    removed: impl Fn(Arc<T>) -> Change,
    changed: impl Fn(&T, Arc<T>) -> Option<Change>,
    added: impl Fn(Arc<T>) -> Change,
) {
    for (key, old) in before {
        match after.get(key) {
            None => changes.push(removed(old.clone())),
            Some(new) if !Arc::ptr_eq(old, new) => changes.extend(changed(old, new.clone())),
            Some(_) => {}
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) {
            changes.push(added(new.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_age_reads_both_list_spellings() {
        let csc = Message::parse_one(b"Event: CoreShowChannel\r\nDuration: 01:02:03\r\n\r\n");
        let status = Message::parse_one(b"Event: Status\r\nSeconds: 42\r\n\r\n");
        assert_eq!(
            csc.as_ref().map(listed_age),
            Some(Duration::from_secs(3723))
        );
        assert_eq!(
            status.as_ref().map(listed_age),
            Some(Duration::from_secs(42))
        );
    }

    #[test]
    fn local_halves_are_recognised_by_name() {
        assert_eq!(
            local_half("Local/600@test-00001c31;2"),
            Some(("Local/600@test-00001c31", true))
        );
        assert_eq!(local_half("PJSIP/100-00000001"), None);
        assert_eq!(local_half("Local/600@test-00001c31;3"), None);
    }
}
