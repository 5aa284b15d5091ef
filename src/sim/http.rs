//! AJAM: the simulator's HTTP listener (ami-protocol.md §10).
//!
//! A small HTTP/1.1 keep-alive server on tokio, hand-written so the response headers keep
//! Asterisk's exact spelling (`Content-type`, `WWW-authenticate`), which hyper would change.
//! Every manager session here wraps a TCP [`Session`] whose writer is a capture buffer: an
//! action over HTTP runs the very code a TCP connection runs, and its captured reply is
//! re-rendered with [`render_body`] in the endpoint's format. Events queue per session from
//! login on and leave only through WaitEvent.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::config::{SimConfig, User};
use super::core::{Core, epoch_secs, lock, stopped};
use super::input::MAX_LINES;
use super::session::{Flow, Session};
use super::time::Stamp;
use super::wire::{Event, Out, header, wait_event_reply};
use crate::proto::http::{
    DigestAuthorization, DigestChallenge, Endpoint, Method, SessionCookie, decode_form,
    parse_cookie_header, render_body,
};
use crate::proto::{Decoder, Message};

/// A cookie that never logged in lives this long (manager.c).
const ANONYMOUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests larger than this (head or body) are refused.
const MAX_REQUEST: usize = 64 * 1024;

/// The capture a session writes into instead of a socket.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *lock(&self.0))
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct State {
    s: Session,
    out: Capture,
    reg_id: Option<u64>,
}

#[derive(Default)]
struct Queue {
    rx: Option<mpsc::Receiver<Event>>,
    queued: VecDeque<Event>,
}

impl Queue {
    /// Keeps what WaitEvent has not taken yet; beyond `limit`, the oldest go.
    fn push(&mut self, ev: Event, limit: usize) {
        if self.queued.len() >= limit {
            self.queued.pop_front();
        }
        self.queued.push_back(ev);
    }
}

/// One manager session over HTTP (a cookie, or a Digest nonce).
struct HttpSession {
    state: tokio::sync::Mutex<State>,
    events: tokio::sync::Mutex<Queue>,
    /// Bumped by every WaitEvent; a poll whose number is no longer current returns empty.
    wait_gen: AtomicU64,
    kick: Notify,
    /// Last request, and whether the session is logged in.
    seen: Mutex<(Instant, bool)>,
}

impl HttpSession {
    /// A session; with a `user` (Digest) it starts logged in, as a Login would leave it.
    fn new(
        core: Arc<Core>,
        local: SocketAddr,
        remote: SocketAddr,
        user: Option<User>,
    ) -> HttpSession {
        let out = Capture::default();
        let mut s = Session::new(core.clone(), Box::new(out.clone()), local, remote);
        s.over_http = true;
        let logged_in = user.is_some();
        let mut queue = Queue::default();
        let mut reg_id = None;
        if let Some(user) = user {
            s.user = Some(user);
            let (id, rx) = core.register();
            reg_id = Some(id);
            queue.rx = Some(rx);
            s.security_event("SuccessfulAuth", "Informational", None);
        }
        HttpSession {
            state: tokio::sync::Mutex::new(State { s, out, reg_id }),
            events: tokio::sync::Mutex::new(queue),
            wait_gen: AtomicU64::new(0),
            kick: Notify::new(),
            seen: Mutex::new((Instant::now(), logged_in)),
        }
    }

    fn touch(&self) {
        lock(&self.seen).0 = Instant::now();
    }

    fn expired(&self, http_timeout: Duration) -> bool {
        let (seen, logged_in) = *lock(&self.seen);
        let limit = if logged_in {
            http_timeout
        } else {
            ANONYMOUS_TIMEOUT.min(http_timeout)
        };
        seen.elapsed() > limit
    }

    /// Takes the event registration a login left in the session.
    async fn adopt_registration(&self, st: &mut State) {
        if let Some((id, rx)) = st.s.registered.take() {
            st.reg_id = Some(id);
            lock(&self.seen).1 = true;
            self.events.lock().await.rx = Some(rx);
        }
    }
}

impl Drop for HttpSession {
    // The last reference gone (expired, logged off, simulator stopped): stop queueing events.
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if let Some(id) = st.reg_id {
            st.s.core.unregister(id);
        }
    }
}

/// A Digest login, as manager.c keeps it: one session whose nonce is replaced (the old one
/// remembered, to answer it `stale=true`) when `nc` goes backwards or the nonce ages.
struct DigestLogin {
    user: String,
    nonce: String,
    old_nonce: Option<String>,
    nonce_time: Instant,
    nc: u32,
    session: Arc<HttpSession>,
}

/// The listener's state.
struct Http {
    core: Arc<Core>,
    local: SocketAddr,
    cookies: Mutex<HashMap<String, Arc<HttpSession>>>,
    /// Nonces handed out by a plain 401, not yet used by a login.
    issued: Mutex<HashMap<String, Instant>>,
    digest: Mutex<Vec<DigestLogin>>,
}

/// A parsed request.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Its form fields: the query string, then a POST body.
    params: Vec<(String, String)>,
    remote: SocketAddr,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the form fields once the body is in.
    fn parse_params(&mut self) {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        self.params = decode_form(query.as_bytes());
        if self.method == "POST" {
            self.params.extend(decode_form(&self.body));
        }
    }

    /// A WaitEvent long-poll, which may wait up to its timeout before answering.
    fn is_wait_event(&self) -> bool {
        self.params
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("Action") && v.eq_ignore_ascii_case("WaitEvent"))
    }
}

struct Response {
    status: &'static str,
    /// Header lines after `Cache-Control`, in Asterisk's order, without Content-Length.
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn error_page(status: &'static str, text: &str) -> Response {
        let title = status.split_once(' ').map_or(status, |(_, t)| t);
        let body = format!(
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n<html><head>\r\n\
             <title>{status}</title>\r\n</head><body>\r\n<h1>{title}</h1>\r\n<p>{text}</p>\r\n\
             <hr />\r\n<address>Asterisk</address>\r\n</body></html>\r\n"
        );
        Response {
            status,
            headers: vec![("Content-type", "text/html".into())],
            body: body.into_bytes(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nServer: Asterisk\r\nDate: {}\r\nCache-Control: no-cache, no-store\r\n",
            self.status,
            http_date(SystemTime::now())
        );
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// RFC 7231 `Date`, e.g. `Thu, 26 Nov 2026 11:04:17 GMT`.
fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let s = Stamp::of(t);
    let weekday = DAYS
        .get((epoch_secs(t) / 86_400 % 7) as usize)
        .unwrap_or(&"Thu");
    let month = MONTHS
        .get((s.month as usize).saturating_sub(1))
        .unwrap_or(&"Jan");
    format!(
        "{weekday}, {:02} {month} {} {:02}:{:02}:{:02} GMT",
        s.day, s.year, s.hour, s.minute, s.second
    )
}

fn new_token() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// Every message in `bytes`, the simulator's own wire output.
fn decode(bytes: &[u8]) -> Vec<Message> {
    let mut d = Decoder::new();
    d.set_expect_banner(false);
    d.feed(bytes);
    std::iter::from_fn(|| d.next_message())
        .filter_map(Result::ok)
        .collect()
}

/// The request's parameters as an AMI message; CR and LF inside values become spaces so a
/// parameter can never inject a header. Like manager.c's `astman_append_headers()`, it keeps
/// the first 128 (`AST_MAX_MANHEADERS`) and drops the rest unsaid.
fn action_message(params: &[(String, String)]) -> Option<Message> {
    let mut wire = String::new();
    for (k, v) in params.iter().take(MAX_LINES) {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        wire.push_str(&format!("{}: {}\r\n", clean(k), clean(v)));
    }
    wire.push_str("\r\n");
    decode(wire.as_bytes()).into_iter().next()
}

/// Serves AJAM until the simulator stops.
pub(crate) async fn serve(listener: TcpListener, core: Arc<Core>) {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let slots = Arc::new(Semaphore::new(core.cfg.http_session_limit));
    let http = Arc::new(Http {
        core: core.clone(),
        local,
        cookies: Mutex::new(HashMap::new()),
        issued: Mutex::new(HashMap::new()),
        digest: Mutex::new(Vec::new()),
    });
    let mut stop = core.shutdown.clone();
    let mut tasks = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_millis(500));
    let mut disconnects = core.disconnects.subscribe();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = sweep.tick() => http.sweep(),
            // `disconnect_all`: as after a restart of the manager, every session is forgotten
            // (its events with it); the next request of each client finds out.
            Ok(()) = disconnects.changed() => http.forget_sessions(),
            accepted = listener.accept() => {
                let Ok((sock, remote)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // main/http.c `httpd_helper_thread()`: beyond `sessionlimit` open connections,
                // a new one is closed at once, unanswered.
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    log::debug!("simulator HTTP: sessionlimit reached, closing {remote}");
                    continue;
                };
                let _ = sock.set_nodelay(true);
                tasks.spawn(connection(http.clone(), sock, remote, slot));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
    lock(&http.cookies).clear();
    lock(&http.issued).clear();
    lock(&http.digest).clear();
}

/// How waiting for more of a request ended.
enum Read {
    More,
    Closed,
    TimedOut,
}

/// Reads what comes before `deadline` onto `buf`.
async fn read_until(
    sock: &mut TcpStream,
    chunk: &mut [u8],
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Read {
    match tokio::time::timeout_at(deadline, sock.read(chunk)).await {
        Err(_) => Read::TimedOut,
        Ok(Ok(0) | Err(_)) => Read::Closed,
        Ok(Ok(n)) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            Read::More
        }
    }
}

/// When the request being read must be complete. main/http.c waits `session_keep_alive` for
/// a request to start and then `session_inactivity` between reads (`httpd_helper_thread()`,
/// `ast_iostream_set_timeout_idle_inactivity()`); here the whole request must arrive within
/// the second, so a client cannot hold a connection by trickling bytes.
struct Deadlines {
    idle: tokio::time::Instant,
    request: Option<tokio::time::Instant>,
    request_timeout: Duration,
}

impl Deadlines {
    fn new(cfg: &SimConfig, started: bool) -> Deadlines {
        let now = tokio::time::Instant::now();
        Deadlines {
            idle: now + cfg.http_keep_alive,
            request: started.then(|| now + cfg.http_request_timeout),
            request_timeout: cfg.http_request_timeout,
        }
    }

    fn next(&self) -> tokio::time::Instant {
        self.request.unwrap_or(self.idle)
    }

    /// Bytes of a request arrived: its own clock starts.
    fn started(&mut self) {
        if self.request.is_none() {
            self.request = Some(tokio::time::Instant::now() + self.request_timeout);
        }
    }
}

/// One keep-alive connection: requests one after another until the peer closes or asks to,
/// or a timeout ends it. `_slot` is its place under `sessionlimit`.
async fn connection(
    http: Arc<Http>,
    mut sock: TcpStream,
    remote: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Pipelined bytes left over from the last request have started the next one.
        let mut deadlines = Deadlines::new(&http.core.cfg, !buf.is_empty());
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > MAX_REQUEST {
                return;
            }
            match read_until(&mut sock, &mut chunk, &mut buf, deadlines.next()).await {
                Read::More => deadlines.started(),
                Read::Closed => return,
                Read::TimedOut => return time_out(&mut sock, &deadlines).await,
            }
        };
        let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, target, version) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut req = Request {
            method,
            target,
            headers,
            body: Vec::new(),
            params: Vec::new(),
            remote,
        };
        let length: usize = req
            .header("Content-Length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length > MAX_REQUEST {
            return;
        }
        buf.drain(..head_end + 4);
        while buf.len() < length {
            match read_until(&mut sock, &mut chunk, &mut buf, deadlines.next()).await {
                Read::More => {}
                Read::Closed => return,
                Read::TimedOut => return time_out(&mut sock, &deadlines).await,
            }
        }
        req.body = buf.drain(..length).collect();
        req.parse_params();
        let close = version != "HTTP/1.1"
            || req
                .header("Connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let resp = if req.is_wait_event() {
            // A client that hangs up during its long-poll ends the poll (and with the last
            // one the session's hold on its event queue), as the next write would.
            let respond = http.respond(&req);
            tokio::pin!(respond);
            loop {
                tokio::select! {
                    resp = &mut respond => break resp,
                    read = sock.read(&mut chunk) => match read {
                        Ok(0) | Err(_) => return,
                        // The next request, pipelined: kept for after this one.
                        Ok(n) if buf.len() + n <= MAX_REQUEST => {
                            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        }
                        Ok(_) => return,
                    },
                }
            }
        } else {
            http.respond(&req).await
        };
        if sock.write_all(&resp.bytes()).await.is_err() || close {
            return;
        }
    }
}

/// The end of a connection whose wait timed out: silently when no request had started, else
/// with main/http.c's `400 Bad Request` / `Timeout` page.
async fn time_out(sock: &mut TcpStream, deadlines: &Deadlines) {
    if deadlines.request.is_some() {
        let page = Response::error_page("400 Bad Request", "Timeout");
        let _ = sock.write_all(&page.bytes()).await;
    }
}

impl Http {
    fn http_timeout(&self) -> Duration {
        self.core.cfg.http_timeout
    }

    fn forget_sessions(&self) {
        lock(&self.cookies).clear();
        lock(&self.digest).clear();
    }

    /// Drops expired sessions and nonces, which unregisters their event queues.
    fn sweep(&self) {
        let timeout = self.http_timeout();
        lock(&self.cookies).retain(|_, s| !s.expired(timeout));
        lock(&self.digest).retain(|d| !d.session.expired(timeout));
        let stale = self.core.cfg.digest_stale;
        lock(&self.issued).retain(|_, t| t.elapsed() <= stale);
    }

    async fn respond(&self, req: &Request) -> Response {
        let method = match req.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            _ => {
                return Response::error_page(
                    "501 Not Implemented",
                    "Attempt to use unimplemented / unsupported method",
                );
            }
        };
        let path = req
            .target
            .split_once('?')
            .map_or(req.target.as_str(), |(p, _)| p);
        let Some(endpoint) = Endpoint::from_path(path, "") else {
            return Response::error_page(
                "404 Not Found",
                "The requested URL was not found on this server.",
            );
        };
        let msg = action_message(&req.params);
        let content_type = ("Content-type", endpoint.format().content_type().to_string());
        if endpoint.uses_digest() {
            return match self.digest_session(req, method) {
                Ok(session) => {
                    let body = self.run(&session, &msg, endpoint).await;
                    Response {
                        status: "200 OK",
                        headers: vec![content_type],
                        body,
                    }
                }
                Err(challenge) => {
                    let mut r = Response::error_page("401 Unauthorized", "");
                    r.headers.insert(0, ("WWW-authenticate", challenge));
                    r
                }
            };
        }
        let (id, session) = self.cookie_session(req);
        let body = self.run(&session, &msg, endpoint).await;
        let max_age = self.http_timeout().as_secs() as u32;
        let set_cookie = SessionCookie::new(id.clone())
            .map(|c| c.set_cookie_value(max_age))
            .unwrap_or_default();
        Response {
            status: "200 OK",
            headers: vec![
                content_type,
                ("Set-Cookie", set_cookie),
                ("Pragma", "SuppressEvents".into()),
            ],
            body,
        }
    }

    /// The cookie's live session, or a new anonymous one under a new cookie.
    fn cookie_session(&self, req: &Request) -> (String, Arc<HttpSession>) {
        let timeout = self.http_timeout();
        let mut cookies = lock(&self.cookies);
        let sent = req
            .header("Cookie")
            .and_then(parse_cookie_header)
            .map(|c| c.id().to_string());
        if let Some(id) = sent {
            if let Some(s) = cookies.get(&id).filter(|s| !s.expired(timeout)) {
                s.touch();
                return (id, s.clone());
            }
            cookies.remove(&id);
        }
        let id = new_token();
        let s = Arc::new(HttpSession::new(
            self.core.clone(),
            self.local,
            req.remote,
            None,
        ));
        cookies.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The Digest login's session, or the `WWW-authenticate` value of a 401
    /// (manager.c `auth_http_callback`).
    fn digest_session(&self, req: &Request, method: Method) -> Result<Arc<HttpSession>, String> {
        let auth = req
            .header("Authorization")
            .and_then(|v| DigestAuthorization::parse(v).ok());
        let user = auth.as_ref().and_then(|auth| {
            self.core.user(&auth.username).cloned().filter(|u| {
                auth.uri == req.target && auth.realm == "asterisk" && auth.verify(method, &u.secret)
            })
        });
        let (Some(auth), Some(user)) = (auth, user) else {
            // No or wrong credentials: a fresh nonce, bound to nothing yet.
            let nonce = new_token();
            lock(&self.issued).insert(nonce.clone(), Instant::now());
            return Err(challenge(&nonce, false));
        };
        let nc = auth.nc.unwrap_or(0);
        let stale_after = self.core.cfg.digest_stale;
        let mut logins = lock(&self.digest);
        let found = logins.iter_mut().find(|d| {
            d.user == user.name
                && (d.nonce == auth.nonce || d.old_nonce.as_deref() == Some(&auth.nonce))
        });
        match found {
            Some(d) if d.nonce != auth.nonce => Err(challenge(&d.nonce, true)),
            Some(d) if nc <= d.nc || d.nonce_time.elapsed() > stale_after => {
                // Replayed counter or an old nonce: the same login continues under a new one.
                d.old_nonce = Some(std::mem::replace(&mut d.nonce, new_token()));
                d.nonce_time = Instant::now();
                d.nc = 0;
                Err(challenge(&d.nonce, true))
            }
            Some(d) => {
                d.nc = nc;
                d.session.touch();
                Ok(d.session.clone())
            }
            None => {
                let issued = lock(&self.issued).remove(&auth.nonce);
                match issued {
                    Some(t) if t.elapsed() <= stale_after => {}
                    Some(_) => {
                        let nonce = new_token();
                        lock(&self.issued).insert(nonce.clone(), Instant::now());
                        return Err(challenge(&nonce, true));
                    }
                    None => {
                        let nonce = new_token();
                        lock(&self.issued).insert(nonce.clone(), Instant::now());
                        return Err(challenge(&nonce, false));
                    }
                }
                let name = user.name.clone();
                let session = Arc::new(HttpSession::new(
                    self.core.clone(),
                    self.local,
                    req.remote,
                    Some(user),
                ));
                logins.push(DigestLogin {
                    user: name,
                    nonce: auth.nonce,
                    old_nonce: None,
                    nonce_time: Instant::now(),
                    nc,
                    session: session.clone(),
                });
                Ok(session)
            }
        }
    }

    /// Runs one action on `session` and renders its whole answer.
    async fn run(
        &self,
        session: &Arc<HttpSession>,
        msg: &Option<Message>,
        endpoint: Endpoint,
    ) -> Vec<u8> {
        let Some(msg) = msg else {
            // No parameters at all: what the TCP loop says to a header-less action.
            let bytes = Out::error(None, "Missing action in request").finish();
            return render_body(endpoint, &decode(&bytes));
        };
        let action = header(msg, "Action").unwrap_or_default();
        let mut st = session.state.lock().await;
        let logged_in = st.s.user.is_some();
        let bytes = if logged_in && action.eq_ignore_ascii_case("waitevent") {
            drop(st);
            let bytes = self.wait_event(session, msg).await;
            session.touch();
            bytes
        } else {
            let flow = st.s.handle(msg).await;
            session.adopt_registration(&mut st).await;
            let bytes = st.out.take();
            if flow == Flow::Close {
                // Logoff or a failed login: the cookie is dead from now on.
                lock(&self.cookies).retain(|_, s| !Arc::ptr_eq(s, session));
                lock(&self.digest).retain(|d| !Arc::ptr_eq(&d.session, session));
            }
            bytes
        };
        render_body(endpoint, &decode(&bytes))
    }

    /// WaitEvent over HTTP: everything queued at once, else the first event to arrive, else
    /// nothing after the (clamped) timeout; a newer WaitEvent ends this one empty-handed.
    async fn wait_event(&self, session: &Arc<HttpSession>, msg: &Message) -> Vec<u8> {
        let id = header(msg, "ActionID");
        let id = id.as_deref();
        let max = self.http_timeout().saturating_sub(Duration::from_secs(
            crate::proto::http::WAIT_EVENT_MARGIN.into(),
        ));
        let requested = header(msg, "Timeout")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(max, Duration::from_secs);
        let deadline = tokio::time::Instant::now() + requested.min(max);
        let mine = session.wait_gen.fetch_add(1, Ordering::SeqCst) + 1;
        session.kick.notify_waiters();
        let mut q = session.events.lock().await;
        let mut events = Vec::new();
        let limit = self.core.cfg.session_event_queue;
        loop {
            let kicked = session.kick.notified();
            tokio::pin!(kicked);
            kicked.as_mut().enable();
            if session.wait_gen.load(Ordering::SeqCst) != mine {
                break;
            }
            while let Some(ev) = q.rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
                q.push(ev, limit);
            }
            let wanted: Vec<Event> = {
                let st = session.state.lock().await;
                q.queued.drain(..).filter(|ev| st.s.wants(ev)).collect()
            };
            if !wanted.is_empty() {
                events = wanted;
                break;
            }
            let Some(rx) = q.rx.as_mut() else { break };
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => q.push(ev, limit),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = kicked => break,
            }
        }
        wait_event_reply(id, &events)
    }
}

/// A 401's challenge for `nonce` (its own opaque too, as Asterisk sends).
fn challenge(nonce: &str, stale: bool) -> String {
    DigestChallenge {
        realm: "asterisk".into(),
        nonce: nonce.into(),
        opaque: Some(nonce.into()),
        algorithm: Some("MD5".into()),
        qop: Some("auth".into()),
        stale,
    }
    .header_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_matches_the_recorded_shape() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_691_057);
        assert_eq!(http_date(t), "Thu, 26 Nov 2026 11:04:17 GMT");
    }
}
