//! The correlator driven by recorded traffic: actions are registered as the client sent them
//! and every received message is routed in arrival order.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

mod proto_support;

use std::time::{Duration, Instant};

use amiwire::proto::{Correlator, Decoder, Expect, Message, Outcome, Routed, command_output};
use proto_support::*;

/// (ActionID, action name) of every action in one `send` chunk.
fn sent_actions(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            Some((field("ActionID")?, field("Action")?))
        })
        .collect()
}

/// Replays connection 0 of a fixture: each sent action is registered (token = action name,
/// expectation from `expect`), each received message routed.
fn replay(rel: &str, expect: impl Fn(&str) -> Expect) -> (Vec<Routed<String>>, Correlator<String>) {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut corr = Correlator::new();
    let mut dec = Decoder::new();
    let mut routed = Vec::new();
    for line in text.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        if rec["conn"].as_u64() != Some(0) {
            continue;
        }
        let data = rec["data"].as_str().unwrap_or_default().as_bytes();
        if rec["dir"] == "send" {
            for (id, action) in sent_actions(data) {
                corr.register(id, expect(&action), None, action).unwrap();
            }
        } else {
            dec.feed(data);
            while let Some(m) = dec.next_message() {
                routed.push(corr.route(m.unwrap()));
            }
        }
    }
    (routed, corr)
}

fn done<'a>(routed: &'a [Routed<String>], id: &str) -> &'a Outcome {
    let found = routed.iter().find_map(|r| match r {
        Routed::Done(c) | Routed::DoneAndEvent(c, _) if c.action_id == id => Some(&c.outcome),
        _ => None,
    });
    found.unwrap_or_else(|| panic!("{id} never completed"))
}

fn events_with_id<'a>(routed: &'a [Routed<String>], id: &str) -> Vec<&'a Message> {
    routed
        .iter()
        .filter_map(|r| match r {
            Routed::Event(m) | Routed::DoneAndEvent(_, m) => Some(m),
            _ => None,
        })
        .filter(|m| m.action_id().as_deref() == Some(id))
        .collect()
}

fn name(m: &Message) -> String {
    m.event_name().unwrap().into_owned()
}

fn expect_originate(action: &str) -> Expect {
    if action.eq_ignore_ascii_case("originate") {
        Expect::Originate
    } else {
        Expect::Auto
    }
}

fn assert_list(o: &Outcome, item: &str, complete: &str) {
    assert!(o.is_success());
    assert_eq!(o.response.get("EventList").as_deref(), Some("start"));
    assert!(o.events.iter().all(|e| name(e) == item), "items {item}");
    let c = o.complete.as_ref().unwrap();
    assert_eq!(name(c), complete);
    assert_eq!(c.get("EventList").as_deref(), Some("Complete"));
    let n: usize = c.get("ListItems").unwrap().parse().unwrap();
    assert_eq!(n, o.events.len());
    assert!(o.list_items_match());
}

#[test]
fn pipelined_singles_lists_and_an_async_originate() {
    let (routed, corr) = replay("asterisk-22/tcp-pipelining.jsonl", expect_originate);
    for id in ["login-1", "p-1", "p-2", "p-3", "p-5", "p-8"] {
        let o = done(&routed, id);
        assert!(o.is_success(), "{id}");
        assert_eq!(o.response.action_id().as_deref(), Some(id));
        assert!(
            o.events.is_empty() && o.complete.is_none(),
            "{id} is a single reply"
        );
    }
    assert_eq!(
        done(&routed, "p-1").response.get("Ping").as_deref(),
        Some("Pong")
    );
    assert!(
        !command_output(&done(&routed, "p-3").response)
            .unwrap()
            .is_empty()
    );

    let channels = done(&routed, "p-4");
    assert_list(channels, "CoreShowChannel", "CoreShowChannelsComplete");
    assert!(!channels.events.is_empty());
    let status = done(&routed, "p-7");
    assert_list(status, "Status", "StatusComplete");
    assert!(!status.events.is_empty());
    for id in ["p-4", "p-7"] {
        assert!(
            events_with_id(&routed, id).is_empty(),
            "{id} items leaked as events"
        );
    }

    // The async Originate resolves on its OriginateResponse, which subscribers also see.
    let orig = routed.iter().find_map(|r| match r {
        Routed::DoneAndEvent(c, ev) if c.action_id == "p-6" => Some((c, ev)),
        _ => None,
    });
    let (c, ev) = orig.expect("p-6 resolved by its OriginateResponse");
    assert_eq!(c.token, "Originate");
    assert_eq!(
        c.outcome.response.get("Message").as_deref(),
        Some("Originate successfully queued")
    );
    assert_eq!(
        name(c.outcome.complete.as_ref().unwrap()),
        "OriginateResponse"
    );
    assert_eq!(name(ev), "OriginateResponse");
    assert!(c.outcome.is_success());

    // Another client's OriginateResponse (drv-2) is an ordinary event.
    let foreign = events_with_id(&routed, "drv-2");
    assert_eq!(foreign.len(), 1);
    assert_eq!(name(foreign[0]), "OriginateResponse");

    assert!(
        done(&routed, "logoff-1")
            .response
            .has_value("Response", "Goodbye")
    );
    assert!(corr.is_empty());
    assert_eq!(corr.orphan_count(), 0);
}

#[test]
fn lists_empty_lists_and_a_failing_list_action() {
    let (routed, corr) = replay(
        "asterisk-22/tcp-list-dialplan-bridges-devstate.jsonl",
        |_| Expect::Auto,
    );
    let sdp = done(&routed, "sdp-1");
    assert_list(sdp, "ListDialplan", "ShowDialPlanComplete");
    assert!(sdp.events.len() > 10);
    assert!(
        sdp.events
            .iter()
            .all(|e| e.get("Context").as_deref() == Some("test"))
    );
    assert_list(
        done(&routed, "bl-1"),
        "BridgeListItem",
        "BridgeListComplete",
    );
    assert_list(
        done(&routed, "bi-1"),
        "BridgeInfoChannel",
        "BridgeInfoComplete",
    );
    for (id, complete) in [
        ("dsl-1", "DeviceStateListComplete"),
        ("esl-1", "ExtensionStateListComplete"),
        ("bl-2", "BridgeListComplete"),
    ] {
        let o = done(&routed, id);
        assert!(o.events.is_empty(), "{id} is empty");
        assert_eq!(name(o.complete.as_ref().unwrap()), complete);
        assert_eq!(
            o.complete.as_ref().unwrap().get("ListItems").as_deref(),
            Some("0")
        );
        assert!(o.list_items_match());
    }
    // ShowDialPlan of an unknown context: a plain error, no EventList, resolved at once.
    let failed = done(&routed, "sdp-2");
    assert!(!failed.is_success());
    assert_eq!(
        failed.response.get("Message").as_deref(),
        Some("Did not find context nonexistent")
    );
    assert!(failed.events.is_empty() && failed.complete.is_none());
    for id in ["sdp-1", "bl-1", "bi-1", "dsl-1", "esl-1", "bl-2"] {
        assert!(events_with_id(&routed, id).is_empty(), "{id} leaked");
    }
    assert!(corr.is_empty());
}

/// The reply blocks of a panoramisk YAML sample: LF-only AMI text, after the action block
/// when the sample has one (queue_status.yaml starts with the reply).
fn panoramisk_reply(file: &str) -> Vec<Message> {
    let text = std::fs::read(fixture(&format!("peers/panoramisk/{file}"))).unwrap();
    let start = if text.starts_with(b"action:") {
        text.windows(2).position(|w| w == b"\n\n").unwrap() + 2
    } else {
        0
    };
    let mut d = Decoder::new();
    d.set_expect_banner(false);
    d.feed(&text[start..]);
    d.feed(b"\n");
    let mut out = Vec::new();
    d.decode_into(&mut out);
    out.into_iter().map(Result::unwrap).collect()
}

#[test]
fn declared_legacy_list_without_eventlist() {
    const ID: &str = "action/transaction_uid/1/1";
    let msgs = panoramisk_reply("queue_status.yaml");
    assert!(msgs[0].get("EventList").is_none());
    let items = msgs.len() - 2;

    let mut corr = Correlator::new();
    let expect = Expect::List {
        complete: Some("QueueStatusComplete".into()),
    };
    corr.register(ID.into(), expect, None, 7u8).unwrap();
    let mut routed: Vec<Routed<u8>> = msgs.iter().cloned().map(|m| corr.route(m)).collect();
    let last = routed.pop().unwrap();
    assert!(routed.iter().all(|r| matches!(r, Routed::Absorbed)));
    let Routed::Done(c) = last else {
        panic!("not done: {last:?}")
    };
    assert_eq!(c.token, 7);
    assert_eq!(c.outcome.events.len(), items);
    assert_eq!(name(&c.outcome.events[0]), "QueueParams");
    assert!(
        c.outcome.events[1..]
            .iter()
            .all(|e| name(e) == "QueueMember")
    );
    assert_eq!(
        name(c.outcome.complete.as_ref().unwrap()),
        "QueueStatusComplete"
    );

    // Without the declaration the reply resolves alone and the items are plain events: the
    // override table is what makes legacy lists work.
    let mut corr = Correlator::new();
    corr.register(ID.into(), Expect::Auto, None, 7u8).unwrap();
    let routed: Vec<Routed<u8>> = msgs.into_iter().map(|m| corr.route(m)).collect();
    assert!(matches!(&routed[0], Routed::Done(c) if c.outcome.events.is_empty()));
    assert!(routed[1..].iter().all(|r| matches!(r, Routed::Event(_))));
}

#[test]
fn userevent_echo_after_the_response_is_an_event() {
    let (routed, corr) = replay("asterisk-22/tcp-userevent-action.jsonl", expect_originate);
    for id in ["ue-1", "ue-2"] {
        let o = done(&routed, id);
        assert_eq!(o.response.get("Message").as_deref(), Some("Event Sent"));
        assert!(o.events.is_empty());
        let echoed = events_with_id(&routed, id);
        assert!(!echoed.is_empty(), "{id} echo");
        assert!(echoed.iter().all(|m| name(m) == "UserEvent"));
    }
    // drv-1 is another client's Originate.
    assert_eq!(events_with_id(&routed, "drv-1").len(), 1);
    assert!(corr.is_empty());
}

#[test]
fn replies_nobody_waits_for_are_orphans() {
    let (routed, corr) = replay("asterisk-22/tcp-errors.jsonl", |_| Expect::Auto);
    let orphans: Vec<&Message> = routed
        .iter()
        .filter_map(|r| match r {
            Routed::Orphan(m) => Some(m),
            _ => None,
        })
        .collect();
    // The Action-less request and the ActionID-less Ping get replies without an ActionID.
    assert!(!orphans.is_empty());
    assert!(orphans.iter().all(|m| m.is_response()));
    for m in &orphans {
        let id = m.action_id();
        assert!(id.is_none() || !["err-unknown", "lower-1"].contains(&id.as_deref().unwrap()));
    }
    assert_eq!(corr.orphan_count(), orphans.len() as u64);
    assert!(
        done(&routed, "upper-1").is_success(),
        "`PING` answered like `Ping`"
    );
    assert!(!done(&routed, "err-chanmap").is_success());

    // The ActionID-less extra error after a 1023-byte line is an orphan too.
    let (routed, corr) = replay("asterisk-22/tcp-header-edge-cases.jsonl", |_| Expect::Auto);
    let missing = routed.iter().any(|r| {
        matches!(r, Routed::Orphan(m) if m.get("Message").as_deref() == Some("Missing action in request"))
    });
    assert!(missing);
    assert!(corr.orphan_count() >= 1);
}

fn msg(text: &str) -> Message {
    Message::parse_one(text.as_bytes()).unwrap()
}

fn list_start(id: &str) -> Message {
    msg(&format!(
        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: will follow\r\n"
    ))
}

fn item(id: &str, n: usize) -> Message {
    msg(&format!("Event: Item\r\nActionID: {id}\r\nN: {n}\r\n"))
}

fn complete(id: &str, n: usize) -> Message {
    msg(&format!(
        "Event: ItemComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: {n}\r\n"
    ))
}

#[test]
fn deadlines_expire_with_the_partial_list() {
    let t0 = Instant::now();
    let mut corr = Correlator::new();
    corr.register(
        "a".into(),
        Expect::Auto,
        Some(t0 + Duration::from_secs(2)),
        "A",
    )
    .unwrap();
    corr.register(
        "b".into(),
        Expect::Auto,
        Some(t0 + Duration::from_secs(1)),
        "B",
    )
    .unwrap();
    corr.register("c".into(), Expect::Auto, None, "C").unwrap();
    assert_eq!(corr.next_deadline(), Some(t0 + Duration::from_secs(1)));

    assert!(matches!(corr.route(list_start("a")), Routed::Absorbed));
    assert!(matches!(corr.route(item("a", 1)), Routed::Absorbed));
    assert!(matches!(corr.route(item("a", 2)), Routed::Absorbed));

    assert!(corr.expire(t0 + Duration::from_millis(999)).is_empty());
    let gone = corr.expire(t0 + Duration::from_secs(1));
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0].action_id.as_str(), gone[0].token), ("b", "B"));
    assert!(gone[0].partial.is_none(), "nothing had arrived for b");
    assert_eq!(corr.next_deadline(), Some(t0 + Duration::from_secs(2)));

    let gone = corr.expire(t0 + Duration::from_secs(5));
    assert_eq!(gone.len(), 1);
    let partial = gone[0].partial.as_ref().unwrap();
    assert_eq!(partial.response.get("EventList").as_deref(), Some("start"));
    let ns: Vec<String> = partial
        .events
        .iter()
        .map(|e| e.get("N").unwrap().into_owned())
        .collect();
    assert_eq!(ns, vec!["1", "2"]);
    assert_eq!(corr.next_deadline(), None);
    assert!(!corr.is_pending("a"));

    // The expired list's late items are still absorbed, never delivered as events.
    assert!(matches!(corr.route(item("a", 3)), Routed::Absorbed));
    assert!(matches!(corr.route(complete("a", 3)), Routed::Absorbed));
    // b's late reply has no waiter.
    assert!(matches!(
        corr.route(msg("Response: Success\r\nActionID: b\r\n")),
        Routed::Orphan(_)
    ));
    assert!(corr.is_pending("c"));
    assert_eq!(corr.len(), 1);
}

#[test]
fn cancel_keeps_draining_a_list_in_progress() {
    let mut corr = Correlator::new();
    corr.register("l".into(), Expect::Auto, None, 1).unwrap();
    corr.register("s".into(), Expect::Auto, None, 2).unwrap();
    corr.route(list_start("l"));
    corr.route(item("l", 1));
    assert_eq!(corr.cancel("l"), Some(1));
    assert!(!corr.is_pending("l"));
    assert_eq!(corr.len(), 2, "still draining l");
    for n in 2..5 {
        assert!(matches!(corr.route(item("l", n)), Routed::Absorbed));
    }
    assert!(matches!(corr.route(complete("l", 4)), Routed::Absorbed));
    assert_eq!(corr.len(), 1, "l is gone once complete");
    assert!(matches!(corr.route(item("l", 9)), Routed::Event(_)));

    // Cancelled before its reply: forgotten, the late reply is an orphan.
    assert_eq!(corr.cancel("s"), Some(2));
    assert!(corr.is_empty());
    assert!(matches!(
        corr.route(msg("Response: Success\r\nActionID: s\r\n")),
        Routed::Orphan(_)
    ));
    assert_eq!(corr.cancel("s"), None);
    assert_eq!(corr.orphan_count(), 1);
}

#[test]
fn drain_fails_every_pending_action() {
    let mut corr = Correlator::new();
    let t0 = Instant::now();
    corr.register("x".into(), Expect::Auto, Some(t0), 'x')
        .unwrap();
    corr.register("y".into(), Expect::Originate, None, 'y')
        .unwrap();
    corr.route(msg(
        "Response: Success\r\nActionID: y\r\nMessage: Originate successfully queued\r\n",
    ));
    let mut drained = corr.drain();
    drained.sort_by_key(|e| e.token);
    assert_eq!(drained.len(), 2);
    assert_eq!(drained[0].token, 'x');
    assert!(drained[0].partial.is_none());
    assert_eq!(drained[1].token, 'y');
    let partial = drained[1].partial.as_ref().unwrap();
    assert_eq!(
        partial.response.get("Message").as_deref(),
        Some("Originate successfully queued")
    );
    assert!(corr.is_empty());
    assert_eq!(corr.next_deadline(), None);
    assert!(corr.expire(t0 + Duration::from_secs(1)).is_empty());
}

#[test]
fn duplicate_action_id_is_refused() {
    let mut corr = Correlator::new();
    corr.register("dup".into(), Expect::Auto, None, "first")
        .unwrap();
    assert_eq!(
        corr.register("dup".into(), Expect::Auto, None, "second"),
        Err("second")
    );
    let Routed::Done(c) = corr.route(msg("Response: Success\r\nActionID: dup\r\n")) else {
        panic!()
    };
    assert_eq!(c.token, "first");
    // Free again once resolved.
    assert!(
        corr.register("dup".into(), Expect::Auto, None, "third")
            .is_ok()
    );
}

#[test]
fn originate_failure_and_foreign_originate_response() {
    let mut corr = Correlator::new();
    corr.register("o".into(), Expect::Originate, None, ())
        .unwrap();
    corr.route(msg(
        "Response: Success\r\nActionID: o\r\nMessage: Originate successfully queued\r\n",
    ));
    let foreign = msg("Event: OriginateResponse\r\nActionID: other-1\r\nResponse: Success\r\n");
    assert!(matches!(corr.route(foreign), Routed::Event(_)));
    // An unrelated event with our id does not resolve the Originate.
    let echo = msg("Event: UserEvent\r\nActionID: o\r\n");
    assert!(matches!(corr.route(echo), Routed::Event(_)));
    assert!(corr.is_pending("o"));
    let failure =
        msg("Event: OriginateResponse\r\nActionID: o\r\nResponse: Failure\r\nReason: 0\r\n");
    let Routed::DoneAndEvent(c, _) = corr.route(failure) else {
        panic!()
    };
    assert!(!c.outcome.is_success());
    assert!(corr.is_empty());
}

/// The text before the registrar column, which names the config source differently in 13.
fn shape(line: &str) -> &str {
    match line.rfind(" [") {
        Some(i) if line.ends_with(']') => &line[..i],
        _ => line,
    }
}

#[test]
fn command_output_has_the_same_shape_in_both_forms() {
    let find = |rel: &str, id: &str| {
        messages(rel)
            .into_iter()
            .find(|m| m.is_response() && m.action_id().as_deref() == Some(id))
            .unwrap()
    };
    let modern = find("asterisk-22/tcp-command.jsonl", "cmd-3");
    let legacy = find("asterisk-13/tcp-command-legacy.jsonl", "cmd-4");
    assert!(modern.body().is_none() && modern.get("Output").is_some());
    assert!(legacy.body().is_some() && legacy.get("Output").is_none());
    let (a, b) = (
        command_output(&modern).unwrap(),
        command_output(&legacy).unwrap(),
    );
    assert!(a.ends_with('\n') && b.ends_with('\n'));
    let a_lines: Vec<&str> = a.split('\n').collect();
    let b_lines: Vec<&str> = b.split('\n').collect();
    assert_eq!(a_lines.len(), b_lines.len());
    assert!(a_lines.len() > 20);
    for (x, y) in a_lines.iter().zip(&b_lines) {
        assert_eq!(shape(x), shape(y));
        // Same indentation, padding kept to the same column.
        assert_eq!(
            x.len() - x.trim_start().len(),
            y.len() - y.trim_start().len()
        );
    }
    assert!(a_lines.iter().any(|l| l.starts_with("  '100' =>")));
    assert!(a_lines.iter().any(|l| l.ends_with(' ')) == b_lines.iter().any(|l| l.ends_with(' ')));
}

#[test]
fn a_list_past_the_item_limit_is_given_up_with_what_it_collected() {
    let t0 = Instant::now();
    let mut corr = Correlator::new().with_list_limit(3);
    corr.register(
        "l".into(),
        Expect::Auto,
        Some(t0 + Duration::from_secs(5)),
        "L",
    )
    .unwrap();
    corr.register("s".into(), Expect::Auto, None, "S").unwrap();
    assert!(matches!(corr.route(list_start("l")), Routed::Absorbed));
    for n in 1..=3 {
        assert!(matches!(corr.route(item("l", n)), Routed::Absorbed));
    }
    let Routed::TooLong(given_up) = corr.route(item("l", 4)) else {
        panic!("the fourth item passes the limit of three");
    };
    assert_eq!((given_up.action_id.as_str(), given_up.token), ("l", "L"));
    let partial = given_up.partial.unwrap();
    assert_eq!(partial.response.get("EventList").as_deref(), Some("start"));
    let ns: Vec<String> = partial
        .events
        .iter()
        .map(|e| e.get("N").unwrap().into_owned())
        .collect();
    assert_eq!(ns, ["1", "2", "3"]);
    // Its deadline is gone with it; the rest of the list is absorbed, never an event.
    assert_eq!(corr.next_deadline(), None);
    assert!(!corr.is_pending("l"));
    for n in 5..9 {
        assert!(matches!(corr.route(item("l", n)), Routed::Absorbed));
    }
    assert!(matches!(corr.route(complete("l", 8)), Routed::Absorbed));
    assert!(matches!(corr.route(item("l", 9)), Routed::Event(_)));
    // Other actions are untouched.
    assert!(matches!(
        corr.route(msg("Response: Success\r\nActionID: s\r\n")),
        Routed::Done(c) if c.token == "S"
    ));
    assert!(corr.is_empty());
}

#[test]
fn a_list_at_the_item_limit_completes() {
    let mut corr = Correlator::new().with_list_limit(3);
    corr.register("l".into(), Expect::Auto, None, ()).unwrap();
    corr.route(list_start("l"));
    for n in 1..=3 {
        assert!(matches!(corr.route(item("l", n)), Routed::Absorbed));
    }
    let Routed::Done(c) = corr.route(complete("l", 3)) else {
        panic!("exactly the limit is allowed");
    };
    assert_eq!(c.outcome.events.len(), 3);
    assert!(c.outcome.list_items_match());
}

/// Two peer suites (panoramisk's and asterisk-ami's) send a `Response: Follows` reply whose
/// text comes as `Output:` headers, alone or followed by raw body lines.
#[test]
fn follows_with_output_headers_keeps_every_line_in_order() {
    let only_headers = Message::parse_one(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 1\r\nOutput: a\r\nOutput: b\r\n\
          --END COMMAND--\r\n\r\n",
    )
    .unwrap();
    assert_eq!(command_output(&only_headers).unwrap(), "a\nb\n");

    let headers_then_body = Message::parse_one(
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 2\r\nOutput: first\r\n\
          second\nthird\n--END COMMAND--\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        command_output(&headers_then_body).unwrap(),
        "first\nsecond\nthird\n"
    );
}

#[test]
fn a_follows_reply_without_its_text_is_an_error_not_an_empty_string() {
    // What /mxml makes of a legacy reply once its CLI lines became attributes.
    let mangled = Message::parse_one(
        b"response: Follows\r\nprivilege: Command\r\nasterisk_13_built_by_root: 08:19 UTC\r\n\
          opaque_data: --END COMMAND--\r\n\r\n",
    );
    let err = command_output(&mangled.unwrap()).unwrap_err();
    assert!(
        matches!(err, amiwire::proto::ProtoError::Remote(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("/rawman"), "{err}");
}
