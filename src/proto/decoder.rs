//! Incremental AMI framing over bytes.
//!
//! Asterisk writes one message in several pieces and packs several messages into one read, so
//! the decoder assumes nothing about read boundaries: the output is the same whether the stream
//! arrives whole, byte by byte or in random chunks (see the proptests). It handles the banner
//! line (no blank line after it), CRLF and bare-LF lines, the `\n\r\n\r\n` oddity, stray empty
//! lines between messages, and the legacy `Response: Follows` Command body that runs up to an
//! end marker with blank lines allowed inside. Limits fail one message and never the stream:
//! the decoder reports a [`DecodeError`] with the byte offset and resynchronises at the next
//! blank line, discarding as it goes, so it never buffers without bound.

use memchr::memchr;

use super::error::{DecodeError, DecodeErrorKind};
use super::event_type::EventType;
use super::message::{Kind, LineIndex, Message, bytes_eq_ignore_case, next_line_start};

/// Inbound limits. The defaults are far above anything Asterisk sends (its longest line in the
/// fixtures is 3 030 bytes; `core show help` as a legacy body is 14 KB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_line: usize,
    pub max_lines: usize,
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 256 * 1024,
            max_lines: 16 * 1024,
            max_message: 8 * 1024 * 1024,
        }
    }
}

pub const DEFAULT_END_MARKERS: &[&str] = &["--END COMMAND--"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follows {
    No,
    /// `Response: Follows` seen; still reading its header lines.
    Headers,
    /// In the raw CLI body, which started at this offset from the message start.
    Body(u32),
}

#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Start of the message being assembled.
    start: usize,
    /// Start of the current line.
    line_start: usize,
    /// Where the search for the next LF resumes.
    scan: usize,
    /// The current line's first colon, if the scan has passed one.
    colon: Option<usize>,
    /// What the message's header names said so far (classified while scanning).
    kind: Kind,
    /// The documented event named by an `Event:` line met on the general path (nearly always
    /// the first line, where the value is at hand), looked up while its bytes are hot, so
    /// that a consumer on another thread need not read them. `None` until then.
    event_type: Option<EventType>,
    index: LineIndex,
    follows: Follows,
    /// Whether the message's first line ended in CRLF (tells legacy body lines from headers).
    first_line_crlf: bool,
    /// After an error: discard up to the next blank line.
    skipping: bool,
    /// While skipping: the current line already had bytes that were discarded.
    skipped_partial_line: bool,
    expect_banner: bool,
    banner: Option<String>,
    limits: Limits,
    end_markers: Vec<Vec<u8>>,
    errors: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Decoder {
        Decoder {
            buf: Vec::new(),
            base: 0,
            start: 0,
            line_start: 0,
            scan: 0,
            colon: None,
            kind: Kind::Other,
            event_type: None,
            index: LineIndex::default(),
            follows: Follows::No,
            first_line_crlf: true,
            skipping: false,
            skipped_partial_line: false,
            expect_banner: true,
            banner: None,
            limits,
            end_markers: DEFAULT_END_MARKERS
                .iter()
                .map(|m| m.as_bytes().to_vec())
                .collect(),
            errors: 0,
        }
    }

    /// Whether the stream's first line may be a banner (`Asterisk Call Manager/11.0.0`).
    /// Only a first line without a colon, or naming a "Call Manager", is taken as one.
    pub fn set_expect_banner(&mut self, expect: bool) {
        self.expect_banner = expect;
    }

    /// The lines that end a legacy `Response: Follows` body (default `--END COMMAND--`).
    pub fn set_end_markers<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, markers: I) {
        self.end_markers = markers
            .into_iter()
            .map(|m| m.as_ref().as_bytes().to_vec())
            .collect();
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The banner line, once seen.
    pub fn banner(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// Messages dropped for exceeding a limit so far.
    pub fn error_count(&self) -> u64 {
        self.errors
    }

    /// Bytes held for a message not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Stream offset of the next byte to be fed.
    pub fn stream_offset(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Drops consumed bytes from the front of the buffer, keeping the copy amortised.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() || (self.start >= 4096 && self.start * 2 >= self.buf.len())
        {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.line_start -= self.start;
            self.scan -= self.start;
            self.colon = self.colon.map(|c| c - self.start);
            self.start = 0;
        }
    }

    /// Decodes everything complete so far into `out`.
    pub fn decode_into(&mut self, out: &mut Vec<Result<Message, DecodeError>>) {
        while let Some(item) = self.next_message() {
            out.push(item);
        }
    }

    /// The next complete message, an error for a message that broke a limit, or `None` when
    /// more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<Message, DecodeError>> {
        loop {
            self.fast_headers();
            let Some(nl) = self.next_line() else {
                return self.check_partial();
            };
            let crlf = nl > self.line_start && self.buf.get(nl - 1) == Some(&b'\r');
            let content_end = if crlf { nl - 1 } else { nl };
            if let Some(out) = self.line(content_end, nl, crlf) {
                return Some(out);
            }
        }
    }

    /// The hot loop: complete `Key: value` lines after the first line of an ordinary message,
    /// which is nearly every line Asterisk sends. It stops, without consuming it, at anything
    /// else (an empty or colon-less line, a partial line, a limit reached) and leaves that line
    /// to the general path in [`Self::line`], so the two cannot disagree on anything but speed.
    fn fast_headers(&mut self) {
        if self.skipping
            || self.follows != Follows::No
            || self.colon.is_some()
            || self.scan != self.line_start
            || self.index.len() == 0
        {
            return;
        }
        let Decoder {
            buf,
            start,
            line_start,
            scan,
            index,
            kind,
            limits,
            ..
        } = self;
        let mut pos = *line_start;
        while index.len() < limits.max_lines {
            let (Some(c), Some(l)) = scan_line(buf.get(pos..).unwrap_or_default()) else {
                break;
            };
            let colon = pos + c;
            let nl = pos + l;
            let content_end = if buf.get(nl - 1) == Some(&b'\r') {
                nl - 1
            } else {
                nl
            };
            if content_end - pos > limits.max_line || nl + 1 - *start > limits.max_message {
                break;
            }
            *kind = kind_after(*kind, buf.get(pos..colon).unwrap_or_default());
            index.push(Some((colon - *start) as u32), (content_end - *start) as u32);
            pos = nl + 1;
        }
        *line_start = pos;
        *scan = pos;
    }

    /// Finds the end of the current line, noting its first colon on the way, in one pass
    /// over the bytes. Resumes where the last call stopped, so a line fed in pieces is
    /// scanned once.
    fn next_line(&mut self) -> Option<usize> {
        let from = self.scan;
        let (colon, lf) = scan_line(self.buf.get(from..).unwrap_or_default());
        if self.colon.is_none() {
            self.colon = colon.map(|c| from + c);
        }
        match lf {
            Some(l) => {
                self.scan = from + l + 1;
                Some(from + l)
            }
            None => {
                self.scan = self.buf.len();
                None
            }
        }
    }

    /// No complete line is buffered: enforce the limits on what is waiting.
    fn check_partial(&mut self) -> Option<Result<Message, DecodeError>> {
        let pending = self.pending_end();
        if self.skipping {
            // Discard the partial line; remember that it was not empty.
            if pending > self.line_start {
                self.skipped_partial_line = true;
            }
            self.start = pending;
            self.line_start = pending;
            self.scan = pending;
            self.colon = None;
            return None;
        }
        let (kind, at) = self.over_limit(self.line_start, pending, pending)?;
        Some(Err(self.fail(kind, at, None)))
    }

    /// The byte limit crossed first, if any, by a line `[line_start, line_end)` of a message
    /// running to `message_end`. Taking the earliest crossing (not a fixed order) gives the
    /// same error whether the line arrives whole or in pieces.
    fn over_limit(
        &self,
        line_start: usize,
        line_end: usize,
        message_end: usize,
    ) -> Option<(DecodeErrorKind, usize)> {
        let line = (line_end - line_start > self.limits.max_line).then(|| {
            (
                DecodeErrorKind::LineTooLong,
                line_start + self.limits.max_line,
            )
        });
        let message = (message_end - self.start > self.limits.max_message).then(|| {
            (
                DecodeErrorKind::MessageTooLarge,
                self.start + self.limits.max_message,
            )
        });
        match (line, message) {
            (Some(l), Some(m)) => Some(if m.1 < l.1 { m } else { l }),
            (l, m) => l.or(m),
        }
    }

    /// The end of the buffered bytes, less a final CR: it may begin the CRLF of an empty line,
    /// so it is neither counted against a limit nor discarded before its LF is seen. This keeps
    /// errors and resynchronisation the same however the stream is chunked.
    fn pending_end(&self) -> usize {
        let len = self.buf.len();
        if len > self.line_start && self.buf.last() == Some(&b'\r') {
            len - 1
        } else {
            len
        }
    }

    /// Records an error, drops the message so far and skips to the next blank line.
    /// `line_done` is (LF position, line was empty) when the offending line was complete; an
    /// empty one closed the message itself, so there is nothing left to skip.
    fn fail(
        &mut self,
        kind: DecodeErrorKind,
        at: usize,
        line_done: Option<(usize, bool)>,
    ) -> DecodeError {
        self.errors += 1;
        let detail = match kind {
            DecodeErrorKind::LineTooLong => {
                format!("a line is longer than {} bytes", self.limits.max_line)
            }
            DecodeErrorKind::TooManyLines => format!("more than {} lines", self.limits.max_lines),
            DecodeErrorKind::MessageTooLarge => {
                format!("more than {} bytes", self.limits.max_message)
            }
        };
        let err = DecodeError {
            kind,
            offset: self.base + at as u64,
            message_offset: self.base + self.start as u64,
            detail,
        };
        let resume = match line_done {
            Some((nl, empty)) => {
                self.skipping = !empty;
                self.skipped_partial_line = false;
                nl + 1
            }
            None => {
                self.skipping = true;
                let pending = self.pending_end();
                self.skipped_partial_line = pending > self.line_start;
                pending
            }
        };
        self.start = resume;
        self.line_start = resume;
        self.scan = resume;
        self.colon = None;
        self.reset_message();
        err
    }

    fn reset_message(&mut self) {
        self.index.clear();
        self.follows = Follows::No;
        self.first_line_crlf = true;
        self.kind = Kind::Other;
        self.event_type = None;
    }

    /// Handles one complete line `[line_start, content_end)` whose LF is at `nl`.
    fn line(
        &mut self,
        content_end: usize,
        nl: usize,
        crlf: bool,
    ) -> Option<Result<Message, DecodeError>> {
        let line_start = self.line_start;
        self.line_start = nl + 1;
        let colon = self.colon.take();
        let empty = content_end == line_start;

        if self.skipping {
            if empty && !self.skipped_partial_line {
                self.skipping = false;
                self.start = nl + 1;
            }
            self.skipped_partial_line = false;
            return None;
        }
        if let Some((kind, at)) = self.over_limit(line_start, content_end, nl + 1) {
            return Some(Err(self.fail(kind, at, Some((nl, empty)))));
        }
        if self.expect_banner {
            self.expect_banner = false;
            if !empty && self.index.len() == 0 {
                let line = self.buf.get(line_start..content_end).unwrap_or_default();
                if colon.is_none() || memchr::memmem::find(line, b"Call Manager").is_some() {
                    self.banner = Some(String::from_utf8_lossy(line).into_owned());
                    self.start = nl + 1;
                    return None;
                }
            }
        }

        match self.follows {
            Follows::Body(body_start) => {
                if let Some(body_end) = self.marker_in(line_start, content_end) {
                    let body = Some((body_start, self.rel(body_end)));
                    return Some(Ok(self.finish(nl, body)));
                }
                return None;
            }
            Follows::Headers => {
                if self.marker_in(line_start, content_end) == Some(line_start) {
                    let at = self.rel(line_start);
                    return Some(Ok(self.finish(nl, Some((at, at)))));
                }
                let is_header =
                    self.is_header_line(line_start, colon) && (crlf || !self.first_line_crlf);
                if !is_header && (!empty || !crlf) {
                    // First line of the raw CLI text (bare LF where headers used CRLF, or no
                    // `Token:` shape); from here on only the end marker ends the message.
                    self.follows = Follows::Body(self.rel(line_start));
                    if let Some(body_end) = self.marker_in(line_start, content_end) {
                        let body = Some((self.rel(line_start), self.rel(body_end)));
                        return Some(Ok(self.finish(nl, body)));
                    }
                    return None;
                }
            }
            Follows::No => {}
        }

        if empty {
            if self.index.len() == 0 {
                // A stray empty line between messages (the `\n\r\n\r\n` oddity): drop it.
                self.start = nl + 1;
                return None;
            }
            return Some(Ok(self.finish(nl, None)));
        }

        if self.index.len() >= self.limits.max_lines {
            return Some(Err(self.fail(
                DecodeErrorKind::TooManyLines,
                line_start,
                Some((nl, false)),
            )));
        }
        if let Some(c) = colon {
            self.classify(line_start, c, content_end);
        }
        if self.index.len() == 0 {
            self.first_line_crlf = crlf;
        }
        self.index
            .push(colon.map(|c| self.rel(c)), self.rel(content_end));
        None
    }

    /// Notes what the header `[line_start, colon)` says about the message's kind, and which
    /// event an `Event:` line names. A first line of `Response: Follows` switches to the
    /// legacy Command framing.
    fn classify(&mut self, line_start: usize, colon: usize, content_end: usize) {
        let name = self.buf.get(line_start..colon).unwrap_or_default();
        let kind = kind_after(self.kind, name);
        if kind == Kind::Event && self.kind != Kind::Event {
            let value = self.buf.get(colon + 1..content_end).unwrap_or_default();
            self.event_type = Some(EventType::of(value.strip_prefix(b" ").unwrap_or(value)));
        }
        self.kind = kind;
        if self.index.len() == 0 && bytes_eq_ignore_case(name, b"response") {
            let value = self.buf.get(colon + 1..content_end).unwrap_or_default();
            if bytes_eq_ignore_case(value.trim_ascii_start(), b"follows") {
                self.follows = Follows::Headers;
            }
        }
    }

    /// `Token: value` with a non-empty token free of white space: what a real header looks like.
    fn is_header_line(&self, line_start: usize, colon: Option<usize>) -> bool {
        match colon {
            Some(c) if c > line_start => self
                .buf
                .get(line_start..c)
                .is_some_and(|name| !name.iter().any(|b| b.is_ascii_whitespace())),
            _ => false,
        }
    }

    fn rel(&self, pos: usize) -> u32 {
        (pos - self.start) as u32
    }

    /// If the line is (or ends with) an end marker, where the body text before it ends.
    fn marker_in(&self, line_start: usize, content_end: usize) -> Option<usize> {
        let line = self.buf.get(line_start..content_end)?;
        self.end_markers
            .iter()
            .find(|m| !m.is_empty() && line.ends_with(m))
            .map(|m| content_end - m.len())
    }

    /// Emits the message that ends with the line whose LF is at `nl`.
    fn finish(&mut self, nl: usize, body: Option<(u32, u32)>) -> Message {
        let end = nl + 1;
        let raw = self.buf.get(self.start..end).unwrap_or_default();
        let event_type = match self.event_type {
            Some(event_type) => event_type,
            // `Event:` only on the hot loop's lines (not first): rare, so looked for here
            // rather than tested on every line there.
            None if self.kind == Kind::Event => {
                first_event_value(raw, &self.index).map_or(EventType::UNDOCUMENTED, EventType::of)
            }
            None => EventType::UNDOCUMENTED,
        };
        let msg = Message::from_parts(
            raw,
            &self.index,
            self.kind,
            event_type,
            body,
            self.base + self.start as u64,
        );
        self.start = end;
        self.reset_message();
        msg
    }
}

/// A message's kind after a header named `name`: `Event` wins over `Response`
/// (OriginateResponse carries both), whatever the order.
#[inline(always)]
fn kind_after(kind: Kind, name: &[u8]) -> Kind {
    match name.len() {
        5 if bytes_eq_ignore_case(name, b"event") => Kind::Event,
        8 if kind == Kind::Other && bytes_eq_ignore_case(name, b"response") => Kind::Response,
        _ => kind,
    }
}

/// The value of the first `Event:` header of a message's `raw` bytes, from its line index.
fn first_event_value<'a>(raw: &'a [u8], index: &LineIndex) -> Option<&'a [u8]> {
    let mut start = 0;
    for &(colon, end) in &index.entries {
        let (colon, end) = (colon as usize, end as usize);
        if let Some(name) = raw.get(start..colon) {
            if bytes_eq_ignore_case(name, b"event") {
                let value = raw.get(colon + 1..end).unwrap_or_default();
                return Some(value.strip_prefix(b" ").unwrap_or(value));
            }
        }
        start = next_line_start(raw, end);
    }
    None
}

/// SWAR (8 bytes per step) line scanning: AMI lines average ~21 bytes, too short for
/// memchr's per-call setup to pay off, so short lines are scanned inline and only the rest
/// of a long value goes to memchr.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
/// Bytes scanned inline before the rest of a line (colon found) goes to memchr.
const INLINE_SCAN: usize = 64;

/// High bit set in each byte of `v` that is zero. The lowest flagged byte is exact (borrows
/// only run upwards), which is all the searches use.
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v & HIGHS
}

#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))
}

/// Scans `hay` to its first LF in one pass, noting the first colon before it: (colon, LF).
/// Without an LF, the colon found so far (the scan resumes after `hay` later).
#[inline(always)]
fn scan_line(hay: &[u8]) -> (Option<usize>, Option<usize>) {
    const COLONS: u64 = ONES * b':' as u64;
    const LFS: u64 = ONES * b'\n' as u64;
    let mut colon = None;
    let mut i = 0;
    while let Some(chunk) = hay.get(i..i + 8) {
        let v = word(chunk);
        let lfs = zero_bytes(v ^ LFS);
        if colon.is_none() {
            let colons = zero_bytes(v ^ COLONS);
            if colons != 0 && (lfs == 0 || colons.trailing_zeros() < lfs.trailing_zeros()) {
                colon = Some(i + (colons.trailing_zeros() / 8) as usize);
            }
        }
        if lfs != 0 {
            return (colon, Some(i + (lfs.trailing_zeros() / 8) as usize));
        }
        i += 8;
        if i >= INLINE_SCAN && colon.is_some() {
            break;
        }
    }
    let tail = hay.get(i..).unwrap_or_default();
    let lf = memchr(b'\n', tail);
    if colon.is_none() {
        let before_lf = tail.get(..lf.unwrap_or(tail.len())).unwrap_or_default();
        colon = memchr(b':', before_lf).map(|c| i + c);
    }
    (colon, lf.map(|l| i + l))
}

/// Decodes a complete byte string. Errors are returned in stream order beside the messages.
pub fn decode_all(bytes: &[u8]) -> (Option<String>, Vec<Result<Message, DecodeError>>) {
    let mut decoder = Decoder::new();
    decoder.feed(bytes);
    let mut out = Vec::new();
    decoder.decode_into(&mut out);
    (decoder.banner().map(str::to_owned), out)
}
