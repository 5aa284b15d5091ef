//! The driver's side of a direct session: its waits, the stall and flood checks, the
//! commands of other handles, the logoff.

use std::io::ErrorKind;
use std::sync::Arc;

use log::debug;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{DirectSession, READ_BUFFER, Read, Reader, STALL_CHECK};
use crate::transport::command::{Command, Reply};
use crate::transport::supervisor::{End, Link};
use crate::transport::tcp::serve::wait_for_goodbye;

/// The driver's registration of the socket with tokio, only while it waits for it: while the
/// loop reads, the socket is unregistered once data arrived, so that the driver's thread is
/// not woken for every packet the loop reads anyway. A duplicate descriptor of the same socket
/// is registered (tokio owns and closes it), so the loop's descriptor is never tokio's.
#[derive(Default)]
struct Registration(Option<tokio::net::TcpStream>);

impl Registration {
    fn set(&mut self, d: &DirectSession, on: bool) -> std::io::Result<()> {
        if on != self.0.is_some() {
            self.0 = match on {
                true => Some(tokio::net::TcpStream::from_std(d.socket.try_clone()?)?),
                false => None,
            };
        }
        Ok(())
    }

    async fn ready(&self, interest: Interest) -> std::io::Result<()> {
        match &self.0 {
            Some(stream) => stream.ready(interest).await.map(drop),
            None => std::future::pending().await,
        }
    }

    /// Runs `io`, which reports WouldBlock when it found the socket not ready: tokio then
    /// clears the readiness it saw before `io` ran, never a later one.
    fn try_io<R>(&self, interest: Interest, io: impl FnOnce() -> std::io::Result<R>) -> Option<R> {
        self.0.as_ref()?.try_io(interest, io).ok()
    }
}

fn would_block<R>() -> std::io::Result<R> {
    Err(ErrorKind::WouldBlock.into())
}

/// The driver's stall check while the loop reads.
#[derive(Clone, Copy)]
enum Watch {
    /// Waiting for data to arrive.
    Listening,
    /// Data arrived when the loop had made `loop_reads` reads; checked at `until`.
    Waiting { loop_reads: u64, until: Instant },
}

/// What the driver waits for in one turn.
struct Turn {
    read: bool,
    write: bool,
    wake_at: Instant,
}

/// The driver's side of a direct session, between its waits.
struct DriverSide {
    watch: Watch,
    /// While the driver reads a flood: the window's start and the bytes read since.
    window: (Instant, usize),
}

impl DirectSession {
    /// Deadlines, keepalive, the stall and flood checks; then what to wait for. `Err`: the
    /// session is over.
    fn plan(&self, side: &mut DriverSide) -> Result<Turn, String> {
        let now = Instant::now();
        let mut io = self.lock();
        if self.send_queued(&mut io).is_some() && !io.write_blocked {
            io.write_out(&self.socket);
        }
        loop {
            if let Some(reason) = &io.ended {
                return Err(reason.clone());
            }
            match io.core.due() {
                Some(due) if now >= due => {
                    if let Some(reason) = io.core.tick() {
                        return Err(reason);
                    }
                    io.write_out(&self.socket);
                }
                _ => break,
            }
        }
        if let Watch::Waiting { loop_reads, until } = side.watch {
            if now >= until {
                side.watch = Watch::Listening;
                if self.roles.reader() == Reader::Loop
                    && io.loop_reads == loop_reads
                    && self.readable_now()
                {
                    debug!("amiwire: the loop did not read for {STALL_CHECK:?}: the driver reads");
                    self.roles.set_reader(Reader::Driver);
                    io.core.shared.stats_mut(|st| st.stall_takeovers += 1);
                }
            }
        }
        let flood = self.roles.reader() == Reader::Driver && !self.roles.loop_wanted();
        if flood && now >= side.window.0 + STALL_CHECK {
            if side.window.1 < READ_BUFFER {
                // Calm again: the loop may read (it takes over at its first callback).
                self.roles.set_loop_wanted(true);
                io.core.shared.wake();
            }
            side.window = (now, 0);
        }
        let stall_check = match side.watch {
            Watch::Waiting { until, .. } => Some(until),
            Watch::Listening => None,
        };
        let wake_at = [
            io.core.due(),
            stall_check,
            flood.then_some(side.window.0 + STALL_CHECK),
        ]
        .into_iter()
        .flatten()
        .fold(io.core.idle_wake(now), Instant::min);
        io.timer_at = wake_at;
        Ok(Turn {
            read: self.roles.reader() == Reader::Driver || matches!(side.watch, Watch::Listening),
            write: io.write_blocked,
            wake_at,
        })
    }

    /// The socket is readable: the driver reads one buffer if it is the reader, else starts
    /// the stall check. `Err`: the session is over.
    fn on_driver_readable(&self, reg: &Registration, side: &mut DriverSide) -> Result<(), String> {
        let mut io = self.lock();
        if self.roles.reader() != Reader::Driver {
            side.watch = Watch::Waiting {
                loop_reads: io.loop_reads,
                until: Instant::now() + STALL_CHECK,
            };
            return Ok(());
        }
        // One buffer per turn: commands, writes and deadlines come between.
        let read = reg.try_io(Interest::READABLE, || match io.read_once(&self.socket) {
            Read::Empty => would_block(),
            read => Ok(read),
        });
        match read {
            Some(Read::Got(n)) => side.window.1 += n,
            Some(Read::Closed(reason)) => return Err(reason),
            Some(Read::Empty) | None => {}
        }
        Ok(())
    }

    fn on_driver_writable(&self, reg: &Registration) {
        let mut io = self.lock();
        reg.try_io(Interest::WRITABLE, || {
            io.write_out(&self.socket);
            if io.write_blocked {
                would_block()
            } else {
                Ok(())
            }
        });
    }

    /// Applies a handle's command and whatever else is queued, then writes. `Some`: close.
    fn apply(&self, first: Command, rx: &mut mpsc::UnboundedReceiver<Command>) -> Option<Reply> {
        let mut io = self.lock();
        self.send_queued(&mut io);
        let mut close = io.core.command(first);
        // Coalesce everything already queued into one write.
        while close.is_none() {
            let Ok(cmd) = rx.try_recv() else { break };
            close = io.core.command(cmd);
        }
        if !io.write_blocked {
            io.write_out(&self.socket);
        }
        close
    }

    /// Encodes a Logoff and hands the socket to the driver alone.
    fn start_logoff(&self) {
        let mut io = self.lock();
        self.roles.set_reader(Reader::Closing);
        if io.core.encode_logoff() {
            io.write_out(&self.socket);
        }
    }

    /// During logoff: reads (unrouted) and writes what is left. `None` once Goodbye or the end
    /// arrived; else whether to wait for room to write as well as for data.
    fn logoff_step(&self, reg: &Registration) -> Option<bool> {
        let mut io = self.lock();
        io.write_out(&self.socket);
        let read = reg.try_io(Interest::READABLE, || match io.read_raw(&self.socket) {
            Read::Empty => would_block(),
            read => Ok(read),
        });
        match read {
            Some(Read::Closed(_)) => return None,
            Some(Read::Got(_)) if io.core.goodbye_arrived() => return None,
            Some(Read::Got(_) | Read::Empty) | None => {}
        }
        Some(io.write_blocked)
    }
}

pub(in crate::transport::tcp) async fn serve(d: &Arc<DirectSession>, link: &mut Link) -> End {
    // Anything already decoded during login belongs to the stream.
    d.lock().core.process();
    let mut reg = Registration::default();
    let mut side = DriverSide {
        watch: Watch::Listening,
        window: (Instant::now(), 0),
    };
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    loop {
        let turn = match d.plan(&mut side) {
            Ok(turn) => turn,
            Err(reason) => return End::Lost(reason),
        };
        if let Err(e) = reg.set(d, turn.read || turn.write) {
            return End::Lost(format!("poll: {e}"));
        }
        if turn.wake_at < timer.deadline() || timer.is_elapsed() {
            timer.as_mut().reset(turn.wake_at);
        }
        tokio::select! {
            biased;
            _ = &mut timer => {}
            cmd = link.rx.recv() => {
                let Some(cmd) = cmd else { return logoff(d, None).await };
                if let Some(reply) = d.apply(cmd, &mut link.rx) {
                    return logoff(d, Some(reply)).await;
                }
            }
            _ = d.notify.notified() => {}
            ready = reg.ready(Interest::READABLE), if turn.read => {
                if let Err(e) = ready {
                    return End::Lost(format!("poll: {e}"));
                }
                if let Err(reason) = d.on_driver_readable(&reg, &mut side) {
                    return End::Lost(reason);
                }
            }
            ready = reg.ready(Interest::WRITABLE), if turn.write => {
                if let Err(e) = ready {
                    return End::Lost(format!("poll: {e}"));
                }
                d.on_driver_writable(&reg);
            }
        }
    }
}

/// Sends Logoff and waits briefly for Goodbye or EOF; the socket is shut down when the
/// session ends (`DirectSession::end`).
async fn logoff(d: &Arc<DirectSession>, reply: Option<Reply>) -> End {
    d.start_logoff();
    let bye = async {
        let mut reg = Registration::default();
        if reg.set(d, true).is_err() {
            return;
        }
        loop {
            let Some(write) = d.logoff_step(&reg) else {
                return;
            };
            let ready = tokio::select! {
                ready = reg.ready(Interest::READABLE) => ready,
                ready = reg.ready(Interest::WRITABLE), if write => ready,
            };
            if ready.is_err() {
                return;
            }
        }
    };
    wait_for_goodbye(bye).await;
    End::logged_off(reply)
}
