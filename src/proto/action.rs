//! Outbound actions: building, validating and encoding them, and generating ActionIDs.
//!
//! Validation happens before a single byte is written: CR, LF or NUL in a name or value
//! (header injection), an empty key or one containing ':', a line over Asterisk's 1022-byte
//! input limit or more than its 128 lines per action are refused with `ProtoError::Usage`.

use std::fmt;

use super::error::{ProtoError, ProtoResult};
use super::message::is_secret_header;

/// Asterisk's input line buffer holds 1022 bytes plus CRLF (`inbuf[1025]` in manager.c).
pub const MAX_LINE: usize = 1022;
/// `AST_MAX_MANHEADERS`.
pub const MAX_LINES: usize = 128;
/// User-supplied ActionIDs longer than this would be cut by Asterisk's fixed buffers.
pub const MAX_ACTION_ID: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    name: String,
    action_id: Option<String>,
    headers: Vec<(String, String)>,
}

impl Action {
    pub fn new(name: impl Into<String>) -> Action {
        Action {
            name: name.into(),
            action_id: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header; repeats are kept in order (`Variable`, say). An `ActionID` header sets
    /// the action's own id instead.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Action {
        self.push(key, value);
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        if key.eq_ignore_ascii_case("actionid") {
            self.action_id = Some(value.into());
        } else {
            self.headers.push((key, value.into()));
        }
    }

    pub fn with_action_id(mut self, id: impl Into<String>) -> Action {
        self.action_id = Some(id.into());
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn action_id(&self) -> Option<&str> {
        self.action_id.as_deref()
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Checks everything `encode` checks, without writing.
    pub fn validate(&self) -> ProtoResult<()> {
        self.validate_with(None)
    }

    /// The id that goes on the wire: the action's own, else the one offered.
    fn wire_id<'a>(&'a self, offered: Option<&'a str>) -> Option<&'a str> {
        self.action_id.as_deref().or(offered)
    }

    /// Every line as it will be written: `Action`, `ActionID`, then the headers.
    fn lines<'a>(&'a self, id: Option<&'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
        std::iter::once(("Action", self.name.as_str()))
            .chain(id.map(|id| ("ActionID", id)))
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn validate_with(&self, offered: Option<&str>) -> ProtoResult<()> {
        if self.name.is_empty() {
            return Err(ProtoError::Usage("the action name is empty".into()));
        }
        let id = self.wire_id(offered);
        if let Some(id) = id {
            if id.is_empty() {
                return Err(ProtoError::Usage("the ActionID is empty".into()));
            }
            if id.chars().count() > MAX_ACTION_ID {
                return Err(ProtoError::Usage(format!(
                    "ActionID is {} characters; at most {MAX_ACTION_ID} are accepted (Asterisk truncates long ids)",
                    id.chars().count()
                )));
            }
        }
        let lines = 1 + usize::from(id.is_some()) + self.headers.len();
        if lines > MAX_LINES {
            return Err(ProtoError::Usage(format!(
                "{lines} header lines; Asterisk accepts at most {MAX_LINES} per action"
            )));
        }
        for (key, value) in self.lines(id) {
            if key.is_empty() {
                return Err(ProtoError::Usage("a header name is empty".into()));
            }
            if key.contains(':') {
                return Err(ProtoError::Usage(format!(
                    "header name {key:?} contains ':'"
                )));
            }
            check_field("header name", key, key)?;
            check_field("value of header", key, value)?;
            let line = key.len() + 2 + value.len();
            if line > MAX_LINE {
                return Err(ProtoError::Usage(format!(
                    "header {key:?} makes a {line}-byte line; Asterisk accepts at most {MAX_LINE} bytes"
                )));
            }
        }
        Ok(())
    }

    /// Appends the wire form to `out`, with `action_id` unless the action carries its own.
    /// Nothing is written when validation fails.
    pub fn encode(&self, action_id: Option<&str>, out: &mut Vec<u8>) -> ProtoResult<()> {
        self.validate_with(action_id)?;
        for (key, value) in self.lines(self.wire_id(action_id)) {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    pub fn to_bytes(&self, action_id: Option<&str>) -> ProtoResult<Vec<u8>> {
        let mut out = Vec::new();
        self.encode(action_id, &mut out)?;
        Ok(out)
    }
}

/// Refuses the bytes that would end a line or a C string early. The error names the field,
/// never a secret's value.
fn check_field(what: &str, key: &str, value: &str) -> ProtoResult<()> {
    if let Some(bad) = value.bytes().find(|b| matches!(b, b'\r' | b'\n' | 0)) {
        let name = match bad {
            b'\r' => "CR",
            b'\n' => "LF",
            _ => "NUL",
        };
        return Err(ProtoError::Usage(format!(
            "{what} {key:?} contains {name} (header injection refused)"
        )));
    }
    Ok(())
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Action");
        s.field("name", &self.name);
        if let Some(id) = &self.action_id {
            s.field("action_id", id);
        }
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_header(k.as_bytes()) {
                        "********"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        s.field("headers", &headers).finish()
    }
}

/// ActionIDs `<8 hex>-<n>`: a random per-connection prefix keeps them apart from other
/// clients' ids (OriginateResponse is broadcast with the originator's id), and they stay far
/// below the 67 characters that Asterisk's smallest fixed buffers keep.
#[derive(Debug)]
pub struct ActionIds {
    prefix: String,
    next: u64,
}

impl ActionIds {
    pub fn new() -> ActionIds {
        Self::with_prefix(format!("{:08x}", fastrand::u32(..)))
    }

    pub fn with_prefix(prefix: impl Into<String>) -> ActionIds {
        ActionIds {
            prefix: prefix.into(),
            next: 1,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn next_id(&mut self) -> String {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

impl Default for ActionIds {
    fn default() -> Self {
        Self::new()
    }
}

pub fn hex_lower(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
