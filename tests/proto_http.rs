//! proto::http against the recorded Asterisk 22 and 13 HTTP fixtures. Expectations are built
//! independently of the code under test (string splitting and regexes over the same bytes),
//! then compared header by header.

#![allow(clippy::unwrap_used)] // tests may unwrap (project rule)

use amiwire::proto::ProtoError;
use amiwire::proto::http::{
    DigestAuthorization, DigestChallenge, DigestSession, Endpoint, FORM_CONTENT_TYPE, Format,
    Method, Request, Retry, SessionCookie, decode_form, digest_ha1, digest_response, encode_form,
    normalize_prefix, parse_body, parse_cookie_header, parse_manager_html, parse_mxml,
    parse_rawman, parse_set_cookie, render_body, session_expired, split_wait_event,
    wait_event_action, wait_event_timeout,
};
use amiwire::proto::{Action, Message, decode_text};
use base64::Engine as _;
use regex::Regex;

// ---------------------------------------------------------------------------------------
// Fixture reading: a minimal HTTP/1.1 reader, test-only.

struct HttpMsg {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpMsg {
    /// Case-insensitive: Asterisk spells it `Content-type`.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn status(&self) -> u16 {
        self.start.split(' ').nth(1).unwrap().parse().unwrap()
    }
    fn method(&self) -> &str {
        self.start.split(' ').next().unwrap()
    }
    fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap()
    }
}

/// Splits a byte stream into HTTP messages, bodies framed by Content-Length.
fn parse_http_stream(mut buf: &[u8]) -> Vec<HttpMsg> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&buf[..head_end]).unwrap();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut msg = HttpMsg {
            start,
            headers,
            body: Vec::new(),
        };
        let len: usize = msg
            .header("Content-Length")
            .map_or(0, |v| v.parse().unwrap());
        let body_start = head_end + 4;
        msg.body = buf[body_start..body_start + len].to_vec();
        buf = &buf[body_start + len..];
        out.push(msg);
    }
    out
}

struct Exchange {
    req: HttpMsg,
    resp: HttpMsg,
}

fn fixture_path(version: &str, name: &str) -> String {
    format!(
        "{}/../shared/fixtures/asterisk-{version}/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Every request/response pair in a fixture, connections in order of first use.
fn exchanges(version: &str, name: &str) -> Vec<Exchange> {
    let text = std::fs::read_to_string(fixture_path(version, name)).unwrap();
    let mut conns: Vec<(u64, Vec<u8>, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let conn = rec["conn"].as_u64().unwrap();
        let data = match rec.get("data_b64") {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b.as_str().unwrap())
                .unwrap(),
            None => rec["data"].as_str().unwrap_or_default().as_bytes().to_vec(),
        };
        let slot = match conns.iter().position(|c| c.0 == conn) {
            Some(i) => i,
            None => {
                conns.push((conn, Vec::new(), Vec::new()));
                conns.len() - 1
            }
        };
        match rec["dir"].as_str().unwrap() {
            "send" => conns[slot].1.extend_from_slice(&data),
            _ => conns[slot].2.extend_from_slice(&data),
        }
    }
    let mut out = Vec::new();
    for (_, sent, received) in conns {
        let reqs = parse_http_stream(&sent);
        let resps = parse_http_stream(&received);
        assert_eq!(reqs.len(), resps.len(), "{name}: one response per request");
        out.extend(
            reqs.into_iter()
                .zip(resps)
                .map(|(req, resp)| Exchange { req, resp }),
        );
    }
    out
}

fn headers_of(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .map(|h| {
            (
                decode_text(h.name).into_owned(),
                decode_text(h.value).into_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Independent expectations

type Expected = Vec<Vec<(String, String)>>;

/// `/rawman`: blocks split at CRLF CRLF, lines at CRLF, headers at the first colon minus one
/// space. Legacy `Response: Follows` bodies are checked separately.
fn expect_rawman(body: &[u8]) -> Expected {
    let text = std::str::from_utf8(body).unwrap();
    text.split("\r\n\r\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            block
                .split("\r\n")
                .map(|line| {
                    let (k, v) = line.split_once(':').unwrap();
                    (k.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned())
                })
                .collect()
        })
        .collect()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `/mxml`: one regex for each `<response>`, one for the attributes.
fn expect_mxml(body: &[u8]) -> Expected {
    let text = std::str::from_utf8(body).unwrap();
    let response = Regex::new(
        r"<response type='object' id='[^']*'><generic((?: [^=' ]+='[^']*')*) /></response>",
    )
    .unwrap();
    let attr = Regex::new(r" ([^=' ]+)='([^']*)'").unwrap();
    let out: Expected = response
        .captures_iter(text)
        .map(|c| {
            attr.captures_iter(&c[1])
                .map(|a| (a[1].to_owned(), xml_unescape(&a[2])))
                .collect()
        })
        .collect();
    assert_eq!(out.len(), text.matches("<response ").count());
    out
}

/// `/manager`: data rows and separator rows by regex.
fn expect_html(body: &[u8]) -> Expected {
    let text = std::str::from_utf8(body).unwrap();
    let row = Regex::new(
        r#"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>|<tr><td colspan="2"><hr></td></tr>"#,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut current = Vec::new();
    for c in row.captures_iter(text) {
        match (c.get(1), c.get(2)) {
            (Some(k), Some(v)) => {
                current.push((xml_unescape(k.as_str()), xml_unescape(v.as_str())))
            }
            _ => out.push(std::mem::take(&mut current)),
        }
    }
    assert!(current.is_empty());
    out
}

fn assert_messages(got: &[Message], expected: &Expected, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: message count");
    for (i, (m, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(&headers_of(m), e, "{what}: message {i}");
        assert_eq!(m.unparsed_lines().count(), 0, "{what}: message {i}");
    }
}

const VERSIONS: [&str; 2] = ["22", "13"];

// ---------------------------------------------------------------------------------------
// Endpoints and requests

#[test]
fn endpoint_paths_formats_and_prefix() {
    let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["rawman", "mxml", "manager", "arawman", "amxml", "amanager"]
    );
    let digest: Vec<bool> = Endpoint::ALL.iter().map(|e| e.uses_digest()).collect();
    assert_eq!(digest, [false, false, false, true, true, true]);
    assert_eq!(Endpoint::AMXml.format(), Format::Xml);
    assert_eq!(Endpoint::ARawMan.format(), Format::Raw);
    assert_eq!(Endpoint::Manager.format(), Format::Html);

    assert_eq!(Endpoint::RawMan.path("").unwrap(), "/rawman");
    assert_eq!(Endpoint::RawMan.path("/").unwrap(), "/rawman");
    for p in ["asterisk", "/asterisk", "/asterisk/"] {
        assert_eq!(Endpoint::AMXml.path(p).unwrap(), "/asterisk/amxml");
    }
    assert_eq!(normalize_prefix("a/b").unwrap(), "/a/b");
    for bad in ["a b", "x?y", "p#", "ü"] {
        assert!(
            matches!(normalize_prefix(bad), Err(ProtoError::Usage(_))),
            "{bad}"
        );
    }
    for e in Endpoint::ALL {
        assert_eq!(
            Endpoint::from_path(&e.path("asterisk").unwrap(), "asterisk"),
            Some(e)
        );
        assert_eq!(Endpoint::from_path(&e.path("").unwrap(), ""), Some(e));
    }
    assert_eq!(
        Endpoint::from_path("/Asterisk/RAWMAN/", "asterisk"),
        Some(Endpoint::RawMan)
    );
    assert_eq!(Endpoint::from_path("/rawman", "asterisk"), None);
    assert_eq!(Endpoint::from_path("/asteriskx/rawman", "asterisk"), None);
    assert_eq!(Endpoint::from_path("/asterisk/rawmanx", "asterisk"), None);
    assert_eq!(Endpoint::from_path("/nonexistent", ""), None);

    assert_eq!(Format::from_content_type("text/plain"), Some(Format::Raw));
    assert_eq!(
        Format::from_content_type("Text/XML; charset=utf-8"),
        Some(Format::Xml)
    );
    assert_eq!(Format::from_content_type("text/html"), Some(Format::Html));
    assert_eq!(Format::from_content_type("application/json"), None);
}

#[test]
fn get_and_post_requests_carry_what_the_fixture_sent() {
    // The keepalive fixture's POST, rebuilt from an Action.
    let setvar = Action::new("Setvar")
        .header("Variable", "LABHTTP")
        .header("Value", "posted value");
    let post = Request::new(Endpoint::RawMan, "", Method::Post, &setvar, Some("post-1")).unwrap();
    assert_eq!(post.target, "/rawman");
    assert_eq!(post.content_type(), Some(FORM_CONTENT_TYPE));
    assert_eq!(
        std::str::from_utf8(&post.body).unwrap(),
        "Action=Setvar&ActionID=post-1&Variable=LABHTTP&Value=posted%20value"
    );
    for version in VERSIONS {
        let ex = exchanges(version, "http-rawman-keepalive.jsonl");
        let recorded = ex.iter().find(|e| e.req.method() == "POST").unwrap();
        assert_eq!(recorded.req.header("Content-Type"), Some(FORM_CONTENT_TYPE));
        // Same parameters, parameter names compared case-insensitively (Asterisk does).
        let norm = |v: Vec<(String, String)>| {
            let mut v: Vec<_> = v.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
            v.sort();
            v
        };
        assert_eq!(
            norm(decode_form(&recorded.req.body)),
            norm(decode_form(&post.body))
        );
        // ... and Asterisk stored the decoded value: the next getvar returns it.
        assert!(
            ex.iter()
                .any(|e| e.resp.body.ends_with(b"Value: posted value\r\n\r\n"))
        );
    }

    let getvar = Action::new("Getvar").header("Variable", "LABGLOBAL");
    let get = Request::new(Endpoint::RawMan, "asterisk", Method::Get, &getvar, None).unwrap();
    assert_eq!(
        get.target,
        "/asterisk/rawman?Action=Getvar&Variable=LABGLOBAL"
    );
    assert_eq!(get.path(), "/asterisk/rawman");
    assert!(get.body.is_empty());
    assert_eq!(get.content_type(), None);

    // The action's own ActionID wins over the supplied one.
    let own = Action::new("Ping").with_action_id("mine");
    assert_eq!(
        encode_form(&own, Some("other")).unwrap(),
        "Action=Ping&ActionID=mine"
    );
}

#[test]
fn percent_encoding_round_trips_exactly() {
    let secrets = [
        "pass word",
        "a&b=c+d%e",
        "%41%2",
        "MiXeD CaSe SeCrEt",
        "Zoë Ñandú – 東京 ✓",
        "+++",
        "=&=&",
        "tab\there",
        "~-._*'()!$,;:@/?#[]",
    ];
    for secret in secrets {
        let login = Action::new("Login")
            .header("Username", "Admin User")
            .header("Secret", secret);
        let form = encode_form(&login, Some("id 1&2")).unwrap();
        // Only unreserved characters and escapes go out.
        assert!(
            form.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%&=".contains(&b)),
            "{form}"
        );
        let expected = pairs(&[
            ("Action", "Login"),
            ("ActionID", "id 1&2"),
            ("Username", "Admin User"),
            ("Secret", secret),
        ]);
        assert_eq!(
            decode_form(form.as_bytes()),
            expected,
            "own decoder, {secret:?}"
        );
        let independent: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(independent, expected, "form_urlencoded, {secret:?}");
    }
    // Asterisk's own decoding: `+` is a space, a broken escape stays literal.
    assert_eq!(
        decode_form(b"a=posted+value&b=%zz%4&c&=v&d=x=y"),
        pairs(&[
            ("a", "posted value"),
            ("b", "%zz%4"),
            ("c", ""),
            ("", "v"),
            ("d", "x=y")
        ])
    );
}

proptest::proptest! {
    #[test]
    fn any_value_round_trips(key in "[A-Za-z][A-Za-z0-9-]{0,20}", value in "[^\r\n\u{0}]{0,200}") {
        let action = Action::new("UserEvent").header(key.clone(), value.clone());
        let form = encode_form(&action, None).unwrap();
        let decoded = decode_form(form.as_bytes());
        proptest::prop_assert_eq!(decoded, pairs(&[("Action", "UserEvent"), (&key, &value)]));
    }
}

#[test]
fn requests_are_validated_like_tcp_actions_and_hide_secrets() {
    let bad = Action::new("Login").header("Secret", "s3cr3t\r\nAction: Originate");
    let err = Request::new(Endpoint::RawMan, "", Method::Get, &bad, None).unwrap_err();
    assert!(matches!(err, ProtoError::Usage(_)));
    assert!(!err.to_string().contains("s3cr3t"));
    let long_id = "x".repeat(65);
    assert!(matches!(
        encode_form(&Action::new("Ping"), Some(&long_id)),
        Err(ProtoError::Usage(_))
    ));
    assert!(matches!(
        encode_form(&Action::new("Ping"), Some("a\nb")),
        Err(ProtoError::Usage(_))
    ));
    let mut many = Action::new("UserEvent");
    for i in 0..128 {
        many.push(format!("H{i}"), "v");
    }
    assert!(matches!(
        encode_form(&many, None),
        Err(ProtoError::Usage(_))
    ));
    assert!(matches!(
        Request::new(
            Endpoint::RawMan,
            "bad prefix",
            Method::Get,
            &Action::new("Ping"),
            None
        ),
        Err(ProtoError::Usage(_))
    ));

    // Asterisk's HTTP sizes: a 4095-byte request line, a 4096-byte form body. Four 1000-byte
    // headers make "/rawman?Action=UserEvent" (24) + 4 * "&Dn=..." (1004) = 4040 bytes of
    // target; "&E=" and `last` bytes follow.
    let sized = |last: usize, method: Method| {
        let mut a = Action::new("UserEvent");
        for i in 0..4 {
            a.push(format!("D{i}"), "d".repeat(1000));
        }
        a.push("E", "e".repeat(last));
        Request::new(Endpoint::RawMan, "", method, &a, None)
    };
    let longest = sized(37, Method::Get).unwrap();
    assert_eq!(
        "GET ".len() + longest.target.len() + " HTTP/1.1\r\n".len(),
        4095
    );
    let err = sized(38, Method::Get).unwrap_err();
    assert!(
        matches!(err, ProtoError::Usage(_)) && err.to_string().contains("POST"),
        "{err}"
    );
    assert_eq!(sized(61, Method::Post).unwrap().body.len(), 4096);
    assert!(matches!(sized(62, Method::Post), Err(ProtoError::Usage(_))));

    let login = Action::new("Login")
        .header("Username", "admin")
        .header("Secret", "Top Secret&=+%")
        .header("Key", "deadbeefkey");
    for method in [Method::Get, Method::Post] {
        let req = Request::new(Endpoint::RawMan, "", method, &login, None).unwrap();
        let debug = format!("{req:?}");
        assert!(!debug.contains("Top"), "{debug}");
        assert!(!debug.contains("deadbeefkey"), "{debug}");
        assert!(
            debug.contains("admin") && debug.contains("********"),
            "{debug}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Response bodies

#[test]
fn rawman_bodies_match_the_wire_format() {
    let mut checked = 0;
    for version in VERSIONS {
        for name in [
            "http-rawman-session.jsonl",
            "http-rawman-keepalive.jsonl",
            "http-errors.jsonl",
            "http-rawman-command.jsonl",
        ] {
            let Ok(_) = std::fs::metadata(fixture_path(version, name)) else {
                continue;
            };
            for ex in exchanges(version, name) {
                if ex.resp.header("Content-type") != Some("text/plain") {
                    continue;
                }
                assert_eq!(ex.resp.status(), 200);
                let got = parse_body(
                    Endpoint::RawMan,
                    ex.resp.header("Content-type"),
                    &ex.resp.body,
                )
                .unwrap();
                let mut raw: Vec<u8> = got.iter().flat_map(|m| m.raw().to_vec()).collect();
                if ex.resp.body.starts_with(b"Response: Follows") {
                    // The legacy message ends at its marker line; the CRLF after it is a
                    // stray empty line to the decoder. See legacy_command_text_over_rawman.
                    assert_eq!(got.len(), 1);
                    assert!(raw.ends_with(b"--END COMMAND--\r\n"));
                    raw.extend_from_slice(b"\r\n");
                    assert_eq!(raw, ex.resp.body, "{version} {name}: bytes preserved");
                    continue;
                }
                assert_eq!(raw, ex.resp.body, "{version} {name}: bytes preserved");
                let what = format!("{version} {name} {}", ex.req.target());
                assert_messages(&got, &expect_rawman(&ex.resp.body), &what);
                checked += got.len();
            }
        }
    }
    eprintln!("rawman: {checked} messages compared");
    assert!(checked > 500, "{checked}");
}

#[test]
fn legacy_command_text_over_rawman() {
    let ex = exchanges("13", "http-rawman-command.jsonl");
    let commands: Vec<&Exchange> = ex
        .iter()
        .filter(|e| e.resp.body.starts_with(b"Response: Follows"))
        .collect();
    assert_eq!(commands.len(), 5);
    for (i, e) in commands.iter().enumerate() {
        let got = parse_rawman(&e.resp.body).unwrap();
        assert_eq!(got.len(), 1);
        let m = &got[0];
        let id = format!("h-cmd-{}", i + 1);
        assert_eq!(
            headers_of(m),
            pairs(&[
                ("Response", "Follows"),
                ("Privilege", "Command"),
                ("ActionID", &id)
            ])
        );
        let body = &e.resp.body;
        let header_end = body
            .windows(id.len() + 2)
            .position(|w| w == format!("{id}\r\n").as_bytes())
            .unwrap()
            + id.len()
            + 2;
        let marker = body
            .windows(15)
            .rposition(|w| w == b"--END COMMAND--")
            .unwrap();
        assert_eq!(m.body().unwrap(), &body[header_end..marker]);
    }
    let version = parse_rawman(&commands[0].resp.body).unwrap();
    assert_eq!(
        version[0].body().unwrap(),
        b"Asterisk 13.38.3 built by root @ vm on a x86_64 running Linux on 2026-11-26 12:08:19 UTC\n"
    );
}

#[test]
fn rawman_rejects_an_unterminated_body() {
    let err = parse_rawman(b"Response: Success\r\nPing: Pong\r\n").unwrap_err();
    assert!(matches!(err, ProtoError::Remote(_)), "{err}");
    assert!(parse_rawman(b"").unwrap().is_empty());
}

#[test]
fn mxml_bodies_match_the_xml() {
    let mut checked = 0;
    for version in VERSIONS {
        for name in ["http-digest-amxml.jsonl", "http-errors.jsonl"] {
            for ex in exchanges(version, name) {
                if ex.resp.header("Content-type") != Some("text/xml") {
                    continue;
                }
                let endpoint = if ex.req.target().starts_with("/amxml") {
                    Endpoint::AMXml
                } else {
                    Endpoint::MXml
                };
                let got =
                    parse_body(endpoint, ex.resp.header("Content-type"), &ex.resp.body).unwrap();
                let what = format!("{version} {name} {}", ex.req.target());
                assert_messages(&got, &expect_mxml(&ex.resp.body), &what);
                checked += got.len();
            }
        }
    }
    eprintln!("mxml: {checked} messages compared");
    assert!(checked > 100, "{checked}");

    // Spot checks against literal values.
    let ex = exchanges("22", "http-digest-amxml.jsonl");
    let ping = parse_mxml(&ex[1].resp.body).unwrap();
    assert_eq!(
        headers_of(&ping[0]),
        pairs(&[
            ("response", "Success"),
            ("ping", "Pong"),
            ("timestamp", "1795691065.036035")
        ])
    );
    assert!(ping[0].is_response());
    let channels = parse_mxml(&ex[2].resp.body).unwrap();
    assert_eq!(channels.len(), 6);
    let first = &channels[1];
    assert!(first.is_event());
    assert_eq!(first.event_name().unwrap(), "CoreShowChannel");
    assert_eq!(first.get("Channel").unwrap(), "Local/600@test-0000001b;2");
    assert_eq!(first.get("CallerIDNum").unwrap(), "<unknown>");
    assert_eq!(first.get("accountcode").unwrap(), "");
    assert_eq!(channels[5].get("ListItems").unwrap(), "4");
    assert_eq!(channels[5].get("eventlist").unwrap(), "Complete");
}

#[test]
fn manager_html_bodies_match_the_table_rows() {
    let mut checked = 0;
    for version in VERSIONS {
        for name in ["http-digest-amanager.jsonl", "http-errors.jsonl"] {
            for ex in exchanges(version, name) {
                if ex.resp.status() != 200 || ex.resp.header("Content-type") != Some("text/html") {
                    continue;
                }
                let endpoint = if ex.req.target().starts_with("/amanager") {
                    Endpoint::AManager
                } else {
                    Endpoint::Manager
                };
                let got = parse_body(endpoint, Some("text/html"), &ex.resp.body).unwrap();
                let what = format!("{version} {name} {}", ex.req.target());
                assert_messages(&got, &expect_html(&ex.resp.body), &what);
                checked += got.len();
            }
        }
    }
    eprintln!("html: {checked} messages compared");
    assert!(checked > 100, "{checked}");

    // Both page layouts, literal values.
    let errors = exchanges("22", "http-errors.jsonl");
    let old_layout = errors
        .iter()
        .find(|e| e.req.target().starts_with("/manager"))
        .unwrap();
    let denied = parse_manager_html(&old_layout.resp.body).unwrap();
    assert_eq!(
        headers_of(&denied[0]),
        pairs(&[("Response", "Error"), ("Message", "Permission denied")])
    );
    let ex = exchanges("22", "http-digest-amanager.jsonl");
    let ping = parse_manager_html(&ex[1].resp.body).unwrap();
    assert_eq!(
        headers_of(&ping[0]),
        pairs(&[
            ("Response", "Success"),
            ("Ping", "Pong"),
            ("Timestamp", "1795691066.044259")
        ])
    );

    // /amanager keeps Asterisk's key spelling and order: the same as /rawman's.
    let html = parse_manager_html(&ex[2].resp.body).unwrap();
    let rawman = exchanges("22", "http-rawman-session.jsonl");
    let csc = rawman
        .iter()
        .find(|e| e.req.target().contains("coreshowchannels"))
        .unwrap();
    let raw = parse_rawman(&csc.resp.body).unwrap();
    let keys = |m: &Message| -> Vec<String> {
        headers_of(m)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "ActionID")
            .collect()
    };
    assert_eq!(html.len(), raw.len());
    for (h, r) in html.iter().zip(&raw) {
        assert_eq!(keys(h), keys(r));
    }
    assert_eq!(html[1].get("CallerIDNum").unwrap(), "<unknown>");
}

#[test]
fn mxml_and_html_translation_losses_are_handled() {
    // Repeated keys come back as repeats; a `-N` that counts nothing stays a key.
    let xml = b"<ajax-response>\n<response type='object' id='unknown'><generic response='Success' \
        message='Command output follows' output='line 1' output-2='  &apos;100&apos; =&gt;' \
        output-3='x &amp;&#65;&#x42; y' drv-1='a' drv-3='b' opaque_data='one\ntwo\r\nthree' /></response>\n\
        <response type='object' id='unknown'><generic event='WaitEventComplete' /></response>\n</ajax-response>\n";
    let got = parse_mxml(xml).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        headers_of(&got[0]),
        pairs(&[
            ("response", "Success"),
            ("message", "Command output follows"),
            ("output", "line 1"),
            ("output", "  '100' =>"),
            ("output", "x &AB y"),
            ("drv-1", "a"),
            ("drv-3", "b"),
            ("opaque_data", "one two  three"),
        ])
    );
    assert_eq!(got[0].get_all("Output").len(), 3);
    // The synthesized raw text is valid AMI that decodes to the same headers.
    let again = Message::parse_one(got[0].raw()).unwrap();
    assert_eq!(headers_of(&again), headers_of(&got[0]));
    assert_eq!(got[1].event_name().unwrap(), "WaitEventComplete");

    let html = b"<table><tr><th colspan=\"2\">Manager Tester</th></tr>\r\n\
        <tr><td>Response</td><td>Follows</td></tr>\n<tr><td>Privilege</td><td>Command</td></tr>\n\
        <tr><td>Opaque-data</td><td>Channel   Location<br>\n4 active: yes<br>\n--END COMMAND--</td></tr>\n\
        <tr><td colspan=\"2\"><hr></td></tr>\r\n\
        <tr><td>Output</td><td>a</td></tr>\n<tr><td>Output-2</td><td>b &lt;c&gt;</td></tr>\n\
        <tr><td>Output-2</td><td>c</td></tr>\n<tr><td colspan=\"2\"><hr></td></tr>\r\n</table>";
    let got = parse_manager_html(html).unwrap();
    assert_eq!(got.len(), 2);
    // A legacy Command reply: its opaque text comes back as the body, one line per `<br>`.
    assert_eq!(
        headers_of(&got[0]),
        pairs(&[("Response", "Follows"), ("Privilege", "Command")])
    );
    assert_eq!(
        got[0].body().unwrap(),
        b"Channel   Location\n4 active: yes\n"
    );
    assert_eq!(got[0].response().unwrap(), "Follows");
    // Any other multi-line value is one header, each line break a space.
    let other = parse_manager_html(
        b"<tr><td>Response</td><td>Success</td></tr>\n\
          <tr><td>Opaque-data</td><td>one<br>\ntwo</td></tr>\n",
    )
    .unwrap();
    assert_eq!(
        headers_of(&other[0]),
        pairs(&[("Response", "Success"), ("Opaque-data", "one two")])
    );
    assert_eq!(
        headers_of(&got[1]),
        pairs(&[("Output", "a"), ("Output", "b <c>"), ("Output-2", "c")])
    );

    // Bytes that are not UTF-8 (Latin-1 names) pass through; decoding falls back per field.
    let latin1 =
        parse_mxml(b"<ajax-response><response><generic name='Jos\xe9' /></response>").unwrap();
    assert_eq!(latin1[0].get_bytes("name").unwrap(), b"Jos\xe9");
    assert_eq!(latin1[0].get("name").unwrap(), "Jos\u{e9}");
    let latin1 = parse_manager_html(b"<tr><td>Name</td><td>Jos\xe9</td></tr>").unwrap();
    assert_eq!(latin1[0].get_bytes("Name").unwrap(), b"Jos\xe9");
    // A message over 64 KiB (the wide line index) keeps every header.
    let big = "v".repeat(70_000);
    let xml = format!(
        "<ajax-response><response><generic a='1' big='{big}' z='&amp;' /></response></ajax-response>"
    );
    let got = parse_mxml(xml.as_bytes()).unwrap();
    assert_eq!(
        headers_of(&got[0]),
        pairs(&[("a", "1"), ("big", &big), ("z", "&")])
    );

    assert!(matches!(
        parse_manager_html(b"<tr><td>Key</td>unterminated"),
        Err(ProtoError::Remote(_))
    ));
    assert!(matches!(
        parse_mxml(b"<ajax-response><response><generic a='1' b=2 /></response>"),
        Err(ProtoError::Remote(_))
    ));
}

#[test]
fn content_type_must_fit_the_endpoint() {
    let errors = exchanges("22", "http-errors.jsonl");
    let not_found = errors.iter().find(|e| e.resp.status() == 404).unwrap();
    assert_eq!(not_found.resp.header("content-TYPE"), Some("text/html"));
    let err = parse_body(
        Endpoint::RawMan,
        not_found.resp.header("Content-type"),
        &not_found.resp.body,
    )
    .unwrap_err();
    assert!(matches!(err, ProtoError::Remote(_)), "{err}");
    let not_impl = errors.iter().find(|e| e.resp.status() == 501).unwrap();
    assert_eq!(not_impl.req.method(), "DELETE");
    // Without a content type the endpoint decides.
    let got = parse_body(Endpoint::ARawMan, None, b"Response: Success\r\n\r\n").unwrap();
    assert_eq!(got.len(), 1);
    assert!(parse_body(Endpoint::MXml, Some("text/plain"), b"").is_err());
}

// ---------------------------------------------------------------------------------------
// The cookie and session expiry

#[test]
fn cookies_parse_and_are_sent_back_as_recorded() {
    let mut seen = 0;
    for version in VERSIONS {
        for name in [
            "http-rawman-session.jsonl",
            "http-rawman-keepalive.jsonl",
            "http-errors.jsonl",
        ] {
            let ex = exchanges(version, name);
            let mut last: Option<SessionCookie> = None;
            for e in &ex {
                // A request's Cookie header is what the session's last response set; the
                // errors fixture mixes sessions (and a bogus cookie) on purpose, so there only
                // the header syntax is checked.
                if let Some(sent) = e.req.header("Cookie") {
                    let cookie = parse_cookie_header(sent).unwrap();
                    assert_eq!(cookie.header_value(), sent);
                    if name != "http-errors.jsonl" {
                        assert_eq!(Some(&cookie), last.as_ref());
                    }
                }
                let Some(set) = e.resp.header("Set-Cookie") else {
                    // Only the 404 and 501 pages come without one.
                    assert_ne!(e.resp.status(), 200);
                    continue;
                };
                let parsed = parse_set_cookie(set).unwrap();
                assert_eq!(parsed.max_age, Some(60));
                assert_eq!(parsed.cookie.id().len(), 8);
                assert!(parsed.cookie.id().bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(parsed.cookie.set_cookie_value(60), set);
                assert!(!format!("{:?}", parsed.cookie).contains(parsed.cookie.id()));
                last = Some(parsed.cookie);
                seen += 1;
            }
        }
    }
    assert!(seen > 40, "{seen}");
    // The digest endpoints never set one.
    for version in VERSIONS {
        for e in exchanges(version, "http-digest-amxml.jsonl") {
            assert_eq!(e.resp.header("Set-Cookie"), None);
        }
    }
    assert_eq!(parse_set_cookie("other=1; Max-Age=5"), None);
    assert_eq!(
        parse_cookie_header("a=b; mansession_id=\"1234abcd\"; c=d")
            .unwrap()
            .id(),
        "1234abcd"
    );
    assert_eq!(
        parse_cookie_header("mansession_id=12ab").unwrap().id(),
        "12ab"
    );
    assert_eq!(parse_cookie_header("mansession_id=\"a;b\""), None);
}

#[test]
fn session_expiry_is_a_denial_with_a_new_cookie() {
    let reply = |e: &Exchange| {
        (
            parse_set_cookie(e.resp.header("Set-Cookie").unwrap()).map(|s| s.cookie),
            parse_rawman(&e.resp.body).unwrap(),
        )
    };
    let sent = |e: &Exchange| parse_cookie_header(e.req.header("Cookie").unwrap()).unwrap();

    let ex = exchanges("22", "http-errors.jsonl");
    let pings: Vec<&Exchange> = ex
        .iter()
        .filter(|e| e.req.target() == "/rawman?action=ping" && e.req.header("Cookie").is_some())
        .collect();
    // bogus cookie, after logoff, working, after 65 s idle
    assert_eq!(pings.len(), 4);
    let (working, after_idle) = (pings[2], pings[3]);
    assert_eq!(sent(working), sent(after_idle));
    let (set, msgs) = reply(working);
    assert!(!session_expired(Some(&sent(working)), set.as_ref(), &msgs));
    let (set, msgs) = reply(after_idle);
    assert_ne!(set.as_ref(), Some(&sent(after_idle)));
    assert!(session_expired(
        Some(&sent(after_idle)),
        set.as_ref(),
        &msgs
    ));
    let (set, msgs) = reply(pings[1]);
    assert!(session_expired(Some(&sent(pings[1])), set.as_ref(), &msgs));
    // Without the Set-Cookie (a proxy dropped it) the denial alone decides.
    assert!(session_expired(Some(&sent(after_idle)), None, &msgs));
    // No cookie sent: a denial means "log in first", not expiry.
    let no_cookie = &ex[0];
    let (set, msgs) = reply(no_cookie);
    assert!(msgs[0].has_value("Message", "Permission denied"));
    assert!(!session_expired(None, set.as_ref(), &msgs));
    // A denial that keeps the cookie is a real permission error.
    let cookie = sent(working);
    assert!(!session_expired(Some(&cookie), Some(&cookie), &msgs));
    // Over /mxml the keys are lowercase; the check still holds.
    let xml = parse_mxml(&ex[1].resp.body).unwrap();
    assert!(session_expired(Some(&cookie), None, &xml));

    // Asterisk 13 reaps late: the same cookie still worked after 65 s.
    let ex13 = exchanges("13", "http-errors.jsonl");
    let last = ex13.last().unwrap();
    let (set, msgs) = reply(last);
    assert_eq!(set.as_ref(), Some(&sent(last)));
    assert!(msgs[0].has_value("Ping", "Pong"));
    assert!(!session_expired(Some(&sent(last)), set.as_ref(), &msgs));
}

// ---------------------------------------------------------------------------------------
// HTTP Digest

/// The Authorization parameters, read independently of the code under test.
fn auth_params(header: &str) -> Vec<(String, String)> {
    let re = Regex::new(r#"(\w+)=(?:"([^"]*)"|([^, ]+))"#).unwrap();
    re.captures_iter(header.strip_prefix("Digest ").unwrap())
        .map(|c| {
            let v = c.get(2).or(c.get(3)).unwrap().as_str();
            (c[1].to_owned(), v.to_owned())
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    &params.iter().find(|(k, _)| k == name).unwrap().1
}

#[test]
fn digest_math_reproduces_every_recorded_response() {
    let mut matched = 0;
    for version in VERSIONS {
        for name in ["http-digest-amxml.jsonl", "http-digest-amanager.jsonl"] {
            let ex = exchanges(version, name);
            let authorized: Vec<&Exchange> = ex
                .iter()
                .filter(|e| e.req.header("Authorization").is_some())
                .collect();
            assert_eq!(authorized.len(), 4);
            for (i, e) in authorized.iter().enumerate() {
                let p = auth_params(e.req.header("Authorization").unwrap());
                assert_eq!(param(&p, "uri"), e.req.target());
                let ha1 = digest_ha1(param(&p, "username"), param(&p, "realm"), "amiwire");
                let nc = u32::from_str_radix(param(&p, "nc"), 16).unwrap();
                let ours = digest_response(
                    &ha1,
                    param(&p, "nonce"),
                    nc,
                    param(&p, "cnonce"),
                    Method::Get,
                    param(&p, "uri"),
                );
                let wrong_password = i == 3;
                assert_eq!(e.resp.status(), if wrong_password { 401 } else { 200 });
                if wrong_password {
                    assert_ne!(ours, param(&p, "response"), "{version} {name}");
                } else {
                    assert_eq!(ours, param(&p, "response"), "{version} {name} #{i}");
                    matched += 1;
                }
            }
        }
    }
    assert_eq!(matched, 12);
    // RFC 2617 §3.5.
    let ha1 = digest_ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    assert_eq!(
        digest_response(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            1,
            "0a4f113b",
            Method::Get,
            "/dir/index.html"
        ),
        "6629fae49393a05397450978507c4ef1"
    );
}

#[test]
fn digest_session_rebuilds_the_recorded_headers_byte_for_byte() {
    for version in VERSIONS {
        for name in ["http-digest-amxml.jsonl", "http-digest-amanager.jsonl"] {
            let ex = exchanges(version, name);
            let mut session = DigestSession::new("admin", "amiwire")
                .unwrap()
                .with_cnonce_prefix("0a4f113b")
                .unwrap();
            assert_eq!(session.authorization(Method::Get, "/amxml").unwrap(), None);

            let first = &ex[0];
            assert_eq!(first.resp.status(), 401);
            let www = first.resp.header("WWW-Authenticate").unwrap();
            session.on_unauthorized(www, None).unwrap();
            let ch = session.challenge().unwrap();
            let p = auth_params(www);
            assert_eq!(ch.realm, "asterisk");
            assert_eq!(ch.nonce, param(&p, "nonce"));
            assert_eq!(ch.opaque.as_deref(), Some(param(&p, "opaque")));
            assert_eq!(ch.qop.as_deref(), Some("auth"));
            assert_eq!(ch.algorithm.as_deref(), Some("MD5"));
            assert!(!ch.stale);

            for e in &ex[1..4] {
                assert_eq!(e.resp.status(), 200);
                let ours = session.authorization(Method::Get, e.req.target()).unwrap();
                assert_eq!(
                    ours.as_deref(),
                    e.req.header("Authorization"),
                    "{version} {name}"
                );
            }
            assert_eq!(session.nc(), 3);

            // The wrong-password request, then its 401 with a fresh nonce: refused.
            let wrong = &ex[4];
            let mut bad = DigestSession::new("admin", "not-the-password")
                .unwrap()
                .with_cnonce_prefix("0a4f113b")
                .unwrap();
            bad.on_unauthorized(www, None).unwrap();
            let header = bad
                .authorization(Method::Get, wrong.req.target())
                .unwrap()
                .unwrap();
            assert_ne!(Some(header.as_str()), wrong.req.header("Authorization"));
            let refusal = wrong.resp.header("WWW-Authenticate").unwrap();
            assert_ne!(auth_params(refusal), auth_params(www));
            let err = bad
                .on_unauthorized(refusal, Some(bad.generation()))
                .unwrap_err();
            assert!(matches!(err, ProtoError::Auth(_)), "{err}");
            assert!(!err.to_string().contains("not-the-password"));
            assert!(!format!("{bad:?}").contains("not-the-password"));
            assert!(!format!("{session:?}").contains("amiwire"));
        }
    }
}

#[test]
fn digest_stale_nonce_restarts_the_count() {
    let mut session = DigestSession::new("admin", "amiwire")
        .unwrap()
        .with_cnonce_prefix("c")
        .unwrap();
    session
        .on_unauthorized(r#"Digest algorithm=MD5, realm="asterisk", nonce="0000000a", qop="auth", opaque="0000000a""#, None)
        .unwrap();
    session
        .authorization(Method::Get, "/arawman?Action=Ping")
        .unwrap();
    session
        .authorization(Method::Get, "/arawman?Action=Ping")
        .unwrap();
    assert_eq!(session.nc(), 2);
    session
        .on_unauthorized(r#"Digest algorithm=MD5, realm="asterisk", nonce="0000000b", qop="auth", opaque="0000000b", stale=true"#, Some(1))
        .unwrap();
    assert_eq!(session.nc(), 0);
    let header = session
        .authorization(Method::Post, "/arawman")
        .unwrap()
        .unwrap();
    let p = auth_params(&header);
    assert_eq!(param(&p, "nonce"), "0000000b");
    assert_eq!(param(&p, "nc"), "00000001");
    assert_eq!(param(&p, "cnonce"), "c00000001");
    let ha1 = digest_ha1("admin", "asterisk", "amiwire");
    assert_eq!(
        param(&p, "response"),
        digest_response(&ha1, "0000000b", 1, "c00000001", Method::Post, "/arawman")
    );

    // What the parser refuses.
    for bad in [
        r#"Basic realm="asterisk""#,
        r#"Digest realm="asterisk", nonce="1", qop="auth", algorithm=SHA-256"#,
        r#"Digest realm="asterisk", nonce="1""#,
        r#"Digest realm="asterisk", qop="auth""#,
        r#"Digest realm="asterisk, nonce="1", qop="auth""#,
    ] {
        assert!(DigestChallenge::parse(bad).is_err(), "{bad}");
    }
    let ch = DigestChallenge::parse(
        r#"digest realm="a \"q\" b", nonce=xyz, qop="auth-int,auth", stale=TRUE"#,
    )
    .unwrap();
    assert_eq!(ch.realm, r#"a "q" b"#);
    assert_eq!(ch.nonce, "xyz");
    assert!(ch.stale);
    assert!(DigestSession::new("ad\"min", "x").is_err());
    assert!(session.authorization(Method::Get, "/a\"b").is_err());
}

// ---------------------------------------------------------------------------------------
// WaitEvent

#[test]
fn wait_event_timeout_is_clamped_under_httptimeout() {
    assert_eq!(wait_event_timeout(5, 60), 5);
    assert_eq!(wait_event_timeout(50, 60), 50);
    assert_eq!(wait_event_timeout(55, 60), 50);
    assert_eq!(wait_event_timeout(100, 30), 20);
    assert_eq!(wait_event_timeout(5, 8), 0);
    let action = wait_event_action(120, 60);
    assert_eq!(
        action.to_bytes(Some("we-1")).unwrap(),
        b"Action: WaitEvent\r\nActionID: we-1\r\nTimeout: 50\r\n\r\n"
    );
    assert_eq!(
        encode_form(&wait_event_action(3, 60), None).unwrap(),
        "Action=WaitEvent&Timeout=3"
    );
}

#[test]
fn wait_event_replies_split_into_response_events_and_terminator() {
    for version in VERSIONS {
        let ex = exchanges(version, "http-rawman-session.jsonl");
        let polls: Vec<&Exchange> = ex
            .iter()
            .filter(|e| e.req.target().contains("action=waitevent"))
            .collect();
        assert_eq!(polls.len(), 6);
        for e in &polls {
            let blocks = expect_rawman(&e.resp.body);
            let reply = split_wait_event(parse_rawman(&e.resp.body).unwrap()).unwrap();
            assert_eq!(headers_of(&reply.response), blocks[0]);
            assert_eq!(
                reply.response.get("Message").unwrap(),
                "Waiting for Event completed."
            );
            let complete = reply
                .complete
                .as_ref()
                .expect("ends with WaitEventComplete");
            assert_eq!(&headers_of(complete), blocks.last().unwrap());
            assert_eq!(reply.events.len(), blocks.len() - 2);
            for (m, b) in reply.events.iter().zip(&blocks[1..]) {
                assert!(m.is_event());
                assert_eq!(&headers_of(m), b);
            }
            // The terminator echoes the poll's ActionID when one was sent.
            let sent_id = e.req.target().split("actionid=").nth(1);
            assert_eq!(complete.action_id().as_deref(), sent_id);
            assert_eq!(reply.response.action_id().as_deref(), sent_id);
        }
        // The first poll returns everything queued since login, SuccessfulAuth first.
        let first = split_wait_event(parse_rawman(&polls[0].resp.body).unwrap()).unwrap();
        assert!(polls[0].resp.body.len() > 20_000);
        assert_eq!(first.events[0].event_name().unwrap(), "SuccessfulAuth");
        // The idle poll holds nothing.
        let idle = polls
            .iter()
            .find(|e| e.req.target().contains("h-we-idle"))
            .unwrap();
        let idle = split_wait_event(parse_rawman(&idle.resp.body).unwrap()).unwrap();
        assert!(idle.events.is_empty());
    }
    // A foreign OriginateResponse (drv-7) arrives in a poll.
    let ex = exchanges("22", "http-rawman-session.jsonl");
    let wake = ex
        .iter()
        .find(|e| e.req.target().contains("h-we-wake"))
        .unwrap();
    let wake = split_wait_event(parse_rawman(&wake.resp.body).unwrap()).unwrap();
    assert!(wake.events.iter().any(|m| {
        m.event_name().as_deref() == Some("OriginateResponse")
            && m.action_id().as_deref() == Some("drv-7")
    }));

    // Over /mxml: same shape, and the terminator has no ActionID.
    let ex = exchanges("22", "http-digest-amxml.jsonl");
    let reply = split_wait_event(parse_mxml(&ex[3].resp.body).unwrap()).unwrap();
    assert!(reply.complete.unwrap().action_id().is_none());
    assert!(reply.events.len() > 20);

    // A denied poll is refused with Asterisk's message.
    let denied = parse_rawman(b"Response: Error\r\nMessage: Permission denied\r\n\r\n").unwrap();
    match split_wait_event(denied) {
        Err(ProtoError::Remote(text)) => assert_eq!(text, "WaitEvent refused: Permission denied"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        split_wait_event(Vec::new()),
        Err(ProtoError::Remote(_))
    ));
    let event_first = parse_rawman(b"Event: Hangup\r\n\r\n").unwrap();
    assert!(matches!(
        split_wait_event(event_first),
        Err(ProtoError::Remote(_))
    ));
    // Kicked out by a second poll: a response and nothing else.
    let bare = parse_rawman(b"Response: Success\r\nMessage: Waiting for Event completed.\r\n\r\n")
        .unwrap();
    let bare = split_wait_event(bare).unwrap();
    assert!(bare.events.is_empty() && bare.complete.is_none());
}

// ---------------------------------------------------------------------------------------
// Rendering (the simulator's side): byte-exact against the recorded bodies

#[test]
fn render_reproduces_every_recorded_body() {
    let mut bodies = 0;
    for version in VERSIONS {
        for name in [
            "http-rawman-session.jsonl",
            "http-rawman-keepalive.jsonl",
            "http-rawman-command.jsonl",
            "http-errors.jsonl",
            "http-digest-amxml.jsonl",
            "http-digest-amanager.jsonl",
        ] {
            let Ok(_) = std::fs::metadata(fixture_path(version, name)) else {
                continue;
            };
            for ex in exchanges(version, name) {
                let path = ex.req.target().split('?').next().unwrap();
                let Some(endpoint) = Endpoint::from_path(path, "") else {
                    continue;
                };
                if ex.resp.status() != 200 {
                    continue;
                }
                let messages =
                    parse_body(endpoint, ex.resp.header("Content-type"), &ex.resp.body).unwrap();
                let rendered = render_body(endpoint, &messages);
                assert!(
                    rendered == ex.resp.body,
                    "{version} {name} {}:\n{}\n---\n{}",
                    ex.req.target(),
                    String::from_utf8_lossy(&rendered),
                    String::from_utf8_lossy(&ex.resp.body)
                );
                bodies += 1;
            }
        }
    }
    eprintln!("render: {bodies} bodies reproduced byte for byte");
    assert!(bodies > 60, "{bodies}");
}

#[test]
fn render_applies_xml_translate_rules() {
    let msg = parse_rawman(
        b"Response: Success\r\nMessage: Command output follows\r\nOutput: a\r\n\
          Output:   two <b> & 'c' \"d\"  \r\nOutput: \r\nX-Foo: 1\r\n2nd: x\r\n\r\n",
    )
    .unwrap();
    let xml = render_body(Endpoint::MXml, &msg);
    assert_eq!(
        String::from_utf8(xml.clone()).unwrap(),
        "<ajax-response>\n<response type='object' id='unknown'><generic response='Success' \
         message='Command output follows' output='a' \
         output-2='two &lt;b&gt; &amp; &apos;c&apos; &quot;d&quot;' output-3='' x_foo='1' \
         _2nd='x' /></response>\n</ajax-response>\n"
    );
    // Parsed back: repeats fold, but case and trimmed blanks are gone for good.
    let back = parse_mxml(&xml).unwrap();
    assert_eq!(
        headers_of(&back[0]),
        pairs(&[
            ("response", "Success"),
            ("message", "Command output follows"),
            ("output", "a"),
            ("output", "two <b> & 'c' \"d\""),
            ("output", ""),
            ("x_foo", "1"),
            ("_2nd", "x"),
        ])
    );
    let html = render_body(Endpoint::AManager, &msg);
    let back = parse_manager_html(&html).unwrap();
    assert_eq!(
        headers_of(&back[0]),
        pairs(&[
            ("Response", "Success"),
            ("Message", "Command output follows"),
            ("Output", "a"),
            ("Output", "two <b> & 'c' \"d\""),
            ("Output", ""),
            ("X-Foo", "1"),
            ("2nd", "x"),
        ])
    );

    // Asterisk 13's legacy Command text becomes one opaque field, which the parser puts
    // back as the body, line breaks included; a CLI line with a colon inside it stays text.
    let ex = exchanges("13", "http-rawman-command.jsonl");
    let dialplan = ex
        .iter()
        .find(|e| e.req.target().contains("h-cmd-3"))
        .unwrap();
    let legacy = parse_rawman(&dialplan.resp.body).unwrap();
    for endpoint in [Endpoint::MXml, Endpoint::Manager] {
        let rendered = render_body(endpoint, &legacy);
        let opaque: &[u8] = if endpoint == Endpoint::MXml {
            b"opaque_data="
        } else {
            b"<td>Opaque-data</td>"
        };
        assert!(rendered.windows(opaque.len()).any(|w| w == opaque));
        let back = parse_body(endpoint, None, &rendered).unwrap();
        let keys: Vec<String> = headers_of(&back[0]).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 3, "{endpoint:?}: {keys:?}");
        let text = decode_text(back[0].body().unwrap()).into_owned();
        assert!(
            text.starts_with("[ Context 'test' created by 'pbx_config' ]\n"),
            "{text}"
        );
        assert!(
            text.contains("\n                    4. UserEvent(MyEvent,Foo: bar,Baz: qux)"),
            "{text}"
        );
        assert!(!text.contains("--END COMMAND--"), "{text}");
    }
}

#[test]
fn digest_server_side_matches_the_recordings() {
    for version in VERSIONS {
        for name in ["http-digest-amxml.jsonl", "http-digest-amanager.jsonl"] {
            let ex = exchanges(version, name);
            for e in &ex {
                if let Some(www) = e.resp.header("WWW-Authenticate") {
                    assert_eq!(DigestChallenge::parse(www).unwrap().header_value(), www);
                }
            }
            let authorized: Vec<&Exchange> = ex
                .iter()
                .filter(|e| e.req.header("Authorization").is_some())
                .collect();
            for (i, e) in authorized.iter().enumerate() {
                let header = e.req.header("Authorization").unwrap();
                let auth = DigestAuthorization::parse(header).unwrap();
                let p = auth_params(header);
                assert_eq!(auth.username, param(&p, "username"));
                assert_eq!(auth.realm, param(&p, "realm"));
                assert_eq!(auth.nonce, param(&p, "nonce"));
                assert_eq!(auth.uri, e.req.target());
                assert_eq!(auth.response, param(&p, "response"));
                assert_eq!(auth.qop.as_deref(), Some("auth"));
                assert_eq!(
                    auth.nc,
                    Some(u32::from_str_radix(param(&p, "nc"), 16).unwrap())
                );
                assert_eq!(auth.cnonce.as_deref(), Some(param(&p, "cnonce")));
                assert_eq!(auth.opaque.as_deref(), Some(param(&p, "opaque")));
                // The fourth one carried a wrong password.
                assert_eq!(
                    auth.verify(Method::Get, "amiwire"),
                    i < 3,
                    "{version} {name} #{i}"
                );
                assert!(!auth.verify(Method::Post, "amiwire"));
                assert!(!auth.verify(Method::Get, "Amiwire"));
                let moved = DigestAuthorization {
                    uri: "/arawman?action=ping".into(),
                    ..auth.clone()
                };
                assert!(!moved.verify(Method::Get, "amiwire"));
            }
        }
    }
    let stale = DigestChallenge {
        realm: "asterisk".into(),
        nonce: "0000abcd".into(),
        opaque: Some("0000abcd".into()),
        algorithm: Some("MD5".into()),
        qop: Some("auth".into()),
        stale: true,
    };
    assert_eq!(
        stale.header_value(),
        r#"Digest algorithm=MD5, realm="asterisk", nonce="0000abcd", qop="auth", opaque="0000abcd", stale=true"#
    );
    assert_eq!(
        DigestChallenge::parse(&stale.header_value()).unwrap(),
        stale
    );
    // A session's header verifies on the server side, for GET and POST.
    let mut session = DigestSession::new("admin", "pa ss\"w").unwrap();
    session
        .on_unauthorized(&stale.header_value(), None)
        .unwrap();
    for (method, uri) in [
        (Method::Get, "/arawman?Action=Ping"),
        (Method::Post, "/arawman"),
    ] {
        let header = session.authorization(method, uri).unwrap().unwrap();
        let auth = DigestAuthorization::parse(&header).unwrap();
        assert!(auth.verify(method, "pa ss\"w"));
        assert!(!auth.verify(method, "pa ss"));
    }
    assert!(DigestAuthorization::parse(r#"Digest username="a", realm="r""#).is_err());
    assert!(
        DigestAuthorization::parse(
            r#"Digest username="a", realm="r", nonce="n", uri="/", response="x", nc=zz"#
        )
        .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Robustness: no input makes a parser panic.

fn fixture_bodies() -> &'static [Vec<u8>] {
    static BODIES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    BODIES.get_or_init(|| {
        [
            "http-digest-amxml.jsonl",
            "http-digest-amanager.jsonl",
            "http-errors.jsonl",
        ]
        .iter()
        .flat_map(|name| exchanges("22", name))
        .map(|e| e.resp.body)
        .filter(|b| b.len() < 8_000)
        .collect()
    })
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        for endpoint in [Endpoint::RawMan, Endpoint::MXml, Endpoint::Manager] {
            let _ = parse_body(endpoint, None, &bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = DigestChallenge::parse(&text);
        let _ = DigestChallenge::parse(&format!("Digest {text}"));
        let _ = parse_set_cookie(&text);
        let _ = parse_cookie_header(&text);
        let _ = decode_form(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_damaged_fixtures(which in 0usize..64, cut in 0usize..8_000, flip in 0usize..8_000, byte in proptest::prelude::any::<u8>()) {
        let bodies = fixture_bodies();
        let mut body = bodies[which % bodies.len()].clone();
        if !body.is_empty() {
            let at = flip % body.len();
            body[at] = byte;
            body.truncate(cut % (body.len() + 1));
        }
        for endpoint in [Endpoint::RawMan, Endpoint::MXml, Endpoint::Manager] {
            let _ = parse_body(endpoint, None, &body);
        }
    }
}

fn wire(headers: &[(String, String)]) -> Vec<u8> {
    let mut text = String::new();
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

proptest::proptest! {
    /// Rendering then parsing gives back every header, repeats included, minus what the
    /// format cannot carry (blanks around values; case of /mxml keys).
    #[test]
    fn render_then_parse_round_trips(
        headers in proptest::collection::vec(
            ("[A-Za-z][A-Za-z0-9]{0,6}", "[ -~]{0,30}"),
            1..12,
        ),
        repeat in 0usize..4,
    ) {
        let mut headers = headers;
        // Force some repeated keys.
        let first = headers[0].0.clone();
        for i in 0..repeat {
            headers.push((first.clone(), format!("again {i}")));
        }
        let msgs = parse_rawman(&wire(&headers)).unwrap();
        let trimmed: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.clone(), v.trim().to_owned())).collect();
        for endpoint in [Endpoint::Manager, Endpoint::AManager] {
            let back = parse_manager_html(&render_body(endpoint, &msgs)).unwrap();
            proptest::prop_assert_eq!(back.len(), 1);
            proptest::prop_assert_eq!(headers_of(&back[0]), trimmed.clone());
        }
        // /mxml lowercases keys; keys that differ only in case would be counted apart by
        // Asterisk, so this property uses lowercase keys.
        let lower: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect();
        let msgs = parse_rawman(&wire(&lower)).unwrap();
        let back = parse_mxml(&render_body(Endpoint::MXml, &msgs)).unwrap();
        let expected: Vec<(String, String)> =
            lower.iter().map(|(k, v)| (k.clone(), v.trim().to_owned())).collect();
        proptest::prop_assert_eq!(headers_of(&back[0]), expected);
        // /rawman is exact.
        proptest::prop_assert_eq!(render_body(Endpoint::RawMan, &msgs), wire(&lower));
    }
}

#[test]
fn digest_requests_side_by_side_retry_instead_of_failing() {
    let ch = |nonce: &str, stale: bool| {
        format!(
            r#"Digest algorithm=MD5, realm="asterisk", nonce="{nonce}", qop="auth", opaque="{nonce}"{}"#,
            if stale { ", stale=true" } else { "" }
        )
    };
    let mut session = DigestSession::new("admin", "amiwire").unwrap();
    // The first challenge comes to a request sent without credentials.
    session.on_unauthorized(&ch("n1", false), None).unwrap();
    // An action and the long-poll are built under the same nonce; the poll's larger nc
    // arrives first, so the action's earns stale=true and a new nonce: adopted, retried.
    let built_under = session.generation();
    session.authorization(Method::Post, "/arawman").unwrap();
    session.authorization(Method::Post, "/arawman").unwrap();
    session
        .on_unauthorized(&ch("n2", true), Some(built_under))
        .unwrap();
    assert_eq!(session.challenge().unwrap().nonce, "n2");
    assert_eq!(session.nc(), 0);
    // A 401 to the other request built under n1 comes after: not a refusal, even
    // without stale=true (a server that forgot n1), and n2 stays the nonce to use.
    session
        .on_unauthorized(&ch("n3", false), Some(built_under))
        .unwrap();
    assert_eq!(session.challenge().unwrap().nonce, "n2");
    // Credentials built under the current nonce and answered with a fresh, non-stale
    // nonce are refused: that is a wrong password.
    let current = session.generation();
    session.authorization(Method::Post, "/arawman").unwrap();
    let err = session
        .on_unauthorized(&ch("n4", false), Some(current))
        .unwrap_err();
    assert!(matches!(err, ProtoError::Auth(_)), "{err}");
}

#[test]
fn digest_a_fresh_nonce_for_a_nonce_that_worked_means_a_new_session() {
    let ch = |nonce: &str| {
        format!(
            r#"Digest algorithm=MD5, realm="asterisk", nonce="{nonce}", qop="auth", opaque="{nonce}""#
        )
    };
    let mut session = DigestSession::new("admin", "amiwire").unwrap();
    assert_eq!(
        session.on_unauthorized(&ch("n1"), None).unwrap(),
        Retry::SameSession
    );
    let generation = session.generation();
    session.authorization(Method::Post, "/arawman").unwrap();
    session.on_authorized(generation);
    // The server expired the session (or restarted): the nonce that worked is unknown now.
    session.authorization(Method::Post, "/arawman").unwrap();
    assert_eq!(
        session
            .on_unauthorized(&ch("n2"), Some(generation))
            .unwrap(),
        Retry::NewSession
    );
    assert_eq!(session.challenge().unwrap().nonce, "n2");
    // Under n2 nothing worked yet, so a fresh nonce again is a refusal.
    let generation = session.generation();
    session.authorization(Method::Post, "/arawman").unwrap();
    assert!(matches!(
        session.on_unauthorized(&ch("n3"), Some(generation)),
        Err(ProtoError::Auth(_))
    ));
}
