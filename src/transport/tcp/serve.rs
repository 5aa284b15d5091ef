//! Serving one TCP session the driver owns alone (TLS, or a recorded session): the select
//! loop that reads, writes, takes commands and keeps deadlines; routing is `core.rs`.
//!
//! The loop never stalls the reader on a consumer: replies go to their waiter, events to the
//! bounded subscriber queues. Writes are coalesced and run concurrently with reads, so a
//! server that stops reading cannot stop us from reading; and a server that never stops
//! writing cannot starve the writes, the commands or the deadlines (each turn reads at most
//! one buffer, and the others are polled first).

use std::time::Duration;

use log::debug;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::core::Core;
use crate::transport::client::StreamBox;
use crate::transport::command::Reply;
use crate::transport::supervisor::{End, Link};

/// A session the driver serves alone, over tokio.
pub(in crate::transport) struct AsyncSession {
    read: ReadHalf<Box<dyn StreamBox>>,
    write: WriteHalf<Box<dyn StreamBox>>,
    pub(super) core: Core,
    rbuf: Vec<u8>,
}

impl AsyncSession {
    pub(super) fn new(stream: Box<dyn StreamBox>, core: Core, rbuf: Vec<u8>) -> AsyncSession {
        let (read, write) = tokio::io::split(stream);
        AsyncSession {
            read,
            write,
            core,
            rbuf,
        }
    }
}

pub(super) async fn serve(s: &mut AsyncSession, link: &mut Link) -> End {
    // Anything already decoded during login belongs to the stream.
    s.core.process();
    // One timer for the session, moved only when it must fire earlier than it would (or
    // has fired): registering a timer anew, as a fresh `sleep_until` each turn did, makes
    // tokio write its own driver's eventfd, a system call for every read of a flood.
    let timer = tokio::time::sleep_until(s.core.idle_wake(Instant::now()));
    tokio::pin!(timer);
    loop {
        let due = s.core.due();
        // Never longer than a default action deadline: a new action's deadline is then
        // never earlier than the timer, and arming an earlier timer from inside the
        // runtime makes tokio wake its own driver (an eventfd write and an extra epoll
        // round for each action of a sequential caller). A wake with nothing due is cheap.
        let idle_wake = s.core.idle_wake(Instant::now());
        let sleep_until = due.map_or(idle_wake, |due| due.min(idle_wake));
        // Checked against the clock, not only by the timer: under a flood the socket is
        // always readable and tokio's timer wheel may not turn for a while.
        if due.is_some_and(|due| Instant::now() >= due) {
            if let Some(reason) = s.core.tick() {
                return End::Lost(reason);
            }
            continue;
        }
        // A later wake than needed would miss a deadline; an earlier one only costs a
        // turn with nothing due.
        if sleep_until < timer.deadline() || timer.is_elapsed() {
            timer.as_mut().reset(sleep_until);
        }
        let writing = !s.core.out.is_empty();
        // Commands, writes and the timer come before the read: a socket that stays
        // readable must not starve them. One read is at most `rbuf`'s capacity (64 KiB),
        // so every turn of this loop is short.
        tokio::select! {
            biased;
            _ = &mut timer => {
                if let Some(reason) = s.core.tick() {
                    return End::Lost(reason);
                }
            }
            cmd = link.rx.recv() => {
                let Some(cmd) = cmd else { return logoff(s, link, None).await };
                if let Some(reply) = s.core.command(cmd) {
                    return logoff(s, link, Some(reply)).await;
                }
                // Coalesce everything already queued into one write.
                while let Ok(cmd) = link.rx.try_recv() {
                    if let Some(reply) = s.core.command(cmd) {
                        return logoff(s, link, Some(reply)).await;
                    }
                }
            }
            written = s.write.write(&s.core.out), if writing => {
                match written {
                    Ok(0) => return End::Lost("write: connection closed".into()),
                    Ok(n) => {
                        if let Some(rec) = link.recorder.as_mut() { rec.record("send", s.core.out.get(..n).unwrap_or_default(), false); }
                        s.core.out.drain(..n);
                    }
                    Err(e) => return End::Lost(format!("write: {e}")),
                }
            }
            read = s.read.read_buf(&mut s.rbuf) => {
                match read {
                    Ok(0) => {
                        if let Some(rec) = link.recorder.as_mut() { rec.record("recv", b"", true); }
                        return End::Lost("the server closed the connection".into());
                    }
                    Ok(_) => {
                        if let Some(rec) = link.recorder.as_mut() { rec.record("recv", &s.rbuf, false); }
                        s.core.feed(&s.rbuf, false);
                        s.rbuf.clear();
                        s.core.process();
                    }
                    Err(e) => return End::Lost(format!("read: {e}")),
                }
            }
        }
    }
}

/// Sends Logoff and waits briefly for Goodbye or EOF, then drops the socket.
async fn logoff(s: &mut AsyncSession, link: &mut Link, reply: Option<Reply>) -> End {
    if s.core.encode_logoff() {
        let out = std::mem::take(&mut s.core.out);
        let bye = async {
            s.write.write_all(&out).await?;
            if let Some(rec) = link.recorder.as_mut() {
                rec.record("send", &out, false);
            }
            loop {
                s.rbuf.clear();
                let n = s.read.read_buf(&mut s.rbuf).await?;
                if let Some(rec) = link.recorder.as_mut() {
                    rec.record("recv", &s.rbuf, n == 0);
                }
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                s.core.decoder.feed(&s.rbuf);
                if s.core.goodbye_arrived() {
                    return Ok(());
                }
            }
        };
        wait_for_goodbye(bye).await;
    }
    let _ = s.write.shutdown().await;
    End::logged_off(reply)
}

/// Waits for `bye` (the Goodbye or the end), for a logoff's short while at most.
pub(super) async fn wait_for_goodbye<T>(bye: impl Future<Output = T>) {
    if tokio::time::timeout(LOGOFF_WAIT, bye).await.is_err() {
        debug!("amiwire: no Goodbye within {LOGOFF_WAIT:?}; closing anyway");
    }
}

/// How long a logoff waits for Goodbye before closing anyway.
const LOGOFF_WAIT: Duration = Duration::from_secs(2);
