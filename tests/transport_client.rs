//! The tokio client against a small scripted AMI server on loopback.

#![allow(clippy::unwrap_used)] // tests may unwrap (project standard)

use std::time::Duration;

use amiwire::proto::{Action, Decoder, Expect, Message};
use amiwire::transport::{
    Client, Filter, Matcher, Options, Overflow, Reconnect, Reply, Request, State,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers like Asterisk 22 for the few actions these tests use. `Ping` with header
/// `Silent: yes` is never answered (to exercise deadlines); `Action: Drop` closes the socket.
async fn mock_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                sock.write_all(b"Asterisk Call Manager/11.0.0\r\n")
                    .await
                    .unwrap();
                let mut decoder = Decoder::new();
                decoder.set_expect_banner(false);
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    decoder.feed(&buf[..n]);
                    while let Some(Ok(msg)) = decoder.next_message() {
                        let id = msg.action_id().unwrap_or_default().into_owned();
                        let action = msg.get("Action").unwrap_or_default().to_ascii_lowercase();
                        let reply = match action.as_str() {
                            "login" if msg.get("Secret").as_deref() == Some("amiwire") => format!(
                                "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
                            ),
                            "login" => {
                                let _ = sock.write_all(format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n").as_bytes()).await;
                                return;
                            }
                            "coresettings" => format!(
                                "Response: Success\r\nActionID: {id}\r\nAMIversion: 11.0.0\r\nAsteriskVersion: 22.10.1\r\n\r\n"
                            ),
                            "ping" if msg.get("Silent").is_some() => String::new(),
                            "ping" => format!(
                                "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1.0\r\n\r\n"
                            ),
                            "coreshowchannels" => format!(
                                "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n\
                                 Event: Newexten\r\nPrivilege: dialplan,all\r\nChannel: X\r\n\r\n\
                                 Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: A\r\n\r\n\
                                 Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: B\r\n\r\n\
                                 Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 2\r\n\r\n"
                            ),
                            "originate" => format!(
                                "Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\n\
                                 Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: other-1\r\nResponse: Success\r\nReason: 4\r\n\r\n\
                                 Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {id}\r\nResponse: Failure\r\nChannel: Local/999@test\r\nReason: 0\r\n\r\n"
                            ),
                            "drop" => return,
                            "logoff" => {
                                let _ = sock.write_all(format!("Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n").as_bytes()).await;
                                return;
                            }
                            _ => format!(
                                "Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.\r\n\r\n"
                            ),
                        };
                        // Write byte by byte sometimes, to exercise reassembly across reads.
                        sock.write_all(reply.as_bytes()).await.unwrap();
                    }
                }
            });
        }
    });
    (port, task)
}

fn options(port: u16) -> Options {
    Options {
        port,
        username: "admin".into(),
        secret: "amiwire".into(),
        action_timeout: Duration::from_secs(5),
        reconnect: Reconnect {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..Reconnect::default()
        },
        ..Options::default()
    }
}

#[tokio::test]
async fn login_ping_list_and_version() {
    let (port, _server) = mock_server().await;
    let client = Client::connect(options(port)).await.unwrap();
    assert_eq!(client.state(), State::Connected);
    let info = client.info();
    assert_eq!(info.banner.as_deref(), Some("Asterisk Call Manager/11.0.0"));
    assert_eq!(info.ami_version.as_deref(), Some("11.0.0"));
    assert_eq!(info.asterisk_version.as_deref(), Some("22.10.1"));

    let pong = client.action(Action::new("Ping")).await.unwrap();
    assert_eq!(pong.response.get("Ping").as_deref(), Some("Pong"));
    // Every byte read during login is decoded exactly once: nothing shows up twice.
    assert_eq!(client.stats().orphans, 0);

    let sub = client.subscribe(
        Filter {
            names: vec![Matcher::glob("New*").unwrap()],
            headers: vec![],
        },
        100,
        Overflow::DropOldest,
    );
    let list = client
        .action(Action::new("CoreShowChannels"))
        .await
        .unwrap();
    let channels: Vec<String> = list
        .events
        .iter()
        .map(|m| m.get("Channel").unwrap().into_owned())
        .collect();
    assert_eq!(channels, ["A", "B"]);
    assert!(list.list_items_match());
    // The unrelated event that fell inside the list reached the subscriber, the items did not.
    let batch = tokio::time::timeout(Duration::from_secs(2), sub.next_batch(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].event_name().as_deref(), Some("Newexten"));
    client.close().await;
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test]
async fn pipelined_actions_and_errors() {
    let (port, _server) = mock_server().await;
    let client = Client::connect(options(port)).await.unwrap();
    let pings: Vec<_> = (0..200)
        .map(|_| client.action(Action::new("Ping")))
        .collect();
    let results = futures_join(pings).await;
    assert!(results.iter().all(|r| {
        r.as_ref()
            .is_ok_and(|o| o.response.has_value("Ping", "Pong"))
    }));
    let err = client
        .action(Action::new("NoSuchAction"))
        .await
        .unwrap_err();
    match err {
        amiwire::Error::ActionFailed {
            message, response, ..
        } => {
            assert!(message.starts_with("Invalid/unknown command"), "{message}");
            assert!(response.has_value("Response", "Error"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn originate_is_tracked_and_foreign_responses_are_events() {
    let (port, _server) = mock_server().await;
    let client = Client::connect(options(port)).await.unwrap();
    let sub = client.subscribe(
        Filter {
            names: vec![Matcher::glob("OriginateResponse").unwrap()],
            headers: vec![],
        },
        10,
        Overflow::DropOldest,
    );
    let action = Action::new("Originate")
        .header("Channel", "Local/999@test")
        .header("Async", "true");
    let err = client
        .action_with(action, Expect::Originate, None)
        .await
        .unwrap_err();
    match err {
        amiwire::Error::ActionFailed {
            message, events, ..
        } => {
            assert_eq!(message, "OriginateResponse Failure, Reason 0");
            assert_eq!(
                events.last().unwrap().get("Channel").as_deref(),
                Some("Local/999@test")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Both the foreign OriginateResponse and ours reach event subscribers.
    let mut seen: Vec<Message> = Vec::new();
    while seen.len() < 2 {
        seen.extend(
            tokio::time::timeout(Duration::from_secs(2), sub.next_batch(10))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(seen[0].get("ActionID").as_deref(), Some("other-1"));
}

#[tokio::test]
async fn deadline_expires_and_disconnect_fails_pending_then_reconnects() {
    let (port, _server) = mock_server().await;
    let client = Client::connect(options(port)).await.unwrap();
    let silent = Action::new("Ping").header("Silent", "yes");
    let err = client
        .action_with(
            silent.clone(),
            Expect::Auto,
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, amiwire::Error::Timeout { .. }), "{err:?}");

    let sub = client.subscribe(Filter::default(), 10, Overflow::DropOldest);
    let waiting = client.action_with(silent, Expect::Auto, Some(Duration::from_secs(30)));
    let dropper = client.action(Action::new("Drop"));
    let (waiting, _) = tokio::join!(waiting, dropper);
    assert!(
        matches!(waiting, Err(amiwire::Error::ConnectionLost { .. })),
        "{waiting:?}"
    );
    // The driver reconnects by itself and the session works again.
    let mut ok = false;
    for _ in 0..100 {
        if client.state() == State::Connected && client.action(Action::new("Ping")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "no reconnect");
    assert_eq!(client.stats().reconnects, 1);
    assert_eq!(sub.stats().gaps, 1);
}

#[tokio::test]
async fn bad_credentials_fail_at_once_without_retry() {
    let (port, _server) = mock_server().await;
    let mut opts = options(port);
    opts.secret = "wrong".into();
    let err = Client::connect(opts).await.err().unwrap();
    assert!(matches!(err, amiwire::Error::Auth(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "secret leaked: {err}");
}

#[tokio::test]
async fn injection_is_refused_before_sending() {
    let (port, _server) = mock_server().await;
    let client = Client::connect(options(port)).await.unwrap();
    let err = client
        .action(Action::new("Setvar").header("Value", "x\r\nAction: Originate"))
        .await
        .unwrap_err();
    assert!(matches!(err, amiwire::Error::Usage(_)));
    assert!(client.action(Action::new("Ping")).await.is_ok());
}

/// Once armed, panics on the next wake-up: a stand-in for a bug that kills the driver task.
#[derive(Default)]
struct PanicOnWake {
    armed: std::sync::atomic::AtomicBool,
}

impl amiwire::transport::Wake for PanicOnWake {
    fn wake(&self) {
        let armed = self.armed.swap(false, std::sync::atomic::Ordering::SeqCst);
        assert!(!armed, "a bug in the driver task");
    }
}

/// Takes completions until `tokens` all arrived (or 5 s passed).
async fn completions_for(
    client: &Client,
    tokens: &[u64],
) -> std::collections::HashMap<u64, amiwire::Result<amiwire::proto::Outcome>> {
    let mut got = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokens.iter().any(|t| !got.contains_key(t)) && tokio::time::Instant::now() < deadline {
        got.extend(client.take_completions());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_task_that_dies_fails_every_action_it_still_owed() {
    let (port, _server) = mock_server().await;
    let waker = std::sync::Arc::new(PanicOnWake::default());
    let client = Client::spawn(
        options(port),
        Reply::Queued(0),
        Some(waker.clone()),
        &tokio::runtime::Handle::current(),
    );
    let login = completions_for(&client, &[0]).await;
    assert!(login[&0].is_ok(), "logged in");
    // The answered Ping's completion is the next wake-up: the driver dies there.
    waker.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let request = |action: Action, token: u64| Request {
        action,
        expect: Expect::Auto,
        timeout: None,
        reply: Reply::Queued(token),
    };
    let silent = || Action::new("Ping").header("Silent", "yes");
    client
        .submit_all(vec![
            request(silent(), 1),
            request(silent(), 2),
            request(Action::new("Ping"), 3),
        ])
        .unwrap();
    let results = completions_for(&client, &[1, 2, 3]).await;
    assert!(results[&3].is_ok(), "answered before the driver died");
    for token in [1, 2] {
        match &results[&token] {
            Err(amiwire::Error::Internal(why)) => {
                assert!(why.contains("driver task died"), "{why}")
            }
            other => panic!("token {token}: {other:?}"),
        }
    }
    assert_eq!(client.state(), State::Closed);
    assert_eq!(client.state_reason().as_deref(), Some("internal error"));
}
