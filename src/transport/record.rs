//! Writes a connection's traffic as a JSONL transcript in the fixtures' format
//! (`{"dir": "send"|"recv", "t": seconds, "conn": n, "data": text}` or `data_b64`),
//! so that recorded traffic can be replayed by the simulator. Secrets are masked in both
//! directions, line by line across chunk boundaries: a write or read may end anywhere, even
//! inside a `Secret:` line, and the rest of that line is masked in the next record.

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
    sent: LineMasker,
    received: LineMasker,
}

impl Recorder {
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        Ok(Recorder {
            out: BufWriter::new(File::create(path)?),
            start: Instant::now(),
            conn: 0,
            sent: LineMasker::default(),
            received: LineMasker::default(),
        })
    }

    /// A new TCP connection (after a reconnect) gets the next `conn` number.
    pub fn next_connection(&mut self) {
        self.conn += 1;
        self.sent = LineMasker::default();
        self.received = LineMasker::default();
    }

    pub fn record(&mut self, dir: &str, bytes: &[u8], eof: bool) {
        let mut record = serde_json::json!({
            "dir": dir,
            "t": (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e6,
            "conn": self.conn,
        });
        let masker = if dir == "send" {
            &mut self.sent
        } else {
            &mut self.received
        };
        let bytes = masker.mask(bytes);
        match std::str::from_utf8(&bytes) {
            Ok(text) => record["data"] = text.into(),
            Err(_) => {
                record["data_b64"] = base64::engine::general_purpose::STANDARD
                    .encode(&bytes)
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

/// A header name longer than this is no secret's (see
/// [`crate::proto::message::SECRET_HEADERS`]): stop collecting it.
const LONGEST_NAME: usize = 64;

/// Where one direction's byte stream stands within its current line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Line {
    /// Before the line's first colon: the name is being collected.
    #[default]
    Name,
    /// In the value of a secret header: dropped up to the line's end.
    Secret,
    /// In any other value, or a line that cannot be a secret's: copied.
    Other,
}

/// Replaces the value of every secret header ([`is_secret_header`]) with `********`, in a
/// stream cut into chunks anywhere.
#[derive(Debug, Default)]
struct LineMasker {
    line: Line,
    name: Vec<u8>,
}

impl LineMasker {
    fn mask(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.line {
                Line::Name => {
                    let Some((&b, after)) = rest.split_first() else {
                        break;
                    };
                    rest = after;
                    out.push(b);
                    match b {
                        b'\n' => self.name.clear(),
                        b':' => {
                            self.line = if is_secret_header(self.name.trim_ascii()) {
                                out.extend_from_slice(b" ********");
                                Line::Secret
                            } else {
                                Line::Other
                            };
                            self.name.clear();
                        }
                        _ if self.name.len() < LONGEST_NAME => self.name.push(b),
                        _ => {
                            self.line = Line::Other;
                            self.name.clear();
                        }
                    }
                }
                Line::Secret => match memchr::memchr2(b'\r', b'\n', rest) {
                    Some(at) => {
                        let end = rest.get(at).copied().unwrap_or(b'\n');
                        out.push(end);
                        rest = rest.get(at + 1..).unwrap_or_default();
                        if end == b'\n' {
                            self.line = Line::Name;
                        }
                    }
                    None => rest = &[],
                },
                Line::Other => match memchr::memchr(b'\n', rest) {
                    Some(at) => {
                        out.extend_from_slice(rest.get(..=at).unwrap_or_default());
                        rest = rest.get(at + 1..).unwrap_or_default();
                        self.line = Line::Name;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        rest = &[];
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (project rule)
mod tests {
    use super::*;

    fn masked_in_chunks(stream: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut masker = LineMasker::default();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            out.extend(masker.mask(&stream[from..cut]));
            from = cut;
        }
        out
    }

    const WIRE: &[u8] = b"Action: Login\r\nUsername: admin\r\nSecret: s3cr3t-value\r\n\r\n\
        Event: AuthDetail\r\nPassword: pjsip-pw\r\nMd5Cred: 0123abcd\r\nUsingPassword: 1\r\n\
        key : md5-digest\nNewPassword:x\r\nMessage: Key: not a header here\r\n\r\n";
    const MASKED: &[u8] = b"Action: Login\r\nUsername: admin\r\nSecret: ********\r\n\r\n\
        Event: AuthDetail\r\nPassword: ********\r\nMd5Cred: ********\r\nUsingPassword: 1\r\n\
        key : ********\nNewPassword: ********\r\nMessage: Key: not a header here\r\n\r\n";

    #[test]
    fn secrets_are_masked_wherever_the_stream_is_cut() {
        assert_eq!(masked_in_chunks(WIRE, &[]), MASKED);
        for a in 0..=WIRE.len() {
            assert_eq!(masked_in_chunks(WIRE, &[a]), MASKED, "cut at {a}");
        }
        // Byte by byte, and three cuts around the first secret.
        let every: Vec<usize> = (1..WIRE.len()).collect();
        assert_eq!(masked_in_chunks(WIRE, &every), MASKED);
        assert_eq!(masked_in_chunks(WIRE, &[40, 41, 50]), MASKED);
    }

    #[test]
    fn both_directions_are_masked_and_a_reconnect_starts_afresh() {
        let dir = std::env::temp_dir().join(format!("amiwire-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("both.jsonl");
        let mut rec = Recorder::create(&path).unwrap();
        rec.record("send", b"Action: Login\r\nSecret: top", false);
        rec.record("recv", b"Response: Error\r\nSecret: ech", false);
        rec.record("send", b"secret\r\n\r\n", false);
        rec.record("recv", b"oed\r\n\r\n", false);
        // A connection lost inside a secret's value: the new one starts with a fresh line.
        rec.record("send", b"Secret: half", false);
        rec.next_connection();
        rec.record("send", b"Action: Ping\r\n\r\n", false);
        rec.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        for leaked in ["top", "secret\\r", "ech", "oed", "half"] {
            assert!(!text.contains(leaked), "{leaked} recorded: {text}");
        }
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let stream = |dir: &str, conn: u64| -> String {
            records
                .iter()
                .filter(|r| r["dir"] == dir && r["conn"] == conn)
                .map(|r| r["data"].as_str().unwrap())
                .collect()
        };
        assert_eq!(
            stream("send", 0),
            "Action: Login\r\nSecret: ********\r\n\r\nSecret: ********"
        );
        assert_eq!(
            stream("recv", 0),
            "Response: Error\r\nSecret: ********\r\n\r\n"
        );
        assert_eq!(stream("send", 1), "Action: Ping\r\n\r\n");
    }
}
