//! The handle on one AMI connection: submit, cancel, subscribe, close, and what the
//! connection knows. Starting its driver is in `start.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, Reply, Request};
use super::events::{Filter, Overflow, QueueLimits, Subscription};
use super::live::Live;
use super::loop_io::LoopIo;
use super::outcome::closed;
use super::shared::{Info, Shared, Stats};
use super::state::{State, Transition};
use crate::error::Result;
use crate::proto::live::View;
use crate::proto::{Action, Expect, Outcome};

/// A handle on one AMI connection. Cheap to clone; the connection ends with `close()` or
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    pub(super) tx: mpsc::UnboundedSender<Command>,
    pub(super) shared: Arc<Shared>,
    pub(super) default_timeout: Duration,
}

impl Client {
    pub fn submit(&self, request: Request) -> Result<()> {
        request.action.validate()?;
        self.submit_all(vec![request])
    }

    /// Sends already validated actions at once: written from this thread when the session
    /// allows it (`LoopIo`), else handed to the driver. If the client is closed, each one's
    /// waiter learns it.
    pub fn submit_all(&self, requests: Vec<Request>) -> Result<()> {
        self.shared
            .expect(requests.iter().filter_map(|r| match r.reply {
                Reply::Queued(token) => Some(token),
                _ => None,
            }));
        if let Err(requests) = self.shared.send_requests(&self.tx, requests) {
            for request in requests {
                self.shared
                    .deliver(request.reply, Err(self.shared.closed_error()));
            }
            return Err(self.shared.closed_error());
        }
        Ok(())
    }

    /// Sends an action and waits for its outcome. `Response: Error` is `Err(ActionFailed)`.
    pub async fn action_with(
        &self,
        action: Action,
        expect: Expect,
        timeout: Option<Duration>,
    ) -> Result<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.submit(Request {
            action,
            expect,
            timeout,
            reply: Reply::Oneshot(tx),
        })?;
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Sends an action and returns its outcome with the live view as of the point in the
    /// stream where the outcome completed (see `Reply::Probe`).
    pub async fn probe(
        &self,
        action: Action,
        timeout: Option<Duration>,
    ) -> Result<(Outcome, Option<View>)> {
        let (tx, rx) = oneshot::channel();
        self.submit(Request {
            action,
            expect: Expect::Auto,
            timeout,
            reply: Reply::Probe(tx),
        })?;
        let (outcome, view) = rx.await.unwrap_or_else(|_| (Err(closed()), None));
        Ok((outcome?, view))
    }

    pub async fn action(&self, action: Action) -> Result<Outcome> {
        self.action_with(action, Expect::Auto, None).await
    }

    /// Forget a `Reply::Queued` action (its asyncio task was cancelled).
    pub fn cancel(&self, token: u64) {
        if let Ok(mut c) = self.shared.completions.lock() {
            c.outstanding.remove(&token);
        }
        if self.shared.direct().is_some_and(|d| d.cancel(token)) {
            return;
        }
        let _ = self.tx.send(Command::Cancel(token));
    }

    /// The session the calling loop may read and write itself, if the current one allows it
    /// (plain TCP, not recorded).
    pub fn loop_io(&self) -> Option<Arc<dyn LoopIo>> {
        self.shared.direct()
    }

    /// A queue of at most `capacity` events (and the default bytes).
    pub fn subscribe(
        &self,
        filter: Filter,
        capacity: usize,
        overflow: Overflow,
    ) -> Arc<Subscription> {
        let limits = QueueLimits {
            max_events: capacity,
            ..QueueLimits::default()
        };
        self.subscribe_with(filter, limits, overflow)
    }

    /// A queue within `limits`, its bytes counted against the client's `max_event_bytes`.
    pub fn subscribe_with(
        &self,
        filter: Filter,
        limits: QueueLimits,
        overflow: Overflow,
    ) -> Arc<Subscription> {
        let sub = Arc::new(Subscription::bounded(
            filter,
            limits,
            overflow,
            self.shared.event_budget.clone(),
        ));
        if let Ok(mut subs) = self.shared.subs.lock() {
            subs.retain(|s| !s.is_closed());
            subs.push(sub.clone());
        }
        // Checked after joining: a shutdown in between has either ended it or left it to us.
        if self.state() == State::Closed {
            match self.shared.failure.lock().ok().and_then(|f| f.clone()) {
                Some(reason) => sub.fail(&reason),
                None => sub.close(),
            };
        }
        sub
    }

    pub fn unsubscribe(&self, sub: &Arc<Subscription>) {
        sub.discard();
        if let Ok(mut subs) = self.shared.subs.lock() {
            subs.retain(|s| !Arc::ptr_eq(s, sub));
        }
    }

    /// Logs off and closes; `done` learns when the socket is closed.
    pub fn close_with(&self, done: Reply) {
        if let Reply::Queued(token) = done {
            self.shared.expect(std::iter::once(token));
        }
        if let Err(rejected) = self.tx.send(Command::Close(done)) {
            if let Command::Close(done) = rejected.0 {
                self.shared.deliver(done, Err(closed()));
            }
        }
    }

    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        self.close_with(Reply::Oneshot(tx));
        let _ = rx.await;
    }

    pub fn take_completions(&self) -> Vec<(u64, Result<Outcome>)> {
        self.shared
            .completions
            .lock()
            .map(|mut c| std::mem::take(&mut c.done))
            .unwrap_or_default()
    }

    pub fn state(&self) -> State {
        self.shared
            .state
            .lock()
            .map(|s| s.current)
            .unwrap_or(State::Closed)
    }

    pub fn state_reason(&self) -> Option<String> {
        self.shared.state.lock().ok().and_then(|s| s.reason.clone())
    }

    /// How many times the state changed so far.
    pub fn state_changes(&self) -> u64 {
        self.shared.state.lock().map(|s| s.changes).unwrap_or(0)
    }

    /// The changes after change number `seq`, oldest first (at most the last 32).
    pub fn transitions_since(&self, seq: u64) -> Vec<Transition> {
        self.shared
            .state
            .lock()
            .map(|s| s.recent.iter().filter(|t| t.seq > seq).cloned().collect())
            .unwrap_or_default()
    }

    pub fn info(&self) -> Info {
        self.shared
            .info
            .lock()
            .map(|i| i.clone())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            queued_event_bytes: self.shared.event_budget.used(),
            max_event_bytes: self.shared.event_budget.limit(),
            ..self.shared.stats.lock().map(|s| *s).unwrap_or_default()
        }
    }

    /// The live state, when the client keeps one (`Options::live`).
    pub fn live(&self) -> Option<&Arc<Live>> {
        self.shared.live.as_ref()
    }

    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }
}

/// The byte stream a TCP driver owns, plain or TLS. (Declared here because `tls.rs` names it
/// `client::StreamBox`.)
pub(super) trait StreamBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> StreamBox for T {}
