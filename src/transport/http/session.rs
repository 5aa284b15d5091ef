//! The AJAM session: one request per action with the session's credentials. Cookie
//! endpoints log in with the Login action and send `mansession_id` back; Asterisk answers an
//! expired session with 200 + `Permission denied` (no 401), which is detected, answered by
//! logging in again and restoring the event mask and filters (event streams note a gap), and
//! the refused action is sent once more (it was not executed). Digest endpoints answer the
//! 401 challenge, count `nc`, retry a stale nonce, and start a new session (restored the same
//! way) when the server forgot one it had accepted; the secret never crosses the wire there.
//! Every retry stays within the action's one deadline; a redirect is refused, never followed;
//! bodies are bounded in bytes, per body and per client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, warn};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::proto::http::{
    self as ajam, DigestSession, Endpoint, Method, Retry, SessionCookie, parse_body,
    parse_set_cookie, session_expired,
};
use crate::proto::{Action, ActionIds, Correlator, Login, Message, Progress, Replay, SessionInfo};
use crate::transport::budget::{ByteBudget, Held};
use crate::transport::command::Reply;
use crate::transport::deadline::Deadline;
use crate::transport::events::Subscription;
use crate::transport::options::{Auth, Http, Options};
use crate::transport::outcome::lost;
use crate::transport::shared::Shared;

/// 401s one request answers with a retry before giving up on the server.
const MAX_DIGEST_RETRIES: u32 = 30;

/// Bodies smaller than this are parsed in place: handing them to the blocking pool costs
/// more than parsing them.
const PARSE_INLINE: usize = 64 * 1024;

/// The credentials requests go with.
struct Session {
    cookie: Option<SessionCookie>,
    digest: Option<DigestSession>,
}

/// An accepted async Originate, waiting for the OriginateResponse the poller brings.
pub(super) struct Pending {
    pub(super) reply: Reply,
    pub(super) action: String,
    pub(super) started: Instant,
}

/// One HTTP client of one AMI user: shared by the action tasks and the poller.
pub(super) struct Ajam {
    pub(super) options: Options,
    pub(super) http: Http,
    client: reqwest::Client,
    base: String,
    session: Mutex<Session>,
    ids: Mutex<ActionIds>,
    pub(super) shared: Arc<Shared>,
    /// Async originates waiting for their OriginateResponse from the poller.
    pub(super) originates: Mutex<Correlator<Pending>>,
    /// Async originates sent but not yet registered in `originates`, with an
    /// OriginateResponse the poller brought before their own reply did (locked after
    /// `originates`, never before).
    pub(super) early: Mutex<HashMap<String, Option<Message>>>,
    /// Digest actions go one at a time: Asterisk renews the nonce (401 stale) whenever an
    /// `nc` arrives lower than one already seen, which concurrent requests cause.
    pub(super) digest_turn: tokio::sync::Mutex<()>,
    pub(super) wake_deadlines: tokio::sync::Notify,
    /// The bytes of the bodies being read at once (`Http::max_bodies`).
    bodies: ByteBudget,
    /// Sent again to the new session after a re-login.
    pub(super) setup: Mutex<Replay>,
}

impl Ajam {
    pub(super) fn new(options: Options, http: Http, shared: Arc<Shared>) -> Result<Ajam> {
        let (client, base) = build_client(&options, &http)?;
        Ok(Ajam {
            bodies: ByteBudget::new("max_bodies", http.max_bodies),
            options,
            http,
            client,
            base,
            session: Mutex::new(Session {
                cookie: None,
                digest: None,
            }),
            ids: Mutex::new(ActionIds::new()),
            shared,
            originates: Mutex::new(Correlator::new()),
            early: Mutex::new(HashMap::new()),
            digest_turn: tokio::sync::Mutex::new(()),
            setup: Mutex::new(Replay::default()),
            wake_deadlines: tokio::sync::Notify::new(),
        })
    }

    pub(super) fn next_id(&self) -> String {
        self.ids
            .lock()
            .map(|mut ids| ids.next_id())
            .unwrap_or_else(|_| format!("{:08x}", fastrand::u32(..)))
    }

    /// One request and its parsed body, with the session's credentials. Handles the Digest
    /// challenge (and stale nonces) and, for cookie sessions, one transparent re-login when
    /// the session turns out to have expired: every retry within the action's one `deadline`.
    pub(super) async fn send(
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
                    if let Err(e) = Box::pin(self.renew(deadline)).await {
                        warn!("amiwire: restoring the new Digest session failed: {e}");
                    }
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
                    Box::pin(self.renew(deadline)).await?;
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

    /// The session setup (`proto::Login`) over HTTP within `deadline`: the Login on cookie
    /// endpoints (Digest authenticates every request instead), the CoreSettings probe if
    /// `probe`, then the replay of the event mask and filters the previous session had.
    pub(super) async fn set_up(&self, deadline: Deadline, probe: bool) -> Result<SessionInfo> {
        let o = &self.options;
        let login = if self.http.endpoint.uses_digest() {
            Login::authenticated()
        } else {
            if let Ok(mut session) = self.session.lock() {
                session.cookie = None;
            }
            let login = Login::new(&o.username, &o.secret, o.auth == Auth::Md5);
            match o.events.0.as_str() {
                "on" => login,
                mask => login.with_events(mask),
            }
        };
        let login = if probe { login } else { login.without_probe() };
        let replay = self.setup.lock().map(|s| s.actions()).unwrap_or_default();
        let mut login = login.with_replay(replay);
        let mut progress = login.start();
        loop {
            progress = match progress {
                Progress::Send(action) => {
                    let reply = self.send(&action, &self.next_id(), deadline, false).await?;
                    login.on_response(first_response(&reply)?)
                }
                Progress::Ready(info) => {
                    for (action, why) in &info.replay_failures {
                        warn!("amiwire: restoring {action} in the new HTTP session failed: {why}");
                    }
                    return Ok(info);
                }
                Progress::Refused(why) => return Err(Error::Auth(why)),
            };
        }
    }

    /// A new session replaces one the server forgot, in passing (the action that found out
    /// is then sent again): event streams learn that events may have been missed.
    async fn renew(&self, deadline: Deadline) -> Result<()> {
        let rebuild = self.shared.begin_live_rebuild();
        let renewed = self.set_up(deadline, false).await;
        self.shared.each_sub(Subscription::note_gap);
        if renewed.is_ok() {
            self.shared
                .rebuild_live(rebuild, self.options.action_timeout);
        }
        renewed.map(|_| ())
    }
}

pub(super) fn first_response(messages: &[Message]) -> Result<&Message> {
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
        return Ok(parse_body(endpoint, content_type.as_deref(), &body)?);
    }
    tokio::task::spawn_blocking(move || parse_body(endpoint, content_type.as_deref(), &body))
        .await
        .map_err(|e| Error::Internal(format!("parsing an HTTP body: {e}")))?
        .map_err(Error::from)
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
    // hyper says one or the other, depending on whether the peer spoke before the request
    // was written: either way the port does not speak HTTP.
    if ["invalid HTTP version", "unexpected message"]
        .iter()
        .any(|sign| text.contains(sign))
    {
        text.push_str(" (the server does not answer in HTTP: is this the AMI TCP port?)");
    }
    text
}

fn build_client(options: &Options, http: &Http) -> Result<(reqwest::Client, String)> {
    let tls = options.tls.clone().unwrap_or_default();
    let config = crate::transport::tls::client_config(&tls)?;
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
