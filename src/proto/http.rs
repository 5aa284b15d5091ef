//! AMI over HTTP (AJAM), sans-IO: request targets and bodies, response bodies to
//! [`Message`]s, the session cookie, HTTP Digest, and WaitEvent helpers. No sockets and no
//! clock here; the transport moves the bytes and keeps the time. The server's half is here
//! too, for the simulator: [`Endpoint::from_path`], [`decode_form`], [`parse_cookie_header`],
//! [`SessionCookie::set_cookie_value`], [`DigestChallenge::header_value`],
//! [`DigestAuthorization::verify`] and [`render_body`], which reproduces Asterisk's bodies
//! byte for byte.
//!
//! The three body formats (ami-protocol.md §10):
//!
//! - `/rawman` is the TCP wire format and decodes losslessly with the [`Decoder`].
//! - `/mxml` and `/manager` come out of Asterisk's `xml_translate` (manager.c), which is
//!   lossy: values are trimmed at both ends; a line without a colon starts an
//!   `Opaque-data` field that swallows the following lines up to the blank line; `/mxml`
//!   also lowercases keys and turns every non-alphanumeric character into `_` (a leading digit
//!   gets a `_` prefix). Repeated keys get a `-2`, `-3`, … suffix in both formats; this module
//!   folds such a suffix back onto the key it counts, so repeats come out as repeated headers
//!   (`output` several times for `/mxml`, never the original `Output`: case cannot be
//!   recovered). Values that span lines (`Opaque-data`) cannot be header values: each CR or
//!   LF becomes one space, and `/manager`'s `<br>` line breaks are dropped before that.
//!   A legacy (Asterisk 13) `Response: Follows` reply, whose CLI text became rows, is put
//!   back together as the TCP decoder gives it (headers, then [`Message::body`]) where the
//!   text survived: always on `/manager` (less its trailing blanks and blank lines), on
//!   `/mxml` only when every CLI line went into `opaque_data`; otherwise the rows stay
//!   headers and [`super::command_output`] says the text is lost.
//!
//! How a transport uses it:
//!
//! - Cookie endpoints: send [`Request::new`] (`Login` first, preferably as a POST); keep the
//!   [`SessionCookie`] from [`parse_set_cookie`] and send [`SessionCookie::header_value`] as
//!   `Cookie`; decode every 200 body with [`parse_body`]. When [`session_expired`] says so,
//!   log in again and replay the request once if it is idempotent.
//! - Digest endpoints: ask [`DigestSession::authorization`] for each request's
//!   `Authorization` (none before the first challenge), noting its generation; hand each
//!   401's `WWW-Authenticate` and that generation to [`DigestSession::on_unauthorized`] and
//!   retry when it says so.
//! - Events: keep one [`wait_event_action`] long-poll in flight per login and take each reply
//!   apart with [`split_wait_event`]; the HTTP read timeout must exceed the poll's timeout.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;

use md5::{Digest, Md5};
use memchr::memmem;
use quick_xml::events::Event as XmlEvent;

use super::action::{Action, hex_lower};
use super::decoder::Decoder;
use super::error::{ProtoError, ProtoResult};
use super::event_type::EventType;
use super::message::{Kind, LineIndex, Message, is_secret_header};

/// `http.conf` `httptimeout` default: a cookie's Max-Age and the idle expiry of a session.
pub const DEFAULT_HTTP_TIMEOUT: u32 = 60;
/// Asterisk clamps a WaitEvent over HTTP to `httptimeout` minus this (manager.c).
pub const WAIT_EVENT_MARGIN: u32 = 10;
/// The session cookie's name.
pub const COOKIE_NAME: &str = "mansession_id";
/// Content type of a POST body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// `http.c` reads the request line with `fgets` into `MAX_HTTP_LINE_LENGTH` (4096) bytes,
/// one of them the NUL: a longer GET is cut, not refused.
pub const MAX_REQUEST_LINE: usize = 4095;
/// `http.c` drops a form body over `MAX_CONTENT_LENGTH` (4096) bytes.
pub const MAX_FORM_BODY: usize = 4096;

/// The six manager URIs. The `A…` variants authenticate with HTTP Digest instead of a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    RawMan,
    MXml,
    Manager,
    ARawMan,
    AMXml,
    AManager,
}

/// What a response body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain`, the TCP message format.
    Raw,
    /// `text/xml`, `<ajax-response>`.
    Xml,
    /// `text/html`, the "Manager Tester" page.
    Html,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::RawMan,
        Endpoint::MXml,
        Endpoint::Manager,
        Endpoint::ARawMan,
        Endpoint::AMXml,
        Endpoint::AManager,
    ];

    /// The last path segment (`rawman`, `amxml`, …).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::RawMan => "rawman",
            Endpoint::MXml => "mxml",
            Endpoint::Manager => "manager",
            Endpoint::ARawMan => "arawman",
            Endpoint::AMXml => "amxml",
            Endpoint::AManager => "amanager",
        }
    }

    pub fn format(self) -> Format {
        match self {
            Endpoint::RawMan | Endpoint::ARawMan => Format::Raw,
            Endpoint::MXml | Endpoint::AMXml => Format::Xml,
            Endpoint::Manager | Endpoint::AManager => Format::Html,
        }
    }

    /// True for the Digest variants, which ignore the cookie.
    pub fn uses_digest(self) -> bool {
        matches!(
            self,
            Endpoint::ARawMan | Endpoint::AMXml | Endpoint::AManager
        )
    }

    /// The absolute path under an `http.conf` `prefix` (`asterisk` → `/asterisk/rawman`).
    pub fn path(self, prefix: &str) -> ProtoResult<String> {
        Ok(format!("{}/{}", normalize_prefix(prefix)?, self.name()))
    }

    /// The endpoint a request path (without its query) names under `prefix`, matched as
    /// `http.c` does: case-insensitively, a trailing `/` allowed.
    pub fn from_path(path: &str, prefix: &str) -> Option<Endpoint> {
        let prefix = normalize_prefix(prefix).ok()?;
        let head = path.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(&prefix) {
            return None;
        }
        let rest = path.get(prefix.len()..)?.strip_prefix('/')?;
        let name = rest.strip_suffix('/').unwrap_or(rest);
        Endpoint::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
    }
}

impl Format {
    /// The `Content-type` Asterisk sends with this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Raw => "text/plain",
            Format::Xml => "text/xml",
            Format::Html => "text/html",
        }
    }

    /// Reads a `Content-Type` value (parameters and case ignored).
    pub fn from_content_type(value: &str) -> Option<Format> {
        let mime = value.split(';').next().unwrap_or_default().trim();
        [Format::Raw, Format::Xml, Format::Html]
            .into_iter()
            .find(|f| mime.eq_ignore_ascii_case(f.content_type()))
    }
}

/// `http.conf` writes `/` + prefix, so `asterisk`, `/asterisk` and `/asterisk/` all mean
/// `/asterisk`; an empty prefix means none. Only URL-safe path characters are accepted.
pub fn normalize_prefix(prefix: &str) -> ProtoResult<String> {
    let trimmed = prefix.trim_matches('/');
    if let Some(bad) = trimmed
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-._~/".contains(c)))
    {
        return Err(ProtoError::Usage(format!(
            "HTTP prefix {prefix:?} contains {bad:?}; use letters, digits, '-', '.', '_', '~' and '/'"
        )));
    }
    Ok(if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One manager request, ready for an HTTP client. A GET carries the action in the query
/// string; a POST in a form-encoded body. Prefer POST for `Login`: a GET puts the secret in
/// `target`, which access logs record (this type's Debug hides it; never log `target`
/// itself). Servers before 2018 also failed Digest on long URIs (ASTERISK-27841).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request-target: the path, plus `?query` for a GET. Digest signs exactly this.
    pub target: String,
    /// The form-encoded action for a POST; empty for a GET.
    pub body: Vec<u8>,
}

impl Request {
    /// Builds the request for `action` on `endpoint` under `prefix`, with `action_id` unless
    /// the action carries its own. Validation is `Action::validate`'s (nothing is built from
    /// an action that TCP would refuse), plus Asterisk's HTTP sizes: a request line of at most
    /// [`MAX_REQUEST_LINE`] bytes for a GET, a body of at most [`MAX_FORM_BODY`] for a POST.
    pub fn new(
        endpoint: Endpoint,
        prefix: &str,
        method: Method,
        action: &Action,
        action_id: Option<&str>,
    ) -> ProtoResult<Request> {
        let path = endpoint.path(prefix)?;
        let form = encode_form(action, action_id)?;
        let request = match method {
            Method::Get => Request {
                method,
                target: format!("{path}?{form}"),
                body: Vec::new(),
            },
            Method::Post => Request {
                method,
                target: path,
                body: form.into_bytes(),
            },
        };
        // "GET " + target + " HTTP/1.1\r\n"
        let line = method.as_str().len() + request.target.len() + 12;
        if line > MAX_REQUEST_LINE {
            return Err(ProtoError::Usage(format!(
                "the request line would be {line} bytes; Asterisk reads at most \
                 {MAX_REQUEST_LINE} (send long actions with POST)"
            )));
        }
        if request.body.len() > MAX_FORM_BODY {
            return Err(ProtoError::Usage(format!(
                "the form body would be {} bytes; Asterisk accepts at most {MAX_FORM_BODY}",
                request.body.len()
            )));
        }
        Ok(request)
    }

    /// The `Content-Type` to send (a POST body's).
    pub fn content_type(&self) -> Option<&'static str> {
        (self.method == Method::Post).then_some(FORM_CONTENT_TYPE)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The encoded parameters: the query of a GET, the body of a POST.
    fn params(&self) -> &[u8] {
        match self.method {
            Method::Get => self
                .target
                .split_once('?')
                .map_or(&b""[..], |(_, q)| q.as_bytes()),
            Method::Post => &self.body,
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<(String, String)> = decode_form(self.params())
            .into_iter()
            .map(|(k, v)| {
                let v = if is_secret_header(k.as_bytes()) {
                    "********".to_owned()
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path())
            .field("params", &params)
            .finish()
    }
}

/// The action as `Action=…&ActionID=…&Key=value…`, every byte outside `A-Za-z0-9-._~`
/// percent-encoded (so `+`, `&`, `=`, `%` and spaces survive both `+`-decoding and strict
/// decoders). Keys keep their spelling; values are never case-folded.
pub fn encode_form(action: &Action, action_id: Option<&str>) -> ProtoResult<String> {
    let id = action.action_id().or(action_id);
    match (action.action_id(), action_id) {
        // A supplied id gets the checks an action's own id gets.
        (None, Some(id)) => action.clone().with_action_id(id).validate()?,
        _ => action.validate()?,
    }
    let mut out = String::new();
    let mut pair = |key: &str, value: &str| {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode(key.as_bytes(), &mut out);
        out.push('=');
        percent_encode(value.as_bytes(), &mut out);
    };
    pair("Action", action.name());
    if let Some(id) = id {
        pair("ActionID", id);
    }
    for (key, value) in action.headers() {
        pair(key, value);
    }
    Ok(out)
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, uppercase hex.
pub fn percent_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Splits and decodes a query string or form body as Asterisk does (`http.c`: split at `&`,
/// then at the first `=`; `+` is a space; `%XX` is a byte; a broken `%` escape stays as it
/// is). Names and values are decoded with [`super::decode_text`]'s lossless policy.
pub fn decode_form(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match memchr::memchr(b'=', pair) {
                Some(eq) => (pair.get(..eq), pair.get(eq + 1..)),
                None => (Some(pair), None),
            };
            (
                form_unescape(key.unwrap_or_default()),
                form_unescape(value.unwrap_or_default()),
            )
        })
        .collect()
}

fn form_unescape(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let escaped = match (b, input.get(i + 1..i + 3)) {
            (b'%', Some(&[h, l])) => hex_val(h).zip(hex_val(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if b == b'+' { b' ' } else { b });
                i += 1;
            }
        }
    }
    super::decode_text(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

// ---------------------------------------------------------------------------------------
// Response bodies

/// Parses a manager response body into messages. The `Content-type` decides the format when
/// it names one of the three; a format other than the endpoint's is refused (an error page
/// from a proxy, say). Without a content type the endpoint decides.
pub fn parse_body(
    endpoint: Endpoint,
    content_type: Option<&str>,
    body: &[u8],
) -> ProtoResult<Vec<Message>> {
    let format = match content_type {
        None => endpoint.format(),
        Some(ct) => match Format::from_content_type(ct) {
            Some(f) if f == endpoint.format() => f,
            _ => {
                return Err(ProtoError::Remote(format!(
                    "/{} answered with Content-type {ct:?}, expected {}",
                    endpoint.name(),
                    endpoint.format().content_type()
                )));
            }
        },
    };
    match format {
        Format::Raw => parse_rawman(body),
        Format::Xml => parse_mxml(body),
        Format::Html => parse_manager_html(body),
    }
}

/// A `/rawman` body: the TCP format without a banner, legacy `Response: Follows` included.
/// A body that ends inside a message is an error: HTTP framing already said it was complete.
pub fn parse_rawman(body: &[u8]) -> ProtoResult<Vec<Message>> {
    let mut decoder = Decoder::new();
    decoder.set_expect_banner(false);
    decoder.feed(body);
    let mut out = Vec::new();
    while let Some(item) = decoder.next_message() {
        out.push(item?);
    }
    if decoder.buffered() > 0 {
        return Err(ProtoError::Remote(format!(
            "/rawman body ends inside a message ({} bytes unterminated)",
            decoder.buffered()
        )));
    }
    Ok(out)
}

/// An `/mxml` body: one message per element inside each `<response>`, its attributes the
/// headers in document order.
pub fn parse_mxml(body: &[u8]) -> ProtoResult<Vec<Message>> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut out = Vec::new();
    let mut builder = MessageBuilder::new(true);
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ProtoError::Remote(format!("malformed /mxml body: {e}")))?;
        let element = match &event {
            XmlEvent::Start(e) | XmlEvent::Empty(e) => e,
            XmlEvent::Eof => break,
            _ => continue,
        };
        let name = element.name();
        if matches!(name.as_ref(), b"ajax-response" | b"response") {
            continue;
        }
        if builder.continues() {
            builder.next_object();
        } else {
            out.extend(std::mem::replace(&mut builder, MessageBuilder::new(true)).finish()?);
        }
        // Asterisk counts repeats before lowercasing, so `Foo` and `foo` can both arrive.
        for attr in element.attributes().with_checks(false) {
            let attr =
                attr.map_err(|e| ProtoError::Remote(format!("malformed /mxml attribute: {e}")))?;
            builder.push(&unescape(attr.key.as_ref()), &unescape(&attr.value))?;
        }
    }
    out.extend(builder.finish()?);
    Ok(out)
}

/// A `/manager` or `/amanager` page. Asterisk writes each header as
/// `<tr><td>Key</td><td>Value</td></tr>` (both escaped, so neither holds a `<`) and ends each
/// message with `<tr><td colspan="2"><hr></td></tr>`; the title and form rows of either
/// layout start otherwise and are skipped.
pub fn parse_manager_html(body: &[u8]) -> ProtoResult<Vec<Message>> {
    const ROW: &[u8] = b"<tr>";
    const CELL: &[u8] = b"<td>";
    const SEPARATOR: &[u8] = b"<td colspan=\"2\"><hr></td></tr>";
    const MID: &[u8] = b"</td><td>";
    const END: &[u8] = b"</td></tr>";

    let mut out = Vec::new();
    let mut builder = MessageBuilder::new(false);
    let mut pos = 0;
    while let Some(found) = memmem::find(body.get(pos..).unwrap_or_default(), ROW) {
        let row = pos + found + ROW.len();
        let rest = body.get(row..).unwrap_or_default();
        if let Some(cells) = rest.strip_prefix(CELL) {
            let bad_row = || ProtoError::Remote(format!("unexpected /manager row at byte {row}"));
            let mid = memmem::find(cells, MID).ok_or_else(bad_row)?;
            let key = cells.get(..mid).unwrap_or_default();
            let after = cells.get(mid + MID.len()..).unwrap_or_default();
            let end = memmem::find(after, END).ok_or_else(bad_row)?;
            if key.contains(&b'<') {
                return Err(bad_row());
            }
            let value = after.get(..end).unwrap_or_default();
            builder.push(&unescape(key), &unescape(&drop_html_breaks(value)))?;
            pos = row + CELL.len() + mid + MID.len() + end + END.len();
        } else {
            if rest.starts_with(SEPARATOR) {
                if builder.continues() {
                    builder.next_object();
                } else {
                    out.extend(
                        std::mem::replace(&mut builder, MessageBuilder::new(false)).finish()?,
                    );
                }
            }
            pos = row;
        }
    }
    out.extend(builder.finish()?);
    Ok(out)
}

/// `/manager` joins the lines of an `Opaque-data` value with `<br>` + LF; the LF stays and
/// becomes a space like any other line break.
fn drop_html_breaks(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = memmem::find(rest, b"<br>") {
        out.extend_from_slice(rest.get(..at).unwrap_or_default());
        rest = rest.get(at + 4..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

/// Undoes `xml_copy_escape` (the five XML entities) plus numeric references; anything else
/// starting with `&` is kept as it is.
fn unescape(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some(amp) = memchr::memchr(b'&', rest) {
        out.extend_from_slice(rest.get(..amp).unwrap_or_default());
        let tail = rest.get(amp..).unwrap_or_default();
        match entity(tail) {
            Some((len, ch)) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                rest = tail.get(len..).unwrap_or_default();
            }
            None => {
                out.push(b'&');
                rest = tail.get(1..).unwrap_or_default();
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The entity at the start of `s` (which begins with `&`): its length and character.
fn entity(s: &[u8]) -> Option<(usize, char)> {
    let semi = memchr::memchr(b';', s.get(..12.min(s.len()))?)?;
    let name = std::str::from_utf8(s.get(1..semi)?).ok()?;
    let ch = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = match name.strip_prefix('#')? {
                hex if hex.starts_with(['x', 'X']) => u32::from_str_radix(hex.get(1..)?, 16),
                dec => dec.parse(),
            };
            char::from_u32(code.ok()?)?
        }
    };
    Some((semi + 1, ch))
}

/// Assembles AMI wire text (`Key: value` CRLF lines and a closing CRLF) and its line index,
/// so a translated message is a real [`Message`] whose `raw()` is valid AMI.
#[derive(Default)]
struct MessageBuilder {
    raw: Vec<u8>,
    index: LineIndex,
    /// Each key seen so far and how often, to fold Asterisk's `-N` repeat suffixes. A map,
    /// not a list: a message may carry many thousands of distinct keys.
    seen: HashMap<Vec<u8>, usize>,
    /// `Event` wins over `Response` (OriginateResponse carries both), as in the decoder.
    has_event: bool,
    has_response: bool,
    /// The documented event the first `Event` header names.
    event_type: EventType,
    /// `/mxml` rewrote every key (lowercase, punctuation to `_`).
    keys_rewritten: bool,
    /// In a legacy `Response: Follows` reply: the rows past its headers, which are its CLI text.
    legacy_rows: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl MessageBuilder {
    fn new(keys_rewritten: bool) -> MessageBuilder {
        MessageBuilder {
            keys_rewritten,
            ..MessageBuilder::default()
        }
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> ProtoResult<()> {
        let key = self.fold_repeat(key);
        if self.index.len() == 0
            && key.eq_ignore_ascii_case(b"response")
            && value.eq_ignore_ascii_case(b"follows")
        {
            self.legacy_rows = Some(Vec::new());
        } else if let Some(rows) = &mut self.legacy_rows {
            // Asterisk writes `Privilege` and `ActionID` before the text.
            let header = rows.is_empty()
                && (key.eq_ignore_ascii_case(b"privilege")
                    || key.eq_ignore_ascii_case(b"actionid"));
            if !header {
                rows.push((key, value.to_vec()));
                return Ok(());
            }
        }
        self.write_header(&key, value)
    }

    /// A legacy reply whose end marker has not come yet: `xml_translate` closed its object at
    /// an empty line inside the CLI text (two in a row, `\n\n\n`), and the next object
    /// carries on with the text.
    fn continues(&self) -> bool {
        self.legacy_rows.as_ref().is_some_and(|rows| {
            rows.last()
                .is_none_or(|(_, text)| end_marker_of(text).is_none())
        })
    }

    /// The next object of a reply that [`Self::continues`]: `xml_translate` counts repeated
    /// keys afresh in it.
    fn next_object(&mut self) {
        self.seen.clear();
    }

    fn write_header(&mut self, key: &[u8], value: &[u8]) -> ProtoResult<()> {
        let first_event = !self.has_event && key.eq_ignore_ascii_case(b"event");
        self.has_event |= first_event;
        self.has_response |= key.eq_ignore_ascii_case(b"response");
        self.raw.extend(key.iter().map(|&b| line_safe(b)));
        let colon = self.raw.len();
        self.raw.extend_from_slice(b": ");
        self.raw.extend(value.iter().map(|&b| line_safe(b)));
        let end = self.raw.len();
        if first_event {
            self.event_type = EventType::of(self.raw.get(colon + 2..end).unwrap_or_default());
        }
        self.raw.extend_from_slice(b"\r\n");
        self.index.push(Some(raw_pos(colon)?), raw_pos(end)?);
        Ok(())
    }

    /// `key-N` is the N-th occurrence of `key` when `key` has been seen N-1 times already;
    /// anything else is a key of its own.
    fn fold_repeat(&mut self, key: &[u8]) -> Vec<u8> {
        let folded = key
            .iter()
            .rposition(|&b| b == b'-')
            .and_then(|dash| {
                let base = key.get(..dash)?;
                let n: usize = std::str::from_utf8(key.get(dash + 1..)?)
                    .ok()?
                    .parse()
                    .ok()?;
                let count = *self.seen.get(base)?;
                (n >= 2 && count == n - 1).then_some(base)
            })
            .unwrap_or(key)
            .to_vec();
        *self.seen.entry(folded.clone()).or_insert(0) += 1;
        folded
    }

    fn finish(mut self) -> ProtoResult<Option<Message>> {
        let mut body = None;
        if let Some(rows) = self.legacy_rows.take() {
            match legacy_text(&rows, self.keys_rewritten) {
                Some(text) => body = Some(text),
                // Kept as the rows they became, for whoever reads them; command_output says
                // the text is lost.
                None => {
                    for (key, value) in &rows {
                        self.write_header(key, value)?;
                    }
                }
            }
        }
        if self.index.len() == 0 {
            return Ok(None);
        }
        // Laid out as the TCP decoder keeps a legacy reply: headers, text, end marker.
        let body = match body {
            Some(text) => {
                let start = raw_pos(self.raw.len())?;
                self.raw.extend_from_slice(&text);
                let end = raw_pos(self.raw.len())?;
                let marker = super::decoder::DEFAULT_END_MARKERS
                    .first()
                    .copied()
                    .unwrap_or_default();
                self.raw.extend_from_slice(marker.as_bytes());
                self.raw.extend_from_slice(b"\r\n");
                Some((start, end))
            }
            None => None,
        };
        self.raw.extend_from_slice(b"\r\n");
        let kind = match (self.has_event, self.has_response) {
            (true, _) => Kind::Event,
            (false, true) => Kind::Response,
            (false, false) => Kind::Other,
        };
        Ok(Some(Message::from_parts(
            &self.raw,
            &self.index,
            kind,
            self.event_type,
            body,
            0,
        )))
    }
}

fn raw_pos(at: usize) -> ProtoResult<u32> {
    u32::try_from(at).map_err(|_| ProtoError::Remote("translated message over 4 GiB".into()))
}

/// The CLI text of a legacy Command reply, back from the rows `xml_translate` made of it:
/// each line up to the first one without a colon became a `key`/`value` row (split at that
/// colon, the blanks around it dropped), and that line opened the `Opaque-data` row that
/// holds every later line. Lost on the way, and not restored: trailing blanks, blank lines,
/// and the blanks around a row's colon (written back as `": "`, or `":"` between two digits,
/// as in a time of day). `None` when a row's key was rewritten (`/mxml`): that text is gone.
fn legacy_text(rows: &[(Vec<u8>, Vec<u8>)], keys_rewritten: bool) -> Option<Vec<u8>> {
    let mut text = Vec::new();
    for (key, value) in rows {
        if key.eq_ignore_ascii_case(b"opaque-data") || key == b"opaque_data" {
            text.extend_from_slice(value);
        } else if keys_rewritten {
            return None;
        } else {
            let tight = key.last().is_some_and(u8::is_ascii_digit)
                && value.first().is_some_and(u8::is_ascii_digit);
            text.extend_from_slice(key);
            text.extend_from_slice(if tight { b":" } else { b": " });
            text.extend_from_slice(value);
        }
        text.push(b'\n');
    }
    // The end marker is the last line (or ends it), as on the wire.
    let last = text.strip_suffix(b"\n").unwrap_or_default();
    if let Some(marker) = end_marker_of(last) {
        text.truncate(last.len() - marker.len());
    }
    Some(text)
}

/// The end marker that `text` ends with, if any.
fn end_marker_of(text: &[u8]) -> Option<&'static str> {
    super::decoder::DEFAULT_END_MARKERS
        .iter()
        .find(|m| text.ends_with(m.as_bytes()))
        .copied()
}

/// CR and LF cannot sit inside an AMI line: each becomes a space.
fn line_safe(b: u8) -> u8 {
    if matches!(b, b'\r' | b'\n') { b' ' } else { b }
}

// ---------------------------------------------------------------------------------------
// Rendering bodies as Asterisk serves them (for the simulator)

/// The page around `/manager`'s rows (manager.c `generic_http_callback`).
const MANAGER_HEAD: &str = "<title>Asterisk&trade; Manager Interface</title><body bgcolor=\"#ffffff\">\
<table align=center bgcolor=\"#f1f1f1\" width=\"500\">\r\n\
<tr><td colspan=\"2\" bgcolor=\"#f1f1ff\"><h1>Manager Tester</h1></td></tr>\r\n\
<tr><td colspan=\"2\" bgcolor=\"#f1f1ff\"><form action=\"manager\" method=\"post\">\n\
\tAction: <select name=\"action\">\n\
\t\t<option value=\"\">-----&gt;</option>\n\
\t\t<option value=\"login\">login</option>\n\
\t\t<option value=\"command\">Command</option>\n\
\t\t<option value=\"waitevent\">waitevent</option>\n\
\t\t<option value=\"listcommands\">listcommands</option>\n\
\t</select>\n\
\tor <input name=\"action\"><br/>\n\
\tCLI Command <input name=\"command\"><br>\n\
\tuser <input name=\"username\"> pass <input type=\"password\" name=\"secret\"><br>\n\
\t<input type=\"submit\">\n</form>\n</td></tr>\r\n";
const MANAGER_TAIL: &str = "</table></body>\r\n";
/// The page around `/amanager`'s rows (manager.c `auth_http_callback`).
const AMANAGER_HEAD: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n\
<html><head>\r\n<title>Asterisk&trade; Manager Interface</title>\r\n\
</head><body style=\"background-color: #ffffff;\">\r\n<form method=\"POST\">\r\n\
<table align=\"center\" style=\"background-color: #f1f1f1;\" width=\"500\">\r\n\
<tr><th colspan=\"2\" style=\"background-color: #f1f1ff;\"><h1>Manager Tester</h1></th></tr>\r\n\
<tr><th colspan=\"2\" style=\"background-color: #f1f1ff;\">Action: <input name=\"action\" /> \
Cmd: <input name=\"command\" /><br><input type=\"submit\" value=\"Send request\" /></th></tr>\r\n";
const AMANAGER_TAIL: &str = "</table></form></body></html>\r\n";

/// The body `endpoint` would serve for these messages, byte for byte as Asterisk writes it:
/// `/rawman` is the wire text (each message closed by its blank line), `/mxml` and
/// `/manager` go through a port of manager.c's `xml_translate`, lossy rules included.
pub fn render_body(endpoint: Endpoint, messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    let (head, tail) = match endpoint {
        Endpoint::RawMan | Endpoint::ARawMan => ("", ""),
        Endpoint::MXml | Endpoint::AMXml => ("<ajax-response>\n", "</ajax-response>\n"),
        Endpoint::Manager => (MANAGER_HEAD, MANAGER_TAIL),
        Endpoint::AManager => (AMANAGER_HEAD, AMANAGER_TAIL),
    };
    out.extend_from_slice(head.as_bytes());
    for m in messages {
        let text = wire_text(m.raw());
        match endpoint.format() {
            Format::Raw => out.extend_from_slice(&text),
            format => xml_translate(&text, format == Format::Xml, &mut out),
        }
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

/// A message as Asterisk wrote it: the decoder ends a legacy body at its marker line, and a
/// `\n\r\n`-terminated message early; the blank line it then skipped belongs to the message.
fn wire_text(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.ends_with(b"\r\n\r\n") {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned([raw, b"\r\n"].concat())
    }
}

/// manager.c `xml_translate` over one message's text: lines split at CR or LF (an LF right
/// after the split is skipped, so `\n\n` is no blank line); trailing blanks trimmed; a blank
/// line closes the object; `Key: value` is a field, anything else opens `Opaque-data`, which
/// takes the following lines until the blank line.
fn xml_translate(text: &[u8], xml: bool, out: &mut Vec<u8>) {
    let mut in_obj = false;
    let mut in_data = false;
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    let mut rest = text;
    let close = |out: &mut Vec<u8>, in_obj: &mut bool, in_data: &mut bool| {
        if std::mem::take(in_data) {
            out.extend_from_slice(if xml { b"'" } else { b"</td></tr>\n" });
        }
        if std::mem::take(in_obj) {
            out.extend_from_slice(if xml {
                b" /></response>\n"
            } else {
                b"<tr><td colspan=\"2\"><hr></td></tr>\r\n"
            });
        }
    };
    while !rest.is_empty() {
        let (line, after) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(at) => {
                let after = rest.get(at + 1..).unwrap_or_default();
                (
                    rest.get(..at).unwrap_or_default(),
                    after.strip_prefix(b"\n").unwrap_or(after),
                )
            }
            None => (rest, &b""[..]),
        };
        rest = after;
        let line = trim_blanks_end(line);
        if line.is_empty() {
            close(out, &mut in_obj, &mut in_data);
            counts.clear();
            continue;
        }
        if !in_obj {
            if xml {
                out.extend_from_slice(b"<response type='object' id='unknown'><generic");
            }
            in_obj = true;
        }
        if in_data {
            out.extend_from_slice(if xml { b"\n" } else { b"<br>\n" });
            xml_escape(line, false, out);
            continue;
        }
        let (key, value) = match memchr::memchr(b':', line) {
            Some(colon) => (
                trim_blanks_end(line.get(..colon).unwrap_or_default()),
                skip_blanks(line.get(colon + 1..).unwrap_or_default()),
            ),
            None => {
                in_data = true;
                (&b"Opaque-data"[..], line)
            }
        };
        out.extend_from_slice(if xml { b" " } else { b"<tr><td>" });
        let count = *counts.entry(key).and_modify(|n| *n += 1).or_insert(1);
        xml_escape(key, xml, out);
        if count > 1 {
            out.extend_from_slice(format!("-{count}").as_bytes());
        }
        out.extend_from_slice(if xml { b"='" } else { b"</td><td>" });
        xml_escape(value, false, out);
        if !in_data || rest.is_empty() {
            out.extend_from_slice(if xml { b"'" } else { b"</td></tr>\n" });
        }
    }
    // Like manager.c, the end of the text closes only the object.
    close(out, &mut in_obj, &mut false);
}

/// `ast_trim_blanks`: drops trailing bytes below 33.
fn trim_blanks_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b >= 33).map_or(0, |i| i + 1);
    s.get(..end).unwrap_or_default()
}

/// `ast_skip_blanks`: drops leading bytes below 33.
fn skip_blanks(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b >= 33).unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// `xml_copy_escape`: the five XML entities; for an `/mxml` key (`name`), lowercase, every
/// non-alphanumeric byte `_` and a leading digit prefixed with `_`.
fn xml_escape(s: &[u8], name: bool, out: &mut Vec<u8>) {
    for (i, &b) in s.iter().enumerate() {
        if name {
            if i == 0 && b.is_ascii_digit() {
                out.extend_from_slice(&[b'_', b]);
                continue;
            }
            if !b.is_ascii_alphanumeric() {
                out.push(b'_');
                continue;
            }
        }
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            _ => out.push(if name { b.to_ascii_lowercase() } else { b }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The session cookie

/// The `mansession_id` cookie of a `/rawman`, `/mxml` or `/manager` session. It is a bearer
/// credential, so Debug hides it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionCookie {
    id: String,
}

/// A parsed `Set-Cookie` for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetCookie {
    pub cookie: SessionCookie,
    /// `Max-Age`: `httptimeout`, 60 s by default.
    pub max_age: Option<u32>,
}

impl SessionCookie {
    /// Asterisk's ids are 8 hex digits; anything that needs no quoting is accepted.
    pub fn new(id: impl Into<String>) -> ProtoResult<SessionCookie> {
        let id = id.into();
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\";\\,".contains(&b))
        {
            return Err(ProtoError::Usage(
                "invalid mansession_id cookie value".into(),
            ));
        }
        Ok(SessionCookie { id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The value of the `Cookie` request header: `mansession_id="…"`.
    pub fn header_value(&self) -> String {
        format!("{COOKIE_NAME}=\"{}\"", self.id)
    }

    /// The `Set-Cookie` value Asterisk sends: `mansession_id="…"; Version=1; Max-Age=60`.
    pub fn set_cookie_value(&self, max_age: u32) -> String {
        format!("{}; Version=1; Max-Age={max_age}", self.header_value())
    }
}

impl fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCookie(********)")
    }
}

/// Reads a `Set-Cookie` value; `None` unless it sets `mansession_id`.
pub fn parse_set_cookie(value: &str) -> Option<SetCookie> {
    let mut parts = value.split(';');
    let cookie = session_pair(parts.next()?)?;
    let max_age = parts.find_map(|attr| {
        let (name, v) = attr.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok())
            .flatten()
    });
    Some(SetCookie { cookie, max_age })
}

/// Finds `mansession_id` in a `Cookie` request header (the simulator's side).
pub fn parse_cookie_header(value: &str) -> Option<SessionCookie> {
    value.split(';').find_map(session_pair)
}

fn session_pair(pair: &str) -> Option<SessionCookie> {
    let (name, value) = pair.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case(COOKIE_NAME) {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    SessionCookie::new(value).ok()
}

/// Whether a reply means the session behind `sent` is gone (idle past `httptimeout`, logged
/// off, server restarted). Asterisk has no expiry signal (§10.3): it answers `200`,
/// `Response: Error` / `Message: Permission denied`, and a `Set-Cookie` with a new id. A
/// denial that keeps the same cookie is a real permission error (a `write=none` user), not
/// an expiry; when no `Set-Cookie` came back the denial alone decides. `sent` must be a cookie
/// that worked before: without one, a denial just means "log in first".
pub fn session_expired(
    sent: Option<&SessionCookie>,
    received: Option<&SessionCookie>,
    reply: &[Message],
) -> bool {
    let Some(sent) = sent else {
        return false;
    };
    let denied = reply.first().is_some_and(|m| {
        m.is_response()
            && m.has_value("Response", "Error")
            && m.has_value("Message", "Permission denied")
    });
    denied && received.is_none_or(|r| r != sent)
}

// ---------------------------------------------------------------------------------------
// HTTP Digest (RFC 2617, MD5, qop=auth), as manager.c's auth_http_callback checks it

/// A `WWW-Authenticate: Digest …` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    /// The nonce timed out (or `nc` went backwards): answer with the same credentials.
    pub stale: bool,
}

impl DigestChallenge {
    /// Parses the header value. Only MD5 with `qop=auth` is supported: all Asterisk offers.
    pub fn parse(value: &str) -> ProtoResult<DigestChallenge> {
        let params = DigestParams::parse(value)?;
        let get = |name: &str| params.get(name);
        let missing = |name: &str| ProtoError::Remote(format!("Digest challenge without {name}"));
        let challenge = DigestChallenge {
            realm: get("realm").ok_or_else(|| missing("realm"))?,
            nonce: get("nonce").ok_or_else(|| missing("nonce"))?,
            opaque: get("opaque"),
            algorithm: get("algorithm"),
            qop: get("qop"),
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        };
        // These go back to the server inside the Authorization header: a CR or LF there would
        // let a hostile server split the request.
        for (name, value) in [
            ("realm", Some(&challenge.realm)),
            ("nonce", Some(&challenge.nonce)),
            ("opaque", challenge.opaque.as_ref()),
        ] {
            if value.is_some_and(|v| v.chars().any(char::is_control)) {
                return Err(ProtoError::Remote(format!(
                    "the server's Digest challenge has a control character in its {name}"
                )));
            }
        }
        if let Some(alg) = &challenge.algorithm {
            if !alg.eq_ignore_ascii_case("MD5") {
                return Err(ProtoError::Auth(format!(
                    "Digest algorithm {alg:?} is not supported (MD5 only)"
                )));
            }
        }
        let offers_auth = challenge.qop.as_deref().is_some_and(|q| {
            q.split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        });
        if !offers_auth {
            return Err(ProtoError::Auth(format!(
                "Digest challenge without qop=auth ({:?}) is not supported",
                challenge.qop
            )));
        }
        Ok(challenge)
    }

    /// The `WWW-authenticate` value as Asterisk writes it (http.c `ast_http_auth`).
    pub fn header_value(&self) -> String {
        let mut out = format!(
            "Digest algorithm={}, realm=\"{}\", nonce=\"{}\", qop=\"{}\"",
            self.algorithm.as_deref().unwrap_or("MD5"),
            quote_escape(&self.realm),
            quote_escape(&self.nonce),
            quote_escape(self.qop.as_deref().unwrap_or("auth")),
        );
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", quote_escape(opaque));
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }
}

/// The parameters of a `Digest …` header, names matched case-insensitively.
struct DigestParams(Vec<(String, String)>);

impl DigestParams {
    fn parse(value: &str) -> ProtoResult<DigestParams> {
        let value = value.trim_start();
        let params = value
            .get(..6)
            .filter(|scheme| scheme.eq_ignore_ascii_case("digest"))
            .and_then(|_| value.get(6..))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .ok_or_else(|| ProtoError::Auth(format!("not a Digest header: {value:?}")))?;
        parse_auth_params(params).map(DigestParams)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// A client's `Authorization: Digest …` (the simulator's side of [`DigestSession`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestAuthorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    /// `nc`, read as hex (`sscanf("%lx")` in manager.c).
    pub nc: Option<u32>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl DigestAuthorization {
    pub fn parse(value: &str) -> ProtoResult<DigestAuthorization> {
        let params = DigestParams::parse(value)?;
        let need = |name: &str| {
            params
                .get(name)
                .ok_or_else(|| ProtoError::Remote(format!("Digest authorization without {name}")))
        };
        let nc = match params.get("nc") {
            Some(nc) => Some(
                u32::from_str_radix(&nc, 16)
                    .map_err(|_| ProtoError::Remote(format!("Digest nc {nc:?} is not hex")))?,
            ),
            None => None,
        };
        Ok(DigestAuthorization {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response: need("response")?,
            qop: params.get("qop"),
            nc,
            cnonce: params.get("cnonce"),
            opaque: params.get("opaque"),
        })
    }

    /// Whether `response` is right for `password` and the request's method (qop=auth, as
    /// Asterisk checks it; the caller checks nonce, `nc` order and that `uri` is the target).
    pub fn verify(&self, method: Method, password: &str) -> bool {
        let (Some(nc), Some(cnonce), Some(true)) = (
            self.nc,
            self.cnonce.as_deref(),
            self.qop.as_deref().map(|q| q.eq_ignore_ascii_case("auth")),
        ) else {
            return false;
        };
        let ha1 = digest_ha1(&self.username, &self.realm, password);
        let expected = digest_response(&ha1, &self.nonce, nc, cnonce, method, &self.uri);
        // Compare without an early exit, so timing says nothing about the right answer.
        expected.len() == self.response.len()
            && expected
                .bytes()
                .zip(self.response.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// `name=token` / `name="quoted \" string"` pairs separated by commas.
fn parse_auth_params(input: &str) -> ProtoResult<Vec<(String, String)>> {
    let malformed = || ProtoError::Remote(format!("malformed Digest challenge: {input:?}"));
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Ok(out);
        }
        let (name, after) = rest.split_once('=').ok_or_else(malformed)?;
        let after = after.trim_start();
        let value;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => v.extend(chars.next().map(|(_, c)| c)),
                    c => v.push(c),
                }
            }
            rest = quoted.get(end.ok_or_else(malformed)?..).unwrap_or_default();
            value = v;
        } else {
            let end = after.find(',').unwrap_or(after.len());
            value = after.get(..end).unwrap_or_default().trim().to_owned();
            rest = after.get(end..).unwrap_or_default();
        }
        out.push((name.trim().to_owned(), value));
    }
}

fn md5_hex(parts: &[&str]) -> String {
    let mut hasher = Md5::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part.as_bytes());
    }
    hex_lower(&hasher.finalize())
}

/// HA1 = MD5(username:realm:password).
pub fn digest_ha1(username: &str, realm: &str, password: &str) -> String {
    md5_hex(&[username, realm, password])
}

/// The `response=` value for qop=auth:
/// MD5(HA1:nonce:nc:cnonce:auth:MD5(method:uri)), `nc` as 8 hex digits. `uri` is the
/// request-target exactly as sent, query string included.
pub fn digest_response(
    ha1: &str,
    nonce: &str,
    nc: u32,
    cnonce: &str,
    method: Method,
    uri: &str,
) -> String {
    let ha2 = md5_hex(&[method.as_str(), uri]);
    md5_hex(&[ha1, nonce, &format!("{nc:08x}"), cnonce, "auth", &ha2])
}

/// Refuses what would break out of a quoted-string in the Authorization header.
fn check_quotable(what: &str, s: &str) -> ProtoResult<()> {
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(ProtoError::Usage(format!(
            "{what} cannot contain '\"', '\\' or control characters"
        )));
    }
    Ok(())
}

/// Digest state for one login: the current nonce, which challenge it came with (its
/// generation) and the request counter. Reusing the nonce with a growing `nc` keeps one
/// manager session alive without a cookie (§10.6).
///
/// Flow: send without `Authorization` (or with the last one), noting the
/// [`generation`](Self::generation) it was built under; on a 401 call
/// [`on_unauthorized`](Self::on_unauthorized) with it: `Ok` means retry with a fresh
/// [`authorization`](Self::authorization), `Err(ProtoError::Auth)` means the credentials were
/// refused. `nc` must strictly increase at the server, and requests sent side by side (an
/// action beside the WaitEvent long-poll) can arrive out of order: the late one earns a
/// `stale=true` 401 and a new nonce, which makes the other's next request late in turn. Such
/// 401s are never a refusal: a stale one is adopted and retried, and one answering a request
/// built under an older generation is only retried under the nonce a newer 401 already brought.
#[derive(Clone)]
pub struct DigestSession {
    username: String,
    password: String,
    cnonce_prefix: String,
    challenge: Option<DigestChallenge>,
    nc: u32,
    generation: u64,
    /// The server accepted a request under the current nonce.
    proven: bool,
}

/// What a 401 that is not a refusal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Retry: the session goes on under the current nonce.
    SameSession,
    /// The server no longer knows a nonce it had accepted (its session expired, or the
    /// server restarted): the retry starts a new manager session, which has none of the old
    /// one's event mask, filters or queued events.
    NewSession,
}

impl DigestSession {
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> ProtoResult<DigestSession> {
        let username = username.into();
        check_quotable("a Digest username", &username)?;
        Ok(DigestSession {
            username,
            password: password.into(),
            cnonce_prefix: format!("{:08x}", fastrand::u32(..)),
            challenge: None,
            nc: 0,
            generation: 0,
            proven: false,
        })
    }

    /// Fixes the client nonce prefix (the `cnonce` is the prefix followed by `nc`), for
    /// reproducible headers.
    pub fn with_cnonce_prefix(mut self, prefix: impl Into<String>) -> ProtoResult<DigestSession> {
        let prefix = prefix.into();
        check_quotable("a Digest cnonce", &prefix)?;
        self.cnonce_prefix = prefix;
        Ok(self)
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn challenge(&self) -> Option<&DigestChallenge> {
        self.challenge.as_ref()
    }

    /// The `nc` of the last Authorization built under the current nonce (0: none yet).
    pub fn nc(&self) -> u32 {
        self.nc
    }

    /// Counts the challenges taken: a request's `Authorization` answers the generation current
    /// when it was built.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The `Authorization` header value for the next request, or `None` before the first
    /// challenge. Each call counts one request.
    pub fn authorization(&mut self, method: Method, uri: &str) -> ProtoResult<Option<String>> {
        check_quotable("a Digest uri", uri)?;
        let Some(ch) = &self.challenge else {
            return Ok(None);
        };
        // Past u32::MAX the server sees a lower nc and answers stale=true with a new nonce.
        self.nc = self.nc.wrapping_add(1);
        let cnonce = format!("{}{:08x}", self.cnonce_prefix, self.nc);
        let ha1 = digest_ha1(&self.username, &ch.realm, &self.password);
        let response = digest_response(&ha1, &ch.nonce, self.nc, &cnonce, method, uri);
        let mut header = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm=MD5, \
             response=\"{response}\", qop=auth, nc={:08x}, cnonce=\"{cnonce}\"",
            self.username,
            quote_escape(&ch.realm),
            quote_escape(&ch.nonce),
            self.nc,
        );
        if let Some(opaque) = &ch.opaque {
            let _ = write!(header, ", opaque=\"{}\"", quote_escape(opaque));
        }
        Ok(Some(header))
    }

    /// A request built under generation `sent_under` was answered (not with a 401).
    pub fn on_authorized(&mut self, sent_under: u64) {
        if sent_under == self.generation {
            self.proven = true;
        }
    }

    /// Takes a 401's `WWW-Authenticate` value for a request sent with the credentials of
    /// generation `sent_under` (`None`: sent without), and says how to retry: after the first
    /// challenge, a stale nonce, or for a request older than the current challenge, in the
    /// same session; after a fresh nonce in answer to a nonce the server had accepted, in a
    /// new one. `Err(ProtoError::Auth)`: credentials built under a nonce the server never accepted
    /// were refused (Asterisk answers a wrong password with a fresh, non-stale nonce).
    pub fn on_unauthorized(
        &mut self,
        www_authenticate: &str,
        sent_under: Option<u64>,
    ) -> ProtoResult<Retry> {
        let challenge = DigestChallenge::parse(www_authenticate)?;
        if sent_under.is_some_and(|g| g != self.generation) {
            // A newer 401 already brought the nonce to retry under.
            return Ok(Retry::SameSession);
        }
        let fresh = sent_under.is_some() && !challenge.stale;
        let forgotten = fresh && self.proven;
        self.challenge = Some(challenge);
        self.nc = 0;
        self.generation += 1;
        self.proven = false;
        if fresh && !forgotten {
            return Err(ProtoError::Auth(format!(
                "HTTP Digest credentials for user {:?} were refused",
                self.username
            )));
        }
        Ok(if forgotten {
            Retry::NewSession
        } else {
            Retry::SameSession
        })
    }
}

/// Server-chosen strings go back inside quotes: escape what would end them.
fn quote_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl fmt::Debug for DigestSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestSession")
            .field("username", &self.username)
            .field("password", &"********")
            .field("challenge", &self.challenge)
            .field("nc", &self.nc)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// WaitEvent, the only way events arrive over HTTP (§10.4)

/// The timeout Asterisk will honour: at most `http_timeout - 10` s (50 s by default), so
/// the long-poll returns before the session's cookie expires.
pub fn wait_event_timeout(requested_secs: u32, http_timeout: u32) -> u32 {
    requested_secs.min(http_timeout.saturating_sub(WAIT_EVENT_MARGIN))
}

/// `Action: WaitEvent` with the clamped timeout. Keep exactly one in flight per login: a
/// second one on the same session makes the first return empty.
pub fn wait_event_action(requested_secs: u32, http_timeout: u32) -> Action {
    Action::new("WaitEvent").header(
        "Timeout",
        wait_event_timeout(requested_secs, http_timeout).to_string(),
    )
}

/// A WaitEvent reply taken apart.
#[derive(Clone, Debug)]
pub struct WaitEventReply {
    /// `Response: Success` / `Message: Waiting for Event completed.`
    pub response: Message,
    /// Everything between the response and the terminator, in order (foreign
    /// `OriginateResponse` events included).
    pub events: Vec<Message>,
    /// `Event: WaitEventComplete`, when the reply ends with it.
    pub complete: Option<Message>,
}

/// Splits a parsed WaitEvent body into (response, events, terminator). A `Response: Error`
/// (an expired session, say: check [`session_expired`] first) is `ProtoError::Remote` with
/// Asterisk's message.
pub fn split_wait_event(messages: Vec<Message>) -> ProtoResult<WaitEventReply> {
    let mut messages = messages.into_iter();
    let response = messages
        .next()
        .filter(Message::is_response)
        .ok_or_else(|| {
            ProtoError::Remote("WaitEvent reply does not start with a response".into())
        })?;
    let mut events: Vec<Message> = messages.collect();
    if response.has_value("Response", "Error") {
        return Err(ProtoError::Remote(format!(
            "WaitEvent refused: {}",
            response.get("Message").unwrap_or_default()
        )));
    }
    let ends_complete = events.last().is_some_and(|m| {
        m.event_name()
            .is_some_and(|n| n.eq_ignore_ascii_case("WaitEventComplete"))
    });
    let complete = if ends_complete { events.pop() } else { None };
    Ok(WaitEventReply {
        response,
        events,
        complete,
    })
}
