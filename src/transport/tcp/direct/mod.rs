//! A plain TCP session served by two threads. While the asyncio loop is responsive it reads
//! and writes the socket itself (`LoopIo`): a round trip then costs the two wake-ups a bare
//! asyncio Protocol pays instead of four. The driver keeps the deadlines and the keepalive,
//! and reads whenever the loop does not:
//! - **A stalled loop** (Python busy, the GIL held): data that waited `STALL_CHECK` without
//!   the loop reading is read by the driver, so the server's socket never backs up towards
//!   Asterisk's `writetimeout` (100 ms). The loop takes the reading back at its next callback.
//! - **A flood**: a loop read that fills a whole buffer hands the reading to the driver, which
//!   decodes in parallel with the loop's consumers, and gives it back once a `STALL_CHECK`
//!   window brings less than a buffer.
//!
//! One lock holds the session's state, and whoever reads, reads under it: no byte is read
//! twice or lost, and order is kept. The driver is not woken per packet while the loop reads:
//! it watches the socket only until data arrives, then checks once, `STALL_CHECK` later,
//! whether the loop read it (`driver.rs`).

pub(super) mod driver;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::core::Core;
use crate::error::Error;
use crate::transport::command::Request;
use crate::transport::loop_io::LoopIo;

/// How long readable data may wait for the loop before the driver reads it; also the window
/// over which a flood is judged over.
const STALL_CHECK: Duration = Duration::from_millis(5);

/// One read's buffer. A loop read that fills it found a flood waiting.
const READ_BUFFER: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reader {
    Loop,
    Driver,
    /// Logging off or ended: only the driver touches the socket.
    Closing,
}

/// Who reads, kept outside the lock: the loop asks on every wake-up and must not wait for a
/// driver that routes a flood under the lock. (Reads themselves happen under the lock: a role
/// is only whose turn it is.)
#[derive(Default)]
struct Roles {
    reader: AtomicU8,
    /// The driver reads a flood: the loop should not watch the socket meanwhile.
    flood: AtomicBool,
    /// The session is over (why: `Io::ended`).
    over: AtomicBool,
}

impl Roles {
    fn reader(&self) -> Reader {
        match self.reader.load(Ordering::Acquire) {
            0 => Reader::Loop,
            1 => Reader::Driver,
            _ => Reader::Closing,
        }
    }

    fn set_reader(&self, reader: Reader) {
        self.reader.store(reader as u8, Ordering::Release);
    }

    fn loop_wanted(&self) -> bool {
        !self.flood.load(Ordering::Acquire)
    }

    fn set_loop_wanted(&self, wanted: bool) {
        self.flood.store(!wanted, Ordering::Release);
    }

    fn over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }
}

struct Io {
    core: Core,
    roles: Arc<Roles>,
    /// The loop's read callbacks so far: the stall check compares it across its wait.
    loop_reads: u64,
    ended: Option<String>,
    /// The last write stopped at WouldBlock: the driver waits for room.
    write_blocked: bool,
    /// Where the driver's timer is set: an action due earlier pokes it.
    timer_at: Instant,
}

thread_local! {
    /// One read buffer per thread, not per session (a thousand idle connections would hold
    /// 64 MiB of them): a read's bytes go to the session's decoder at once.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

enum Read {
    /// This many bytes were read and routed.
    Got(usize),
    Empty,
    Closed(String),
}

impl Io {
    /// One read of at most a buffer, handed to the decoder (not routed).
    fn read_raw(&mut self, socket: &TcpStream) -> Read {
        let by_loop = self.roles.reader() == Reader::Loop;
        READ_BUF.with_borrow_mut(|buf| {
            loop {
                return match (&*socket).read(buf) {
                    Ok(0) => Read::Closed("the server closed the connection".into()),
                    Ok(n) => {
                        self.core.feed(buf.get(..n).unwrap_or_default(), by_loop);
                        Read::Got(n)
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Read::Empty,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => Read::Closed(format!("read: {e}")),
                };
            }
        })
    }

    /// One read, routed.
    fn read_once(&mut self, socket: &TcpStream) -> Read {
        let read = self.read_raw(socket);
        if let Read::Got(_) = read {
            self.core.process();
        }
        read
    }

    /// Writes what is encoded until done or WouldBlock; an error ends the session.
    fn write_out(&mut self, socket: &TcpStream) {
        while !self.core.out.is_empty() {
            match (&*socket).write(&self.core.out) {
                Ok(0) => return self.end("write: connection closed".into()),
                Ok(n) => {
                    self.core.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.end(format!("write: {e}")),
            }
        }
        self.write_blocked = false;
    }

    fn end(&mut self, reason: String) {
        self.ended.get_or_insert(reason);
        self.roles.over.store(true, Ordering::Release);
    }
}

pub(in crate::transport) struct DirectSession {
    io: Mutex<Io>,
    roles: Arc<Roles>,
    /// Requests that found the session busy (the driver routing a flood under the lock): the
    /// lock's holder sends them before anything else. The loop never waits for the driver to
    /// send, and a driver that takes the lock turn after turn cannot starve it.
    queued: Mutex<Vec<Request>>,
    socket: TcpStream,
    /// Pokes the driver: a write the loop could not finish, a flood handed over, an earlier
    /// deadline, the end of the session.
    notify: Notify,
}

impl DirectSession {
    /// `socket` is non-blocking (out of tokio). The driver reads until the loop first does.
    pub(super) fn new(socket: TcpStream, core: Core) -> Arc<DirectSession> {
        let roles = Arc::new(Roles::default());
        roles.set_reader(Reader::Driver);
        Arc::new(DirectSession {
            roles: roles.clone(),
            queued: Mutex::new(Vec::new()),
            io: Mutex::new(Io {
                core,
                roles,
                loop_reads: 0,
                ended: None,
                write_blocked: false,
                timer_at: Instant::now(),
            }),
            socket,
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Io> {
        // Poisoning needs a panic under the lock; the state is still consistent then.
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session is over: nobody uses the socket any more, `retire` takes back the core's
    /// loans and fails what it owed. The shutdown makes the loop's watch see the end.
    pub(super) fn end(self: &Arc<Self>, error: &Error, retire: impl FnOnce(&mut Core)) {
        let mut io = self.lock();
        io.end(error.to_string());
        self.roles.set_reader(Reader::Closing);
        io.core.shared.clear_direct(self.as_ref());
        // Requests still queued were never sent: registered now, they fail with the rest.
        self.send_queued(&mut io);
        retire(&mut io.core);
        drop(io);
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    fn queue(&self, requests: Vec<Request>) {
        self.queued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(requests);
    }

    /// Encodes what waited in `queued` (first, as it came first). Returns its earliest deadline.
    fn send_queued(&self, io: &mut Io) -> Option<Instant> {
        let queued = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|e| e.into_inner()));
        queued.into_iter().filter_map(|req| io.core.send(req)).min()
    }

    /// Whether a read would return something now (data, or the end).
    fn readable_now(&self) -> bool {
        !matches!(self.socket.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }
}

impl LoopIo for DirectSession {
    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn wanted(&self) -> bool {
        let roles = &self.roles;
        !roles.over() && roles.loop_wanted() && roles.reader() != Reader::Closing
    }

    fn take_reading(&self) {
        let roles = &self.roles;
        if !roles.over() && roles.loop_wanted() {
            // Only from the driver: never over a logoff.
            let _ = roles.reader.compare_exchange(
                Reader::Driver as u8,
                Reader::Loop as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn on_readable(&self) {
        if !self.wanted() {
            return;
        }
        let mut io = self.lock();
        // The loop is back: it reads from now on (the driver notices at its next wake).
        self.take_reading();
        if self.roles.reader() != Reader::Loop {
            return;
        }
        io.loop_reads += 1;
        let poke = match io.read_once(&self.socket) {
            Read::Got(n) if n == READ_BUFFER => {
                self.roles.set_reader(Reader::Driver);
                self.roles.set_loop_wanted(false);
                io.core.shared.stats_mut(|st| st.flood_handovers += 1);
                true
            }
            Read::Closed(reason) => {
                io.end(reason);
                true
            }
            Read::Got(_) | Read::Empty => false,
        };
        drop(io);
        if poke {
            self.notify.notify_one();
        }
    }

    fn submit(&self, requests: Vec<Request>) -> Result<(), Vec<Request>> {
        if self.roles.over() || self.roles.reader() == Reader::Closing {
            return Err(requests);
        }
        let mut io = match self.io.try_lock() {
            Ok(io) => io,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.queue(requests);
                self.notify.notify_one();
                return Ok(());
            }
        };
        if io.ended.is_some() {
            return Err(requests);
        }
        let was_blocked = io.write_blocked;
        // (Not `Option::min`: `None` is the smaller there.)
        let queued = self.send_queued(&mut io);
        let earliest = requests
            .into_iter()
            .filter_map(|req| io.core.send(req))
            .chain(queued)
            .min();
        if !was_blocked {
            io.write_out(&self.socket);
        }
        let poke = earliest.is_some_and(|at| at < io.timer_at)
            || (io.write_blocked && !was_blocked)
            || io.ended.is_some();
        drop(io);
        if poke {
            self.notify.notify_one();
        }
        Ok(())
    }

    fn cancel(&self, token: u64) -> bool {
        // A busy session gets the cancel through the driver's queue (after what is queued here).
        let Ok(mut io) = self.io.try_lock() else {
            return false;
        };
        if io.ended.is_some() {
            return false;
        }
        self.send_queued(&mut io);
        io.core.cancel(token);
        true
    }
}
