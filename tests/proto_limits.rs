//! Inbound limits: each over-limit message fails alone with the right kind and stream offset,
//! the decoder resynchronises at the next blank line, and memory stays bounded.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod proto_support;

use amiwire::proto::{Decoder, Limits, Message};
use amiwire::{DecodeError, DecodeErrorKind};
use proto_support::random_chunks;

const LIMITS: Limits = Limits {
    max_line: 100,
    max_lines: 6,
    max_message: 300,
};

fn decode_with(chunks: &[&[u8]]) -> (Vec<Result<Message, DecodeError>>, Decoder) {
    let mut d = Decoder::with_limits(LIMITS);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c);
        d.decode_into(&mut out);
    }
    (out, d)
}

/// Many good messages first, so the bad one sits past buffer compactions.
fn prefix() -> Vec<u8> {
    let mut p = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
    for i in 0..400 {
        p.extend_from_slice(format!("Event: Pad\r\nN: {i}\r\n\r\n").as_bytes());
    }
    p
}

const GOOD: &[u8] = b"Event: After\r\nActionID: a-1\r\nEmpty: \r\nOutput:   kept  \r\n\r\n";

/// Runs `bad` between the prefix and a good message under several chunkings and checks that
/// exactly one error of `kind` comes out at `offset_in_bad`, then the good message intact.
fn check(bad: &[u8], kind: DecodeErrorKind, offset_in_bad: usize) {
    let prefix = prefix();
    let mut stream = prefix.clone();
    stream.extend_from_slice(bad);
    stream.extend_from_slice(GOOD);
    let whole = [stream.as_slice()];
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    let chunkings: Vec<Vec<&[u8]>> = vec![
        whole.to_vec(),
        bytewise,
        random_chunks(&stream, 7, 50),
        random_chunks(&stream, 8, 500),
        stream.chunks(64).collect(),
    ];
    for (n, chunks) in chunkings.iter().enumerate() {
        let (out, d) = decode_with(chunks);
        if out.len() != 402 {
            for m in &out[395..] {
                eprintln!("{m:?}");
            }
        }
        assert_eq!(out.len(), 402, "chunking {n}");
        for m in &out[..400] {
            assert_eq!(m.as_ref().unwrap().event_name().as_deref(), Some("Pad"));
        }
        let err = out[400].as_ref().unwrap_err();
        assert_eq!(err.kind, kind, "chunking {n}");
        assert_eq!(err.message_offset, prefix.len() as u64, "chunking {n}");
        assert_eq!(
            err.offset,
            (prefix.len() + offset_in_bad) as u64,
            "chunking {n}"
        );
        assert_eq!(d.error_count(), 1);
        let good = out[401].as_ref().unwrap();
        assert_eq!(good.raw(), GOOD, "chunking {n}");
        assert_eq!(good.offset(), (prefix.len() + bad.len()) as u64);
        assert_eq!(good.get("Output").as_deref(), Some("  kept  "));
        assert_eq!(good.get("Empty").as_deref(), Some(""));
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn line_too_long() {
    let mut bad = b"Event: Big\r\nData: ".to_vec();
    bad.extend(std::iter::repeat_n(b'x', 200));
    bad.extend_from_slice(b"\r\nMore: after the long line\r\n\r\n");
    // The limit is crossed 100 bytes into the long line.
    check(&bad, DecodeErrorKind::LineTooLong, 12 + 100);
}

#[test]
fn line_too_long_with_blank_lines_inside_the_skipped_rest() {
    // Resynchronisation happens at the first blank line after the failure, not before it.
    let mut bad = b"Event: Big\r\nA: 1\r\n".to_vec();
    bad.extend(std::iter::repeat_n(b'y', 150));
    bad.extend_from_slice(b"\r\nB: 2\r\n\r\n");
    check(&bad, DecodeErrorKind::LineTooLong, 18 + 100);
}

#[test]
fn too_many_lines() {
    let mut bad = Vec::new();
    let mut seventh = 0;
    for i in 0..9 {
        if i == 6 {
            seventh = bad.len();
        }
        bad.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    bad.extend_from_slice(b"\r\n");
    check(&bad, DecodeErrorKind::TooManyLines, seventh);
}

#[test]
fn message_too_large() {
    let mut bad = Vec::new();
    for i in 0..5 {
        bad.extend_from_slice(format!("Header{i}: {}\r\n", "z".repeat(80)).as_bytes());
    }
    bad.extend_from_slice(b"\r\n");
    assert!(bad.len() > 300);
    check(&bad, DecodeErrorKind::MessageTooLarge, 300);
}

#[test]
fn message_too_large_by_its_closing_blank_line() {
    // 299 bytes of headers: only the closing CRLF crosses 300. The failing line closes the
    // message, so the very next message is decoded (even when the CR and LF arrive apart).
    let mut bad = b"Event: Edge\r\n".to_vec();
    for (name, len) in [("A", 95), ("B", 95), ("C", 96)] {
        // Each line is `X: ` + filler + CRLF, `len` bytes in all.
        bad.extend_from_slice(format!("{name}: {}\r\n", "f".repeat(len - 5)).as_bytes());
    }
    assert_eq!(bad.len(), 299);
    bad.extend_from_slice(b"\r\n");
    check(&bad, DecodeErrorKind::MessageTooLarge, 300);
}

#[test]
fn legacy_body_without_end_marker_is_too_large() {
    let mut bad = b"Response: Follows\r\nActionID: c\r\n".to_vec();
    for _ in 0..20 {
        bad.extend_from_slice(b"cli text line without end marker\n");
    }
    bad.extend_from_slice(b"\r\n");
    check(&bad, DecodeErrorKind::MessageTooLarge, 300);
}

#[test]
fn endless_line_keeps_memory_bounded() {
    let limits = Limits {
        max_line: 1024,
        ..Limits::default()
    };
    let mut d = Decoder::with_limits(limits);
    d.feed(b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\nEvent: Endless\r\nData: ");
    let mut out = Vec::new();
    d.decode_into(&mut out);
    assert_eq!(out.len(), 1);
    let chunk = [b'q'; 4096];
    for _ in 0..2_500 {
        // 10 MB of one line.
        d.feed(&chunk);
        d.decode_into(&mut out);
        assert!(
            d.buffered() <= 1024 + chunk.len(),
            "buffered {}",
            d.buffered()
        );
    }
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[1].as_ref().unwrap_err().kind,
        DecodeErrorKind::LineTooLong
    );
    assert_eq!(d.error_count(), 1, "one error per message, not per chunk");
    d.feed(b"\r\nStill: skipped\r\n\r\nEvent: B\r\nX: y\r\n\r\n");
    d.decode_into(&mut out);
    assert_eq!(out.len(), 3);
    let b = out[2].as_ref().unwrap();
    assert_eq!(b.raw(), b"Event: B\r\nX: y\r\n\r\n");
    assert_eq!(b.offset() + b.raw().len() as u64, d.stream_offset());
}

#[test]
fn endless_message_of_short_lines_keeps_memory_bounded() {
    let mut d = Decoder::with_limits(LIMITS);
    let mut out = Vec::new();
    d.feed(b"Event: Flood\r\n");
    for _ in 0..10_000 {
        d.feed(b"K: v\r\n");
        d.decode_into(&mut out);
        assert!(d.buffered() <= 300, "buffered {}", d.buffered());
    }
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].as_ref().unwrap_err().kind,
        DecodeErrorKind::TooManyLines
    );
    d.feed(b"\r\nEvent: Next\r\n\r\n");
    d.decode_into(&mut out);
    assert_eq!(
        out[1].as_ref().unwrap().event_name().as_deref(),
        Some("Next")
    );
}

#[test]
fn error_text_names_the_limit_not_the_payload() {
    let mut d = Decoder::with_limits(LIMITS);
    d.set_expect_banner(false);
    let mut bad = b"Action: Login\r\nSecret: ".to_vec();
    bad.extend(std::iter::repeat_n(b's', 200));
    bad.extend_from_slice(b"\r\n\r\n");
    d.feed(&bad);
    let err = d.next_message().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("line too long"), "{text}");
    assert!(!text.contains("sss"), "{text}");
    assert!(!format!("{err:?}").contains("sss"));
}

#[test]
fn limits_at_exactly_the_maximum_pass() {
    let mut d = Decoder::with_limits(LIMITS);
    d.set_expect_banner(false);
    let line = format!("Data: {}", "w".repeat(100 - 6));
    assert_eq!(line.len(), 100);
    let mut msg = b"Event: E\r\n".to_vec();
    msg.extend_from_slice(line.as_bytes());
    msg.extend_from_slice(b"\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
    d.feed(&msg);
    let m = d.next_message().unwrap().unwrap();
    assert_eq!(m.len(), 6);
    assert_eq!(m.get("Data").unwrap().len(), 94);
}

#[test]
fn a_line_fed_in_pieces_is_scanned_once() {
    // Rescanning a partial line from its start on every read would be quadratic: 1 MB in
    // 1-byte reads would take hours. Linear, it takes well under a second.
    let limits = Limits {
        max_line: 2 << 20,
        ..Limits::default()
    };
    let mut d = Decoder::with_limits(limits);
    d.set_expect_banner(false);
    d.feed(b"Event: Long\r\nData: ");
    let t = std::time::Instant::now();
    for _ in 0..(1 << 20) {
        d.feed(b"d");
        assert!(d.next_message().is_none());
    }
    d.feed(b"\r\n\r\n");
    let m = d.next_message().unwrap().unwrap();
    assert_eq!(m.get_bytes("Data").unwrap().len(), 1 << 20);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
}
