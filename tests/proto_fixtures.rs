//! Replays every recorded TCP stream through the decoder and checks each message against an
//! independent reference splitter, under every chunking; plus targeted cases from
//! ami-protocol.md.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod proto_support;

use amiwire::proto::{Decoder, Kind, Message, command_output, decode_all, decode_text};
use proto_support::*;

/// Banner + each message's raw bytes must rebuild the stream, skipping only stray empty lines.
fn assert_raw_rebuilds(what: &str, stream: &[u8], banner: Option<&str>, msgs: &[Message]) {
    let mut pos = 0usize;
    if let Some(b) = banner {
        assert!(stream.starts_with(b.as_bytes()), "{what}: banner");
        pos = b.len();
        pos += if stream[pos..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
    }
    let skip_empty = |mut p: usize| loop {
        if stream[p..].starts_with(b"\r\n") {
            p += 2;
        } else if stream[p..].starts_with(b"\n") {
            p += 1;
        } else {
            return p;
        }
    };
    for (i, m) in msgs.iter().enumerate() {
        pos = skip_empty(pos);
        assert_eq!(m.offset(), pos as u64, "{what}: offset of message {i}");
        assert!(
            stream[pos..].starts_with(m.raw()),
            "{what}: raw of message {i} is not the stream at {pos}"
        );
        pos += m.raw().len();
    }
    pos = skip_empty(pos);
    // What is left is an unterminated tail (a connection cut mid-message): no blank line in it.
    assert!(
        !contains(&stream[pos..], b"\n\r\n") && !contains(&stream[pos..], b"\n\n"),
        "{what}: complete messages left undecoded at {pos}"
    );
}

fn ok(d: &Decoded) -> Vec<Message> {
    d.1.iter().map(|m| m.clone().unwrap()).collect()
}

#[test]
fn every_tcp_fixture_matches_the_reference_under_every_chunking() {
    let mut streams = 0;
    let mut total_msgs = 0;
    for path in tcp_fixtures() {
        for conn in load_jsonl(&path) {
            let name = format!("{}#{}", path.display(), conn.id);
            let stream = conn.stream();
            let real = decode_chunks(conn.recv.iter().map(Vec::as_slice));
            assert_matches_reference(&format!("{name} real reads"), &stream, &real);
            let msgs = ok(&real);
            assert_raw_rebuilds(&name, &stream, real.0.as_deref(), &msgs);

            let whole = decode_chunks([stream.as_slice()]);
            let bytewise = decode_bytewise(&stream);
            assert_eq!(ok(&whole), msgs, "{name}: whole");
            assert_eq!(ok(&bytewise), msgs, "{name}: byte by byte");
            assert_eq!((&whole.0, &bytewise.0), (&real.0, &real.0), "{name}");
            for seed in 0..8 {
                let chunks = random_chunks(&stream, seed, 1 + seed as usize * 97);
                let random = decode_chunks(chunks);
                assert_eq!(random.0, real.0, "{name} seed {seed}: banner");
                assert_eq!(ok(&random), msgs, "{name}: random chunking seed {seed}");
                // Equal raw bytes imply equal headers, but compare the parsed form too.
                let a: Vec<_> = ok(&random).iter().map(observed).collect();
                let b: Vec<_> = msgs.iter().map(observed).collect();
                assert_eq!(a, b, "{name}: seed {seed}");
            }
            streams += 1;
            total_msgs += msgs.len();
        }
    }
    assert!(
        streams >= 36 && total_msgs > 1000,
        "{streams} streams, {total_msgs} messages"
    );
}

#[test]
fn every_rawman_body_matches_the_reference() {
    let mut bodies = 0;
    let mut legacy = 0;
    for dir in ["asterisk-22", "asterisk-13"] {
        for entry in std::fs::read_dir(fixture(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("http-") && name.ends_with(".jsonl")) {
                continue;
            }
            for conn in load_jsonl(&path) {
                for (i, body) in rawman_bodies(&conn.stream()).iter().enumerate() {
                    let what = format!("{dir}/{name}#{} body {i}", conn.id);
                    let whole = decode_chunks_no_banner([body.as_slice()]);
                    assert_matches_reference_with(&what, body, &whole, false);
                    let msgs = ok(&whole);
                    assert!(!msgs.is_empty(), "{what}");
                    assert_eq!(ok(&decode_chunks_no_banner(body.chunks(1))), msgs, "{what}");
                    let random = decode_chunks_no_banner(random_chunks(body, i as u64, 300));
                    assert_eq!(ok(&random), msgs, "{what}");
                    legacy += msgs.iter().filter(|m| m.body().is_some()).count();
                    bodies += 1;
                }
            }
        }
    }
    assert!(bodies > 50, "{bodies} bodies");
    assert_eq!(
        legacy, 6,
        "legacy Command replies over /rawman (Asterisk 13)"
    );
}

fn load_index() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("asterisk-22/index.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn event_stream_load_counts_and_reference() {
    let stream = std::fs::read(fixture("asterisk-22/event-stream-load.raw")).unwrap();
    let index = load_index();
    let load = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "event-stream-load.raw")
        .unwrap()["load"]
        .clone();
    assert_eq!(stream.len() as u64, load["bytes"].as_u64().unwrap());

    let (banner, out) = decode_all(&stream);
    assert!(out.iter().all(Result::is_ok), "no decode errors");
    let msgs: Vec<Message> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(banner.as_deref(), load["banner"].as_str());
    assert_eq!(msgs.len(), 21_829);
    assert_eq!(msgs.len() as u64, load["messages"].as_u64().unwrap());
    let count = |k: Kind| msgs.iter().filter(|m| m.kind() == k).count() as u64;
    assert_eq!(count(Kind::Event), 21_527);
    assert_eq!(count(Kind::Event), load["events"].as_u64().unwrap());
    assert_eq!(count(Kind::Response), load["responses"].as_u64().unwrap());
    assert_eq!(count(Kind::Other), load["other_messages"].as_u64().unwrap());

    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    for m in &msgs {
        if let Some(n) = m.event_name() {
            *by_name.entry(n.into_owned()).or_default() += 1;
        }
    }
    let want: std::collections::BTreeMap<String, u64> = load["events_by_name"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(by_name, want);
    let originate_ok = msgs
        .iter()
        .filter(|m| m.event_name().as_deref() == Some("OriginateResponse"))
        .filter(|m| m.get("Reason").as_deref() == Some("4"))
        .count();
    assert_eq!(
        originate_ok as u64,
        load["originate_responses"].as_u64().unwrap()
    );

    // Longest message 908 bytes / 33 lines (ami-protocol.md §1.3, counted without the
    // closing CRLF CRLF, which raw() includes).
    assert_eq!(msgs.iter().map(|m| m.raw().len() - 4).max(), Some(908));
    assert_eq!(msgs.iter().map(Message::len).max(), Some(33));

    let decoded = (banner.clone(), msgs.iter().cloned().map(Ok).collect());
    assert_matches_reference("event-stream-load.raw", &stream, &decoded);
    assert_raw_rebuilds("event-stream-load.raw", &stream, banner.as_deref(), &msgs);
    assert_eq!(load["trailing_bytes"].as_u64(), Some(0));

    for (seed, max) in [(1u64, 64 * 1024), (2, 1500), (3, 7)] {
        let got = decode_chunks(random_chunks(&stream, seed, max));
        assert_eq!(got.0, banner);
        assert_eq!(ok(&got), msgs, "seed {seed}");
    }
}

fn one(bytes: &[u8]) -> Message {
    let mut d = Decoder::new();
    d.set_expect_banner(false);
    d.feed(bytes);
    let m = d.next_message().unwrap().unwrap();
    assert!(d.next_message().is_none());
    m
}

fn headers(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .map(|h| {
            (
                decode_text(h.name).into_owned(),
                decode_text(h.value).into_owned(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn banner_without_blank_line_is_not_glued_to_the_first_reply() {
    let (banner, out) =
        decode_all(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: a\r\n\r\n");
    assert_eq!(banner.as_deref(), Some("Asterisk Call Manager/11.0.0"));
    let m = out[0].as_ref().unwrap();
    assert_eq!(
        headers(m),
        pairs(&[("Response", "Success"), ("ActionID", "a")])
    );
    assert_eq!(out.len(), 1);
    // Proxies use other prefixes; a colon-less first line is still a banner.
    let (banner, out) = decode_all(b"Asterisk Call Manager Proxy/1.0\r\nEvent: X\r\n\r\n");
    assert_eq!(banner.as_deref(), Some("Asterisk Call Manager Proxy/1.0"));
    assert_eq!(out.len(), 1);
    // A stream that starts with a header line has no banner.
    let (banner, out) = decode_all(b"Event: X\r\n\r\n");
    assert_eq!(banner, None);
    assert_eq!(out.len(), 1);
}

#[test]
fn bare_lf_oddity_in_core_show_channel_map() {
    let msgs = messages("asterisk-22/tcp-errors.jsonl");
    let m = msgs
        .iter()
        .find(|m| m.action_id().as_deref() == Some("err-chanmap"))
        .unwrap();
    assert_eq!(
        headers(m),
        pairs(&[
            ("Response", "Error"),
            ("ActionID", "err-chanmap"),
            ("Message", "Could not get channel snapshot"),
        ])
    );
    assert!(m.raw().ends_with(b"snapshot\n\r\n"));
    // The message after it is intact (the stray CRLF was dropped, not glued on).
    let i = msgs.iter().position(|x| x == m).unwrap();
    let next = &msgs[i + 1];
    assert!(next.raw().starts_with(b"Response: ") || next.raw().starts_with(b"Event: "));
}

#[test]
fn output_lines_keep_indentation_and_trailing_spaces() {
    let msgs = messages("asterisk-22/tcp-command.jsonl");
    let outputs: Vec<String> = msgs
        .iter()
        .flat_map(|m| m.get_all("Output"))
        .map(|c| c.into_owned())
        .collect();
    assert!(
        outputs.iter().any(|l| l.starts_with("  '100' =>")),
        "indentation kept"
    );
    assert!(outputs.iter().any(|l| l.ends_with("  ")), "padding kept");
    assert!(outputs.iter().any(String::is_empty), "empty CLI line kept");
    let m = one(b"Response: Success\r\nOutput:   x  \r\nOutput:\r\nOutput:no space\r\n\r\n");
    assert_eq!(m.get_all("output"), vec!["  x  ", "", "no space"]);
}

#[test]
fn empty_values_are_values() {
    let msgs = messages("asterisk-22/tcp-userevent-action.jsonl");
    let ue = msgs
        .iter()
        .find(|m| {
            m.event_name().as_deref() == Some("UserEvent")
                && m.get("UserEvent").as_deref() == Some("")
        })
        .expect("nameless UserEvent");
    assert_eq!(ue.get_bytes("UserEvent"), Some(&b""[..]));
    let m = one(b"Event: X\r\nAccountCode: \r\nValue:\r\nNext: y\r\n\r\n");
    assert_eq!(
        headers(&m),
        pairs(&[
            ("Event", "X"),
            ("AccountCode", ""),
            ("Value", ""),
            ("Next", "y")
        ])
    );
}

#[test]
fn repeated_headers_keep_order_and_lookup_is_case_insensitive() {
    let m = one(
        b"Event: UserEvent\r\nUniqueID: 1\r\nX-Rep: a\r\nOther: o\r\nx-rep: b\r\nX-REP: c\r\n\r\n",
    );
    assert_eq!(m.get_all("X-Rep"), vec!["a", "b", "c"]);
    assert_eq!(m.get("uniqueid").as_deref(), Some("1"));
    assert_eq!(m.get("UNIQUEID").as_deref(), Some("1"));
    let names: Vec<&[u8]> = m.headers().map(|h| h.name).collect();
    assert_eq!(names[1], b"UniqueID", "spelling kept");
    assert_eq!(names[4], b"x-rep");
    assert!(m.get("Missing").is_none());
    assert_eq!(m.len(), 6);

    // The recorded repeat: UserEvent echoes a header the action sent twice.
    let msgs = messages("asterisk-22/tcp-userevent-action.jsonl");
    let sent = load_jsonl(&fixture("asterisk-22/tcp-userevent-action.jsonl"));
    let repeated = msgs.iter().find(|m| {
        m.is_event()
            && m.headers()
                .any(|h| m.get_all_bytes(&String::from_utf8_lossy(h.name)).count() > 1)
    });
    let repeated = repeated.expect("a UserEvent with a repeated header");
    assert!(!sent.is_empty());
    let name = repeated
        .headers()
        .map(|h| String::from_utf8_lossy(h.name).into_owned())
        .find(|n| repeated.get_all(n).len() > 1)
        .unwrap();
    let values = repeated.get_all(&name);
    let in_wire: Vec<String> = repeated
        .headers()
        .filter(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| decode_text(h.value).into_owned())
        .collect();
    assert_eq!(values, in_wire);
}

#[test]
fn userevent_carries_the_actions_actionid() {
    let msgs = messages("asterisk-22/tcp-userevent-action.jsonl");
    let ids: Vec<String> = msgs
        .iter()
        .filter(|m| m.is_response())
        .filter(|m| m.get("Message").as_deref() == Some("Event Sent"))
        .filter_map(|m| m.action_id().map(|c| c.into_owned()))
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        let ev = msgs.iter().find(|m| {
            m.event_name().as_deref() == Some("UserEvent") && m.action_id().as_deref() == Some(id)
        });
        assert!(ev.is_some(), "UserEvent echoing {id}");
        assert_eq!(ev.unwrap().kind(), Kind::Event);
    }
}

#[test]
fn foreign_originate_responses_are_events_with_foreign_ids() {
    for (file, id) in [
        ("asterisk-22/tcp-events-off-on.jsonl", "drv-2"),
        ("asterisk-22/tcp-userevent-action.jsonl", "drv-1"),
    ] {
        let msgs = messages(file);
        let m = msgs
            .iter()
            .find(|m| m.event_name().as_deref() == Some("OriginateResponse"))
            .unwrap_or_else(|| panic!("{file}"));
        assert_eq!(m.kind(), Kind::Event, "Event wins over Response");
        assert_eq!(m.action_id().as_deref(), Some(id));
        assert!(m.get("Response").is_some());
        assert_eq!(m.response(), None, "not a response");
    }
}

/// The legacy Command reply, as panoramisk recorded it (LF-only, Asterisk 11).
#[test]
fn legacy_follows_lf_only_from_panoramisk() {
    let text = std::fs::read(fixture("peers/panoramisk/command_core_show_version.yaml")).unwrap();
    // Block 1 is the action; the reply follows the first empty line.
    let start = text.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let reply = &text[start..];
    assert!(!reply.contains(&b'\r'));
    let m = one(reply);
    assert_eq!(m.response().as_deref(), Some("Follows"));
    assert_eq!(
        headers(&m),
        pairs(&[
            ("Response", "Follows"),
            ("Privilege", "Command"),
            ("ActionID", "action/transaction_uid/1/1"),
        ])
    );
    let body = m.body().unwrap();
    assert!(body.starts_with(b"Asterisk 11.11.0+xivo"));
    assert!(body.ends_with(b"2014-08-06 19:30:37 UTC\n"));
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(command_output(&m).unwrap().lines().count(), 1);
}

#[test]
fn legacy_follows_edge_cases() {
    // Empty output: the marker right after the headers.
    let m =
        one(b"Response: Follows\r\nPrivilege: Command\r\nActionID: x\r\n--END COMMAND--\r\n\r\n");
    assert_eq!(m.body(), Some(&b""[..]));
    assert_eq!(m.len(), 3);
    assert_eq!(command_output(&m).unwrap(), "");

    // Body lines that look like headers, blank lines inside the body.
    let wire = b"Response: Follows\r\nPrivilege: Command\r\nActionID: y\r\nKey: value\nFoo: bar\n\n  indented  \n--END COMMAND--\r\n\r\nEvent: After\r\n\r\n";
    let (_, out) = {
        let mut d = Decoder::new();
        d.set_expect_banner(false);
        d.feed(wire);
        let mut out = Vec::new();
        d.decode_into(&mut out);
        (None::<()>, out)
    };
    assert_eq!(out.len(), 2);
    let m = out[0].as_ref().unwrap();
    assert_eq!(m.get("Key"), None, "body line is not a header");
    assert_eq!(
        m.body(),
        Some(&b"Key: value\nFoo: bar\n\n  indented  \n"[..])
    );
    assert_eq!(
        command_output(m).unwrap(),
        "Key: value\nFoo: bar\n\n  indented  \n"
    );
    assert_eq!(
        out[1].as_ref().unwrap().event_name().as_deref(),
        Some("After")
    );

    // Recorded Asterisk 13 legacy replies: body lines end in LF, padding kept.
    let msgs = messages("asterisk-13/tcp-command-legacy.jsonl");
    let legacy: Vec<&Message> = msgs.iter().filter(|m| m.body().is_some()).collect();
    assert!(legacy.len() >= 3);
    let first = legacy[0];
    assert_eq!(first.action_id().as_deref(), Some("cmd-1"));
    assert!(
        first
            .body()
            .unwrap()
            .starts_with(b"Asterisk 13.38.3 built by root")
    );
    let cmd2 = legacy
        .iter()
        .find(|m| m.action_id().as_deref() == Some("cmd-2"))
        .unwrap();
    let text = command_output(cmd2).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("Application(Data)             ")
    );
    assert_eq!(text.lines().count(), 10);
}

#[test]
fn colon_less_lines_are_kept_as_unparsed() {
    let m = one(b"Event: UserEvent\r\nstray body line\r\nKey: v\r\n--END SMS EVENT--\r\n\r\n");
    let unparsed: Vec<&[u8]> = m.unparsed_lines().collect();
    assert_eq!(
        unparsed,
        vec![&b"stray body line"[..], b"--END SMS EVENT--"]
    );
    assert_eq!(headers(&m), pairs(&[("Event", "UserEvent"), ("Key", "v")]));
    assert_eq!(m.len(), 2);
    // A message of nothing but stray lines is Kind::Other.
    let m = one(b"just text\r\nmore text\r\n\r\n");
    assert_eq!(m.kind(), Kind::Other);
    assert_eq!(m.unparsed_lines().count(), 2);
    assert!(m.is_empty());
}

#[test]
fn non_utf8_values_fall_back_to_latin1_with_raw_bytes_intact() {
    let wire = b"Event: X\r\nCallerIDName: Jos\xe9 M\xfcller\r\nUtf8: Zo\xc3\xab\r\n\r\n";
    let m = one(wire);
    assert_eq!(m.raw(), &wire[..]);
    assert_eq!(m.get_bytes("CallerIDName"), Some(&b"Jos\xe9 M\xfcller"[..]));
    assert_eq!(m.get("CallerIDName").as_deref(), Some("José Müller"));
    assert_eq!(m.get("Utf8").as_deref(), Some("Zoë"));
    // Latin-1 is lossless: every char maps back to its byte.
    let back: Vec<u8> = m
        .get("CallerIDName")
        .unwrap()
        .chars()
        .map(|c| c as u32 as u8)
        .collect();
    assert_eq!(back, b"Jos\xe9 M\xfcller");
    // The recorded UTF-8 passes through unchanged.
    let msgs = messages("asterisk-22/tcp-header-edge-cases.jsonl");
    assert!(
        msgs.iter()
            .flat_map(|m| m
                .headers()
                .map(|h| decode_text(h.value).into_owned())
                .collect::<Vec<_>>())
            .any(|v| v.contains("Zoë Ñandú – 東京 ✓"))
    );
}

#[test]
fn crlf_lf_and_mixed_lines() {
    let m = one(b"Event: X\nA: 1\r\nB: 2\n\n");
    assert_eq!(
        headers(&m),
        pairs(&[("Event", "X"), ("A", "1"), ("B", "2")])
    );
    // Only one CR is stripped: a value may end in a CR of its own.
    let m = one(b"Event: X\r\nA: 1\r\r\n\r\n");
    assert_eq!(m.get_bytes("A"), Some(&b"1\r"[..]));
    // Stray empty lines between messages are dropped.
    let (_, out) = decode_all(b"Event: A\r\n\r\n\r\n\n\r\nEvent: B\r\n\r\n");
    let names: Vec<String> = out
        .iter()
        .map(|m| m.as_ref().unwrap().event_name().unwrap().into_owned())
        .collect();
    assert_eq!(names, vec!["A", "B"]);
}

#[test]
fn heap_size_is_one_allocation_close_to_wire_size() {
    let stream = std::fs::read(fixture("asterisk-22/event-stream-load.raw")).unwrap();
    let (_, out) = decode_all(&stream);
    let msgs: Vec<Message> = out.into_iter().map(Result::unwrap).collect();
    let wire: usize = msgs.iter().map(|m| m.raw().len()).sum();
    let heap: usize = msgs.iter().map(Message::heap_size).sum();
    let inline = msgs.len() * std::mem::size_of::<Message>();
    assert!(heap >= wire);
    println!(
        "heap {heap} + inline {inline} = {:.3}x wire {wire}",
        (heap + inline) as f64 / wire as f64
    );
    assert!(
        (heap + inline) as f64 <= 1.5 * wire as f64,
        "heap {heap} + inline {inline} vs wire {wire}"
    );
}

#[test]
fn event_name_read_from_the_first_line_agrees_with_the_header_lookup() {
    // The fast path reads `Event:` from the start of the bytes; every recorded event, and the
    // shapes a hand-written server might send, must give what the header lookup gives.
    let mut streams: Vec<Vec<u8>> = tcp_fixtures()
        .iter()
        .flat_map(|path| load_jsonl(path))
        .map(|conn| conn.stream())
        .collect();
    streams.push(std::fs::read(fixture("asterisk-22/event-stream-load.raw")).unwrap());
    let mut seen = 0;
    for stream in &streams {
        for m in ok(&decode_chunks([stream.as_slice()])) {
            if m.is_event() {
                assert_eq!(m.event_name_bytes(), m.get_bytes("Event"), "{m:?}");
                seen += 1;
            }
        }
    }
    assert!(seen > 20_000, "only {seen} events in the fixtures?");
    for (bytes, name) in [
        (&b"Event: Hangup\r\nChannel: x\r\n\r\n"[..], &b"Hangup"[..]),
        (b"event:Hangup\r\n\r\n", b"Hangup"),
        (b"EVENT:  Padded\n\n", b" Padded"),
        (b"Event: \r\n\r\n", b""),
        (b"Privilege: call,all\r\nEvent: Late\r\n\r\n", b"Late"),
        (
            b"Response: Success\r\nEvent: OriginateResponse\r\n\r\n",
            b"OriginateResponse",
        ),
    ] {
        let m = one(bytes);
        assert_eq!(m.event_name_bytes(), Some(name), "{bytes:?}");
        assert_eq!(m.event_name_bytes(), m.get_bytes("Event"));
    }
    assert_eq!(one(b"Response: Success\r\n\r\n").event_name_bytes(), None);
}
