//! Replay mode: serve a recorded JSONL transcript (the fixtures' format). The n-th accepted
//! connection plays the n-th `conn` of the file: recorded `recv` chunks before the first
//! `send` go out at once, and each recorded `send` is answered, once that many actions have
//! arrived, with the `recv` chunks recorded after it. An `eof` record closes the connection.
//!
//! A client replayed against its own recording picks fresh ActionIDs (amiwire's carry a
//! random prefix), so the recorded ids are mapped to the ones that actually arrived and
//! rewritten in every reply; the chunks between two sends are then written together, since
//! a rewrite cannot span a chunk boundary.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::core::{Core, stopped};
use super::stream::Stream;
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
    /// Wait for this many client actions, which were recorded with these ActionIDs.
    Expect(usize, Vec<Option<String>>),
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
            let ids = actions
                .iter()
                .map(|a| {
                    a.as_ref()
                        .ok()
                        .and_then(|m| m.action_id())
                        .map(|id| id.into_owned())
                })
                .collect();
            steps.push(Step::Expect(actions.len().max(1), ids));
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
    let mut received: Vec<Option<String>> = Vec::new();
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stop = core.shutdown.clone();
    for step in script(&text, index) {
        match step {
            Step::Send(bytes) if ids.is_empty() => {
                if wr.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Step::Send(bytes) => out.extend_from_slice(&bytes),
            Step::Close => break,
            Step::Expect(n, recorded) => {
                if !flush(&mut wr, &mut out, &ids).await {
                    return;
                }
                while received.len() < n {
                    if let Some(item) = decoder.next_message() {
                        received.push(
                            item.ok()
                                .and_then(|m| m.action_id().map(|id| id.into_owned())),
                        );
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
                for (was, now) in recorded.into_iter().zip(received.drain(..n)) {
                    if let (Some(was), Some(now)) = (was, now) {
                        if was != now {
                            ids.push((was, now));
                        }
                    }
                }
            }
        }
    }
    if !flush(&mut wr, &mut out, &ids).await {
        return;
    }
    let _ = wr.shutdown().await;
}

/// Writes the buffered replies with recorded ActionIDs replaced by the live ones.
async fn flush<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut Vec<u8>,
    ids: &[(String, String)],
) -> bool {
    if out.is_empty() {
        return true;
    }
    let rewritten = rewrite_action_ids(out, ids);
    out.clear();
    wr.write_all(&rewritten).await.is_ok()
}

pub(crate) fn rewrite_action_ids(bytes: &[u8], ids: &[(String, String)]) -> Vec<u8> {
    let mut result = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let (head, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => line.split_at(colon + 1),
            None => (line, &b""[..]),
        };
        let mapped = head.eq_ignore_ascii_case(b"ActionID:").then(|| {
            let trimmed = value.strip_prefix(b" ").unwrap_or(value);
            let end = trimmed
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(trimmed.len());
            let (id, eol) = trimmed.split_at(end);
            ids.iter()
                .find(|(was, _)| was.as_bytes() == id)
                .map(|(_, now)| (now, eol))
        });
        match mapped.flatten() {
            Some((now, eol)) => {
                result.extend_from_slice(head);
                result.push(b' ');
                result.extend_from_slice(now.as_bytes());
                result.extend_from_slice(eol);
            }
            None => result.extend_from_slice(line),
        }
    }
    result
}
