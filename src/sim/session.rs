//! One client connection: banner, login, the action loop, event delivery, faults.
//!
//! A connection runs its actions one after another, as Asterisk does: a slow action (a sync
//! Originate, WaitEvent) holds back the replies and events behind it. Events queue in the
//! session's channel meanwhile and go out after the reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::config::User;
use super::core::{Core, stopped};
use super::firehose;
use super::input::{Input, Problem, Request};
use super::stream::{Stream, Writer};
use super::time::Stamp;
use super::wire::{Event, Out, class, header};
use crate::proto::{Message, md5_key};

pub(crate) const BANNER: &[u8] = b"Asterisk Call Manager/11.0.0\r\n";

/// What the loop does after an action.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
    /// Fault: neither read nor write any more.
    Stall,
    /// Stream the firehose now.
    Firehose,
}

/// An event filter added with `Action: Filter` (ami-protocol.md §7).
#[derive(Debug)]
pub(crate) struct Filter {
    pub(crate) include: bool,
    pub(crate) name: Option<String>,
    pub(crate) header: Option<String>,
    pub(crate) method: Method,
    pub(crate) expr: String,
    pub(crate) regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    None,
    Regex,
    Exact,
    StartsWith,
    EndsWith,
    Contains,
}

impl Filter {
    pub(crate) fn matches(&self, ev: &Event) -> bool {
        if self.name.as_deref().is_some_and(|n| n != &*ev.name) {
            return false;
        }
        let subject = match &self.header {
            Some(h) => match ev.header(h) {
                Some(v) => v,
                None => return false,
            },
            None => ev.text().into_owned(),
        };
        match self.method {
            Method::None => true,
            Method::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(&subject)),
            Method::Exact => subject == self.expr,
            Method::StartsWith => subject.starts_with(&self.expr),
            Method::EndsWith => subject.ends_with(&self.expr),
            Method::Contains => subject.contains(&self.expr),
        }
    }
}

pub(crate) struct Session {
    pub(crate) core: Arc<Core>,
    wr: Writer,
    /// An AJAM session: events wait for WaitEvent instead of following replies.
    pub(crate) over_http: bool,
    pub(crate) session_id: String,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) opened: SystemTime,
    pub(crate) user: Option<User>,
    /// The session's own `EventMask` (login `Events:` or `Action: Events`).
    pub(crate) event_mask: u32,
    pub(crate) filters: Vec<Filter>,
    pub(crate) challenge: Option<String>,
    /// Set by a successful login; the loop takes it.
    pub(crate) registered: Option<(u64, mpsc::Receiver<Event>)>,
    /// A TCP session's event queue once logged in (the loop writes from it between actions).
    events: Option<mpsc::Receiver<Event>>,
    /// Actions answered since login (the close-mid-message fault hits the first).
    pub(crate) actions_since_login: u64,
    /// While set, writes collect in `out`: the replies to every action of one read leave in
    /// one write, as a busy Asterisk's would, instead of one syscall per reply.
    corked: bool,
    out: Vec<u8>,
    /// Held until login: the connection's place under `authlimit` (TCP sessions only).
    unauthenticated: Option<OwnedSemaphorePermit>,
}

/// A connection that has not logged in yet: its place among those Asterisk's `authlimit`
/// counts, and its `authtimeout` deadline (counted from the accept).
pub(crate) struct Unauthenticated {
    pub(crate) slot: OwnedSemaphorePermit,
    pub(crate) deadline: tokio::time::Instant,
}

/// Serves one AMI connection: banner, then actions until logoff, close, or the auth deadline.
pub(crate) async fn serve(
    core: Arc<Core>,
    stream: Stream,
    local: SocketAddr,
    remote: SocketAddr,
    pending: Unauthenticated,
) {
    let (mut rd, wr) = tokio::io::split(stream);
    let mut s = Session::new(core.clone(), Box::new(wr), local, remote);
    s.unauthenticated = Some(pending.slot);
    if s.write(BANNER).await.is_err() {
        return;
    }
    let mut stop = core.shutdown.clone();
    let mut disconnect = core.disconnects.subscribe();
    let mut input = Input::default();
    let mut reg_id = None;
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = disconnect.changed() => break,
            _ = tokio::time::sleep_until(pending.deadline), if s.user.is_none() => break,
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                s.corked = true;
                for request in input.feed(buf.get(..n).unwrap_or_default()) {
                    if request.message.as_ref().is_some_and(blocks) && s.uncork().await.is_err() {
                        break 'conn;
                    }
                    let flow = s.handle_request(&request).await;
                    if let Some((id, rx)) = s.registered.take() {
                        reg_id = Some(id);
                        s.events = Some(rx);
                    }
                    match flow {
                        Flow::Continue => {}
                        Flow::Close => break 'conn,
                        Flow::Stall => {
                            let _ = s.uncork().await;
                            stopped(&mut core.shutdown.clone()).await;
                            break 'conn;
                        }
                        Flow::Firehose => {
                            if s.uncork().await.is_err() || s.firehose().await.is_err() {
                                break 'conn;
                            }
                        }
                    }
                    if s.deliver_before(u64::MAX).await.is_err() {
                        break 'conn;
                    }
                }
                if s.uncork().await.is_err() {
                    break;
                }
            }
            Some(ev) = async { s.events.as_mut()?.recv().await }, if s.events.is_some() => {
                if s.deliver(&ev).await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(id) = reg_id {
        core.unregister(id);
    }
    let _ = s.uncork().await;
    let _ = s.wr.shutdown().await;
}

/// Actions that hold the connection (a sync Originate waits for the answer, WaitEvent for its
/// timeout): the replies before them must not wait with them.
fn blocks(msg: &Message) -> bool {
    let action = msg.get("Action").unwrap_or_default();
    action.eq_ignore_ascii_case("WaitEvent")
        || (action.eq_ignore_ascii_case("Originate")
            && !msg.get("Async").is_some_and(|v| {
                ["true", "yes", "1"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t))
            }))
}

impl Session {
    pub(crate) fn new(
        core: Arc<Core>,
        wr: Writer,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Session {
        Session {
            core,
            wr,
            over_http: false,
            session_id: format!("0x7f{:010x}", fastrand::u64(..1 << 40)),
            local,
            remote,
            opened: SystemTime::now(),
            user: None,
            event_mask: class::ALL,
            filters: Vec::new(),
            challenge: None,
            registered: None,
            events: None,
            actions_since_login: 0,
            corked: false,
            out: Vec::new(),
            unauthenticated: None,
        }
    }

    /// Sends what collected while corked, and stops collecting.
    async fn uncork(&mut self) -> std::io::Result<()> {
        self.corked = false;
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.send(&out).await;
        self.out = out;
        self.out.clear();
        written?;
        self.wr.flush().await
    }

    /// Writes everything, each write allowed `write_timeout` to make progress: a reader that
    /// stops reading for longer is disconnected, as Asterisk's `writetimeout` does.
    async fn send(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        let limit = self.core.cfg.write_timeout;
        while !bytes.is_empty() {
            let n = match limit {
                Some(limit) => tokio::time::timeout(limit, self.wr.write(bytes))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "writetimeout: the client stopped reading",
                        )
                    })??,
                None => self.wr.write(bytes).await?,
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            (self.core.bytes_sent).fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            bytes = bytes.get(n..).unwrap_or_default();
        }
        Ok(())
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.corked && self.core.cfg.faults.drip.is_none() {
            self.out.extend_from_slice(bytes);
            return Ok(());
        }
        if let Some(pause) = self.core.cfg.faults.drip {
            for b in bytes {
                self.wr.write_all(std::slice::from_ref(b)).await?;
                self.wr.flush().await?;
                tokio::time::sleep(pause).await;
            }
            Ok(())
        } else {
            self.send(bytes).await?;
            self.wr.flush().await
        }
    }

    /// Writes a reply; a write error ends the connection.
    pub(crate) async fn reply(&mut self, out: Out) -> Flow {
        match self.write(&out.finish()).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    /// Whether this session gets `ev`: the user's read classes, the session mask, then filters
    /// (includes first, then excludes).
    pub(crate) fn wants(&self, ev: &Event) -> bool {
        let read = self.user.as_ref().map_or(0, |u| u.read);
        // An event without a known class (`Privilege: all`) goes to every reader.
        let class = if ev.class == 0 { class::ALL } else { ev.class };
        if class & read & self.event_mask == 0 {
            return false;
        }
        let mut includes = self.filters.iter().filter(|f| f.include).peekable();
        if includes.peek().is_some() && !includes.any(|f| f.matches(ev)) {
            return false;
        }
        !self
            .filters
            .iter()
            .filter(|f| !f.include)
            .any(|f| f.matches(ev))
    }

    /// Writes the queued events numbered below `upto`; returns the first one that is not (it
    /// was taken from the queue, so the caller writes it next).
    pub(crate) async fn deliver_before(&mut self, upto: u64) -> std::io::Result<Option<Event>> {
        let Some(mut rx) = self.events.take() else {
            return Ok(None);
        };
        let mut result = Ok(None);
        while let Ok(ev) = rx.try_recv() {
            if ev.seq >= upto {
                result = Ok(Some(ev));
                break;
            }
            if let Err(e) = self.deliver(&ev).await {
                result = Err(e);
                break;
            }
        }
        self.events = Some(rx);
        result
    }

    pub(crate) async fn deliver(&mut self, ev: &Event) -> std::io::Result<()> {
        if self.wants(ev) {
            self.write(&ev.bytes).await
        } else {
            Ok(())
        }
    }

    /// An action as the TCP loop read it; a framing problem is answered instead of running
    /// it, as manager.c's `handle_parse_error()` and `do_message()` do.
    async fn handle_request(&mut self, request: &Request) -> Flow {
        let id = request.message.as_ref().and_then(|m| header(m, "ActionID"));
        let id = id.as_deref();
        match (request.problem, &request.message) {
            (Some(Problem::LineTooLong), _) => {
                self.reply(Out::error(id, "Failed to parse message: line too long"))
                    .await
            }
            (Some(Problem::TooManyLines), _) => {
                self.reply(Out::error(
                    id,
                    "Too many lines in message or allocation failure",
                ))
                .await
            }
            (None, Some(m)) => self.handle(m).await,
            (None, None) => self.missing_action(None).await,
        }
    }

    pub(crate) async fn handle(&mut self, m: &Message) -> Flow {
        let id = header(m, "ActionID");
        let id = id.as_deref();
        let Some(action) = header(m, "Action") else {
            return self.missing_action(id).await;
        };
        if self.user.is_none() {
            return match action.to_ascii_lowercase().as_str() {
                "login" => self.login(m, id).await,
                "challenge" => self.challenge(m, id).await,
                "logoff" => self.logoff(id).await,
                _ => self.reply(Out::error(id, "Permission denied")).await,
            };
        }
        self.actions_since_login += 1;
        let flow = self.action(&action, m, id).await;
        let trigger = self
            .core
            .cfg
            .firehose
            .as_ref()
            .and_then(|f| f.after_action.as_deref());
        match flow {
            Flow::Continue if trigger.is_some_and(|t| t.eq_ignore_ascii_case(&action)) => {
                Flow::Firehose
            }
            other => other,
        }
    }

    async fn missing_action(&mut self, id: Option<&str>) -> Flow {
        let flow = self
            .reply(Out::error(id, "Missing action in request"))
            .await;
        self.security_bad_format("NONE");
        flow
    }

    /// Streams the configured firehose, `repeats` times.
    async fn firehose(&mut self) -> std::io::Result<()> {
        let Some(firehose) = self.core.cfg.firehose.clone() else {
            return Ok(());
        };
        let bytes = firehose::payload(&firehose.source).await?;
        for _ in 0..firehose.repeats.max(1) {
            for chunk in bytes.chunks(64 * 1024) {
                self.write(chunk).await?;
            }
        }
        Ok(())
    }

    /// `Action: Challenge`, before login or after (manager.c `action_challenge()`): the
    /// session's challenge, made on first use and kept.
    pub(crate) async fn challenge(&mut self, m: &Message, id: Option<&str>) -> Flow {
        let md5 = header(m, "AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5"));
        if !md5 {
            return self.reply(Out::error(id, "Must specify AuthType")).await;
        }
        let challenge = self
            .challenge
            .get_or_insert_with(|| fastrand::u32(100_000_000..1_000_000_000).to_string())
            .clone();
        self.reply(Out::success(id).h("Challenge", &challenge))
            .await
    }

    async fn login(&mut self, m: &Message, id: Option<&str>) -> Flow {
        if self.core.cfg.faults.close_during_login {
            return Flow::Close;
        }
        let name = header(m, "Username").unwrap_or_default();
        let user = self
            .core
            .user(&name)
            .filter(|u| {
                let md5 = header(m, "AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5"));
                if md5 {
                    match (&self.challenge, header(m, "Key")) {
                        (Some(ch), Some(key)) => key == md5_key(ch, &u.secret),
                        _ => false,
                    }
                } else {
                    header(m, "Secret").is_some_and(|s| s == u.secret)
                }
            })
            // The session keeps the name as typed (manager.c `authenticate()`): AccountID.
            .map(|u| User {
                name: name.clone(),
                ..u.clone()
            });
        let Some(user) = user else {
            tokio::time::sleep(self.core.cfg.auth_fail_delay).await;
            let _ = self.reply(Out::error(id, "Authentication failed")).await;
            return Flow::Close;
        };
        if let Some(events) = header(m, "Events") {
            self.event_mask = event_mask(&events);
        }
        self.user = Some(user);
        // Logged in: no longer counted against `authlimit` (manager.c `action_login()`).
        self.unauthenticated = None;
        let reply = Out::success(id).h("Message", "Authentication accepted");
        if self.reply(reply).await == Flow::Close {
            return Flow::Close;
        }
        if self.core.cfg.faults.garbage_after_login
            && self
                .write(b"\x00\xff\xfegarbage without a colon\r\n\x07\x08\r\n\r\n")
                .await
                .is_err()
        {
            return Flow::Close;
        }
        self.registered = Some(self.core.register());
        let booted = Event::build(
            "FullyBooted",
            "system,all",
            &[
                ("Uptime", &self.core.uptime().as_secs().to_string()),
                ("LastReload", &self.core.uptime().as_secs().to_string()),
                ("Status", "Fully Booted"),
            ],
        );
        // FullyBooted goes to this session only (and never into an HTTP reply); SuccessfulAuth
        // is a broadcast security event.
        if !self.over_http && self.wants(&booted) && self.write(&booted.bytes).await.is_err() {
            return Flow::Close;
        }
        self.security_event("SuccessfulAuth", "Informational", None);
        if self.core.cfg.faults.stall_after_login {
            return Flow::Stall;
        }
        if self
            .core
            .cfg
            .firehose
            .as_ref()
            .is_some_and(|f| f.after_action.is_none())
        {
            return Flow::Firehose;
        }
        Flow::Continue
    }

    pub(crate) async fn logoff(&mut self, id: Option<&str>) -> Flow {
        let _ = self
            .reply(Out::response("Goodbye", id).h("Message", "Thanks for all the fish."))
            .await;
        Flow::Close
    }

    fn address(&self, addr: SocketAddr) -> String {
        let family = if addr.is_ipv4() { "IPV4" } else { "IPV6" };
        let proto = if self.core.cfg.tls.is_some() {
            "TLS"
        } else {
            "TCP"
        };
        format!("{family}/{proto}/{}/{}", addr.ip(), addr.port())
    }

    /// Security events (`Privilege: security,all`) in the recorded header order.
    pub(crate) fn security_event(&self, name: &str, severity: &str, request: Option<&str>) {
        let now = Stamp::of(SystemTime::now()).event_tv();
        let account = self
            .user
            .as_ref()
            .map_or("", |u| u.name.as_str())
            .to_string();
        let local = self.address(self.local);
        let remote = self.address(self.remote);
        let session_tv = Stamp::of(self.opened).event_tv();
        let mut h: Vec<(&str, &str)> = vec![
            ("EventTV", &now),
            ("Severity", severity),
            ("Service", "AMI"),
            ("EventVersion", "1"),
        ];
        match (name, request) {
            ("RequestBadFormat", Some(req)) => {
                h.extend([
                    ("SessionID", self.session_id.as_str()),
                    ("LocalAddress", &local),
                    ("RemoteAddress", &remote),
                    ("RequestType", req),
                    ("SessionTV", &session_tv),
                    ("AccountID", &account),
                ]);
            }
            (_, request) => {
                h.extend([
                    ("AccountID", account.as_str()),
                    ("SessionID", &self.session_id),
                    ("LocalAddress", &local),
                    ("RemoteAddress", &remote),
                ]);
                match request {
                    Some(req) => h.push(("RequestType", req)),
                    None => h.push(("UsingPassword", "0")),
                }
                h.push(("SessionTV", &session_tv));
            }
        }
        self.core.emit(Event::build(name, "security,all", &h));
    }

    pub(crate) fn security_bad_format(&self, action: &str) {
        if self.user.is_some() {
            let req = format!("Action: {action}");
            self.security_event("RequestBadFormat", "Error", Some(&req));
        }
    }
}

/// `Events:` / `EventMask:` values: on/off words, a number, or a list of classes.
pub(crate) fn event_mask(value: &str) -> u32 {
    let v = value.trim();
    if ["on", "yes", "true"]
        .iter()
        .any(|w| v.eq_ignore_ascii_case(w))
    {
        class::ALL
    } else if ["off", "no", "false"]
        .iter()
        .any(|w| v.eq_ignore_ascii_case(w))
    {
        0
    } else if let Ok(n) = v.parse::<u32>() {
        n & class::ALL
    } else {
        class::parse(v)
    }
}
