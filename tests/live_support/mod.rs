//! Shared by the live_* test crates: timed fixture replay, a replica kept only from change sets,
//! and the comparison of the live view with the PBX's own list answers.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use amiwire::proto::live::{Bridge, Call, Change, Channel, View};
use amiwire::proto::{Decoder, Message};
use base64::Engine as _;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");

/// Every message received on the first connection of a `.jsonl` recording, with the time (seconds
/// since the recording started) of the chunk that completed it.
pub fn timed_messages(rel: &str) -> Vec<(f64, Message)> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(rel)).unwrap();
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        if rec["dir"] != "recv" || rec["conn"].as_u64().unwrap_or(0) > 1 {
            continue;
        }
        let data = match (rec["data"].as_str(), rec["data_b64"].as_str()) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            (None, None) => continue,
        };
        decoder.feed(&data);
        let t = rec["t"].as_f64().unwrap();
        while let Some(msg) = decoder.next_message() {
            out.push((t, msg.unwrap()));
        }
    }
    out
}

/// The moment of a recording's time `t`.
pub fn at(t: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_567_608) + Duration::from_secs_f64(t)
}

/// A copy of the view kept only from change sets: it must always equal the view, which proves
/// that the changes say everything that happened and nothing else.
#[derive(Default, Debug)]
pub struct Replica {
    pub channels: HashMap<String, Arc<Channel>>,
    pub bridges: HashMap<String, Arc<Bridge>>,
    pub calls: HashMap<String, Arc<Call>>,
    pub removed_with_cause: usize,
    pub removed_without_cause: usize,
}

impl Replica {
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::ChannelAdded(c) => {
                    let old = self.channels.insert(c.uniqueid.to_string(), c.clone());
                    assert!(old.is_none(), "added twice: {c:?}");
                }
                Change::ChannelChanged { channel, fields } => {
                    let old = self
                        .channels
                        .insert(channel.uniqueid.to_string(), channel.clone())
                        .unwrap_or_else(|| panic!("changed before added: {channel:?}"));
                    assert_eq!(
                        old.fields_changed(channel),
                        *fields,
                        "{old:?} -> {channel:?}"
                    );
                    assert!(!fields.is_empty());
                }
                Change::ChannelRemoved { channel, cause } => {
                    assert!(self.channels.remove(&*channel.uniqueid).is_some());
                    match cause {
                        Some(_) => self.removed_with_cause += 1,
                        None => self.removed_without_cause += 1,
                    }
                }
                Change::BridgeAdded(b) => {
                    assert!(self.bridges.insert(b.id.to_string(), b.clone()).is_none());
                }
                Change::BridgeChanged { bridge, fields } => {
                    let old = self
                        .bridges
                        .insert(bridge.id.to_string(), bridge.clone())
                        .unwrap();
                    assert_eq!(old.fields_changed(bridge), *fields);
                    assert!(!fields.is_empty());
                }
                Change::BridgeRemoved(b) => assert!(self.bridges.remove(&*b.id).is_some()),
                Change::CallAdded(c) => {
                    assert!(
                        self.calls
                            .insert(c.linkedid.to_string(), c.clone())
                            .is_none()
                    );
                }
                Change::CallChanged(c) => {
                    let old = self
                        .calls
                        .insert(c.linkedid.to_string(), c.clone())
                        .unwrap();
                    assert_ne!(old.channels, c.channels);
                }
                Change::CallRemoved(c) => assert!(self.calls.remove(&*c.linkedid).is_some()),
            }
        }
    }

    pub fn assert_equals(&self, view: &View) {
        assert_eq!(self.channels.len(), view.channels().len(), "channel count");
        for (id, channel) in view.channels() {
            assert_eq!(self.channels.get(&**id).map(|c| &**c), Some(&**channel));
        }
        assert_eq!(self.bridges.len(), view.bridges().len(), "bridge count");
        for (id, bridge) in view.bridges() {
            assert_eq!(self.bridges.get(&**id).map(|b| &**b), Some(&**bridge));
        }
        assert_eq!(self.calls.len(), view.calls().len(), "call count");
        for (id, call) in view.calls() {
            assert_eq!(self.calls.get(&**id).map(|c| &**c), Some(&**call));
        }
    }
}

/// The view's own invariants: a channel's bridge lists it as a member and the other way round,
/// every channel is in its Linkedid's call, Local peers point at each other.
pub fn assert_consistent(view: &View) {
    for (id, channel) in view.channels() {
        if let Some(bridge) = &channel.bridge {
            let members = &view.bridge(bridge).expect("its bridge").members;
            assert!(members.contains(id), "{id} missing from {bridge}");
        }
        let call = view.call(&channel.linkedid).expect("its call");
        assert!(call.channels.contains(id));
        if let Some(peer) = &channel.local_peer {
            let peer = view.channel(peer).expect("its Local peer");
            assert_eq!(peer.local_peer.as_deref(), Some(&**id));
        }
    }
    for (id, bridge) in view.bridges() {
        let unique: HashSet<_> = bridge.members.iter().collect();
        assert_eq!(
            unique.len(),
            bridge.members.len(),
            "repeated member in {id}"
        );
        for member in &bridge.members {
            let channel = view.channel(member).expect("a member is live");
            assert_eq!(channel.bridge.as_deref(), Some(&**id));
        }
    }
    for (id, call) in view.calls() {
        assert!(!call.channels.is_empty(), "empty call {id}");
        for member in &call.channels {
            assert_eq!(&*view.channel(member).expect("live").linkedid, &**id);
        }
    }
}

fn header(item: &Message, name: &str) -> String {
    item.get(name)
        .unwrap_or_else(|| panic!("{name} in {item:?}"))
        .into_owned()
}

/// `HH:MM:SS` (CoreShowChannel) or `Seconds` (Status), in seconds.
fn listed_age(item: &Message) -> u64 {
    match item.get("Duration") {
        Some(hms) => hms
            .split(':')
            .fold(0, |total, part| total * 60 + part.parse::<u64>().unwrap()),
        None => header(item, "Seconds").parse().unwrap(),
    }
}

/// Compares one listed channel (`CoreShowChannel`, `Status`, `BridgeInfoChannel`) with the view,
/// field by field: every header the item carries that the model keeps. Returns how many were
/// compared.
pub fn assert_channel_listed(item: &Message, channel: &Channel, now: SystemTime) -> usize {
    let mut compared = 0;
    let mut check = |name: &str, kept: &str| {
        if let Some(listed) = item.get(name) {
            assert_eq!(kept, listed, "{name} of {}", channel.name);
            compared += 1;
        }
    };
    check("Channel", &channel.name);
    check("Uniqueid", &channel.uniqueid);
    check("Linkedid", &channel.linkedid);
    check("ChannelState", &channel.state.0.to_string());
    check("ChannelStateDesc", channel.state.description());
    check("CallerIDNum", &channel.caller_id.number);
    check("CallerIDName", &channel.caller_id.name);
    check("ConnectedLineNum", &channel.connected_line.number);
    check("ConnectedLineName", &channel.connected_line.name);
    check("Language", &channel.language);
    check("AccountCode", &channel.account_code);
    check("Context", &channel.context);
    check("Exten", &channel.exten);
    check("Priority", &channel.priority.to_string());
    // `BridgeId` in CoreShowChannel, `BridgeID` in Status: one case-insensitive name.
    check("BridgeId", channel.bridge.as_deref().unwrap_or_default());
    if item.get("Duration").is_some() || item.get("Seconds").is_some() {
        // The PBX counts whole seconds from its own clock; ours was stamped on arrival.
        let kept = now
            .duration_since(channel.created_at)
            .unwrap()
            .as_secs_f64();
        let listed = listed_age(item) as f64;
        assert!(
            (kept - listed).abs() < 1.5,
            "age of {}: {kept} s kept, {listed} s listed",
            channel.name
        );
        compared += 1;
    }
    compared
}

/// The Local peer a channel list implies: the listed channel with the same name and the other
/// half (`;1` ↔ `;2`). `by_name` maps the listed names to their Uniqueids.
pub fn listed_local_peer(by_name: &HashMap<String, String>, name: &str) -> Option<String> {
    let (base, half) = name.strip_prefix("Local/").and(name.rsplit_once(';'))?;
    let other = match half {
        "1" => format!("{base};2"),
        "2" => format!("{base};1"),
        _ => return None,
    };
    by_name.get(&other).cloned()
}

/// The view equals a complete channel list (`CoreShowChannel` or `Status` items).
pub fn assert_channels_equal_list(view: &View, items: &[&Message], now: SystemTime) {
    let listed: HashSet<String> = items.iter().map(|i| header(i, "Uniqueid")).collect();
    let kept: HashSet<String> = view.channels().keys().map(|k| k.to_string()).collect();
    assert_eq!(kept, listed, "channels kept vs listed");
    let by_name: HashMap<String, String> = items
        .iter()
        .map(|i| (header(i, "Channel"), header(i, "Uniqueid")))
        .collect();
    for item in items {
        let channel = view.channel(&header(item, "Uniqueid")).unwrap();
        assert!(assert_channel_listed(item, channel, now) >= 14);
        let peer = listed_local_peer(&by_name, &channel.name);
        assert_eq!(
            channel.local_peer.as_deref(),
            peer.as_deref(),
            "{}",
            channel.name
        );
    }
}

/// Compares a bridge with a `BridgeListItem` or `BridgeInfoComplete`.
pub fn assert_bridge_listed(item: &Message, bridge: &Bridge) {
    assert_eq!(header(item, "BridgeUniqueid"), &*bridge.id);
    assert_eq!(header(item, "BridgeType"), &*bridge.kind);
    assert_eq!(header(item, "BridgeTechnology"), &*bridge.technology);
    assert_eq!(header(item, "BridgeCreator"), &*bridge.creator);
    assert_eq!(header(item, "BridgeName"), &*bridge.name);
    assert_eq!(
        header(item, "BridgeVideoSourceMode"),
        &*bridge.video_source_mode
    );
    assert_eq!(
        header(item, "BridgeNumChannels"),
        bridge.members.len().to_string()
    );
}

/// The view equals a complete `BridgeList` answer.
pub fn assert_bridges_equal_list(view: &View, items: &[&Message]) {
    let listed: HashSet<String> = items.iter().map(|i| header(i, "BridgeUniqueid")).collect();
    let kept: HashSet<String> = view.bridges().keys().map(|k| k.to_string()).collect();
    assert_eq!(kept, listed, "bridges kept vs listed");
    for item in items {
        assert_bridge_listed(item, view.bridge(&header(item, "BridgeUniqueid")).unwrap());
    }
}

/// The view equals one bridge's `BridgeInfo` answer: its fields, its members, their fields.
pub fn assert_bridge_equals_info(
    view: &View,
    members: &[&Message],
    complete: &Message,
    now: SystemTime,
) {
    let bridge = view.bridge(&header(complete, "BridgeUniqueid")).unwrap();
    assert_bridge_listed(complete, bridge);
    let listed: HashSet<String> = members.iter().map(|i| header(i, "Uniqueid")).collect();
    let kept: HashSet<String> = bridge.members.iter().map(|m| m.to_string()).collect();
    assert_eq!(kept, listed, "members of {}", bridge.id);
    for item in members {
        let channel = view.channel(&header(item, "Uniqueid")).unwrap();
        assert!(assert_channel_listed(item, channel, now) >= 13);
        assert_eq!(channel.bridge.as_deref(), Some(&*bridge.id));
    }
}
