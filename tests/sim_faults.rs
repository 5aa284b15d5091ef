//! Each injected fault, as a client sees it.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::time::Duration;

use amiwire::sim::{Faults, SimConfig};
use sim_support::{Conn, start};
use tokio::io::AsyncReadExt;

const LOGIN: &str =
    "Action: Login\r\nActionID: l\r\nUsername: admin\r\nSecret: amiwire\r\nEvents: off\r\n\r\n";

#[tokio::test]
async fn close_during_login() {
    let sim = start(SimConfig::new().faults(Faults {
        close_during_login: true,
        ..Faults::default()
    }))
    .await;
    let mut c = Conn::connect(&sim).await;
    c.send(LOGIN).await;
    assert!(c.closes_within(Duration::from_secs(2)).await);
    assert!(c.dec.next_message().is_none(), "no reply before the close");
    sim.shutdown().await;
}

#[tokio::test]
async fn close_mid_message() {
    let sim = start(SimConfig::new().faults(Faults {
        close_mid_message: true,
        ..Faults::default()
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert!(c.closes_within(Duration::from_secs(2)).await);
    assert!(c.dec.next_message().is_none());
    assert!(c.dec.buffered() > 0, "half a message arrived");
    sim.shutdown().await;
}

#[tokio::test]
async fn close_mid_list() {
    let sim = start(SimConfig::new().faults(Faults {
        close_mid_list: true,
        ..Faults::default()
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: ShowDialPlan\r\nActionID: d\r\nContext: test\r\n\r\n")
        .await;
    let start = c.next().await.unwrap();
    assert_eq!(start.get("EventList").as_deref(), Some("start"));
    let item = c.next().await.unwrap();
    assert_eq!(item.event_name().as_deref(), Some("ListDialplan"));
    assert!(c.next().await.is_none(), "closed before the Complete event");
    sim.shutdown().await;
}

#[tokio::test]
async fn stall_after_login() {
    let sim = start(SimConfig::new().faults(Faults {
        stall_after_login: true,
        ..Faults::default()
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert!(
        !c.closes_within(Duration::from_millis(300)).await,
        "the socket stays open"
    );
    assert!(c.dec.next_message().is_none(), "but nothing is answered");
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_after_login_then_normal_service() {
    let sim = start(SimConfig::new().faults(Faults {
        garbage_after_login: true,
        ..Faults::default()
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let msgs = c.until(|m| m.action_id().as_deref() == Some("p")).await;
    assert!(
        msgs.iter().any(|m| m.unparsed_lines().next().is_some()),
        "a block of non-header lines arrived first"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn drip_writes_one_byte_at_a_time() {
    let sim = start(SimConfig::new().faults(Faults {
        drip: Some(Duration::from_millis(2)),
        ..Faults::default()
    }))
    .await;
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let banner = b"Asterisk Call Manager/11.0.0\r\n";
    let mut got = Vec::new();
    let mut reads = 0;
    while got.len() < banner.len() {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(&got[..], &banner[..]);
    assert!(reads >= 10, "the banner came in {reads} reads");
    sim.shutdown().await;
}

#[tokio::test]
async fn ignore_pings_answers_everything_else() {
    let sim = start(SimConfig::new().faults(Faults {
        ignore_pings: true,
        ..Faults::default()
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    c.send("Action: Ping\r\nActionID: p\r\n\r\nAction: CoreSettings\r\nActionID: s\r\n\r\n")
        .await;
    let first = c.next().await.unwrap();
    assert_eq!(
        first.action_id().as_deref(),
        Some("s"),
        "the Ping got no reply"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_connections_time_out() {
    let sim = start(SimConfig::new().auth_timeout(Duration::from_millis(200))).await;
    let mut c = Conn::connect(&sim).await;
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(
        c.reply("p").await.get("Message").as_deref(),
        Some("Permission denied")
    );
    assert!(c.closes_within(Duration::from_secs(2)).await);
    sim.shutdown().await;
}

/// `disconnect_all` closes every AMI connection at once, logged in or not, and the simulator
/// goes on serving new ones.
#[tokio::test]
async fn disconnect_all_closes_every_connection_and_serves_new_ones() {
    let sim = start(SimConfig::new()).await;
    let mut logged_in = Conn::admin(&sim, "on").await;
    let mut waiting = Conn::connect(&sim).await;
    sim.disconnect_all();
    assert!(logged_in.closes_within(Duration::from_secs(3)).await);
    assert!(waiting.closes_within(Duration::from_secs(3)).await);
    let mut again = Conn::admin(&sim, "off").await;
    again.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    assert_eq!(again.reply("p").await.get("Ping").as_deref(), Some("Pong"));
    sim.shutdown().await;
}
