//! A plain TCP session shared by the driver and a loop that reads the socket itself
//! (`Client::loop_io`): whoever reads, every event arrives once and in order; the driver takes
//! the reading over from a loop that stops, and a flood from a loop that reads it; deadlines
//! hold whoever writes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use amiwire::Error;
use amiwire::proto::{Action, Message};
use amiwire::sim::{Event, Faults, SimConfig, SimHandle, Simulator};
use amiwire::transport::{Client, Filter, LoopIo, Matcher, Options, Overflow, Subscription};

async fn sim(faults: Faults) -> SimHandle {
    // Deep enough for every event a test emits at once.
    let config = SimConfig::new().faults(faults).session_event_queue(100_000);
    Simulator::start(config).await.unwrap()
}

fn options(sim: &SimHandle) -> Options {
    Options {
        port: sim.port(),
        username: "admin".into(),
        secret: "amiwire".into(),
        keepalive: None,
        ..Options::default()
    }
}

async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A stand-in for the asyncio loop: a thread calling the reader callback every `every`
/// while `running`.
struct FakeLoop {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeLoop {
    fn start(io: Arc<dyn LoopIo>, every: Duration) -> FakeLoop {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = std::thread::spawn(move || {
            while flag.load(Ordering::Relaxed) {
                if io.wanted() {
                    io.on_readable();
                }
                std::thread::sleep(every);
            }
        });
        FakeLoop {
            running,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.running.store(false, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
    }
}

fn emit_numbered(sim: &SimHandle, range: std::ops::Range<usize>, filler: &str) {
    for i in range {
        sim.emit_event(Event::build(
            "UserEvent",
            "user,all",
            &[
                ("UserEvent", "seq"),
                ("Seq", &i.to_string()),
                ("Data", filler),
            ],
        ));
    }
}

/// Drains `sub` until `n` events arrived, and checks they are 0..n in order.
async fn expect_in_order(sub: &Subscription, n: usize) {
    let mut seen: Vec<Message> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events",
            seen.len()
        );
        seen.extend(sub.drain(usize::MAX));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seqs: Vec<usize> = seen
        .iter()
        .map(|m| m.get("Seq").unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());
}

/// Until the loop has read something (the driver reads until the loop's first callback, so a
/// reply may still be the driver's).
async fn loop_reads_one(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.stats().loop_reads == 0 {
        assert!(Instant::now() < deadline, "the loop never read");
        client
            .action(Action::new("UserEvent").header("UserEvent", "poke"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn user_events(client: &Client) -> Arc<Subscription> {
    let filter = Filter {
        names: vec![Matcher::glob("UserEvent").unwrap()],
        headers: vec![("UserEvent".into(), vec![Matcher::glob("seq").unwrap()])],
    };
    client.subscribe(filter, 1_000_000, Overflow::DropOldest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_reads_what_a_stopped_loop_leaves_and_the_loop_takes_it_back() {
    let sim = sim(Faults::default()).await;
    let client = Client::connect(options(&sim)).await.unwrap();
    let sub = user_events(&client);
    let io = client
        .loop_io()
        .expect("a plain TCP session is shared with the loop");

    let fake = FakeLoop::start(io.clone(), Duration::from_micros(200));
    loop_reads_one(&client).await;
    emit_numbered(&sim, 0..500, "loop");
    until("the loop's share", Duration::from_secs(10), || {
        sub.stats().queued == 500
    })
    .await;
    fake.stop();

    // Nobody calls the loop's callback now: the driver notices the waiting data and reads.
    let takeovers = client.stats().stall_takeovers;
    emit_numbered(&sim, 500..1000, "stalled");
    until("the driver's share", Duration::from_secs(10), || {
        sub.stats().queued == 1000
    })
    .await;
    assert!(client.stats().stall_takeovers > takeovers);

    let driver_reads = client.stats().driver_reads;
    let fake = FakeLoop::start(io, Duration::from_micros(200));
    let loop_reads = client.stats().loop_reads;
    emit_numbered(&sim, 1000..1500, "back");
    expect_in_order(&sub, 1500).await;
    assert!(
        client.stats().loop_reads > loop_reads,
        "the loop read again"
    );
    assert!(client.stats().driver_reads >= driver_reads);
    fake.stop();
    client.close().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_goes_to_the_driver_and_back_without_losing_or_reordering_a_byte() {
    let sim = sim(Faults::default()).await;
    let client = Client::connect(options(&sim)).await.unwrap();
    let sub = user_events(&client);
    let io = client.loop_io().unwrap();
    // A slow loop: between its reads the socket fills past one read buffer.
    let fake = FakeLoop::start(io.clone(), Duration::from_millis(3));
    loop_reads_one(&client).await;
    let filler = "x".repeat(400);
    emit_numbered(&sim, 0..20_000, &filler);
    expect_in_order(&sub, 20_000).await;
    let stats = client.stats();
    assert!(stats.flood_handovers > 0, "{stats:?}");
    assert!(stats.driver_reads > 0 && stats.loop_reads > 0, "{stats:?}");
    // Calm again: the loop is asked back.
    until("the loop is wanted again", Duration::from_secs(5), || {
        io.wanted()
    })
    .await;
    fake.stop();
    client.close().await;
    sim.shutdown().await;
}

/// An action written from the caller's thread with a deadline shorter than the default still
/// times out on time: the driver, asleep until a later deadline, is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_written_by_the_caller_fires_on_time() {
    let sim = sim(Faults {
        ignore_pings: true,
        ..Faults::default()
    })
    .await;
    let client = Client::connect(Options {
        action_timeout: Duration::from_secs(30),
        ..options(&sim)
    })
    .await
    .unwrap();
    assert!(client.loop_io().is_some());
    let started = Instant::now();
    let result = client
        .action_with(
            Action::new("Ping"),
            amiwire::proto::Expect::Auto,
            Some(Duration::from_millis(200)),
        )
        .await;
    let took = started.elapsed();
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(700),
        "{took:?}"
    );
    client.close().await;
    sim.shutdown().await;
}

/// The session's end, seen by the loop's read, ends the session for the driver too: pending
/// actions fail with ConnectionLost and the loop stops watching the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_seen_by_the_loop_fails_what_is_pending() {
    let sim = sim(Faults {
        ignore_pings: true,
        ..Faults::default()
    })
    .await;
    let client = Client::connect(Options {
        reconnect: amiwire::transport::Reconnect {
            enabled: false,
            ..Default::default()
        },
        ..options(&sim)
    })
    .await
    .unwrap();
    let io = client.loop_io().unwrap();
    let fake = FakeLoop::start(io.clone(), Duration::from_micros(200));
    loop_reads_one(&client).await;
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.action(Action::new("Ping")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.disconnect_all();
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(Error::ConnectionLost { .. })),
        "{result:?}"
    );
    until("the loop stops watching", Duration::from_secs(5), || {
        !io.wanted()
    })
    .await;
    fake.stop();
    client.close().await;
    sim.shutdown().await;
}
