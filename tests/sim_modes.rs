//! Firehose, replay and TLS modes.

#![allow(clippy::unwrap_used)]

mod sim_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use amiwire::proto::Decoder;
use amiwire::sim::{Firehose, FirehoseSource, SimConfig, Tls};
use sim_support::{Conn, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/asterisk-22"
);

async fn count_messages(c: &mut Conn, want: usize) -> usize {
    let mut n = 0;
    while n < want {
        match c.next_within(Duration::from_secs(20)).await {
            Some(_) => n += 1,
            None => break,
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_streams_the_load_capture_after_login() {
    let path = format!("{FIXTURES}/event-stream-load.raw");
    let sim = start(SimConfig::new().firehose(Firehose {
        source: FirehoseSource::File(path.into()),
        repeats: 1,
        after_action: None,
    }))
    .await;
    let t0 = Instant::now();
    let mut c = Conn::admin(&sim, "off").await;
    // The capture holds 21,829 messages; its login reply is skipped.
    let got = count_messages(&mut c, 21_828).await;
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(got, 21_828);
    eprintln!(
        "firehose: {got} messages in {secs:.3} s ({:.0} msg/s, {} build)",
        got as f64 / secs,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    // The session still answers afterwards.
    c.send("Action: Ping\r\nActionID: after\r\n\r\n").await;
    assert_eq!(c.reply("after").await.get("Ping").as_deref(), Some("Pong"));
    sim.shutdown().await;
}

#[tokio::test]
async fn firehose_can_wait_for_a_trigger_action() {
    let sim = start(SimConfig::new().firehose(Firehose {
        source: FirehoseSource::Generated { count: 50 },
        repeats: 1,
        after_action: Some("UserEvent".into()),
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    // Nothing streams before the trigger: the Ping's reply is the next message.
    c.send("Action: Ping\r\nActionID: first\r\n\r\n").await;
    let next = c.next().await.unwrap();
    assert_eq!(next.action_id().as_deref(), Some("first"));
    c.send("Action: UserEvent\r\nActionID: go\r\nUserEvent: go\r\n\r\n")
        .await;
    assert_eq!(
        c.reply("go").await.get("Message").as_deref(),
        Some("Event Sent")
    );
    let mut events = 0;
    while events < 50 {
        if c.next().await.unwrap().is_event() {
            events += 1;
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn firehose_generated_events_repeat() {
    let sim = start(SimConfig::new().firehose(Firehose {
        source: FirehoseSource::Generated { count: 500 },
        repeats: 3,
        after_action: None,
    }))
    .await;
    let mut c = Conn::admin(&sim, "off").await;
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..1500 {
        let m = c.next().await.unwrap();
        names.insert(m.event_name().unwrap().into_owned());
    }
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["Newexten", "VarSet"]
    );
    c.send("Action: Ping\r\nActionID: p\r\n\r\n").await;
    let first = c.next().await.unwrap();
    assert_eq!(
        first.action_id().as_deref(),
        Some("p"),
        "exactly 1500 events"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn replay_serves_a_recorded_transcript() {
    let path = format!("{FIXTURES}/tcp-login-logoff.jsonl");
    let sim = start(SimConfig::new().replay(path)).await;
    let mut c = Conn::connect(&sim).await;
    c.send("Action: Login\r\nActionID: login-1\r\nUsername: admin\r\nSecret: amiwire\r\n\r\n")
        .await;
    let msgs = c
        .until(|m| m.event_name().as_deref() == Some("SuccessfulAuth"))
        .await;
    assert_eq!(msgs.len(), 3);
    // The recorded bytes, recorded values included.
    assert_eq!(msgs[2].get("SessionID").as_deref(), Some("0x7f96e80011a0"));
    c.send("Action: Ping\r\nActionID: ping-1\r\n\r\n").await;
    assert_eq!(
        c.reply("ping-1").await.get("Timestamp").as_deref(),
        Some("1795690978.459736")
    );
    c.send("Action: Logoff\r\nActionID: logoff-1\r\n\r\n").await;
    assert_eq!(
        c.reply("logoff-1").await.response().as_deref(),
        Some("Goodbye")
    );
    assert!(c.closes_within(Duration::from_secs(2)).await);
    sim.shutdown().await;
}

async fn tls_banner(sim: &amiwire::sim::SimHandle, trusted_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    for cert in CertificateDer::pem_slice_iter(trusted_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut dec = Decoder::new();
    let mut buf = [0u8; 4096];
    while dec.banner().is_none() {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0);
        dec.feed(&buf[..n]);
        let _ = dec.next_message();
    }
    tls.write_all(b"Action: Login\r\nActionID: l\r\nUsername: admin\r\nSecret: amiwire\r\nEvents: off\r\n\r\n")
        .await
        .unwrap();
    loop {
        if let Some(m) = dec.next_message() {
            let m = m.unwrap();
            assert_eq!(m.get("Message").as_deref(), Some("Authentication accepted"));
            break;
        }
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0);
        dec.feed(&buf[..n]);
    }
    dec.banner().unwrap().to_string()
}

#[tokio::test]
async fn tls_with_a_generated_certificate() {
    let sim = start(SimConfig::new().tls(Tls::Generate)).await;
    let pem = sim.tls_cert_pem().unwrap().to_string();
    let banner = tokio::time::timeout(Duration::from_secs(10), tls_banner(&sim, &pem))
        .await
        .unwrap();
    assert_eq!(banner, "Asterisk Call Manager/11.0.0");
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_with_a_given_certificate() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.pem();
    let sim = start(SimConfig::new().tls(Tls::Pem {
        cert: cert.clone(),
        key: made.signing_key.serialize_pem(),
    }))
    .await;
    assert_eq!(sim.tls_cert_pem(), Some(cert.as_str()));
    let banner = tokio::time::timeout(Duration::from_secs(10), tls_banner(&sim, &cert))
        .await
        .unwrap();
    assert_eq!(banner, "Asterisk Call Manager/11.0.0");
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_tls_material_is_an_error_not_a_panic() {
    let err = amiwire::sim::Simulator::start(SimConfig::new().tls(Tls::Pem {
        cert: "not a pem".into(),
        key: "secret-key-material".into(),
    }))
    .await
    .err()
    .unwrap();
    assert!(!err.to_string().contains("secret-key-material"));
}
