//! A minimal raw AMI client for the simulator tests: writes action text, reads messages with
//! the project's decoder, and bounds every wait.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::time::Duration;

use amiwire::proto::{Decoder, Message};
use amiwire::sim::{SimConfig, SimHandle, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct Conn {
    pub stream: TcpStream,
    pub dec: Decoder,
    pub banner: Option<String>,
}

pub async fn start(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg.auth_fail_delay(Duration::from_millis(20)))
        .await
        .unwrap()
}

impl Conn {
    pub async fn connect(sim: &SimHandle) -> Conn {
        let stream = TcpStream::connect(sim.addr()).await.unwrap();
        let mut c = Conn {
            stream,
            dec: Decoder::new(),
            banner: None,
        };
        // Read until the banner is in.
        let mut buf = [0u8; 64];
        while c.dec.banner().is_none() {
            let n = tokio::time::timeout(WAIT, c.stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed before the banner");
            c.dec.feed(&buf[..n]);
            let _ = c.dec.next_message();
        }
        c.banner = c.dec.banner().map(str::to_string);
        c
    }

    /// Connects and logs in as admin with events as given (`on`, `off`, a mask).
    pub async fn admin(sim: &SimHandle, events: &str) -> Conn {
        let mut c = Conn::connect(sim).await;
        c.send(&format!(
            "Action: Login\r\nActionID: login-1\r\nUsername: admin\r\nSecret: amiwire\r\nEvents: {events}\r\n\r\n"
        ))
        .await;
        let r = c.reply("login-1").await;
        assert_eq!(r.get("Message").as_deref(), Some("Authentication accepted"));
        c
    }

    pub async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or None at EOF; panics after the deadline.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        loop {
            if let Some(m) = self.dec.next_message() {
                return Some(m.unwrap());
            }
            let mut buf = vec![0u8; 65536];
            let n = tokio::time::timeout(wait, self.stream.read(&mut buf))
                .await
                .expect("timed out waiting for a message")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.dec.feed(&buf[..n]);
        }
    }

    /// Like `next`, but a timeout is `Err` instead of a panic.
    pub async fn try_next(&mut self, wait: Duration) -> Result<Option<Message>, ()> {
        match tokio::time::timeout(wait, self.next_within(wait + Duration::from_secs(1))).await {
            Ok(m) => Ok(m),
            Err(_) => Err(()),
        }
    }

    pub async fn next(&mut self) -> Option<Message> {
        self.next_within(WAIT).await
    }

    /// Messages up to and including the first that satisfies `pred`.
    pub async fn until(&mut self, pred: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await.expect("connection closed");
            let done = pred(&m);
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// The response (not event) carrying this ActionID; events before it are skipped.
    pub async fn reply(&mut self, id: &str) -> Message {
        let msgs = self
            .until(|m| m.is_response() && m.action_id().as_deref() == Some(id))
            .await;
        msgs.into_iter().last().unwrap()
    }

    /// A list: the start response and every message with the ActionID up to the Complete event.
    pub async fn list(&mut self, id: &str) -> Vec<Message> {
        let msgs = self
            .until(|m| {
                m.action_id().as_deref() == Some(id)
                    && m.get("EventList").as_deref() == Some("Complete")
            })
            .await;
        msgs.into_iter()
            .filter(|m| m.action_id().as_deref() == Some(id))
            .collect()
    }

    /// True when the server closes the connection within `wait`.
    pub async fn closes_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.dec.feed(&buf[..n]),
            }
        }
    }
}

/// Header names in order.
pub fn names(m: &Message) -> Vec<String> {
    m.headers()
        .map(|h| String::from_utf8_lossy(h.name).into_owned())
        .collect()
}
