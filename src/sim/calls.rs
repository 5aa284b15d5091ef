//! Simulated calls: Local channel pairs running the dialplan, bridges, and the events they
//! raise, shaped like the recorded ones (`tcp-originate-sync.jsonl`, `tcp-pipelining.jsonl`,
//! `event-stream-load.raw`).
//!
//! Every channel has its own task (a [`Runner`]) that executes its program and reacts to
//! control messages (hangup, redirect, start, bridge ended). Shared state lives in [`Calls`]
//! behind a std mutex that is never held across an await.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::server::{Core, lock, stopped};
use super::time::Stamp;
use super::wire::{Event, Out, class};

pub(crate) type ChanId = u64;

const UNKNOWN: &str = "<unknown>";

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: String,
    pub(crate) uniqueid: String,
    pub(crate) linkedid: String,
    pub(crate) state: u8,
    pub(crate) cid_num: String,
    pub(crate) cid_name: String,
    pub(crate) conn_num: String,
    pub(crate) conn_name: String,
    pub(crate) context: String,
    pub(crate) exten: String,
    pub(crate) priority: u32,
    pub(crate) app: String,
    pub(crate) appdata: String,
    pub(crate) bridge: Option<u64>,
    pub(crate) vars: Vec<(String, String)>,
    pub(crate) created: Instant,
    pub(crate) start: SystemTime,
    pub(crate) answered: Option<SystemTime>,
    /// The other half of a Local pair.
    pub(crate) peer: Option<ChanId>,
    /// `Local/150@test`, for DeviceStateChange.
    pub(crate) device: String,
    pub(crate) in_dialplan: bool,
    ctl: mpsc::UnboundedSender<Ctl>,
    /// On the `;2` half: what its answer means to whoever is dialing the `;1` half.
    answer_hook: Option<AnswerHook>,
}

#[derive(Debug)]
struct AnswerHook {
    caller: Option<ChanId>,
    tx: oneshot::Sender<()>,
}

#[derive(Debug)]
pub(crate) struct Bridge {
    pub(crate) uniqueid: String,
    pub(crate) members: Vec<ChanId>,
}

#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub(crate) channels: BTreeMap<ChanId, Channel>,
    pub(crate) bridges: BTreeMap<u64, Bridge>,
    next_id: u64,
    next_local: u32,
}

impl Calls {
    /// The uniqueid of the bridge a channel is in (empty when none).
    pub(crate) fn bridge_uid(&self, c: &Channel) -> String {
        c.bridge
            .and_then(|b| self.bridges.get(&b))
            .map(|b| b.uniqueid.clone())
            .unwrap_or_default()
    }

    pub(crate) fn find(&self, name: &str) -> Option<ChanId> {
        self.channels
            .iter()
            .find(|(_, c)| c.name == name)
            .map(|(id, _)| *id)
    }
}

#[derive(Debug)]
pub(crate) enum Ctl {
    Hangup { cause: u32, requested: bool },
    Redirect(Program),
    Start(Program),
    BridgeEnded,
}

#[derive(Clone, Debug)]
pub(crate) enum Program {
    Dialplan {
        context: String,
        exten: String,
        priority: u32,
    },
    App {
        app: String,
        data: String,
    },
    /// A `;1` half waiting to be answered and given its program.
    Idle,
    /// A `;1` half created by Dial: stays in the bridge until it ends.
    Bridged,
}

pub(crate) fn state_desc(state: u8) -> &'static str {
    match state {
        0 => "Down",
        4 => "Ring",
        5 => "Ringing",
        6 => "Up",
        _ => "Unknown",
    }
}

fn cause_text(cause: u32) -> &'static str {
    match cause {
        16 => "Normal Clearing",
        17 => "User busy",
        19 => "No user responding",
        _ => "Unknown",
    }
}

/// The channel snapshot headers every channel event carries, with an optional prefix
/// (`Dest`, `LocalOne`, `LocalTwo`).
pub(crate) fn snapshot(out: &mut Out, prefix: &str, c: &Channel) {
    let p = |k: &str| format!("{prefix}{k}");
    out.push(&p("Channel"), &c.name);
    out.push(&p("ChannelState"), &c.state.to_string());
    out.push(&p("ChannelStateDesc"), state_desc(c.state));
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

fn bridge_headers(out: &mut Out, b: &Bridge) {
    out.push("BridgeUniqueid", &b.uniqueid);
    out.push("BridgeType", "basic");
    out.push("BridgeTechnology", "simple_bridge");
    out.push("BridgeCreator", UNKNOWN);
    out.push("BridgeName", UNKNOWN);
    out.push("BridgeNumChannels", &b.members.len().to_string());
    out.push("BridgeVideoSourceMode", "none");
}

/// `HH:MM:SS`, as `CoreShowChannel` reports a channel's age.
pub(crate) fn duration_hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Parses `"Name" <num>` / `Name <num>` / `num`.
fn parse_callerid(cid: &str) -> (String, String) {
    let cid = cid.trim();
    match (cid.find('<'), cid.rfind('>')) {
        (Some(l), Some(r)) if l < r => {
            let name = cid[..l].trim().trim_matches('"').to_string();
            (name, cid[l + 1..r].to_string())
        }
        _ => (String::new(), cid.to_string()),
    }
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        UNKNOWN.into()
    } else {
        s.into()
    }
}

/// A `Local/<exten>@<context>` dial string (options after `/` ignored).
pub(crate) fn parse_local(target: &str) -> Option<(String, String)> {
    let rest = target.strip_prefix("Local/")?;
    let rest = rest.split('/').next().unwrap_or(rest);
    let (exten, context) = rest.split_once('@').unwrap_or((rest, "default"));
    Some((exten.to_string(), context.to_string()))
}

struct Pair {
    a: ChanId,
    b: ChanId,
    answered: oneshot::Receiver<()>,
    rx_a: mpsc::UnboundedReceiver<Ctl>,
    rx_b: mpsc::UnboundedReceiver<Ctl>,
}

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
}

/// How an Originate ended (`Reason:` is an AST_CONTROL value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OriginateResult {
    pub(crate) success: bool,
    pub(crate) reason: u32,
    pub(crate) channel: String,
    pub(crate) uniqueid: String,
    pub(crate) cid_num: String,
    pub(crate) cid_name: String,
}

impl Core {
    /// Builds and broadcasts an event about channel `id` (nothing if it is gone).
    pub(crate) fn chan_event(
        &self,
        name: &str,
        privilege: &str,
        id: ChanId,
        extra: &[(&str, &str)],
    ) {
        let event = {
            let calls = lock(&self.calls);
            let Some(c) = calls.channels.get(&id) else {
                return;
            };
            let mut out = Out::event(name).h("Privilege", privilege);
            snapshot(&mut out, "", c);
            for (k, v) in extra {
                out.push(k, v);
            }
            out.finish()
        };
        self.emit(Event::new(name, class::privilege(privilege), event));
    }

    fn dial_event(&self, name: &str, caller: Option<ChanId>, dest: ChanId, extra: &[(&str, &str)]) {
        let event = {
            let calls = lock(&self.calls);
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
            out.finish()
        };
        self.emit(Event::new(name, class::CALL, event));
    }

    fn local_bridge_event(&self, a: ChanId, b: ChanId) {
        let event = {
            let calls = lock(&self.calls);
            let (Some(ca), Some(cb)) = (calls.channels.get(&a), calls.channels.get(&b)) else {
                return;
            };
            let mut out = Out::event("LocalBridge").h("Privilege", "call,all");
            snapshot(&mut out, "LocalOne", ca);
            snapshot(&mut out, "LocalTwo", cb);
            out.h("Context", &cb.context)
                .h("Exten", &cb.exten)
                .h("LocalOptimization", "Yes")
                .finish()
        };
        self.emit(Event::new("LocalBridge", class::CALL, event));
    }

    fn bridge_event(&self, name: &str, bridge: &Bridge, chan: Option<ChanId>) {
        let event = {
            let calls = lock(&self.calls);
            let mut out = Out::event(name).h("Privilege", "call,all");
            bridge_headers(&mut out, bridge);
            if let Some(c) = chan.and_then(|c| calls.channels.get(&c)) {
                snapshot(&mut out, "", c);
            }
            out.finish()
        };
        self.emit(Event::new(name, class::CALL, event));
    }

    fn device_state(&self, device: &str, state: &str) {
        self.emit(Event::build(
            "DeviceStateChange",
            "call,all",
            &[("Device", device), ("State", state)],
        ));
    }

    fn set_state(&self, id: ChanId, state: u8) -> bool {
        let changed = {
            let mut calls = lock(&self.calls);
            match calls.channels.get_mut(&id) {
                Some(c) if c.state != state => {
                    c.state = state;
                    if state == 6 {
                        c.answered = Some(SystemTime::now());
                    }
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.chan_event("Newstate", "call,all", id, &[]);
        }
        changed
    }

    /// Answers a channel. Answering the `;2` half of a Local pair first brings up the `;1`
    /// half and completes the Dial/Originate waiting on it.
    pub(crate) fn answer(&self, id: ChanId) {
        let (hook, peer) = {
            let mut calls = lock(&self.calls);
            let Some(c) = calls.channels.get_mut(&id) else {
                return;
            };
            if c.state == 6 {
                return;
            }
            (c.answer_hook.take(), c.peer)
        };
        if let Some(hook) = hook {
            if let Some(p) = peer {
                self.set_state(p, 6);
                self.dial_event("DialEnd", hook.caller, p, &[("DialStatus", "ANSWER")]);
            }
            let _ = hook.tx.send(());
        }
        self.set_state(id, 6);
    }

    fn ringing(&self, id: ChanId) {
        let (caller, peer, device) = {
            let calls = lock(&self.calls);
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
            if self.set_state(p, 5) {
                self.dial_event("DialState", caller, p, &[("DialStatus", "RINGING")]);
                self.device_state(&device, "INUSE");
            }
        }
    }

    fn set_var(&self, id: ChanId, name: &str, value: &str) {
        {
            let mut calls = lock(&self.calls);
            let Some(c) = calls.channels.get_mut(&id) else {
                return;
            };
            match c.vars.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = value.to_string(),
                None => c.vars.push((name.to_string(), value.to_string())),
            }
        }
        self.chan_event(
            "VarSet",
            "dialplan,all",
            id,
            &[("Variable", name), ("Value", value)],
        );
    }

    /// A variable or function as the dialplan sees it (`${...}` inside `Set`, `UserEvent`...).
    pub(crate) fn lookup(&self, chan: Option<ChanId>, name: &str) -> String {
        if let Some((func, arg)) = name.strip_suffix(')').and_then(|n| n.split_once('(')) {
            return match func.to_ascii_uppercase().as_str() {
                "LEN" => arg.chars().count().to_string(),
                "GLOBAL" => lock(&self.globals).get(arg).cloned().unwrap_or_default(),
                "STRFTIME" => {
                    // Only the epoch form the recording used: STRFTIME(<epoch>,UTC,%Y).
                    let mut parts = arg.split(',');
                    let epoch = parts.next().and_then(|e| e.trim().parse::<u64>().ok());
                    let fmt = parts.nth(1).unwrap_or("");
                    match epoch {
                        Some(e) if fmt == "%Y" => {
                            Stamp::of(SystemTime::UNIX_EPOCH + Duration::from_secs(e))
                                .year
                                .to_string()
                        }
                        _ => String::new(),
                    }
                }
                "CALLERID" => {
                    let calls = lock(&self.calls);
                    chan.and_then(|id| calls.channels.get(&id))
                        .map(|c| match arg {
                            "name" => c.cid_name.clone(),
                            _ => c.cid_num.clone(),
                        })
                        .unwrap_or_default()
                }
                _ => String::new(),
            };
        }
        if let Some(id) = chan {
            let calls = lock(&self.calls);
            if let Some(c) = calls.channels.get(&id) {
                if let Some((_, v)) = c.vars.iter().find(|(k, _)| k == name) {
                    return v.clone();
                }
                match name {
                    "CHANNEL" => return c.name.clone(),
                    "UNIQUEID" => return c.uniqueid.clone(),
                    "EXTEN" => return c.exten.clone(),
                    "CONTEXT" => return c.context.clone(),
                    _ => {}
                }
            }
        }
        lock(&self.globals).get(name).cloned().unwrap_or_default()
    }

    /// Expands `${...}` (nested too) in dialplan application data.
    pub(crate) fn expand(&self, chan: Option<ChanId>, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let mut depth = 1usize;
            let mut end = None;
            let bytes = after.as_bytes();
            let mut j = 0;
            while j < bytes.len() {
                if bytes[j] == b'$' && bytes.get(j + 1) == Some(&b'{') {
                    depth += 1;
                    j += 1;
                } else if bytes[j] == b'}' {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                j += 1;
            }
            let Some(end) = end else {
                out.push_str(&rest[i..]);
                return out;
            };
            let inner = self.expand(chan, &after[..end]);
            out.push_str(&self.lookup(chan, &inner));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Creates a Local pair for `exten@context` (both halves registered, no events yet).
    fn create_pair(
        &self,
        exten: &str,
        context: &str,
        linkedid: Option<String>,
        caller: Option<ChanId>,
    ) -> Option<Pair> {
        self.cfg.dialplan.extension(context, exten)?;
        let (tx_a, rx_a) = mpsc::unbounded_channel();
        let (tx_b, rx_b) = mpsc::unbounded_channel();
        let (hook_tx, answered) = oneshot::channel();
        let uid_a = self.uniqueid();
        let uid_b = self.uniqueid();
        let mut calls = lock(&self.calls);
        let n = calls.next_local;
        calls.next_local += 1;
        let a = calls.next_id;
        let b = a + 1;
        calls.next_id += 2;
        let base = format!("Local/{exten}@{context}-{n:08x}");
        let linkedid = linkedid.unwrap_or_else(|| uid_a.clone());
        let now = SystemTime::now();
        let make = |suffix: &str, uid: String, state: u8, peer, ctl, hook| Channel {
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
        calls.channels.insert(a, make("1", uid_a, 0, b, tx_a, None));
        calls
            .channels
            .insert(b, make("2", uid_b, 4, a, tx_b, Some(hook)));
        Some(Pair {
            a,
            b,
            answered,
            rx_a,
            rx_b,
        })
    }

    pub(crate) fn send(&self, id: ChanId, ctl: Ctl) -> bool {
        lock(&self.calls)
            .channels
            .get(&id)
            .is_some_and(|c| c.ctl.send(ctl).is_ok())
    }

    fn leave_bridge(&self, id: ChanId) {
        let left = {
            let mut calls = lock(&self.calls);
            let Some(bid) = calls.channels.get_mut(&id).and_then(|c| c.bridge.take()) else {
                return;
            };
            let Some(bridge) = calls.bridges.get_mut(&bid) else {
                return;
            };
            bridge.members.retain(|m| *m != id);
            let snapshot = Bridge {
                uniqueid: bridge.uniqueid.clone(),
                members: bridge.members.clone(),
            };
            if bridge.members.is_empty() {
                calls.bridges.remove(&bid);
            }
            snapshot
        };
        self.bridge_event("BridgeLeave", &left, Some(id));
        match left.members.as_slice() {
            [] => self.bridge_event("BridgeDestroy", &left, None),
            [other] => {
                self.send(*other, Ctl::BridgeEnded);
            }
            _ => {}
        }
    }

    fn bridge_two(&self, x: ChanId, y: ChanId) {
        let bid = {
            let mut calls = lock(&self.calls);
            let bid = calls.next_id;
            calls.next_id += 1;
            calls.bridges.insert(
                bid,
                Bridge {
                    uniqueid: uuid(),
                    members: Vec::new(),
                },
            );
            bid
        };
        let created = self.bridge_snapshot(bid);
        if let Some(b) = created {
            self.bridge_event("BridgeCreate", &b, None);
        }
        for id in [x, y] {
            let snap = {
                let mut calls = lock(&self.calls);
                if let Some(c) = calls.channels.get_mut(&id) {
                    c.bridge = Some(bid);
                }
                if let Some(b) = calls.bridges.get_mut(&bid) {
                    b.members.push(id);
                }
                drop(calls);
                self.bridge_snapshot(bid)
            };
            if let Some(b) = snap {
                self.bridge_event("BridgeEnter", &b, Some(id));
            }
        }
    }

    fn bridge_snapshot(&self, bid: u64) -> Option<Bridge> {
        lock(&self.calls).bridges.get(&bid).map(|b| Bridge {
            uniqueid: b.uniqueid.clone(),
            members: b.members.clone(),
        })
    }

    fn spawn(self: &Arc<Self>, id: ChanId, rx: mpsc::UnboundedReceiver<Ctl>, program: Program) {
        let runner = Runner {
            core: self.clone(),
            id,
            rx,
        };
        tokio::spawn(runner.run(program));
    }

    /// Runs an Originate to its outcome (the caller decides sync or async).
    pub(crate) async fn originate(self: &Arc<Self>, req: OriginateReq) -> OriginateResult {
        let mut result = OriginateResult {
            success: false,
            reason: 0,
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
        let Some(pair) = self.create_pair(&exten, &context, None, None) else {
            return result;
        };
        self.calls_processed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Pair {
            a,
            b,
            answered,
            rx_a,
            rx_b,
        } = pair;
        self.chan_event("Newchannel", "call,all", a, &[]);
        self.chan_event("Newchannel", "call,all", b, &[]);
        {
            let mut calls = lock(&self.calls);
            if let Some(c) = calls.channels.get_mut(&a) {
                c.app = "AppDial2".into();
                c.appdata = "(Outgoing Line)".into();
            }
        }
        self.chan_event(
            "Newexten",
            "dialplan,all",
            a,
            &[
                ("Extension", &exten),
                ("Application", "AppDial2"),
                ("AppData", "(Outgoing Line)"),
            ],
        );
        // The recording shows the ;1 half getting the variables in reverse order.
        for (k, v) in req.variables.iter().rev() {
            self.set_var(a, k, v);
        }
        if req.callerid.is_some() {
            self.set_callerid(a, &cid_num, &cid_name);
        }
        for (k, v) in &req.variables {
            self.set_var(b, k, v);
        }
        if req.callerid.is_some() {
            self.set_callerid(b, &cid_num, &cid_name);
        }
        self.local_bridge_event(a, b);
        self.dial_event(
            "DialBegin",
            None,
            a,
            &[("DialString", &format!("{exten}@{context}"))],
        );
        self.spawn(a, rx_a, Program::Idle);
        self.spawn(
            b,
            rx_b,
            Program::Dialplan {
                context: context.clone(),
                exten: exten.clone(),
                priority: 1,
            },
        );
        let (name, uid) = {
            let calls = lock(&self.calls);
            calls
                .channels
                .get(&a)
                .map(|c| (c.name.clone(), c.uniqueid.clone()))
                .unwrap_or_default()
        };
        let mut stop = self.shutdown.clone();
        tokio::select! {
            r = answered => {
                if r.is_ok() {
                    let program = match &req.application {
                        Some(app) => Program::App { app: app.clone(), data: req.data.clone() },
                        None => Program::Dialplan {
                            context: req.context.clone().unwrap_or_else(|| "default".into()),
                            exten: req.exten.clone().unwrap_or_else(|| "s".into()),
                            priority: req.priority.max(1),
                        },
                    };
                    self.send(a, Ctl::Start(program));
                    result.success = true;
                    result.reason = 4;
                } else {
                    // The dialed side hung up before answering.
                    result.reason = 1;
                }
            }
            _ = tokio::time::sleep(req.timeout) => {
                let ringing = lock(&self.calls).channels.get(&a).is_some_and(|c| c.state == 5);
                result.reason = if ringing { 3 } else { 0 };
                self.send(b, Ctl::Hangup { cause: 19, requested: true });
                self.send(a, Ctl::Hangup { cause: 19, requested: true });
            }
            _ = stopped(&mut stop) => {}
        }
        if result.success {
            result.channel = name;
            result.uniqueid = uid;
        }
        result
    }

    fn set_callerid(&self, id: ChanId, num: &str, name: &str) {
        {
            let mut calls = lock(&self.calls);
            let Some(c) = calls.channels.get_mut(&id) else {
                return;
            };
            c.cid_num = or_unknown(num);
            c.cid_name = or_unknown(name);
        }
        self.chan_event(
            "NewCallerid",
            "call,all",
            id,
            &[("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
        );
        {
            let mut calls = lock(&self.calls);
            if let Some(c) = calls.channels.get_mut(&id) {
                c.conn_num = or_unknown(num);
                c.conn_name = or_unknown(name);
            }
        }
        self.chan_event("NewConnectedLine", "call,all", id, &[]);
    }

    /// The `OriginateResponse` event, in the recorded header order.
    pub(crate) fn originate_response(&self, req: &OriginateReq, r: &OriginateResult) {
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
            .h("Reason", &r.reason.to_string())
            .h("Uniqueid", &r.uniqueid)
            .h("CallerIDNum", &r.cid_num)
            .h("CallerIDName", &r.cid_name);
        self.emit(Event::new("OriginateResponse", class::CALL, out.finish()));
    }
}

fn uuid() -> String {
    let h = |n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
            .collect()
    };
    format!("{}-{}-{}-{}-{}", h(8), h(4), h(4), h(4), h(12))
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
    Hangup { cause: u32, requested: bool },
    Stop,
}

enum Next {
    Step,
    Goto(Program),
    End(End),
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
                    self.core.leave_bridge(self.id);
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
                        self.core.leave_bridge(self.id);
                        Next::End(End::Hangup {
                            cause: 16,
                            requested: true,
                        })
                    }
                    Wake::Ctl(Ctl::Redirect(p)) => {
                        self.core.leave_bridge(self.id);
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
            Next::Step => Next::End(End::Hangup {
                cause: 16,
                requested: false,
            }),
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
            return Next::End(End::Hangup {
                cause: 16,
                requested: false,
            });
        };
        let data = core.expand(Some(self.id), &step.data);
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
        }
        core.chan_event(
            "Newexten",
            "dialplan,all",
            self.id,
            &[
                ("Extension", exten),
                ("Application", &step.app),
                ("AppData", &data),
            ],
        );
        match step.app.to_ascii_lowercase().as_str() {
            "answer" => {
                let was_up = lock(&core.calls)
                    .channels
                    .get(&self.id)
                    .is_some_and(|c| c.state == 6);
                core.answer(self.id);
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
                core.ringing(self.id);
                Next::Step
            }
            "wait" => {
                let until = self.deadline(&data);
                self.hold(Some(until)).await
            }
            "echo" => self.hold(None).await,
            "set" => {
                if let Some((k, v)) = data.split_once('=') {
                    match k.to_ascii_uppercase().as_str() {
                        "CALLERID(NAME)" => {
                            let num = core.lookup(Some(self.id), "CALLERID(num)");
                            core.set_callerid(self.id, &num, v);
                        }
                        "CALLERID(NUM)" => {
                            let name = core.lookup(Some(self.id), "CALLERID(name)");
                            core.set_callerid(self.id, v, &name);
                        }
                        _ => core.set_var(self.id, k, v),
                    }
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
                core.chan_event("UserEvent", "user,all", self.id, &extra);
                Next::Step
            }
            "hangup" => Next::End(End::Hangup {
                cause: 16,
                requested: false,
            }),
            "dial" => self.dial(&data).await,
            _ => Next::Step,
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
            core.set_var(self.id, var, "");
        }
        let dial_started = Instant::now();
        let pair = parse_local(target).and_then(|(exten, context)| {
            core.create_pair(&exten, &context, linkedid, Some(self.id))
        });
        let Some(Pair {
            a,
            b,
            answered,
            rx_a,
            rx_b,
        }) = pair
        else {
            core.set_var(self.id, "DIALSTATUS", "CHANUNAVAIL");
            return Next::Step;
        };
        // The dialed ;1 half shows the caller as its caller ID, like the recording.
        {
            let mut calls = lock(&core.calls);
            let (num, name, ctx) = calls
                .channels
                .get(&self.id)
                .map(|c| (c.exten.clone(), c.cid_name.clone(), c.context.clone()))
                .unwrap_or_default();
            if let Some(c) = calls.channels.get_mut(&a) {
                c.cid_num = or_unknown(&num);
                c.conn_name = or_unknown(&name);
                c.context = ctx;
                c.exten = num;
            }
        }
        let dial_string = target.strip_prefix("Local/").unwrap_or(target).to_string();
        core.chan_event("Newchannel", "call,all", a, &[]);
        core.chan_event("Newchannel", "call,all", b, &[]);
        core.set_var(a, "DIALEDPEERNUMBER", &dial_string);
        if let Some(c) = lock(&core.calls).channels.get_mut(&a) {
            c.app = "AppDial".into();
            c.appdata = "(Outgoing Line)".into();
        }
        let exten_a = lock(&core.calls)
            .channels
            .get(&a)
            .map(|c| c.exten.clone())
            .unwrap_or_default();
        core.chan_event(
            "Newexten",
            "dialplan,all",
            a,
            &[
                ("Extension", &exten_a),
                ("Application", "AppDial"),
                ("AppData", "(Outgoing Line)"),
            ],
        );
        core.set_var(b, "DIALEDPEERNUMBER", &dial_string);
        core.local_bridge_event(a, b);
        core.dial_event(
            "DialBegin",
            Some(self.id),
            a,
            &[("DialString", &dial_string)],
        );
        let (dest_ctx, dest_exten) = {
            let calls = lock(&core.calls);
            calls
                .channels
                .get(&b)
                .map(|c| (c.context.clone(), c.exten.clone()))
                .unwrap_or_default()
        };
        core.spawn(a, rx_a, Program::Idle);
        core.spawn(
            b,
            rx_b,
            Program::Dialplan {
                context: dest_ctx,
                exten: dest_exten,
                priority: 1,
            },
        );
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
                        core.send(a, Ctl::Hangup { cause, requested: true });
                        return Next::End(End::Hangup { cause, requested });
                    }
                    Some(Ctl::Redirect(p)) => {
                        core.send(a, Ctl::Hangup { cause: 16, requested: true });
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
                core.set_var(self.id, "DIALSTATUS", "ANSWER");
                core.set_var(self.id, "DIALEDPEERNAME", &name_a);
                core.set_var(self.id, "DIALEDPEERNUMBER", &dial_string);
                core.answer(self.id);
                core.bridge_two(self.id, a);
                core.set_var(a, "BRIDGEPEER", &name_c);
                core.set_var(self.id, "BRIDGEPEER", &name_a);
                core.send(a, Ctl::Start(Program::Bridged));
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
                core.set_var(self.id, "BRIDGEPEER", "");
                core.leave_bridge(self.id);
                self.dial_times(dial_started, Some(answered_at), "ANSWER");
                next
            }
            other => {
                let status = if other.is_none() {
                    "NOANSWER"
                } else {
                    "CANCEL"
                };
                core.dial_event("DialEnd", Some(self.id), a, &[("DialStatus", status)]);
                core.send(
                    b,
                    Ctl::Hangup {
                        cause: 16,
                        requested: true,
                    },
                );
                core.send(
                    a,
                    Ctl::Hangup {
                        cause: 16,
                        requested: true,
                    },
                );
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
            self.core.set_var(self.id, var, &value);
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
        let cause_s = cause.to_string();
        if requested {
            core.chan_event("HangupRequest", "call,all", id, &[("Cause", &cause_s)]);
        }
        core.leave_bridge(id);
        let (in_dialplan, context) = {
            let calls = lock(&core.calls);
            calls
                .channels
                .get(&id)
                .map(|c| (c.in_dialplan, c.context.clone()))
                .unwrap_or_default()
        };
        if in_dialplan {
            core.chan_event("SoftHangupRequest", "call,all", id, &[("Cause", &cause_s)]);
            if let Some(step) = core.cfg.dialplan.step(&context, "h", 1) {
                let data = {
                    let mut calls = lock(&core.calls);
                    if let Some(c) = calls.channels.get_mut(&id) {
                        c.vars.retain(|(k, _)| k != "HANGUPCAUSE");
                        c.vars.push(("HANGUPCAUSE".into(), cause_s.clone()));
                        c.exten = "h".into();
                        c.priority = 1;
                    }
                    drop(calls);
                    core.expand(Some(id), &step.data)
                };
                core.chan_event(
                    "Newexten",
                    "dialplan,all",
                    id,
                    &[
                        ("Extension", "h"),
                        ("Application", &step.app),
                        ("AppData", &data),
                    ],
                );
                if let Some(c) = lock(&core.calls).channels.get_mut(&id) {
                    c.priority = 2;
                }
            }
        }
        core.chan_event(
            "Hangup",
            "call,all",
            id,
            &[("Cause", &cause_s), ("Cause-txt", cause_text(cause))],
        );
        let removed = lock(&core.calls).channels.remove(&id);
        let Some(c) = removed else {
            return;
        };
        core.emit(cdr(&c));
        if let Some(peer) = c.peer {
            if !core.send(
                peer,
                Ctl::Hangup {
                    cause,
                    requested: true,
                },
            ) {
                core.device_state(&c.device, "NOT_INUSE");
            }
        }
    }
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn cdr(c: &Channel) -> Event {
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
