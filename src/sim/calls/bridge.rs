//! Basic two-party bridges, as Dial makes them: create, enter, leave, destroy.

use super::channel::clear_exten;
use super::events::bridge_event;
use super::model::{Bridge, BridgeId, Calls, ChanId, Ctl};
use crate::sim::core::{Core, lock};

/// Dial's bridge: a new basic bridge (BridgeCreate) that the dialed `;1` half enters first,
/// without its extension, then the caller (a BridgeEnter each), as recorded.
pub(crate) fn bridge_dial(core: &Core, dialed: ChanId, caller: ChanId) {
    let mut calls = lock(&core.calls);
    let bid = calls.new_id();
    let created = Bridge {
        uniqueid: uuid(),
        members: Vec::new(),
    };
    bridge_event(core, &calls, "BridgeCreate", &created, None);
    calls.bridges.insert(bid, created);
    clear_exten(core, &mut calls, dialed);
    for id in [dialed, caller] {
        if let Some(c) = calls.channels.get_mut(&id) {
            c.bridge = Some(bid);
        }
        let entered = calls.bridges.get_mut(&bid).map(|b| {
            b.members.push(id);
            b.clone()
        });
        if let Some(b) = entered {
            bridge_event(core, &calls, "BridgeEnter", &b, Some(id));
        }
    }
}

/// Takes a channel out of its bridge (if any). The last one out destroys the bridge; the one
/// left alone is told the bridge ended.
pub(crate) fn leave_bridge(core: &Core, id: ChanId) {
    let mut calls = lock(&core.calls);
    let Some(left) = remove_member(&mut calls, id) else {
        return;
    };
    bridge_event(core, &calls, "BridgeLeave", &left, Some(id));
    match left.members.as_slice() {
        [] => bridge_event(core, &calls, "BridgeDestroy", &left, None),
        [other] => {
            if let Some(c) = calls.channels.get(other) {
                let _ = c.ctl.send(Ctl::BridgeEnded);
            }
        }
        _ => {}
    }
}

/// The bridge as it is after `id` left it (removed from the table once empty).
fn remove_member(calls: &mut Calls, id: ChanId) -> Option<Bridge> {
    let bid: BridgeId = calls.channels.get_mut(&id)?.bridge.take()?;
    let bridge = calls.bridges.get_mut(&bid)?;
    bridge.members.retain(|m| *m != id);
    let after = bridge.clone();
    if after.members.is_empty() {
        calls.bridges.remove(&bid);
    }
    Some(after)
}

/// A random id in the UUID shape of bridge uniqueids.
fn uuid() -> String {
    let h = |n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
            .collect()
    };
    format!("{}-{}-{}-{}-{}", h(8), h(4), h(4), h(4), h(12))
}
