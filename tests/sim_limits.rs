//! The simulator exposed to hostile clients: Asterisk's input limits on every AMI connection,
//! `authlimit` and `authtimeout` before login, and the HTTP listener's timeouts and cap.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::net::SocketAddr;
use std::time::Duration;

use amiwire::sim::{SimConfig, SimHandle, Tls};
use sim_support::{Conn, WAIT, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a connection receives until the server closes (or resets) it; panics if it stays
/// open.
async fn read_to_close(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let _closed_or_reset = tokio::time::timeout(wait, stream.read_to_end(&mut got))
        .await
        .expect("the server kept the connection open");
    got
}

/// True when the server closes the connection within `wait` without sending anything.
async fn closed_silently(stream: &mut TcpStream, wait: Duration) -> bool {
    read_to_close(stream, wait).await.is_empty()
}

/// Connects until the server answers `request` with `start` again: it notices a client that
/// went away a moment later, and only then gives its place back.
async fn served_again(addr: SocketAddr, request: &[u8], start: &[u8]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut again = TcpStream::connect(addr).await.unwrap();
        let _ = again.write_all(request).await;
        let mut got = vec![0u8; start.len()];
        if again.read_exact(&mut got).await.is_ok() {
            assert_eq!(got, start);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_51st_unauthenticated_connection_is_closed_before_the_banner() {
    let sim = start(SimConfig::new()).await;
    let mut waiting = Vec::new();
    for _ in 0..50 {
        waiting.push(Conn::connect(&sim).await);
    }
    let mut refused = TcpStream::connect(sim.addr()).await.unwrap();
    assert!(
        closed_silently(&mut refused, WAIT).await,
        "no banner at the cap"
    );

    // A login gives its place back.
    let mut first = waiting.swap_remove(0);
    first
        .send("Action: Login\r\nActionID: l\r\nUsername: admin\r\nSecret: amiwire\r\nEvents: off\r\n\r\n")
        .await;
    assert_eq!(
        first.reply("l").await.get("Message").as_deref(),
        Some("Authentication accepted")
    );
    let next = Conn::connect(&sim).await;
    assert_eq!(next.banner.as_deref(), Some("Asterisk Call Manager/11.0.0"));
    let mut refused = TcpStream::connect(sim.addr()).await.unwrap();
    assert!(closed_silently(&mut refused, WAIT).await);

    // So does a connection that goes away.
    drop(waiting.pop());
    served_again(sim.addr(), b"", b"Asterisk Call Manager/11.0.0\r\n").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_limit_is_configurable_and_auth_timeout_frees_the_slot() {
    let sim = start(
        SimConfig::new()
            .auth_limit(2)
            .auth_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut a = Conn::connect(&sim).await;
    let _b = Conn::connect(&sim).await;
    let mut refused = TcpStream::connect(sim.addr()).await.unwrap();
    assert!(closed_silently(&mut refused, WAIT).await);
    assert!(a.closes_within(Duration::from_secs(3)).await, "authtimeout");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = Conn::connect(&sim).await;
    assert!(c.banner.is_some());
    sim.shutdown().await;
}

/// A line longer than manager.c's 1,024-byte buffer is discarded as it arrives and the action
/// answered `line too long`, before login as after; 300 KiB is beyond the client's own 256
/// KiB line limit, which the simulator used to read with.
#[tokio::test]
async fn an_endless_line_before_login_is_discarded_and_answered() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::connect(&sim).await;
    let long = "x".repeat(300 * 1024);
    c.send(&format!(
        "Action: Login\r\nActionID: big\r\nUsername: {long}\r\nSecret: nope\r\n\r\n"
    ))
    .await;
    let r = c.reply("big").await;
    assert_eq!(
        r.get("Message").as_deref(),
        Some("Failed to parse message: line too long")
    );
    assert_eq!(r.get("Response").as_deref(), Some("Error"));
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(
        c.reply("p").await.get("Message").as_deref(),
        Some("Permission denied"),
        "the connection reads on, unauthenticated"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn more_than_128_lines_before_login_are_dropped_and_answered() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::connect(&sim).await;
    let mut action = String::from("Action: Login\r\nActionID: many\r\n");
    for i in 0..20_000 {
        action.push_str(&format!("X-{i}: v\r\n"));
    }
    action.push_str("\r\n");
    c.send(&action).await;
    let r = c.reply("many").await;
    assert_eq!(
        r.get("Message").as_deref(),
        Some("Too many lines in message or allocation failure")
    );
    sim.shutdown().await;
}

/// The TLS handshake counts against `authtimeout`: a client that connects and says nothing
/// does not hold its `authlimit` slot forever.
#[tokio::test]
async fn a_silent_tls_client_is_closed_after_auth_timeout() {
    let sim = start(
        SimConfig::new()
            .tls(Tls::Generate)
            .auth_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut silent = TcpStream::connect(sim.addr()).await.unwrap();
    assert!(closed_silently(&mut silent, Duration::from_secs(3)).await);
    sim.shutdown().await;
}

async fn http_sim(cfg: SimConfig) -> SimHandle {
    start(cfg.http(true)).await
}

async fn http_connect(sim: &SimHandle) -> TcpStream {
    TcpStream::connect(sim.http_addr().unwrap()).await.unwrap()
}

const PING: &[u8] = b"GET /rawman?action=ping HTTP/1.1\r\nHost: sim\r\n\r\n";

#[tokio::test]
async fn an_idle_http_connection_is_closed_after_keep_alive() {
    let sim = http_sim(SimConfig::new().http_keep_alive(Duration::from_millis(300))).await;
    let mut never = http_connect(&sim).await;
    assert!(closed_silently(&mut never, Duration::from_secs(3)).await);

    // Between requests too.
    let mut once = http_connect(&sim).await;
    once.write_all(PING).await.unwrap();
    let got = read_to_close(&mut once, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_half_sent_http_request_is_answered_400_and_closed() {
    let sim = http_sim(
        SimConfig::new()
            .http_keep_alive(Duration::from_secs(30))
            .http_request_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut head = http_connect(&sim).await;
    head.write_all(b"GET /rawman?action=ping HTTP/1.1\r\nHost: sim\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut head, Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("<p>Timeout</p>"), "{text}");

    // A body that never comes in full, though bytes keep trickling.
    let mut body = http_connect(&sim).await;
    body.write_all(b"POST /rawman HTTP/1.1\r\nContent-Length: 100\r\n\r\naction=")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if body.write_all(b"p").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let got = read_to_close(&mut body, Duration::from_secs(3)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{got:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn http_connections_beyond_the_session_limit_are_closed_unanswered() {
    let sim = http_sim(SimConfig::new().http_session_limit(3)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = http_connect(&sim).await;
        s.write_all(PING).await.unwrap();
        let mut buf = [0u8; 15];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200 OK");
        open.push(s);
    }
    let mut refused = http_connect(&sim).await;
    let _ = refused.write_all(PING).await;
    assert!(closed_silently(&mut refused, WAIT).await);

    drop(open.pop());
    served_again(sim.http_addr().unwrap(), PING, b"HTTP/1.1 200 OK").await;
    sim.shutdown().await;
}
