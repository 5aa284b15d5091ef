//! Firehose mode: right after login, stream a capture or generated events as fast as the
//! socket accepts them (for throughput tests and benchmarks).

use std::io;

use super::config::FirehoseSource;
use super::wire::Event;

/// The part of a raw capture after its banner line and its first message (the login reply).
pub(crate) fn strip_capture(bytes: &[u8]) -> &[u8] {
    let mut rest = bytes;
    if rest.starts_with(b"Asterisk Call Manager") {
        let line_end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        rest = rest.get(line_end..).unwrap_or_default();
    }
    match rest.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) if rest.starts_with(b"Response:") => rest.get(i + 4..).unwrap_or_default(),
        _ => rest,
    }
}

/// `count` call events shaped like the load capture (Newexten and VarSet lead there).
pub(crate) fn generate(count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        let chan = format!("Local/100@test-{:08x};2", i / 8);
        let uid = format!("1795691133.{}", i / 8);
        let prio = (i % 8 + 1).to_string();
        let mut headers: Vec<(&str, &str)> = vec![
            ("Channel", &chan),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "<unknown>"),
            ("CallerIDName", "<unknown>"),
            ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", "test"),
            ("Exten", "100"),
            ("Priority", &prio),
            ("Uniqueid", &uid),
            ("Linkedid", &uid),
        ];
        let event = if i % 2 == 0 {
            headers.extend([
                ("Extension", "100"),
                ("Application", "NoOp"),
                ("AppData", "load"),
            ]);
            Event::build("Newexten", "dialplan,all", &headers)
        } else {
            headers.extend([("Variable", "LOADVAR"), ("Value", "load")]);
            Event::build("VarSet", "dialplan,all", &headers)
        };
        out.extend_from_slice(&event.bytes);
    }
    out
}

/// The bytes one repeat of the firehose sends.
pub(crate) async fn payload(source: &FirehoseSource) -> io::Result<Vec<u8>> {
    match source {
        FirehoseSource::File(path) => {
            let path = path.clone();
            let raw = tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .map_err(io::Error::other)??;
            Ok(strip_capture(&raw).to_vec())
        }
        FirehoseSource::Generated { count } => Ok(generate(*count)),
    }
}
