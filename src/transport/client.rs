//! The AMI client: a cheap handle plus one driver task per connection.
//!
//! The driver owns the socket, the decoder, the correlator and every deadline. It reads
//! continuously and never waits on a consumer: replies go to their waiter (a oneshot, or the
//! completion queue the Python loop drains), events to the bounded subscriber queues. Writes
//! are coalesced and run concurrently with reads, so a server that stops reading cannot stop
//! us from reading. On connection loss every pending action fails at once with
//! `ConnectionLost`; the driver then reconnects with capped, jittered backoff, logs in again,
//! restores the event mask and the `Filter`s, and tells subscribers a gap happened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{debug, trace, warn};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::budget::ByteBudget;
use super::deadline::deadline_after;
use super::events::{Filter, Overflow, QueueLimits, Subscription, Wake};
use super::options::{Auth, Options};
use super::record::Recorder;
use crate::error::{Error, Result};
use crate::proto::{
    Action, ActionIds, Correlator, Decoder, Expect, Message, Outcome, Routed, md5_key,
};

/// Where an action's result goes.
pub enum Reply {
    Oneshot(oneshot::Sender<Result<Outcome>>),
    /// Pushed to the completion queue under this token; the waker is poked when the queue
    /// turns non-empty (the Python side resolves its future on the loop thread).
    Queued(u64),
    /// The driver's own keepalive Ping.
    Keepalive,
    /// Fire and forget (restoring filters after a reconnect).
    Ignore,
}

impl Reply {
    fn gone(&self) -> bool {
        matches!(self, Reply::Oneshot(tx) if tx.is_closed())
    }
}

pub struct Request {
    pub action: Action,
    pub expect: Expect,
    pub timeout: Option<Duration>,
    pub reply: Reply,
}

pub(super) enum Command {
    /// One or more actions, in order: a batch costs the driver one wake-up.
    Actions(Vec<Request>),
    Cancel(u64),
    Close(Reply),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Reconnecting,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Reconnecting => "reconnecting",
            State::Closed => "closed",
        }
    }
}

/// One change of connection state; `seq` counts changes from 1.
#[derive(Clone, Debug)]
pub struct Transition {
    pub seq: u64,
    pub state: State,
    pub reason: Option<String>,
}

/// How many recent transitions are kept for a loop that wakes late: enough for every change
/// of a reconnect storm between two wake-ups of a busy loop, bounded all the same.
const RECENT_TRANSITIONS: usize = 32;

struct StateLog {
    current: State,
    reason: Option<String>,
    changes: u64,
    recent: std::collections::VecDeque<Transition>,
}

impl Default for StateLog {
    fn default() -> Self {
        StateLog {
            current: State::Connecting,
            reason: None,
            changes: 0,
            recent: std::collections::VecDeque::with_capacity(RECENT_TRANSITIONS),
        }
    }
}

impl StateLog {
    fn record(&mut self, state: State, reason: Option<String>) {
        self.changes += 1;
        if self.recent.len() == RECENT_TRANSITIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(Transition {
            seq: self.changes,
            state,
            reason: reason.clone(),
        });
        self.reason = reason;
        self.current = state;
    }
}

#[derive(Clone, Debug, Default)]
pub struct Info {
    pub banner: Option<String>,
    pub ami_version: Option<String>,
    pub asterisk_version: Option<String>,
}

/// Counters a user can read to see what the connection went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub messages: u64,
    pub events: u64,
    pub orphans: u64,
    pub decode_errors: u64,
    pub reconnects: u64,
    pub bytes_read: u64,
    /// Bytes the event queues hold now, and the most they may (`max_event_bytes`).
    pub queued_event_bytes: usize,
    pub max_event_bytes: usize,
}

/// State shared between the handle(s) and the driver. No Python objects in here.
pub struct Shared {
    completions: Mutex<Completions>,
    waker: Mutex<Option<Arc<dyn Wake>>>,
    subs: Mutex<Vec<Arc<Subscription>>>,
    state: Mutex<StateLog>,
    pub(super) info: Mutex<Info>,
    stats: Mutex<Stats>,
    /// Why the connection failed for good, once it did.
    failure: Mutex<Option<String>>,
    /// The bytes every subscription's queue holds together (`Options::max_event_bytes`).
    event_budget: Arc<ByteBudget>,
}

impl Shared {
    fn new(max_event_bytes: usize) -> Shared {
        Shared {
            event_budget: Arc::new(ByteBudget::new("max_event_bytes", max_event_bytes)),
            completions: Mutex::new(Completions::default()),
            waker: Mutex::new(None),
            subs: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            state: Mutex::new(StateLog::default()),
            info: Mutex::new(Info::default()),
            stats: Mutex::new(Stats::default()),
        }
    }

    pub(super) fn wake(&self) {
        let waker = self.waker.lock().ok().and_then(|w| w.clone());
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(super) fn deliver(&self, reply: Reply, result: Result<Outcome>) {
        match reply {
            Reply::Oneshot(tx) => {
                let _ = tx.send(result);
            }
            Reply::Queued(token) => {
                if self.queue_completions(vec![(token, result)]) {
                    self.wake();
                }
            }
            Reply::Keepalive | Reply::Ignore => {}
        }
    }

    /// Appends to the completion queue; true if it was empty (the loop must be woken).
    fn queue_completions(&self, mut done: Vec<(u64, Result<Outcome>)>) -> bool {
        if done.is_empty() {
            return false;
        }
        match self.completions.lock() {
            Ok(mut c) => {
                for (token, _) in &done {
                    c.outstanding.remove(token);
                }
                let was_empty = c.done.is_empty();
                if was_empty {
                    std::mem::swap(&mut c.done, &mut done);
                } else {
                    c.done.append(&mut done);
                }
                was_empty
            }
            Err(_) => false,
        }
    }

    /// Tokens whose result will be queued here (a `Reply::Queued` handed to the driver).
    fn expect(&self, tokens: impl Iterator<Item = u64>) {
        if let Ok(mut c) = self.completions.lock() {
            c.outstanding.extend(tokens);
        }
    }

    /// The driver task died (a bug): every token it still owed fails now, so that no waiter
    /// waits for a result that cannot come.
    fn fail_outstanding(&self, why: &str) {
        let owed: Vec<u64> = match self.completions.lock() {
            Ok(mut c) => c.outstanding.drain().collect(),
            Err(_) => return,
        };
        let failed = owed
            .into_iter()
            .map(|token| (token, Err(Error::Internal(why.to_owned()))))
            .collect();
        if self.queue_completions(failed) {
            self.wake();
        }
    }

    pub(super) fn set_state(&self, state: State, reason: Option<String>) {
        // Logged once, by the Python side, which knows the user and the address.
        match self.state.lock() {
            Ok(mut log) if log.current != state => log.record(state, reason),
            _ => return,
        };
        self.wake();
    }

    /// Hands events to every subscriber; the last one gets them moved, not copied.
    pub(super) fn publish(&self, events: Vec<Message>) {
        if self.push_events(events) {
            self.wake();
        }
    }

    /// `publish` without the wake-up; true if a subscriber needs one.
    fn push_events(&self, events: Vec<Message>) -> bool {
        if events.is_empty() {
            return false;
        }
        let subs = self.subs.lock().map(|s| s.clone()).unwrap_or_default();
        let mut wake = false;
        if let Some((last, others)) = subs.split_last() {
            for sub in others {
                wake |= sub.push_batch(events.iter());
            }
            wake |= last.push_owned(events.into_iter().filter(|m| last.filter.matches(m)));
        }
        wake
    }

    pub(super) fn each_sub(&self, f: impl Fn(&Subscription) -> bool) {
        let subs = self.subs.lock().map(|s| s.clone()).unwrap_or_default();
        let mut wake = false;
        for sub in subs.iter() {
            wake |= f(sub);
        }
        if wake {
            self.wake();
        }
    }

    /// The client is closed for good: records why, publishes the state, and ends every
    /// subscription, failed with the reason when the connection broke (`failed`) rather than
    /// being closed on purpose. In that order, so that a subscriber joining meanwhile is ended
    /// the same way (see `Client::subscribe`).
    pub(super) fn finish(&self, reason: &str, failed: bool) {
        if let (true, Ok(mut slot)) = (failed, self.failure.lock()) {
            *slot = Some(reason.to_owned());
        }
        self.set_state(State::Closed, Some(reason.to_owned()));
        if failed {
            self.each_sub(|s| s.fail(reason));
        } else {
            self.each_sub(Subscription::close);
        }
    }

    /// The error for an action the closed client cannot take, with why it closed.
    pub(super) fn closed_error(&self) -> Error {
        match self.state.lock() {
            Ok(log) if log.current == State::Closed => Error::Closed {
                reason: log
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the client is closed".into()),
            },
            _ => closed(),
        }
    }

    pub(super) fn stats_mut(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
        }
    }
}

/// A handle on one AMI connection. Cheap to clone; the connection ends with `close()` or
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    default_timeout: Duration,
}

impl Client {
    /// Connects and logs in, returning once the session is ready.
    pub async fn connect(options: Options) -> Result<Client> {
        let (tx, rx) = oneshot::channel();
        let client = Client::spawn(
            options,
            Reply::Oneshot(tx),
            None,
            &tokio::runtime::Handle::current(),
        );
        match rx.await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal(
                "the connection task ended without answering".into(),
            )),
        }
    }

    /// Starts the driver on `runtime`; `ready` learns whether the first login worked (its
    /// outcome is a synthetic login response). The waker is installed before the driver
    /// starts, so not even the first completion can happen unannounced.
    pub fn spawn(
        options: Options,
        ready: Reply,
        waker: Option<Arc<dyn Wake>>,
        runtime: &tokio::runtime::Handle,
    ) -> Client {
        let (client, start) = Client::prepare(options, waker);
        start.start(ready, runtime);
        client
    }

    /// A client whose driver has not started yet: what is subscribed before `Start::start`
    /// sees the session from its first event (FullyBooted, and whatever happens as it opens).
    pub fn prepare(options: Options, waker: Option<Arc<dyn Wake>>) -> (Client, Start) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(options.max_event_bytes));
        if let Ok(mut slot) = shared.waker.lock() {
            *slot = waker;
        }
        let client = Client {
            tx,
            shared: shared.clone(),
            default_timeout: options.action_timeout,
        };
        (
            client,
            Start {
                options,
                rx,
                shared,
            },
        )
    }
    pub fn submit(&self, request: Request) -> Result<()> {
        request.action.validate()?;
        self.submit_all(vec![request])
    }

    /// Hands already validated actions to the driver at once. If the client is closed, each
    /// one's waiter learns it.
    pub fn submit_all(&self, requests: Vec<Request>) -> Result<()> {
        self.shared
            .expect(requests.iter().filter_map(|r| match r.reply {
                Reply::Queued(token) => Some(token),
                _ => None,
            }));
        self.tx
            .send(Command::Actions(requests))
            .map_err(|rejected| {
                if let Command::Actions(requests) = rejected.0 {
                    for request in requests {
                        self.shared
                            .deliver(request.reply, Err(self.shared.closed_error()));
                    }
                }
                self.shared.closed_error()
            })
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

    pub async fn action(&self, action: Action) -> Result<Outcome> {
        self.action_with(action, Expect::Auto, None).await
    }

    /// Forget a `Reply::Queued` action (its asyncio task was cancelled).
    pub fn cancel(&self, token: u64) {
        if let Ok(mut c) = self.shared.completions.lock() {
            c.outstanding.remove(&token);
        }
        let _ = self.tx.send(Command::Cancel(token));
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

    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }
}

pub(super) fn closed() -> Error {
    Error::Closed {
        reason: "the client is closed".into(),
    }
}

pub(super) fn lost(reason: impl Into<String>) -> Error {
    Error::ConnectionLost {
        reason: reason.into(),
    }
}

/// Turns a finished action into the caller's result: `Response: Error`, or an originate whose
/// `OriginateResponse` says Failure, becomes `ActionFailed` carrying everything that arrived.
pub(super) fn judge(action: &str, outcome: Outcome) -> Result<Outcome> {
    if outcome.is_success() {
        return Ok(outcome);
    }
    let message = match &outcome.complete {
        Some(c) if c.has_value("Response", "Failure") => {
            format!(
                "OriginateResponse Failure, Reason {}",
                c.get("Reason").as_deref().unwrap_or("?")
            )
        }
        _ => outcome
            .response
            .get("Message")
            .map(|m| m.into_owned())
            .unwrap_or_else(|| "Response: Error".into()),
    };
    let mut events = outcome.events;
    events.extend(outcome.complete);
    Err(Error::ActionFailed {
        action: action.to_owned(),
        message,
        response: Box::new(outcome.response),
        events,
    })
}

pub(super) trait StreamBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> StreamBox for T {}

struct Pending {
    reply: Reply,
    action: String,
    token: Option<u64>,
    started: Instant,
}

enum End {
    UserClosed(Reply),
    HandlesDropped,
    Lost(String),
}

/// The driver of a prepared client, not started yet.
pub struct Start {
    options: Options,
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
}

impl Start {
    /// Starts the driver on `runtime`; `ready` learns whether the first login worked.
    pub fn start(self, ready: Reply, runtime: &tokio::runtime::Handle) {
        let Start {
            options,
            rx,
            shared,
        } = self;
        if let Reply::Queued(token) = ready {
            shared.expect(std::iter::once(token));
        }
        let guard_shared = shared.clone();
        runtime.spawn(async move {
            // A panic in the driver must not leave waiters hanging: the guard task observes
            // the driver's JoinHandle and fails everything that is left.
            let result = match options.http.clone() {
                Some(http) => {
                    tokio::spawn(super::http::run(options, http, rx, shared, ready)).await
                }
                None => {
                    let driver = Driver {
                        options,
                        rx,
                        shared,
                        ids: ActionIds::new(),
                        setup: SessionSetup::default(),
                    };
                    tokio::spawn(driver.run(ready)).await
                }
            };
            if let Err(e) = result {
                warn!("amiwire driver ended abnormally: {e}");
                guard_shared.fail_outstanding(&format!("the connection's driver task died: {e}"));
                guard_shared.finish("internal error", true);
            }
        });
    }
}

/// Results for `Reply::Queued` waiters, and the tokens still owed one.
#[derive(Default)]
struct Completions {
    done: Vec<(u64, Result<Outcome>)>,
    outstanding: std::collections::HashSet<u64>,
}

/// What a new session (after a reconnect, or an HTTP re-login) needs to look like the old
/// one: the last `Events` mask and every `Filter` the user sent, to be sent again in order.
#[derive(Default)]
pub(super) struct SessionSetup {
    mask: Option<Action>,
    filters: Vec<Action>,
}

impl SessionSetup {
    /// Remembers `action` if it shapes the session.
    pub(super) fn note(&mut self, action: &Action) {
        if action.is("Filter") {
            self.filters.push(action.clone());
        } else if action.is("Events") {
            self.mask = Some(action.clone());
        }
    }

    pub(super) fn actions(&self) -> Vec<Action> {
        self.mask.iter().chain(&self.filters).cloned().collect()
    }
}

struct Driver {
    options: Options,
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    ids: ActionIds,
    /// The mask and filters a new session gets again.
    setup: SessionSetup,
}

struct Session {
    read: tokio::io::ReadHalf<Box<dyn StreamBox>>,
    write: tokio::io::WriteHalf<Box<dyn StreamBox>>,
    decoder: Decoder,
    correlator: Correlator<Pending>,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    recorder: Option<Recorder>,
    last_read: Instant,
    keepalive_out: bool,
    /// Decoded while waiting for the banner, before anyone routes messages.
    backlog: std::collections::VecDeque<std::result::Result<Message, crate::error::DecodeError>>,
}

impl Session {
    fn next_message(&mut self) -> Option<std::result::Result<Message, crate::error::DecodeError>> {
        self.backlog
            .pop_front()
            .or_else(|| self.decoder.next_message())
    }
}

impl Driver {
    async fn run(mut self, ready: Reply) {
        let mut ready = Some(ready);
        let mut recorder = match &self.options.record {
            Some(path) => match Recorder::create(path) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!("amiwire: cannot record to {}: {e}", path.display());
                    None
                }
            },
            None => None,
        };
        let mut attempt: u32 = 0;
        let mut backoff = Backoff::new(&self.options.reconnect);
        loop {
            let connected = self.open(recorder.take()).await;
            let mut session = match connected {
                Ok(session) => session,
                Err(e) => {
                    let fatal = matches!(e, Error::Auth(_)) || ready.is_some();
                    if fatal || !self.options.reconnect.enabled {
                        let reason = format!("connect failed: {e}");
                        if let Some(ready) = ready.take() {
                            self.shared.deliver(ready, Err(e));
                        }
                        self.shutdown(End::Lost(reason));
                        return;
                    }
                    attempt += 1;
                    if self.options.reconnect.max_attempts != 0
                        && attempt > self.options.reconnect.max_attempts
                    {
                        self.shutdown(End::Lost(format!(
                            "gave up after {} reconnect attempts; the last: {e}",
                            attempt - 1
                        )));
                        return;
                    }
                    warn!("amiwire reconnect attempt {attempt} failed: {e}");
                    match self.wait(backoff.next_wait()).await {
                        Some(end) => {
                            self.shutdown(end);
                            return;
                        }
                        None => continue,
                    }
                }
            };
            attempt = 0;
            let first = ready.take();
            if first.is_none() {
                self.shared.stats_mut(|s| s.reconnects += 1);
                self.restore(&mut session);
            }
            // Connected before `ready` is answered: whoever wakes on it must see the state.
            self.shared.set_state(State::Connected, None);
            if let Some(ready) = first {
                self.shared.deliver(
                    ready,
                    Ok(local_outcome(
                        b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n",
                    )),
                );
            }
            let up_since = Instant::now();
            let end = self.serve(&mut session).await;
            backoff.session_ended(up_since.elapsed());
            let reason = match &end {
                End::Lost(reason) => reason.clone(),
                _ => "closed".into(),
            };
            let err = match &end {
                End::Lost(reason) => lost(reason.clone()),
                _ => closed(),
            };
            for expired in session.correlator.drain() {
                self.shared
                    .deliver(expired.token.reply, Err(clone_err(&err)));
            }
            if let Some(rec) = session.recorder.as_mut() {
                rec.flush();
            }
            recorder = session.recorder.take();
            match end {
                End::Lost(_) if self.options.reconnect.enabled => {
                    self.shared.set_state(State::Reconnecting, Some(reason));
                    self.shared.each_sub(Subscription::note_gap);
                    if let Some(rec) = recorder.as_mut() {
                        rec.next_connection();
                    }
                    if let Some(end) = self.wait(backoff.next_wait()).await {
                        self.shutdown(end);
                        return;
                    }
                }
                end => {
                    self.shutdown(end);
                    return;
                }
            }
        }
    }

    /// Final state: fail what is queued, end subscriptions (failed, with the reason, when the
    /// connection broke: an event stream must not end as if it had been closed on purpose).
    fn shutdown(&mut self, end: End) {
        let (done, reason, failed) = match end {
            End::UserClosed(reply) => (Some(reply), "closed by the user".to_owned(), false),
            End::HandlesDropped => (None, "all handles dropped".to_owned(), false),
            End::Lost(reason) => (None, reason, true),
        };
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Actions(reqs) => {
                    for req in reqs {
                        let error = Error::Closed {
                            reason: reason.clone(),
                        };
                        self.shared.deliver(req.reply, Err(error));
                    }
                }
                Command::Close(reply) => self.shared.deliver(
                    reply,
                    Ok(local_outcome(
                        b"Response: Goodbye\r\nMessage: Closed\r\n\r\n",
                    )),
                ),
                Command::Cancel(_) => {}
            }
        }
        self.shared.finish(&reason, failed);
        if let Some(done) = done {
            self.shared.deliver(
                done,
                Ok(local_outcome(
                    b"Response: Goodbye\r\nMessage: Closed\r\n\r\n",
                )),
            );
        }
    }

    /// Waits before the next attempt, failing actions submitted meanwhile (nothing is queued
    /// for later: re-sending non-idempotent actions behind the user's back is how peers
    /// double-dial). Returns `Some` if the user closed meanwhile.
    async fn wait(&mut self, wait: Duration) -> Option<End> {
        let until = deadline_after(Instant::now(), wait);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return None,
                cmd = self.rx.recv() => match cmd {
                    None => return Some(End::HandlesDropped),
                    Some(Command::Close(reply)) => return Some(End::UserClosed(reply)),
                    Some(Command::Actions(reqs)) => {
                        for req in reqs {
                            self.shared.deliver(req.reply, Err(lost("not connected (reconnecting)")));
                        }
                    }
                    Some(Command::Cancel(_)) => {}
                }
            }
        }
    }

    async fn open(&mut self, recorder: Option<Recorder>) -> Result<Session> {
        let o = &self.options;
        let addr = format!("{}:{}", o.host, o.port);
        let tcp = tokio::time::timeout(o.connect_timeout, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| {
                lost(format!(
                    "connect to {addr} timed out after {:?}",
                    o.connect_timeout
                ))
            })?
            .map_err(|e| lost(format!("connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn StreamBox> = match &o.tls {
            Some(tls) => super::tls::wrap(tcp, &o.host, tls, o.connect_timeout).await?,
            None => Box::new(tcp),
        };
        let (read, write) = tokio::io::split(stream);
        let mut session = Session {
            read,
            write,
            decoder: Decoder::new(),
            correlator: Correlator::new().with_list_limit(o.list_limit),
            out: Vec::with_capacity(4096),
            rbuf: Vec::with_capacity(64 * 1024),
            recorder,
            last_read: Instant::now(),
            keepalive_out: false,
            backlog: Default::default(),
        };
        // The banner is part of connecting; the login is an exchange like any action (Asterisk
        // delays a refusal by a second).
        tokio::time::timeout(o.connect_timeout, self.wait_banner(&mut session))
            .await
            .map_err(|_| {
                lost(format!(
                    "no AMI banner from {addr} within {:.1} s (is it an AMI port? a TLS one needs tls://)",
                    o.connect_timeout.as_secs_f64()
                ))
            })??;
        tokio::time::timeout(o.action_timeout, self.login(&mut session))
            .await
            .map_err(|_| lost(format!("no login answer from {addr} in time")))??;
        Ok(session)
    }

    async fn wait_banner(&self, s: &mut Session) -> Result<()> {
        while s.decoder.banner().is_none() {
            self.read_some(s).await?;
            while let Some(item) = s.decoder.next_message() {
                s.backlog.push_back(item);
            }
            if s.decoder.banner().is_none() && s.decoder.stream_offset() > 4096 {
                return Err(Error::Remote("no AMI banner in the first 4 KiB".into()));
            }
        }
        Ok(())
    }

    async fn login(&mut self, s: &mut Session) -> Result<()> {
        let banner = s.decoder.banner().unwrap_or_default().to_owned();
        let ami_version = banner.rsplit('/').next().map(str::to_owned);
        let o = self.options.clone();
        let mut login = Action::new("Login").header("Username", &o.username);
        match o.auth {
            Auth::Plain => login.push("Secret", &o.secret),
            Auth::Md5 => {
                let reply = self
                    .roundtrip(s, Action::new("Challenge").header("AuthType", "MD5"))
                    .await?;
                let challenge =
                    reply
                        .get("Challenge")
                        .map(|c| c.into_owned())
                        .ok_or_else(|| {
                            Error::Auth(format!(
                                "MD5 challenge refused: {}",
                                reply.get("Message").unwrap_or_default()
                            ))
                        })?;
                login.push("AuthType", "MD5");
                login.push("Key", md5_key(&challenge, &o.secret));
            }
        }
        login.push("Events", &o.events.0);
        let reply = self.roundtrip(s, login).await?;
        if !reply.has_value("Response", "Success") {
            let why = reply
                .get("Message")
                .map(|m| m.into_owned())
                .unwrap_or_else(|| "login refused".into());
            return Err(Error::Auth(format!("user {:?}: {why}", o.username)));
        }
        let mut info = Info {
            banner: Some(banner),
            ami_version,
            asterisk_version: None,
        };
        // The Asterisk version is worth one round trip; a user without `system` read gets
        // Permission denied and simply no version. A failed round trip (the socket died)
        // fails the login: announcing a dead session as connected made a server that drops
        // every session after login a reconnect storm at the initial backoff.
        let settings = self.roundtrip(s, Action::new("CoreSettings")).await?;
        info.asterisk_version = settings.get("AsteriskVersion").map(|v| v.into_owned());
        if let Ok(mut shared) = self.shared.info.lock() {
            *shared = info;
        }
        Ok(())
    }

    /// Before the main loop: one action, waiting for its response; events seen meanwhile
    /// go to the subscribers.
    async fn roundtrip(&mut self, s: &mut Session, action: Action) -> Result<Message> {
        let id = self.ids.next_id();
        action.encode(Some(&id), &mut s.out)?;
        let out = std::mem::take(&mut s.out);
        if let Some(rec) = s.recorder.as_mut() {
            rec.record("send", &out, false);
        }
        s.write
            .write_all(&out)
            .await
            .map_err(|e| lost(format!("write: {e}")))?;
        loop {
            while let Some(item) = s.next_message() {
                // An oversized message is dropped, as in the main loop; the session goes on.
                let msg = match item {
                    Ok(msg) => msg,
                    Err(e) => {
                        warn!("amiwire: dropped a message during login: {e}");
                        self.shared.stats_mut(|st| st.decode_errors += 1);
                        continue;
                    }
                };
                // Login traffic counts like the main loop's (a firehose may arrive right here).
                let event = msg.is_event();
                self.shared.stats_mut(|st| {
                    st.messages += 1;
                    st.events += u64::from(event);
                });
                if event {
                    self.shared.publish(vec![msg]);
                } else if msg.action_id().as_deref() == Some(id.as_str()) {
                    return Ok(msg);
                } else if msg.has_value("Response", "Error") && msg.action_id().is_none() {
                    // Asterisk answers a failed login without echoing the ActionID on some paths.
                    return Ok(msg);
                } else {
                    // Counted like the main loop's unmatched messages (garbage lands here).
                    self.shared.stats_mut(|st| st.orphans += 1);
                }
            }
            self.read_some(s).await?;
        }
    }

    async fn read_some(&self, s: &mut Session) -> Result<()> {
        s.rbuf.clear();
        let n = s
            .read
            .read_buf(&mut s.rbuf)
            .await
            .map_err(|e| lost(format!("read: {e}")))?;
        if let Some(rec) = s.recorder.as_mut() {
            rec.record("recv", &s.rbuf, n == 0);
        }
        if n == 0 {
            return Err(lost("the server closed the connection"));
        }
        self.shared.stats_mut(|st| st.bytes_read += n as u64);
        s.decoder.feed(&s.rbuf);
        s.rbuf.clear();
        Ok(())
    }

    fn restore(&mut self, s: &mut Session) {
        for action in self.setup.actions() {
            self.send(
                s,
                Request {
                    action,
                    expect: Expect::Auto,
                    timeout: None,
                    reply: Reply::Ignore,
                },
            );
        }
    }

    /// Registers and encodes one request (no I/O: the main loop writes `out`).
    fn send(&mut self, s: &mut Session, req: Request) {
        let id = match req.action.action_id() {
            Some(id) => id.to_owned(),
            None => self.ids.next_id(),
        };
        if let Err(e) = req.action.encode(Some(&id), &mut s.out) {
            self.shared.deliver(req.reply, Err(e));
            return;
        }
        if !matches!(req.reply, Reply::Ignore) {
            self.setup.note(&req.action);
        }
        let timeout = req.timeout.unwrap_or(self.options.action_timeout);
        let now = Instant::now();
        let token = match req.reply {
            Reply::Queued(t) => Some(t),
            _ => None,
        };
        let pending = Pending {
            reply: req.reply,
            action: req.action.name().to_owned(),
            token,
            started: now,
        };
        if let Err(pending) = s.correlator.register(
            id.clone(),
            req.expect,
            Some(deadline_after(now, timeout).into_std()),
            pending,
        ) {
            let len = s.out.len();
            // Take the bytes back: nothing is sent for a refused action.
            if let Ok(bytes) = req.action.to_bytes(Some(&id)) {
                s.out.truncate(len.saturating_sub(bytes.len()));
            }
            self.shared.deliver(
                pending.reply,
                Err(Error::Usage(format!(
                    "ActionID {id:?} is already in flight"
                ))),
            );
        }
    }

    async fn serve(&mut self, s: &mut Session) -> End {
        // Anything already decoded during login belongs to the stream.
        if let Err(reason) = self.process(s) {
            return End::Lost(reason);
        }
        let keepalive = self.options.keepalive;
        loop {
            let next_deadline = s.correlator.next_deadline().map(Instant::from_std);
            let keepalive_at = keepalive
                .filter(|_| !s.keepalive_out)
                .map(|k| deadline_after(s.last_read, k));
            // Never longer than a default action deadline: a new action's deadline is then
            // never earlier than the timer, and arming an earlier timer from inside the
            // runtime makes tokio wake its own driver (an eventfd write and an extra epoll
            // round for each action of a sequential caller). A wake with nothing due is cheap.
            let idle_wake = deadline_after(Instant::now(), self.options.action_timeout);
            let sleep_until = [next_deadline, keepalive_at, Some(idle_wake)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(idle_wake);
            // Checked against the clock, not only by the timer: under a flood the socket is
            // always readable and tokio's timer wheel may not turn for a while.
            let due = [next_deadline, keepalive_at].into_iter().flatten().min();
            if due.is_some_and(|due| Instant::now() >= due) {
                if let Some(reason) = self.tick(s) {
                    return End::Lost(reason);
                }
                continue;
            }
            let writing = !s.out.is_empty();
            // Commands, writes and the timer come before the read: a socket that stays
            // readable must not starve them. One read is at most `rbuf`'s capacity (64 KiB),
            // so every turn of this loop is short.
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(sleep_until) => {
                    if let Some(reason) = self.tick(s) {
                        return End::Lost(reason);
                    }
                }
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { return self.logoff(s, None).await };
                    if let Some(end) = self.command(s, cmd) {
                        return match end {
                            End::UserClosed(reply) => self.logoff(s, Some(reply)).await,
                            other => other,
                        };
                    }
                    // Coalesce everything already queued into one write.
                    while let Ok(cmd) = self.rx.try_recv() {
                        if let Some(end) = self.command(s, cmd) {
                            return match end {
                                End::UserClosed(reply) => self.logoff(s, Some(reply)).await,
                                other => other,
                            };
                        }
                    }
                }
                written = s.write.write(&s.out), if writing => {
                    match written {
                        Ok(0) => return End::Lost("write: connection closed".into()),
                        Ok(n) => {
                            if let Some(rec) = s.recorder.as_mut() { rec.record("send", s.out.get(..n).unwrap_or_default(), false); }
                            s.out.drain(..n);
                        }
                        Err(e) => return End::Lost(format!("write: {e}")),
                    }
                }
                read = s.read.read_buf(&mut s.rbuf) => {
                    match read {
                        Ok(0) => {
                            if let Some(rec) = s.recorder.as_mut() { rec.record("recv", b"", true); }
                            return End::Lost("the server closed the connection".into());
                        }
                        Ok(n) => {
                            s.last_read = Instant::now();
                            self.shared.stats_mut(|st| st.bytes_read += n as u64);
                            if let Some(rec) = s.recorder.as_mut() { rec.record("recv", &s.rbuf, false); }
                            s.decoder.feed(&s.rbuf);
                            s.rbuf.clear();
                            if let Err(reason) = self.process(s) {
                                return End::Lost(reason);
                            }
                        }
                        Err(e) => return End::Lost(format!("read: {e}")),
                    }
                }
            }
        }
    }

    fn command(&mut self, s: &mut Session, cmd: Command) -> Option<End> {
        match cmd {
            Command::Actions(reqs) => {
                for req in reqs {
                    self.send(s, req);
                }
            }
            Command::Cancel(token) => {
                s.correlator.cancel_where(|p| p.token == Some(token));
            }
            Command::Close(reply) => return Some(End::UserClosed(reply)),
        }
        None
    }

    /// Deadlines and keepalive. Returns a reason when the connection must be dropped.
    fn tick(&mut self, s: &mut Session) -> Option<String> {
        let now = Instant::now();
        s.correlator.cancel_where(|p| p.reply.gone());
        for expired in s.correlator.expire(now.into_std()) {
            let pending = expired.token;
            if matches!(pending.reply, Reply::Keepalive) {
                return Some("keepalive Ping unanswered: the connection is half-open".into());
            }
            let err = Error::Timeout {
                action: pending.action.clone(),
                action_id: expired.action_id,
                seconds: now.duration_since(pending.started).as_secs_f64(),
                partial: expired.partial.map(Box::new),
            };
            self.shared.deliver(pending.reply, Err(err));
        }
        if let Some(interval) = self.options.keepalive {
            if !s.keepalive_out && now >= deadline_after(s.last_read, interval) {
                s.keepalive_out = true;
                let timeout = interval.min(Duration::from_secs(10));
                self.send(
                    s,
                    Request {
                        action: Action::new("Ping"),
                        expect: Expect::Auto,
                        timeout: Some(timeout),
                        reply: Reply::Keepalive,
                    },
                );
            }
        }
        None
    }

    /// Decodes and routes everything buffered.
    fn process(&mut self, s: &mut Session) -> std::result::Result<(), String> {
        let mut events = Vec::new();
        // Handed over together after the read, so that a burst of replies wakes the loop once
        // (pushing them one by one lets the loop wake, drain and sleep again for each).
        let mut done = Vec::new();
        let mut messages = 0u64;
        let mut orphans = 0u64;
        let mut errors = 0u64;
        while let Some(item) = s.next_message() {
            let msg = match item {
                Ok(msg) => msg,
                Err(e) => {
                    // One oversized message is dropped; the stream goes on.
                    warn!("amiwire: dropped a message: {e}");
                    errors += 1;
                    continue;
                }
            };
            messages += 1;
            match s.correlator.route(msg) {
                Routed::Event(ev) => events.push(ev),
                Routed::Done(c) => self.complete(s, c.token, c.outcome, &mut done),
                Routed::DoneAndEvent(c, ev) => {
                    self.complete(s, c.token, c.outcome, &mut done);
                    events.push(ev);
                }
                Routed::Absorbed => {}
                Routed::Orphan(msg) => {
                    orphans += 1;
                    trace!("amiwire: unmatched response dropped: {msg:?}");
                }
                Routed::TooLong(given_up) => {
                    let pending = given_up.token;
                    let error = Error::ListTooLong {
                        action: pending.action,
                        action_id: given_up.action_id,
                        limit: self.options.list_limit,
                        partial: given_up.partial.map(Box::new),
                    };
                    Self::settle(&self.shared, pending.reply, Err(error), &mut done);
                }
            }
        }
        let n_events = events.len() as u64;
        let completed = self.shared.queue_completions(done);
        if self.shared.push_events(events) || completed {
            self.shared.wake();
        }
        self.shared.stats_mut(|st| {
            st.messages += messages;
            st.events += n_events;
            st.orphans += orphans;
            st.decode_errors += errors;
        });
        Ok(())
    }

    /// Settles one action; a `Reply::Queued` result joins `done`, the read's batch.
    fn complete(
        &mut self,
        s: &mut Session,
        pending: Pending,
        outcome: Outcome,
        done: &mut Vec<(u64, Result<Outcome>)>,
    ) {
        match pending.reply {
            Reply::Keepalive => s.keepalive_out = false,
            Reply::Ignore => {
                if !outcome.is_success() {
                    warn!(
                        "amiwire: restoring {} after reconnect failed: {:?}",
                        pending.action,
                        outcome.response.get("Message")
                    );
                }
            }
            reply => Self::settle(&self.shared, reply, judge(&pending.action, outcome), done),
        }
    }

    /// A `Reply::Queued` result joins `done`, the read's batch; any other is delivered now.
    fn settle(
        shared: &Shared,
        reply: Reply,
        result: Result<Outcome>,
        done: &mut Vec<(u64, Result<Outcome>)>,
    ) {
        match reply {
            Reply::Queued(token) => done.push((token, result)),
            reply => shared.deliver(reply, result),
        }
    }

    /// Sends Logoff and waits briefly for Goodbye or EOF, then drops the socket.
    async fn logoff(&mut self, s: &mut Session, reply: Option<Reply>) -> End {
        let id = self.ids.next_id();
        if Action::new("Logoff").encode(Some(&id), &mut s.out).is_ok() {
            let out = std::mem::take(&mut s.out);
            let bye = async {
                s.write.write_all(&out).await?;
                if let Some(rec) = s.recorder.as_mut() {
                    rec.record("send", &out, false);
                }
                loop {
                    s.rbuf.clear();
                    let n = s.read.read_buf(&mut s.rbuf).await?;
                    if let Some(rec) = s.recorder.as_mut() {
                        rec.record("recv", &s.rbuf, n == 0);
                    }
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    s.decoder.feed(&s.rbuf);
                    while let Some(Ok(msg)) = s.decoder.next_message() {
                        if msg.has_value("Response", "Goodbye") {
                            return Ok(());
                        }
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), bye)
                .await
                .is_err()
            {
                debug!("amiwire: no Goodbye within 2 s; closing anyway");
            }
        }
        let _ = s.write.shutdown().await;
        match reply {
            Some(reply) => End::UserClosed(reply),
            None => End::HandlesDropped,
        }
    }
}

/// The outcome of a local operation (login done, close done): a synthetic response.
pub(super) fn local_outcome(text: &[u8]) -> Outcome {
    let response = Message::parse_one(text).expect("a static message parses");
    Outcome {
        response,
        events: Vec::new(),
        complete: None,
    }
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::ConnectionLost { reason } => Error::ConnectionLost {
            reason: reason.clone(),
        },
        Error::Closed { reason } => Error::Closed {
            reason: reason.clone(),
        },
        other => Error::Internal(other.to_string()),
    }
}
