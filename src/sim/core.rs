//! The state every connection and call of one simulator shares: configuration, clock, global
//! variables, the call tables, and the fan-out of events to sessions. Everything else in the
//! simulator depends on this file; it depends only on data: the configuration, the wire types
//! and the call tables (`calls/model.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, mpsc, watch};

use super::calls::model::Calls;
use super::config::{SimConfig, User};
use super::wire::Event;

/// State shared by every connection and call of one simulator.
pub(crate) struct Core {
    pub(crate) cfg: SimConfig,
    pub(crate) started: SystemTime,
    pub(crate) started_at: Instant,
    pub(crate) globals: Mutex<HashMap<String, String>>,
    sessions: Mutex<Vec<(u64, mpsc::Sender<Event>)>>,
    /// Events not queued for a session because its queue was full.
    events_dropped: AtomicU64,
    /// Bytes the AMI sessions' sockets accepted, over the simulator's life.
    pub(crate) bytes_sent: AtomicU64,
    /// The `seq` the next emitted event gets.
    next_seq: AtomicU64,
    pub(crate) calls: Mutex<Calls>,
    next_session: AtomicU64,
    next_uniqueid: AtomicU64,
    pub(crate) calls_processed: AtomicU64,
    /// One permit per AMI connection not logged in yet: `authlimit` of them at most.
    pub(crate) unauthenticated: Arc<Semaphore>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Bumped to close every AMI connection at once (`SimHandle::disconnect_all`).
    pub(crate) disconnects: watch::Sender<u64>,
}

/// Locks a std mutex, recovering the data if a panicking task poisoned it (the simulator keeps
/// serving the other connections).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    pub(crate) fn new(cfg: SimConfig, shutdown: watch::Receiver<bool>) -> Core {
        let globals = cfg.dialplan.globals.iter().cloned().collect();
        let unauthenticated = Arc::new(Semaphore::new(cfg.auth_limit));
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
            bytes_sent: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            calls_processed: AtomicU64::new(0),
            unauthenticated,
            shutdown,
            disconnects: watch::Sender::new(0),
        }
    }

    /// Sends an event to every logged-in session; each applies its own mask and filters.
    /// Numbered under the sessions lock, events sit in every queue in `seq` order.
    pub(crate) fn emit(&self, mut event: Event) {
        let mut sessions = lock(&self.sessions);
        event.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        sessions.retain(|(_, tx)| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// The `seq` of the next event: a list answer built under the calls lock reflects exactly
    /// the call events numbered below it (they are emitted under that lock too).
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    pub(crate) fn register(&self) -> (u64, mpsc::Receiver<Event>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.cfg.session_event_queue);
        lock(&self.sessions).push((id, tx));
        (id, rx)
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.sessions).retain(|(sid, _)| *sid != id);
    }

    pub(crate) fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Events a session did not get because its queue was full.
    pub(crate) fn events_dropped(&self) -> u64 {
        self.events_dropped.load(Ordering::Relaxed)
    }

    /// `<epoch seconds>.<counter>`, the shape of Asterisk's uniqueids.
    pub(crate) fn uniqueid(&self) -> String {
        let n = self.next_uniqueid.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}", epoch_secs(SystemTime::now()), n)
    }

    /// The `manager.conf` user of that name, case-insensitively as manager.c's
    /// `get_manager_by_name_locked()` compares (`strcasecmp`).
    pub(crate) fn user(&self, name: &str) -> Option<&User> {
        self.cfg
            .users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
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

/// Resolves once the simulator is stopping (the watch guard is dropped at once, so callers'
/// futures stay `Send`).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
