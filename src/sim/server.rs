//! The listener, the state shared by all connections, and the handle that stops it all.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::calls::Calls;
use super::config::{SimConfig, User};
use super::http;
use super::session;
use super::tls;
use super::wire::Event;

/// Events waiting for one session (its socket or its next WaitEvent). A session further behind
/// than this loses the newer events, counted in `SimHandle::events_dropped`: a client that stops
/// reading must not make the simulator's memory grow without end. (Asterisk bounds the same by
/// dropping the session after `writetimeout`; see `SimConfig::write_timeout`.)
pub(crate) const SESSION_EVENT_QUEUE: usize = 10_000;

/// State shared by every connection and call of one simulator.
pub(crate) struct Core {
    pub(crate) cfg: SimConfig,
    pub(crate) started: SystemTime,
    pub(crate) started_at: Instant,
    pub(crate) globals: Mutex<HashMap<String, String>>,
    sessions: Mutex<Vec<(u64, mpsc::Sender<Event>)>>,
    /// Events not queued for a session because its queue was full.
    events_dropped: AtomicU64,
    pub(crate) calls: Mutex<Calls>,
    next_session: AtomicU64,
    next_uniqueid: AtomicU64,
    pub(crate) calls_processed: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Locks a std mutex, recovering the data if a panicking task poisoned it (the simulator keeps
/// serving the other connections).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    pub(crate) fn new(cfg: SimConfig, shutdown: watch::Receiver<bool>) -> Core {
        let globals = cfg.dialplan.globals.iter().cloned().collect();
        Core {
            cfg,
            started: SystemTime::now(),
            started_at: Instant::now(),
            globals: Mutex::new(globals),
            sessions: Mutex::new(Vec::new()),
            calls: Mutex::new(Calls::default()),
            next_session: AtomicU64::new(1),
            next_uniqueid: AtomicU64::new(1),
            events_dropped: AtomicU64::new(0),
            calls_processed: AtomicU64::new(0),
            shutdown,
        }
    }

    /// Sends an event to every logged-in session; each applies its own mask and filters.
    pub(crate) fn emit(&self, event: Event) {
        lock(&self.sessions).retain(|(_, tx)| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    pub(crate) fn register(&self) -> (u64, mpsc::Receiver<Event>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SESSION_EVENT_QUEUE);
        lock(&self.sessions).push((id, tx));
        (id, rx)
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.sessions).retain(|(sid, _)| *sid != id);
    }

    pub(crate) fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// `<epoch seconds>.<counter>`, the shape of Asterisk's uniqueids.
    pub(crate) fn uniqueid(&self) -> String {
        let n = self.next_uniqueid.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}", epoch_secs(SystemTime::now()), n)
    }

    pub(crate) fn user(&self, name: &str) -> Option<&User> {
        self.cfg.users.iter().find(|u| u.name == name)
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// A dialplan duration after `time_scale`.
    pub(crate) fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs * self.cfg.time_scale).max(0.0))
    }
}

pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds (127.0.0.1:0 unless configured) and starts serving in the background.
    pub async fn start(config: SimConfig) -> io::Result<SimHandle> {
        let acceptor = match &config.tls {
            Some(t) => Some(tls::acceptor(t)?),
            None => None,
        };
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let http_listener = if config.http {
            Some(TcpListener::bind((addr.ip(), 0)).await?)
        } else {
            None
        };
        let http_addr = match &http_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let core = Arc::new(Core::new(config, stop_rx));
        let cert_pem = acceptor.as_ref().map(|(_, pem)| pem.clone());
        let task = tokio::spawn(accept_loop(
            listener,
            acceptor.map(|(a, _)| a),
            core.clone(),
        ));
        let http_task = http_listener.map(|l| tokio::spawn(http::serve(l, core.clone())));
        log::debug!("AMI simulator listening on {addr} (HTTP: {http_addr:?})");
        Ok(SimHandle {
            addr,
            http_addr,
            http_task,
            core,
            stop: stop_tx,
            task: Some(task),
            cert_pem,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    core: Arc<Core>,
) {
    let mut stop = core.shutdown.clone();
    let mut tasks = JoinSet::new();
    let mut conn_index = 0usize;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => {
                let Ok((sock, peer)) = accepted else {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let local = sock.local_addr().unwrap_or(peer);
                let core = core.clone();
                let acceptor = acceptor.clone();
                let index = conn_index;
                conn_index += 1;
                tasks.spawn(async move {
                    let stream: session::Stream = match acceptor {
                        Some(a) => match a.accept(sock).await {
                            Ok(s) => Box::new(s),
                            Err(e) => {
                                log::debug!("simulator TLS handshake failed: {e}");
                                return;
                            }
                        },
                        None => Box::new(sock),
                    };
                    session::serve(core, stream, local, peer, index).await;
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Sessions watch the same signal; give them a moment to close their sockets.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// A running simulator. Dropping it stops it too (without waiting).
pub struct SimHandle {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    cert_pem: Option<String>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The AJAM listener, when [`SimConfig::http`] is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    pub fn users(&self) -> &[User] {
        &self.core.cfg.users
    }

    /// The server certificate (PEM) when TLS is on, for clients to trust.
    pub fn tls_cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// Sends an event to every logged-in session allowed to read it.
    pub fn emit_event(&self, event: Event) {
        self.core.emit(event);
    }

    /// Logged-in sessions right now.
    pub fn session_count(&self) -> usize {
        self.core.session_count()
    }

    /// Events a session did not get because it was more than `SESSION_EVENT_QUEUE` (10,000)
    /// events behind, over the simulator's life.
    pub fn events_dropped(&self) -> u64 {
        self.core.events_dropped.load(Ordering::Relaxed)
    }

    /// Live simulated channels.
    pub fn channel_count(&self) -> usize {
        lock(&self.core.calls).channels.len()
    }

    /// Stops listening, closes every connection and ends every call.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(task) = self.http_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Resolves once the simulator is stopping (the watch guard is dropped at once, so callers'
/// futures stay `Send`).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
