//! The tokio runtimes owned by the extension: created lazily, recreated in a forked child,
//! and shut down at interpreter exit (atexit -> `_shutdown`). A static runtime that can never
//! be shut down lets worker threads touch a finalizing interpreter and crash the exit
//! (architecture.md §4); after `_shutdown`, calls raise `ClientClosed` instead of quietly
//! building a new runtime.
//!
//! Clients and simulators get separate runtimes. An embedded simulator stands in for a PBX in
//! another process; on the clients' single worker it would take turns with the connection
//! drivers, and every benchmark and flood test would measure the two interleaved.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Handle, Runtime};

struct Slot {
    name: &'static str,
    runtime: Option<Runtime>,
    pid: u32,
    shut_down: bool,
}

impl Slot {
    const fn new(name: &'static str) -> Slot {
        Slot {
            name,
            runtime: None,
            pid: 0,
            shut_down: false,
        }
    }
}

static CLIENTS: Mutex<Slot> = Mutex::new(Slot::new("amiwire"));
static SIMULATORS: Mutex<Slot> = Mutex::new(Slot::new("amiwire-sim"));

fn get(slot: &Mutex<Slot>) -> Result<Handle, crate::Error> {
    let mut slot = slot
        .lock()
        .map_err(|_| crate::Error::Internal("runtime lock poisoned".into()))?;
    if slot.shut_down {
        return Err(crate::Error::Closed {
            reason: "amiwire's runtime was shut down at interpreter exit".into(),
        });
    }
    let pid = std::process::id();
    if slot.runtime.is_some() && slot.pid != pid {
        // tokio does not survive fork: the parent's worker threads do not exist here. Leak the
        // old runtime (dropping it would try to join threads that are gone).
        if let Some(old) = slot.runtime.take() {
            std::mem::forget(old);
        }
    }
    if slot.runtime.is_none() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(slot.name)
            .enable_all()
            .build()
            .map_err(crate::Error::Io)?;
        slot.runtime = Some(runtime);
        slot.pid = pid;
    }
    slot.runtime
        .as_ref()
        .map(|rt| rt.handle().clone())
        .ok_or_else(|| crate::Error::Internal("no runtime".into()))
}

/// The clients' runtime, built on first use (or again in a forked child).
pub fn handle() -> Result<Handle, crate::Error> {
    get(&CLIENTS)
}

/// The embedded simulators' runtime.
pub fn sim_handle() -> Result<Handle, crate::Error> {
    get(&SIMULATORS)
}

fn take(slot: &Mutex<Slot>) -> Option<Runtime> {
    let mut slot = slot.lock().ok()?;
    slot.shut_down = true;
    if slot.pid == std::process::id() {
        slot.runtime.take()
    } else {
        None
    }
}

/// Shuts the runtimes down, detached from the interpreter so that tasks waiting to attach
/// cannot deadlock the shutdown.
#[pyfunction]
pub fn _shutdown(py: Python<'_>) {
    super::logging::stop();
    let runtimes: Vec<Runtime> = [take(&CLIENTS), take(&SIMULATORS)]
        .into_iter()
        .flatten()
        .collect();
    py.detach(move || {
        for runtime in runtimes {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    });
}
