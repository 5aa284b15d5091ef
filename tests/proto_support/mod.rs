//! Shared by the proto_* test crates: fixture loading and a reference splitter that does not
//! share a line of code with the decoder under test.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};

use amiwire::proto::{Decoder, Kind, Message};
use base64::Engine as _;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

/// Every `tcp-*.jsonl` of both Asterisk versions.
pub fn tcp_fixtures() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["asterisk-22", "asterisk-13"] {
        for entry in std::fs::read_dir(fixture(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with("tcp-") && name.ends_with(".jsonl") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert_eq!(out.len(), 36, "fixtures missing: {out:?}");
    out
}

/// One direction of one connection: the chunks exactly as `recv()`/`send()` returned them.
#[derive(Debug, Default)]
pub struct Conn {
    pub id: u64,
    pub recv: Vec<Vec<u8>>,
    pub send: Vec<Vec<u8>>,
}

impl Conn {
    pub fn stream(&self) -> Vec<u8> {
        self.recv.concat()
    }
}

pub fn load_jsonl(path: &Path) -> Vec<Conn> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut conns: Vec<Conn> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = rec["conn"].as_u64().unwrap_or(0);
        let data = if let Some(s) = rec["data"].as_str() {
            s.as_bytes().to_vec()
        } else if let Some(b) = rec["data_b64"].as_str() {
            base64::engine::general_purpose::STANDARD.decode(b).unwrap()
        } else {
            Vec::new()
        };
        if data.is_empty() {
            continue; // the eof record
        }
        let pos = match conns.iter().position(|c| c.id == id) {
            Some(p) => p,
            None => {
                conns.push(Conn {
                    id,
                    ..Conn::default()
                });
                conns.len() - 1
            }
        };
        match rec["dir"].as_str().unwrap() {
            "recv" => conns[pos].recv.push(data),
            "send" => conns[pos].send.push(data),
            other => panic!("unknown dir {other}"),
        }
    }
    conns
}

/// All messages of one fixture connection stream, decoded whole.
pub fn messages(rel: &str) -> Vec<Message> {
    load_jsonl(&fixture(rel))
        .iter()
        .flat_map(|c| decode_chunks(std::iter::once(c.stream().as_slice())).1)
        .map(|m| m.unwrap())
        .collect()
}

pub type Decoded = (Option<String>, Vec<Result<Message, amiwire::DecodeError>>);

/// Feeds the chunks in order, collecting after each one.
pub fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        d.decode_into(&mut out);
    }
    (d.banner().map(str::to_owned), out)
}

/// Like [`decode_chunks`] for a stream with no banner (an HTTP `/rawman` body).
pub fn decode_chunks_no_banner<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut d = Decoder::new();
    d.set_expect_banner(false);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        d.decode_into(&mut out);
    }
    (d.banner().map(str::to_owned), out)
}

/// Every HTTP `/rawman` (`text/plain`) response body in a connection's byte stream.
pub fn rawman_bodies(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let len: usize = field("content-length:").unwrap().parse().unwrap();
        let body = &rest[end + 4..end + 4 + len];
        if field("content-type:").is_some_and(|t| t.starts_with("text/plain")) {
            out.push(body.to_vec());
        }
        rest = &rest[end + 4 + len..];
    }
    assert!(rest.is_empty(), "HTTP stream parsed to its end");
    out
}

pub fn decode_bytewise(stream: &[u8]) -> Decoded {
    decode_chunks(stream.chunks(1))
}

/// Splits at random points; `seed` makes a failure reproducible.
pub fn random_chunks(stream: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = rng.usize(1..=max.min(rest.len()));
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// What a message is, in plain data: the comparison form for decoder and reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub offset: u64,
    pub raw: Vec<u8>,
    pub kind: Kind,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub unparsed: Vec<Vec<u8>>,
    pub body: Option<Vec<u8>>,
}

pub fn observed(m: &Message) -> Expected {
    Expected {
        offset: m.offset(),
        raw: m.raw().to_vec(),
        kind: m.kind(),
        headers: m
            .headers()
            .map(|h| (h.name.to_vec(), h.value.to_vec()))
            .collect(),
        unparsed: m.unparsed_lines().map(<[u8]>::to_vec).collect(),
        body: m.body().map(<[u8]>::to_vec),
    }
}

const MARKER: &[u8] = b"--END COMMAND--";

/// The reference splitter: slow, line by line, written from the protocol notes only.
/// Lines end at LF; one CR before it is dropped. Empty lines close messages; empty lines with
/// nothing open are dropped. The first line is the banner when it has no colon or names a
/// "Call Manager". A message whose first line is `Response: Follows` switches to the legacy
/// form: header-shaped lines (ending like the first line did) are headers, then everything up
/// to a line ending in `--END COMMAND--` is the body.
pub fn reference(stream: &[u8], expect_banner: bool) -> (Option<String>, Vec<Expected>) {
    #[derive(PartialEq)]
    enum State {
        Headers,
        FollowsHeaders { first_crlf: bool },
        Body,
    }
    let mut banner = None;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first_line = expect_banner;
    let mut cur: Option<Expected> = None;
    let mut state = State::Headers;

    while let Some(nl) = stream[pos..].iter().position(|&b| b == b'\n') {
        let line_start = pos;
        let line_end = pos + nl + 1; // after the LF
        pos = line_end;
        let mut content = &stream[line_start..line_end - 1];
        let had_cr = content.last() == Some(&b'\r');
        if had_cr {
            content = &content[..content.len() - 1];
        }

        if std::mem::take(&mut first_line)
            && !content.is_empty()
            && (!content.contains(&b':') || contains(content, b"Call Manager"))
        {
            banner = Some(String::from_utf8_lossy(content).into_owned());
            continue;
        }

        let open = |cur: &mut Option<Expected>| {
            cur.get_or_insert_with(|| Expected {
                offset: line_start as u64,
                raw: Vec::new(),
                kind: Kind::Other,
                headers: Vec::new(),
                unparsed: Vec::new(),
                body: None,
            })
            .raw
            .extend_from_slice(&stream[line_start..line_end]);
        };

        if state == State::Body {
            open(&mut cur);
            let msg = cur.as_mut().unwrap();
            let body = msg.body.get_or_insert_with(Vec::new);
            if content.ends_with(MARKER) {
                body.extend_from_slice(&content[..content.len() - MARKER.len()]);
                out.push(finish(cur.take().unwrap()));
                state = State::Headers;
            } else {
                body.extend_from_slice(&stream[line_start..line_end]);
            }
            continue;
        }
        if let State::FollowsHeaders { first_crlf } = state {
            if content == MARKER {
                open(&mut cur);
                let mut msg = cur.take().unwrap();
                msg.body = Some(Vec::new());
                out.push(finish(msg));
                state = State::Headers;
                continue;
            }
            let header = header_shaped(content) && (had_cr || !first_crlf);
            let closes = content.is_empty() && had_cr;
            if !header && !closes {
                // The CLI text starts here; re-run this line as a body line.
                state = State::Body;
                pos = line_start;
                continue;
            }
        }

        if content.is_empty() {
            if let Some(mut msg) = cur.take() {
                msg.raw.extend_from_slice(&stream[line_start..line_end]);
                out.push(finish(msg));
                state = State::Headers;
            }
            continue;
        }
        let first = cur.is_none();
        open(&mut cur);
        let msg = cur.as_mut().unwrap();
        match content.iter().position(|&b| b == b':') {
            Some(c) => {
                let name = &content[..c];
                let mut value = &content[c + 1..];
                if value.first() == Some(&b' ') {
                    value = &value[1..];
                }
                if first
                    && name.eq_ignore_ascii_case(b"Response")
                    && value.trim_ascii().eq_ignore_ascii_case(b"Follows")
                {
                    state = State::FollowsHeaders { first_crlf: had_cr };
                }
                msg.headers.push((name.to_vec(), value.to_vec()));
            }
            None => msg.unparsed.push(content.to_vec()),
        }
    }
    (banner, out)
}

fn finish(mut msg: Expected) -> Expected {
    let has = |n: &[u8]| msg.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    msg.kind = if has(b"Event") {
        Kind::Event
    } else if has(b"Response") {
        Kind::Response
    } else {
        Kind::Other
    };
    msg
}

fn header_shaped(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        None | Some(0) => false,
        Some(c) => !line[..c].iter().any(u8::is_ascii_whitespace),
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Asserts the decoder's output equals the reference, message by message (every header).
pub fn assert_matches_reference(what: &str, stream: &[u8], got: &Decoded) {
    assert_matches_reference_with(what, stream, got, true);
}

pub fn assert_matches_reference_with(what: &str, stream: &[u8], got: &Decoded, banner: bool) {
    let (ref_banner, want) = reference(stream, banner);
    assert_eq!(got.0, ref_banner, "{what}: banner");
    let got: Vec<Expected> = got
        .1
        .iter()
        .map(|m| observed(m.as_ref().unwrap()))
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{what}: message {i}");
    }
    assert_eq!(got.len(), want.len(), "{what}: message count");
}
