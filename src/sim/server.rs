//! The listener and the handle that stops it all.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

use super::calls::load::{self, Load};
use super::config::{SimConfig, User};
use super::core::{Core, lock, stopped};
use super::http;
use super::replay;
use super::session::{self, Unauthenticated};
use super::stream::Stream;
use super::tls;
use super::wire::Event;

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds (127.0.0.1:0 unless configured) and starts serving in the background.
    pub async fn start(mut config: SimConfig) -> io::Result<SimHandle> {
        if config.load_calls > 0 {
            config.dialplan = load::with_context(config.dialplan, config.call_duration);
        }
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
        let load = (config.load_calls > 0).then_some((config.load_calls, config.call_duration));
        let core = Arc::new(Core::new(config, stop_rx));
        let load = load.map(|(calls, duration)| Load::start(&core, calls, duration));
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
            load,
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
                // manager.c `session_do()`: a connection that would exceed `authlimit`
                // unauthenticated ones is closed at once, before the banner.
                let Ok(slot) = core.unauthenticated.clone().try_acquire_owned() else {
                    log::debug!("simulator: authlimit reached, closing the connection from {peer}");
                    continue;
                };
                let index = conn_index;
                conn_index += 1;
                tasks.spawn(connection(core.clone(), acceptor.clone(), sock, peer, index, slot));
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

/// One accepted connection: the TLS handshake, then the AMI session or the replayed
/// transcript. `authtimeout` runs from the accept, so a handshake that stalls does not keep
/// its `authlimit` slot longer than an idle plain connection would.
async fn connection(
    core: Arc<Core>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    sock: TcpStream,
    peer: SocketAddr,
    index: usize,
    slot: OwnedSemaphorePermit,
) {
    let deadline = tokio::time::Instant::now() + core.cfg.auth_timeout;
    let _ = sock.set_nodelay(true);
    let local = sock.local_addr().unwrap_or(peer);
    let stream: Stream = match acceptor {
        Some(a) => match tokio::time::timeout_at(deadline, a.accept(sock)).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => {
                log::debug!("simulator TLS handshake failed: {e}");
                return;
            }
            Err(_) => return,
        },
        None => Box::new(sock),
    };
    match core.cfg.replay.clone() {
        // A transcript has no login to wait for.
        Some(path) => {
            drop(slot);
            replay::serve(core, stream, &path, index).await;
        }
        None => {
            let pending = Unauthenticated { slot, deadline };
            session::serve(core, stream, local, peer, pending).await;
        }
    }
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
    load: Option<Load>,
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

    /// Events a session did not get because it was more than `SimConfig::session_event_queue` (10,000)
    /// events behind, over the simulator's life.
    pub fn events_dropped(&self) -> u64 {
        self.core.events_dropped()
    }

    /// Bytes the AMI sessions' sockets accepted so far (what a client has not read yet is
    /// this less what it read).
    pub fn bytes_sent(&self) -> u64 {
        self.core
            .bytes_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Live simulated channels.
    pub fn channel_count(&self) -> usize {
        lock(&self.core.calls).channels.len()
    }

    /// Load calls placed so far ([`SimConfig::load_calls`]; 0 without the load mode).
    pub fn load_calls_started(&self) -> u64 {
        self.load.as_ref().map_or(0, Load::started)
    }

    /// Load calls whose every channel has hung up.
    pub fn load_calls_ended(&self) -> u64 {
        self.load.as_ref().map_or(0, Load::ended)
    }

    /// Places no new load call; those in progress run to their end.
    pub fn stop_load(&self) {
        if let Some(load) = &self.load {
            load.stop();
        }
    }

    /// Closes every AMI connection (TCP and TLS) now, as a network failure would, with the
    /// events still queued for them, and forgets every HTTP session (as a restart of the
    /// manager would); calls go on and new connections and logins are served as usual.
    pub fn disconnect_all(&self) {
        self.core.disconnects.send_modify(|n| *n += 1);
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
