//! Basic two-party bridges, as Dial makes them: create, enter, leave, destroy.

use super::channel::send;
use super::events::bridge_event;
use super::model::{Bridge, BridgeId, ChanId, Ctl};
use crate::sim::core::{Core, lock};

/// Bridges two channels in a new basic bridge (BridgeCreate, then a BridgeEnter each).
pub(crate) fn bridge_two(core: &Core, x: ChanId, y: ChanId) {
    let (bid, created) = {
        let mut calls = lock(&core.calls);
        let bid = calls.new_id();
        let bridge = Bridge {
            uniqueid: uuid(),
            members: Vec::new(),
        };
        calls.bridges.insert(bid, bridge.clone());
        (bid, bridge)
    };
    bridge_event(core, "BridgeCreate", &created, None);
    for id in [x, y] {
        let entered = {
            let mut calls = lock(&core.calls);
            if let Some(c) = calls.channels.get_mut(&id) {
                c.bridge = Some(bid);
            }
            calls.bridges.get_mut(&bid).map(|b| {
                b.members.push(id);
                b.clone()
            })
        };
        if let Some(b) = entered {
            bridge_event(core, "BridgeEnter", &b, Some(id));
        }
    }
}

/// Takes a channel out of its bridge (if any). The last one out destroys the bridge; the one
/// left alone is told the bridge ended.
pub(crate) fn leave_bridge(core: &Core, id: ChanId) {
    let Some(left) = remove_member(core, id) else {
        return;
    };
    bridge_event(core, "BridgeLeave", &left, Some(id));
    match left.members.as_slice() {
        [] => bridge_event(core, "BridgeDestroy", &left, None),
        [other] => {
            send(core, *other, Ctl::BridgeEnded);
        }
        _ => {}
    }
}

/// The bridge as it is after `id` left it (removed from the table once empty).
fn remove_member(core: &Core, id: ChanId) -> Option<Bridge> {
    let mut calls = lock(&core.calls);
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
