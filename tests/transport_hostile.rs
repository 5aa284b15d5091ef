//! The TCP client against peers that misbehave on purpose (issue 9): a flood that never lets
//! the socket go quiet, a server that drops every session right after the login, and
//! deadlines too large to add to a clock.

#![allow(clippy::unwrap_used)]

mod transport_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amiwire::Error;
use amiwire::proto::{Action, Expect};
use amiwire::sim::{SimConfig, Simulator};
use amiwire::transport::{Client, Options, Reconnect};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use transport_support::tcp_server;

/// Scheduling noise allowed on top of a deadline (2 shared cores, debug build).
const MARGIN: Duration = Duration::from_millis(700);

fn options(port: u16) -> Options {
    Options {
        port,
        username: "admin".into(),
        secret: "amiwire".into(),
        connect_timeout: Duration::from_secs(2),
        action_timeout: Duration::from_secs(2),
        keepalive: None,
        ..Options::default()
    }
}

/// Submits a Ping that its server never answers: it must fail with a timeout within `MARGIN`
/// of `deadline`. Returns when it was submitted.
async fn ping_times_out_on_time(client: &Client, deadline: Duration) -> Instant {
    let submitted = Instant::now();
    let result = client
        .action_with(Action::new("Ping"), Expect::Auto, Some(deadline))
        .await;
    let resolved = submitted.elapsed();
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(
        resolved < deadline + MARGIN,
        "the deadline fired after {resolved:?}"
    );
    submitted
}

/// 64 KiB of events, written again and again.
fn flood_chunk() -> Vec<u8> {
    let event = b"Event: Newexten\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/100-00000001\r\nContext: default\r\nExtension: 600\r\nApplication: Wait\r\nAppData: 10\r\n\r\n";
    event
        .iter()
        .copied()
        .cycle()
        .take(event.len() * 500)
        .collect()
}

/// While the server floods events for 20 s and never answers, an action submitted
/// mid-flood reaches the server at once and its deadline fires on time: the reader does not
/// starve the writes or the timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_never_delays_an_action_or_its_deadline() {
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<Instant>();
    let port = tcp_server(move |peer, action| {
        let arrived_tx = arrived_tx.clone();
        async move {
            match action {
                None => {
                    let write = peer.write.clone();
                    tokio::spawn(async move {
                        let chunk = flood_chunk();
                        let until = Instant::now() + Duration::from_secs(20);
                        while Instant::now() < until {
                            if write.lock().await.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                Some(action) if action.has_value("Action", "Ping") => {
                    let _ = arrived_tx.send(Instant::now());
                }
                Some(_) => {}
            }
        }
    })
    .await;
    let client = Client::connect(options(port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the flood is on
    let submitted = ping_times_out_on_time(&client, Duration::from_millis(300)).await;
    let written = tokio::time::timeout(Duration::from_secs(2), arrived.recv())
        .await
        .expect("the Ping never reached the server during the flood")
        .unwrap();
    assert!(
        written.duration_since(submitted) < MARGIN,
        "the Ping was written {:?} after it was submitted",
        written.duration_since(submitted)
    );
    assert!(client.stats().events > 0, "no flood was read");
}

/// On a quiet session the driver's one timer waits for the long default deadline; an action
/// with a shorter timeout must move it earlier, and again after it fired, or the action
/// would wait for the default (10 s here) instead of its own 200 ms.
#[tokio::test]
async fn a_short_deadline_after_a_long_idle_wait_fires_on_time() {
    // Answers nothing after the login: every action runs into its deadline.
    let port = tcp_server(|_peer, _action| async {}).await;
    let o = Options {
        action_timeout: Duration::from_secs(10),
        ..options(port)
    };
    let client = Client::connect(o).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await; // the timer is armed far out
        ping_times_out_on_time(&client, Duration::from_millis(200)).await;
    }
    client.close().await;
}

/// A server that accepts every login and then drops the session at once does not get a
/// login storm: the backoff grows across such sessions and resets only after a session
/// stayed up.
#[tokio::test]
async fn a_session_dropped_after_login_does_not_reset_the_backoff() {
    let logins = Arc::new(AtomicUsize::new(0));
    let counted = logins.clone();
    let port = tcp_server(move |peer, action| {
        let counted = counted.clone();
        async move {
            if action.is_none() {
                counted.fetch_add(1, Ordering::SeqCst);
                // Right after the login (and CoreSettings, queued behind it) the session ends.
                let write = peer.write.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = write.lock().await.shutdown().await;
                });
            }
        }
    })
    .await;
    let mut o = options(port);
    o.reconnect = Reconnect {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(400),
        ..Reconnect::default()
    };
    let client = Client::connect(o).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let seen = logins.load(Ordering::SeqCst);
    client.close().await;
    // 20, 40, 80, 160, 320, 400, 400 … ms (each 50-100 % of that): under a dozen logins in
    // 2 s. Reset after every login, the wait stays 10-20 ms: a hundred.
    assert!(seen <= 12, "{seen} logins in 2 s");
    assert!(seen >= 3, "{seen} logins: the client gave up reconnecting");
}

/// A deadline or keepalive too large to add to the clock (`timeout=sys.maxsize`, a common
/// "no timeout") saturates instead of panicking the driver.
#[tokio::test]
async fn huge_timeouts_saturate_instead_of_panicking() {
    let sim = Simulator::start(SimConfig::new()).await.unwrap();
    let huge = Duration::from_secs(u64::MAX / 4);
    let o = Options {
        action_timeout: huge,
        keepalive: Some(huge),
        ..options(sim.port())
    };
    let client = Client::connect(o).await.unwrap();
    for timeout in [None, Some(Duration::MAX), Some(huge)] {
        let pong = client
            .action_with(Action::new("Ping"), Expect::Auto, timeout)
            .await
            .unwrap();
        assert_eq!(pong.response.get("Ping").as_deref(), Some("Pong"));
    }
    client.close().await;
    sim.shutdown().await;
}

/// A list whose items are large fails past `max_list_bytes` (its count is far under
/// `list_limit`), naming the limit; the rest of the list is drained, not leaked as events.
#[tokio::test]
async fn a_list_is_bounded_in_bytes() {
    let port = tcp_server(|peer, action| async move {
        let Some(action) = action else { return };
        let id = action.action_id().unwrap_or_default().into_owned();
        if action.has_value("Action", "ShowBig") {
            let data = "x".repeat(10_000);
            let mut list =
                format!("Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\r\n");
            for i in 0..500 {
                list += &format!(
                    "Event: BigItem\r\nActionID: {id}\r\nSeq: {i}\r\nData: {data}\r\n\r\n"
                );
            }
            list +=
                &format!("Event: ShowBigComplete\r\nActionID: {id}\r\nEventList: Complete\r\n\r\n");
            peer.send(&list).await;
        } else {
            peer.send(&transport_support::success(&action, "Ping: Pong\r\n"))
                .await;
        }
    })
    .await;
    let o = Options {
        max_list_bytes: 1_000_000,
        ..options(port)
    };
    let client = Client::connect(o).await.unwrap();
    let sub = client.subscribe(
        amiwire::transport::Filter::default(),
        1000,
        amiwire::transport::Overflow::DropOldest,
    );
    let result = client.action(Action::new("ShowBig")).await;
    match result {
        Err(Error::ListTooLong {
            limit,
            bound,
            partial,
            ..
        }) => {
            assert_eq!((limit, bound), (1_000_000, amiwire::ListBound::Bytes));
            assert!(partial.is_none());
        }
        other => panic!("expected ListTooLong, got {other:?}"),
    }
    let text = Error::ListTooLong {
        action: "ShowBig".into(),
        action_id: "1".into(),
        limit: 1_000_000,
        bound: amiwire::ListBound::Bytes,
        partial: None,
    }
    .to_string();
    assert!(
        text.contains("more than 1000000 bytes") && text.contains("max_list_bytes"),
        "{text}"
    );
    let pong = client.action(Action::new("Ping")).await.unwrap();
    assert_eq!(pong.response.get("Ping").as_deref(), Some("Pong"));
    assert!(
        sub.drain(1000)
            .iter()
            .all(|e| !e.has_value("Event", "BigItem")),
        "items leaked as events"
    );
    client.close().await;
}
