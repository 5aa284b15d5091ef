//! The task of one channel: it runs the channel's program (dialplan priorities, an Originate
//! application, or waiting in a bridge), obeys control messages, and ends with the hangup
//! sequence.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::ast::Cause;
use super::bridge::{bridge_dial, leave_bridge};
use super::channel::{
    Pair, answer, create_pair, dial_out, dialed_by, is_up, ringing, send, set_callerid, set_var,
};
use super::events::{cdr, chan_event, device_state, dial_event, local_bridge_event};
use super::model::{ChanId, Ctl, Program, parse_local};
use super::vars::{expand, lookup};
use crate::sim::core::{Core, lock, stopped};

/// Starts the task of channel `id` on `program`.
fn spawn(core: &Arc<Core>, id: ChanId, rx: mpsc::UnboundedReceiver<Ctl>, program: Program) {
    let runner = Runner {
        core: core.clone(),
        id,
        rx,
    };
    tokio::spawn(runner.run(program));
}

/// Starts both halves of a new Local pair: `a` waits to be answered, `b` runs the dialplan
/// from its extension.
pub(crate) fn spawn_pair(
    core: &Arc<Core>,
    (a, rx_a): (ChanId, mpsc::UnboundedReceiver<Ctl>),
    (b, rx_b): (ChanId, mpsc::UnboundedReceiver<Ctl>),
) {
    let (context, exten) = lock(&core.calls)
        .channels
        .get(&b)
        .map(|c| (c.context.clone(), c.exten.clone()))
        .unwrap_or_default();
    spawn(core, a, rx_a, Program::Idle);
    let program = Program::Dialplan {
        context,
        exten,
        priority: 1,
    };
    spawn(core, b, rx_b, program);
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The variables Dial resets when it starts (in the recorded order).
const DIAL_VARS: &[&str] = &[
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
];

enum Wake {
    Timer,
    Ctl(Ctl),
    Stop,
}

/// Why a channel's program ended.
enum End {
    Hangup { cause: Cause, requested: bool },
    Stop,
}

impl End {
    /// The program ran out (or `Hangup()` ran): a normal clearing nobody asked for.
    fn normal() -> End {
        End::Hangup {
            cause: Cause::NORMAL_CLEARING,
            requested: false,
        }
    }
}

enum Next {
    Step,
    Goto(Program),
    End(End),
}

/// A hangup request from someone else (another channel, an action, the end of a bridge).
fn hang_up(cause: Cause) -> Ctl {
    Ctl::Hangup {
        cause,
        requested: true,
    }
}

struct Runner {
    core: Arc<Core>,
    id: ChanId,
    rx: mpsc::UnboundedReceiver<Ctl>,
}

impl Runner {
    async fn wait(&mut self, until: Option<tokio::time::Instant>) -> Wake {
        let mut stop = self.core.shutdown.clone();
        tokio::select! {
            _ = stopped(&mut stop) => Wake::Stop,
            c = self.rx.recv() => c.map_or(Wake::Stop, Wake::Ctl),
            _ = sleep_until(until) => Wake::Timer,
        }
    }

    /// Waits until `until` (or forever); returns early for hangup, redirect or stop.
    async fn hold(&mut self, until: Option<tokio::time::Instant>) -> Next {
        loop {
            match self.wait(until).await {
                Wake::Timer => return Next::Step,
                Wake::Stop => return Next::End(End::Stop),
                Wake::Ctl(Ctl::Hangup { cause, requested }) => {
                    return Next::End(End::Hangup { cause, requested });
                }
                Wake::Ctl(Ctl::Redirect(p)) => {
                    leave_bridge(&self.core, self.id);
                    return Next::Goto(p);
                }
                Wake::Ctl(Ctl::Start(_) | Ctl::BridgeEnded) => {}
            }
        }
    }

    async fn run(mut self, mut program: Program) {
        let end = loop {
            let next = match &program {
                Program::Idle => match self.wait(None).await {
                    Wake::Ctl(Ctl::Start(p) | Ctl::Redirect(p)) => Next::Goto(p),
                    Wake::Ctl(Ctl::Hangup { cause, requested }) => {
                        Next::End(End::Hangup { cause, requested })
                    }
                    Wake::Stop => Next::End(End::Stop),
                    _ => continue,
                },
                Program::Bridged => match self.wait(None).await {
                    Wake::Ctl(Ctl::BridgeEnded) => {
                        leave_bridge(&self.core, self.id);
                        Next::End(End::Hangup {
                            cause: Cause::NORMAL_CLEARING,
                            requested: true,
                        })
                    }
                    Wake::Ctl(Ctl::Redirect(p)) => {
                        leave_bridge(&self.core, self.id);
                        Next::Goto(p)
                    }
                    Wake::Ctl(Ctl::Hangup { cause, requested }) => {
                        Next::End(End::Hangup { cause, requested })
                    }
                    Wake::Stop => Next::End(End::Stop),
                    _ => continue,
                },
                Program::App { app, data } => {
                    let (app, data) = (app.clone(), data.clone());
                    self.run_app(&app, &data).await
                }
                Program::Dialplan {
                    context,
                    exten,
                    priority,
                } => {
                    let (c, e, p) = (context.clone(), exten.clone(), *priority);
                    match self.step(&c, &e, p).await {
                        Next::Step => Next::Goto(Program::Dialplan {
                            context: c,
                            exten: e,
                            priority: p + 1,
                        }),
                        other => other,
                    }
                }
            };
            match next {
                Next::Goto(p) => program = p,
                Next::End(end) => break end,
                Next::Step => {}
            }
        };
        self.hangup(end).await;
    }

    /// A `;1` half given an application by Originate (no dialplan, so no Newexten).
    async fn run_app(&mut self, app: &str, data: &str) -> Next {
        {
            let mut calls = lock(&self.core.calls);
            if let Some(c) = calls.channels.get_mut(&self.id) {
                c.app = app.into();
                c.appdata = data.into();
                c.in_dialplan = false;
            }
        }
        let until = match app.to_ascii_lowercase().as_str() {
            "wait" => Some(self.deadline(data)),
            "echo" | "park" | "musiconhold" => None,
            _ => Some(self.deadline("1")),
        };
        match self.hold(until).await {
            Next::Step => Next::End(End::normal()),
            other => other,
        }
    }

    fn deadline(&self, secs: &str) -> tokio::time::Instant {
        let secs = secs
            .split(',')
            .next()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        tokio::time::Instant::now() + self.core.scaled(secs)
    }

    /// Executes one dialplan priority.
    async fn step(&mut self, context: &str, exten: &str, priority: u32) -> Next {
        let core = self.core.clone();
        let Some(step) = core.cfg.dialplan.step(context, exten, priority) else {
            return Next::End(End::normal());
        };
        let data = expand(&core, Some(self.id), &step.data);
        {
            let mut calls = lock(&core.calls);
            if let Some(c) = calls.channels.get_mut(&self.id) {
                c.context = context.into();
                c.exten = exten.into();
                c.priority = priority;
                c.app = step.app.clone();
                c.appdata = data.clone();
                c.in_dialplan = true;
            }
            chan_event(
                &core,
                &calls,
                "Newexten",
                "dialplan,all",
                self.id,
                &[
                    ("Extension", exten),
                    ("Application", &step.app),
                    ("AppData", &data),
                ],
            );
        }
        match step.app.to_ascii_lowercase().as_str() {
            "answer" => {
                let was_up = is_up(&core, self.id);
                answer(&core, self.id);
                if was_up {
                    Next::Step
                } else {
                    // Asterisk's Answer() waits up to 500 ms for media on a newly answered
                    // channel; the recordings show the next step half a second later.
                    let until = tokio::time::Instant::now() + core.scaled(0.5);
                    self.hold(Some(until)).await
                }
            }
            "ringing" => {
                ringing(&core, self.id);
                Next::Step
            }
            "wait" => {
                let until = self.deadline(&data);
                self.hold(Some(until)).await
            }
            "echo" => self.hold(None).await,
            "set" => {
                if let Some((k, v)) = data.split_once('=') {
                    self.set(k, v);
                }
                Next::Step
            }
            "userevent" => {
                let mut parts = data.split(',');
                let name = parts.next().unwrap_or("").to_string();
                let pairs: Vec<(String, String)> = parts
                    .filter_map(|p| {
                        let (k, v) = p.split_once(':')?;
                        Some((k.trim().to_string(), v.trim_start().to_string()))
                    })
                    .collect();
                let mut extra: Vec<(&str, &str)> = vec![("UserEvent", &name)];
                extra.extend(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let calls = lock(&core.calls);
                chan_event(&core, &calls, "UserEvent", "user,all", self.id, &extra);
                Next::Step
            }
            "hangup" => Next::End(End::normal()),
            "dial" => self.dial(&data).await,
            _ => Next::Step,
        }
    }

    /// `Set(k=v)`: a variable, or one half of the caller ID.
    fn set(&self, k: &str, v: &str) {
        let core = &self.core;
        match k.to_ascii_uppercase().as_str() {
            "CALLERID(NAME)" => {
                let num = lookup(core, Some(self.id), "CALLERID(num)");
                set_callerid(core, self.id, &num, v);
            }
            "CALLERID(NUM)" => {
                let name = lookup(core, Some(self.id), "CALLERID(name)");
                set_callerid(core, self.id, v, &name);
            }
            _ => set_var(core, self.id, k, v),
        }
    }

    /// `Dial(Local/<exten>@<context>[,<timeout>])`: ring a new Local pair, bridge on answer,
    /// return to the dialplan when the bridge ends.
    async fn dial(&mut self, data: &str) -> Next {
        let core = self.core.clone();
        let mut args = data.split(',');
        let target = args.next().unwrap_or("").split('&').next().unwrap_or("");
        let timeout = args.next().and_then(|t| t.trim().parse::<f64>().ok());
        let linkedid = lock(&core.calls)
            .channels
            .get(&self.id)
            .map(|c| c.linkedid.clone());
        // Dial clears its result variables first (event-stream-load.raw).
        for var in DIAL_VARS {
            set_var(&core, self.id, var, "");
        }
        let dial_started = Instant::now();
        let pair = parse_local(target).and_then(|(exten, context)| {
            create_pair(
                &core,
                &exten,
                &context,
                linkedid,
                Some(self.id),
                [None, None],
            )
        });
        let Some(Pair {
            a,
            b,
            answered,
            rx_a,
            rx_b,
        }) = pair
        else {
            set_var(&core, self.id, "DIALSTATUS", "CHANUNAVAIL");
            return Next::Step;
        };
        let (context, exten, name) = lock(&core.calls)
            .channels
            .get(&self.id)
            .map(|c| (c.context.clone(), c.exten.clone(), c.cid_name.clone()))
            .unwrap_or_default();
        let dial_string = target.strip_prefix("Local/").unwrap_or(target).to_string();
        set_var(&core, a, "DIALEDPEERNUMBER", &dial_string);
        dial_out(&core, a, "AppDial", Some((&context, &exten)));
        dialed_by(&core, a, &exten, &name);
        set_var(&core, b, "DIALEDPEERNUMBER", &dial_string);
        dialed_by(&core, b, &exten, &name);
        {
            let calls = lock(&core.calls);
            local_bridge_event(&core, &calls, a, b);
            let begin = [("DialString", dial_string.as_str())];
            dial_event(&core, &calls, "DialBegin", Some(self.id), a, &begin);
        }
        spawn_pair(&core, (a, rx_a), (b, rx_b));
        let deadline = timeout.map(|t| tokio::time::Instant::now() + core.scaled(t));
        let mut answered = answered;
        let mut stop = core.shutdown.clone();
        let outcome = loop {
            tokio::select! {
                r = &mut answered => break Some(r.is_ok()),
                _ = sleep_until(deadline) => break None,
                _ = stopped(&mut stop) => return Next::End(End::Stop),
                c = self.rx.recv() => match c {
                    Some(Ctl::Hangup { cause, requested }) => {
                        send(&core, a, hang_up(cause));
                        return Next::End(End::Hangup { cause, requested });
                    }
                    Some(Ctl::Redirect(p)) => {
                        send(&core, a, hang_up(Cause::NORMAL_CLEARING));
                        return Next::Goto(p);
                    }
                    Some(_) => {}
                    None => return Next::End(End::Stop),
                },
            }
        };
        match outcome {
            Some(true) => {
                let answered_at = Instant::now();
                let (name_a, name_c) = {
                    let calls = lock(&core.calls);
                    let name = |id| {
                        calls
                            .channels
                            .get(&id)
                            .map(|c| c.name.clone())
                            .unwrap_or_default()
                    };
                    (name(a), name(self.id))
                };
                set_var(&core, self.id, "DIALSTATUS", "ANSWER");
                set_var(&core, self.id, "DIALEDPEERNAME", &name_a);
                set_var(&core, self.id, "DIALEDPEERNUMBER", &dial_string);
                answer(&core, self.id);
                bridge_dial(&core, a, self.id);
                set_var(&core, a, "BRIDGEPEER", &name_c);
                set_var(&core, self.id, "BRIDGEPEER", &name_a);
                send(&core, a, Ctl::Start(Program::Bridged));
                let next = loop {
                    match self.wait(None).await {
                        Wake::Ctl(Ctl::BridgeEnded) => break Next::Step,
                        Wake::Ctl(Ctl::Hangup { cause, requested }) => {
                            return Next::End(End::Hangup { cause, requested });
                        }
                        Wake::Ctl(Ctl::Redirect(p)) => break Next::Goto(p),
                        Wake::Stop => return Next::End(End::Stop),
                        _ => {}
                    }
                };
                set_var(&core, self.id, "BRIDGEPEER", "");
                leave_bridge(&core, self.id);
                self.dial_times(dial_started, Some(answered_at), "ANSWER");
                next
            }
            other => {
                let status = if other.is_none() {
                    "NOANSWER"
                } else {
                    "CANCEL"
                };
                let end = [("DialStatus", status)];
                dial_event(&core, &lock(&core.calls), "DialEnd", Some(self.id), a, &end);
                send(&core, b, hang_up(Cause::NORMAL_CLEARING));
                send(&core, a, hang_up(Cause::NORMAL_CLEARING));
                self.dial_times(dial_started, None, status);
                Next::Step
            }
        }
    }

    /// The variables Dial sets when it returns.
    fn dial_times(&self, started: Instant, answered: Option<Instant>, status: &str) {
        let answered = answered.map(|a| a.elapsed()).unwrap_or_default();
        let dialed = started.elapsed();
        for (var, value) in [
            ("ANSWEREDTIME", answered.as_secs().to_string()),
            ("ANSWEREDTIME_MS", answered.as_millis().to_string()),
            ("DIALEDTIME", dialed.as_secs().to_string()),
            ("DIALEDTIME_MS", dialed.as_millis().to_string()),
            ("DIALSTATUS", status.to_string()),
        ] {
            set_var(&self.core, self.id, var, &value);
        }
    }

    /// The hangup sequence: HangupRequest (when asked), SoftHangupRequest and the `h`
    /// extension for dialplan channels, Hangup, Cdr; then the Local peer is hung up too.
    async fn hangup(self, end: End) {
        let core = self.core;
        let id = self.id;
        let End::Hangup { cause, requested } = end else {
            lock(&core.calls).channels.remove(&id);
            return;
        };
        let cause_s = cause.0.to_string();
        let with_cause = [("Cause", cause_s.as_str())];
        if requested {
            let calls = lock(&core.calls);
            chan_event(&core, &calls, "HangupRequest", "call,all", id, &with_cause);
        }
        leave_bridge(&core, id);
        let (in_dialplan, context) = {
            let calls = lock(&core.calls);
            calls
                .channels
                .get(&id)
                .map(|c| (c.in_dialplan, c.context.clone()))
                .unwrap_or_default()
        };
        let h = in_dialplan
            .then(|| core.cfg.dialplan.step(&context, "h", 1))
            .flatten();
        if in_dialplan {
            let calls = lock(&core.calls);
            chan_event(
                &core,
                &calls,
                "SoftHangupRequest",
                "call,all",
                id,
                &with_cause,
            );
        }
        if let Some(step) = h {
            set_hangupcause(&core, id, &cause_s);
            let data = expand(&core, Some(id), &step.data);
            let mut calls = lock(&core.calls);
            if let Some(c) = calls.channels.get_mut(&id) {
                c.exten = "h".into();
                c.priority = 1;
            }
            chan_event(
                &core,
                &calls,
                "Newexten",
                "dialplan,all",
                id,
                &[
                    ("Extension", "h"),
                    ("Application", &step.app),
                    ("AppData", &data),
                ],
            );
        }
        // The Hangup and the channel's removal are one step: no list answer shows a channel
        // whose Hangup went out before it.
        let removed = {
            let mut calls = lock(&core.calls);
            if h.is_some() {
                if let Some(c) = calls.channels.get_mut(&id) {
                    c.priority = 2;
                }
            }
            let gone = [("Cause", cause_s.as_str()), ("Cause-txt", cause.text())];
            chan_event(&core, &calls, "Hangup", "call,all", id, &gone);
            calls.channels.remove(&id)
        };
        let Some(c) = removed else {
            return;
        };
        core.emit(cdr(&c));
        if let Some(peer) = c.peer {
            if !send(&core, peer, hang_up(cause)) {
                device_state(&core, &c.device, "NOT_INUSE");
            }
        }
    }
}

/// `${HANGUPCAUSE}` for the `h` extension (a variable: no event).
fn set_hangupcause(core: &Core, id: ChanId, cause: &str) {
    if let Some(c) = lock(&core.calls).channels.get_mut(&id) {
        c.vars.retain(|(k, _)| k != "HANGUPCAUSE");
        c.vars.push(("HANGUPCAUSE".into(), cause.into()));
    }
}
