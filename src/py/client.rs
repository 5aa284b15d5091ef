//! `_core.Connection` and `_core.EventSubscription`: the synchronous, non-blocking surface the
//! asyncio client (python/amiwire/client.py) is built on.
//!
//! Why no Rust futures here: waking a PyO3 coroutine from a tokio thread attaches that thread
//! to the interpreter, so the socket reader would wait on the GIL. Instead the driver pushes
//! completions and events into Rust queues and writes one byte to a socketpair whose other end
//! the asyncio loop watches (`loop.add_reader`); the loop thread then takes whole batches and
//! resolves its own futures. The reader never touches Python, and a burst of completions costs
//! one wake-up (measured fastest in architecture.md §14).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::errors::to_pyerr;
use super::message::{outcome_to_py, to_py_list};
use crate::proto::{Action, Expect};
use crate::transport::{
    Auth, Client, EventMask, Filter, Http, Matcher, Options, Overflow, Reconnect, Reply, Request,
    Subscription, Tls, Wake,
};

/// Pokes the asyncio loop: one byte on a non-blocking socketpair. A full pipe means a wake-up
/// is already pending, so WouldBlock is fine.
struct SocketWaker(UnixStream);

impl Wake for SocketWaker {
    fn wake(&self) {
        let _ = (&self.0).write(&[1]);
    }
}

fn usage(msg: impl Into<String>) -> PyErr {
    super::errors::LocalProtocolError::new_err(msg.into())
}

fn get<'py, T: FromPyObjectOwned<'py>>(
    opts: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<Option<T>> {
    match opts.get_item(key)? {
        Some(v) if !v.is_none() => Ok(Some(v.extract::<T>().map_err(Into::<PyErr>::into)?)),
        _ => Ok(None),
    }
}

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| usage(format!("{what} must be a non-negative number of seconds")))
}

fn options_from(opts: &Bound<'_, PyDict>) -> PyResult<Options> {
    let mut o = Options::default();
    if let Some(host) = get::<String>(opts, "host")? {
        o.host = host;
    }
    if let Some(port) = get::<u16>(opts, "port")? {
        o.port = port;
    }
    o.username = get::<String>(opts, "username")?.unwrap_or_default();
    o.secret = get::<String>(opts, "secret")?.unwrap_or_default();
    o.auth = match get::<String>(opts, "auth")?.as_deref() {
        None | Some("plain") => Auth::Plain,
        Some("md5") => Auth::Md5,
        Some(other) => {
            return Err(usage(format!(
                "auth must be 'plain' or 'md5', not {other:?}"
            )));
        }
    };
    if let Some(events) = get::<String>(opts, "events")? {
        o.events = EventMask::parse(&events).map_err(usage)?;
    }
    if let Some(t) = get::<f64>(opts, "connect_timeout")? {
        o.connect_timeout = seconds(t, "connect_timeout")?;
    }
    if let Some(t) = get::<f64>(opts, "timeout")? {
        o.action_timeout = seconds(t, "timeout")?;
    }
    o.keepalive = match get::<f64>(opts, "keepalive")? {
        Some(t) if t > 0.0 => Some(seconds(t, "keepalive")?),
        Some(_) => None,
        None => o.keepalive,
    };
    let mut reconnect = Reconnect::default();
    if let Some(enabled) = get::<bool>(opts, "reconnect")? {
        reconnect.enabled = enabled;
    }
    if let Some(t) = get::<f64>(opts, "reconnect_initial")? {
        reconnect.initial = seconds(t, "reconnect_initial")?;
    }
    if let Some(t) = get::<f64>(opts, "reconnect_max")? {
        reconnect.max = seconds(t, "reconnect_max")?;
    }
    if let Some(n) = get::<u32>(opts, "reconnect_attempts")? {
        reconnect.max_attempts = n;
    }
    o.reconnect = reconnect;
    if get::<bool>(opts, "tls")?.unwrap_or(false) {
        o.tls = Some(Tls {
            ca_file: get::<PathBuf>(opts, "ca_file")?,
            server_name: get::<String>(opts, "server_name")?,
            insecure: get::<bool>(opts, "insecure")?.unwrap_or(false),
        });
    }
    o.record = get::<PathBuf>(opts, "record")?;
    if let Some(endpoint) = get::<String>(opts, "http_endpoint")? {
        let endpoint = crate::proto::http::Endpoint::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(&endpoint))
            .ok_or_else(|| usage(format!("unknown AMI HTTP endpoint {endpoint:?}")))?;
        let mut http = Http::new(endpoint);
        http.prefix = get::<String>(opts, "http_prefix")?.unwrap_or_default();
        http.https = get::<bool>(opts, "https")?.unwrap_or(false);
        if let Some(t) = get::<u32>(opts, "poll_timeout")? {
            http.poll_timeout = t.max(1);
        }
        if let Some(t) = get::<u32>(opts, "http_timeout")? {
            http.http_timeout = t;
        }
        if http.https && o.tls.is_none() {
            o.tls = Some(Tls {
                ca_file: get::<PathBuf>(opts, "ca_file")?,
                server_name: get::<String>(opts, "server_name")?,
                insecure: get::<bool>(opts, "insecure")?.unwrap_or(false),
            });
        }
        o.http = Some(http);
    }
    Ok(o)
}

/// One AMI connection driven by a tokio task. Methods never block.
#[pyclass(module = "amiwire._core", frozen)]
pub struct Connection {
    client: Client,
    wake_rx: UnixStream,
    pid: u32,
    /// Actions queued by `send` until `flush`: handing the driver a whole loop tick's worth at
    /// once lets it write them in one go instead of waking for each.
    outbox: std::sync::Mutex<Vec<Request>>,
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
}

#[pymethods]
impl Connection {
    /// Starts connecting at once; completion token 0 reports the login result.
    #[new]
    fn new(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<Connection> {
        let options = options_from(options)?;
        let runtime = super::runtime::handle().map_err(|e| to_pyerr(py, e))?;
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let client = Client::spawn(
            options,
            Reply::Queued(0),
            Some(Arc::new(SocketWaker(wake_tx))),
            &runtime,
        );
        Ok(Connection {
            client,
            wake_rx,
            pid: std::process::id(),
            outbox: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The descriptor the asyncio loop watches for wake-ups.
    fn fileno(&self) -> i32 {
        self.wake_rx.as_raw_fd()
    }

    /// Empties the wake-up socket (called by the loop's reader callback).
    fn drain_wakeups(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Queues an action for the next `flush`. Invalid actions raise `LocalProtocolError` here,
    /// before anything is sent. `expect` is "auto", "list" or "originate".
    #[pyo3(signature = (token, name, headers, expect="auto", complete=None, timeout=None, action_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        token: u64,
        name: String,
        headers: Vec<(String, String)>,
        expect: &str,
        complete: Option<String>,
        timeout: Option<f64>,
        action_id: Option<String>,
    ) -> PyResult<()> {
        self.check_fork()?;
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
        action.validate().map_err(|e| to_pyerr(py, e))?;
        let request = Request {
            action,
            expect,
            timeout,
            reply: Reply::Queued(token),
        };
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.push(request);
        }
        Ok(())
    }

    /// Hands every queued action to the driver.
    fn flush(&self) {
        let queued = self
            .outbox
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for request in queued {
            // A refused submit (client closed) already reported the failure to the waiter.
            let _ = self.client.submit(request);
        }
    }

    /// Forgets a pending action (its task was cancelled); a late reply becomes an orphan.
    fn cancel(&self, token: u64) {
        if let Ok(mut outbox) = self.outbox.lock() {
            let before = outbox.len();
            outbox.retain(|r| !matches!(r.reply, Reply::Queued(t) if t == token));
            if outbox.len() != before {
                return;
            }
        }
        self.client.cancel(token);
    }

    /// Finished actions as `(token, result, exception)`; exactly one of the two is None.
    fn take_completions<'py>(&self, py: Python<'py>) -> Vec<(u64, Py<PyAny>, Py<PyAny>)> {
        self.client
            .take_completions()
            .into_iter()
            .map(|(token, result)| match result {
                Ok(outcome) => (token, outcome_to_py(py, outcome), py.None()),
                Err(e) => (token, py.None(), to_pyerr(py, e).into_value(py).into_any()),
            })
            .collect()
    }

    /// A new event queue. `names`: event names or globs (empty = all); `headers`:
    /// `(header, [(kind, pattern)])` with kind "glob" or "regex"; any pattern of a header may
    /// match, every header must.
    #[pyo3(signature = (names, headers, maxsize=10_000, overflow="drop_oldest"))]
    fn subscribe(
        &self,
        names: Vec<String>,
        headers: Vec<(String, Vec<(String, String)>)>,
        maxsize: usize,
        overflow: &str,
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
        let sub = self
            .client
            .subscribe(Filter { names, headers }, maxsize, overflow);
        Ok(EventSubscription {
            client: self.client.clone(),
            sub,
        })
    }

    /// Logs off and closes; completion `token` reports when done.
    fn close(&self, token: u64) {
        self.flush();
        self.client.close_with(Reply::Queued(token));
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

    /// Counters: messages, events, orphans, decode_errors, reconnects, bytes_read.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.client.stats();
        let d = PyDict::new(py);
        d.set_item("messages", s.messages)?;
        d.set_item("events", s.events)?;
        d.set_item("orphans", s.orphans)?;
        d.set_item("decode_errors", s.decode_errors)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("bytes_read", s.bytes_read)?;
        Ok(d)
    }
}

/// A bounded event queue fed by the driver.
#[pyclass(module = "amiwire._core", frozen)]
pub struct EventSubscription {
    client: Client,
    sub: Arc<Subscription>,
}

/// A stream the user dropped without closing stops collecting events.
impl Drop for EventSubscription {
    fn drop(&mut self) {
        self.client.unsubscribe(&self.sub);
    }
}

#[pymethods]
impl EventSubscription {
    /// Up to `max` queued events, oldest first, without waiting.
    #[pyo3(signature = (max=4096))]
    fn drain<'py>(&self, py: Python<'py>, max: usize) -> Bound<'py, PyList> {
        to_py_list(py, self.sub.drain(max))
    }

    /// Declares that the consumer will wait. False means: do not wait, take events (or the
    /// subscription ended).
    fn arm(&self) -> bool {
        self.sub.arm()
    }

    fn close(&self) {
        self.client.unsubscribe(&self.sub);
    }

    #[getter]
    fn closed(&self) -> bool {
        self.sub.is_closed()
    }

    #[getter]
    fn overflowed(&self) -> bool {
        self.sub.stats().overflowed
    }

    #[getter]
    fn queued(&self) -> usize {
        self.sub.stats().queued
    }

    #[getter]
    fn delivered(&self) -> u64 {
        self.sub.stats().delivered
    }

    #[getter]
    fn dropped(&self) -> u64 {
        self.sub.stats().dropped
    }

    #[getter]
    fn gaps(&self) -> u64 {
        self.sub.stats().gaps
    }
}

/// A Command response's CLI output as text, exact, from either Asterisk format.
#[pyfunction]
fn command_output(response: &Bound<'_, super::message::PyMessage>) -> String {
    crate::proto::command_output(&response.get().inner)
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
    m.add_class::<EventSubscription>()
}
