//! The actions a logged-in session can run, answered in Asterisk 22's exact words and header
//! order (`tcp-basic-actions.jsonl`, `tcp-errors.jsonl`, the list fixtures...).

use std::time::{Duration, SystemTime};

use regex::Regex;

use super::calls::ast::Cause;
use super::calls::channel::{send, set_var};
use super::calls::events::{bridge_fields, snapshot};
use super::calls::model::{ChanId, Ctl, Program, duration_hms};
use super::calls::originate::{OriginateReq, originate, originate_response};
use super::calls::vars::lookup;
use super::cli;
use super::commands::COMMANDS;
use super::config::CommandStyle;
use super::core::lock;
use super::session::{Filter, Flow, Method, Session, event_mask};
use super::time::Stamp;
use super::wire::{Event, Out, class, header, headers_all, wait_event_reply};
use crate::proto::Message;

/// Asterisk writes the ActionID of CoreSettings/CoreStatus through a 150-byte buffer: longer
/// IDs are cut and lose their CRLF (`tcp-long-actionid.jsonl`).
fn truncated_id_response(id: Option<&str>) -> Out {
    let mut out = Out::default();
    out.push("Response", "Success");
    if let Some(id) = id {
        let line = format!("ActionID: {id}\r\n");
        let bytes = line.as_bytes();
        out.raw(bytes.get(..149).unwrap_or(bytes));
    }
    out
}

impl Session {
    pub(crate) async fn action(&mut self, name: &str, m: &Message, id: Option<&str>) -> Flow {
        let Some((canonical, _, privs)) = COMMANDS
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        else {
            let msg = format!(
                "Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."
            );
            let flow = self.reply(Out::error(id, &msg)).await;
            self.security_bad_format(name);
            return flow;
        };
        let needed = class::privilege(privs);
        let write = self.user.as_ref().map_or(0, |u| u.write);
        if needed != 0 && needed & write == 0 {
            let flow = self.reply(Out::error(id, "Permission denied")).await;
            self.security_event("RequestNotAllowed", "Error", Some(canonical));
            return flow;
        }
        if self.core.cfg.faults.close_mid_message && self.actions_since_login == 1 {
            let reply = Out::success(id).h("Message", "Half of a reply").finish();
            let _ = self
                .write(reply.get(..reply.len() / 2).unwrap_or_default())
                .await;
            return Flow::Close;
        }
        match canonical.to_ascii_lowercase().as_str() {
            "ping" => {
                if self.core.cfg.faults.ignore_pings {
                    return Flow::Continue;
                }
                let ts = Stamp::of(SystemTime::now()).epoch_micros();
                self.reply(Out::success(id).h("Ping", "Pong").h("Timestamp", &ts))
                    .await
            }
            "login" => {
                self.reply(Out::success(id).h("Message", "Already authenticated"))
                    .await
            }
            "logoff" => self.logoff(id).await,
            "challenge" => self.challenge(m, id).await,
            "coresettings" => self.core_settings(id).await,
            "corestatus" => self.core_status(id).await,
            "getvar" => self.getvar(m, id).await,
            "setvar" => self.setvar(m, id).await,
            "events" => match header(m, "EventMask") {
                Some(mask) => {
                    self.event_mask = event_mask(&mask);
                    let on = if self.event_mask != 0 { "On" } else { "Off" };
                    self.reply(Out::success(id).h("Events", on)).await
                }
                None => self.reply(Out::error(id, "Invalid event mask")).await,
            },
            "filter" => self.filter(m, id).await,
            "userevent" => self.user_event(m, id).await,
            "command" => self.command(m, id).await,
            "listcommands" => {
                let mut out = Out::success(id);
                for (n, synopsis, privs) in COMMANDS {
                    let needed = class::privilege(privs);
                    if needed == 0 || needed & write != 0 {
                        out.push(n, &format!("{synopsis} (Priv: {privs})"));
                    }
                }
                self.reply(out).await
            }
            "waitevent" => {
                let secs = header(m, "Timeout")
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(50)
                    .min(50);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                match self.write(&wait_event_reply(id, &[])).await {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::Close,
                }
            }
            "originate" => self.originate(m, id).await,
            "hangup" => self.hangup(m, id).await,
            "redirect" => self.redirect(m, id).await,
            "coreshowchannels" => self.core_show_channels(id).await,
            "status" => self.status(m, id).await,
            "showdialplan" => self.show_dialplan(m, id).await,
            "bridgelist" => self.bridge_list(m, id).await,
            "bridgeinfo" => self.bridge_info(m, id).await,
            "devicestatelist" => {
                let items = Vec::new();
                self.list(
                    None,
                    id,
                    "Device State Changes will follow",
                    items,
                    "DeviceStateListComplete",
                    Vec::new(),
                )
                .await
            }
            "extensionstatelist" => {
                self.list(
                    None,
                    id,
                    "Extension Statuses will follow",
                    Vec::new(),
                    "ExtensionStateListComplete",
                    Vec::new(),
                )
                .await
            }
            "coreshowchannelmap" => {
                // The recorded server ends this one message with a bare LF (ami-protocol.md §1.4).
                let mut out = Out::response("Error", id);
                out.raw(b"Message: Could not get channel snapshot\n\r\n");
                self.reply(out).await
            }
            _ => {
                let msg = format!("Action {canonical} is not simulated by amiwire");
                self.reply(Out::error(id, &msg)).await
            }
        }
    }

    async fn core_settings(&mut self, id: Option<&str>) -> Flow {
        let out = truncated_id_response(id)
            .h("AMIversion", "11.0.0")
            .h("AsteriskVersion", "22.10.1")
            .h("SystemName", "")
            .h("CoreMaxCalls", "5000")
            .h("CoreMaxLoadAvg", "0.000000")
            .h("CoreRunUser", "")
            .h("CoreRunGroup", "")
            .h("CoreMaxFilehandles", "8192")
            .h("CoreRealTimeEnabled", "No")
            .h("CoreCDRenabled", "Yes")
            .h("CoreHTTPenabled", "Yes")
            .h("SoundsSearchCustomDir", "No");
        self.reply(out).await
    }

    async fn core_status(&mut self, id: Option<&str>) -> Flow {
        let started = Stamp::of(self.core.started);
        let current = lock(&self.core.calls).active_calls();
        let processed = self
            .core
            .calls_processed
            .load(std::sync::atomic::Ordering::Relaxed);
        let out = truncated_id_response(id)
            .h("CoreStartupDate", &started.date())
            .h("CoreStartupTime", &started.time())
            .h("CoreReloadDate", &started.date())
            .h("CoreReloadTime", &started.time())
            .h("CoreCurrentCalls", &current.to_string())
            .h("CoreProcessedCalls", &processed.to_string());
        self.reply(out).await
    }

    async fn getvar(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(var) = header(m, "Variable") else {
            return self.reply(Out::error(id, "No variable specified")).await;
        };
        let chan = match self.optional_channel(m) {
            Ok(chan) => chan,
            Err(()) => return self.reply(Out::error(id, "No such channel")).await,
        };
        // Getvar does not expand ${...}: LEN(${X}) measures the literal (tcp-header-edge-cases).
        let value: String = lookup(&self.core, chan, &var).chars().take(1023).collect();
        self.reply(Out::success(id).h("Variable", &var).h("Value", &value))
            .await
    }

    /// The channel a Getvar/Setvar names, if any; `Err` when it names one that does not exist.
    fn optional_channel(&self, m: &Message) -> Result<Option<ChanId>, ()> {
        match header(m, "Channel").filter(|c| !c.is_empty()) {
            Some(name) => lock(&self.core.calls).find(&name).map(Some).ok_or(()),
            None => Ok(None),
        }
    }

    async fn setvar(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(var) = header(m, "Variable") else {
            return self.reply(Out::error(id, "No variable specified")).await;
        };
        let value = header(m, "Value").unwrap_or_default();
        let chan = match self.optional_channel(m) {
            Ok(chan) => chan,
            Err(()) => return self.reply(Out::error(id, "No such channel")).await,
        };
        let flow = self
            .reply(Out::success(id).h("Message", "Variable Set"))
            .await;
        match chan {
            Some(c) => {
                set_var(&self.core, c, &var, &value);
            }
            None => {
                let name = var
                    .strip_prefix("GLOBAL(")
                    .and_then(|v| v.strip_suffix(')'))
                    .unwrap_or(&var)
                    .to_string();
                lock(&self.core.globals).insert(name.clone(), value.clone());
                self.core.emit(Event::build(
                    "VarSet",
                    "dialplan,all",
                    &[
                        ("Channel", "none"),
                        ("Uniqueid", "none"),
                        ("Variable", &name),
                        ("Value", &value),
                    ],
                ));
            }
        }
        flow
    }

    async fn filter(&mut self, m: &Message, id: Option<&str>) -> Flow {
        if header(m, "Operation").is_some_and(|op| !op.eq_ignore_ascii_case("add")) {
            return self.reply(Out::error(id, "Unknown operation")).await;
        }
        match parse_filter(header(m, "MatchCriteria").as_deref(), header(m, "Filter")) {
            Ok(f) => {
                self.filters.push(f);
                self.reply(Out::success(id).h("Message", "Success")).await
            }
            Err(msg) => self.reply(Out::error(id, msg)).await,
        }
    }

    async fn user_event(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let name = header(m, "UserEvent").unwrap_or_default();
        let mut ev = Out::event("UserEvent")
            .h("Privilege", "user,all")
            .h("UserEvent", &name);
        for h in m.headers() {
            let key = crate::proto::decode_text(h.name);
            if key.eq_ignore_ascii_case("Action") || key.eq_ignore_ascii_case("UserEvent") {
                continue;
            }
            ev.push(&key, &crate::proto::decode_text(h.value));
        }
        let flow = self
            .reply(Out::success(id).h("Message", "Event Sent"))
            .await;
        self.core
            .emit(Event::new("UserEvent", class::USER, ev.finish()));
        flow
    }

    async fn command(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(command) = header(m, "Command") else {
            return self.reply(Out::error(id, "No command provided")).await;
        };
        if cli::blacklisted(&command) {
            return self.reply(Out::error(id, "Command blacklisted")).await;
        }
        let result = cli::run(&self.core, &command);
        match self.core.cfg.command_style {
            CommandStyle::Output => {
                let (kind, lines) = match result {
                    Ok(lines) => ("Success", lines),
                    Err(lines) => ("Error", lines),
                };
                let mut out = Out::response(kind, id).h("Message", "Command output follows");
                // An empty output is still one (empty) line: `channel request hangup all`
                // with no channels answers `Output: ` (tcp-live-state-calls.jsonl).
                if lines.is_empty() {
                    out.push("Output", "");
                }
                for line in &lines {
                    out.push("Output", line);
                }
                self.reply(out).await
            }
            CommandStyle::Legacy => {
                // Asterisk <= 13 (tcp-command-legacy.jsonl): raw text with bare LFs, closed
                // by the end marker; the closing CRLF CRLF comes from `finish`.
                let lines = result.unwrap_or_else(|lines| lines);
                let mut out = Out::response("Follows", None).h("Privilege", "Command");
                if let Some(id) = id {
                    out.push("ActionID", id);
                }
                for line in &lines {
                    out.raw(line.as_bytes());
                    out.raw(b"\n");
                }
                out.raw(b"--END COMMAND--\r\n");
                self.reply(out).await
            }
        }
    }

    async fn originate(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(channel) = header(m, "Channel") else {
            return self.reply(Out::error(id, "Channel not specified")).await;
        };
        if !channel.contains('/') {
            return self.reply(Out::error(id, "Invalid channel")).await;
        }
        let timeout_ms = header(m, "Timeout")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(30_000);
        let req = OriginateReq {
            channel,
            context: header(m, "Context"),
            exten: header(m, "Exten"),
            priority: header(m, "Priority")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(1),
            application: header(m, "Application"),
            data: header(m, "Data").unwrap_or_default(),
            callerid: header(m, "CallerID"),
            variables: headers_all(m, "Variable")
                .iter()
                .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect(),
            timeout: self.core.scaled(timeout_ms as f64 / 1000.0),
            action_id: id.map(str::to_string),
            token: None,
            uniqueids: [header(m, "ChannelId"), header(m, "OtherChannelId")],
        };
        let is_async = header(m, "Async").is_some_and(|a| {
            ["true", "yes", "1", "on"]
                .iter()
                .any(|w| a.trim().eq_ignore_ascii_case(w))
        });
        if is_async {
            let core = self.core.clone();
            tokio::spawn(async move {
                let result = originate(&core, req.clone()).await;
                originate_response(&core, &req, &result);
            });
            return self
                .reply(Out::success(id).h("Message", "Originate successfully queued"))
                .await;
        }
        let result = originate(&self.core, req).await;
        if result.success {
            self.reply(Out::success(id).h("Message", "Originate successfully queued"))
                .await
        } else {
            self.reply(Out::error(id, "Originate failed")).await
        }
    }

    async fn hangup(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(name) = header(m, "Channel").filter(|c| !c.is_empty()) else {
            return self.reply(Out::error(id, "No channel specified")).await;
        };
        let cause = header(m, "Cause")
            .and_then(|c| c.trim().parse().ok())
            .map_or(Cause::NORMAL_CLEARING, Cause);
        if let Some(pattern) = name
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix('/'))
            .filter(|p| !p.is_empty())
        {
            let Ok(re) = Regex::new(pattern) else {
                return self.reply(Out::error(id, "Invalid regex")).await;
            };
            let matched: Vec<(u64, String)> = lock(&self.core.calls)
                .channels
                .iter()
                .filter(|(_, c)| re.is_match(&c.name))
                .map(|(i, c)| (*i, c.name.clone()))
                .collect();
            let mut items = Vec::new();
            for (chan, chan_name) in &matched {
                send(
                    &self.core,
                    *chan,
                    Ctl::Hangup {
                        cause,
                        requested: true,
                    },
                );
                items.push(
                    Out::event("ChannelHungup")
                        .h("Channel", chan_name)
                        .id(id)
                        .finish(),
                );
            }
            return self
                .list(
                    None,
                    id,
                    "Channels hung up will follow",
                    items,
                    "ChannelsHungupListComplete",
                    Vec::new(),
                )
                .await;
        }
        let found = lock(&self.core.calls).find(&name);
        match found {
            Some(chan) => {
                send(
                    &self.core,
                    chan,
                    Ctl::Hangup {
                        cause,
                        requested: true,
                    },
                );
                self.reply(Out::success(id).h("Message", "Channel Hungup"))
                    .await
            }
            None => self.reply(Out::error(id, "No such channel")).await,
        }
    }

    async fn redirect(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(name) = header(m, "Channel").filter(|c| !c.is_empty()) else {
            return self.reply(Out::error(id, "Channel not specified")).await;
        };
        let target = |prefix: &str| Program::Dialplan {
            context: header(m, &format!("{prefix}Context")).unwrap_or_default(),
            exten: header(m, &format!("{prefix}Exten")).unwrap_or_default(),
            priority: header(m, &format!("{prefix}Priority"))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(1),
        };
        let (chan, extra) = {
            let calls = lock(&self.core.calls);
            (
                calls.find(&name),
                header(m, "ExtraChannel").map(|x| (calls.find(&x), x)),
            )
        };
        let Some(chan) = chan else {
            let msg = format!("Channel does not exist: {name}");
            return self.reply(Out::error(id, &msg)).await;
        };
        match extra {
            Some((Some(extra), _)) => {
                send(&self.core, chan, Ctl::Redirect(target("")));
                send(&self.core, extra, Ctl::Redirect(target("Extra")));
                self.reply(Out::success(id).h("Message", "Dual Redirect successful"))
                    .await
            }
            Some((None, x)) => {
                let msg = format!("ExtraChannel does not exist: {x}");
                self.reply(Out::error(id, &msg)).await
            }
            None => {
                send(&self.core, chan, Ctl::Redirect(target("")));
                self.reply(Out::success(id).h("Message", "Redirect successful"))
                    .await
            }
        }
    }

    /// A list reply: start, the items, then `<Complete>` with `ListItems` and extra headers.
    /// Items built from the call tables when event `reflects` was next go out after exactly
    /// the call events before it, so a client applying events in order holds, at the answer's
    /// end, the state the answer shows.
    async fn list(
        &mut self,
        reflects: Option<u64>,
        id: Option<&str>,
        message: &str,
        items: Vec<Vec<u8>>,
        complete: &str,
        extra: Vec<(String, String)>,
    ) -> Flow {
        let next = match reflects {
            Some(upto) => match self.deliver_before(upto).await {
                Ok(next) => next,
                Err(_) => return Flow::Close,
            },
            None => None,
        };
        let mut bytes = Out::success(id)
            .h("EventList", "start")
            .h("Message", message)
            .finish();
        if self.core.cfg.faults.close_mid_list {
            if let Some(first) = items.first() {
                bytes.extend_from_slice(first);
            }
            let _ = self.write(&bytes).await;
            return Flow::Close;
        }
        let count = items.len();
        for item in items {
            bytes.extend_from_slice(&item);
        }
        let mut done = Out::event(complete)
            .id(id)
            .h("EventList", "Complete")
            .h("ListItems", &count.to_string());
        for (k, v) in &extra {
            done.push(k, v);
        }
        bytes.extend_from_slice(&done.finish());
        if self.write(&bytes).await.is_err() {
            return Flow::Close;
        }
        match next {
            Some(ev) if self.deliver(&ev).await.is_err() => Flow::Close,
            _ => Flow::Continue,
        }
    }

    async fn core_show_channels(&mut self, id: Option<&str>) -> Flow {
        let (upto, items): (u64, Vec<Vec<u8>>) = {
            let calls = lock(&self.core.calls);
            let items = calls
                .channels
                .values()
                .rev()
                .map(|c| {
                    let bridge = calls.bridge_uid(c);
                    let mut out = Out::event("CoreShowChannel").id(id);
                    snapshot(&mut out, "", c);
                    out.h("Application", &c.app)
                        .h("ApplicationData", &c.appdata)
                        .h("Duration", &duration_hms(c.created.elapsed()))
                        .h("BridgeId", &bridge)
                        .finish()
                })
                .collect();
            (self.core.next_seq(), items)
        };
        self.list(
            Some(upto),
            id,
            "Channels will follow",
            items,
            "CoreShowChannelsComplete",
            Vec::new(),
        )
        .await
    }

    async fn status(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let only = header(m, "Channel").filter(|c| !c.is_empty());
        let upto;
        let items: Option<Vec<Vec<u8>>> = {
            let calls = lock(&self.core.calls);
            upto = self.core.next_seq();
            if only.as_ref().is_some_and(|n| calls.find(n).is_none()) {
                None
            } else {
                Some(
                    calls
                        .channels
                        .values()
                        .rev()
                        .filter(|c| only.as_ref().is_none_or(|n| *n == c.name))
                        .map(|c| {
                            let bridge = calls.bridge_uid(c);
                            let mut out = Out::event("Status").h("Privilege", "Call");
                            snapshot(&mut out, "", c);
                            out.h("Type", "Local")
                                .h("DNID", "")
                                .h("EffectiveConnectedLineNum", &c.conn_num)
                                .h("EffectiveConnectedLineName", &c.conn_name)
                                .h("TimeToHangup", "0")
                                .h("BridgeID", &bridge)
                                .h("Application", &c.app)
                                .h("Data", &c.appdata)
                                .h("Nativeformats", "(slin)")
                                .h("Readformat", "slin")
                                .h("Readtrans", "")
                                .h("Writeformat", "slin")
                                .h("Writetrans", "")
                                .h("Callgroup", "0")
                                .h("Pickupgroup", "0")
                                .h("Seconds", &c.created.elapsed().as_secs().to_string())
                                .id(id)
                                .finish()
                        })
                        .collect(),
                )
            }
        };
        let Some(items) = items else {
            return self.reply(Out::error(id, "No such channel")).await;
        };
        let n = items.len().to_string();
        self.list(
            Some(upto),
            id,
            "Channel status will follow",
            items,
            "StatusComplete",
            vec![("Items".into(), n)],
        )
        .await
    }

    async fn show_dialplan(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let plan = self.core.cfg.dialplan.clone();
        let want_ctx = header(m, "Context").filter(|c| !c.is_empty());
        let want_ext = header(m, "Extension").filter(|c| !c.is_empty());
        let contexts: Vec<_> = plan
            .contexts
            .iter()
            .filter(|c| want_ctx.as_ref().is_none_or(|w| *w == c.name))
            .collect();
        if contexts.is_empty() {
            let msg = match &want_ctx {
                Some(ctx) => format!("Did not find context {ctx}"),
                None => "No dialplan".to_string(),
            };
            return self.reply(Out::error(id, &msg)).await;
        }
        let (mut items, mut exts) = (Vec::new(), 0usize);
        for ctx in &contexts {
            for ext in ctx
                .extensions
                .iter()
                .filter(|e| want_ext.as_ref().is_none_or(|w| *w == e.name))
            {
                exts += 1;
                for step in &ext.steps {
                    items.push(
                        Out::event("ListDialplan")
                            .id(id)
                            .h("Context", &ctx.name)
                            .h("Extension", &ext.name)
                            .h("Priority", &step.priority.to_string())
                            .h("Application", &step.app)
                            .h("AppData", &step.data)
                            .h("Registrar", "pbx_config")
                            .finish(),
                    );
                }
            }
        }
        let prios = items.len().to_string();
        let extra = vec![
            ("ListExtensions".to_string(), exts.to_string()),
            ("ListPriorities".to_string(), prios),
            ("ListContexts".to_string(), contexts.len().to_string()),
        ];
        self.list(
            None,
            id,
            "DialPlan list will follow",
            items,
            "ShowDialPlanComplete",
            extra,
        )
        .await
    }

    async fn bridge_list(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let kind = header(m, "BridgeType").filter(|t| !t.is_empty());
        let (upto, items) = {
            let calls = lock(&self.core.calls);
            let items = if kind.as_ref().is_some_and(|k| k != "basic") {
                Vec::new()
            } else {
                calls
                    .bridges
                    .values()
                    .map(|b| {
                        let mut out = Out::event("BridgeListItem").id(id);
                        for (k, v) in bridge_fields(b) {
                            out.push(k, &v);
                        }
                        out.finish()
                    })
                    .collect()
            };
            (self.core.next_seq(), items)
        };
        self.list(
            Some(upto),
            id,
            "Bridge listing will follow",
            items,
            "BridgeListComplete",
            Vec::new(),
        )
        .await
    }

    async fn bridge_info(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let Some(uid) = header(m, "BridgeUniqueid").filter(|b| !b.is_empty()) else {
            return self
                .reply(Out::error(id, "BridgeUniqueid must be provided"))
                .await;
        };
        let (upto, found) = {
            let calls = lock(&self.core.calls);
            let found = calls.bridges.values().find(|b| b.uniqueid == uid).map(|b| {
                // Asterisk keeps a bridge snapshot's channels in a string container sorted by
                // uniqueid (`ast_str_container_alloc()`), not in the order they entered.
                let mut members: Vec<_> = b
                    .members
                    .iter()
                    .filter_map(|m| calls.channels.get(m))
                    .collect();
                members.sort_by(|x, y| x.uniqueid.cmp(&y.uniqueid));
                let items: Vec<Vec<u8>> = members
                    .into_iter()
                    .map(|c| {
                        let mut out = Out::event("BridgeInfoChannel").id(id);
                        snapshot(&mut out, "", c);
                        out.finish()
                    })
                    .collect();
                let extra = bridge_fields(b)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                (items, extra)
            });
            (self.core.next_seq(), found)
        };
        match found {
            Some((items, extra)) => {
                self.list(
                    Some(upto),
                    id,
                    "Bridge channel listing will follow",
                    items,
                    "BridgeInfoComplete",
                    extra,
                )
                .await
            }
            None => {
                let msg = format!("Bridge {uid} not found");
                self.reply(Out::error(id, &msg)).await
            }
        }
    }
}

/// `Action: Filter`: legacy regex (`!` = exclude) over the whole event, or the structured
/// `MatchCriteria: action(..),name(..),header(..),method(..)` form.
pub(crate) fn parse_filter(
    criteria: Option<&str>,
    expr: Option<String>,
) -> Result<Filter, &'static str> {
    const BAD_REGEX: &str = "Filter did not compile.  Check the syntax of the filter given.";
    let Some(criteria) = criteria.filter(|c| !c.trim().is_empty()) else {
        let expr = expr.unwrap_or_default();
        let (include, pattern) = match expr.strip_prefix('!') {
            Some(p) => (false, p.to_string()),
            None => (true, expr),
        };
        let regex = Regex::new(&pattern).map_err(|_| BAD_REGEX)?;
        return Ok(Filter {
            include,
            name: None,
            header: None,
            method: Method::Regex,
            expr: pattern,
            regex: Some(regex),
        });
    };
    let mut f = Filter {
        include: true,
        name: None,
        header: None,
        method: Method::None,
        expr: expr.unwrap_or_default(),
        regex: None,
    };
    for part in criteria.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .strip_suffix(')')
            .and_then(|p| p.split_once('('))
            .ok_or("Invalid match criteria")?;
        match key.trim().to_ascii_lowercase().as_str() {
            "action" => f.include = !value.eq_ignore_ascii_case("exclude"),
            "name" => f.name = Some(value.to_string()),
            "header" => f.header = Some(value.to_string()),
            "method" => {
                f.method = match value.to_ascii_lowercase().as_str() {
                    "regex" => Method::Regex,
                    "exact" => Method::Exact,
                    "starts_with" => Method::StartsWith,
                    "ends_with" => Method::EndsWith,
                    "contains" => Method::Contains,
                    "none" => Method::None,
                    _ => return Err("Invalid match criteria"),
                }
            }
            _ => return Err("Invalid match criteria"),
        }
    }
    if f.method == Method::Regex {
        f.regex = Some(Regex::new(&f.expr).map_err(|_| BAD_REGEX)?);
    }
    Ok(f)
}
