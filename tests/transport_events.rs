//! Subscription queues and filters, without a socket.

use amiwire::proto::Message;
use amiwire::transport::{Filter, Matcher, Overflow, Subscription};

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
