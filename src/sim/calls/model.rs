//! The call tables: channels and bridges as the actions and events see them, and the control
//! messages a channel's task obeys. Plain data: no events, no tasks, no core.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::ast::{Cause, ChannelState};

pub(crate) type ChanId = u64;
pub(crate) type BridgeId = u64;

/// What Asterisk shows for an unset caller ID or bridge name.
pub(crate) const UNKNOWN: &str = "<unknown>";

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: String,
    pub(crate) uniqueid: String,
    pub(crate) linkedid: String,
    pub(crate) state: ChannelState,
    pub(crate) cid_num: String,
    pub(crate) cid_name: String,
    pub(crate) conn_num: String,
    pub(crate) conn_name: String,
    pub(crate) context: String,
    pub(crate) exten: String,
    pub(crate) priority: u32,
    pub(crate) app: String,
    pub(crate) appdata: String,
    pub(crate) bridge: Option<BridgeId>,
    pub(crate) vars: Vec<(String, String)>,
    pub(crate) created: Instant,
    pub(crate) start: SystemTime,
    pub(crate) answered: Option<SystemTime>,
    /// The other half of a Local pair.
    pub(crate) peer: Option<ChanId>,
    /// `Local/150@test`, for DeviceStateChange.
    pub(crate) device: String,
    pub(crate) in_dialplan: bool,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    /// On the `;2` half: what its answer means to whoever is dialing the `;1` half.
    pub(crate) answer_hook: Option<AnswerHook>,
    /// Shared by every channel of a call someone waits for (the load mode): it drops with the
    /// call's last channel.
    pub(crate) token: Option<CallToken>,
}

/// See [`Channel::token`]; what it holds is its owner's business.
pub(crate) type CallToken = Arc<dyn Any + Send + Sync>;

impl Channel {
    /// A Local channel half (`;1` calls out, `;2` runs the dialplan).
    pub(crate) fn is_outbound_half(&self) -> bool {
        self.name.ends_with(";1")
    }
}

#[derive(Debug)]
pub(crate) struct AnswerHook {
    /// The channel running Dial, if any (an Originate has none).
    pub(crate) caller: Option<ChanId>,
    pub(crate) tx: oneshot::Sender<()>,
}

#[derive(Clone, Debug)]
pub(crate) struct Bridge {
    pub(crate) uniqueid: String,
    pub(crate) members: Vec<ChanId>,
}

#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub(crate) channels: BTreeMap<ChanId, Channel>,
    pub(crate) bridges: BTreeMap<BridgeId, Bridge>,
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

    /// Calls in progress: a Local pair is one call.
    pub(crate) fn active_calls(&self) -> usize {
        self.channels
            .values()
            .filter(|c| c.is_outbound_half())
            .count()
    }

    /// A fresh id for a channel or a bridge.
    pub(crate) fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The next Local channel number (`Local/100@test-0000001a`).
    pub(crate) fn new_local_number(&mut self) -> u32 {
        let n = self.next_local;
        self.next_local += 1;
        n
    }
}

#[derive(Debug)]
pub(crate) enum Ctl {
    Hangup { cause: Cause, requested: bool },
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

/// `HH:MM:SS`, as `CoreShowChannel` reports a channel's age.
pub(crate) fn duration_hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Parses `"Name" <num>` / `Name <num>` / `num` into (name, number).
pub(crate) fn parse_callerid(cid: &str) -> (String, String) {
    let cid = cid.trim();
    match (cid.find('<'), cid.rfind('>')) {
        (Some(l), Some(r)) if l < r => {
            let name = cid[..l].trim().trim_matches('"').to_string();
            (name, cid[l + 1..r].to_string())
        }
        _ => (String::new(), cid.to_string()),
    }
}

pub(crate) fn or_unknown(s: &str) -> String {
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
