//! The loop's submit against a busy session: it never waits for the lock's holder, and what it
//! queued leaves first, in order.

#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::DirectSession;
use crate::proto::{Action, ActionIds, Expect, Replay};
use crate::transport::command::{Reply, Request};
use crate::transport::loop_io::LoopIo;
use crate::transport::options::Options;
use crate::transport::shared::Shared;
use crate::transport::tcp::core::Core;

/// A session over a connected socket pair; the other end is returned to read what it wrote.
fn session() -> (Arc<DirectSession>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(1 << 20, None, tx.downgrade()));
    let core = Core::new(
        shared,
        &Options::default(),
        ActionIds::with_prefix("t"),
        Replay::default(),
    );
    (DirectSession::new(ours, core), theirs)
}

fn ping(id: &str) -> Request {
    Request {
        action: Action::new("Ping").with_action_id(id),
        expect: Expect::Auto,
        timeout: None,
        reply: Reply::Keepalive,
    }
}

#[test]
fn a_submit_to_a_busy_session_returns_at_once_and_its_actions_leave_first() {
    let (session, mut theirs) = session();
    let busy = session.lock();
    let (done_tx, done_rx) = std_mpsc::channel();
    let submitter = session.clone();
    std::thread::spawn(move || {
        let result = submitter.submit(vec![ping("a"), ping("b")]);
        done_tx.send(result.is_ok()).unwrap();
    });
    // Returns while the lock is still held: queued, not waited for.
    assert!(done_rx.recv_timeout(Duration::from_secs(5)).unwrap());
    drop(busy);
    assert!(session.submit(vec![ping("c")]).is_ok());
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut wire = String::new();
    let mut buf = [0u8; 4096];
    while wire.matches("\r\n\r\n").count() < 3 {
        let n = theirs.read(&mut buf).unwrap();
        wire.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let ids: Vec<&str> = wire
        .lines()
        .filter_map(|l| l.strip_prefix("ActionID: "))
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}
