//! `amiwire._core.Simulator`: the embedded AMI simulator started on the extension's runtime.
//! The Python-facing wrapper with context managers lives in `amiwire/testing.py`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::errors::to_pyerr;
use super::runtime;
use crate::sim::{
    CommandStyle, Dialplan, Event, Faults, Firehose, FirehoseSource, SimConfig, SimHandle,
    Simulator, Tls, User,
};

#[pyclass(name = "Simulator", module = "amiwire._core", frozen)]
pub struct PySimulator {
    handle: Mutex<Option<SimHandle>>,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    users: Vec<(String, String)>,
    cert_pem: Option<String>,
}

fn faults_from(names: Vec<String>, drip_interval: f64) -> PyResult<Faults> {
    let mut f = Faults::default();
    for name in names {
        match name.as_str() {
            "close_during_login" => f.close_during_login = true,
            "close_mid_message" => f.close_mid_message = true,
            "close_mid_list" => f.close_mid_list = true,
            "stall_after_login" => f.stall_after_login = true,
            "garbage_after_login" => f.garbage_after_login = true,
            "ignore_pings" => f.ignore_pings = true,
            "drip" => f.drip = Some(secs(drip_interval, "drip_interval")?),
            other => return Err(PyValueError::new_err(format!("unknown fault {other:?}"))),
        }
    }
    Ok(f)
}

fn secs(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{what} must be a non-negative number")))
}

impl PySimulator {
    /// A figure of the running simulator; the default once it is closed.
    fn observe<T: Default>(&self, figure: impl FnOnce(&SimHandle) -> T) -> T {
        self.handle
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(figure))
            .unwrap_or_default()
    }
}

#[pymethods]
impl PySimulator {
    /// Starts a simulator listening on `host:port` (port 0 = ephemeral).
    #[new]
    #[pyo3(signature = (
        *, host = "127.0.0.1", port = 0, users = None, command_style = "output",
        faults = Vec::new(), drip_interval = 0.001, firehose_file = None, firehose_count = None,
        firehose_repeats = 1, firehose_after = None, replay = None, tls = false, tls_cert = None,
        tls_key = None, auth_fail_delay = 1.0, auth_timeout = 30.0, time_scale = 1.0, dialplan = None,
        http = false, http_timeout = 60.0, digest_stale = 62.0, write_timeout = None,
        load_calls = 0, call_duration = 10.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        users: Option<Vec<(String, String, String, String)>>,
        command_style: &str,
        faults: Vec<String>,
        drip_interval: f64,
        firehose_file: Option<PathBuf>,
        firehose_count: Option<u64>,
        firehose_repeats: u32,
        firehose_after: Option<String>,
        replay: Option<PathBuf>,
        tls: bool,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        auth_fail_delay: f64,
        auth_timeout: f64,
        time_scale: f64,
        dialplan: Option<String>,
        http: bool,
        http_timeout: f64,
        digest_stale: f64,
        write_timeout: Option<f64>,
        load_calls: usize,
        call_duration: f64,
    ) -> PyResult<Self> {
        let ip: IpAddr = host
            .parse()
            .map_err(|_| PyValueError::new_err(format!("host must be an IP address: {host:?}")))?;
        let mut cfg = SimConfig::new()
            .bind(SocketAddr::new(ip, port))
            .faults(faults_from(faults, drip_interval)?)
            .auth_fail_delay(secs(auth_fail_delay, "auth_fail_delay")?)
            .auth_timeout(secs(auth_timeout, "auth_timeout")?)
            .time_scale(time_scale)
            .load_calls(load_calls)
            .call_duration(secs(call_duration, "call_duration")?)
            .http(http)
            .http_timeout(secs(http_timeout, "http_timeout")?)
            .digest_stale(secs(digest_stale, "digest_stale")?)
            .write_timeout(
                write_timeout
                    .map(|t| secs(t, "write_timeout"))
                    .transpose()?,
            )
            .command_style(match command_style {
                "output" => CommandStyle::Output,
                "legacy" => CommandStyle::Legacy,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "command_style must be 'output' or 'legacy', not {other:?}"
                    )));
                }
            });
        if let Some(users) = users {
            cfg = cfg.users(
                users
                    .iter()
                    .map(|(n, s, r, w)| User::new(n, s, r, w))
                    .collect(),
            );
        }
        match (firehose_file, firehose_count) {
            (Some(path), _) => {
                cfg = cfg.firehose(Firehose {
                    source: FirehoseSource::File(path),
                    repeats: firehose_repeats,
                    after_action: firehose_after,
                })
            }
            (None, Some(count)) => {
                cfg = cfg.firehose(Firehose {
                    source: FirehoseSource::Generated { count },
                    repeats: firehose_repeats,
                    after_action: firehose_after,
                })
            }
            (None, None) => {}
        }
        if let Some(path) = replay {
            cfg = cfg.replay(path);
        }
        match (tls, tls_cert, tls_key) {
            (_, Some(cert), Some(key)) => cfg = cfg.tls(Tls::Pem { cert, key }),
            (_, Some(_), None) | (_, None, Some(_)) => {
                return Err(PyValueError::new_err(
                    "tls_cert and tls_key go together (PEM text)",
                ));
            }
            (true, None, None) => cfg = cfg.tls(Tls::Generate),
            (false, None, None) => {}
        }
        if let Some(text) = dialplan {
            cfg = cfg.dialplan(Dialplan::parse("extensions.conf", &text));
        }
        let rt = runtime::sim_handle().map_err(|e| to_pyerr(py, e))?;
        let handle = py
            .detach(|| rt.block_on(Simulator::start(cfg)))
            .map_err(|e| to_pyerr(py, e.into()))?;
        Ok(PySimulator {
            addr: handle.addr(),
            http_addr: handle.http_addr(),
            users: handle
                .users()
                .iter()
                .map(|u| (u.name.clone(), u.secret.clone()))
                .collect(),
            cert_pem: handle.tls_cert_pem().map(str::to_string),
            handle: Mutex::new(Some(handle)),
        })
    }

    #[getter]
    fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The AJAM port when started with `http=True`.
    #[getter]
    fn http_port(&self) -> Option<u16> {
        self.http_addr.map(|a| a.port())
    }

    /// `(username, secret)` pairs the simulator accepts.
    #[getter]
    fn users(&self) -> Vec<(String, String)> {
        self.users.clone()
    }

    #[getter]
    fn tls_cert_pem(&self) -> Option<String> {
        self.cert_pem.clone()
    }

    #[getter]
    fn running(&self) -> bool {
        self.handle.lock().map(|h| h.is_some()).unwrap_or(false)
    }

    /// Broadcasts `Event: name` with `Privilege: privilege` and the headers, in order.
    #[pyo3(signature = (name, privilege = "user,all", headers = Vec::new()))]
    fn emit_event(
        &self,
        name: &str,
        privilege: &str,
        headers: Vec<(String, String)>,
    ) -> PyResult<()> {
        let guard = self
            .handle
            .lock()
            .map_err(|_| PyRuntimeError::new_err("simulator lock poisoned"))?;
        let handle = guard
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the simulator is closed"))?;
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        handle.emit_event(Event::build(name, privilege, &pairs));
        Ok(())
    }

    fn session_count(&self) -> usize {
        self.observe(SimHandle::session_count)
    }

    fn channel_count(&self) -> usize {
        self.observe(SimHandle::channel_count)
    }

    fn events_dropped(&self) -> u64 {
        self.observe(SimHandle::events_dropped)
    }

    fn bytes_sent(&self) -> u64 {
        self.observe(SimHandle::bytes_sent)
    }

    fn load_calls_started(&self) -> u64 {
        self.observe(SimHandle::load_calls_started)
    }

    fn load_calls_ended(&self) -> u64 {
        self.observe(SimHandle::load_calls_ended)
    }

    /// Closes every AMI connection and forgets every HTTP session now; calls go on (a no-op
    /// once closed).
    fn disconnect_all(&self) {
        self.observe(SimHandle::disconnect_all)
    }

    /// Places no new load call; those in progress run to their end.
    fn stop_load(&self) {
        self.observe(SimHandle::stop_load)
    }

    /// Stops listening and closes every connection (idempotent).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            // Without a runtime (interpreter exit) dropping the handle still signals the stop.
            if let Ok(rt) = runtime::sim_handle() {
                py.detach(|| rt.block_on(handle.shutdown()));
            }
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("<amiwire._core.Simulator {}>", self.addr)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySimulator>()
}
