//! Channel life: creating Local pairs, state changes, answer, ringing, variables, caller ID,
//! and the control messages that reach a channel's task.

use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::ast::ChannelState;
use super::events::{chan_event, device_state, dial_event};
use super::model::{AnswerHook, ChanId, Channel, Ctl, UNKNOWN, or_unknown};
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

/// Creates a Local pair for `exten@context` (both halves registered, no events yet); None when
/// the dialplan has no such extension.
pub(crate) fn create_pair(
    core: &Core,
    exten: &str,
    context: &str,
    linkedid: Option<String>,
    caller: Option<ChanId>,
) -> Option<Pair> {
    core.cfg.dialplan.extension(context, exten)?;
    let (tx_a, rx_a) = mpsc::unbounded_channel();
    let (tx_b, rx_b) = mpsc::unbounded_channel();
    let (hook_tx, answered) = oneshot::channel();
    let uid_a = core.uniqueid();
    let uid_b = core.uniqueid();
    let mut calls = lock(&core.calls);
    let n = calls.new_local_number();
    let a = calls.new_id();
    let b = calls.new_id();
    let base = format!("Local/{exten}@{context}-{n:08x}");
    let linkedid = linkedid.unwrap_or_else(|| uid_a.clone());
    let now = SystemTime::now();
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
pub(crate) fn set_state(core: &Core, id: ChanId, state: ChannelState) -> bool {
    let changed = {
        let mut calls = lock(&core.calls);
        match calls.channels.get_mut(&id) {
            Some(c) if c.state != state => {
                c.state = state;
                if state == ChannelState::Up {
                    c.answered = Some(SystemTime::now());
                }
                true
            }
            _ => false,
        }
    };
    if changed {
        chan_event(core, "Newstate", "call,all", id, &[]);
    }
    changed
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
    let (hook, peer) = {
        let mut calls = lock(&core.calls);
        let Some(c) = calls.channels.get_mut(&id) else {
            return;
        };
        if c.state == ChannelState::Up {
            return;
        }
        (c.answer_hook.take(), c.peer)
    };
    if let Some(hook) = hook {
        if let Some(p) = peer {
            set_state(core, p, ChannelState::Up);
            dial_event(core, "DialEnd", hook.caller, p, &[("DialStatus", "ANSWER")]);
        }
        let _ = hook.tx.send(());
    }
    set_state(core, id, ChannelState::Up);
}

/// `Ringing()` on the `;2` half: the `;1` half rings, and whoever dials it hears so.
pub(crate) fn ringing(core: &Core, id: ChanId) {
    let (caller, peer, device) = {
        let calls = lock(&core.calls);
        let Some(c) = calls.channels.get(&id) else {
            return;
        };
        (
            c.answer_hook.as_ref().and_then(|h| h.caller),
            c.peer,
            c.device.clone(),
        )
    };
    if let Some(p) = peer {
        if set_state(core, p, ChannelState::Ringing) {
            dial_event(core, "DialState", caller, p, &[("DialStatus", "RINGING")]);
            device_state(core, &device, "INUSE");
        }
    }
}

/// Sets a channel variable, with its VarSet event.
pub(crate) fn set_var(core: &Core, id: ChanId, name: &str, value: &str) {
    {
        let mut calls = lock(&core.calls);
        let Some(c) = calls.channels.get_mut(&id) else {
            return;
        };
        match c.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => c.vars.push((name.to_string(), value.to_string())),
        }
    }
    chan_event(
        core,
        "VarSet",
        "dialplan,all",
        id,
        &[("Variable", name), ("Value", value)],
    );
}

/// Sets caller ID and connected line together, as `Set(CALLERID(...))` and Originate's
/// `CallerID` do (NewCallerid, then NewConnectedLine).
pub(crate) fn set_callerid(core: &Core, id: ChanId, num: &str, name: &str) {
    {
        let mut calls = lock(&core.calls);
        let Some(c) = calls.channels.get_mut(&id) else {
            return;
        };
        c.cid_num = or_unknown(num);
        c.cid_name = or_unknown(name);
    }
    chan_event(
        core,
        "NewCallerid",
        "call,all",
        id,
        &[("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
    );
    {
        let mut calls = lock(&core.calls);
        if let Some(c) = calls.channels.get_mut(&id) {
            c.conn_num = or_unknown(num);
            c.conn_name = or_unknown(name);
        }
    }
    chan_event(core, "NewConnectedLine", "call,all", id, &[]);
}

/// The `;1` half starts calling out for `app` (`AppDial` for Dial, `AppDial2` for
/// Originate): its application, and the Newexten that shows it.
pub(crate) fn dial_out(core: &Core, id: ChanId, app: &str) {
    const OUTGOING: &str = "(Outgoing Line)";
    let exten = {
        let mut calls = lock(&core.calls);
        let Some(c) = calls.channels.get_mut(&id) else {
            return;
        };
        c.app = app.into();
        c.appdata = OUTGOING.into();
        c.exten.clone()
    };
    chan_event(
        core,
        "Newexten",
        "dialplan,all",
        id,
        &[
            ("Extension", &exten),
            ("Application", app),
            ("AppData", OUTGOING),
        ],
    );
}
