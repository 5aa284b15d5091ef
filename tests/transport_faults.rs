//! The tokio client against each fault of the embedded simulator: every pending action ends
//! in a value or a typed error before its deadline, and reconnect restores the session where
//! the fault leaves one to restore.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use amiwire::Error;
use amiwire::proto::{Action, Expect};
use amiwire::sim::{Event, Faults, SimConfig, SimHandle, Simulator};
use amiwire::transport::{Client, Filter, Options, Overflow, Reconnect, State};

const UTF8: &str = "Zoë Ñandú – 東京 ✓";
/// Scheduling noise allowed on top of a deadline (2 shared cores).
const MARGIN: Duration = Duration::from_millis(500);

async fn sim(faults: Faults) -> SimHandle {
    Simulator::start(
        SimConfig::new()
            .faults(faults)
            .auth_fail_delay(Duration::from_millis(20)),
    )
    .await
    .unwrap()
}

fn options(sim: &SimHandle) -> Options {
    Options {
        port: sim.port(),
        username: "admin".into(),
        secret: "amiwire".into(),
        connect_timeout: Duration::from_secs(1),
        action_timeout: Duration::from_secs(1),
        keepalive: None,
        reconnect: Reconnect {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..Reconnect::default()
        },
        ..Options::default()
    }
}

async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Faults that hit the login sequence (the sim cuts or stalls our CoreSettings, the first
/// action after Login): `connect` fails with ConnectionLost by its deadline, never hangs, and
/// never reports a dead session as connected.
#[tokio::test]
async fn login_faults_fail_connect_by_its_deadline() {
    for faults in [
        Faults {
            close_during_login: true,
            ..Faults::default()
        },
        Faults {
            close_mid_message: true,
            ..Faults::default()
        },
        Faults {
            stall_after_login: true,
            ..Faults::default()
        },
    ] {
        let sim = sim(faults.clone()).await;
        let opts = options(&sim);
        let deadline = opts.connect_timeout.max(opts.action_timeout);
        let started = Instant::now();
        let err = Client::connect(opts).await.err();
        assert!(
            matches!(err, Some(Error::ConnectionLost { .. })),
            "{faults:?}: {err:?}"
        );
        assert!(started.elapsed() < deadline + MARGIN, "{faults:?}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn close_mid_list_fails_all_pending_then_reconnects_with_a_gap() {
    let sim = sim(Faults {
        close_mid_list: true,
        ..Faults::default()
    })
    .await;
    let client = Client::connect(options(&sim)).await.unwrap();
    // Set before `connect` answers, not racing it.
    assert_eq!(client.state(), State::Connected);
    let sub = client.subscribe(Filter::default(), 100, Overflow::DropOldest);
    let long = Some(Duration::from_secs(10));
    let started = Instant::now();
    let (list, ping) = tokio::join!(
        client.action_with(Action::new("ShowDialPlan"), Expect::Auto, long),
        client.action_with(Action::new("Ping"), Expect::Auto, long),
    );
    assert!(started.elapsed() < Duration::from_secs(1), "not at once");
    for result in [list, ping] {
        assert!(
            matches!(result, Err(Error::ConnectionLost { .. })),
            "{result:?}"
        );
    }
    until("reconnected", Duration::from_secs(2), || {
        client.state() == State::Connected && client.stats().reconnects == 1
    })
    .await;
    assert_eq!(sub.stats().gaps, 1);
    let pong = client.action(Action::new("Ping")).await.unwrap();
    assert_eq!(pong.response.get("Ping").as_deref(), Some("Pong"));
    client.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn ignored_pings_are_a_half_open_link_for_the_keepalive() {
    let sim = sim(Faults {
        ignore_pings: true,
        ..Faults::default()
    })
    .await;
    let keepalive = Duration::from_millis(200);
    let client = Client::connect(Options {
        keepalive: Some(keepalive),
        ..options(&sim)
    })
    .await
    .unwrap();
    // Idle for `keepalive`, then the Ping has `keepalive` to answer.
    until("half-open detected", 2 * keepalive + MARGIN, || {
        client.stats().reconnects >= 1
    })
    .await;
    until("reconnected", Duration::from_secs(1), || {
        client.state() == State::Connected
    })
    .await;
    let reply = client
        .action(Action::new("Getvar").header("Variable", "EPOCH"))
        .await
        .unwrap();
    assert!(reply.is_success());
    client.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_is_counted_and_the_session_goes_on() {
    let sim = sim(Faults {
        garbage_after_login: true,
        ..Faults::default()
    })
    .await;
    let client = Client::connect(options(&sim)).await.unwrap();
    assert!(client.info().asterisk_version.is_some());
    client.action(Action::new("Ping")).await.unwrap();
    let stats = client.stats();
    assert!(stats.orphans + stats.decode_errors >= 1, "{stats:?}");
    assert_eq!(stats.reconnects, 0);
    client.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn drip_splits_every_utf8_sequence_and_values_arrive_intact() {
    let sim = sim(Faults {
        drip: Some(Duration::from_micros(200)),
        ..Faults::default()
    })
    .await;
    let client = Client::connect(Options {
        action_timeout: Duration::from_secs(8),
        events: amiwire::transport::EventMask("user".into()),
        ..options(&sim)
    })
    .await
    .unwrap();
    let sub = client.subscribe(Filter::default(), 100, Overflow::DropOldest);
    client
        .action(
            Action::new("Setvar")
                .header("Variable", "DRIP")
                .header("Value", UTF8),
        )
        .await
        .unwrap();
    let got = client
        .action(Action::new("Getvar").header("Variable", "DRIP"))
        .await
        .unwrap();
    assert_eq!(got.response.get("Value").as_deref(), Some(UTF8));
    sim.emit_event(Event::build(
        "UserEvent",
        "user,all",
        &[("UserEvent", "drip"), ("Text", UTF8)],
    ));
    until("event delivered", Duration::from_secs(8), || {
        sub.stats().queued > 0
    })
    .await;
    let events = sub.drain(10);
    assert_eq!(events[0].get("Text").as_deref(), Some(UTF8));
    assert_eq!(client.stats().decode_errors, 0);
    client.close().await;
    sim.shutdown().await;
}
