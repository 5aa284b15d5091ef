//! `_core.Connection` and `_core.EventSubscription`: the synchronous, non-blocking surface the
//! asyncio client (python/amiwire/client.py) is built on.
//!
//! Why no Rust futures here: waking a PyO3 coroutine from a tokio thread attaches that thread
//! to the interpreter, so the socket reader would wait on the GIL. Instead the futures are
//! settled on the loop thread: over plain TCP the loop reads the session socket itself and
//! settles what it read at once (`loop_socket.rs`); what the driver reads (TLS, HTTP, a
//! stalled loop, a flood) it pushes into Rust queues and announces by one byte on a
//! socketpair the loop watches, and the loop then takes whole batches. The driver never
//! touches Python, and a burst of completions costs one wake-up (architecture.md §14).

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};
use pyo3::{PyTraverseError, PyVisit, intern};

use super::errors::to_pyerr;
use super::live::{LiveSnapshot, changes_to_py_list};
use super::loop_socket::{Settling, SocketWaker, Watched};
use super::message::{outcome_to_py, to_py_list};
use crate::error::Error;
use crate::proto::live::{Change, LiveConfig};
use crate::proto::{Action, Expect, Outcome};
use crate::transport::{
    Auth, Client, EventMask, Filter, Http, Live, Matcher, Options, Overflow, QueueLimits, Queued,
    Reconnect, Reply, Request, Subscription, SubscriptionStats, Tls,
};
use serde::Deserialize;

fn usage(msg: impl Into<String>) -> PyErr {
    super::errors::LocalProtocolError::new_err(msg.into())
}

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| usage(format!("{what} must be a non-negative number of seconds")))
}

/// The options dictionary `amiwire.client.connect` builds, as pythonize reads it. Every key
/// is optional (absent or None: the default); keys this version does not know are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConnectOptions {
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    secret: Option<String>,
    auth: Option<String>,
    events: Option<String>,
    connect_timeout: Option<f64>,
    timeout: Option<f64>,
    /// 0 or less turns it off.
    keepalive: Option<f64>,
    reconnect: Option<bool>,
    reconnect_initial: Option<f64>,
    reconnect_max: Option<f64>,
    reconnect_attempts: Option<u32>,
    tls: Option<bool>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    insecure: Option<bool>,
    record: Option<PathBuf>,
    list_limit: Option<usize>,
    max_list_bytes: Option<usize>,
    max_event_bytes: Option<usize>,
    http_endpoint: Option<String>,
    http_prefix: Option<String>,
    https: Option<bool>,
    poll_timeout: Option<u32>,
    http_timeout: Option<u32>,
    max_body: Option<usize>,
    max_bodies: Option<usize>,
    /// Subscribe one stream of every event before the login (`Connection.take_early_stream`).
    early_stream: Option<bool>,
    /// Keep the live state (channels, bridges, calls), with channel variables if asked.
    live: Option<bool>,
    live_variables: Option<bool>,
}

impl ConnectOptions {
    fn tls(&self) -> Tls {
        Tls {
            ca_file: self.ca_file.clone(),
            server_name: self.server_name.clone(),
            insecure: self.insecure.unwrap_or(false),
        }
    }

    fn into_options(self) -> PyResult<Options> {
        let mut o = Options::default();
        let seconds_of =
            |value: Option<f64>, what: &str| value.map(|t| seconds(t, what)).transpose();
        o.host = self.host.clone().unwrap_or(o.host);
        o.port = self.port.unwrap_or(o.port);
        o.username = self.username.clone().unwrap_or_default();
        o.secret = self.secret.clone().unwrap_or_default();
        o.auth = match self.auth.as_deref() {
            None | Some("plain") => Auth::Plain,
            Some("md5") => Auth::Md5,
            Some(other) => {
                return Err(usage(format!(
                    "auth must be 'plain' or 'md5', not {other:?}"
                )));
            }
        };
        if let Some(events) = &self.events {
            o.events = EventMask::parse(events).map_err(usage)?;
        }
        o.connect_timeout =
            seconds_of(self.connect_timeout, "connect_timeout")?.unwrap_or(o.connect_timeout);
        o.action_timeout = seconds_of(self.timeout, "timeout")?.unwrap_or(o.action_timeout);
        o.keepalive = match self.keepalive {
            Some(t) if t > 0.0 => Some(seconds(t, "keepalive")?),
            Some(_) => None,
            None => o.keepalive,
        };
        let defaults = Reconnect::default();
        o.reconnect = Reconnect {
            enabled: self.reconnect.unwrap_or(defaults.enabled),
            initial: seconds_of(self.reconnect_initial, "reconnect_initial")?
                .unwrap_or(defaults.initial),
            max: seconds_of(self.reconnect_max, "reconnect_max")?.unwrap_or(defaults.max),
            max_attempts: self.reconnect_attempts.unwrap_or(defaults.max_attempts),
        };
        if self.tls.unwrap_or(false) {
            o.tls = Some(self.tls());
        }
        o.record = self.record.clone();
        o.list_limit = self.list_limit.unwrap_or(o.list_limit);
        o.max_list_bytes = self.max_list_bytes.unwrap_or(o.max_list_bytes);
        o.max_event_bytes = self.max_event_bytes.unwrap_or(o.max_event_bytes);
        if self.live.unwrap_or(false) {
            o.live = Some(LiveConfig {
                variables: self.live_variables.unwrap_or(false),
            });
        }
        if let Some(endpoint) = &self.http_endpoint {
            let endpoint = crate::proto::http::Endpoint::ALL
                .into_iter()
                .find(|e| e.name().eq_ignore_ascii_case(endpoint))
                .ok_or_else(|| usage(format!("unknown AMI HTTP endpoint {endpoint:?}")))?;
            let mut http = Http::new(endpoint);
            http.prefix = self.http_prefix.clone().unwrap_or_default();
            http.https = self.https.unwrap_or(false);
            http.poll_timeout = self.poll_timeout.map_or(http.poll_timeout, |t| t.max(1));
            http.http_timeout = self.http_timeout.unwrap_or(http.http_timeout);
            http.max_body = self.max_body.unwrap_or(http.max_body);
            http.max_bodies = self.max_bodies.unwrap_or(http.max_bodies);
            if http.https && o.tls.is_none() {
                o.tls = Some(self.tls());
            }
            o.http = Some(http);
        }
        Ok(o)
    }
}

fn options_from(opts: &Bound<'_, PyDict>) -> PyResult<(Options, bool)> {
    let given: ConnectOptions = pythonize::depythonize(opts.as_any())
        .map_err(|e| pyo3::exceptions::PyTypeError::new_err(format!("connect options: {e}")))?;
    let early_stream = given.early_stream.unwrap_or(false);
    Ok((given.into_options()?, early_stream))
}

/// The token the driver reports the first login under; actions count up from it.
const LOGIN: u64 = 0;

/// The asyncio side of a connection: the futures of its pending actions, keyed by the token
/// the driver reports completions under. Only touched with the GIL held, and never locked
/// across a call into Python (which could re-enter the connection).
struct Waiters {
    /// The loop the futures belong to and the wake-up descriptor is registered with.
    attached: Option<Attached>,
    /// Called with a new running loop, before a future is made on it: registers the wake-up
    /// descriptor there (`_Bridge.attach`).
    attach: Option<Py<PyAny>>,
    /// `amiwire.client._ActionFuture`: an asyncio.Future whose `cancel` tells us.
    future_class: Option<Py<PyAny>>,
    futures: HashMap<u64, Waiter>,
    next_token: u64,
}

struct Attached {
    event_loop: Py<PyAny>,
    /// `{"loop": event_loop}`, made once rather than for every future.
    future_kwargs: Py<PyDict>,
    /// A `flush` is scheduled on this loop. Tracked per loop: a flush scheduled on a loop
    /// that stopped before running it must not keep a new loop from scheduling its own.
    flush_scheduled: bool,
    /// An action was written at once since the loop last ran a read, a wake-up or a flush:
    /// the next ones wait for a `flush`, so that a burst leaves in one write.
    wrote_at_once: bool,
}

struct Waiter {
    future: Py<PyAny>,
    /// False: `Response: Error` resolves to the response instead of raising ActionError.
    raise_on_error: bool,
}

/// One AMI connection driven by a tokio task. Methods never block.
///
/// Actions are submitted from the asyncio loop's thread and resolved there: `submit` returns
/// an asyncio future at once, `resolve` (the loop's reader callback) settles every finished
/// one. Keeping the futures here, not in a Python dict, leaves no Python frame per action
/// besides the public method itself.
#[pyclass(module = "amiwire._core", frozen)]
pub struct Connection {
    client: Client,
    waker: Arc<SocketWaker>,
    wake_rx: UnixStream,
    /// The session socket the loop reads itself, while the session allows it.
    watched: Mutex<Option<Watched>>,
    pid: u32,
    /// Actions queued by `submit` until `flush` (all but the first since the loop's last I/O
    /// when the loop writes the socket itself): a burst then leaves in one write, or one
    /// wake-up of the driver, instead of one for each.
    outbox: Mutex<Vec<Request>>,
    waiters: Mutex<Waiters>,
    /// The stream subscribed before the login (`early_stream`), until it is taken.
    early: Mutex<Option<EventSubscription>>,
}

impl Connection {
    fn check_fork(&self) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(super::errors::ClientClosed::new_err(
                "client used after fork(): connect again in the child",
            ));
        }
        Ok(())
    }

    fn live(&self) -> PyResult<&Arc<Live>> {
        self.client
            .live()
            .ok_or_else(|| usage("this connection keeps no live state: connect with live=True"))
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Poisoning needs a panic while the lock is held; no code under it can panic.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn outbox(&self) -> MutexGuard<'_, Vec<Request>> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A future on `event_loop`, registered under a new token (or `token`).
    fn new_future<'py>(
        slf: &Bound<'py, Self>,
        event_loop: &Bound<'py, PyAny>,
        token: Option<u64>,
        raise_on_error: bool,
    ) -> PyResult<(u64, Bound<'py, PyAny>)> {
        let py = slf.py();
        let this = slf.get();
        let (kwargs, attach, future_class) = {
            let w = this.waiters();
            let kwargs = w
                .attached
                .as_ref()
                .filter(|a| a.event_loop.is(event_loop))
                .map(|a| a.future_kwargs.clone_ref(py));
            (
                kwargs,
                w.attach.as_ref().map(|a| a.clone_ref(py)),
                w.future_class.as_ref().map(|c| c.clone_ref(py)),
            )
        };
        let (Some(attach), Some(future_class)) = (attach, future_class) else {
            return Err(super::errors::ClientClosed::new_err("the client is closed"));
        };
        let kwargs = match kwargs {
            Some(kwargs) => kwargs,
            None => {
                attach.call1(py, (event_loop,))?;
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "loop"), event_loop)?;
                let previous = this.waiters().attached.replace(Attached {
                    event_loop: event_loop.clone().unbind(),
                    future_kwargs: kwargs.clone().unbind(),
                    flush_scheduled: false,
                    wrote_at_once: false,
                });
                drop(previous);
                // The session socket moves to the new loop too.
                Connection::watch_socket(slf)?;
                kwargs.unbind()
            }
        };
        let future = future_class.bind(py).call((), Some(kwargs.bind(py)))?;
        let mut w = this.waiters();
        let token = token.unwrap_or_else(|| {
            w.next_token += 1;
            w.next_token
        });
        w.futures.insert(
            token,
            Waiter {
                future: future.clone().unbind(),
                raise_on_error,
            },
        );
        drop(w);
        future.setattr(intern!(py, "_conn"), slf)?;
        future.setattr(intern!(py, "_token"), token)?;
        Ok((token, future))
    }

    fn watched(&self) -> MutexGuard<'_, Option<Watched>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the loop's watch of the session socket in step with the session: watched on the
    /// attached loop while the session wants it, not watched otherwise (it ended, a new one
    /// began, the driver reads a flood, the client moved to another loop).
    fn watch_socket(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let event_loop = this
            .waiters()
            .attached
            .as_ref()
            .map(|a| a.event_loop.clone_ref(py));
        let wanted = this
            .client
            .loop_io()
            .filter(|io| io.wanted())
            .zip(event_loop);
        let current = this.watched().take();
        let unchanged = match (&current, &wanted) {
            (Some(watched), Some((io, event_loop))) => watched.is(io, event_loop),
            (None, None) => true,
            _ => false,
        };
        match current {
            Some(current) if unchanged => *this.watched() = Some(current),
            Some(old) => old.stop(py)?,
            None => {}
        }
        if let Some((io, event_loop)) = wanted {
            if !unchanged {
                let callback = slf.getattr(intern!(py, "on_readable"))?;
                *this.watched() = Some(Watched::start(io.clone(), event_loop, callback)?);
            }
            // Running this proves the loop responsive: it takes the reading (back).
            io.take_reading();
        }
        Ok(())
    }

    /// The loop runs an I/O callback: a new turn, whose first action may leave at once.
    fn io_turn(&self) {
        if let Some(a) = &mut self.waiters().attached {
            a.wrote_at_once = false;
        }
    }

    /// Settles the futures of every finished action.
    fn settle_completions(&self, py: Python<'_>) {
        let completions = self.client.take_completions();
        if completions.is_empty() {
            return;
        }
        let ready: Vec<_> = {
            let mut w = self.waiters();
            completions
                .into_iter()
                .filter_map(|(token, result)| w.futures.remove(&token).map(|f| (f, result)))
                .collect()
        };
        for (waiter, result) in ready {
            let future = waiter.future.bind(py);
            // A future the user settled or cancelled in the meantime refuses: nothing to do.
            let _ = match result {
                Ok(outcome) => {
                    future.call_method1(intern!(py, "set_result"), (outcome_to_py(py, outcome),))
                }
                Err(Error::ActionFailed {
                    response, events, ..
                }) if !waiter.raise_on_error => {
                    let outcome = Outcome {
                        response: *response,
                        events,
                        complete: None,
                    };
                    future.call_method1(intern!(py, "set_result"), (outcome_to_py(py, outcome),))
                }
                Err(e) => future.call_method1(
                    intern!(py, "set_exception"),
                    (to_pyerr(py, e).into_value(py),),
                ),
            };
        }
    }

    /// Registers the action's future and queues it for the next `flush`.
    fn enqueue<'py>(
        slf: &Bound<'py, Self>,
        event_loop: &Bound<'py, PyAny>,
        submission: Submission,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let (token, future) =
            Connection::new_future(slf, event_loop, None, submission.raise_on_error)?;
        let request = Request {
            action: submission.action,
            expect: submission.expect,
            timeout: submission.timeout,
            reply: Reply::Queued(token),
        };
        // The first action since the loop last did I/O leaves at once when this thread writes
        // the socket itself: a sequential caller then waits for no extra loop turn, and
        // schedules none. The rest follow together in `flush`, at the next turn.
        let may_write_now = matches!(
            &this.waiters().attached,
            Some(a) if !a.flush_scheduled && !a.wrote_at_once
        );
        let mut outbox = this.outbox();
        if may_write_now
            && outbox.is_empty()
            && this.check_fork().is_ok()
            && this.client.loop_io().is_some()
        {
            drop(outbox);
            if let Some(a) = &mut this.waiters().attached {
                a.wrote_at_once = true;
            }
            // A refused request (client closed) already reported the failure to its waiter.
            let _ = this.client.submit_all(vec![request]);
            return Ok(future);
        }
        outbox.push(request);
        drop(outbox);
        let schedule = match &mut this.waiters().attached {
            Some(a) if !a.flush_scheduled => {
                a.flush_scheduled = true;
                true
            }
            _ => false,
        };
        if schedule {
            event_loop.call_method1(
                intern!(py, "call_soon"),
                (slf.getattr(intern!(py, "flush"))?,),
            )?;
        }
        Ok(future)
    }
}

/// A checked action waiting for its future.
struct Submission {
    action: Action,
    expect: Expect,
    timeout: Option<Duration>,
    raise_on_error: bool,
}

/// An action made outside a running loop (`asyncio.run(ami.ping())`): checked at the call,
/// sent when the coroutine wrapping it first runs on a loop.
#[pyclass(module = "amiwire._core", frozen)]
pub struct DeferredAction(Mutex<Option<Submission>>);

/// The running asyncio loop of this thread, if any.
fn try_running_loop(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "_get_running_loop")?
        .call0()?;
    Ok((!event_loop.is_none()).then_some(event_loop))
}

/// The running asyncio loop, with a hint for synchronous callers.
fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    try_running_loop(py)?.ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err(
            "amiwire.Client needs a running asyncio event loop; \
             from synchronous code use amiwire.connect_blocking()",
        )
    })
}

#[pymethods]
impl Connection {
    /// Starts connecting at once; `ready()` reports the login result. `attach(loop)` is called
    /// whenever futures are first made on a loop; `future_class` is the asyncio.Future
    /// subclass whose `cancel` calls `cancel(token)`.
    #[new]
    fn new(
        py: Python<'_>,
        options: &Bound<'_, PyDict>,
        attach: Py<PyAny>,
        future_class: Py<PyAny>,
    ) -> PyResult<Connection> {
        let (options, early_stream) = options_from(options)?;
        let runtime = super::runtime::handle().map_err(|e| to_pyerr(py, e))?;
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let waker = Arc::new(SocketWaker(wake_tx));
        let (client, start) = Client::prepare(options, Some(waker.clone()));
        // Subscribed before the driver starts: it sees the session's very first event.
        let early = early_stream.then(|| {
            let sub = client.subscribe_with(
                Filter::default(),
                QueueLimits::default(),
                Overflow::DropOldest,
            );
            EventSubscription::of_events(client.clone(), sub)
        });
        start.start(Reply::Queued(LOGIN), &runtime);
        Ok(Connection {
            early: Mutex::new(early),
            client,
            waker,
            wake_rx,
            watched: Mutex::new(None),
            pid: std::process::id(),
            outbox: Mutex::new(Vec::new()),
            waiters: Mutex::new(Waiters {
                attached: None,
                attach: Some(attach),
                future_class: Some(future_class),
                futures: HashMap::new(),
                next_token: LOGIN,
            }),
        })
    }

    /// The stream of every event from the session's start, once (`early_stream=True`).
    fn take_early_stream(&self) -> Option<EventSubscription> {
        self.early.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The descriptor the asyncio loop watches for wake-ups.
    fn fileno(&self) -> i32 {
        self.wake_rx.as_raw_fd()
    }

    /// A future for the login result: None once logged in, else the error.
    fn ready<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let event_loop = running_loop(slf.py())?;
        Ok(Connection::new_future(slf, &event_loop, Some(LOGIN), true)?.1)
    }

    /// Queues an action and returns the asyncio future of its result. The first action since
    /// the loop's last I/O is written at once when the loop writes the socket itself; the
    /// others of a tick leave together (`flush`, scheduled with `call_soon`). Invalid actions
    /// raise `LocalProtocolError` here, before anything is sent. `expect` is "auto", "list"
    /// or "originate". Called with no running loop, it returns a coroutine that sends the
    /// action when it runs.
    #[pyo3(signature = (name, headers, expect="auto", complete=None, timeout=None, action_id=None, raise_on_error=true))]
    #[allow(clippy::too_many_arguments)]
    fn submit<'py>(
        slf: &Bound<'py, Self>,
        name: String,
        headers: Vec<(String, String)>,
        expect: &str,
        complete: Option<String>,
        timeout: Option<f64>,
        action_id: Option<String>,
        raise_on_error: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let mut action = Action::new(name);
        for (k, v) in headers {
            action.push(k, v);
        }
        if let Some(id) = action_id {
            action = action.with_action_id(id);
        }
        let expect = match expect {
            "auto" => Expect::Auto,
            "list" => Expect::List { complete },
            "originate" => Expect::Originate,
            other => {
                return Err(usage(format!(
                    "expect must be auto, list or originate, not {other:?}"
                )));
            }
        };
        let timeout = timeout.map(|t| seconds(t, "timeout")).transpose()?;
        action.validate().map_err(|e| to_pyerr(py, e.into()))?;
        let submission = Submission {
            action,
            expect,
            timeout,
            raise_on_error,
        };
        match try_running_loop(py)? {
            Some(event_loop) => Connection::enqueue(slf, &event_loop, submission),
            None => {
                static DEFERRED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                let deferred = Py::new(py, DeferredAction(Mutex::new(Some(submission))))?;
                DEFERRED
                    .import(py, "amiwire.client", "_deferred")?
                    .call1((slf, deferred))
            }
        }
    }

    /// Sends a deferred action from inside the loop that now runs it.
    fn submit_deferred<'py>(
        slf: &Bound<'py, Self>,
        deferred: &Bound<'py, DeferredAction>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let taken = deferred
            .get()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let submission =
            taken.ok_or_else(|| usage("this action was already sent (awaited twice?)"))?;
        Connection::enqueue(slf, &running_loop(slf.py())?, submission)
    }

    /// Sends every queued action at once: written from this thread when the session allows
    /// it, else handed to the driver in one message.
    fn flush(&self, py: Python<'_>) {
        if let Some(a) = &mut self.waiters().attached {
            a.flush_scheduled = false;
            a.wrote_at_once = false;
        }
        let queued = std::mem::take(&mut *self.outbox());
        if queued.is_empty() {
            return;
        }
        // The fork check is here, once per loop tick, rather than per action: a forked child
        // has no driver, so its actions fail instead of waiting for one.
        if let Err(forked) = self.check_fork() {
            let futures: Vec<_> = {
                let mut w = self.waiters();
                queued
                    .iter()
                    .filter_map(|r| match r.reply {
                        Reply::Queued(token) => w.futures.remove(&token),
                        _ => None,
                    })
                    .collect()
            };
            for waiter in futures {
                let error = forked.clone_ref(py).into_value(py);
                let _ = waiter
                    .future
                    .call_method1(py, intern!(py, "set_exception"), (error,));
            }
            return;
        }
        // A refused batch (client closed) already reported the failure to each waiter.
        let _ = self.client.submit_all(queued);
    }

    /// Forgets a pending action (its future was cancelled); a late reply becomes an orphan.
    fn cancel(&self, token: u64) {
        // Bound to a name so that the future is released after the lock, not under it.
        let forgotten = self.waiters().futures.remove(&token);
        drop(forgotten);
        {
            let mut outbox = self.outbox();
            let before = outbox.len();
            outbox.retain(|r| !matches!(r.reply, Reply::Queued(t) if t == token));
            if outbox.len() != before {
                return;
            }
        }
        self.client.cancel(token);
    }

    /// The wake-up socket's reader callback: settles the futures of every finished action,
    /// and keeps the watch of the session socket in step.
    fn resolve(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        // One read empties the socket: the waker writes one byte per empty-to-busy transition.
        let mut buf = [0u8; 4096];
        let _ = (&this.wake_rx).read(&mut buf);
        this.io_turn();
        this.settle_completions(slf.py());
        Connection::watch_socket(slf)
    }

    /// The session socket's reader callback: reads and routes on this thread, then settles
    /// what finished.
    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let Some(io) = this.watched().as_ref().map(|w| w.io.clone()) else {
            return Ok(());
        };
        this.io_turn();
        let settling = Settling::begin(&this.waker);
        io.on_readable();
        if settling.end() {
            this.settle_completions(slf.py());
        }
        if !io.wanted() {
            Connection::watch_socket(slf)?;
        }
        Ok(())
    }

    /// How many actions await their result on the loop side.
    #[getter]
    fn pending(&self) -> usize {
        self.waiters().futures.len()
    }

    /// A new event queue. `names`: event names or globs (empty = all); `headers`:
    /// `(header, [(kind, pattern)])` with kind "glob" or "regex"; any pattern of a header may
    /// match, every header must. `maxsize` (events) and `max_bytes` bound the queue (None:
    /// no count limit, 64 MiB), and the client's `max_event_bytes` all its queues together.
    #[pyo3(signature = (names, headers, maxsize=None, overflow="drop_oldest", max_bytes=None))]
    fn subscribe(
        &self,
        names: Vec<String>,
        headers: Vec<(String, Vec<(String, String)>)>,
        maxsize: Option<i64>,
        overflow: &str,
        max_bytes: Option<usize>,
    ) -> PyResult<EventSubscription> {
        let names = names
            .iter()
            .map(|n| Matcher::glob(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(usage)?;
        let headers = headers
            .into_iter()
            .map(|(header, patterns)| {
                let matchers = patterns
                    .iter()
                    .map(|(kind, p)| {
                        if kind == "regex" {
                            Matcher::regex(p)
                        } else {
                            Matcher::glob(p)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((header, matchers))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(usage)?;
        let overflow = Overflow::parse(overflow).map_err(usage)?;
        let limits = queue_limits(maxsize, max_bytes)?;
        let sub = self
            .client
            .subscribe_with(Filter { names, headers }, limits, overflow);
        Ok(EventSubscription::of_events(self.client.clone(), sub))
    }

    /// A queue of the live state's changes (same limits and policies as `subscribe`); with
    /// `linkedid`, only that call's.
    #[pyo3(signature = (maxsize=None, overflow="drop_oldest", max_bytes=None, linkedid=None))]
    fn subscribe_changes(
        &self,
        maxsize: Option<i64>,
        overflow: &str,
        max_bytes: Option<usize>,
        linkedid: Option<&str>,
    ) -> PyResult<EventSubscription> {
        let live = self.live()?;
        let limits = queue_limits(maxsize, max_bytes)?;
        let overflow = Overflow::parse(overflow).map_err(usage)?;
        let sub = live.subscribe(limits, overflow, linkedid);
        Ok(EventSubscription::of_changes(live.clone(), sub))
    }

    /// The live state as of now: O(1), consistent, never changed afterwards.
    fn live_snapshot(&self) -> PyResult<LiveSnapshot> {
        Ok(LiveSnapshot(self.live()?.view()))
    }

    /// Whether a rebuild is under way, why the last one failed, and the state's counters.
    fn live_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let status = self.live()?.status();
        let dict = PyDict::new(py);
        dict.set_item("rebuilding", status.rebuilding)?;
        dict.set_item("rebuild_error", status.rebuild_error)?;
        dict.set_item("rebuilds", status.stats.rebuilds)?;
        dict.set_item("rebuild_retries", status.rebuild_retries)?;
        dict.set_item("events", status.stats.events)?;
        dict.set_item("orphan_events", status.stats.orphan_events)?;
        Ok(dict)
    }

    /// Logs off and closes; the returned future completes when the socket is closed. Later
    /// calls fail with `ClientClosed`.
    fn close<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        this.check_fork()?;
        let event_loop = running_loop(slf.py())?;
        let (token, future) = Connection::new_future(slf, &event_loop, None, true)?;
        this.flush(slf.py());
        this.client.close_with(Reply::Queued(token));
        Ok(future)
    }

    /// Drops the references to the loop and the attach hook once the connection is closed,
    /// so that nothing keeps the loop alive.
    fn detach(&self, py: Python<'_>) -> PyResult<()> {
        let watched = self.watched().take();
        if let Some(watched) = watched {
            watched.stop(py)?;
        }
        let released = {
            let mut w = self.waiters();
            (w.attached.take(), w.attach.take())
        };
        // Dropped after the lock is released: a decref may run Python code.
        drop(released);
        Ok(())
    }

    // The connection holds Python objects that may hold it (the attach hook's bridge, the
    // futures' `_conn`): taking part in garbage collection lets a dropped client be freed.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // try_lock: the collector may run while a method of ours holds the lock (it never
        // holds it across Python code, but an allocation there can trigger a collection).
        if let Ok(w) = self.waiters.try_lock() {
            for obj in [&w.attach, &w.future_class].into_iter().flatten() {
                visit.call(obj)?;
            }
            if let Some(a) = &w.attached {
                visit.call(&a.event_loop)?;
                visit.call(&a.future_kwargs)?;
            }
            for waiter in w.futures.values() {
                visit.call(&waiter.future)?;
            }
        }
        if let Ok(watched) = self.watched.try_lock() {
            if let Some(watched) = watched.as_ref() {
                visit.call(watched.event_loop())?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let released = {
            let mut w = self.waiters();
            (
                w.attached.take(),
                w.attach.take(),
                w.future_class.take(),
                std::mem::take(&mut w.futures),
            )
        };
        let watched = self.watched().take();
        drop((released, watched));
    }

    #[getter]
    fn state(&self) -> &'static str {
        self.client.state().as_str()
    }

    #[getter]
    fn state_reason(&self) -> Option<String> {
        self.client.state_reason()
    }

    #[getter]
    fn state_changes(&self) -> u64 {
        self.client.state_changes()
    }

    /// The state changes after change number `seq` as `(seq, state, reason)`, oldest first
    /// (the last 32 at most).
    fn transitions_since(&self, seq: u64) -> Vec<(u64, &'static str, Option<String>)> {
        self.client
            .transitions_since(seq)
            .into_iter()
            .map(|t| (t.seq, t.state.as_str(), t.reason))
            .collect()
    }

    #[getter]
    fn banner(&self) -> Option<String> {
        self.client.info().banner
    }

    #[getter]
    fn ami_version(&self) -> Option<String> {
        self.client.info().ami_version
    }

    #[getter]
    fn asterisk_version(&self) -> Option<String> {
        self.client.info().asterisk_version
    }

    #[getter]
    fn default_timeout(&self) -> f64 {
        self.client.default_timeout().as_secs_f64()
    }

    /// Counters: messages, events, orphans, decode_errors, reconnects, bytes_read, the
    /// number of actions awaiting their result (pending), the bytes the event queues hold
    /// (queued_event_bytes) against their limit (max_event_bytes), and who read the socket:
    /// loop_reads, driver_reads, stall_takeovers, flood_handovers.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.client.stats();
        let d = PyDict::new(py);
        d.set_item("messages", s.messages)?;
        d.set_item("events", s.events)?;
        d.set_item("orphans", s.orphans)?;
        d.set_item("decode_errors", s.decode_errors)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("bytes_read", s.bytes_read)?;
        d.set_item("pending", self.waiters().futures.len())?;
        d.set_item("queued_event_bytes", s.queued_event_bytes)?;
        d.set_item("max_event_bytes", s.max_event_bytes)?;
        d.set_item("loop_reads", s.loop_reads)?;
        d.set_item("driver_reads", s.driver_reads)?;
        d.set_item("stall_takeovers", s.stall_takeovers)?;
        d.set_item("flood_handovers", s.flood_handovers)?;
        Ok(d)
    }
}

/// `maxsize` and `max_bytes` as given to a stream, checked.
fn queue_limits(maxsize: Option<i64>, max_bytes: Option<usize>) -> PyResult<QueueLimits> {
    // Taken signed so that a negative size is refused by name, not as an OverflowError.
    let maxsize = maxsize
        .map(|n| {
            usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| usage(format!("maxsize must be a whole number >= 1, not {n}")))
        })
        .transpose()?;
    let defaults = QueueLimits::default();
    Ok(QueueLimits {
        max_events: maxsize.unwrap_or(defaults.max_events),
        max_bytes: max_bytes.unwrap_or(defaults.max_bytes),
    })
}

/// What `EventSubscription` needs of its queue, whatever it holds.
trait Queue: Send + Sync {
    fn drain<'py>(&self, py: Python<'py>, max: usize) -> Bound<'py, PyList>;
    fn arm(&self) -> bool;
    fn close(&self);
    fn is_closed(&self) -> bool;
    fn failure(&self) -> Option<String>;
    fn limit_hit(&self) -> Option<String>;
    fn stats(&self) -> SubscriptionStats;
}

/// How a stream leaves what it subscribed to (the client's events, or the live changes).
type Leave<T> = Box<dyn Fn(&Arc<Subscription<T>>) + Send + Sync>;

/// A subscription, the way it is left, and how its items become Python objects.
struct Stream<T> {
    sub: Arc<Subscription<T>>,
    leave: Leave<T>,
    to_py: for<'py> fn(Python<'py>, Vec<T>) -> Bound<'py, PyList>,
}

impl<T: Queued> Queue for Stream<T> {
    fn drain<'py>(&self, py: Python<'py>, max: usize) -> Bound<'py, PyList> {
        (self.to_py)(py, self.sub.drain(max))
    }
    fn arm(&self) -> bool {
        self.sub.arm()
    }
    fn close(&self) {
        (self.leave)(&self.sub)
    }
    fn is_closed(&self) -> bool {
        self.sub.is_closed()
    }
    fn failure(&self) -> Option<String> {
        self.sub.failure()
    }
    fn limit_hit(&self) -> Option<String> {
        self.sub.limit_hit()
    }
    fn stats(&self) -> SubscriptionStats {
        self.sub.stats()
    }
}

/// A bounded queue fed by the driver: of events, or of the live state's changes.
#[pyclass(module = "amiwire._core", frozen)]
pub struct EventSubscription(Box<dyn Queue>);

impl EventSubscription {
    fn of_events(client: Client, sub: Arc<Subscription>) -> EventSubscription {
        EventSubscription(Box::new(Stream {
            sub,
            leave: Box::new(move |sub| client.unsubscribe(sub)),
            to_py: to_py_list,
        }))
    }

    fn of_changes(live: Arc<Live>, sub: Arc<Subscription<Change>>) -> EventSubscription {
        EventSubscription(Box::new(Stream {
            sub,
            leave: Box::new(move |sub| live.unsubscribe(sub)),
            to_py: changes_to_py_list,
        }))
    }
}

/// A stream the user dropped without closing stops collecting.
impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[pymethods]
impl EventSubscription {
    /// Up to `max` queued events, oldest first, without waiting.
    #[pyo3(signature = (max=4096))]
    fn drain<'py>(&self, py: Python<'py>, max: usize) -> Bound<'py, PyList> {
        self.0.drain(py, max)
    }

    /// Declares that the consumer will wait. False means: do not wait, take events (or the
    /// subscription ended).
    fn arm(&self) -> bool {
        self.0.arm()
    }

    fn close(&self) {
        self.0.close();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.0.is_closed()
    }

    #[getter]
    fn overflowed(&self) -> bool {
        self.0.stats().overflowed
    }

    /// Why the connection failed for good, when that ended the subscription.
    #[getter]
    fn failure(&self) -> Option<String> {
        self.0.failure()
    }

    #[getter]
    fn queued(&self) -> usize {
        self.0.stats().queued
    }

    /// Bytes of the queued events.
    #[getter]
    fn queued_bytes(&self) -> usize {
        self.0.stats().queued_bytes
    }

    /// The limit the queue last ran into ("max_bytes limit of 67108864 bytes"), if any.
    #[getter]
    fn limit_hit(&self) -> Option<String> {
        self.0.limit_hit()
    }

    #[getter]
    fn delivered(&self) -> u64 {
        self.0.stats().delivered
    }

    #[getter]
    fn dropped(&self) -> u64 {
        self.0.stats().dropped
    }

    #[getter]
    fn gaps(&self) -> u64 {
        self.0.stats().gaps
    }
}

/// A Command response's CLI output as text, exact, from either Asterisk format
/// (RemoteProtocolError when an HTTP encoding lost it).
#[pyfunction]
fn command_output(response: &Bound<'_, super::message::PyMessage>) -> PyResult<String> {
    crate::proto::command_output(&response.get().inner)
        .map_err(|e| to_pyerr(response.py(), e.into()))
}

/// Raises LocalProtocolError for an event mask Asterisk would silently treat as "off".
#[pyfunction]
fn check_event_mask(mask: &str) -> PyResult<()> {
    EventMask::parse(mask).map(|_| ()).map_err(usage)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(command_output, m)?)?;
    m.add_function(wrap_pyfunction!(check_event_mask, m)?)?;
    m.add_class::<Connection>()?;
    m.add_class::<DeferredAction>()?;
    m.add_class::<EventSubscription>()
}
