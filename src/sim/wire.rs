//! Building replies and events in Asterisk's exact wire format, and the permission classes
//! that decide who may run an action or read an event.

use std::sync::Arc;

use crate::proto::{Message, decode_text};

/// One outgoing message under construction: `Key: value\r\n` lines, closed by `\r\n`.
#[derive(Debug, Default)]
pub(crate) struct Out {
    buf: Vec<u8>,
}

impl Out {
    /// `Response: <kind>` followed by the ActionID when the action carried one (line 2, as
    /// Asterisk writes it).
    pub(crate) fn response(kind: &str, action_id: Option<&str>) -> Out {
        let mut out = Out::default();
        out.push("Response", kind);
        if let Some(id) = action_id {
            out.push("ActionID", id);
        }
        out
    }

    pub(crate) fn success(action_id: Option<&str>) -> Out {
        Out::response("Success", action_id)
    }

    /// `Response: Error` with its `Message:` line.
    pub(crate) fn error(action_id: Option<&str>, message: &str) -> Out {
        Out::response("Error", action_id).h("Message", message)
    }

    pub(crate) fn event(name: &str) -> Out {
        let mut out = Out::default();
        out.push("Event", name);
        out
    }

    pub(crate) fn h(mut self, key: &str, value: &str) -> Out {
        self.push(key, value);
        self
    }

    /// Adds `ActionID` only when the action had one.
    pub(crate) fn id(self, action_id: Option<&str>) -> Out {
        match action_id {
            Some(id) => self.h("ActionID", id),
            None => self,
        }
    }

    pub(crate) fn push(&mut self, key: &str, value: &str) {
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Appends raw bytes (used for the legacy Command body and the truncated-ActionID quirk).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }
}

/// A header value as Asterisk's `astman_get_header` returns it: leading blanks stripped,
/// trailing ones kept (`Value:   padded value  ` is `padded value  `).
/// A WaitEvent answer: the response, the events, then `WaitEventComplete` (TCP and HTTP alike).
pub(crate) fn wait_event_reply(action_id: Option<&str>, events: &[Event]) -> Vec<u8> {
    let mut out = Out::success(action_id)
        .h("Message", "Waiting for Event completed.")
        .finish();
    for ev in events {
        out.extend_from_slice(&ev.bytes);
    }
    out.extend_from_slice(&Out::event("WaitEventComplete").id(action_id).finish());
    out
}

pub(crate) fn header(m: &Message, name: &str) -> Option<String> {
    m.get_bytes(name)
        .map(|v| decode_text(v).trim_start_matches([' ', '\t']).to_string())
}

/// Every value of a repeated header, in order (`Variable:` on Originate).
pub(crate) fn headers_all(m: &Message, name: &str) -> Vec<String> {
    m.get_all_bytes(name)
        .map(|v| decode_text(v).trim_start_matches([' ', '\t']).to_string())
        .collect()
}

/// The permission classes of `manager.conf` (`read =`, `write =`) and of event `Privilege:`
/// headers, as bits.
pub mod class {
    pub const SYSTEM: u32 = 1 << 0;
    pub const CALL: u32 = 1 << 1;
    pub const LOG: u32 = 1 << 2;
    pub const VERBOSE: u32 = 1 << 3;
    pub const COMMAND: u32 = 1 << 4;
    pub const AGENT: u32 = 1 << 5;
    pub const USER: u32 = 1 << 6;
    pub const CONFIG: u32 = 1 << 7;
    pub const DTMF: u32 = 1 << 8;
    pub const REPORTING: u32 = 1 << 9;
    pub const CDR: u32 = 1 << 10;
    pub const DIALPLAN: u32 = 1 << 11;
    pub const ORIGINATE: u32 = 1 << 12;
    pub const AGI: u32 = 1 << 13;
    pub const CC: u32 = 1 << 14;
    pub const AOC: u32 = 1 << 15;
    pub const TEST: u32 = 1 << 16;
    pub const SECURITY: u32 = 1 << 17;
    pub const MESSAGE: u32 = 1 << 18;
    pub const ALL: u32 = (1 << 19) - 1;

    pub(crate) const NAMES: &[(&str, u32)] = &[
        ("system", SYSTEM),
        ("call", CALL),
        ("log", LOG),
        ("verbose", VERBOSE),
        ("command", COMMAND),
        ("agent", AGENT),
        ("user", USER),
        ("config", CONFIG),
        ("dtmf", DTMF),
        ("reporting", REPORTING),
        ("cdr", CDR),
        ("dialplan", DIALPLAN),
        ("originate", ORIGINATE),
        ("agi", AGI),
        ("cc", CC),
        ("aoc", AOC),
        ("test", TEST),
        ("security", SECURITY),
        ("message", MESSAGE),
    ];

    /// The classes of an event's `Privilege:` or an action's requirement: `call,all` is the
    /// call class (`all` there is a label, not every class).
    pub fn privilege(list: &str) -> u32 {
        list.split(',')
            .filter(|p| !p.trim().eq_ignore_ascii_case("all"))
            .map(parse)
            .fold(0, |a, b| a | b)
    }

    /// Parses `call,user`, `all`, `none` (case-insensitive). Unknown names count for nothing,
    /// which is how `EventMask: nonsense` ends up as "events off".
    pub fn parse(list: &str) -> u32 {
        list.split(',')
            .map(str::trim)
            .map(|word| {
                if word.eq_ignore_ascii_case("all") {
                    ALL
                } else {
                    NAMES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(word))
                        .map_or(0, |(_, bit)| *bit)
                }
            })
            .fold(0, |acc, bit| acc | bit)
    }
}

/// An event ready to go out: encoded once, shared by every session that may read it.
#[derive(Clone, Debug)]
pub struct Event {
    pub(crate) name: Arc<str>,
    /// The `Privilege:` classes; 0 (`Privilege: all`) reaches every session that reads events.
    pub(crate) class: u32,
    pub(crate) bytes: Arc<[u8]>,
    /// Its place among every event the simulator emitted ([`super::core::Core::emit`]).
    pub(crate) seq: u64,
}

impl Event {
    pub(crate) fn new(name: &str, class: u32, bytes: Vec<u8>) -> Event {
        Event {
            name: name.into(),
            class,
            bytes: bytes.into(),
            seq: 0,
        }
    }

    /// Builds an event from its name, privilege list (`call,all`) and headers.
    pub fn build(name: &str, privilege: &str, headers: &[(&str, &str)]) -> Event {
        let mut out = Out::event(name).h("Privilege", privilege);
        for (k, v) in headers {
            out.push(k, v);
        }
        Event::new(name, class::privilege(privilege), out.finish())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The event's text without its closing blank line (what regex filters run over).
    pub(crate) fn text(&self) -> std::borrow::Cow<'_, str> {
        decode_text(self.bytes.strip_suffix(b"\r\n\r\n").unwrap_or(&self.bytes))
    }

    /// The first value of a header (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.text().split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name)
                .then(|| v.strip_prefix(' ').unwrap_or(v).to_string())
        })
    }
}
