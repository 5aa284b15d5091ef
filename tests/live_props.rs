//! Property: whatever calls a PBX runs, wherever the connection drops and however long the gap,
//! a rebuild from the PBX's own lists (with events arriving before, between and after them)
//! leaves the live view equal to the PBX's truth, and the change sets alone rebuild the view.
//! The oracle is a small model PBX that emits Asterisk 22's events and list items.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod live_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use amiwire::proto::Message;
use amiwire::proto::live::{LiveConfig, LiveState, View};
use live_support::{Replica, assert_consistent};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    NewCall,
    Dial(usize),
    LocalPair,
    State(usize, u8),
    CallerId(usize, u8),
    Exten(usize, u8),
    NewBridge,
    Enter(usize, usize),
    Leave(usize),
    Destroy(usize),
    Hangup(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::NewCall),
        2 => any::<usize>().prop_map(Op::Dial),
        1 => Just(Op::LocalPair),
        2 => (any::<usize>(), 4u8..=6).prop_map(|(c, s)| Op::State(c, s)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(c, n)| Op::CallerId(c, n)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(c, e)| Op::Exten(c, e)),
        1 => Just(Op::NewBridge),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(c, b)| Op::Enter(c, b)),
        1 => any::<usize>().prop_map(Op::Leave),
        1 => any::<usize>().prop_map(Op::Destroy),
        3 => any::<usize>().prop_map(Op::Hangup),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct Chan {
    name: String,
    linkedid: String,
    state: u8,
    caller: String,
    exten: String,
    priority: u32,
    bridge: Option<String>,
}

/// The model PBX: its truth, and the events it sends as the truth changes.
#[derive(Clone, Debug, Default)]
struct Pbx {
    channels: BTreeMap<String, Chan>,
    bridges: BTreeMap<String, Vec<String>>,
    serial: u32,
}

fn render(lines: &[(String, String)]) -> Message {
    let text: String = lines.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    Message::parse_one(text.as_bytes()).unwrap()
}

impl Pbx {
    fn snapshot(&self, prefix: &str, uid: &str) -> Vec<(String, String)> {
        let c = &self.channels[uid];
        [
            ("Channel", c.name.clone()),
            ("ChannelState", c.state.to_string()),
            ("CallerIDNum", c.caller.clone()),
            ("CallerIDName", "<unknown>".into()),
            ("ConnectedLineNum", "<unknown>".into()),
            ("ConnectedLineName", "<unknown>".into()),
            ("Language", "en".into()),
            ("AccountCode", String::new()),
            ("Context", "test".into()),
            ("Exten", c.exten.clone()),
            ("Priority", c.priority.to_string()),
            ("Uniqueid", uid.to_owned()),
            ("Linkedid", c.linkedid.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }

    fn bridge_headers(&self, id: &str) -> Vec<(String, String)> {
        let members = self.bridges.get(id).map_or(0, Vec::len);
        vec![
            ("BridgeUniqueid".into(), id.into()),
            ("BridgeType".into(), "basic".into()),
            ("BridgeTechnology".into(), "simple_bridge".into()),
            ("BridgeNumChannels".into(), members.to_string()),
        ]
    }

    fn channel_event(&self, event: &str, uid: &str, extra: &[(&str, String)]) -> Message {
        let mut lines = vec![("Event".to_owned(), event.to_owned())];
        lines.extend(self.snapshot("", uid));
        lines.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        render(&lines)
    }

    fn bridge_event(&self, event: &str, id: &str, uid: Option<&str>) -> Message {
        let mut lines = vec![("Event".to_owned(), event.to_owned())];
        lines.extend(self.bridge_headers(id));
        if let Some(uid) = uid {
            lines.extend(self.snapshot("", uid));
        }
        render(&lines)
    }

    fn pick(&self, i: usize) -> Option<String> {
        let n = self.channels.len();
        (n > 0).then(|| self.channels.keys().nth(i % n).unwrap().clone())
    }

    fn pick_bridge(&self, i: usize) -> Option<String> {
        let n = self.bridges.len();
        (n > 0).then(|| self.bridges.keys().nth(i % n).unwrap().clone())
    }

    fn born(&mut self, name: String, linkedid: Option<String>) -> String {
        self.serial += 1;
        let uid = format!("1796567608.{}", self.serial);
        let chan = Chan {
            name,
            linkedid: linkedid.unwrap_or_else(|| uid.clone()),
            state: 0,
            caller: "<unknown>".into(),
            exten: "s".into(),
            priority: 1,
            bridge: None,
        };
        self.channels.insert(uid.clone(), chan);
        uid
    }

    /// Sends an event: it goes out with the truth as it is once the event happened.
    fn emit(&self, out: &mut Vec<(Message, Pbx)>, event: Message) {
        out.push((event, self.clone()));
    }

    fn leave(&mut self, uid: &str, out: &mut Vec<(Message, Pbx)>) {
        if let Some(bridge) = self.channels.get_mut(uid).unwrap().bridge.take() {
            self.bridges.get_mut(&bridge).unwrap().retain(|m| m != uid);
            self.emit(out, self.bridge_event("BridgeLeave", &bridge, Some(uid)));
        }
    }

    /// Runs one operation, sending its events (none when it does not apply).
    fn run(&mut self, op: &Op, out: &mut Vec<(Message, Pbx)>) {
        match *op {
            Op::NewCall => {
                let name = format!("PJSIP/{}-{:08x}", 100 + self.serial, self.serial);
                let uid = self.born(name, None);
                self.emit(out, self.channel_event("Newchannel", &uid, &[]));
            }
            Op::Dial(i) => {
                if let Some(caller) = self.pick(i) {
                    let linkedid = self.channels[&caller].linkedid.clone();
                    let name = format!("PJSIP/{}-{:08x}", 200 + self.serial, self.serial);
                    let uid = self.born(name, Some(linkedid));
                    self.emit(out, self.channel_event("Newchannel", &uid, &[]));
                    let mut lines = vec![("Event".to_owned(), "DialBegin".to_owned())];
                    lines.extend(self.snapshot("", &caller));
                    lines.extend(self.snapshot("Dest", &uid));
                    self.emit(out, render(&lines));
                }
            }
            Op::LocalPair => {
                let base = format!("Local/600@test-{:08x}", self.serial);
                let one = self.born(format!("{base};1"), None);
                self.emit(out, self.channel_event("Newchannel", &one, &[]));
                let linkedid = self.channels[&one].linkedid.clone();
                let two = self.born(format!("{base};2"), Some(linkedid));
                self.emit(out, self.channel_event("Newchannel", &two, &[]));
                let mut lines = vec![("Event".to_owned(), "LocalBridge".to_owned())];
                lines.extend(self.snapshot("LocalOne", &one));
                lines.extend(self.snapshot("LocalTwo", &two));
                self.emit(out, render(&lines));
            }
            Op::State(i, state) => {
                if let Some(uid) = self.pick(i) {
                    self.channels.get_mut(&uid).unwrap().state = state;
                    self.emit(out, self.channel_event("Newstate", &uid, &[]));
                }
            }
            Op::CallerId(i, n) => {
                if let Some(uid) = self.pick(i) {
                    self.channels.get_mut(&uid).unwrap().caller = n.to_string();
                    self.emit(out, self.channel_event("NewCallerid", &uid, &[]));
                }
            }
            Op::Exten(i, e) => {
                if let Some(uid) = self.pick(i) {
                    let chan = self.channels.get_mut(&uid).unwrap();
                    chan.exten = e.to_string();
                    chan.priority += 1;
                    let event =
                        self.channel_event("Newexten", &uid, &[("Application", "Wait".into())]);
                    self.emit(out, event);
                }
            }
            Op::NewBridge => {
                self.serial += 1;
                let id = format!("bridge-{}", self.serial);
                self.bridges.insert(id.clone(), Vec::new());
                self.emit(out, self.bridge_event("BridgeCreate", &id, None));
            }
            Op::Enter(i, b) => {
                if let (Some(uid), Some(bridge)) = (self.pick(i), self.pick_bridge(b)) {
                    self.leave(&uid, out);
                    self.bridges.get_mut(&bridge).unwrap().push(uid.clone());
                    self.channels.get_mut(&uid).unwrap().bridge = Some(bridge.clone());
                    self.emit(out, self.bridge_event("BridgeEnter", &bridge, Some(&uid)));
                }
            }
            Op::Leave(i) => {
                if let Some(uid) = self.pick(i) {
                    self.leave(&uid, out);
                }
            }
            Op::Destroy(b) => {
                if let Some(bridge) = self.pick_bridge(b) {
                    for member in self.bridges[&bridge].clone() {
                        self.leave(&member, out);
                    }
                    let event = self.bridge_event("BridgeDestroy", &bridge, None);
                    self.bridges.remove(&bridge);
                    self.emit(out, event);
                }
            }
            Op::Hangup(i) => {
                if let Some(uid) = self.pick(i) {
                    self.leave(&uid, out);
                    let event = self.channel_event(
                        "Hangup",
                        &uid,
                        &[
                            ("Cause", "16".into()),
                            ("Cause-txt", "Normal Clearing".into()),
                        ],
                    );
                    self.channels.remove(&uid);
                    self.emit(out, event);
                }
            }
        }
    }

    /// The CoreShowChannels answer's items.
    fn core_show_channels(&self) -> Vec<Message> {
        self.channels
            .keys()
            .map(|uid| {
                let bridge = self.channels[uid].bridge.clone().unwrap_or_default();
                self.channel_event(
                    "CoreShowChannel",
                    uid,
                    &[("BridgeId", bridge), ("Duration", "00:00:01".into())],
                )
            })
            .collect()
    }

    /// The BridgeList answer's items.
    fn bridge_list(&self) -> Vec<Message> {
        self.bridges
            .keys()
            .map(|id| {
                let mut lines = vec![("Event".to_owned(), "BridgeListItem".to_owned())];
                lines.extend(self.bridge_headers(id));
                render(&lines)
            })
            .collect()
    }

    fn local_peer(&self, name: &str) -> Option<String> {
        let (base, half) = name.strip_prefix("Local/").and(name.rsplit_once(';'))?;
        let other = format!("{base};{}", if half == "1" { 2 } else { 1 });
        self.channels
            .iter()
            .find(|(_, c)| c.name == other)
            .map(|(uid, _)| uid.clone())
    }

    fn assert_view_equals(&self, view: &View) {
        let kept: BTreeSet<String> = view.channels().keys().map(|k| k.to_string()).collect();
        let truth: BTreeSet<String> = self.channels.keys().cloned().collect();
        assert_eq!(kept, truth, "channels");
        for (uid, truth) in &self.channels {
            let c = view.channel(uid).unwrap();
            let kept = Chan {
                name: c.name.to_string(),
                linkedid: c.linkedid.to_string(),
                state: c.state.0,
                caller: c.caller_id.number.to_string(),
                exten: c.exten.to_string(),
                priority: c.priority,
                bridge: c.bridge.as_deref().map(str::to_owned),
            };
            assert_eq!(&kept, truth, "{uid}");
            assert_eq!(
                c.local_peer.as_deref().map(str::to_owned),
                self.local_peer(&truth.name)
            );
        }
        let kept = id_sets(view.bridges().iter().map(|(id, b)| (id, &b.members)));
        let truth = id_sets(self.bridges.iter());
        assert_eq!(kept, truth, "bridges");
        let kept = id_sets(view.calls().iter().map(|(id, c)| (id, &c.channels)));
        let mut truth: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (uid, c) in &self.channels {
            truth
                .entry(c.linkedid.clone())
                .or_default()
                .insert(uid.clone());
        }
        assert_eq!(kept, truth, "calls");
    }
}

/// Entries and the ids they hold, as sets (list order is not part of what is compared).
fn id_sets<'a, K: ToString + 'a, V: ToString + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a Vec<V>)>,
) -> BTreeMap<String, BTreeSet<String>> {
    entries
        .map(|(id, ids)| (id.to_string(), ids.iter().map(V::to_string).collect()))
        .collect()
}

/// Where the connection drops and how the rebuild unfolds, as fractions of the event stream.
#[derive(Clone, Debug)]
struct Drop {
    at: usize,
    gap: usize,
    /// Events that reach the rebuild before the channel list, between the two lists.
    before_list: usize,
    between_lists: usize,
}

fn drop() -> impl Strategy<Value = Drop> {
    (any::<usize>(), 0usize..40, 0usize..6, 0usize..6).prop_map(
        |(at, gap, before_list, between_lists)| Drop {
            at,
            gap,
            before_list,
            between_lists,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn live_view_after_any_gap_and_rebuild_equals_the_pbx(
        ops in prop::collection::vec(op(), 1..120),
        drops in prop::collection::vec(drop(), 0..3),
    ) {
        // Each event with the PBX's truth right after it.
        let mut pbx = Pbx::default();
        let mut timeline: Vec<(Message, Pbx)> = Vec::new();
        for op in &ops {
            pbx.run(op, &mut timeline);
        }
        let truth_before = |i: usize| if i == 0 { Pbx::default() } else { timeline[i - 1].1.clone() };

        let now = SystemTime::UNIX_EPOCH;
        let mut state = LiveState::new(LiveConfig::default());
        let mut replica = Replica::default();
        let mut next = 0;
        let feed = |state: &mut LiveState, replica: &mut Replica, upto: usize, next: &mut usize| {
            while *next < upto.min(timeline.len()) {
                let changes = state.apply(&timeline[*next].0, now);
                replica.apply(&changes);
                if !state.is_rebuilding() {
                    replica.assert_equals(&state.view());
                    truth_before(*next + 1).assert_view_equals(&state.view());
                }
                *next += 1;
            }
        };
        let mut drops = drops;
        drops.sort_by_key(|d| d.at % (timeline.len() + 1));
        for d in &drops {
            let at = (d.at % (timeline.len() + 1)).max(next);
            feed(&mut state, &mut replica, at, &mut next);
            // The gap: these events never arrive.
            next = (at + d.gap).min(timeline.len());
            state.begin_rebuild();
            feed(&mut state, &mut replica, next + d.before_list, &mut next);
            state.rebuild_channels(&truth_before(next).core_show_channels(), now);
            feed(&mut state, &mut replica, next + d.between_lists, &mut next);
            state.rebuild_bridges(&truth_before(next).bridge_list());
            let changes = state.finish_rebuild();
            replica.apply(&changes);
            replica.assert_equals(&state.view());
            assert_consistent(&state.view());
            truth_before(next).assert_view_equals(&state.view());
        }
        feed(&mut state, &mut replica, timeline.len(), &mut next);
        pbx.assert_view_equals(&state.view());
        prop_assert_eq!(state.stats().orphan_events, 0);
    }
}
