//! The AJAM client against a scripted HTTP server on loopback: what a real PBX does is in
//! tests/python/test_http.py (against the simulator); here, servers that misbehave.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod transport_support;

use std::time::Duration;

use std::sync::{Arc, Mutex};

use amiwire::Error;
use amiwire::proto::Action;
use amiwire::proto::http::Endpoint;
use amiwire::transport::{Client, EventMask, Filter, Http, Options, Overflow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use transport_support::{HttpReply, http_server, rawman_ok};

/// Answers every request with `head` followed by `body_parts`, written one after another.
async fn server(head: &'static str, body_parts: Vec<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let parts = body_parts.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(head.as_bytes()).await;
                for part in parts {
                    if sock.write_all(&part).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn options(port: u16, max_body: usize) -> Options {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port,
        username: "admin".into(),
        secret: "amiwire".into(),
        connect_timeout: Duration::from_secs(5),
        keepalive: None,
        http: Some(Http {
            max_body,
            ..Http::new(Endpoint::RawMan)
        }),
        ..Options::default()
    };
    o.reconnect.enabled = false;
    o
}

/// Connecting to the server on `port` fails at once because of the body size (the server
/// never ends the body, so waiting for it would only end at the timeout).
async fn assert_refused_as_too_large(port: u16) {
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(options(port, 1000)),
    )
    .await
    .expect("refused at the limit, not at a timeout");
    match result {
        Err(Error::Remote(text)) => {
            assert!(text.contains("larger than 1000 bytes"), "{text}")
        }
        Err(other) => panic!("expected a body-size error, got {other}"),
        Ok(_) => panic!("an oversized body was accepted"),
    }
}

#[tokio::test]
async fn a_body_announced_larger_than_max_body_is_refused_unread() {
    // The announced length is never sent: refusing must not wait for it.
    let port = server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n",
        vec![b"Response: Success\r\n".to_vec()],
    )
    .await;
    assert_refused_as_too_large(port).await;
}

/// A server whose chunked bodies grow by forty chunks of 70 bytes and never end: only a
/// limit ends them.
async fn endless_chunked_server() -> u16 {
    let line =
        b"Response: Success\r\nMessage: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
    let chunk = |data: &[u8]| {
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(data);
        c.extend_from_slice(b"\r\n");
        c
    };
    server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        (0..40).map(|_| chunk(line)).collect(),
    )
    .await
}

#[tokio::test]
async fn a_chunked_body_growing_past_max_body_is_cut_off() {
    assert_refused_as_too_large(endless_chunked_server().await).await;
}

/// The bodies one client reads at once share `max_bodies`: past it the action fails with an
/// error naming that limit, however small each body's own limit leaves it.
#[tokio::test]
async fn bodies_read_at_once_share_the_clients_budget() {
    let mut o = options(endless_chunked_server().await, 1_000_000);
    if let Some(http) = o.http.as_mut() {
        http.max_bodies = 1000;
    }
    let result = tokio::time::timeout(Duration::from_secs(10), Client::connect(o))
        .await
        .expect("refused at the limit, not at a timeout");
    match result {
        Err(Error::Remote(text)) => {
            assert!(
                text.contains("the max_bodies limit of 1000 bytes"),
                "{text}"
            )
        }
        Err(other) => panic!("expected the max_bodies error, got {other}"),
        Ok(_) => panic!("the bodies passed their budget"),
    }
}

/// A /rawman server that logs every action (name and cookie) and answers the first Getvar
/// as Asterisk answers a request on an expired session: 200, `Permission denied`, no cookie.
async fn expiring_rawman(log: Arc<Mutex<Vec<String>>>) -> u16 {
    let logins = Mutex::new(0);
    let expired_once = Mutex::new(false);
    http_server(move |request| {
        let action = request.field("Action");
        let cookie = request.header("cookie").unwrap_or_default();
        log.lock().unwrap().push(format!("{action} {cookie}"));
        let id = request.field("ActionID");
        match action.to_ascii_lowercase().as_str() {
            "login" => {
                let mut n = logins.lock().unwrap();
                *n += 1;
                let mut reply = rawman_ok(&request);
                reply.head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: mansession_id=\"c{n}\"; Version=1; Max-Age=60\r\n"
                );
                reply
            }
            "getvar" if !std::mem::replace(&mut *expired_once.lock().unwrap(), true) => {
                HttpReply::ok(format!(
                    "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"
                ))
            }
            _ => HttpReply::ok(format!(
                "Response: Success\r\nActionID: {id}\r\nValue: v\r\n\r\n"
            )),
        }
    })
    .await
}

#[tokio::test]
async fn a_new_http_session_gets_the_mask_and_filters_again_and_streams_see_a_gap() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let port = expiring_rawman(log.clone()).await;
    let mut o = options(port, 1 << 20);
    o.events = EventMask::parse("off").unwrap(); // no poller: only the actions below
    let client = Client::connect(o).await.unwrap();
    let sub = client.subscribe(Filter::default(), 10, Overflow::DropOldest);
    client
        // "off" keeps the WaitEvent poller from starting: this log has only these actions.
        .action(Action::new("Events").header("EventMask", "off"))
        .await
        .unwrap();
    client
        .action(Action::new("Filter").header("Filter", "Event: Hangup"))
        .await
        .unwrap();
    let value = client
        .action(Action::new("Getvar").header("Variable", "X"))
        .await
        .unwrap();
    assert_eq!(value.response.get("Value").as_deref(), Some("v"));
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "Login ",
            "CoreSettings mansession_id=\"c1\"", // the version, at connect
            "Events mansession_id=\"c1\"",
            "Filter mansession_id=\"c1\"",
            "Getvar mansession_id=\"c1\"",
            "Login ",
            "Events mansession_id=\"c2\"",
            "Filter mansession_id=\"c2\"",
            "Getvar mansession_id=\"c2\"",
        ]
    );
    assert_eq!(sub.stats().gaps, 1);
}
