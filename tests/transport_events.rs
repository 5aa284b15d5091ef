//! Subscription queues and filters, without a socket.

#![allow(clippy::unwrap_used)]

use amiwire::proto::Message;
use amiwire::transport::{
    Client, DEFAULT_QUEUE_BYTES, Filter, Matcher, Options, Overflow, QueueLimits, Subscription,
};

fn event(name: &str, extra: &str) -> Message {
    Message::parse_one(format!("Event: {name}\r\nPrivilege: call,all\r\n{extra}\r\n").as_bytes())
        .unwrap()
}

fn names(batch: &[Message]) -> Vec<String> {
    batch
        .iter()
        .map(|m| m.get("Seq").unwrap().into_owned())
        .collect()
}

#[test]
fn glob_exact_and_regex_matchers() {
    let glob = Matcher::glob("Dial*").unwrap();
    assert!(glob.matches("DialBegin") && glob.matches("dialend") && !glob.matches("Hangup"));
    let exact = Matcher::glob("Hangup").unwrap();
    assert!(exact.matches("hangup") && !exact.matches("HangupRequest"));
    let class = Matcher::glob("Local/[12]00@*").unwrap();
    assert!(class.matches("Local/100@test-1") && !class.matches("Local/300@test-1"));
    let regex = Matcher::regex("^SIP/").unwrap();
    assert!(regex.matches("SIP/x") && !regex.matches("PJSIP/x"));
    assert!(Matcher::regex("(").is_err());
}

#[test]
fn filter_needs_a_name_match_and_every_header() {
    let filter = Filter {
        names: vec![Matcher::glob("Hangup").unwrap()],
        headers: vec![(
            "Context".into(),
            vec![
                Matcher::glob("from-*").unwrap(),
                Matcher::glob("test").unwrap(),
            ],
        )],
    };
    assert!(filter.matches(&event("Hangup", "Context: test\r\n")));
    assert!(filter.matches(&event("Hangup", "Context: from-pstn\r\n")));
    assert!(!filter.matches(&event("Hangup", "Context: other\r\n")));
    assert!(!filter.matches(&event("Hangup", "")));
    assert!(!filter.matches(&event("Newchannel", "Context: test\r\n")));
}

fn fill(sub: &Subscription, n: usize) {
    let events: Vec<Message> = (0..n)
        .map(|i| event("UserEvent", &format!("Seq: {i}\r\n")))
        .collect();
    sub.push_batch(events.iter());
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts() {
    let sub = Subscription::new(Filter::default(), 3, Overflow::DropOldest);
    fill(&sub, 10);
    assert_eq!(names(&sub.drain(100)), ["7", "8", "9"]);
    let stats = sub.stats();
    assert_eq!(
        (stats.dropped, stats.delivered, stats.queued, stats.closed),
        (7, 3, 0, false)
    );
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let sub = Subscription::new(Filter::default(), 3, Overflow::DropNewest);
    fill(&sub, 10);
    assert_eq!(names(&sub.drain(100)), ["0", "1", "2"]);
    assert_eq!(sub.stats().dropped, 7);
}

#[test]
fn disconnect_closes_the_subscription_but_keeps_what_was_queued() {
    let sub = Subscription::new(Filter::default(), 2, Overflow::Disconnect);
    fill(&sub, 5);
    let stats = sub.stats();
    assert!(stats.closed && stats.overflowed);
    assert_eq!(names(&sub.drain(100)), ["0", "1"]);
    fill(&sub, 1);
    assert!(
        sub.drain(100).is_empty(),
        "a closed subscription takes nothing more"
    );
}

#[test]
fn arm_reports_whether_waiting_is_allowed_and_push_wakes_once() {
    let sub = Subscription::new(Filter::default(), 10, Overflow::DropOldest);
    assert!(sub.arm(), "empty: the consumer may wait");
    fill(&sub, 1);
    // The push consumed the armed flag; a second push does not ask for another wake-up.
    assert!(!sub.push_batch(std::iter::once(&event("UserEvent", "Seq: x\r\n"))));
    assert!(!sub.arm(), "events queued: do not wait");
    assert_eq!(sub.drain(1).len(), 1);
    assert_eq!(sub.drain(10).len(), 1);
}

#[tokio::test]
async fn next_batch_waits_and_ends_after_close() {
    let sub = std::sync::Arc::new(Subscription::new(
        Filter::default(),
        10,
        Overflow::DropOldest,
    ));
    let producer = sub.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        fill(&producer, 2);
        producer.close();
    });
    assert_eq!(sub.next_batch(10).await.map(|b| b.len()), Some(2));
    assert!(sub.next_batch(10).await.is_none());
    task.await.unwrap();
}

fn sized_event(seq: usize, size: usize) -> Message {
    let filler = "x".repeat(size);
    event("UserEvent", &format!("Seq: {seq}\r\nData: {filler}\r\n"))
}

/// A client prepared but never started: its queues, without a socket.
fn unstarted(max_event_bytes: usize) -> amiwire::transport::Client {
    let options = Options {
        max_event_bytes,
        ..Options::default()
    };
    Client::prepare(options, None).0
}

#[test]
fn a_queue_is_bounded_in_bytes_and_says_which_limit() {
    let client = unstarted(usize::MAX);
    let limits = QueueLimits {
        max_bytes: 1_000_000,
        ..QueueLimits::default()
    };
    let sub = client.subscribe_with(Filter::default(), limits, Overflow::DropOldest);
    sub.push_owned((0..100).map(|i| sized_event(i, 100_000)));
    let stats = sub.stats();
    assert!(stats.queued_bytes <= 1_000_000, "{stats:?}");
    assert_eq!(stats.queued as u64 + stats.dropped, 100);
    assert!(stats.dropped >= 90, "{stats:?}");
    assert_eq!(
        sub.limit_hit().as_deref(),
        Some("max_bytes limit of 1000000 bytes")
    );
    // The newest survive, and draining gives their bytes back.
    let batch = sub.drain(1000);
    assert_eq!(batch.last().unwrap().get("Seq").as_deref(), Some("99"));
    assert_eq!(
        (sub.stats().queued_bytes, client.stats().queued_event_bytes),
        (0, 0)
    );
}

#[test]
fn the_clients_budget_spans_every_queue() {
    let client = unstarted(1_000_000);
    let keep = client.subscribe_with(
        Filter::default(),
        QueueLimits::default(),
        Overflow::DropNewest,
    );
    let strict = client.subscribe_with(
        Filter::default(),
        QueueLimits::default(),
        Overflow::Disconnect,
    );
    let events: Vec<Message> = (0..15).map(|i| sized_event(i, 100_000)).collect();
    keep.push_batch(events.iter());
    strict.push_batch(events.iter());
    let used = client.stats().queued_event_bytes;
    assert!(used <= 1_000_000, "{used} bytes queued");
    assert_eq!(
        used,
        keep.stats().queued_bytes + strict.stats().queued_bytes
    );
    assert!(strict.is_closed() && strict.stats().overflowed);
    assert_eq!(
        strict.limit_hit().as_deref(),
        Some("the max_event_bytes limit of 1000000 bytes")
    );
    client.unsubscribe(&keep);
    assert_eq!(
        client.stats().queued_event_bytes,
        strict.stats().queued_bytes
    );
}

/// The figures: a consumer held up while ~48,600 events (~20 MB) arrive loses
/// nothing with the defaults, and 2,000 events of 100 KB (200 MB) stay within the default
/// 64 MiB of one queue.
#[test]
fn the_defaults_keep_a_slow_consumers_backlog_and_bound_large_events() {
    let client = unstarted(Options::default().max_event_bytes);
    let sub = client.subscribe_with(
        Filter::default(),
        QueueLimits::default(),
        Overflow::DropOldest,
    );
    sub.push_owned((0..48_600).map(|i| sized_event(i, 360)));
    let stats = sub.stats();
    assert_eq!((stats.queued, stats.dropped), (48_600, 0), "{stats:?}");
    assert!(stats.queued_bytes >= 20_000_000, "{stats:?}");
    sub.drain(usize::MAX);
    sub.push_owned((0..2_000).map(|i| sized_event(i, 100_000)));
    let stats = sub.stats();
    assert!(stats.queued_bytes <= DEFAULT_QUEUE_BYTES, "{stats:?}");
    assert!(stats.dropped > 1_000, "{stats:?}");
}

/// A subscription made before the driver starts sees the session from its first event.
#[tokio::test]
async fn a_stream_subscribed_before_start_sees_fully_booted() {
    let sim = amiwire::sim::Simulator::start(amiwire::sim::SimConfig::new())
        .await
        .unwrap();
    let options = Options {
        port: sim.port(),
        username: "admin".into(),
        secret: "amiwire".into(),
        keepalive: None,
        ..Options::default()
    };
    let (client, start) = Client::prepare(options, None);
    let sub = client.subscribe(Filter::default(), 100, Overflow::DropOldest);
    let (ready, login) = tokio::sync::oneshot::channel();
    start.start(
        amiwire::transport::Reply::Oneshot(ready),
        &tokio::runtime::Handle::current(),
    );
    login.await.unwrap().unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next_batch(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first[0].event_name().as_deref(), Some("FullyBooted"));
    client.close().await;
    sim.shutdown().await;
}
