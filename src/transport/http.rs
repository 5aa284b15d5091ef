//! AMI over HTTP (AJAM): the same `Client` handle, driven by HTTP requests instead of a socket.
//!
//! Each action is one request (reqwest keeps the connections alive and pools them); its body
//! holds the whole answer, list items included, so it is correlated on its own. Events only
//! arrive in `WaitEvent` replies: one long-poll task keeps exactly one WaitEvent in flight
//! (a second one on the same session would make Asterisk return the first empty) and feeds the
//! same bounded subscriber queues as TCP. An async Originate's `OriginateResponse` arrives in
//! a poll, so tracked originates wait in a correlator the poller routes into.
//!
//! Sessions: cookie endpoints log in with the Login action and send `mansession_id` back;
//! Asterisk answers an expired session with 200 + `Permission denied` (no 401), which is
//! detected, answered by logging in again and restoring the event mask and filters (event
//! streams note a gap), and the refused action is sent once more (it was not executed).
//! Digest endpoints answer the 401 challenge, count `nc`, retry a stale nonce, and start a
//! new session (restored the same way) when the server forgot one it had accepted; the
//! secret never crosses the wire there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, warn};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::budget::{ByteBudget, Held};
use super::command::{Command, Reply, Request};
use super::deadline::Deadline;
use super::events::Subscription;
use super::options::{Auth, EventMask, Http, Options};
use super::outcome::{closed, judge, local_outcome, lost};
use super::shared::{Info, Shared};
use super::state::State;
use crate::error::{Error, Result};
use crate::proto::http::{
    self as ajam, DigestSession, Endpoint, Method, Retry, SessionCookie, parse_body,
    parse_set_cookie, session_expired, split_wait_event, wait_event_timeout,
};
use crate::proto::{Action, ActionIds, Correlator, Expect, Message, Replay, Routed, md5_key};

/// 401s one request answers with a retry before giving up on the server.
const MAX_DIGEST_RETRIES: u32 = 30;

/// The least time between the starts of two WaitEvent polls: after one that brought events,
/// and after one that came back empty before its timeout (a server answering at once).
const POLL_PACE: Duration = Duration::from_millis(20);
const EMPTY_POLL_PACE: Duration = Duration::from_millis(500);

/// Bodies smaller than this are parsed in place: handing them to the blocking pool costs
/// more than parsing them.
const PARSE_INLINE: usize = 64 * 1024;

struct Session {
    cookie: Option<SessionCookie>,
    digest: Option<DigestSession>,
}

struct Pending {
    reply: Reply,
    action: String,
    started: Instant,
}

struct Ajam {
    options: Options,
    http: Http,
    client: reqwest::Client,
    base: String,
    session: Mutex<Session>,
    ids: Mutex<ActionIds>,
    shared: Arc<Shared>,
    /// Async originates waiting for their OriginateResponse from the poller.
    originates: Mutex<Correlator<Pending>>,
    /// Async originates sent but not yet registered in `originates`, with an
    /// OriginateResponse the poller brought before their own reply did (locked after
    /// `originates`, never before).
    early: Mutex<HashMap<String, Option<Message>>>,
    /// Digest actions go one at a time: Asterisk renews the nonce (401 stale) whenever an
    /// `nc` arrives lower than one already seen, which concurrent requests cause.
    digest_turn: tokio::sync::Mutex<()>,
    wake_deadlines: tokio::sync::Notify,
    /// The bytes of the bodies being read at once (`Http::max_bodies`).
    bodies: ByteBudget,
    /// Sent again to the new session after a re-login.
    setup: Mutex<Replay>,
}

impl Ajam {
    fn next_id(&self) -> String {
        self.ids
            .lock()
            .map(|mut ids| ids.next_id())
            .unwrap_or_else(|_| format!("{:08x}", fastrand::u32(..)))
    }

    /// One request and its parsed body, with the session's credentials. Handles the Digest
    /// challenge (and stale nonces) and, for cookie sessions, one transparent re-login when
    /// the session turns out to have expired: every retry within the action's one `deadline`.
    async fn send(
        &self,
        action: &Action,
        id: &str,
        deadline: Deadline,
        may_relogin: bool,
    ) -> Result<Vec<Message>> {
        let endpoint = self.http.endpoint;
        let mut relogged = false;
        let mut challenges = 0;
        let timed_out = || Error::Timeout {
            action: action.name().into(),
            action_id: id.into(),
            seconds: deadline.total.as_secs_f64(),
            partial: None,
        };
        loop {
            let timeout = deadline.remaining().ok_or_else(timed_out)?;
            let request =
                ajam::Request::new(endpoint, &self.http.prefix, Method::Post, action, Some(id))?;
            let (cookie, authorization, sent_under) = {
                let mut session = self
                    .session
                    .lock()
                    .map_err(|_| Error::Internal("session lock".into()))?;
                let (auth, generation) = match session.digest.as_mut() {
                    Some(digest) => (
                        digest.authorization(request.method, &request.target)?,
                        digest.generation(),
                    ),
                    None => (None, 0),
                };
                let sent_under = auth.as_ref().map(|_| generation);
                (session.cookie.clone(), auth, sent_under)
            };
            let mut builder = self
                .client
                .post(format!("{}{}", self.base, request.target))
                .timeout(timeout)
                .header(reqwest::header::CONTENT_TYPE, ajam::FORM_CONTENT_TYPE)
                .body(request.body.clone());
            if let Some(cookie) = &cookie {
                builder = builder.header(reqwest::header::COOKIE, cookie.header_value());
            }
            if let Some(auth) = authorization {
                builder = builder.header(reqwest::header::AUTHORIZATION, auth);
            }
            let response = builder.send().await.map_err(|e| {
                if e.is_timeout() {
                    timed_out()
                } else {
                    lost(format!("HTTP request to {}: {}", self.base, describe(&e)))
                }
            })?;
            let status = response.status();
            if status.is_redirection() {
                return Err(refuse_redirect(&response, &request.target));
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && endpoint.uses_digest() {
                let challenge = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Error::Remote("401 without a Digest challenge".into()))?
                    .to_owned();
                challenges += 1;
                let retry = {
                    let mut session = self
                        .session
                        .lock()
                        .map_err(|_| Error::Internal("session lock".into()))?;
                    let digest = session.digest.get_or_insert(DigestSession::new(
                        &self.options.username,
                        &self.options.secret,
                    )?);
                    digest.on_unauthorized(&challenge, sent_under)?
                };
                // Each retry is under a newer nonce; a request beside a busy long-poll can lose
                // the race for the next `nc` several times in a row, so from the third 401 on it
                // waits a random moment to let the other request arrive first. Wrong
                // credentials never get here: they are refused above at once.
                if challenges > MAX_DIGEST_RETRIES {
                    return Err(Error::Remote(format!(
                        "HTTP Digest: still 401 after {MAX_DIGEST_RETRIES} fresh nonces"
                    )));
                }
                if challenges > 2 {
                    let most = Duration::from_millis(u64::from(challenges));
                    tokio::time::sleep(most.mul_f64(fastrand::f64())).await;
                }
                if retry == Retry::NewSession && may_relogin {
                    debug!("amiwire: the server forgot the Digest session; starting a new one");
                    Box::pin(self.restore(deadline)).await;
                }
                continue;
            }
            if let Some(generation) = sent_under {
                if let Ok(mut session) = self.session.lock() {
                    if let Some(digest) = session.digest.as_mut() {
                        digest.on_authorized(generation);
                    }
                }
            }
            if !status.is_success() {
                let path = request.target.split('?').next().unwrap_or_default();
                return Err(Error::Remote(format!("HTTP {status} from {path}")));
            }
            let received = response
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_set_cookie)
                .map(|c| c.cookie);
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Held until the body is parsed: both are in memory together.
            let mut held = Held::new(&self.bodies);
            let read = read_body(response, self.http.max_body, &mut held);
            let body = tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| timed_out())??;
            let messages = parse_off_the_worker(endpoint, content_type, body).await?;
            drop(held);
            if !endpoint.uses_digest() {
                if may_relogin
                    && !relogged
                    && session_expired(cookie.as_ref(), received.as_ref(), &messages)
                {
                    debug!("amiwire: HTTP session expired; logging in again");
                    relogged = true;
                    Box::pin(self.login(deadline)).await?;
                    Box::pin(self.restore(deadline)).await;
                    continue;
                }
                if let Some(received) = received {
                    if let Ok(mut session) = self.session.lock() {
                        session.cookie = Some(received);
                    }
                }
            }
            return Ok(messages);
        }
    }

    /// Cookie endpoints: the Login action (plain, or MD5 Challenge first on the same
    /// session). Digest endpoints need no login; a Ping makes the first challenge happen.
    async fn login(&self, deadline: Deadline) -> Result<()> {
        let timeout = deadline;
        if self.http.endpoint.uses_digest() {
            let reply = self
                .send(&Action::new("Ping"), &self.next_id(), timeout, false)
                .await?;
            return first_response(&reply).map(|_| ());
        }
        if let Ok(mut session) = self.session.lock() {
            session.cookie = None;
        }
        let o = &self.options;
        let mut login = Action::new("Login").header("Username", &o.username);
        match o.auth {
            Auth::Plain => login.push("Secret", &o.secret),
            Auth::Md5 => {
                let reply = self
                    .send(
                        &Action::new("Challenge").header("AuthType", "MD5"),
                        &self.next_id(),
                        timeout,
                        false,
                    )
                    .await?;
                let challenge = first_response(&reply)?
                    .get("Challenge")
                    .map(|c| c.into_owned())
                    .ok_or_else(|| Error::Auth("MD5 challenge refused".into()))?;
                login.push("AuthType", "MD5");
                login.push("Key", md5_key(&challenge, &o.secret));
            }
        }
        if o.events.0 != "on" {
            login.push("Events", &o.events.0);
        }
        let reply = self.send(&login, &self.next_id(), timeout, false).await?;
        let response = first_response(&reply)?;
        if !response.has_value("Response", "Success") {
            let why = response
                .get("Message")
                .map(|m| m.into_owned())
                .unwrap_or_else(|| "login refused".into());
            return Err(Error::Auth(format!("user {:?}: {why}", o.username)));
        }
        Ok(())
    }

    /// A new session replaced an expired one: it gets the event mask and the filters again,
    /// and event streams learn that events may have been missed in between.
    async fn restore(&self, deadline: Deadline) {
        let actions = self.setup.lock().map(|s| s.actions()).unwrap_or_default();
        for action in actions {
            if let Err(e) = self.send(&action, &self.next_id(), deadline, false).await {
                warn!(
                    "amiwire: restoring {} in the new HTTP session failed: {e}",
                    action.name()
                );
            }
        }
        self.shared.each_sub(Subscription::note_gap);
    }

    /// Ends tracking `id` as in flight; returns the OriginateResponse that came early.
    fn take_early(&self, id: &str) -> Option<Message> {
        self.early.lock().ok()?.remove(id).flatten()
    }

    /// Runs one user action: its body is correlated on its own; a tracked originate then
    /// waits for the poller.
    async fn execute(self: Arc<Self>, request: Request) {
        let id = request
            .action
            .action_id()
            .map(str::to_owned)
            .unwrap_or_else(|| self.next_id());
        let timeout = request.timeout.unwrap_or(self.options.action_timeout);
        let started = Instant::now();
        let name = request.action.name().to_owned();
        let tracked = request.expect == Expect::Originate;
        if let Ok(mut setup) = self.setup.lock() {
            setup.note(&request.action);
        }
        if tracked {
            if let Ok(mut early) = self.early.lock() {
                early.insert(id.clone(), None);
            }
        }
        let deadline = Deadline::after(timeout);
        // Waiting for the Digest turn counts against the action's deadline too.
        let sent = if self.http.endpoint.uses_digest() {
            match tokio::time::timeout_at(deadline.at, self.digest_turn.lock()).await {
                Ok(_turn) => self.send(&request.action, &id, deadline, true).await,
                Err(_) => Err(Error::Timeout {
                    action: name.clone(),
                    action_id: id.clone(),
                    seconds: timeout.as_secs_f64(),
                    partial: None,
                }),
            }
        } else {
            self.send(&request.action, &id, deadline, true).await
        };
        let messages = match sent {
            Ok(messages) => messages,
            Err(e) => {
                self.take_early(&id);
                return self.shared.deliver(request.reply, Err(e));
            }
        };
        let mut correlator: Correlator<()> =
            Correlator::new().with_list_limit(self.options.list_limit);
        let _ = correlator.register(id.clone(), request.expect.clone(), None, ());
        let mut events = Vec::new();
        let mut done = None;
        for msg in messages {
            match correlator.route(msg) {
                Routed::Done(c) => done = Some(judge(&name, c.outcome)),
                Routed::DoneAndEvent(c, ev) => {
                    done = Some(judge(&name, c.outcome));
                    events.push(ev);
                }
                Routed::TooLong(given_up) => {
                    done = Some(Err(Error::ListTooLong {
                        action: name.clone(),
                        action_id: given_up.action_id,
                        limit: self.options.list_limit,
                        partial: given_up.partial.map(Box::new),
                    }))
                }
                Routed::Event(ev) => events.push(ev),
                Routed::Absorbed | Routed::Orphan(_) => {}
            }
        }
        self.shared.publish(events);
        if let Some(result) = done {
            self.take_early(&id);
            return self.shared.deliver(request.reply, result);
        }
        // Still waiting: only an accepted async Originate (its OriginateResponse comes by
        // WaitEvent). Anything else ended without its completion: say so, with what came.
        let leftover = correlator
            .drain()
            .into_iter()
            .next()
            .and_then(|e| e.partial);
        match (request.expect, leftover) {
            (Expect::Originate, Some(outcome)) => {
                let deadline = deadline.at;
                let pending = Pending {
                    reply: request.reply,
                    action: name,
                    started,
                };
                if let Ok(mut originates) = self.originates.lock() {
                    if let Err(pending) = originates.register(
                        id.clone(),
                        Expect::Originate,
                        Some(deadline.into_std()),
                        pending,
                    ) {
                        self.shared.deliver(
                            pending.reply,
                            Err(Error::Usage(format!(
                                "ActionID {id:?} is already in flight"
                            ))),
                        );
                        return;
                    }
                    // The correlator wants the response first: replay it.
                    let _ = originates.route(outcome.response);
                    // Under the `originates` lock, so the poller cannot slip in between.
                    if let Some(ev) = self.take_early(&id) {
                        if let Routed::Done(c) | Routed::DoneAndEvent(c, _) = originates.route(ev) {
                            drop(originates);
                            let result = judge(&c.token.action, c.outcome);
                            return self.shared.deliver(c.token.reply, result);
                        }
                    }
                }
                self.wake_deadlines.notify_one();
            }
            (_, partial) => {
                self.take_early(&id);
                let err = Error::Remote(format!(
                    "the HTTP reply to {name} ended before its list completed"
                ));
                let err = match partial {
                    Some(outcome) => Error::ActionFailed {
                        action: name,
                        message: err.to_string(),
                        response: Box::new(outcome.response),
                        events: outcome.events,
                    },
                    None => err,
                };
                self.shared.deliver(request.reply, Err(err));
            }
        }
    }

    /// The single WaitEvent long-poll.
    async fn poll(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut backoff = Backoff::new(&self.options.reconnect);
        // Asterisk clamps the wait under its `httptimeout`; `Timeout: 0` would make every
        // poll return at once, so at least one second is asked for.
        let seconds = wait_event_timeout(self.http.poll_timeout, self.http.http_timeout).max(1);
        let action = Action::new("WaitEvent").header("Timeout", seconds.to_string());
        let timeout = Duration::from_secs(u64::from(seconds) + 15);
        loop {
            let started = Instant::now();
            match self
                .send(&action, &self.next_id(), Deadline::after(timeout), true)
                .await
            {
                Ok(messages) => {
                    if failures > 0 {
                        self.shared.set_state(State::Connected, None);
                    }
                    failures = 0;
                    let got_events = match split_wait_event(messages) {
                        Ok(reply) => {
                            let any = !reply.events.is_empty();
                            self.route_events(reply.events);
                            any
                        }
                        Err(e) => {
                            warn!("amiwire: WaitEvent failed: {e}");
                            false
                        }
                    };
                    // A poll that returns at once must not make the next one start at once:
                    // a server answering every WaitEvent immediately would get thousands a
                    // second. Events that arrive meanwhile wait in the server's queue.
                    let pace = if got_events {
                        POLL_PACE
                    } else {
                        EMPTY_POLL_PACE
                    };
                    tokio::time::sleep_until(started + pace).await;
                }
                Err(Error::Auth(reason)) => {
                    self.shared.finish(&reason, true);
                    return;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        self.shared
                            .set_state(State::Reconnecting, Some(e.to_string()));
                        self.shared.each_sub(Subscription::note_gap);
                    }
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    fn route_events(&self, events: Vec<Message>) {
        let mut out = Vec::with_capacity(events.len());
        let mut done = Vec::new();
        if let Ok(mut originates) = self.originates.lock() {
            for ev in events {
                match originates.route(ev) {
                    Routed::Event(ev) => {
                        // An OriginateResponse for an originate whose reply is still on its
                        // way: keep it for execute() (it is published now all the same).
                        if ev.event_name().as_deref() == Some("OriginateResponse") {
                            if let (Some(id), Ok(mut early)) = (ev.action_id(), self.early.lock()) {
                                if let Some(slot) = early.get_mut(id.as_ref()) {
                                    *slot = Some(ev.clone());
                                }
                            }
                        }
                        out.push(ev)
                    }
                    Routed::DoneAndEvent(c, ev) => {
                        done.push(c);
                        out.push(ev);
                    }
                    Routed::Done(c) => done.push(c),
                    // Only Originates wait here, never a list, so nothing is ever TooLong.
                    Routed::Absorbed | Routed::Orphan(_) | Routed::TooLong(_) => {}
                }
            }
        }
        for c in done {
            let result = judge(&c.token.action, c.outcome);
            self.shared.deliver(c.token.reply, result);
        }
        self.shared.publish(out);
    }

    fn expire(&self) -> Option<Instant> {
        let now = Instant::now();
        let (expired, next) = match self.originates.lock() {
            Ok(mut originates) => (
                originates.expire(now.into_std()),
                originates.next_deadline(),
            ),
            Err(_) => (Vec::new(), None),
        };
        for e in expired {
            let err = Error::Timeout {
                action: e.token.action.clone(),
                action_id: e.action_id,
                seconds: now.duration_since(e.token.started).as_secs_f64(),
                partial: e.partial.map(Box::new),
            };
            self.shared.deliver(e.token.reply, Err(err));
        }
        next.map(Instant::from_std)
    }
}

fn first_response(messages: &[Message]) -> Result<&Message> {
    messages
        .iter()
        .find(|m| m.is_response())
        .ok_or_else(|| Error::Remote("the HTTP reply holds no response".into()))
}

/// The whole body, unless it passes `max` bytes (checked against Content-Length first, then
/// while reading, for chunked bodies) or the bodies being read by this client together pass
/// its budget (`bodies`, in bytes). The buffer never grows past `max`.
async fn read_body(
    mut response: reqwest::Response,
    max: usize,
    held: &mut Held<'_>,
) -> Result<Vec<u8>> {
    let too_large = || {
        Error::Remote(format!(
            "HTTP response body larger than {max} bytes (the max_body limit)"
        ))
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| lost(format!("HTTP body: {}", describe(&e))))?
    {
        let needed = body.len() + chunk.len();
        if needed > max {
            return Err(too_large());
        }
        if !held.take(chunk.len()) {
            return Err(Error::Remote(format!(
                "HTTP response bodies read at once passed {}",
                held.describe()
            )));
        }
        if needed > body.capacity() {
            // Doubling, but never past `max`: a body at the limit costs the limit.
            let want = needed.max(body.capacity() * 2).min(max);
            body.reserve_exact(want - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a body on the blocking pool: a large body must not hold the shared client worker
/// (and with it every other connection of the process) while it is taken apart.
async fn parse_off_the_worker(
    endpoint: Endpoint,
    content_type: Option<String>,
    body: Vec<u8>,
) -> Result<Vec<Message>> {
    if body.len() < PARSE_INLINE {
        return parse_body(endpoint, content_type.as_deref(), &body);
    }
    tokio::task::spawn_blocking(move || parse_body(endpoint, content_type.as_deref(), &body))
        .await
        .map_err(|e| Error::Internal(format!("parsing an HTTP body: {e}")))?
}

/// A 3xx is refused: the error names where it pointed, and nothing is followed.
fn refuse_redirect(response: &reqwest::Response, target: &str) -> Error {
    let path = target.split('?').next().unwrap_or_default();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "nowhere".into());
    Error::Remote(format!(
        "HTTP {} from {path} redirects to {location}; Asterisk never redirects, so it was not followed",
        response.status()
    ))
}

/// reqwest's message without the URL it quotes (on GET its query may hold a secret; we only
/// POST, but keep errors free of URLs anyway), followed by the causes it wraps, where the real
/// reason is ("connection refused", "invalid HTTP version parsed" from a non-HTTP port).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(start) = text.find("http") {
        text.truncate(start);
    }
    let mut text = text.trim_end_matches([' ', '(', ':']).to_owned();
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

fn build_client(options: &Options, http: &Http) -> Result<(reqwest::Client, String)> {
    if options.record.is_some() {
        // The transcript format is a socket's bytes; reqwest does not show them.
        return Err(Error::Usage(
            "recording is available over TCP and TLS, not over HTTP".into(),
        ));
    }
    let tls = options.tls.clone().unwrap_or_default();
    let config = super::tls::client_config(&tls)?;
    let scheme = if http.https { "https" } else { "http" };
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .connect_timeout(options.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        // Asterisk never redirects; following one would re-post the Login form, secret
        // included, to wherever the Location points.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .no_proxy();
    let mut host = options.host.clone();
    if let (true, Some(name)) = (http.https, tls.server_name.as_ref()) {
        // Verify the certificate against `server_name` while connecting to `host`.
        if let Ok(ip) = options.host.parse::<std::net::IpAddr>() {
            builder = builder.resolve(name, std::net::SocketAddr::new(ip, options.port));
            host = name.clone();
        }
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let client = builder
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
    Ok((client, format!("{scheme}://{host}:{}", options.port)))
}

pub(super) async fn run(
    options: Options,
    http: Http,
    mut rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    ready: Reply,
) {
    let (client, base) = match build_client(&options, &http) {
        Ok(pair) => pair,
        Err(e) => {
            let reason = format!("HTTP client setup failed: {e}");
            shared.deliver(ready, Err(e));
            shared.finish(&reason, true);
            return;
        }
    };
    let bodies = ByteBudget::new("max_bodies", http.max_bodies);
    let ajam = Arc::new(Ajam {
        options,
        http,
        client,
        base,
        session: Mutex::new(Session {
            cookie: None,
            digest: None,
        }),
        ids: Mutex::new(ActionIds::new()),
        shared: shared.clone(),
        originates: Mutex::new(Correlator::new()),
        early: Mutex::new(HashMap::new()),
        digest_turn: tokio::sync::Mutex::new(()),
        setup: Mutex::new(Replay::default()),
        wake_deadlines: tokio::sync::Notify::new(),
        bodies,
    });
    let login_deadline = Deadline::after(
        ajam.options
            .connect_timeout
            .max(ajam.options.action_timeout),
    );
    if let Err(e) = ajam.login(login_deadline).await {
        let reason = format!("login failed: {e}");
        shared.deliver(ready, Err(e));
        shared.finish(&reason, true);
        return;
    }
    let mut info = Info {
        banner: None,
        ami_version: None,
        asterisk_version: None,
    };
    if let Ok(messages) = ajam
        .send(
            &Action::new("CoreSettings"),
            &ajam.next_id(),
            Deadline::after(ajam.options.action_timeout),
            true,
        )
        .await
    {
        if let Some(settings) = messages.iter().find(|m| m.is_response()) {
            info.ami_version = settings.get("AMIversion").map(|v| v.into_owned());
            info.asterisk_version = settings.get("AsteriskVersion").map(|v| v.into_owned());
        }
    }
    if let Ok(mut shared_info) = shared.info.lock() {
        *shared_info = info;
    }
    shared.set_state(State::Connected, None);
    shared.deliver(
        ready,
        Ok(local_outcome(
            b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n",
        )),
    );

    // Logged in with events off, the session gets none until an Events action turns them on:
    // the poller starts then (a WaitEvent before would only wait out its timeout).
    let mut poller = (!ajam.options.events.is_off()).then(|| tokio::spawn(ajam.clone().poll()));
    let mut tasks: HashMap<u64, AbortHandle> = HashMap::new();
    let close_reply = loop {
        let next = ajam.expire();
        let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break None,
                Some(Command::Close(reply)) => break Some(reply),
                Some(Command::Actions(requests)) => {
                    tasks.retain(|_, handle| !handle.is_finished());
                    for request in requests {
                        if let Err(e) = request.action.validate() {
                            shared.deliver(request.reply, Err(e));
                            continue;
                        }
                        let turns_events_on = request.action.is("Events")
                            && request
                                .action
                                .get("EventMask")
                                .and_then(|m| EventMask::parse(m).ok())
                                .is_some_and(|m| !m.is_off());
                        if turns_events_on && poller.is_none() {
                            poller = Some(tokio::spawn(ajam.clone().poll()));
                        }
                        let token = match request.reply { Reply::Queued(t) => Some(t), _ => None };
                        let handle = tokio::spawn(ajam.clone().execute(request)).abort_handle();
                        if let Some(token) = token {
                            tasks.insert(token, handle);
                        }
                    }
                }
                Some(Command::Cancel(token)) => {
                    if let Some(handle) = tasks.remove(&token) {
                        handle.abort();
                    }
                    if let Ok(mut originates) = ajam.originates.lock() {
                        originates.cancel_where(|p| matches!(p.reply, Reply::Queued(t) if t == token));
                    }
                }
            },
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = ajam.wake_deadlines.notified() => {}
        }
    };
    if let Some(poller) = poller {
        poller.abort();
    }
    for handle in tasks.values() {
        handle.abort();
    }
    if !ajam.http.endpoint.uses_digest() {
        let _ = ajam
            .send(
                &Action::new("Logoff"),
                &ajam.next_id(),
                Deadline::after(Duration::from_secs(2)),
                false,
            )
            .await;
    }
    let pending = ajam
        .originates
        .lock()
        .map(|mut o| o.drain())
        .unwrap_or_default();
    for expired in pending {
        shared.deliver(expired.token.reply, Err(closed()));
    }
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Command::Actions(reqs) => {
                for req in reqs {
                    shared.deliver(req.reply, Err(closed()));
                }
            }
            Command::Close(reply) => {
                shared.deliver(reply, Ok(local_outcome(b"Response: Goodbye\r\n\r\n")))
            }
            Command::Cancel(_) => {}
        }
    }
    shared.finish("closed by the user", false);
    if let Some(reply) = close_reply {
        shared.deliver(
            reply,
            Ok(local_outcome(
                b"Response: Goodbye\r\nMessage: Closed\r\n\r\n",
            )),
        );
    }
}
