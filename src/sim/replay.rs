//! Replay mode: serve a recorded JSONL transcript (the fixtures' format). The n-th accepted
//! connection plays the n-th `conn` of the file: recorded `recv` chunks before the first
//! `send` go out at once, and each recorded `send` is answered, once that many actions have
//! arrived, with the `recv` chunks recorded after it. An `eof` record closes the connection.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::server::{Core, stopped};
use super::session::Stream;
use crate::proto::{Decoder, decode_all};

#[derive(Deserialize)]
struct Record {
    dir: String,
    conn: usize,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_b64: Option<String>,
    #[serde(default)]
    eof: bool,
}

/// One step of a connection's script.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wait for this many client actions.
    Expect(usize),
    Send(Vec<u8>),
    Close,
}

pub(crate) fn script(text: &str, conn: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(r) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        if r.conn != conn {
            continue;
        }
        let data = match (r.data, r.data_b64) {
            (Some(d), _) => d.into_bytes(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        if r.dir == "send" {
            let (_, actions) = decode_all(&data);
            steps.push(Step::Expect(actions.len().max(1)));
        } else if r.eof {
            steps.push(Step::Close);
        } else {
            steps.push(Step::Send(data));
        }
    }
    steps
}

pub(crate) async fn serve(core: Arc<Core>, stream: Stream, path: &Path, index: usize) {
    let path = path.to_path_buf();
    let text = match tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await {
        Ok(Ok(t)) => t,
        _ => return,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = Decoder::new();
    decoder.set_expect_banner(false);
    let mut received = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    let mut stop = core.shutdown.clone();
    for step in script(&text, index) {
        match step {
            Step::Send(bytes) => {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Step::Close => break,
            Step::Expect(n) => {
                while received < n {
                    if decoder.next_message().is_some() {
                        received += 1;
                        continue;
                    }
                    tokio::select! {
                        _ = stopped(&mut stop) => return,
                        read = rd.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return,
                            Ok(k) => decoder.feed(buf.get(..k).unwrap_or_default()),
                        },
                    }
                }
                received -= n;
            }
        }
    }
    let _ = wr.shutdown().await;
}
