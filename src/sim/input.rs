//! How Asterisk reads actions from a manager connection, for every client, logged in or not
//! (`main/manager.c`, `get_input()` and `do_message()`):
//!
//! - Lines end in CRLF or a bare LF and are read into `inbuf[1025]`, so a line holds at most
//!   1,024 bytes with its CR. When the buffer is full and holds no line end, manager.c
//!   discards it, keeping only the last byte (it may be the CR of a CRLF), and marks the
//!   action "line too long"; the action still runs to its blank line, and is answered
//!   `Failed to parse message: line too long` with the ActionID of the lines it kept.
//! - An action keeps at most 128 lines (`AST_MAX_MANHEADERS`); more are dropped and the action
//!   is answered `Too many lines in message or allocation failure`.
//! - Every blank line ends an action, an empty one too (it gets `Missing action in request`).
//!
//! So a connection never holds more than one line buffer and 128 kept lines, whatever a client
//! sends: this is what bounds an unauthenticated connection's memory (the client's own decoder
//! allows 256 KiB lines). The quirks follow from the same rules: a 1,023-byte line fills the
//! buffer with its CR, so its LF reads as a blank line that ends the action early, and the
//! action's real blank line then arrives as an empty action (`tcp-header-edge-cases.jsonl`).

use crate::proto::Message;

/// `sizeof(inbuf) - 1`: the longest line manager.c can hold, CR included.
pub(crate) const MAX_LINE: usize = 1024;
/// `AST_MAX_MANHEADERS`: the lines one action keeps.
pub(crate) const MAX_LINES: usize = 128;

/// What was wrong with an action's framing (manager.c answers it instead of running it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// `MESSAGE_LINE_TOO_LONG`
    LineTooLong,
    /// `hdr_loss`: more than [`MAX_LINES`] lines.
    TooManyLines,
}

/// One action as read: its kept lines, and whether its framing failed.
#[derive(Debug)]
pub(crate) struct Request {
    /// The kept lines as a message; None for an action without any line.
    pub(crate) message: Option<Message>,
    pub(crate) problem: Option<Problem>,
}

/// The read state of one connection.
#[derive(Debug, Default)]
pub(crate) struct Input {
    /// `inbuf`: bytes of the current line, never more than [`MAX_LINE`].
    buf: Vec<u8>,
    /// The lines of the action being read, never more than [`MAX_LINES`].
    lines: Vec<Vec<u8>>,
    /// `s->parsing == MESSAGE_LINE_TOO_LONG`
    too_long: bool,
    /// `hdr_loss`
    too_many: bool,
}

impl Input {
    /// Reads `data` and returns the actions it completed, in order.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Vec<Request> {
        let mut out = Vec::new();
        loop {
            while let Some(line) = self.take_line() {
                if let Some(request) = self.line(line) {
                    out.push(request);
                }
            }
            if self.buf.len() >= MAX_LINE {
                // "Discarding message ... Line too long": keep the last byte, in case it is
                // the CR of a CRLF.
                let last = self.buf.last().copied();
                self.buf.clear();
                self.buf.extend(last);
                self.too_long = true;
            }
            if data.is_empty() {
                return out;
            }
            let room = MAX_LINE - self.buf.len();
            let (now, later) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = later;
        }
    }

    /// Bytes held for the action being read.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buf.len() + self.lines.iter().map(Vec::len).sum::<usize>()
    }

    /// The first complete line in the buffer, without its CRLF or LF. A CR not followed by
    /// LF stays in the line, as in manager.c.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let lf = self.buf.iter().position(|b| *b == b'\n')?;
        let end = if lf > 0 && self.buf.get(lf - 1) == Some(&b'\r') {
            lf - 1
        } else {
            lf
        };
        let line = self.buf.get(..end).unwrap_or_default().to_vec();
        self.buf.drain(..=lf);
        Some(line)
    }

    /// One line of `do_message()`: a blank one ends the action.
    fn line(&mut self, line: Vec<u8>) -> Option<Request> {
        if !line.is_empty() {
            if self.lines.len() < MAX_LINES {
                self.lines.push(line);
            } else {
                self.too_many = true;
            }
            return None;
        }
        let problem = if self.too_many {
            // manager.c leaves the line-too-long mark set in this case; the next action
            // then fails as too long too.
            Some(Problem::TooManyLines)
        } else if self.too_long {
            self.too_long = false;
            Some(Problem::LineTooLong)
        } else {
            None
        };
        self.too_many = false;
        let lines = std::mem::take(&mut self.lines);
        Some(Request {
            message: message(&lines),
            problem,
        })
    }
}

/// The kept lines as a message (CRLF-terminated, as the rest of the simulator reads them).
fn message(lines: &[Vec<u8>]) -> Option<Message> {
    let mut raw = Vec::with_capacity(lines.iter().map(|l| l.len() + 2).sum::<usize>() + 2);
    for line in lines {
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
    }
    Message::parse_one(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(reqs: &[Request]) -> Vec<Option<Problem>> {
        reqs.iter().map(|r| r.problem).collect()
    }

    #[test]
    fn a_line_that_never_ends_holds_one_buffer() {
        let mut input = Input::default();
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            assert!(input.feed(&junk).is_empty());
            assert!(input.buffered() <= MAX_LINE, "{}", input.buffered());
        }
    }

    #[test]
    fn endless_short_lines_keep_128() {
        let mut input = Input::default();
        let lines = b"X-Header: value\r\n".repeat(10_000);
        assert!(input.feed(&lines).is_empty());
        assert_eq!(input.lines.len(), MAX_LINES);
        assert!(input.buffered() <= MAX_LINES * 15 + MAX_LINE);
        let reqs = input.feed(b"\r\n");
        assert_eq!(problems(&reqs), [Some(Problem::TooManyLines)]);
    }

    #[test]
    fn line_lengths_around_the_buffer_size() {
        // 1,022 bytes fit with their CRLF; 1,023 leave the LF for an early blank line.
        let action = |n: usize| format!("Action: Setvar\r\nValue: {}\r\n\r\n", "z".repeat(n - 7));
        let mut input = Input::default();
        assert_eq!(problems(&input.feed(action(1022).as_bytes())), [None]);
        let reqs = input.feed(action(1023).as_bytes());
        assert_eq!(problems(&reqs), [Some(Problem::LineTooLong), None]);
        assert!(
            reqs[1].message.is_none(),
            "the real blank line: an empty action"
        );
        assert_eq!(
            problems(&input.feed(action(1024).as_bytes())),
            [Some(Problem::LineTooLong)]
        );
    }

    #[test]
    fn framing_does_not_depend_on_how_bytes_arrive() {
        let stream = format!(
            "Action: Ping\nActionID: a\n\nAction: Setvar\r\nValue: {}\r\nActionID: b\r\n\r\n\r\n",
            "y".repeat(5000)
        );
        let whole = Input::default().feed(stream.as_bytes());
        let mut input = Input::default();
        let bytewise: Vec<Request> = stream
            .as_bytes()
            .iter()
            .flat_map(|b| input.feed(std::slice::from_ref(b)))
            .collect();
        for reqs in [&whole, &bytewise] {
            assert_eq!(
                problems(reqs),
                [None, Some(Problem::LineTooLong), None],
                "{reqs:?}"
            );
            let ids: Vec<_> = reqs
                .iter()
                .map(|r| {
                    r.message
                        .as_ref()
                        .and_then(|m| m.get("ActionID").map(|v| v.into_owned()))
                })
                .collect();
            assert_eq!(ids, [Some("a".into()), Some("b".into()), None]);
        }
    }
}
