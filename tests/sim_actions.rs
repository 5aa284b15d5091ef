//! The simulator's actions, login variants, permissions, event masks, filters and calls.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use amiwire::proto::md5_key;
use amiwire::sim::{CommandStyle, Event, SimConfig, User};
use sim_support::{Conn, names, start};

#[tokio::test]
async fn plain_login_banner_and_boot_events() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::connect(&sim).await;
    assert_eq!(c.banner.as_deref(), Some("Asterisk Call Manager/11.0.0"));
    c.send("Action: Login\r\nActionID: l\r\nUsername: admin\r\nSecret: amiwire\r\n\r\n")
        .await;
    let msgs = c
        .until(|m| m.event_name().as_deref() == Some("SuccessfulAuth"))
        .await;
    let kinds: Vec<String> = msgs
        .iter()
        .map(|m| {
            m.event_name()
                .or(m.response())
                .map(|s| s.into_owned())
                .unwrap()
        })
        .collect();
    assert_eq!(kinds, ["Success", "FullyBooted", "SuccessfulAuth"]);
    assert_eq!(msgs[2].get("AccountID").as_deref(), Some("admin"));
    sim.shutdown().await;
}

#[tokio::test]
async fn md5_login_and_challenge_rules() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::connect(&sim).await;
    c.send("Action: Challenge\r\nActionID: c0\r\n\r\n").await;
    assert_eq!(
        c.reply("c0").await.get("Message").as_deref(),
        Some("Must specify AuthType")
    );
    c.send("Action: Challenge\r\nActionID: c1\r\nAuthType: MD5\r\n\r\n")
        .await;
    let challenge = c.reply("c1").await.get("Challenge").unwrap().into_owned();
    c.send("Action: Challenge\r\nActionID: c2\r\nAuthType: md5\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("c2").await.get("Challenge").as_deref(),
        Some(challenge.as_str()),
        "a second Challenge returns the same value"
    );
    let key = md5_key(&challenge, "amiwire");
    c.send(&format!(
        "Action: Login\r\nActionID: l\r\nAuthType: MD5\r\nUsername: admin\r\nKey: {key}\r\nEvents: off\r\n\r\n"
    ))
    .await;
    assert_eq!(
        c.reply("l").await.get("Message").as_deref(),
        Some("Authentication accepted")
    );

    // Uppercase hex is compared as a string, so it fails.
    let mut d = Conn::connect(&sim).await;
    d.send("Action: Challenge\r\nActionID: c\r\nAuthType: MD5\r\n\r\n")
        .await;
    let ch = d.reply("c").await.get("Challenge").unwrap().into_owned();
    let key = md5_key(&ch, "amiwire").to_uppercase();
    d.send(&format!(
        "Action: Login\r\nActionID: l\r\nAuthType: MD5\r\nUsername: admin\r\nKey: {key}\r\n\r\n"
    ))
    .await;
    assert_eq!(
        d.reply("l").await.get("Message").as_deref(),
        Some("Authentication failed")
    );
    assert!(d.closes_within(Duration::from_secs(2)).await);
    sim.shutdown().await;
}

/// manager.c's `action_challenge()` runs logged in too: the session's challenge, made on
/// first use (`Response: Success`, `Challenge`), then kept; Asterisk 22 does not answer
/// `Already authenticated`.
#[tokio::test]
async fn challenge_after_login_answers_like_before() {
    let sim = start(SimConfig::new()).await;
    let mut plain = Conn::admin(&sim, "off").await;
    plain
        .send("Action: Challenge\r\nActionID: c\r\nAuthType: MD5\r\n\r\n")
        .await;
    let r = plain.reply("c").await;
    assert_eq!(names(&r), ["Response", "ActionID", "Challenge"]);
    assert_eq!(r.get("Response").as_deref(), Some("Success"));
    let challenge = r.get("Challenge").unwrap().into_owned();
    assert!(
        challenge.len() <= 9 && challenge.bytes().all(|b| b.is_ascii_digit()),
        "{challenge:?}"
    );
    plain
        .send("Action: Challenge\r\nActionID: c2\r\nAuthType: MD5\r\n\r\n")
        .await;
    assert_eq!(
        plain.reply("c2").await.get("Challenge").as_deref(),
        Some(challenge.as_str())
    );
    plain
        .send("Action: Challenge\r\nActionID: c3\r\n\r\n")
        .await;
    assert_eq!(
        plain.reply("c3").await.get("Message").as_deref(),
        Some("Must specify AuthType")
    );

    // After an MD5 login the challenge it used is the session's.
    let mut md5 = Conn::connect(&sim).await;
    md5.send("Action: Challenge\r\nActionID: c\r\nAuthType: MD5\r\n\r\n")
        .await;
    let before = md5.reply("c").await.get("Challenge").unwrap().into_owned();
    let key = md5_key(&before, "amiwire");
    md5.send(&format!(
        "Action: Login\r\nActionID: l\r\nAuthType: MD5\r\nUsername: admin\r\nKey: {key}\r\nEvents: off\r\n\r\n"
    ))
    .await;
    assert_eq!(
        md5.reply("l").await.get("Message").as_deref(),
        Some("Authentication accepted")
    );
    md5.send("Action: Challenge\r\nActionID: c4\r\nAuthType: MD5\r\n\r\n")
        .await;
    assert_eq!(
        md5.reply("c4").await.get("Challenge").as_deref(),
        Some(before.as_str())
    );
    sim.shutdown().await;
}

/// manager.c finds users with `strcasecmp` (`get_manager_by_name_locked()`), for plain and
/// MD5 logins alike; the session keeps the name as typed (SuccessfulAuth's AccountID).
#[tokio::test]
async fn usernames_match_case_insensitively() {
    let sim = start(SimConfig::new()).await;
    let mut plain = Conn::connect(&sim).await;
    plain
        .send("Action: Login\r\nActionID: l\r\nUsername: ADMIN\r\nSecret: amiwire\r\n\r\n")
        .await;
    assert_eq!(
        plain.reply("l").await.get("Message").as_deref(),
        Some("Authentication accepted")
    );
    let auth = plain
        .until(|m| m.event_name().as_deref() == Some("SuccessfulAuth"))
        .await;
    let auth = auth.last().unwrap();
    assert_eq!(auth.get("AccountID").as_deref(), Some("ADMIN"));

    let mut md5 = Conn::connect(&sim).await;
    md5.send("Action: Challenge\r\nActionID: c\r\nAuthType: MD5\r\n\r\n")
        .await;
    let ch = md5.reply("c").await.get("Challenge").unwrap().into_owned();
    let key = md5_key(&ch, "readonly");
    md5.send(&format!(
        "Action: Login\r\nActionID: l\r\nAuthType: MD5\r\nUsername: Reader\r\nKey: {key}\r\n\r\n"
    ))
    .await;
    assert_eq!(
        md5.reply("l").await.get("Message").as_deref(),
        Some("Authentication accepted")
    );
    // The secret is still compared exactly.
    let mut wrong = Conn::connect(&sim).await;
    wrong
        .send("Action: Login\r\nActionID: l\r\nUsername: admin\r\nSecret: AMIWIRE\r\n\r\n")
        .await;
    assert_eq!(
        wrong.reply("l").await.get("Message").as_deref(),
        Some("Authentication failed")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_login_waits_the_configured_delay_then_closes() {
    let sim = amiwire::sim::Simulator::start(
        SimConfig::new().auth_fail_delay(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let mut c = Conn::connect(&sim).await;
    let t0 = std::time::Instant::now();
    c.send("Action: Login\r\nActionID: l\r\nUsername: admin\r\nSecret: nope\r\n\r\n")
        .await;
    let r = c.reply("l").await;
    assert!(t0.elapsed() >= Duration::from_millis(290));
    assert_eq!(r.get("Message").as_deref(), Some("Authentication failed"));
    assert!(c.closes_within(Duration::from_secs(2)).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn read_only_user_is_refused_with_request_not_allowed() {
    let sim = start(SimConfig::new()).await;
    let mut admin = Conn::admin(&sim, "security").await;
    let mut c = Conn::connect(&sim).await;
    c.send("Action: Login\r\nActionID: l\r\nUsername: reader\r\nSecret: readonly\r\nEvents: off\r\n\r\n")
        .await;
    c.reply("l").await;
    c.send("Action: Getvar\r\nActionID: g\r\nVariable: LABGLOBAL\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("g").await.get("Message").as_deref(),
        Some("Permission denied")
    );
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(c.reply("p").await.get("Ping").as_deref(), Some("Pong"));
    let ev = admin
        .until(|m| m.event_name().as_deref() == Some("RequestNotAllowed"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ev.get("AccountID").as_deref(), Some("reader"));
    assert_eq!(ev.get("RequestType").as_deref(), Some("Getvar"));
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_users_and_listcommands_follow_write_classes() {
    let sim = start(SimConfig::new().users(vec![User::new("ops", "s3", "all", "system")])).await;
    let mut c = Conn::connect(&sim).await;
    c.send("Action: Login\r\nActionID: l\r\nUsername: ops\r\nSecret: s3\r\nEvents: off\r\n\r\n")
        .await;
    c.reply("l").await;
    c.send("Action: ListCommands\r\nActionID: lc\r\n\r\n").await;
    let r = c.reply("lc").await;
    let n = names(&r);
    assert!(n.contains(&"Filter".to_string()), "system class");
    assert!(n.contains(&"Ping".to_string()), "no class needed");
    assert!(!n.contains(&"Originate".to_string()), "needs originate");
    sim.shutdown().await;
}

#[tokio::test]
async fn events_action_masks_and_filters() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Events\r\nActionID: e1\r\nEventMask: user\r\n\r\n")
        .await;
    assert_eq!(c.reply("e1").await.get("Events").as_deref(), Some("On"));
    // Only UserEvent named Wanted passes the structured filter; a legacy exclude drops X=bad.
    c.send("Action: Filter\r\nActionID: f1\r\nMatchCriteria: name(UserEvent),header(UserEvent),method(starts_with)\r\nFilter: Want\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("f1").await.get("Message").as_deref(),
        Some("Success")
    );
    c.send("Action: Filter\r\nActionID: f2\r\nFilter: !X: bad\r\n\r\n")
        .await;
    c.reply("f2").await;
    c.send("Action: Filter\r\nActionID: f3\r\nFilter: (unclosed\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("f3").await.get("Message").as_deref(),
        Some("Filter did not compile.  Check the syntax of the filter given.")
    );
    c.send("Action: Filter\r\nActionID: f4\r\nOperation: Remove\r\nFilter: x\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("f4").await.get("Message").as_deref(),
        Some("Unknown operation")
    );
    for (name, x) in [("Other", "ok"), ("WantedA", "bad"), ("WantedB", "ok")] {
        sim.emit_event(Event::build(
            "UserEvent",
            "user,all",
            &[("UserEvent", name), ("X", x)],
        ));
    }
    // A system event is outside the mask.
    sim.emit_event(Event::build("Reload", "system,all", &[("Module", "x")]));
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let msgs = c.until(|m| m.action_id().as_deref() == Some("p")).await;
    let got: Vec<String> = msgs
        .iter()
        .filter_map(|m| m.get("UserEvent").map(|s| s.into_owned()))
        .collect();
    assert_eq!(got, ["WantedB"]);
    assert!(
        msgs.iter()
            .all(|m| m.event_name().as_deref() != Some("Reload"))
    );

    c.send("Action: Events\r\nActionID: e2\r\nEventMask: nonsense\r\n\r\n")
        .await;
    let r = c.reply("e2").await;
    assert_eq!(r.response().as_deref(), Some("Success"));
    assert_eq!(r.get("Events").as_deref(), Some("Off"));
    c.send("Action: Events\r\nActionID: e3\r\n\r\n").await;
    assert_eq!(
        c.reply("e3").await.get("Message").as_deref(),
        Some("Invalid event mask")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn setvar_getvar_and_varset() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::admin(&sim, "dialplan").await;
    c.send("Action: Setvar\r\nActionID: s\r\nVariable: FOO\r\nValue:   padded  \r\n\r\n")
        .await;
    c.reply("s").await;
    let ev = c
        .until(|m| m.event_name().as_deref() == Some("VarSet"))
        .await
        .pop()
        .unwrap();
    assert_eq!(
        names(&ev),
        [
            "Event",
            "Privilege",
            "Channel",
            "Uniqueid",
            "Variable",
            "Value"
        ]
    );
    assert_eq!(ev.get("Channel").as_deref(), Some("none"));
    c.send("Action: Getvar\r\nActionID: g\r\nVariable: GLOBAL(FOO)\r\n\r\n")
        .await;
    assert_eq!(c.reply("g").await.get("Value").as_deref(), Some("padded  "));
    c.send("Action: Getvar\r\nActionID: g2\r\nVariable: LEN(${FOO})\r\n\r\n")
        .await;
    assert_eq!(c.reply("g2").await.get("Value").as_deref(), Some("6"));
    c.send("Action: Getvar\r\nActionID: g3\r\nChannel: Local/x-1;1\r\nVariable: A\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("g3").await.get("Message").as_deref(),
        Some("No such channel")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn command_output_and_legacy_styles() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Command\r\nActionID: c\r\nCommand: core show channels count\r\n\r\n")
        .await;
    let r = c.reply("c").await;
    assert_eq!(
        r.get_all("Output"),
        [
            "0 active channels",
            "0 of 5000 max active calls ( 0.00% of capacity)",
            "0 calls processed"
        ]
    );
    c.send("Action: Command\r\nActionID: u\r\nCommand: bogus thing\r\n\r\n")
        .await;
    let r = c.reply("u").await;
    assert_eq!(r.response().as_deref(), Some("Error"));
    assert!(
        r.get("Output")
            .unwrap()
            .starts_with("No such command 'bogus thing'")
    );
    sim.shutdown().await;

    let sim = start(SimConfig::new().command_style(CommandStyle::Legacy)).await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Command\r\nActionID: v\r\nCommand: core show version\r\n\r\n")
        .await;
    let r = c.reply("v").await;
    assert_eq!(r.response().as_deref(), Some("Follows"));
    assert_eq!(names(&r), ["Response", "Privilege", "ActionID"]);
    assert_eq!(
        r.body(),
        Some(&b"Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-26 10:50:34 UTC\n"[..])
    );
    // The decoder's message ends at the marker line; the closing blank line follows it.
    assert!(r.raw().ends_with(b"\n--END COMMAND--\r\n"));
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let next = c.next().await.unwrap();
    assert_eq!(next.action_id().as_deref(), Some("p"));
    sim.shutdown().await;
}

#[tokio::test]
async fn async_originate_broadcasts_originate_response_to_call_readers_only() {
    let sim = start(SimConfig::new().time_scale(0.05)).await;
    let mut a = Conn::admin(&sim, "off").await;
    let mut b = Conn::admin(&sim, "call").await;
    let mut quiet = Conn::admin(&sim, "user").await;
    a.send("Action: Originate\r\nActionID: o1\r\nChannel: Local/100@test\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\n\r\n")
        .await;
    assert_eq!(
        a.reply("o1").await.get("Message").as_deref(),
        Some("Originate successfully queued")
    );
    let ev = b
        .until(|m| m.event_name().as_deref() == Some("OriginateResponse"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ev.action_id().as_deref(), Some("o1"));
    assert_eq!(ev.get("Response").as_deref(), Some("Success"));
    assert_eq!(ev.get("Reason").as_deref(), Some("4"));
    assert!(ev.get("Channel").unwrap().starts_with("Local/100@test-"));
    // The call runs its dialplan to the end: its UserEvent reaches the `user` session, and
    // the last Hangup reaches the call reader.
    let ue = quiet
        .until(|m| m.event_name().as_deref() == Some("UserEvent"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ue.get("UserEvent").as_deref(), Some("MyEvent"));
    assert_eq!(ue.get("Baz").as_deref(), Some("qux"));
    let mut hangups = 0;
    while hangups < 2 {
        let m = b.next().await.unwrap();
        let name = m.event_name().unwrap().into_owned();
        assert!(
            !["Newexten", "VarSet", "UserEvent"].contains(&name.as_str()),
            "{name} is outside the call class"
        );
        if name == "Hangup" {
            hangups += 1;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while sim.channel_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.channel_count(), 0);
    // The Events: off session got nothing at all.
    a.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let msgs = a.until(|m| m.action_id().as_deref() == Some("p")).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn originate_failure_reasons() {
    let sim = start(SimConfig::new().time_scale(0.05)).await;
    let mut c = Conn::admin(&sim, "call").await;
    // No such extension: Reason 0.
    c.send("Action: Originate\r\nActionID: x\r\nChannel: Local/999@test\r\nApplication: Wait\r\nData: 1\r\nAsync: true\r\n\r\n")
        .await;
    let ev = c
        .until(|m| m.event_name().as_deref() == Some("OriginateResponse"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ev.get("Response").as_deref(), Some("Failure"));
    assert_eq!(ev.get("Reason").as_deref(), Some("0"));
    // Rings and never answers: Reason 3 after the Timeout.
    c.send("Action: Originate\r\nActionID: y\r\nChannel: Local/800@test\r\nApplication: Wait\r\nData: 1\r\nTimeout: 5000\r\nAsync: true\r\n\r\n")
        .await;
    let ev = c
        .until(|m| {
            m.event_name().as_deref() == Some("OriginateResponse")
                && m.action_id().as_deref() == Some("y")
        })
        .await
        .pop()
        .unwrap();
    assert_eq!(ev.get("Response").as_deref(), Some("Failure"));
    assert_eq!(ev.get("Reason").as_deref(), Some("3"));
    // Sync failure.
    c.send("Action: Originate\r\nActionID: z\r\nChannel: Local/999@test\r\nApplication: Wait\r\nData: 1\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("z").await.get("Message").as_deref(),
        Some("Originate failed")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn sync_originate_blocks_later_replies_until_answer() {
    let sim = start(SimConfig::new().time_scale(0.3)).await;
    let mut c = Conn::admin(&sim, "off").await;
    let t0 = std::time::Instant::now();
    c.send("Action: Originate\r\nActionID: o\r\nChannel: Local/150@test\r\nContext: test\r\nExten: 300\r\nPriority: 1\r\n\r\nAction: Ping\r\nActionID: p\r\n\r\n")
        .await;
    let first = c.next().await.unwrap();
    assert_eq!(first.action_id().as_deref(), Some("o"));
    // 150 rings for Wait(1) before answering: 0.3 s at this time scale.
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t0.elapsed()
    );
    let second = c.next().await.unwrap();
    assert_eq!(second.action_id().as_deref(), Some("p"));
    sim.shutdown().await;
}

#[tokio::test]
async fn dial_bridges_and_lists_show_the_call() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::admin(&sim, "call").await;
    c.send("Action: Originate\r\nActionID: o\r\nChannel: Local/600@test\r\nApplication: Wait\r\nData: 30\r\nAsync: true\r\n\r\n")
        .await;
    c.until(|m| {
        m.event_name().as_deref() == Some("BridgeEnter")
            && m.get("BridgeNumChannels").as_deref() == Some("2")
    })
    .await;
    c.send("Action: BridgeList\r\nActionID: bl\r\n\r\n").await;
    let l = c.list("bl").await;
    assert_eq!(l.len(), 3);
    let uid = l[1].get("BridgeUniqueid").unwrap().into_owned();
    c.send(&format!(
        "Action: BridgeInfo\r\nActionID: bi\r\nBridgeUniqueid: {uid}\r\n\r\n"
    ))
    .await;
    let l = c.list("bi").await;
    assert_eq!(l.last().unwrap().get("ListItems").as_deref(), Some("2"));
    // Dial's variables on the caller (the 600;2 half), as in event-stream-load.raw.
    let chans: Vec<String> = l[1..3]
        .iter()
        .filter_map(|m| m.get("Channel").map(|n| n.into_owned()))
        .collect();
    let caller = chans
        .iter()
        .find(|n| n.starts_with("Local/600@test-") && n.ends_with(";2"))
        .unwrap();
    let peer = chans
        .iter()
        .find(|n| n.starts_with("Local/500@test-"))
        .unwrap();
    for (var, want) in [
        ("DIALEDPEERNUMBER", "500@test"),
        ("BRIDGEPEER", peer.as_str()),
        ("DIALSTATUS", "ANSWER"),
    ] {
        c.send(&format!(
            "Action: Getvar\r\nActionID: v-{var}\r\nChannel: {caller}\r\nVariable: {var}\r\n\r\n"
        ))
        .await;
        let r = c.reply(&format!("v-{var}")).await;
        assert_eq!(r.get("Value").as_deref(), Some(want), "{var}");
    }
    c.send("Action: CoreShowChannels\r\nActionID: cs\r\n\r\n")
        .await;
    let l = c.list("cs").await;
    assert_eq!(l.last().unwrap().get("ListItems").as_deref(), Some("4"));
    c.send("Action: Status\r\nActionID: st\r\n\r\n").await;
    let l = c.list("st").await;
    assert_eq!(l.len(), 6);
    assert_eq!(names(&l[1]).last().map(String::as_str), Some("ActionID"));
    // Hang everything up with a regex: a list of the channels.
    c.send("Action: Hangup\r\nActionID: h\r\nChannel: /^Local\\/600@test-/\r\n\r\n")
        .await;
    let l = c.list("h").await;
    assert_eq!(l.last().unwrap().get("ListItems").as_deref(), Some("2"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while sim.channel_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sim.channel_count(),
        0,
        "the dialed legs hang up with the caller"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn redirect_moves_a_channel_to_another_extension() {
    let sim = start(SimConfig::new()).await;
    let mut c = Conn::admin(&sim, "user,call").await;
    c.send("Action: Originate\r\nActionID: o\r\nChannel: Local/500@test\r\nApplication: Wait\r\nData: 30\r\nAsync: true\r\n\r\n")
        .await;
    let ev = c
        .until(|m| m.event_name().as_deref() == Some("OriginateResponse"))
        .await
        .pop()
        .unwrap();
    let two = ev.get("Channel").unwrap().replace(";1", ";2");
    c.send(&format!(
        "Action: Redirect\r\nActionID: r\r\nChannel: {two}\r\nContext: test\r\nExten: 700\r\nPriority: 1\r\n\r\n"
    ))
    .await;
    assert_eq!(
        c.reply("r").await.get("Message").as_deref(),
        Some("Redirect successful")
    );
    let ue = c
        .until(|m| m.event_name().as_deref() == Some("UserEvent"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ue.get("UserEvent").as_deref(), Some("Redirected"));
    assert_eq!(ue.get("Chan").as_deref(), Some(two.as_str()));
    c.send("Action: Hangup\r\nActionID: h\r\nChannel: Local/500@test-ffffffff;1\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("h").await.get("Message").as_deref(),
        Some("No such channel")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_dialplan_and_show_dialplan() {
    let plan = amiwire::sim::Dialplan::parse(
        "custom.conf",
        "[globals]\nG=1\n[lab]\nexten => 1,1,Answer()\n same => n,Hangup()\n",
    );
    let sim = start(SimConfig::new().dialplan(plan)).await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: ShowDialPlan\r\nActionID: d\r\n\r\n").await;
    let l = c.list("d").await;
    let done = l.last().unwrap();
    assert_eq!(done.get("ListItems").as_deref(), Some("2"));
    assert_eq!(done.get("ListContexts").as_deref(), Some("1"));
    c.send("Action: Command\r\nActionID: c\r\nCommand: dialplan show lab\r\n\r\n")
        .await;
    let out = c.reply("c").await;
    assert_eq!(
        out.get_all("Output")[1],
        "  '1' =>            1. Answer()                                   [custom.conf:4]"
    );
    c.send("Action: Getvar\r\nActionID: g\r\nVariable: G\r\n\r\n")
        .await;
    assert_eq!(c.reply("g").await.get("Value").as_deref(), Some("1"));
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_drop_stops_listening() {
    let sim = start(SimConfig::new()).await;
    let addr = sim.addr();
    let mut c = Conn::admin(&sim, "on").await;
    sim.shutdown().await;
    assert!(c.closes_within(Duration::from_secs(3)).await);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let sim = start(SimConfig::new()).await;
    let addr = sim.addr();
    let mut c = Conn::admin(&sim, "on").await;
    drop(sim);
    assert!(c.closes_within(Duration::from_secs(3)).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn emitted_events_follow_privilege_and_mask() {
    let sim = start(SimConfig::new()).await;
    let mut on = Conn::admin(&sim, "on").await;
    let mut off = Conn::admin(&sim, "off").await;
    let mut reader = Conn::connect(&sim).await;
    reader
        .send("Action: Login\r\nActionID: l\r\nUsername: local\r\nSecret: localonly\r\n\r\n")
        .await;
    reader.reply("l").await;
    // The `local` user may not read security events, so its own SuccessfulAuth never comes;
    // wait until all three sessions are registered.
    while sim.session_count() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.emit_event(Event::build("Custom", "all", &[("K", "v")]));
    sim.emit_event(Event::build("Secret", "security,all", &[("K", "s")]));
    for c in [&mut on, &mut off, &mut reader] {
        c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    }
    let seen = |msgs: Vec<amiwire::proto::Message>| -> Vec<String> {
        msgs.iter()
            .filter_map(|m| m.event_name().map(|n| n.into_owned()))
            .filter(|n| n == "Custom" || n == "Secret")
            .collect()
    };
    let p = |m: &amiwire::proto::Message| m.action_id().as_deref() == Some("p");
    assert_eq!(seen(on.until(p).await), ["Custom", "Secret"]);
    assert!(seen(off.until(p).await).is_empty());
    assert_eq!(seen(reader.until(p).await), ["Custom"]);
    sim.shutdown().await;
}
