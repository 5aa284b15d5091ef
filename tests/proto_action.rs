//! Outbound actions: the encoder round-trips through the decoder and refuses whatever
//! Asterisk would misread (header injection, its line and header limits, long ActionIDs).

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

use std::collections::HashSet;

use amiwire::proto::ProtoError;
use amiwire::proto::{Action, ActionIds, Message, md5_key};

fn decode(bytes: &[u8]) -> Message {
    let mut d = amiwire::proto::Decoder::new();
    d.set_expect_banner(false);
    d.feed(bytes);
    let m = d.next_message().unwrap().unwrap();
    assert!(d.next_message().is_none());
    assert_eq!(d.buffered(), 0);
    m
}

fn wire_headers(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .map(|h| {
            (
                String::from_utf8(h.name.to_vec()).unwrap(),
                String::from_utf8(h.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn encode_decode_round_trip() {
    let action = Action::new("Originate")
        .header("Channel", "Local/100@test")
        .header("Variable", "A=1")
        .header("Variable", "B=2")
        .header("Empty", "")
        .header("Spaces", "  padded value  ")
        .header("Colons", "a: b : c")
        .header("Utf8", "Zoë Ñandú – 東京 ✓")
        .with_action_id("id with spaces: and colon");
    let bytes = action.to_bytes(Some("ignored-1")).unwrap();
    assert!(bytes.starts_with(b"Action: Originate\r\nActionID: id with spaces: and colon\r\n"));
    assert!(bytes.ends_with(b"\r\n\r\n"));
    let m = decode(&bytes);
    assert_eq!(m.raw(), &bytes[..]);
    let mut want = vec![
        ("Action".to_owned(), "Originate".to_owned()),
        (
            "ActionID".to_owned(),
            "id with spaces: and colon".to_owned(),
        ),
    ];
    want.extend(action.headers().iter().cloned());
    assert_eq!(wire_headers(&m), want);

    // The offered id is used when the action has none; `ActionID` headers set the id.
    let ping = Action::new("Ping");
    assert_eq!(
        ping.to_bytes(Some("x-1")).unwrap(),
        b"Action: Ping\r\nActionID: x-1\r\n\r\n"
    );
    assert_eq!(ping.to_bytes(None).unwrap(), b"Action: Ping\r\n\r\n");
    let via_header = Action::new("Ping").header("actionid", "h-1");
    assert_eq!(via_header.action_id(), Some("h-1"));
    assert!(via_header.headers().is_empty());
}

fn refused(action: &Action, offered: Option<&str>) -> String {
    let mut out = b"previous".to_vec();
    match action.encode(offered, &mut out) {
        Err(ProtoError::Usage(text)) => {
            assert_eq!(out, b"previous", "nothing written on refusal");
            assert!(action.validate().is_err() || offered.is_some());
            text
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn header_injection_is_refused_everywhere() {
    for bad in ["a\rb", "a\nb", "a\0b", "x\r\nAction: Hangup"] {
        refused(&Action::new(bad), None);
        refused(&Action::new("Ping").header(bad, "v"), None);
        refused(&Action::new("Ping").header("K", bad), None);
        refused(&Action::new("Ping").with_action_id(bad), None);
        refused(&Action::new("Ping"), Some(bad));
    }
    refused(&Action::new(""), None);
    refused(&Action::new("Ping").header("", "v"), None);
    refused(&Action::new("Ping").header("Bad:Key", "v"), None);
    refused(&Action::new("Ping").with_action_id(""), None);
}

#[test]
fn asterisk_input_limits() {
    // 1022 bytes per line plus CRLF.
    let ok = Action::new("Setvar").header("Value", "v".repeat(1022 - 7));
    let bytes = ok.to_bytes(None).unwrap();
    assert!(
        bytes
            .windows(1024)
            .any(|w| w.ends_with(b"\r\n") && w.starts_with(b"Value: "))
    );
    let text = refused(
        &Action::new("Setvar").header("Value", "v".repeat(1022 - 6)),
        None,
    );
    assert!(text.contains("1023-byte line"), "{text}");
    refused(&Action::new("x".repeat(1023 - 8)), None);

    // 128 lines: Action + ActionID + 126 headers.
    let mut a = Action::new("UserEvent").with_action_id("id");
    for i in 0..126 {
        a.push(format!("H{i}"), "v");
    }
    let m = decode(&a.to_bytes(None).unwrap());
    assert_eq!(m.len(), 128);
    a.push("One", "too many");
    assert!(refused(&a, None).contains("129 header lines"));
    // Without an ActionID there is room for one more header.
    let mut b = Action::new("UserEvent");
    for i in 0..127 {
        b.push(format!("H{i}"), "v");
    }
    assert!(b.to_bytes(None).is_ok());
    refused(&b, Some("id"));

    // ActionIDs: 64 characters accepted, 65 refused, from the action or offered.
    let id64 = "i".repeat(64);
    assert!(Action::new("Ping").with_action_id(&id64).validate().is_ok());
    assert!(Action::new("Ping").to_bytes(Some(&id64)).is_ok());
    let id65 = "i".repeat(65);
    assert!(refused(&Action::new("Ping").with_action_id(&id65), None).contains("65 characters"));
    refused(&Action::new("Ping"), Some(&id65));
    // Counted in characters, not bytes.
    assert!(
        Action::new("Ping")
            .with_action_id("é".repeat(64))
            .validate()
            .is_ok()
    );
}

#[test]
fn secrets_never_show() {
    let login = Action::new("Login")
        .header("Username", "admin")
        .header("Secret", "hunter2")
        .header("key", "0123abcd");
    let debug = format!("{login:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("0123abcd"),
        "{debug}"
    );
    assert!(debug.contains("admin") && debug.contains("Secret"));
    let bytes = login.to_bytes(Some("l-1")).unwrap();
    let m = decode(&bytes);
    let debug = format!("{m:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("0123abcd"),
        "{debug}"
    );
    assert_eq!(
        m.get("Secret").as_deref(),
        Some("hunter2"),
        "the value itself is intact"
    );
    // A refused secret is not echoed in the error.
    let bad = Action::new("Login").header("Secret", "hunt\r\ner2");
    let text = refused(&bad, None);
    assert!(!text.contains("hunt") && !text.contains("er2"), "{text}");
}

#[test]
fn action_ids_are_unique_and_short() {
    let mut a = ActionIds::new();
    let b = ActionIds::new();
    assert_ne!(a.prefix(), b.prefix(), "random per-connection prefixes");
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let id = a.next_id();
        assert!(id.len() <= 32, "{id}");
        assert!(id.starts_with(a.prefix()));
        assert!(Action::new("Ping").to_bytes(Some(&id)).is_ok());
        assert!(seen.insert(id));
    }
    let mut fixed = ActionIds::with_prefix("conn");
    assert_eq!(fixed.next_id(), "conn-1");
    assert_eq!(fixed.next_id(), "conn-2");
}

#[test]
fn md5_challenge_key_is_lowercase_hex() {
    // python3 -c "import hashlib; print(hashlib.md5(b'123456789amiwire').hexdigest())"
    assert_eq!(
        md5_key("123456789", "amiwire"),
        "e51f7e704f25024dce3f3d9517da5be0"
    );
}
