//! Hostile servers for the transport tests, on loopback: a scripted AMI-over-TCP peer and a
//! scripted AMI-over-HTTP peer. Each answers the login itself and hands every other action
//! to the test's script.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use amiwire::proto::Message;
use amiwire::proto::http::decode_form;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;

pub const BANNER: &[u8] = b"Asterisk Call Manager/11.0.0\r\n";

/// What a TCP script may do with the connection after reading one action.
pub struct Peer {
    pub write: Arc<Mutex<OwnedWriteHalf>>,
    /// How many sessions the server accepted so far (1 for the first).
    pub session: usize,
}

impl Peer {
    pub async fn send(&self, text: &str) {
        let _ = self.write.lock().await.write_all(text.as_bytes()).await;
    }
}

/// The answer to one action: a success echoing its ActionID.
pub fn success(action: &Message, extra: &str) -> String {
    let id = action.action_id().unwrap_or_default().into_owned();
    format!("Response: Success\r\nActionID: {id}\r\n{extra}\r\n")
}

/// An AMI server: banner, Login and CoreSettings answered with success, every other action
/// (and every session start, as `None`) handed to `script`. Returns the port.
pub async fn tcp_server<F, Fut>(script: F) -> u16
where
    F: Fn(Arc<Peer>, Option<Message>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(script);
    tokio::spawn(async move {
        let mut sessions = 0;
        while let Ok((sock, _)) = listener.accept().await {
            sessions += 1;
            let (mut read, write) = sock.into_split();
            let peer = Arc::new(Peer {
                write: Arc::new(Mutex::new(write)),
                session: sessions,
            });
            let script = script.clone();
            tokio::spawn(async move {
                peer.write.lock().await.write_all(BANNER).await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    while let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let block: Vec<u8> = buf.drain(..at + 4).collect();
                        let Some(action) = Message::parse_one(&block) else {
                            continue;
                        };
                        let name = action.get("Action").unwrap_or_default().to_lowercase();
                        match name.as_str() {
                            "login" => {
                                peer.send(&success(
                                    &action,
                                    "Message: Authentication accepted\r\n",
                                ))
                                .await;
                                script(peer.clone(), None).await;
                            }
                            "coresettings" => {
                                peer.send(&success(&action, "AsteriskVersion: 22.0.0\r\n"))
                                    .await
                            }
                            _ => script(peer.clone(), Some(action)).await,
                        }
                    }
                    match read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

/// One HTTP request as the scripted server saw it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub head: String,
    pub form: Vec<(String, String)>,
}

impl HttpRequest {
    pub fn field(&self, name: &str) -> String {
        self.form
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    pub fn action(&self) -> String {
        self.field("Action").to_lowercase()
    }

    /// A header of the request (lower-case name), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// A full HTTP response: the status line and headers (without Content-Length, added here),
/// the body, and how long to wait before sending it.
pub struct HttpReply {
    pub delay: Duration,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    /// 200 with a text/plain AMI body.
    pub fn ok(body: String) -> HttpReply {
        HttpReply {
            delay: Duration::ZERO,
            head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n".into(),
            body,
        }
    }

    pub fn after(mut self, delay: Duration) -> HttpReply {
        self.delay = delay;
        self
    }
}

/// The usual answer of /rawman to an action: success, with a cookie on Login.
pub fn rawman_ok(request: &HttpRequest) -> HttpReply {
    let id = request.field("ActionID");
    let mut reply = HttpReply::ok(format!("Response: Success\r\nActionID: {id}\r\n\r\n"));
    if request.action() == "login" {
        reply.head += "Set-Cookie: mansession_id=\"c1\"; Version=1; Max-Age=60\r\n";
    }
    reply
}

/// An HTTP/1.1 server (keep-alive) answering each request with `script(request)`.
pub async fn http_server<F>(script: F) -> u16
where
    F: Fn(HttpRequest) -> HttpReply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let head_end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let form = decode_form(&buf[head_end..head_end + length]);
                    buf.drain(..head_end + length);
                    let reply = script(HttpRequest { head, form });
                    tokio::time::sleep(reply.delay).await;
                    let text = format!(
                        "{}Content-Length: {}\r\n\r\n{}",
                        reply.head,
                        reply.body.len(),
                        reply.body
                    );
                    if sock.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
