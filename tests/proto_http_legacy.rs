//! proto::http against what hostile or old servers send: Asterisk 13's legacy Command text
//! through `/manager` and `/mxml` (rendered from the recorded `/rawman` replies by the
//! byte-exact `xml_translate` port), bodies with very many keys, and Digest challenges
//! carrying control characters.

#![allow(clippy::unwrap_used)] // tests may unwrap (project rule)

mod proto_support;

use std::sync::mpsc;
use std::time::Duration;

use amiwire::proto::ProtoError;
use amiwire::proto::http::{
    DigestChallenge, DigestSession, Endpoint, Method, parse_body, parse_rawman, render_body,
};
use amiwire::proto::{Message, command_output, decode_text};
use proto_support::*;

/// The five legacy Command replies recorded over `/rawman` (Asterisk 13.38.3).
fn legacy_replies() -> Vec<Message> {
    let conns = load_jsonl(&fixture("asterisk-13/http-rawman-command.jsonl"));
    let replies: Vec<Message> = conns
        .iter()
        .flat_map(|c| rawman_bodies(&c.stream()))
        .flat_map(|body| parse_rawman(&body).unwrap())
        .filter(|m| m.has_value("Response", "Follows"))
        .collect();
    assert_eq!(replies.len(), 5);
    replies
}

/// What `xml_translate` keeps of CLI text: every line without its trailing blanks, and no
/// blank lines (`\n\n` is one line break to it).
fn without_blanks(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn headers_of(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .map(|h| (decode_text(h.name).into(), decode_text(h.value).into()))
        .collect()
}

fn through(endpoint: Endpoint, reply: &Message) -> Vec<Message> {
    let body = render_body(endpoint, std::slice::from_ref(reply));
    parse_body(endpoint, Some(endpoint.format().content_type()), &body).unwrap()
}

#[test]
fn legacy_command_text_is_recovered_from_manager_rows() {
    for reply in legacy_replies() {
        let tcp_text = command_output(&reply).unwrap();
        for endpoint in [Endpoint::Manager, Endpoint::AManager] {
            let got = through(endpoint, &reply);
            assert_eq!(got.len(), 1, "{endpoint:?}");
            let m = &got[0];
            // Laid out as the TCP decoder gives it: the headers, then the text as the body.
            assert_eq!(headers_of(m), headers_of(&reply));
            assert_eq!(m.response().unwrap(), "Follows");
            assert_eq!(command_output(m).unwrap(), without_blanks(&tcp_text));
            // raw() stays valid AMI that the decoder reads back the same way.
            let again = Message::parse_one(m.raw()).unwrap();
            assert_eq!(again.body(), m.body());
        }
    }
}

#[test]
fn a_line_split_at_its_colon_is_joined_back() {
    // `core show version`: the only line has colons (the build time) and went into a row.
    let version = legacy_replies().remove(0);
    let text = "Asterisk 13.38.3 built by root @ vm on a x86_64 running Linux on 2026-11-26 12:08:19 UTC\n";
    assert_eq!(command_output(&version).unwrap(), text);
    let got = through(Endpoint::Manager, &version);
    assert_eq!(command_output(&got[0]).unwrap(), text);

    // `Key: value` lines before the first colon-less line get their space back.
    let html = b"<tr><td>Response</td><td>Follows</td></tr>\n<tr><td>Privilege</td><td>Command</td></tr>\n\
        <tr><td>ActionID</td><td>c-1</td></tr>\n<tr><td>System uptime</td><td>1 hour, 2 minutes</td></tr>\n\
        <tr><td>Last reload</td><td>5 minutes</td></tr>\n<tr><td>Last reload-2</td><td>again</td></tr>\n\
        <tr><td>Opaque-data</td><td>Channel  State<br>\n  x: y<br>\n--END COMMAND--</td></tr>\n\
        <tr><td colspan=\"2\"><hr></td></tr>\r\n";
    let got = parse_body(Endpoint::Manager, None, html).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].action_id().unwrap(), "c-1");
    assert_eq!(
        command_output(&got[0]).unwrap(),
        "System uptime: 1 hour, 2 minutes\nLast reload: 5 minutes\nLast reload: again\n\
         Channel  State\n  x: y\n"
    );
}

#[test]
fn mxml_recovers_text_kept_whole_and_refuses_text_it_rewrote() {
    let mut recovered = 0;
    let mut refused = 0;
    for reply in legacy_replies() {
        let tcp_text = command_output(&reply).unwrap();
        for endpoint in [Endpoint::MXml, Endpoint::AMXml] {
            let got = through(endpoint, &reply);
            assert_eq!(got.len(), 1, "{endpoint:?}");
            let first_line = tcp_text.lines().next().unwrap();
            if first_line.contains(':') {
                // The line became an attribute name, lowercased and punctuation rewritten:
                // never an empty string, always a typed error that says what to use.
                let err = command_output(&got[0]).unwrap_err();
                assert!(matches!(err, ProtoError::Remote(_)), "{err:?}");
                assert!(err.to_string().contains("/rawman"), "{err}");
                assert_eq!(got[0].get("response").unwrap(), "Follows");
                refused += 1;
            } else {
                // Every line went into `opaque_data`, whose value keeps the line breaks.
                assert_eq!(command_output(&got[0]).unwrap(), without_blanks(&tcp_text));
                assert_eq!(got[0].action_id(), reply.action_id());
                recovered += 1;
            }
        }
    }
    // `core show version` is refused; channels, dialplan, help and the unknown command are not.
    assert_eq!((recovered, refused), (8, 2));
}

/// Runs `f` on another thread and waits at most `limit`: a quadratic parse of the bodies
/// below takes many minutes, a linear one well under a second, so the bound only tells the
/// two apart and is no timing measurement.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the parse did not finish: quadratic in the number of keys?")
}

const MANY: usize = 300_000;

#[test]
fn bodies_with_very_many_distinct_keys_parse_in_linear_time() {
    let mut xml = String::from("<ajax-response>\n<response type='object' id='unknown'><generic");
    let mut html = String::new();
    for i in 0..MANY {
        xml.push_str(&format!(" k{i}='v{i}'"));
        html.push_str(&format!("<tr><td>k{i}</td><td>v{i}</td></tr>\n"));
    }
    // Repeats are still folded: `output-2` counts `output`.
    xml.push_str(" output='a' output-2='b' /></response>\n</ajax-response>\n");
    html.push_str("<tr><td>output</td><td>a</td></tr>\n<tr><td>output-2</td><td>b</td></tr>\n");
    html.push_str("<tr><td colspan=\"2\"><hr></td></tr>\r\n");
    for (endpoint, body) in [(Endpoint::MXml, xml), (Endpoint::Manager, html)] {
        let got = within(Duration::from_secs(120), move || {
            parse_body(endpoint, None, body.as_bytes()).unwrap()
        });
        assert_eq!(got.len(), 1, "{endpoint:?}");
        assert_eq!(got[0].len(), MANY + 2);
        assert_eq!(got[0].get("k0").unwrap(), "v0");
        let last = format!("k{}", MANY - 1);
        assert_eq!(got[0].get(&last).unwrap(), format!("v{}", MANY - 1));
        assert_eq!(got[0].get_all("output"), ["a", "b"]);
    }
}

#[test]
fn digest_challenges_with_control_characters_are_refused() {
    let good = r#"Digest algorithm=MD5, realm="asterisk", nonce="1ed279f5", qop="auth", opaque="1ed279f5""#;
    assert!(DigestChallenge::parse(good).is_ok());
    for (name, bad) in [
        ("realm", "asterisk\r\nX-Injected: 1"),
        ("nonce", "1ed2\n79f5"),
        ("opaque", "1ed2\r79f5"),
        ("realm", "aster\0isk"),
    ] {
        let header = good.replace(
            &format!(
                "{name}=\"{}\"",
                if name == "realm" {
                    "asterisk"
                } else {
                    "1ed279f5"
                }
            ),
            &format!("{name}=\"{bad}\""),
        );
        assert_ne!(header, good);
        let err = DigestChallenge::parse(&header).unwrap_err();
        assert!(matches!(err, ProtoError::Remote(_)), "{err:?}");
        assert!(err.to_string().contains(name), "{err}");

        // The session never takes it, so no Authorization value can carry it.
        let mut session = DigestSession::new("admin", "amiwire").unwrap();
        assert!(session.on_unauthorized(&header, None).is_err());
        assert_eq!(
            session
                .authorization(Method::Get, "/amxml?action=ping")
                .unwrap(),
            None
        );
    }
}

#[test]
fn text_cut_by_two_empty_lines_is_joined_across_objects() {
    // Two empty lines in a row (`\n\n\n`) make a blank line to `xml_translate`, which closes
    // the object: the rest of the text arrives as the next one, without a Response.
    let wire = b"Response: Follows\r\nPrivilege: Command\r\nActionID: t-1\r\n\
        Peer list\n\n\nmore: after the gap\nlast line\n--END COMMAND--\r\n\r\n";
    let reply = Message::parse_one(wire).unwrap();
    assert_eq!(
        command_output(&reply).unwrap(),
        "Peer list\n\n\nmore: after the gap\nlast line\n"
    );
    for endpoint in [Endpoint::Manager, Endpoint::AManager] {
        let body = render_body(endpoint, std::slice::from_ref(&reply));
        let objects = body.windows(8).filter(|w| w == b"<hr></td").count();
        assert_eq!(objects, 2, "the encoding split the reply in two");
        let got = through(endpoint, &reply);
        assert_eq!(got.len(), 1, "{endpoint:?}: {got:?}");
        assert_eq!(got[0].action_id().unwrap(), "t-1");
        assert_eq!(
            command_output(&got[0]).unwrap(),
            "Peer list\nmore: after the gap\nlast line\n"
        );
    }
    for endpoint in [Endpoint::MXml, Endpoint::AMXml] {
        // `more: after the gap` became an attribute name here: lost, and said so.
        let got = through(endpoint, &reply);
        assert_eq!(got.len(), 1, "{endpoint:?}: {got:?}");
        assert!(matches!(
            command_output(&got[0]),
            Err(ProtoError::Remote(_))
        ));
    }
    // Without a colon after the gap, /mxml keeps it all.
    let plain = Message::parse_one(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: t-2\r\n\
          one\n\n\ntwo\n--END COMMAND--\r\n\r\n",
    )
    .unwrap();
    let got = through(Endpoint::MXml, &plain);
    assert_eq!(got.len(), 1);
    assert_eq!(command_output(&got[0]).unwrap(), "one\ntwo\n");

    // `core show settings` starts with an empty line, which right after the headers' CRLF is
    // a blank line too: the object closes before any text.
    let settings = Message::parse_one(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: t-3\r\n\
          \nPBX Core settings\n-----------------\n  Version:   13.38.3\n--END COMMAND--\r\n\r\n",
    )
    .unwrap();
    for endpoint in [Endpoint::Manager, Endpoint::MXml] {
        let got = through(endpoint, &settings);
        assert_eq!(got.len(), 1, "{endpoint:?}: {got:?}");
        assert_eq!(
            command_output(&got[0]).unwrap(),
            "PBX Core settings\n-----------------\n  Version:   13.38.3\n"
        );
    }
}
