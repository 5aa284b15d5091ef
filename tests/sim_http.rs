//! The simulator's AJAM listener: the recorded HTTP fixtures replayed against it, then the
//! behaviours the fixtures only show once (cookie expiry, Digest nc/stale/wrong password,
//! the WaitEvent long-poll and its kick-out, 404/501).
//!
//! Fixture comparison: every recorded request is sent (cookies and Digest answers rewritten
//! to the live ones); the status line must match, every response header must have the
//! recorded name in the recorded order and the recorded value except [`VARYING_HEADERS`]
//! (the clock, body length, and the random cookie/nonce, which are compared with the token
//! masked); body messages must have the recorded kinds and header names in order, values
//! except [`varies`]. Bodies whose items depend on the recorded PBX's live calls
//! (CoreShowChannels items, WaitEvent events) compare only their first and last message.
//! Recorded WaitEvent timeouts become 1 s (nothing here wakes them; the digest URIs are
//! re-signed). The recorded 65-second idle expiry is not replayed; `cookie_expires_after_http_timeout`
//! covers it with a short timeout.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amiwire::proto::Message;
use amiwire::proto::http::{
    DigestAuthorization, DigestChallenge, Endpoint, Method, digest_ha1, digest_response,
    parse_body, parse_set_cookie,
};
use amiwire::sim::{Event, SimConfig, SimHandle, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/asterisk-22"
);
const WAIT: Duration = Duration::from_secs(10);

/// Response headers whose values differ by nature: the clock and the body length.
const VARYING_HEADERS: &[&str] = &["Date", "Content-Length"];

/// Body values that differ between runs (clock, ids, the recorded PBX's call counter).
fn varies(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "timestamp",
        "output",
        "output-2",
        "output-3",
        "output-4",
        "sessionid",
        "eventtv",
        "sessiontv",
        "localaddress",
        "remoteaddress",
        "listitems",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

struct Reply {
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn messages(&self, endpoint: Endpoint) -> Vec<Message> {
        parse_body(endpoint, self.header("Content-type"), &self.body).unwrap()
    }
}

/// Splits one HTTP response off the front of `buf`, if it is all there.
fn take_reply(buf: &mut Vec<u8>) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "Content-Length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    if buf.len() < end + 4 + len {
        return None;
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    buf.drain(..end + 4 + len);
    Some(Reply {
        status,
        headers,
        body,
    })
}

struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    async fn open(sim: &SimHandle) -> HttpConn {
        HttpConn {
            stream: TcpStream::connect(sim.http_addr().unwrap()).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) -> Reply {
        self.stream.write_all(raw).await.unwrap();
        self.read().await
    }

    async fn read(&mut self) -> Reply {
        tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 8192];
            loop {
                if let Some(r) = take_reply(&mut self.buf) {
                    return r;
                }
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-response");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("no HTTP response in time")
    }

    async fn get(&mut self, target: &str, extra: &str) -> Reply {
        let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
        self.send(req.as_bytes()).await
    }

    /// A form POST to /rawman (`extra`: more header lines, such as the cookie).
    async fn post(&mut self, extra: &str, body: &str) -> Reply {
        let req = format!(
            "POST /rawman HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(req.as_bytes()).await
    }
}

async fn start(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg.http(true).auth_fail_delay(Duration::from_millis(20)))
        .await
        .unwrap()
}

fn records(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(format!("{FIXTURES}/{name}.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn endpoint_of(request: &str) -> Endpoint {
    let target = request.split(' ').nth(1).unwrap();
    let path = target.split('?').next().unwrap();
    Endpoint::from_path(path, "").unwrap_or(Endpoint::RawMan)
}

fn cookie_of(value: &str) -> String {
    parse_set_cookie(value).unwrap().cookie.id().to_string()
}

/// Replaces the 8-hex token in a Set-Cookie or WWW-authenticate value.
fn mask_token(name: &str, value: &str) -> String {
    match name {
        "Set-Cookie" => value.replace(&cookie_of(value), "X"),
        "WWW-authenticate" => {
            let c = DigestChallenge::parse(value).unwrap();
            value.replace(&c.nonce, "X")
        }
        _ => value.to_string(),
    }
}

/// Rewrites a recorded request for the live simulator: its cookie, and a Digest answer
/// recomputed for the live nonce (with the right password only if the recording had it).
fn rewrite(
    request: &str,
    cookies: &HashMap<String, String>,
    nonces: &HashMap<String, String>,
) -> String {
    // No calls run here as they did in the recorded PBX: waiting out a recorded WaitEvent
    // timeout would prove nothing (the wait itself is tested below), so poll for a second.
    let mut out = regex::Regex::new(r"timeout=\d+")
        .unwrap()
        .replace_all(request, "timeout=1")
        .into_owned();
    for (recorded, live) in cookies {
        out = out.replace(recorded, live);
    }
    let auth_of = |text: &str| {
        let line = text
            .split("\r\n")
            .find(|l| l.starts_with("Authorization: "))?
            .to_string();
        let auth = DigestAuthorization::parse(&line["Authorization: ".len()..]).unwrap();
        Some((line, auth))
    };
    let Some((_, recorded)) = auth_of(request) else {
        return out;
    };
    let password = if recorded.verify(Method::Get, "amiwire") {
        "amiwire"
    } else {
        "not-the-password"
    };
    let (line, auth) = auth_of(&out).unwrap();
    let nonce = nonces.get(&auth.nonce).unwrap();
    let ha1 = digest_ha1(&auth.username, &auth.realm, password);
    let cnonce = auth.cnonce.as_deref().unwrap();
    let response = digest_response(
        &ha1,
        nonce,
        auth.nc.unwrap(),
        cnonce,
        Method::Get,
        &auth.uri,
    );
    let new_line = line
        .replace(&auth.response, &response)
        .replace(&auth.nonce, nonce);
    out.replace(&line, &new_line)
}

fn compare_messages(ctx: &str, got: &[Message], want: &[Message]) {
    let pairs_of = |m: &Message| -> Vec<(String, String)> {
        m.headers()
            .map(|h| {
                (
                    String::from_utf8_lossy(h.name).into_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect()
    };
    assert_eq!(got.len() > 1, want.len() > 1, "{ctx}: message count");
    let pairs: Vec<(&Message, &Message)> =
        if ctx.contains("coreshowchannels") || ctx.contains("waitevent") {
            vec![
                (got.first().unwrap(), want.first().unwrap()),
                (got.last().unwrap(), want.last().unwrap()),
            ]
        } else {
            assert_eq!(got.len(), want.len(), "{ctx}: message count");
            got.iter().zip(want).collect()
        };
    for (g, w) in pairs {
        assert_eq!(g.kind(), w.kind(), "{ctx}");
        let (g, w) = (pairs_of(g), pairs_of(w));
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(names(&g), names(&w), "{ctx}: header names");
        for ((k, gv), (_, wv)) in g.iter().zip(&w) {
            if !varies(k) {
                assert_eq!(gv, wv, "{ctx}: {k}");
            }
        }
    }
}

async fn replay_fixture(name: &str) {
    let sim = start(SimConfig::new()).await;
    let recs = records(name);
    let mut conns: HashMap<u64, HttpConn> = HashMap::new();
    let mut cookies = HashMap::new();
    let mut nonces = HashMap::new();
    let mut i = 0;
    while i < recs.len() {
        let r = &recs[i];
        i += 1;
        if r["dir"] != "send" {
            continue;
        }
        if r["t"].as_f64().unwrap() > 60.0 {
            continue; // the idle-expiry step: see cookie_expires_after_http_timeout
        }
        let request = r["data"].as_str().unwrap();
        let ctx = format!("{name}: {}", request.lines().next().unwrap());
        let conn_no = r["conn"].as_u64().unwrap();
        // The recorded response: the recv chunks of this connection up to a whole reply.
        let mut want_buf = Vec::new();
        let want = loop {
            let rec = &recs[i];
            i += 1;
            if rec["dir"] == "recv" && rec["conn"].as_u64() == Some(conn_no) {
                want_buf.extend_from_slice(rec["data"].as_str().unwrap().as_bytes());
                if let Some(w) = take_reply(&mut want_buf) {
                    break w;
                }
            }
        };
        if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(conn_no) {
            e.insert(HttpConn::open(&sim).await);
        }
        let conn = conns.get_mut(&conn_no).unwrap();
        let got = conn
            .send(rewrite(request, &cookies, &nonces).as_bytes())
            .await;
        assert_eq!(got.status, want.status, "{ctx}");
        let got_names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
        let want_names: Vec<&str> = want.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(got_names, want_names, "{ctx}: header names");
        for ((k, g), (_, w)) in got.headers.iter().zip(&want.headers) {
            if VARYING_HEADERS.contains(&k.as_str()) {
                continue;
            }
            assert_eq!(mask_token(k, g), mask_token(k, w), "{ctx}: {k}");
            match k.as_str() {
                "Set-Cookie" => {
                    cookies.insert(cookie_of(w), cookie_of(g));
                }
                "WWW-authenticate" => {
                    let (w, g) = (
                        DigestChallenge::parse(w).unwrap(),
                        DigestChallenge::parse(g).unwrap(),
                    );
                    nonces.insert(w.nonce, g.nonce);
                }
                _ => {}
            }
        }
        if got.status == "HTTP/1.1 200 OK" {
            let endpoint = endpoint_of(request);
            compare_messages(
                &ctx.to_lowercase(),
                &got.messages(endpoint),
                &want.messages(endpoint),
            );
        } else {
            assert_eq!(got.body, want.body, "{ctx}: error page");
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn fixture_rawman_session() {
    replay_fixture("http-rawman-session").await;
}

#[tokio::test]
async fn fixture_rawman_keepalive() {
    replay_fixture("http-rawman-keepalive").await;
}

#[tokio::test]
async fn fixture_digest_amxml() {
    replay_fixture("http-digest-amxml").await;
}

#[tokio::test]
async fn fixture_digest_amanager() {
    replay_fixture("http-digest-amanager").await;
}

#[tokio::test]
async fn fixture_errors() {
    replay_fixture("http-errors").await;
}

async fn login(conn: &mut HttpConn) -> String {
    let r = conn
        .get("/rawman?action=login&username=admin&secret=amiwire", "")
        .await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Message").as_deref(),
        Some("Authentication accepted")
    );
    cookie_of(r.header("Set-Cookie").unwrap())
}

fn cookie(id: &str) -> String {
    format!("Cookie: mansession_id=\"{id}\"\r\n")
}

#[tokio::test]
async fn cookie_expires_after_http_timeout() {
    let sim = start(SimConfig::new().http_timeout(Duration::from_secs(1))).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    let r = c.get("/rawman?action=ping", &cookie(&id)).await;
    assert_eq!(
        r.header("Set-Cookie").unwrap(),
        format!("mansession_id=\"{id}\"; Version=1; Max-Age=1")
    );
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Ping").as_deref(),
        Some("Pong")
    );
    // Requests refresh the idle clock: three pings 0.6 s apart keep it alive.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = c.get("/rawman?action=ping", &cookie(&id)).await;
        assert_eq!(
            r.messages(Endpoint::RawMan)[0].get("Response").as_deref(),
            Some("Success")
        );
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = c.get("/rawman?action=ping", &cookie(&id)).await;
    let m = &r.messages(Endpoint::RawMan)[0];
    assert_eq!(m.get("Message").as_deref(), Some("Permission denied"));
    assert_ne!(
        cookie_of(r.header("Set-Cookie").unwrap()),
        id,
        "a new cookie"
    );
    // The expired session no longer queues events.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sim.session_count(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn logoff_ends_the_cookie() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    assert_eq!(sim.session_count(), 1);
    let r = c.get("/rawman?action=logoff", &cookie(&id)).await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Response").as_deref(),
        Some("Goodbye")
    );
    let r = c.get("/rawman?action=ping", &cookie(&id)).await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Message").as_deref(),
        Some("Permission denied")
    );
    assert_eq!(sim.session_count(), 0);
    sim.shutdown().await;
}

/// A Digest request with an explicit nonce, nc and password.
fn digest(target: &str, nonce: &str, nc: u32, password: &str) -> String {
    let ha1 = digest_ha1("admin", "asterisk", password);
    let response = digest_response(&ha1, nonce, nc, "c0ffee", Method::Get, target);
    format!(
        "Authorization: Digest username=\"admin\", realm=\"asterisk\", nonce=\"{nonce}\", \
         uri=\"{target}\", algorithm=MD5, response=\"{response}\", qop=auth, nc={nc:08x}, \
         cnonce=\"c0ffee\", opaque=\"{nonce}\"\r\n"
    )
}

fn challenge_of(r: &Reply) -> DigestChallenge {
    assert!(r.status == "HTTP/1.1 401 Unauthorized", "{}", r.status);
    DigestChallenge::parse(r.header("WWW-authenticate").unwrap()).unwrap()
}

#[tokio::test]
async fn digest_nc_must_grow_and_passwords_must_match() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let t = "/arawman?action=ping";
    let nonce = challenge_of(&c.get(t, "").await).nonce;
    for nc in [1, 2, 5] {
        let r = c.get(t, &digest(t, &nonce, nc, "amiwire")).await;
        assert_eq!(r.status, "HTTP/1.1 200 OK");
        assert!(r.header("Set-Cookie").is_none());
        assert_eq!(
            r.messages(Endpoint::ARawMan)[0].get("Ping").as_deref(),
            Some("Pong")
        );
    }
    // A replayed nc: stale, and the login moves to a new nonce.
    let ch = challenge_of(&c.get(t, &digest(t, &nonce, 5, "amiwire")).await);
    assert!(ch.stale);
    let renewed = ch.nonce;
    assert_ne!(renewed, nonce);
    // The old nonce now only points at the new one.
    let ch = challenge_of(&c.get(t, &digest(t, &nonce, 6, "amiwire")).await);
    assert!(ch.stale);
    assert_eq!(ch.nonce, renewed);
    // A wrong password: a fresh nonce, not stale.
    let ch = challenge_of(&c.get(t, &digest(t, &renewed, 1, "wrong")).await);
    assert!(!ch.stale);
    assert_ne!(ch.nonce, renewed);
    // A uri that is not the request's target is refused the same way.
    let other = "/arawman?action=logoff";
    let ch = challenge_of(&c.get(t, &digest(other, &renewed, 1, "amiwire")).await);
    assert!(!ch.stale);
    // The renewed nonce counts from 1 again, and it is still the same login.
    let r = c.get(t, &digest(t, &renewed, 1, "amiwire")).await;
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(sim.session_count(), 1, "one Digest login");
    sim.shutdown().await;
}

#[tokio::test]
async fn digest_nonce_goes_stale() {
    let sim = start(SimConfig::new().digest_stale(Duration::from_millis(300))).await;
    let mut c = HttpConn::open(&sim).await;
    let t = "/amxml?action=ping";
    let nonce = challenge_of(&c.get(t, "").await).nonce;
    let r = c.get(t, &digest(t, &nonce, 1, "amiwire")).await;
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ch = challenge_of(&c.get(t, &digest(t, &nonce, 2, "amiwire")).await);
    assert!(ch.stale, "stale=true");
    assert_ne!(ch.nonce, nonce);
    let r = c.get(t, &digest(t, &ch.nonce, 1, "amiwire")).await;
    assert_eq!(r.status, "HTTP/1.1 200 OK");
    assert_eq!(sim.session_count(), 1, "the same login under the new nonce");
    // An unused challenge nonce goes stale too.
    let fresh = challenge_of(&c.get(t, "").await).nonce;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(challenge_of(&c.get(t, &digest(t, &fresh, 1, "amiwire")).await).stale);
    sim.shutdown().await;
}

fn wait_reply_parts(r: &Reply) -> (Message, Vec<String>, Message) {
    let mut msgs = r.messages(Endpoint::RawMan);
    let last = msgs.pop().unwrap();
    let first = msgs.remove(0);
    let names = msgs
        .iter()
        .map(|m| m.event_name().unwrap().to_string())
        .collect();
    (first, names, last)
}

#[tokio::test]
async fn wait_event_long_polls_until_an_event() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    // Everything queued since login comes at once.
    let (first, names, last) = wait_reply_parts(
        &c.get(
            "/rawman?action=waitevent&timeout=5&actionid=w1",
            &cookie(&id),
        )
        .await,
    );
    assert_eq!(
        first.get("Message").as_deref(),
        Some("Waiting for Event completed.")
    );
    assert_eq!(first.get("ActionID").as_deref(), Some("w1"));
    assert_eq!(names, ["SuccessfulAuth"]);
    assert_eq!(last.event_name().as_deref(), Some("WaitEventComplete"));
    assert_eq!(last.get("ActionID").as_deref(), Some("w1"));
    // Idle: returns after the timeout, empty.
    let t0 = Instant::now();
    let (_, names, _) = wait_reply_parts(
        &c.get("/rawman?action=waitevent&timeout=1", &cookie(&id))
            .await,
    );
    assert!(names.is_empty());
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    // Woken by an event another HTTP connection causes.
    let mut other = HttpConn::open(&sim).await;
    let cid = cookie(&id);
    let poll = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = c.get("/rawman?action=waitevent&timeout=8", &cid).await;
        (t0.elapsed(), r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = other
        .get(
            "/rawman?action=userevent&userevent=Hello&actionid=u1",
            &cookie(&id),
        )
        .await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Response").as_deref(),
        Some("Success")
    );
    let (elapsed, r) = poll.await.unwrap();
    let (_, names, _) = wait_reply_parts(&r);
    assert_eq!(names, ["UserEvent"]);
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn wait_event_timeout_is_clamped() {
    let sim = start(SimConfig::new().http_timeout(Duration::from_secs(11))).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    c.get("/rawman?action=waitevent&timeout=1", &cookie(&id))
        .await; // drains SuccessfulAuth
    let t0 = Instant::now();
    c.get("/rawman?action=waitevent&timeout=30", &cookie(&id))
        .await;
    let e = t0.elapsed();
    assert!(
        e >= Duration::from_millis(950) && e < Duration::from_secs(3),
        "{e:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn second_wait_event_kicks_out_the_first() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    c.get("/rawman?action=waitevent&timeout=1", &cookie(&id))
        .await;
    let cid = cookie(&id);
    let first = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = c
            .get("/rawman?action=waitevent&timeout=20&actionid=old", &cid)
            .await;
        (t0.elapsed(), r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c2 = HttpConn::open(&sim).await;
    let cid = cookie(&id);
    let second = tokio::spawn(async move {
        c2.get("/rawman?action=waitevent&timeout=20&actionid=new", &cid)
            .await
    });
    let (elapsed, r) = first.await.unwrap();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let (head, names, _) = wait_reply_parts(&r);
    assert_eq!(head.get("ActionID").as_deref(), Some("old"));
    assert!(names.is_empty());
    // The newer poll is the one that gets the next event.
    let mut c3 = HttpConn::open(&sim).await;
    c3.get("/rawman?action=userevent&userevent=Kick", &cookie(&id))
        .await;
    let (head, names, _) = wait_reply_parts(&second.await.unwrap());
    assert_eq!(head.get("ActionID").as_deref(), Some("new"));
    assert_eq!(names, ["UserEvent"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn http_and_tcp_share_one_pbx() {
    let sim = start(SimConfig::new().time_scale(0.05)).await;
    let mut tcp = TcpStream::connect(sim.addr()).await.unwrap();
    tcp.write_all(b"Action: Login\r\nUsername: admin\r\nSecret: amiwire\r\n\r\n")
        .await
        .unwrap();
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    c.get("/rawman?action=waitevent&timeout=1", &cookie(&id))
        .await;
    let r = c
        .get(
            "/rawman?action=originate&channel=Local/100@test&application=Wait&data=1&async=true&actionid=o1",
            &cookie(&id),
        )
        .await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Message").as_deref(),
        Some("Originate successfully queued")
    );
    // The TCP session sees the HTTP-made call's OriginateResponse.
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 8192];
        while !String::from_utf8_lossy(&seen).contains("Event: OriginateResponse") {
            let n = tcp.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap();
    // And the HTTP session gets it through WaitEvent.
    let mut names = Vec::new();
    while !names.iter().any(|n| n == "OriginateResponse") {
        let (_, got, _) = wait_reply_parts(
            &c.get("/rawman?action=waitevent&timeout=2", &cookie(&id))
                .await,
        );
        assert!(!got.is_empty(), "no OriginateResponse over HTTP");
        names.extend(got);
    }
    assert!(names.iter().any(|n| n == "Newchannel"));
    // A TCP-made call's OriginateResponse (a foreign ActionID) reaches HTTP too.
    tcp.write_all(
        b"Action: Originate\r\nActionID: t1\r\nChannel: Local/100@test\r\n\
          Application: Wait\r\nData: 1\r\nAsync: true\r\n\r\n",
    )
    .await
    .unwrap();
    let mut foreign = false;
    while !foreign {
        let r = c
            .get("/rawman?action=waitevent&timeout=2", &cookie(&id))
            .await;
        let msgs = r.messages(Endpoint::RawMan);
        assert!(msgs.len() > 2, "no foreign OriginateResponse over HTTP");
        foreign = msgs.iter().any(|m| {
            m.event_name().as_deref() == Some("OriginateResponse")
                && m.get("ActionID").as_deref() == Some("t1")
        });
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn parameters_are_case_insensitive_and_post_works() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    let body = "ACTION=Setvar&variable=X&VALUE=a+b%26c&actionid=p1";
    let r = c.post(&cookie(&id), body).await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("ActionID").as_deref(),
        Some("p1")
    );
    let r = c
        .get("/rawman?Action=GetVar&Variable=X", &cookie(&id))
        .await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Value").as_deref(),
        Some("a b&c")
    );
    sim.shutdown().await;
}

/// Over HTTP, manager.c builds the action from the parameters (`astman_append_headers()`):
/// the first 128 are kept and the rest dropped, and no 1,024-byte line limit applies (that
/// one belongs to the TCP reader).
#[tokio::test]
async fn parameters_beyond_128_are_dropped_and_long_values_pass() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    let mut query = String::from("/rawman?action=Ping");
    for i in 0..127 {
        query.push_str(&format!("&x{i}=v"));
    }
    query.push_str("&actionid=dropped");
    let r = c.get(&query, &cookie(&id)).await;
    let reply = &r.messages(Endpoint::RawMan)[0];
    assert_eq!(reply.get("Response").as_deref(), Some("Success"));
    assert_eq!(reply.get("ActionID"), None, "the 129th parameter");

    let long = "y".repeat(3000);
    let body = format!("action=Setvar&variable=LONG&value={long}&actionid=s");
    let r = c.post(&cookie(&id), &body).await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Message").as_deref(),
        Some("Variable Set")
    );
    let r = c
        .get("/rawman?action=Getvar&variable=LONG", &cookie(&id))
        .await;
    // Getvar answers at most 1,023 characters of it (tcp-long-lines.jsonl).
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Value").as_deref(),
        Some(&long[..1023])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let r = c.get("/nonexistent", "").await;
    assert_eq!(r.status, "HTTP/1.1 404 Not Found");
    assert!(r.header("Set-Cookie").is_none());
    let r = c
        .send(b"DELETE /rawman?action=ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(r.status, "HTTP/1.1 501 Not Implemented");
    // Still the same keep-alive connection.
    assert_eq!(
        c.get("/rawman?action=ping", "").await.status,
        "HTTP/1.1 200 OK"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn http_is_off_unless_asked() {
    let sim = Simulator::start(SimConfig::new()).await.unwrap();
    assert!(sim.http_addr().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn pipelined_and_fragmented_requests() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    // Two requests in one write: two answers, in order.
    c.stream
        .write_all(
            b"GET /rawman?action=ping&actionid=a HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /rawman?action=ping&actionid=b HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    for want in ["a", "b"] {
        let r = c.read().await;
        let m = &r.messages(Endpoint::RawMan)[0];
        assert_eq!(m.get("ActionID").as_deref(), Some(want));
        assert_eq!(m.get("Message").as_deref(), Some("Permission denied"));
    }
    // A POST dribbled a few bytes at a time.
    let body = "action=login&username=admin&secret=amiwire";
    let req = format!(
        "POST /rawman HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for piece in req.as_bytes().chunks(7) {
        c.stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = c.read().await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Message").as_deref(),
        Some("Authentication accepted")
    );
    // No parameters at all: what a TCP session says to an action-less message.
    let r = c.get("/rawman", "").await;
    assert_eq!(
        r.messages(Endpoint::RawMan)[0].get("Message").as_deref(),
        Some("Missing action in request")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_session_that_never_polls_keeps_a_bounded_queue() {
    let sim = start(SimConfig::new()).await;
    let mut c = HttpConn::open(&sim).await;
    let id = login(&mut c).await;
    // Its own SuccessfulAuth is queued already; 10,004 more overflow the 10,000 by 5.
    for n in 0..10_004 {
        sim.emit_event(Event::build("Tick", "all", &[("N", &n.to_string())]));
    }
    assert_eq!(sim.events_dropped(), 5);
    // What was kept arrives whole and in order: the oldest, not the newest, survived.
    let (_, names, _) = wait_reply_parts(
        &c.get("/rawman?action=waitevent&timeout=1", &cookie(&id))
            .await,
    );
    assert_eq!(names.len(), 10_000);
    assert_eq!(names[0], "SuccessfulAuth");
    assert!(names[1..].iter().all(|n| n == "Tick"));
    // Room again: the next event is delivered, and nothing more was dropped.
    sim.emit_event(Event::build("Tock", "all", &[]));
    let (_, names, _) = wait_reply_parts(
        &c.get("/rawman?action=waitevent&timeout=1", &cookie(&id))
            .await,
    );
    assert_eq!(names, ["Tock"]);
    assert_eq!(sim.events_dropped(), 5);
    sim.shutdown().await;
}
