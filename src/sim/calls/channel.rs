//! Channel life: creating Local pairs, state changes, answer, ringing, variables, caller ID,
//! and the control messages that reach a channel's task.

use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::ast::ChannelState;
use super::events::{chan_event, device_state, dial_event};
use super::model::{AnswerHook, Calls, ChanId, Channel, Ctl, UNKNOWN, or_unknown};
use crate::sim::core::{Core, lock};

/// A new Local pair: `a` is the `;1` half (calls out), `b` the `;2` half (runs the dialplan).
pub(crate) struct Pair {
    pub(crate) a: ChanId,
    pub(crate) b: ChanId,
    /// Fires when `b` answers.
    pub(crate) answered: oneshot::Receiver<()>,
    pub(crate) rx_a: mpsc::UnboundedReceiver<Ctl>,
    pub(crate) rx_b: mpsc::UnboundedReceiver<Ctl>,
}

/// Creates a Local pair for `exten@context` (both halves registered, with their Newchannel
/// events); None when the dialplan has no such extension.
pub(crate) fn create_pair(
    core: &Core,
    exten: &str,
    context: &str,
    linkedid: Option<String>,
    caller: Option<ChanId>,
    uniqueids: [Option<String>; 2],
) -> Option<Pair> {
    core.cfg.dialplan.extension(context, exten)?;
    let (tx_a, rx_a) = mpsc::unbounded_channel();
    let (tx_b, rx_b) = mpsc::unbounded_channel();
    let (hook_tx, answered) = oneshot::channel();
    // Originate's ChannelId / OtherChannelId name the halves; otherwise the PBX numbers them.
    let [given_a, given_b] = uniqueids;
    let uid_a = given_a.unwrap_or_else(|| core.uniqueid());
    let uid_b = given_b.unwrap_or_else(|| core.uniqueid());
    let mut calls = lock(&core.calls);
    let n = calls.new_local_number();
    let a = calls.new_id();
    let b = calls.new_id();
    let base = format!("Local/{exten}@{context}-{n:08x}");
    let linkedid = linkedid.unwrap_or_else(|| uid_a.clone());
    let now = SystemTime::now();
    // A dialed pair belongs to its caller's call.
    let token = caller
        .and_then(|c| calls.channels.get(&c))
        .and_then(|c| c.token.clone());
    let make = |suffix: &str, uid: String, state, peer, ctl, hook| Channel {
        name: format!("{base};{suffix}"),
        uniqueid: uid,
        linkedid: linkedid.clone(),
        state,
        cid_num: UNKNOWN.into(),
        cid_name: UNKNOWN.into(),
        conn_num: UNKNOWN.into(),
        conn_name: UNKNOWN.into(),
        context: context.into(),
        exten: exten.into(),
        priority: 1,
        app: String::new(),
        appdata: String::new(),
        bridge: None,
        vars: Vec::new(),
        created: Instant::now(),
        start: now,
        answered: None,
        peer: Some(peer),
        device: format!("Local/{exten}@{context}"),
        in_dialplan: suffix == "2",
        ctl,
        answer_hook: hook,
        token: token.clone(),
    };
    let hook = AnswerHook {
        caller,
        tx: hook_tx,
    };
    calls
        .channels
        .insert(a, make("1", uid_a, ChannelState::Down, b, tx_a, None));
    calls
        .channels
        .insert(b, make("2", uid_b, ChannelState::Ring, a, tx_b, Some(hook)));
    for id in [a, b] {
        chan_event(core, &calls, "Newchannel", "call,all", id, &[]);
    }
    Some(Pair {
        a,
        b,
        answered,
        rx_a,
        rx_b,
    })
}

/// Tells a channel's task something; false when the channel is gone.
pub(crate) fn send(core: &Core, id: ChanId, ctl: Ctl) -> bool {
    lock(&core.calls)
        .channels
        .get(&id)
        .is_some_and(|c| c.ctl.send(ctl).is_ok())
}

/// Moves a channel to `state` with a Newstate event; false when it already was there.
pub(crate) fn set_state(core: &Core, calls: &mut Calls, id: ChanId, state: ChannelState) -> bool {
    match calls.channels.get_mut(&id) {
        Some(c) if c.state != state => {
            c.state = state;
            if state == ChannelState::Up {
                c.answered = Some(SystemTime::now());
            }
        }
        _ => return false,
    }
    chan_event(core, calls, "Newstate", "call,all", id, &[]);
    true
}

pub(crate) fn is_up(core: &Core, id: ChanId) -> bool {
    lock(&core.calls)
        .channels
        .get(&id)
        .is_some_and(|c| c.state == ChannelState::Up)
}

/// Answers a channel. Answering the `;2` half of a Local pair first brings up the `;1` half
/// and completes the Dial/Originate waiting on it.
pub(crate) fn answer(core: &Core, id: ChanId) {
    let mut calls = lock(&core.calls);
    let Some(c) = calls.channels.get_mut(&id) else {
        return;
    };
    if c.state == ChannelState::Up {
        return;
    }
    let (hook, peer) = (c.answer_hook.take(), c.peer);
    if let Some(hook) = hook {
        if let Some(p) = peer {
            set_state(core, &mut calls, p, ChannelState::Up);
            let end = [("DialStatus", "ANSWER")];
            dial_event(core, &calls, "DialEnd", hook.caller, p, &end);
        }
        let _ = hook.tx.send(());
    }
    set_state(core, &mut calls, id, ChannelState::Up);
}

/// `Ringing()` on the `;2` half: the `;1` half rings, and whoever dials it hears so.
pub(crate) fn ringing(core: &Core, id: ChanId) {
    let mut calls = lock(&core.calls);
    let Some(c) = calls.channels.get(&id) else {
        return;
    };
    let caller = c.answer_hook.as_ref().and_then(|h| h.caller);
    let (peer, device) = (c.peer, c.device.clone());
    if let Some(p) = peer {
        if set_state(core, &mut calls, p, ChannelState::Ringing) {
            let state = [("DialStatus", "RINGING")];
            dial_event(core, &calls, "DialState", caller, p, &state);
            device_state(core, &device, "INUSE");
        }
    }
}

/// Sets a channel variable, with its VarSet event.
pub(crate) fn set_var(core: &Core, id: ChanId, name: &str, value: &str) {
    let mut calls = lock(&core.calls);
    let Some(c) = calls.channels.get_mut(&id) else {
        return;
    };
    match c.vars.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => c.vars.push((name.to_string(), value.to_string())),
    }
    chan_event(
        core,
        &calls,
        "VarSet",
        "dialplan,all",
        id,
        &[("Variable", name), ("Value", value)],
    );
}

/// Sets caller ID and connected line together, as `Set(CALLERID(...))` and Originate's
/// `CallerID` do (NewCallerid, then NewConnectedLine).
pub(crate) fn set_callerid(core: &Core, id: ChanId, num: &str, name: &str) {
    let mut calls = lock(&core.calls);
    let Some(c) = calls.channels.get_mut(&id) else {
        return;
    };
    c.cid_num = or_unknown(num);
    c.cid_name = or_unknown(name);
    chan_event(core, &calls, "NewCallerid", "call,all", id, &[CID_PRES]);
    if let Some(c) = calls.channels.get_mut(&id) {
        c.conn_num = or_unknown(num);
        c.conn_name = or_unknown(name);
    }
    chan_event(core, &calls, "NewConnectedLine", "call,all", id, &[]);
}

/// NewCallerid's presentation, the same for every simulated caller ID.
const CID_PRES: (&str, &str) = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)");

/// What Dial tells a half of the new Local pair about its caller: the `;1` half calls as the
/// caller's extension and is connected to the caller's name, the `;2` half is called by that
/// name and connected to that extension; each change with its event, none when nothing changes
/// (`tcp-live-state-calls.jsonl`).
pub(crate) fn dialed_by(core: &Core, id: ChanId, exten: &str, name: &str) {
    let mut calls = lock(&core.calls);
    let Some(c) = calls.channels.get_mut(&id) else {
        return;
    };
    let (cid_changed, conn_changed) = if c.is_outbound_half() {
        (
            replace(&mut c.cid_num, or_unknown(exten)),
            replace(&mut c.conn_name, or_unknown(name)),
        )
    } else {
        (
            replace(&mut c.cid_name, or_unknown(name)),
            replace(&mut c.conn_num, or_unknown(exten)),
        )
    };
    if cid_changed {
        chan_event(core, &calls, "NewCallerid", "call,all", id, &[CID_PRES]);
    }
    if conn_changed {
        chan_event(core, &calls, "NewConnectedLine", "call,all", id, &[]);
    }
}

/// Stores `value`; true when that changed something.
fn replace(slot: &mut String, value: String) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

/// The `;1` half starts calling out for `app` (`AppDial` for Dial, `AppDial2` for
/// Originate): its application, and the Newexten that shows it. A Dial's half shows the
/// caller's context and extension from then on.
pub(crate) fn dial_out(core: &Core, id: ChanId, app: &str, place: Option<(&str, &str)>) {
    let mut calls = lock(&core.calls);
    let Some(c) = calls.channels.get_mut(&id) else {
        return;
    };
    c.app = app.into();
    c.appdata = OUTGOING.into();
    if let Some((context, exten)) = place {
        c.context = context.into();
        c.exten = exten.into();
    }
    let exten = c.exten.clone();
    newexten_outgoing(core, &calls, id, &exten, app);
}

/// `(Outgoing Line)`: the application data of a Local half calling out.
const OUTGOING: &str = "(Outgoing Line)";

fn newexten_outgoing(core: &Core, calls: &Calls, id: ChanId, exten: &str, app: &str) {
    chan_event(
        core,
        calls,
        "Newexten",
        "dialplan,all",
        id,
        &[
            ("Extension", exten),
            ("Application", app),
            ("AppData", OUTGOING),
        ],
    );
}

/// A dialed `;1` half entering its caller's bridge loses its extension, as the recording
/// shows (`Newexten` with an empty `Exten` between BridgeCreate and BridgeEnter).
pub(crate) fn clear_exten(core: &Core, calls: &mut Calls, id: ChanId) {
    let Some(c) = calls.channels.get_mut(&id) else {
        return;
    };
    c.exten.clear();
    let app = c.app.clone();
    newexten_outgoing(core, calls, id, "", &app);
}
