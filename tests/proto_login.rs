//! The sans-IO session setup: which action goes next for each response, for plain and MD5
//! logins, the CoreSettings probe and the replay after a reconnect.

#![allow(clippy::unwrap_used)]

use amiwire::proto::{Action, Login, Message, Progress, Replay, SessionInfo, md5_key};

fn response(text: &str) -> Message {
    Message::parse_one(format!("{text}\r\n\r\n").as_bytes()).unwrap()
}

fn sent(progress: Progress) -> Action {
    match progress {
        Progress::Send(action) => action,
        other => panic!("expected an action to send, got {other:?}"),
    }
}

fn headers(action: &Action) -> Vec<(String, String)> {
    let bytes = action.to_bytes(None).unwrap();
    let msg = Message::parse_one(&bytes).unwrap();
    msg.headers()
        .map(|h| {
            (
                String::from_utf8_lossy(h.name).into_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_plain_login_then_the_probe_then_ready() {
    let mut login = Login::new("admin", "amiwire", false).with_events("call,user");
    let first = sent(login.start());
    assert_eq!(
        headers(&first),
        pairs(&[
            ("Action", "Login"),
            ("Username", "admin"),
            ("Events", "call,user"),
            ("Secret", "amiwire"),
        ])
    );
    let probe = sent(login.on_response(&response(
        "Response: Success\r\nMessage: Authentication accepted",
    )));
    assert_eq!(headers(&probe), pairs(&[("Action", "CoreSettings")]));
    let ready = login.on_response(&response(
        "Response: Success\r\nAMIversion: 11.0.0\r\nAsteriskVersion: 22.5.2",
    ));
    match ready {
        Progress::Ready(info) => assert_eq!(
            info,
            SessionInfo {
                asterisk_version: Some("22.5.2".into()),
                ami_version: Some("11.0.0".into()),
                replay_failures: vec![],
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_md5_login_sends_the_key_never_the_secret() {
    let mut login = Login::new("admin", "amiwire", true);
    let challenge = sent(login.start());
    assert_eq!(
        headers(&challenge),
        pairs(&[("Action", "Challenge"), ("AuthType", "MD5")])
    );
    let key = md5_key("123456789", "amiwire");
    let second = sent(login.on_response(&response("Response: Success\r\nChallenge: 123456789")));
    assert_eq!(
        headers(&second),
        pairs(&[
            ("Action", "Login"),
            ("Username", "admin"),
            ("AuthType", "MD5"),
            ("Key", &key),
        ])
    );
}

#[test]
fn refusals_say_why_without_the_secret() {
    let mut login = Login::new("admin", "s3cret", false);
    login.start();
    match login.on_response(&response(
        "Response: Error\r\nMessage: Authentication failed",
    )) {
        Progress::Refused(why) => {
            assert_eq!(why, "user \"admin\": Authentication failed");
        }
        other => panic!("{other:?}"),
    }
    let mut md5 = Login::new("admin", "s3cret", true);
    md5.start();
    match md5.on_response(&response(
        "Response: Error\r\nMessage: Must specify AuthType",
    )) {
        Progress::Refused(why) => assert_eq!(why, "MD5 challenge refused: Must specify AuthType"),
        other => panic!("{other:?}"),
    }
    assert!(!format!("{login:?}").contains("s3cret"));
}

#[test]
fn a_refused_probe_means_no_version_not_a_failed_login() {
    let mut login = Login::authenticated();
    let probe = sent(login.start());
    assert!(probe.is("CoreSettings"));
    match login.on_response(&response("Response: Error\r\nMessage: Permission denied")) {
        Progress::Ready(info) => assert_eq!(info, SessionInfo::default()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_replay_follows_the_probe_in_order_and_reports_refusals() {
    let mut replay = Replay::default();
    replay.note(&Action::new("Events").header("EventMask", "off"));
    replay.note(&Action::new("Filter").header("Filter", "Event: Hangup"));
    replay.note(&Action::new("Ping"));
    replay.note(&Action::new("Events").header("EventMask", "call"));
    replay.note(&Action::new("Filter").header("Filter", "!Event: VarSet"));
    let mut login = Login::new("admin", "amiwire", false).with_replay(replay.actions());
    login.start();
    login.on_response(&response("Response: Success"));
    let mut replayed = Vec::new();
    let mut progress = login.on_response(&response("Response: Success"));
    let info = loop {
        match progress {
            Progress::Send(action) => {
                let answer = if action.is("Filter") && replayed.len() == 2 {
                    "Response: Error\r\nMessage: Filter Not Supported"
                } else {
                    "Response: Success"
                };
                replayed.push(headers(&action)[1].1.clone());
                progress = login.on_response(&response(answer));
            }
            Progress::Ready(info) => break info,
            Progress::Refused(why) => panic!("{why}"),
        }
    };
    assert_eq!(replayed, ["call", "Event: Hangup", "!Event: VarSet"]);
    assert_eq!(
        info.replay_failures,
        [("Filter".to_owned(), "Filter Not Supported".to_owned())]
    );
}

#[test]
fn a_renewed_session_skips_the_probe_and_goes_to_the_replay() {
    let mask = Action::new("Events").header("EventMask", "call");
    let mut login = Login::new("admin", "amiwire", false)
        .without_probe()
        .with_replay(vec![mask]);
    login.start();
    let next = sent(login.on_response(&response("Response: Success")));
    assert!(next.is("Events"));
    assert!(matches!(
        login.on_response(&response("Response: Success")),
        Progress::Ready(_)
    ));
    let mut digest = Login::authenticated().without_probe();
    assert!(matches!(digest.start(), Progress::Ready(_)));
}
