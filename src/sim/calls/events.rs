//! The events calls raise, in the recorded header order: the channel snapshot every channel
//! event carries, dial and bridge events, DeviceStateChange and Cdr.
//!
//! A call's change and its event are one step: the functions that describe channels or bridges
//! take the call tables their caller has locked and changed, and emit while the lock is held,
//! so a list answer (taken under the same lock) never shows a change whose event has not been
//! queued before it.

use std::time::SystemTime;

use super::model::{Bridge, Calls, ChanId, Channel, UNKNOWN};
use crate::sim::core::Core;
use crate::sim::time::Stamp;
use crate::sim::wire::{Event, Out, class};

/// The channel snapshot headers every channel event carries, with an optional prefix
/// (`Dest`, `LocalOne`, `LocalTwo`).
pub(crate) fn snapshot(out: &mut Out, prefix: &str, c: &Channel) {
    let p = |k: &str| format!("{prefix}{k}");
    out.push(&p("Channel"), &c.name);
    out.push(&p("ChannelState"), &c.state.code().to_string());
    out.push(&p("ChannelStateDesc"), c.state.desc());
    out.push(&p("CallerIDNum"), &c.cid_num);
    out.push(&p("CallerIDName"), &c.cid_name);
    out.push(&p("ConnectedLineNum"), &c.conn_num);
    out.push(&p("ConnectedLineName"), &c.conn_name);
    out.push(&p("Language"), "en");
    out.push(&p("AccountCode"), "");
    out.push(&p("Context"), &c.context);
    out.push(&p("Exten"), &c.exten);
    out.push(&p("Priority"), &c.priority.to_string());
    out.push(&p("Uniqueid"), &c.uniqueid);
    out.push(&p("Linkedid"), &c.linkedid);
}

/// The bridge snapshot headers of bridge events, BridgeListItem and BridgeInfoComplete.
pub(crate) fn bridge_fields(b: &Bridge) -> [(&'static str, String); 7] {
    [
        ("BridgeUniqueid", b.uniqueid.clone()),
        ("BridgeType", "basic".into()),
        ("BridgeTechnology", "simple_bridge".into()),
        ("BridgeCreator", UNKNOWN.into()),
        ("BridgeName", UNKNOWN.into()),
        ("BridgeNumChannels", b.members.len().to_string()),
        ("BridgeVideoSourceMode", "none".into()),
    ]
}

/// Broadcasts an event about channel `id` (nothing if it is gone).
pub(crate) fn chan_event(
    core: &Core,
    calls: &Calls,
    name: &str,
    privilege: &str,
    id: ChanId,
    extra: &[(&str, &str)],
) {
    let Some(c) = calls.channels.get(&id) else {
        return;
    };
    let mut out = Out::event(name).h("Privilege", privilege);
    snapshot(&mut out, "", c);
    for (k, v) in extra {
        out.push(k, v);
    }
    core.emit(Event::new(name, class::privilege(privilege), out.finish()));
}

/// DialBegin/DialState/DialEnd: the caller's snapshot (if any), then the dialed one's.
pub(crate) fn dial_event(
    core: &Core,
    calls: &Calls,
    name: &str,
    caller: Option<ChanId>,
    dest: ChanId,
    extra: &[(&str, &str)],
) {
    let Some(d) = calls.channels.get(&dest) else {
        return;
    };
    let mut out = Out::event(name).h("Privilege", "call,all");
    if let Some(c) = caller.and_then(|c| calls.channels.get(&c)) {
        snapshot(&mut out, "", c);
    }
    snapshot(&mut out, "Dest", d);
    for (k, v) in extra {
        out.push(k, v);
    }
    core.emit(Event::new(name, class::CALL, out.finish()));
}

pub(crate) fn local_bridge_event(core: &Core, calls: &Calls, a: ChanId, b: ChanId) {
    let (Some(ca), Some(cb)) = (calls.channels.get(&a), calls.channels.get(&b)) else {
        return;
    };
    let mut out = Out::event("LocalBridge").h("Privilege", "call,all");
    snapshot(&mut out, "LocalOne", ca);
    snapshot(&mut out, "LocalTwo", cb);
    let event = out
        .h("Context", &cb.context)
        .h("Exten", &cb.exten)
        .h("LocalOptimization", "Yes")
        .finish();
    core.emit(Event::new("LocalBridge", class::CALL, event));
}

/// BridgeCreate/Enter/Leave/Destroy: the bridge, then the channel concerned (if any).
pub(crate) fn bridge_event(
    core: &Core,
    calls: &Calls,
    name: &str,
    bridge: &Bridge,
    chan: Option<ChanId>,
) {
    let mut out = Out::event(name).h("Privilege", "call,all");
    for (k, v) in bridge_fields(bridge) {
        out.push(k, &v);
    }
    if let Some(c) = chan.and_then(|c| calls.channels.get(&c)) {
        snapshot(&mut out, "", c);
    }
    core.emit(Event::new(name, class::CALL, out.finish()));
}

pub(crate) fn device_state(core: &Core, device: &str, state: &str) {
    core.emit(Event::build(
        "DeviceStateChange",
        "call,all",
        &[("Device", device), ("State", state)],
    ));
}

/// The Cdr of a channel that just hung up.
pub(crate) fn cdr(c: &Channel) -> Event {
    let end = SystemTime::now();
    let duration = end.duration_since(c.start).unwrap_or_default().as_secs();
    let billable = c
        .answered
        .and_then(|a| end.duration_since(a).ok())
        .map_or(0, |d| d.as_secs());
    let src = if c.cid_num == UNKNOWN { "" } else { &c.cid_num };
    let name = if c.cid_name == UNKNOWN {
        ""
    } else {
        &c.cid_name
    };
    Event::build(
        "Cdr",
        "cdr,all",
        &[
            ("AccountCode", ""),
            ("Source", src),
            ("Destination", &c.exten),
            ("DestinationContext", &c.context),
            ("CallerID", &format!("\"{name}\" <{src}>")),
            ("Channel", &c.name),
            ("DestinationChannel", ""),
            ("LastApplication", &c.app),
            ("LastData", &c.appdata),
            ("StartTime", &Stamp::of(c.start).cdr()),
            (
                "AnswerTime",
                &c.answered.map(|a| Stamp::of(a).cdr()).unwrap_or_default(),
            ),
            ("EndTime", &Stamp::of(end).cdr()),
            ("Duration", &duration.to_string()),
            ("BillableSeconds", &billable.to_string()),
            (
                "Disposition",
                if c.answered.is_some() {
                    "ANSWERED"
                } else {
                    "NO ANSWER"
                },
            ),
            ("AMAFlags", "DOCUMENTATION"),
            ("UniqueID", &c.uniqueid),
            ("UserField", ""),
        ],
    )
}
