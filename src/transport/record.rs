//! Writes a connection's traffic as a JSONL transcript in the fixtures' format
//! (`{"dir": "send"|"recv", "t": seconds, "conn": n, "data": text}` or `data_b64`),
//! so that recorded traffic can be replayed by the simulator. Secrets are masked.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use base64::Engine;

use crate::proto::message::is_secret_header;

pub struct Recorder {
    out: BufWriter<File>,
    start: Instant,
    conn: u32,
}

impl Recorder {
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        Ok(Recorder {
            out: BufWriter::new(File::create(path)?),
            start: Instant::now(),
            conn: 0,
        })
    }

    /// A new TCP connection (after a reconnect) gets the next `conn` number.
    pub fn next_connection(&mut self) {
        self.conn += 1;
    }

    pub fn record(&mut self, dir: &str, bytes: &[u8], eof: bool) {
        let mut record = serde_json::json!({
            "dir": dir,
            "t": (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e6,
            "conn": self.conn,
        });
        let masked;
        let bytes = if dir == "send" {
            masked = mask_secrets(bytes);
            &masked[..]
        } else {
            bytes
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => record["data"] = text.into(),
            Err(_) => {
                record["data_b64"] = base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into()
            }
        }
        if eof {
            record["eof"] = true.into();
        }
        // A failing disk must not break the connection: recording is best effort.
        let _ = serde_json::to_writer(&mut self.out, &record);
        let _ = self.out.write_all(b"\n");
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

/// Replaces the value of every `Secret:` / `Key:` line.
fn mask_secrets(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match memchr::memchr(b':', line) {
            Some(colon) if is_secret_header(line.get(..colon).unwrap_or_default().trim_ascii()) => {
                out.extend_from_slice(line.get(..=colon).unwrap_or_default());
                out.extend_from_slice(b" ********");
                if line.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                } else if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}
