//! The live state machine, event by event: what each event changes, what it reports, what it
//! does with events it cannot place, and the rebuild protocol.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod live_support;

use std::time::{Duration, SystemTime};

use amiwire::proto::Message;
use amiwire::proto::live::{
    BridgeFields, Change, Channel, ChannelFields, ChannelState, HangupCause, LiveConfig, LiveState,
};
use live_support::{Replica, assert_consistent};

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn msg(lines: &[(&str, &str)]) -> Message {
    let mut text = String::new();
    for (name, value) in lines {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    Message::parse_one(text.as_bytes()).unwrap()
}

/// A channel snapshot's headers, as Asterisk 22 writes them, behind `prefix`.
fn snapshot(
    prefix: &str,
    uniqueid: &str,
    name: &str,
    state: u8,
    exten: &str,
) -> Vec<(String, String)> {
    // Channels `N.x` share the call `N`.
    let linkedid = uniqueid.split('.').next().unwrap();
    [
        ("Channel", name.to_owned()),
        ("ChannelState", state.to_string()),
        (
            "ChannelStateDesc",
            ChannelState(state).description().to_owned(),
        ),
        ("CallerIDNum", "100".to_owned()),
        ("CallerIDName", "Alice".to_owned()),
        ("ConnectedLineNum", "<unknown>".to_owned()),
        ("ConnectedLineName", "<unknown>".to_owned()),
        ("Language", "en".to_owned()),
        ("AccountCode", String::new()),
        ("Context", "test".to_owned()),
        ("Exten", exten.to_owned()),
        ("Priority", "1".to_owned()),
        ("Uniqueid", uniqueid.to_owned()),
        ("Linkedid", linkedid.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{prefix}{k}"), v))
    .collect()
}

/// An event with one bare channel snapshot, plus `extra` headers.
fn chan_event(event: &str, uniqueid: &str, state: u8, extra: &[(&str, &str)]) -> Message {
    let name = format!("PJSIP/{uniqueid}");
    let mut lines = vec![("Event".to_owned(), event.to_owned())];
    lines.extend(snapshot("", uniqueid, &name, state, "100"));
    lines.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
    msg(&borrowed)
}

fn bridge_headers(prefix: &str, id: &str, members: usize) -> Vec<(String, String)> {
    [
        ("Uniqueid", id.to_owned()),
        ("Type", "basic".to_owned()),
        ("Technology", "simple_bridge".to_owned()),
        ("Creator", "<unknown>".to_owned()),
        ("Name", "<unknown>".to_owned()),
        ("NumChannels", members.to_string()),
        ("VideoSourceMode", "none".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{prefix}Bridge{k}"), v))
    .collect()
}

fn bridge_event(event: &str, id: &str, channel: Option<(&str, u8)>) -> Message {
    let mut lines = vec![("Event".to_owned(), event.to_owned())];
    lines.extend(bridge_headers("", id, 0));
    if let Some((uniqueid, state)) = channel {
        lines.extend(snapshot(
            "",
            uniqueid,
            &format!("PJSIP/{uniqueid}"),
            state,
            "100",
        ));
    }
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
    msg(&borrowed)
}

/// Applies and keeps the replica in step, checking it against the view after every event.
struct Fed {
    state: LiveState,
    replica: Replica,
}

impl Fed {
    fn new(config: LiveConfig) -> Fed {
        Fed {
            state: LiveState::new(config),
            replica: Replica::default(),
        }
    }

    fn feed(&mut self, msg: &Message) -> Vec<Change> {
        let changes = self.state.apply(msg, T0);
        self.replica.apply(&changes);
        if !self.state.is_rebuilding() {
            self.replica.assert_equals(&self.state.view());
            assert_consistent(&self.state.view());
        }
        changes
    }

    fn channel(&self, uniqueid: &str) -> Channel {
        (**self.state.view().channel(uniqueid).unwrap()).clone()
    }
}

fn fields_of(changes: &[Change]) -> Vec<ChannelFields> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::ChannelChanged { fields, .. } => Some(*fields),
            _ => None,
        })
        .collect()
}

#[test]
fn a_channel_is_born_changes_and_hangs_up_with_its_cause() {
    let mut fed = Fed::new(LiveConfig::default());
    let born = fed.feed(&chan_event("Newchannel", "1.1", 4, &[]));
    assert!(
        matches!(&born[..], [Change::ChannelAdded(c), Change::CallAdded(call)]
        if &*c.uniqueid == "1.1" && call.channels == ["1.1"])
    );
    assert_eq!(fed.channel("1.1").created_at, T0);

    let up = fed.feed(&chan_event("Newstate", "1.1", 6, &[]));
    assert_eq!(fields_of(&up), vec![ChannelFields::STATE]);
    assert_eq!(fed.channel("1.1").state, ChannelState::UP);

    // The same snapshot again changes nothing and reports nothing.
    assert!(fed.feed(&chan_event("Newstate", "1.1", 6, &[])).is_empty());
    let version = fed.state.view().version();

    let gone = fed.feed(&chan_event(
        "Hangup",
        "1.1",
        6,
        &[("Cause", "16"), ("Cause-txt", "Normal Clearing")],
    ));
    let cause = HangupCause {
        code: 16,
        text: "Normal Clearing".into(),
    };
    assert!(
        matches!(&gone[..], [Change::ChannelRemoved { cause: Some(c), .. }, Change::CallRemoved(_)] if *c == cause)
    );
    assert!(fed.state.view().is_empty());
    assert_eq!(fed.state.view().version(), version + 1);
    assert_eq!(fed.state.stats().orphan_events, 0);
}

#[test]
fn event_names_match_whatever_their_case() {
    let mut fed = Fed::new(LiveConfig::default());
    fed.feed(&chan_event("NEWCHANNEL", "1.1", 4, &[]));
    let mut lines = vec![("Event".to_owned(), "NewExten".to_owned())];
    lines.extend(snapshot("", "1.1", "PJSIP/1.1", 4, "200"));
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(
        fields_of(&fed.feed(&msg(&borrowed))),
        vec![ChannelFields::DIALPLAN]
    );
    assert_eq!(&*fed.channel("1.1").exten, "200");
}

#[test]
fn events_about_unknown_channels_are_counted_and_skipped() {
    let mut fed = Fed::new(LiveConfig::default());
    assert!(fed.feed(&chan_event("Newstate", "9.9", 6, &[])).is_empty());
    assert!(
        fed.feed(&chan_event("Hangup", "9.9", 6, &[("Cause", "16")]))
            .is_empty()
    );
    assert!(
        fed.feed(&bridge_event("BridgeEnter", "b-1", Some(("9.9", 6))))
            .len()
            == 1
    );
    assert!(
        fed.feed(&bridge_event("BridgeDestroy", "b-2", None))
            .is_empty()
    );
    // A snapshot without a Uniqueid cannot be placed either.
    assert!(
        fed.feed(&msg(&[("Event", "Newstate"), ("Channel", "PJSIP/x")]))
            .is_empty()
    );
    assert_eq!(fed.state.stats().orphan_events, 5);
    // The bridge the PBX announced exists, but the unknown channel was not invented.
    let view = fed.state.view();
    assert!(view.channels().is_empty());
    assert!(view.bridge("b-1").unwrap().members.is_empty());
    // Events the live state does not read are not counted at all.
    fed.feed(&msg(&[
        ("Event", "Cdr"),
        ("Channel", "PJSIP/x"),
        ("UniqueID", "9.9"),
    ]));
    assert_eq!(fed.state.stats().orphan_events, 5);
}

#[test]
fn a_view_taken_before_an_event_never_changes() {
    let mut fed = Fed::new(LiveConfig::default());
    fed.feed(&chan_event("Newchannel", "1.1", 4, &[]));
    let before = fed.state.view();
    fed.feed(&chan_event("Newstate", "1.1", 6, &[]));
    fed.feed(&chan_event("Newchannel", "2.1", 4, &[]));
    assert_eq!(before.channel("1.1").unwrap().state, ChannelState::RING);
    assert_eq!(before.channels().len(), 1);
    let after = fed.state.view();
    assert_eq!(after.channel("1.1").unwrap().state, ChannelState::UP);
    assert_eq!(after.channels().len(), 2);
    assert!(after.version() > before.version());
}

#[test]
fn bridges_follow_enter_leave_merge_and_destroy() {
    let mut fed = Fed::new(LiveConfig::default());
    for id in ["1.1", "1.2", "3.1"] {
        fed.feed(&chan_event("Newchannel", id, 6, &[]));
    }
    fed.feed(&bridge_event("BridgeCreate", "A", None));
    fed.feed(&bridge_event("BridgeCreate", "B", None));
    let entered = fed.feed(&bridge_event("BridgeEnter", "A", Some(("1.1", 6))));
    assert!(entered.iter().any(|c| matches!(c,
        Change::BridgeChanged { fields, .. } if *fields == BridgeFields::MEMBERS)));
    assert_eq!(fields_of(&entered), vec![ChannelFields::BRIDGE]);
    fed.feed(&bridge_event("BridgeEnter", "A", Some(("1.2", 6))));
    fed.feed(&bridge_event("BridgeEnter", "B", Some(("3.1", 6))));
    assert_eq!(
        fed.state.view().bridge("A").unwrap().members,
        ["1.1", "1.2"]
    );

    let mut merge = vec![("Event".to_owned(), "BridgeMerge".to_owned())];
    merge.extend(bridge_headers("To", "A", 3));
    merge.extend(bridge_headers("From", "B", 0));
    let borrowed: Vec<(&str, &str)> = merge.iter().map(|(k, v)| (&**k, &**v)).collect();
    fed.feed(&msg(&borrowed));
    let view = fed.state.view();
    assert_eq!(view.bridge("A").unwrap().members.len(), 3);
    assert!(view.bridge("B").unwrap().members.is_empty());
    assert_eq!(view.channel("3.1").unwrap().bridge.as_deref(), Some("A"));

    fed.feed(&bridge_event("BridgeDestroy", "B", None));
    fed.feed(&bridge_event("BridgeLeave", "A", Some(("1.1", 6))));
    assert_eq!(fed.channel("1.1").bridge, None);
    // Destroying a bridge with members left takes them out of it.
    let destroyed = fed.feed(&bridge_event("BridgeDestroy", "A", None));
    assert!(matches!(destroyed.last(), Some(Change::BridgeRemoved(b)) if &*b.id == "A"));
    assert_eq!(fed.channel("1.2").bridge, None);
    assert_eq!(fed.channel("3.1").bridge, None);
    assert!(fed.state.view().bridges().is_empty());
}

#[test]
fn local_halves_are_paired_by_name_and_unpaired() {
    let mut fed = Fed::new(LiveConfig::default());
    let one = "Local/600@test-00000001;1";
    let two = "Local/600@test-00000001;2";
    let event = |event: &str, id: &str, name: &str, state: u8| {
        let mut lines = vec![("Event".to_owned(), event.to_owned())];
        lines.extend(snapshot("", id, name, state, "600"));
        let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
        msg(&borrowed)
    };
    fed.feed(&event("Newchannel", "1.1", one, 0));
    assert_eq!(fed.channel("1.1").local_peer, None);
    // The second half's birth pairs both: it is added paired, the first one changes.
    let born = fed.feed(&event("Newchannel", "1.2", two, 4));
    assert!(matches!(&born[0], Change::ChannelAdded(c) if c.local_peer.as_deref() == Some("1.1")));
    assert_eq!(fields_of(&born), vec![ChannelFields::LOCAL_PEER]);

    // LocalBridge repeats what the births said: it is not read (a Newstate brings the state).
    let mut lines = vec![("Event".to_owned(), "LocalBridge".to_owned())];
    lines.extend(snapshot("LocalOne", "1.1", one, 0, "600"));
    lines.extend(snapshot("LocalTwo", "1.2", two, 6, "600"));
    lines.push(("LocalOptimization".to_owned(), "Yes".to_owned()));
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert!(fed.feed(&msg(&borrowed)).is_empty());
    assert_eq!(fed.state.stats().events, 2);

    // A half renamed out of the pattern is no longer paired, nor is its former peer.
    let renamed = fed.feed(&event("Newstate", "1.2", "PJSIP/elsewhere", 4));
    assert_eq!(
        fields_of(&renamed),
        vec![
            ChannelFields::NAME | ChannelFields::LOCAL_PEER,
            ChannelFields::LOCAL_PEER
        ]
    );
    fed.feed(&event("Newstate", "1.2", two, 6));
    assert_eq!(fed.channel("1.1").local_peer.as_deref(), Some("1.2"));
    fed.feed(&event("Hangup", "1.1", one, 6));
    assert_eq!(fed.channel("1.2").local_peer, None);
    fed.feed(&event("Hangup", "1.2", two, 6));
    assert!(fed.state.view().is_empty());
}

#[test]
fn rename_and_linkedid_moves() {
    let mut fed = Fed::new(LiveConfig::default());
    fed.feed(&chan_event("Newchannel", "1.1", 6, &[]));
    fed.feed(&chan_event("Newchannel", "2.1", 6, &[]));
    let renamed = fed.feed(&msg(&[
        ("Event", "Rename"),
        ("Channel", "PJSIP/1.1"),
        ("Newname", "PJSIP/1.1<ZOMBIE>"),
        ("Uniqueid", "1.1"),
    ]));
    assert_eq!(fields_of(&renamed), vec![ChannelFields::NAME]);
    assert_eq!(&*fed.channel("1.1").name, "PJSIP/1.1<ZOMBIE>");

    // A snapshot with another Linkedid moves the channel to that call.
    let moved = fed.feed(&chan_event("Newstate", "2.1", 6, &[("Linkedid", "1")]));
    assert!(
        fields_of(&moved).is_empty(),
        "the first Linkedid header wins"
    );
    let mut lines = vec![("Event".to_owned(), "Newstate".to_owned())];
    lines.extend(snapshot("", "2.1", "PJSIP/2.1", 6, "100"));
    lines.retain(|(k, _)| k != "Linkedid");
    lines.push(("Linkedid".to_owned(), "1".to_owned()));
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
    let moved = fed.feed(&msg(&borrowed));
    assert_eq!(fields_of(&moved), vec![ChannelFields::LINKEDID]);
    assert!(
        moved
            .iter()
            .any(|c| matches!(c, Change::CallRemoved(call) if &*call.linkedid == "2"))
    );
    let view = fed.state.view();
    assert_eq!(view.call("1").unwrap().channels, ["1.1", "2.1"]);
}

#[test]
fn variables_are_kept_only_when_opted_in() {
    let set = |value: &str| {
        chan_event(
            "VarSet",
            "1.1",
            6,
            &[("Variable", "DIALSTATUS"), ("Value", value)],
        )
    };
    let mut plain = Fed::new(LiveConfig::default());
    plain.feed(&chan_event("Newchannel", "1.1", 6, &[]));
    assert!(plain.feed(&set("ANSWER")).is_empty());
    assert!(plain.channel("1.1").variables.is_empty());

    let mut kept = Fed::new(LiveConfig { variables: true });
    kept.feed(&chan_event(
        "Newchannel",
        "1.1",
        6,
        &[("ChanVariable", "ACCOUNT=42")],
    ));
    assert_eq!(
        fields_of(&kept.feed(&set("ANSWER"))),
        vec![ChannelFields::VARIABLES]
    );
    assert_eq!(
        kept.channel("1.1").variables,
        vec![
            ("ACCOUNT".into(), "42".into()),
            ("DIALSTATUS".into(), "ANSWER".into())
        ]
    );
    assert!(kept.feed(&set("ANSWER")).is_empty());
    // An empty value is Asterisk's way of saying the variable is gone.
    kept.feed(&set(""));
    assert_eq!(kept.channel("1.1").variables.len(), 1);
}

#[test]
fn a_live_channel_costs_under_2_kb() {
    // Eleven 24-byte strings that hold up to 24 bytes inline, two optional ones, the rest.
    assert!(
        std::mem::size_of::<Channel>() <= 384,
        "{}",
        std::mem::size_of::<Channel>()
    );
    // Long but plausible values: a PJSIP name with a long endpoint, full caller ID both ways.
    let long = "x".repeat(60);
    let mut lines = vec![("Event".to_owned(), "Newchannel".to_owned())];
    lines.extend(snapshot(
        "",
        "1796567608.14433",
        &format!("PJSIP/{long}-0000a1b2"),
        6,
        &long,
    ));
    for (k, v) in &mut lines {
        if k.contains("CallerID")
            || k.contains("ConnectedLine")
            || k == "Context"
            || k == "AccountCode"
        {
            *v = long.clone();
        }
    }
    let borrowed: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (&**k, &**v)).collect();
    let mut state = LiveState::new(LiveConfig::default());
    state.apply(&msg(&borrowed), T0);
    let channel = state.view().channel("1796567608.14433").unwrap().clone();
    assert!(channel.memory_size() <= 1024, "{}", channel.memory_size());
    assert!(channel.memory_size() > std::mem::size_of::<Channel>() + 8 * 60);
}

/// Items of a CoreShowChannels answer.
fn listed(uniqueid: &str, state: u8, bridge: &str, duration: &str) -> Message {
    chan_event(
        "CoreShowChannel",
        uniqueid,
        state,
        &[
            ("ActionID", "csc"),
            ("BridgeId", bridge),
            ("Duration", duration),
        ],
    )
}

#[test]
fn a_rebuild_reports_the_gap_as_one_change_set() {
    let mut fed = Fed::new(LiveConfig::default());
    for id in ["1.1", "2.1", "3.1"] {
        fed.feed(&chan_event("Newchannel", id, 4, &[]));
    }
    fed.feed(&bridge_event("BridgeCreate", "A", None));
    fed.feed(&bridge_event("BridgeEnter", "A", Some(("1.1", 4))));

    let now = T0 + Duration::from_secs(100);
    fed.state.begin_rebuild();
    assert!(fed.state.is_rebuilding());
    // Events before the list: applied, not reported; unknown channels are the list's business.
    assert!(fed.feed(&chan_event("Newstate", "2.1", 6, &[])).is_empty());
    assert!(fed.feed(&chan_event("Newstate", "8.1", 6, &[])).is_empty());
    assert_eq!(fed.state.stats().rebuild_skipped, 1);
    fed.state.rebuild_channels(
        &[
            listed("2.1", 6, "", "00:01:40"),
            listed("4.1", 6, "C", "00:00:05"),
        ],
        now,
    );
    // 1.1 and 3.1 went in the gap; 1.1's Hangup arrives late: a cause, not an orphan.
    fed.feed(&chan_event(
        "Hangup",
        "1.1",
        6,
        &[("Cause", "17"), ("Cause-txt", "User busy")],
    ));
    fed.state.rebuild_bridges(&[msg(&[
        ("Event", "BridgeListItem"),
        ("BridgeUniqueid", "C"),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "native_rtp"),
    ])]);
    let changes = fed.state.finish_rebuild();
    fed.replica.apply(&changes);
    fed.replica.assert_equals(&fed.state.view());
    assert_consistent(&fed.state.view());
    assert!(!fed.state.is_rebuilding());
    assert_eq!(fed.state.stats().orphan_events, 0);

    let removed: Vec<(String, Option<u16>)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::ChannelRemoved { channel, cause } => {
                Some((channel.uniqueid.to_string(), cause.as_ref().map(|c| c.code)))
            }
            _ => None,
        })
        .collect();
    let mut removed = removed;
    removed.sort();
    assert_eq!(
        removed,
        vec![("1.1".into(), Some(17)), ("3.1".into(), None)]
    );
    assert_eq!(fields_of(&changes), vec![ChannelFields::STATE]);
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::BridgeRemoved(b) if &*b.id == "A"))
    );
    let view = fed.state.view();
    let added = view.channel("4.1").unwrap();
    assert_eq!(added.created_at, now - Duration::from_secs(5));
    assert_eq!(added.bridge.as_deref(), Some("C"));
    assert_eq!(&*view.bridge("C").unwrap().technology, "native_rtp");
    assert_eq!(view.channels().len(), 2);

    // Nothing to finish twice; a rebuild with no difference reports nothing.
    assert!(fed.state.finish_rebuild().is_empty());
    fed.state.begin_rebuild();
    fed.state.begin_rebuild();
    fed.state.rebuild_channels(
        &[
            listed("2.1", 6, "", "00:01:41"),
            listed("4.1", 6, "C", "00:00:06"),
        ],
        now,
    );
    assert!(fed.state.finish_rebuild().is_empty());
    assert_eq!(fed.state.stats().rebuilds, 3);
}

#[test]
fn bridge_info_sets_the_members_in_the_pbx_order() {
    let mut fed = Fed::new(LiveConfig::default());
    for id in ["1.1", "2.1"] {
        fed.feed(&chan_event("Newchannel", id, 6, &[]));
    }
    fed.feed(&bridge_event("BridgeEnter", "A", Some(("1.1", 6))));
    fed.state.begin_rebuild();
    let mut complete = vec![("Event".to_owned(), "BridgeInfoComplete".to_owned())];
    complete.extend(bridge_headers("", "A", 1));
    let borrowed: Vec<(&str, &str)> = complete.iter().map(|(k, v)| (&**k, &**v)).collect();
    fed.state.rebuild_bridge_members(&[
        chan_event("BridgeInfoChannel", "2.1", 6, &[]),
        msg(&borrowed),
    ]);
    let changes = fed.state.finish_rebuild();
    fed.replica.apply(&changes);
    fed.replica.assert_equals(&fed.state.view());
    assert_consistent(&fed.state.view());
    assert_eq!(fed.state.view().bridge("A").unwrap().members, ["2.1"]);
    assert_eq!(fed.channel("1.1").bridge, None);
}

#[test]
fn status_items_rebuild_like_core_show_channels() {
    let now = T0 + Duration::from_secs(60);
    let mut fed = Fed::new(LiveConfig::default());
    fed.state.begin_rebuild();
    // Status spells the bridge `BridgeID` and counts `Seconds`.
    let status = chan_event(
        "Status",
        "5.1",
        6,
        &[("ActionID", "st"), ("BridgeID", "B"), ("Seconds", "42")],
    );
    fed.state.rebuild_channels(&[status], now);
    let changes = fed.state.finish_rebuild();
    fed.replica.apply(&changes);
    fed.replica.assert_equals(&fed.state.view());
    assert_consistent(&fed.state.view());
    let channel = fed.channel("5.1");
    assert_eq!(channel.created_at, now - Duration::from_secs(42));
    assert_eq!(channel.bridge.as_deref(), Some("B"));
    assert_eq!(channel.state, ChannelState::UP);
}
