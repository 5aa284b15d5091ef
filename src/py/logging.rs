//! Rust `log` records reach Python's `logging` (logger `amiwire.…`) without the I/O threads
//! ever touching the interpreter.
//!
//! pyo3-log attaches to the interpreter on whichever thread logs. Done from a tokio worker,
//! that thread would wait for the GIL: the socket reader would then wait on Python code, and a
//! worker that logs while holding a lock the Python thread also takes would deadlock. So the
//! records go through a bounded queue to one forwarding thread, which alone talks to Python;
//! when the queue is full a record is dropped and counted rather than waited for.
//!
//! Dependencies' records (reqwest, hyper, rustls) arrive as `amiwire.<crate>…`, warnings and
//! errors only, so that configuring the `amiwire` logger covers everything amiwire emits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;

const QUEUE: usize = 4096;

struct Owned {
    level: Level,
    target: String,
    message: String,
    module: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

struct Forwarding {
    tx: Mutex<Option<SyncSender<Owned>>>,
    dropped: AtomicU64,
    /// Records at or below this level are forwarded; trace never crosses into Python.
    max: LevelFilter,
}

static FORWARDING: OnceLock<Forwarding> = OnceLock::new();

/// Whether a record comes from amiwire itself rather than from a dependency (reqwest, hyper,
/// rustls), whose records are re-homed under the `amiwire` logger.
fn ours(target: &str) -> bool {
    target == "amiwire" || target.starts_with("amiwire::")
}

impl Log for Forwarding {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // A dependency's own debug and info records describe its internals (a connection
        // pooled, a TLS record read), never needed to use amiwire: only its warnings cross.
        let max = if ours(metadata.target()) {
            self.max
        } else {
            LevelFilter::Warn
        };
        metadata.level() <= max
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let owned = Owned {
            level: record.level(),
            target: if ours(record.target()) {
                record.target().to_owned()
            } else {
                format!("amiwire::{}", record.target())
            },
            message: record.args().to_string(),
            module: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
        };
        let sent = match self.tx.lock() {
            Ok(tx) => tx.as_ref().map(|tx| tx.try_send(owned)),
            Err(_) => None,
        };
        if matches!(sent, Some(Err(TrySendError::Full(_)))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

fn forward(rx: Receiver<Owned>, python: pyo3_log::Logger) {
    while let Ok(r) = rx.recv() {
        let log = || {
            python.log(
                &Record::builder()
                    .level(r.level)
                    .target(&r.target)
                    .args(format_args!("{}", r.message))
                    .module_path(r.module.as_deref())
                    .file(r.file.as_deref())
                    .line(r.line)
                    .build(),
            )
        };
        // A record queued before `stop()` may be taken after the interpreter finalized:
        // attaching then would panic on this thread. Such a record, and the rest, are dropped.
        if Python::try_attach(|_| log()).is_none() {
            return;
        }
    }
}

/// Installs the forwarding logger (once per process).
pub fn init(py: Python<'_>) -> PyResult<()> {
    if FORWARDING.get().is_some() {
        return Ok(());
    }
    // Levels are asked of Python per record, not cached: a cache would keep the levels of the
    // first record for good, and a `logging` configured later (or caplog) would never see
    // amiwire's records. Records are few (state changes, warnings), and only this thread pays.
    let python = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?.filter(LevelFilter::Debug);
    let (tx, rx) = sync_channel(QUEUE);
    let forwarding = Forwarding {
        tx: Mutex::new(Some(tx)),
        dropped: AtomicU64::new(0),
        max: LevelFilter::Debug,
    };
    if FORWARDING.set(forwarding).is_err() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("amiwire-log".into())
        .spawn(move || forward(rx, python))?;
    if let Some(logger) = FORWARDING.get() {
        // Fails only if the embedding program installed its own Rust logger: keep that one.
        if log::set_logger(logger).is_ok() {
            log::set_max_level(LevelFilter::Debug);
        }
    }
    Ok(())
}

/// Stops forwarding (at interpreter exit: the forwarding thread must not attach to an
/// interpreter that is finalizing). Later records are dropped.
pub fn stop() {
    if let Some(f) = FORWARDING.get() {
        if let Ok(mut tx) = f.tx.lock() {
            tx.take();
        }
    }
}

/// Log records dropped because Python's logging could not keep up.
#[pyfunction]
pub fn log_records_dropped() -> u64 {
    FORWARDING
        .get()
        .map_or(0, |f| f.dropped.load(Ordering::Relaxed))
}
