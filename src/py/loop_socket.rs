//! How the asyncio loop learns of a connection's work, two ways:
//! - **the wake-up socket**: the driver writes one byte to a socketpair the loop watches, when
//!   it queued completions or events for the loop (`SocketWaker`);
//! - **the session's own socket**, when the session lets the loop read it (`LoopIo`, plain
//!   TCP): the loop watches it with `add_reader` and reads it on its own thread, so a reply
//!   reaches its future with no thread hop (`Watched`, kept in step by `Connection`).
//!
//! While the loop reads, the results it routes are settled right after the read: the wake-up
//! byte for them would only wake the loop again for nothing (`Settling`).

use std::cell::Cell;
use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;

use crate::transport::{LoopIo, Wake};

thread_local! {
    /// The waker whose results this thread settles itself right now (its address), if any.
    static SETTLING: Cell<usize> = const { Cell::new(0) };
    /// Whether a wake-up for results was held back meanwhile.
    static HELD_BACK: Cell<bool> = const { Cell::new(false) };
}

/// Pokes the asyncio loop: one byte on a non-blocking socketpair. A full pipe means a wake-up
/// is already pending, so WouldBlock is fine.
pub(super) struct SocketWaker(pub(super) UnixStream);

impl SocketWaker {
    fn address(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }
}

impl Wake for SocketWaker {
    fn wake(&self) {
        let _ = (&self.0).write(&[1]);
    }

    fn wake_for_results(&self) {
        if SETTLING.with(Cell::get) == self.address() {
            HELD_BACK.with(|h| h.set(true));
        } else {
            self.wake();
        }
    }
}

/// While alive, results for `waker` do not wake the loop: the caller settles them itself
/// if [`Settling::end`] says some arrived. (Results other threads deliver keep their wake-up:
/// it also reports the state changes that came with them, a close say.)
pub(super) struct Settling(());

impl Settling {
    pub(super) fn begin(waker: &SocketWaker) -> Settling {
        SETTLING.with(|s| s.set(waker.address()));
        HELD_BACK.with(|h| h.set(false));
        Settling(())
    }

    /// Whether results arrived that the caller must settle.
    pub(super) fn end(self) -> bool {
        HELD_BACK.with(Cell::get)
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        SETTLING.with(|s| s.set(0));
    }
}

/// A session socket the loop watches: what was registered where. Holding `io` keeps the
/// descriptor open until the loop stopped watching it, so the number is never reused under
/// the loop's registration.
pub(super) struct Watched {
    pub(super) io: Arc<dyn LoopIo>,
    fd: RawFd,
    event_loop: Py<PyAny>,
}

impl Watched {
    /// Whether this registration is `io` on `event_loop`.
    pub(super) fn is(&self, io: &Arc<dyn LoopIo>, event_loop: &Py<PyAny>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.io), Arc::as_ptr(io)) && self.event_loop.is(event_loop)
    }

    /// `loop.add_reader(fd, callback)` for `io`.
    pub(super) fn start(
        io: Arc<dyn LoopIo>,
        event_loop: Py<PyAny>,
        callback: Bound<'_, PyAny>,
    ) -> PyResult<Watched> {
        let py = callback.py();
        let fd = io.fd();
        event_loop
            .bind(py)
            .call_method1(intern!(py, "add_reader"), (fd, callback))?;
        Ok(Watched { io, fd, event_loop })
    }

    /// `loop.remove_reader(fd)` (a closed loop has nothing to remove); the descriptor may
    /// close once this is dropped.
    pub(super) fn stop(self, py: Python<'_>) -> PyResult<()> {
        let event_loop = self.event_loop.bind(py);
        if !event_loop
            .call_method0(intern!(py, "is_closed"))?
            .is_truthy()?
        {
            event_loop.call_method1(intern!(py, "remove_reader"), (self.fd,))?;
        }
        Ok(())
    }

    pub(super) fn event_loop(&self) -> &Py<PyAny> {
        &self.event_loop
    }
}
