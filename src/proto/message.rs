//! `Message`: one AMI message as an ordered, case-insensitive multimap over its raw bytes.
//!
//! A message is stored as a single shared allocation: the exact bytes received, followed by a
//! compact line index (where each line's colon and end are). Nothing is decoded up front, so a
//! parsed message costs little more than its wire size, and header values are sliced out only
//! when someone asks for them. The original spelling, order, empty values and repeated headers
//! are all kept; lines without a colon are kept too (see [`Message::unparsed_lines`]).

use std::borrow::Cow;
use std::fmt;

use super::event_type::EventType;

/// Index entries are (colon, end) pairs relative to the start of the raw bytes: 16-bit for
/// messages under 64 KiB (almost all), 32-bit otherwise (big Command outputs).
const NO_COLON_16: u16 = u16::MAX;
const NO_COLON_32: u32 = u32::MAX;
const SMALL_LIMIT: usize = u16::MAX as usize - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Has an `Event:` header (checked first: `OriginateResponse` also carries `Response:`).
    Event,
    /// Has a `Response:` header and no `Event:` header.
    Response,
    /// Neither: a stray block of lines from an odd server or module.
    Other,
}

#[derive(Clone)]
pub struct Message {
    /// Raw bytes followed by the line index, in one allocation.
    data: Box<[u8]>,
    raw_len: u32,
    lines: u32,
    wide: bool,
    kind: Kind,
    /// Which documented event this is, decided once here, where the bytes are still hot,
    /// so that a consumer on another thread types the event without reading them.
    event_type: EventType,
    /// Legacy `Response: Follows` CLI text (between the headers and the end marker).
    body: Option<(u32, u32)>,
    offset: u64,
}

/// One header line, borrowed from a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Collects line positions while the decoder scans a message.
#[derive(Default, Debug)]
pub(crate) struct LineIndex {
    pub(crate) entries: Vec<(u32, u32)>,
}

impl LineIndex {
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
    pub(crate) fn push(&mut self, colon: Option<u32>, end: u32) {
        self.entries.push((colon.unwrap_or(NO_COLON_32), end));
    }
}

#[inline]
pub(crate) fn bytes_eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A line ends at `end` (a CR or LF byte); the next line starts after its LF.
pub(crate) fn next_line_start(raw: &[u8], end: usize) -> usize {
    if raw.get(end) == Some(&b'\r') && raw.get(end + 1) == Some(&b'\n') {
        end + 2
    } else {
        end + 1
    }
}

impl Message {
    /// Builds a message from its raw bytes, the line index the decoder collected and the
    /// documented event its first `Event:` line names.
    pub(crate) fn from_parts(
        raw: &[u8],
        index: &LineIndex,
        kind: Kind,
        event_type: EventType,
        body: Option<(u32, u32)>,
        offset: u64,
    ) -> Message {
        let wide = raw.len() > SMALL_LIMIT;
        let entry = if wide { 8 } else { 4 };
        // Sized once and filled in place: one exact allocation, no per-entry capacity checks.
        let total = raw.len() + index.len() * entry;
        let mut data = Vec::with_capacity(total);
        data.extend_from_slice(raw);
        data.resize(total, 0);
        let tail = data.get_mut(raw.len()..).unwrap_or_default();
        for (slot, &(colon, end)) in tail.chunks_exact_mut(entry).zip(&index.entries) {
            if wide {
                let [a, b, c, d] = colon.to_le_bytes();
                let [e, f, g, h] = end.to_le_bytes();
                slot.copy_from_slice(&[a, b, c, d, e, f, g, h]);
            } else {
                let colon = if colon == NO_COLON_32 {
                    NO_COLON_16
                } else {
                    colon as u16
                };
                let [a, b] = colon.to_le_bytes();
                let [c, d] = (end as u16).to_le_bytes();
                slot.copy_from_slice(&[a, b, c, d]);
            }
        }
        Message {
            data: data.into_boxed_slice(),
            raw_len: raw.len() as u32,
            lines: index.len() as u32,
            wide,
            kind,
            event_type,
            body,
            offset,
        }
    }

    /// Parses one complete message from bytes (a convenience over [`crate::proto::Decoder`]).
    /// Returns `None` when the bytes hold no message.
    pub fn parse_one(bytes: &[u8]) -> Option<Message> {
        let mut decoder = crate::proto::Decoder::new();
        decoder.set_expect_banner(false);
        decoder.feed(bytes);
        decoder.feed(b"\r\n\r\n");
        decoder.next_message().and_then(Result::ok)
    }

    fn entry(&self, i: usize) -> (Option<usize>, usize) {
        let base = self.raw_len as usize;
        if self.wide {
            let at = base + i * 8;
            let colon = self.u32_at(at);
            let end = self.u32_at(at + 4);
            (
                (colon != NO_COLON_32).then_some(colon as usize),
                end as usize,
            )
        } else {
            let at = base + i * 4;
            let colon = self.u16_at(at);
            let end = self.u16_at(at + 2);
            (
                (colon != NO_COLON_16).then_some(colon as usize),
                end as usize,
            )
        }
    }

    fn u16_at(&self, at: usize) -> u16 {
        match self.data.get(at..at + 2) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]),
            _ => 0,
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        match self.data.get(at..at + 4) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    /// Every line: (start, colon, end) positions within `raw`.
    fn line_spans(&self) -> impl Iterator<Item = (usize, Option<usize>, usize)> + '_ {
        let raw = self.raw();
        let mut start = 0usize;
        (0..self.lines as usize).map(move |i| {
            let (colon, end) = self.entry(i);
            let span = (start, colon, end);
            start = next_line_start(raw, end);
            span
        })
    }

    fn header_at(&self, start: usize, colon: usize, end: usize) -> Header<'_> {
        let raw = self.raw();
        let name = raw.get(start..colon).unwrap_or_default();
        // Split at the first colon, then strip exactly one space: Output lines keep CLI indentation.
        let mut value_start = colon + 1;
        if raw.get(value_start) == Some(&b' ') {
            value_start += 1;
        }
        let value = raw.get(value_start.min(end)..end).unwrap_or_default();
        Header { name, value }
    }

    /// The exact bytes received for this message, closing blank line included.
    pub fn raw(&self) -> &[u8] {
        self.data.get(..self.raw_len as usize).unwrap_or_default()
    }

    /// Stream offset of the message's first byte (0 when parsed standalone).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn is_event(&self) -> bool {
        self.kind == Kind::Event
    }

    /// The `Event` value of an event. Asterisk puts `Event:` first, so that line is read
    /// straight from the start of the bytes: the line index sits after them, and skipping it
    /// saves a cache miss per message when a consumer reads only the names of a flood.
    pub fn event_name_bytes(&self) -> Option<&[u8]> {
        if !self.is_event() {
            return None;
        }
        let raw = self.raw();
        match raw.get(..6) {
            Some(head) if bytes_eq_ignore_case(head, b"event:") => {
                let line = raw.get(6..).unwrap_or_default();
                // Event names are short: a plain scan beats memchr's call and set-up (every
                // event's name is looked up as it is decoded).
                let end = line
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(line.len());
                let value = line.get(..end).unwrap_or_default();
                Some(value.strip_prefix(b" ").unwrap_or(value))
            }
            _ => self.get_bytes("Event"),
        }
    }

    /// Which documented event this is (decided when the message was decoded).
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    pub fn is_response(&self) -> bool {
        self.kind == Kind::Response
    }

    /// Headers in wire order, repeats included. Lines without a colon are not headers.
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.line_spans()
            .filter_map(|(start, colon, end)| colon.map(|colon| self.header_at(start, colon, end)))
    }

    /// Number of headers (repeats counted).
    pub fn len(&self) -> usize {
        self.line_spans()
            .filter(|(_, colon, _)| colon.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines that are not `Key: value` headers (and not the legacy Command body), in order.
    pub fn unparsed_lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let raw = self.raw();
        self.line_spans()
            .filter(|(_, colon, _)| colon.is_none())
            .map(move |(start, _, end)| raw.get(start..end).unwrap_or_default())
    }

    /// The first value of `name` (ASCII case-insensitive), as raw bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|h| bytes_eq_ignore_case(h.name, name.as_bytes()))
            .map(|h| h.value)
    }

    /// Every value of `name`, in order.
    pub fn get_all_bytes<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers()
            .filter(move |h| bytes_eq_ignore_case(h.name, name.as_bytes()))
            .map(|h| h.value)
    }

    /// The first value of `name`, decoded (see [`decode_text`]).
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get_bytes(name).map(decode_text)
    }

    pub fn get_all(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.get_all_bytes(name).map(decode_text).collect()
    }

    /// True when `name` has `value` (both compared ASCII case-insensitively).
    pub fn has_value(&self, name: &str, value: &str) -> bool {
        self.get_bytes(name)
            .is_some_and(|v| bytes_eq_ignore_case(v, value.as_bytes()))
    }

    /// The event name, for events.
    pub fn event_name(&self) -> Option<Cow<'_, str>> {
        self.event_name_bytes().map(decode_text)
    }

    /// The `Response:` value (`Success`, `Error`, `Follows`, `Goodbye`), for responses.
    pub fn response(&self) -> Option<Cow<'_, str>> {
        if self.kind == Kind::Response {
            self.get("Response")
        } else {
            None
        }
    }

    pub fn action_id(&self) -> Option<Cow<'_, str>> {
        self.get("ActionID")
    }

    /// The legacy (Asterisk <= 13) Command body: raw CLI text, end marker excluded.
    pub fn body(&self) -> Option<&[u8]> {
        self.body
            .and_then(|(s, e)| self.raw().get(s as usize..e as usize))
    }

    /// Heap bytes this message owns (for memory accounting).
    pub fn heap_size(&self) -> usize {
        self.data.len()
    }
}

/// Field decoding policy: UTF-8 when valid; otherwise Latin-1, where every byte maps to one
/// character, so nothing is dropped and the bytes can be recovered exactly
/// (`s.encode("latin-1")`). The raw bytes also stay reachable through `get_bytes` / `raw`.
pub fn decode_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

/// The names of headers that carry a credential in Asterisk's AMI (its manager.c and the
/// action and event documentation): Login's `Secret` and MD5 `Key`, and what the PJSIP
/// `AuthDetail`/`AuthList`/`TransportDetail` and `VoicemailPasswordChange` events show.
/// (`Key` also names AstDB keys, which are masked with it: a mask too many costs nothing.)
pub const SECRET_HEADERS: &[&str] = &[
    "Secret",
    "Key",
    "Password",
    "NewPassword",
    "Md5Cred",
    "PasswordDigest",
    "OauthSecret",
    "RefreshToken",
];

/// Header names whose values never appear in a Debug/repr, a log line, an error message or
/// a recording.
pub fn is_secret_header(name: &[u8]) -> bool {
    SECRET_HEADERS
        .iter()
        .any(|secret| bytes_eq_ignore_case(name, secret.as_bytes()))
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for h in self.headers() {
            let name = decode_text(h.name);
            if is_secret_header(h.name) {
                map.entry(&name, &"********");
            } else {
                map.entry(&name, &decode_text(h.value));
            }
        }
        map.finish()
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.raw() == other.raw()
    }
}
