//! The tokio runtime owned by the extension: created lazily, recreated in a forked child,
//! and shut down at interpreter exit (atexit -> `_shutdown`). A static runtime that can never
//! be shut down lets worker threads touch a finalizing interpreter and crash the exit
//! (architecture.md §4); after `_shutdown`, calls raise `ClientClosed` instead of quietly
//! building a new runtime.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Handle, Runtime};

struct Slot {
    runtime: Option<Runtime>,
    pid: u32,
    shut_down: bool,
}

static SLOT: Mutex<Slot> = Mutex::new(Slot {
    runtime: None,
    pid: 0,
    shut_down: false,
});

/// A handle to the runtime, building it on first use (or again in a forked child).
pub fn handle() -> Result<Handle, crate::Error> {
    let mut slot = SLOT
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
            .thread_name("amiwire")
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

/// Shuts the runtime down, detached from the interpreter so that tasks waiting to attach
/// cannot deadlock the shutdown.
#[pyfunction]
pub fn _shutdown(py: Python<'_>) {
    super::logging::stop();
    let runtime = match SLOT.lock() {
        Ok(mut slot) => {
            slot.shut_down = true;
            if slot.pid == std::process::id() {
                slot.runtime.take()
            } else {
                None
            }
        }
        Err(_) => None,
    };
    if let Some(runtime) = runtime {
        py.detach(move || runtime.shutdown_timeout(Duration::from_secs(2)));
    }
}
