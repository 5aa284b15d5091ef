//! The one lifecycle of every driver: open a session (connect, log in), serve it, and when it
//! is lost, reconnect with the one backoff (reset only after a session stayed up) or shut
//! down. The states, the gaps event streams see, the recording and the final shutdown are
//! decided here, once; a driver only knows how its bytes move (`Driver`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::command::{Command, Reply};
use super::deadline::deadline_after;
use super::events::Subscription;
use super::options::Options;
use super::outcome::{closed, local_outcome, lost};
use super::record::Recorder;
use super::shared::Shared;
use super::state::State;
use crate::error::{Error, Result};

/// How a served session ended.
pub(super) enum End {
    UserClosed(Reply),
    HandlesDropped,
    Lost(String),
}

impl End {
    /// After a logoff: the user's close (`reply` learns it is done), or every handle dropped.
    pub(super) fn logged_off(reply: Option<Reply>) -> End {
        match reply {
            Some(reply) => End::UserClosed(reply),
            None => End::HandlesDropped,
        }
    }
}

/// What the supervisor and its driver share: the options, the command queue from the
/// handles, the state they publish, and the transcript.
pub(super) struct Link {
    pub(super) options: Options,
    pub(super) rx: mpsc::UnboundedReceiver<Command>,
    pub(super) shared: Arc<Shared>,
    pub(super) recorder: Option<Recorder>,
}

impl Link {
    pub(super) fn new(
        options: Options,
        rx: mpsc::UnboundedReceiver<Command>,
        shared: Arc<Shared>,
    ) -> Link {
        // A transcript is a socket's bytes: over HTTP there is none (the driver says so).
        let socket = options.http.is_none();
        let recorder = options.record.as_ref().filter(|_| socket).and_then(|path| {
            Recorder::create(path)
                .map_err(|e| warn!("amiwire: cannot record to {}: {e}", path.display()))
                .ok()
        });
        Link {
            options,
            rx,
            shared,
            recorder,
        }
    }
}

/// One way of moving AMI: TCP (plain or TLS) or HTTP.
pub(super) trait Driver: Send {
    type Session: Send;

    fn link(&mut self) -> &mut Link;

    /// Connects and sets a session up (login, probe, and the replay of what shaped the
    /// previous session).
    fn open(&mut self) -> impl Future<Output = Result<Self::Session>> + Send;

    /// Serves the handles' commands until the session ends.
    fn serve(&mut self, session: &mut Self::Session) -> impl Future<Output = End> + Send;

    /// The session ended: every action it still owes fails with `error`.
    fn end_session(&mut self, session: Self::Session, error: &Error);
}

/// Runs `driver` until the client is closed or the connection fails for good; `ready`
/// learns how the first login went.
pub(super) async fn supervise<D: Driver>(mut driver: D, ready: Reply) {
    let mut ready = Some(ready);
    let mut attempt: u32 = 0;
    let policy = driver.link().options.reconnect.clone();
    let mut backoff = Backoff::new(&policy);
    loop {
        // Begun before the session opens: its first events (HTTP polls from the login on) are
        // held for the rebuild, not applied to the state from before the gap.
        let rebuild = driver.link().shared.begin_live_rebuild();
        let mut session = match driver.open().await {
            Ok(session) => session,
            Err(e) => {
                // Wrong credentials never become a retry loop, and the first connect reports
                // its failure rather than retrying in the background.
                let fatal = matches!(e, Error::Auth(_) | Error::Usage(_)) || ready.is_some();
                if fatal || !policy.enabled {
                    let reason = format!("connect failed: {e}");
                    if let Some(ready) = ready.take() {
                        driver.link().shared.deliver(ready, Err(e));
                    }
                    return shutdown(driver.link(), End::Lost(reason));
                }
                attempt += 1;
                if policy.max_attempts != 0 && attempt > policy.max_attempts {
                    let reason = format!(
                        "gave up after {} reconnect attempts; the last: {e}",
                        attempt - 1
                    );
                    return shutdown(driver.link(), End::Lost(reason));
                }
                warn!("amiwire reconnect attempt {attempt} failed: {e}");
                match wait(driver.link(), backoff.next_wait()).await {
                    Some(end) => return shutdown(driver.link(), end),
                    None => continue,
                }
            }
        };
        attempt = 0;
        let link = driver.link();
        let first = ready.take();
        if first.is_none() {
            link.shared.stats_mut(|s| s.reconnects += 1);
        }
        // The rebuild's lists leave first, ahead of any action sent on the news below.
        link.shared
            .rebuild_live(rebuild, link.options.action_timeout);
        // Connected before `ready` is answered: whoever wakes on it must see the state.
        link.shared.set_state(State::Connected, None);
        if let Some(ready) = first {
            let accepted = b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n";
            link.shared.deliver(ready, Ok(local_outcome(accepted)));
        }
        let up_since = Instant::now();
        let end = driver.serve(&mut session).await;
        backoff.session_ended(up_since.elapsed());
        let error = match &end {
            End::Lost(reason) => lost(reason.clone()),
            _ => closed(),
        };
        driver.end_session(session, &error);
        let link = driver.link();
        if let Some(rec) = link.recorder.as_mut() {
            rec.flush();
        }
        match end {
            End::Lost(reason) if policy.enabled => {
                link.shared.set_state(State::Reconnecting, Some(reason));
                link.shared.each_sub(Subscription::note_gap);
                if let Some(rec) = link.recorder.as_mut() {
                    rec.next_connection();
                }
                if let Some(end) = wait(link, backoff.next_wait()).await {
                    return shutdown(link, end);
                }
            }
            end => return shutdown(link, end),
        }
    }
}

/// Final state: fail what is queued, end subscriptions (failed, with the reason, when the
/// connection broke: an event stream must not end as if it had been closed on purpose).
fn shutdown(link: &mut Link, end: End) {
    let goodbye = || {
        Ok(local_outcome(
            b"Response: Goodbye\r\nMessage: Closed\r\n\r\n",
        ))
    };
    let (done, reason, failed) = match end {
        End::UserClosed(reply) => (Some(reply), "closed by the user".to_owned(), false),
        End::HandlesDropped => (None, "all handles dropped".to_owned(), false),
        End::Lost(reason) => (None, reason, true),
    };
    link.rx.close();
    while let Ok(cmd) = link.rx.try_recv() {
        match cmd {
            Command::Actions(reqs) => {
                for req in reqs {
                    let error = Error::Closed {
                        reason: reason.clone(),
                    };
                    link.shared.deliver(req.reply, Err(error));
                }
            }
            Command::Close(reply) => link.shared.deliver(reply, goodbye()),
            Command::Cancel(_) => {}
        }
    }
    link.shared.finish(&reason, failed);
    if let Some(done) = done {
        link.shared.deliver(done, goodbye());
    }
}

/// Waits before the next attempt, failing actions submitted meanwhile (nothing is queued
/// for later: re-sending non-idempotent actions behind the user's back is how peers
/// double-dial). Returns `Some` if the user closed meanwhile.
async fn wait(link: &mut Link, wait: Duration) -> Option<End> {
    let until = deadline_after(Instant::now(), wait);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return None,
            cmd = link.rx.recv() => match cmd {
                None => return Some(End::HandlesDropped),
                Some(Command::Close(reply)) => return Some(End::UserClosed(reply)),
                Some(Command::Actions(reqs)) => {
                    for req in reqs {
                        link.shared.deliver(req.reply, Err(lost("not connected (reconnecting)")));
                    }
                }
                Some(Command::Cancel(_)) => {}
            }
        }
    }
}
