//! The Originate action's call: a Local pair whose `;2` half runs the dialplan and whose `;1`
//! half, once answered, runs the requested application or extension; and the
//! OriginateResponse event that reports it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ast::{Cause, ChannelState, OriginateReason};
use super::channel::{Pair, create_pair, dial_out, send, set_callerid, set_var};
use super::events::{dial_event, local_bridge_event};
use super::model::{CallToken, Ctl, Program, UNKNOWN, or_unknown, parse_callerid, parse_local};
use super::runner::spawn_pair;
use crate::sim::core::{Core, lock, stopped};
use crate::sim::wire::{Event, Out, class};

/// What an Originate asked for.
#[derive(Clone, Debug, Default)]
pub(crate) struct OriginateReq {
    pub(crate) channel: String,
    pub(crate) context: Option<String>,
    pub(crate) exten: Option<String>,
    pub(crate) priority: u32,
    pub(crate) application: Option<String>,
    pub(crate) data: String,
    pub(crate) callerid: Option<String>,
    pub(crate) variables: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) action_id: Option<String>,
    /// Given to the call's channels ([`super::model::Channel::token`]).
    pub(crate) token: Option<CallToken>,
    /// `ChannelId` and `OtherChannelId`: the Uniqueids the caller chose for the two channels.
    pub(crate) uniqueids: [Option<String>; 2],
}

/// How an Originate ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OriginateResult {
    pub(crate) success: bool,
    pub(crate) reason: OriginateReason,
    pub(crate) channel: String,
    pub(crate) uniqueid: String,
    pub(crate) cid_num: String,
    pub(crate) cid_name: String,
}

/// Runs an Originate to its outcome (the caller decides sync or async).
pub(crate) async fn originate(core: &Arc<Core>, req: OriginateReq) -> OriginateResult {
    let mut result = OriginateResult {
        success: false,
        reason: OriginateReason::Failed,
        channel: req.channel.clone(),
        uniqueid: "<null>".into(),
        cid_num: UNKNOWN.into(),
        cid_name: UNKNOWN.into(),
    };
    let (cid_name, cid_num) = req
        .callerid
        .as_deref()
        .map(parse_callerid)
        .unwrap_or_default();
    if !cid_num.is_empty() || !cid_name.is_empty() {
        result.cid_num = or_unknown(&cid_num);
        result.cid_name = or_unknown(&cid_name);
    }
    let Some((exten, context)) = parse_local(&req.channel) else {
        return result;
    };
    let Some(pair) = create_pair(core, &exten, &context, None, None, req.uniqueids.clone()) else {
        return result;
    };
    core.calls_processed.fetch_add(1, Ordering::Relaxed);
    if let Some(token) = &req.token {
        let mut calls = lock(&core.calls);
        for id in [pair.a, pair.b] {
            if let Some(c) = calls.channels.get_mut(&id) {
                c.token = Some(token.clone());
            }
        }
    }
    let Pair {
        a,
        b,
        answered,
        rx_a,
        rx_b,
    } = pair;
    dial_out(core, a, "AppDial2", None);
    // The recording shows the ;1 half getting the variables in reverse order.
    for (k, v) in req.variables.iter().rev() {
        set_var(core, a, k, v);
    }
    if req.callerid.is_some() {
        set_callerid(core, a, &cid_num, &cid_name);
    }
    for (k, v) in &req.variables {
        set_var(core, b, k, v);
    }
    if req.callerid.is_some() {
        set_callerid(core, b, &cid_num, &cid_name);
    }
    {
        let calls = lock(&core.calls);
        local_bridge_event(core, &calls, a, b);
        let dial_string = format!("{exten}@{context}");
        dial_event(
            core,
            &calls,
            "DialBegin",
            None,
            a,
            &[("DialString", &dial_string)],
        );
    }
    spawn_pair(core, (a, rx_a), (b, rx_b));
    let (name, uid) = {
        let calls = lock(&core.calls);
        calls
            .channels
            .get(&a)
            .map(|c| (c.name.clone(), c.uniqueid.clone()))
            .unwrap_or_default()
    };
    let mut stop = core.shutdown.clone();
    tokio::select! {
        r = answered => {
            if r.is_ok() {
                send(core, a, Ctl::Start(program_of(&req)));
                result.success = true;
                result.reason = OriginateReason::Answer;
            } else {
                // The dialed side hung up before answering.
                result.reason = OriginateReason::Hangup;
            }
        }
        _ = tokio::time::sleep(req.timeout) => {
            let ringing = lock(&core.calls)
                .channels
                .get(&a)
                .is_some_and(|c| c.state == ChannelState::Ringing);
            result.reason = if ringing {
                OriginateReason::Ringing
            } else {
                OriginateReason::Failed
            };
            for id in [b, a] {
                send(core, id, Ctl::Hangup { cause: Cause::NO_ANSWER, requested: true });
            }
        }
        _ = stopped(&mut stop) => {}
    }
    if result.success {
        result.channel = name;
        result.uniqueid = uid;
    }
    result
}

/// What the answered `;1` half runs: the Application, else Context/Exten/Priority.
fn program_of(req: &OriginateReq) -> Program {
    match &req.application {
        Some(app) => Program::App {
            app: app.clone(),
            data: req.data.clone(),
        },
        None => Program::Dialplan {
            context: req.context.clone().unwrap_or_else(|| "default".into()),
            exten: req.exten.clone().unwrap_or_else(|| "s".into()),
            priority: req.priority.max(1),
        },
    }
}

/// The `OriginateResponse` event, in the recorded header order.
pub(crate) fn originate_response(core: &Core, req: &OriginateReq, r: &OriginateResult) {
    let mut out = Out::event("OriginateResponse")
        .h("Privilege", "call,all")
        .id(req.action_id.as_deref())
        .h("Response", if r.success { "Success" } else { "Failure" })
        .h("Channel", &r.channel);
    match &req.application {
        Some(app) => {
            out.push("Application", app);
            out.push("Data", &req.data);
        }
        None => {
            out.push("Context", req.context.as_deref().unwrap_or(""));
            out.push("Exten", req.exten.as_deref().unwrap_or(""));
        }
    }
    let out = out
        .h("Reason", &r.reason.code().to_string())
        .h("Uniqueid", &r.uniqueid)
        .h("CallerIDNum", &r.cid_num)
        .h("CallerIDName", &r.cid_name);
    core.emit(Event::new("OriginateResponse", class::CALL, out.finish()));
}
