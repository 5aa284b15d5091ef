//! The AJAM client against a scripted HTTP server on loopback: what a real PBX does is in
//! tests/python/test_http.py (against the simulator); here, servers that misbehave.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

use std::time::Duration;

use amiwire::Error;
use amiwire::proto::http::Endpoint;
use amiwire::transport::{Client, Http, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
    let mut o = Options::default();
    o.host = "127.0.0.1".into();
    o.port = port;
    o.username = "admin".into();
    o.secret = "amiwire".into();
    o.connect_timeout = Duration::from_secs(5);
    o.reconnect.enabled = false;
    o.keepalive = None;
    let mut http = Http::new(Endpoint::RawMan);
    http.max_body = max_body;
    o.http = Some(http);
    o
}

fn assert_too_large(result: Result<Client, Error>) {
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
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(options(port, 1000)),
    )
    .await
    .expect("refused at once, not after reading");
    assert_too_large(result);
}

#[tokio::test]
async fn a_chunked_body_growing_past_max_body_is_cut_off() {
    let line =
        b"Response: Success\r\nMessage: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
    let chunk = |data: &[u8]| {
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(data);
        c.extend_from_slice(b"\r\n");
        c
    };
    // Forty chunks of 70 bytes, and never a terminating chunk: only the limit ends it.
    let port = server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        (0..40).map(|_| chunk(line)).collect(),
    )
    .await;
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect(options(port, 1000)),
    )
    .await
    .expect("cut off at the limit, not at a timeout");
    assert_too_large(result);
}
