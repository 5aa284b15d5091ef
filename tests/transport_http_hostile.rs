//! The AJAM client against HTTP servers that misbehave on purpose (issue 9): retries that
//! would stretch a deadline, redirects that would carry the secret away, a WaitEvent that
//! returns at once.

#![allow(clippy::unwrap_used)]

mod transport_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amiwire::Error;
use amiwire::proto::http::Endpoint;
use amiwire::proto::{Action, Expect};
use amiwire::transport::{Client, EventMask, Http, Options};
use transport_support::{HttpReply, HttpRequest, http_server, rawman_ok};

const MARGIN: Duration = Duration::from_millis(700);

fn options(port: u16, endpoint: Endpoint) -> Options {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port,
        username: "admin".into(),
        secret: "amiwire".into(),
        connect_timeout: Duration::from_secs(1),
        action_timeout: Duration::from_secs(1),
        keepalive: None,
        events: EventMask::parse("off").unwrap(),
        http: Some(Http::new(endpoint)),
        ..Options::default()
    };
    o.reconnect.enabled = false;
    o
}

/// A Digest server that answers every request, slowly, with a fresh stale nonce: the login
/// fails by its one deadline, not after thirty full ones.
#[tokio::test]
async fn stale_nonces_share_one_deadline() {
    let nonce = Arc::new(Mutex::new(0u32));
    let port = http_server(move |_| {
        let mut n = nonce.lock().unwrap();
        *n += 1;
        HttpReply {
            delay: Duration::from_millis(300),
            head: format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"asterisk\", nonce=\"n{n}\", qop=\"auth\", stale=true\r\n"
            ),
            body: String::new(),
        }
    })
    .await;
    let o = options(port, Endpoint::ARawMan);
    let deadline = o.connect_timeout.max(o.action_timeout);
    let started = Instant::now();
    let result = Client::connect(o).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout { .. })),
        "{:?}",
        result.err()
    );
    assert!(took < deadline + MARGIN, "took {took:?}");
}

/// A cookie server whose session expires at the first Ping and that answers everything
/// slowly: the Ping, the re-login and the Ping again share the action's one deadline.
#[tokio::test]
async fn a_slow_relogin_stays_within_the_actions_deadline() {
    let pings = Arc::new(Mutex::new(0u32));
    let port = http_server(move |request| {
        if request.action() == "ping" {
            let mut n = pings.lock().unwrap();
            *n += 1;
            if *n == 1 {
                let id = request.field("ActionID");
                return HttpReply::ok(format!(
                    "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"
                ))
                .after(Duration::from_millis(500));
            }
        }
        let slow = request.action() != "coresettings";
        rawman_ok(&request).after(Duration::from_millis(if slow { 500 } else { 0 }))
    })
    .await;
    let mut o = options(port, Endpoint::RawMan);
    o.connect_timeout = Duration::from_secs(5);
    o.action_timeout = Duration::from_secs(5);
    let client = Client::connect(o).await.unwrap();
    let deadline = Duration::from_millis(800);
    let started = Instant::now();
    let result = client
        .action_with(Action::new("Ping"), Expect::Auto, Some(deadline))
        .await;
    let took = started.elapsed();
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(took < deadline + MARGIN, "took {took:?}");
}

/// A 3xx is an error naming the Location; nothing is followed, so the Login form (secret
/// included) never reaches the other server.
#[tokio::test]
async fn redirects_are_refused_and_never_followed() {
    for status in [
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let elsewhere: Arc<Mutex<Vec<HttpRequest>>> = Arc::default();
        let seen = elsewhere.clone();
        let other = http_server(move |request| {
            seen.lock().unwrap().push(request.clone());
            rawman_ok(&request)
        })
        .await;
        let location = format!("http://127.0.0.1:{other}/rawman");
        let head = format!("HTTP/1.1 {status}\r\nLocation: {location}\r\n");
        let port = http_server(move |_| HttpReply {
            delay: Duration::ZERO,
            head: head.clone(),
            body: String::new(),
        })
        .await;
        let result = Client::connect(options(port, Endpoint::RawMan)).await;
        let text = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains(&location), "{status}: {text:?}");
        assert!(
            !text.contains("amiwire"),
            "{status}: the secret in {text:?}"
        );
        assert!(elsewhere.lock().unwrap().is_empty(), "{status}: followed");
    }
}

/// A WaitEvent that comes back at once (and an `httptimeout` of 10 s, which leaves no room
/// for a long-poll) does not make the poller spin, and it never asks for `Timeout: 0`.
#[tokio::test]
async fn an_instant_wait_event_is_paced_and_never_asks_for_zero() {
    let timeouts: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = timeouts.clone();
    let port = http_server(move |request| {
        if request.action() == "waitevent" {
            seen.lock().unwrap().push(request.field("Timeout"));
            let id = request.field("ActionID");
            return HttpReply::ok(format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Waiting for Event completed.\r\n\r\nEvent: WaitEventComplete\r\nActionID: {id}\r\n\r\n"
            ));
        }
        rawman_ok(&request)
    })
    .await;
    let mut o = options(port, Endpoint::RawMan);
    o.events = EventMask::parse("on").unwrap();
    if let Some(http) = o.http.as_mut() {
        http.http_timeout = 10;
    }
    let client = Client::connect(o).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.close().await;
    let timeouts = timeouts.lock().unwrap().clone();
    assert!(!timeouts.is_empty(), "no WaitEvent was sent");
    assert!(timeouts.len() <= 20, "{} polls in 1 s", timeouts.len());
    assert!(timeouts.iter().all(|t| t != "0"), "{timeouts:?}");
}
