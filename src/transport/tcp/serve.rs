//! Serving one TCP session: the select loop that reads, writes, takes commands and keeps
//! deadlines, and the routing of what was read.
//!
//! The loop never stalls the reader on a consumer: replies go to their waiter, events to the
//! bounded subscriber queues. Writes are coalesced and run concurrently with reads, so a
//! server that stops reading cannot stop us from reading; and a server that never stops
//! writing cannot starve the writes, the commands or the deadlines (each turn reads at most
//! one buffer, and the others are polled first).

use std::time::Duration;

use log::{debug, trace, warn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::{Pending, Session, Tcp};
use crate::error::{Error, ListBound, Result};
use crate::proto::{Action, Expect, Message, Outcome, Routed};
use crate::transport::command::{Command, Reply, Request};
use crate::transport::deadline::deadline_after;
use crate::transport::outcome::judge;
use crate::transport::shared::Shared;
use crate::transport::supervisor::End;

impl Tcp {
    /// Registers and encodes one request (no I/O: the main loop writes `out`).
    fn send(&mut self, s: &mut Session, req: Request) {
        let id = match req.action.action_id() {
            Some(id) => id.to_owned(),
            None => self.ids.next_id(),
        };
        if let Err(e) = req.action.encode(Some(&id), &mut s.out) {
            self.link.shared.deliver(req.reply, Err(e.into()));
            return;
        }
        self.replay.note(&req.action);
        let timeout = req.timeout.unwrap_or(self.link.options.action_timeout);
        let now = Instant::now();
        let token = match req.reply {
            Reply::Queued(t) => Some(t),
            _ => None,
        };
        let pending = Pending {
            reply: req.reply,
            action: req.action.name().to_owned(),
            token,
            started: now,
        };
        if let Err(pending) = s.correlator.register(
            id.clone(),
            req.expect,
            Some(deadline_after(now, timeout).into_std()),
            pending,
        ) {
            let len = s.out.len();
            // Take the bytes back: nothing is sent for a refused action.
            if let Ok(bytes) = req.action.to_bytes(Some(&id)) {
                s.out.truncate(len.saturating_sub(bytes.len()));
            }
            self.link.shared.deliver(
                pending.reply,
                Err(Error::Usage(format!(
                    "ActionID {id:?} is already in flight"
                ))),
            );
        }
    }

    pub(super) async fn serve_session(&mut self, s: &mut Session) -> End {
        // Anything already decoded during login belongs to the stream.
        if let Err(reason) = self.process(s) {
            return End::Lost(reason);
        }
        let keepalive = self.link.options.keepalive;
        // One timer for the session, moved only when it must fire earlier than it would (or
        // has fired): registering a timer anew, as a fresh `sleep_until` each turn did, makes
        // tokio write its own driver's eventfd, a system call for every read of a flood.
        let timer = tokio::time::sleep_until(deadline_after(
            Instant::now(),
            self.link.options.action_timeout,
        ));
        tokio::pin!(timer);
        loop {
            let next_deadline = s.correlator.next_deadline().map(Instant::from_std);
            let keepalive_at = keepalive
                .filter(|_| !s.keepalive_out)
                .map(|k| deadline_after(s.last_read, k));
            // Never longer than a default action deadline: a new action's deadline is then
            // never earlier than the timer, and arming an earlier timer from inside the
            // runtime makes tokio wake its own driver (an eventfd write and an extra epoll
            // round for each action of a sequential caller). A wake with nothing due is cheap.
            let idle_wake = deadline_after(Instant::now(), self.link.options.action_timeout);
            let sleep_until = [next_deadline, keepalive_at, Some(idle_wake)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(idle_wake);
            // Checked against the clock, not only by the timer: under a flood the socket is
            // always readable and tokio's timer wheel may not turn for a while.
            let due = [next_deadline, keepalive_at].into_iter().flatten().min();
            if due.is_some_and(|due| Instant::now() >= due) {
                if let Some(reason) = self.tick(s) {
                    return End::Lost(reason);
                }
                continue;
            }
            // A later wake than needed would miss a deadline; an earlier one only costs a
            // turn with nothing due.
            if sleep_until < timer.deadline() || timer.is_elapsed() {
                timer.as_mut().reset(sleep_until);
            }
            let writing = !s.out.is_empty();
            // Commands, writes and the timer come before the read: a socket that stays
            // readable must not starve them. One read is at most `rbuf`'s capacity (64 KiB),
            // so every turn of this loop is short.
            tokio::select! {
                biased;
                _ = &mut timer => {
                    if let Some(reason) = self.tick(s) {
                        return End::Lost(reason);
                    }
                }
                cmd = self.link.rx.recv() => {
                    let Some(cmd) = cmd else { return self.logoff(s, None).await };
                    if let Some(end) = self.command(s, cmd) {
                        return match end {
                            End::UserClosed(reply) => self.logoff(s, Some(reply)).await,
                            other => other,
                        };
                    }
                    // Coalesce everything already queued into one write.
                    while let Ok(cmd) = self.link.rx.try_recv() {
                        if let Some(end) = self.command(s, cmd) {
                            return match end {
                                End::UserClosed(reply) => self.logoff(s, Some(reply)).await,
                                other => other,
                            };
                        }
                    }
                }
                written = s.write.write(&s.out), if writing => {
                    match written {
                        Ok(0) => return End::Lost("write: connection closed".into()),
                        Ok(n) => {
                            if let Some(rec) = self.link.recorder.as_mut() { rec.record("send", s.out.get(..n).unwrap_or_default(), false); }
                            s.out.drain(..n);
                        }
                        Err(e) => return End::Lost(format!("write: {e}")),
                    }
                }
                read = s.read.read_buf(&mut s.rbuf) => {
                    match read {
                        Ok(0) => {
                            if let Some(rec) = self.link.recorder.as_mut() { rec.record("recv", b"", true); }
                            return End::Lost("the server closed the connection".into());
                        }
                        Ok(n) => {
                            s.last_read = Instant::now();
                            self.link.shared.stats_mut(|st| st.bytes_read += n as u64);
                            if let Some(rec) = self.link.recorder.as_mut() { rec.record("recv", &s.rbuf, false); }
                            s.decoder.feed(&s.rbuf);
                            s.rbuf.clear();
                            if let Err(reason) = self.process(s) {
                                return End::Lost(reason);
                            }
                        }
                        Err(e) => return End::Lost(format!("read: {e}")),
                    }
                }
            }
        }
    }

    fn command(&mut self, s: &mut Session, cmd: Command) -> Option<End> {
        match cmd {
            Command::Actions(reqs) => {
                for req in reqs {
                    self.send(s, req);
                }
            }
            Command::Cancel(token) => {
                s.correlator.cancel_where(|p| p.token == Some(token));
            }
            Command::Close(reply) => return Some(End::UserClosed(reply)),
        }
        None
    }

    /// Deadlines and keepalive. Returns a reason when the connection must be dropped.
    fn tick(&mut self, s: &mut Session) -> Option<String> {
        let now = Instant::now();
        s.correlator.cancel_where(|p| p.reply.gone());
        for expired in s.correlator.expire(now.into_std()) {
            s.forget_list_bytes(&expired.action_id);
            let pending = expired.token;
            if matches!(pending.reply, Reply::Keepalive) {
                return Some("keepalive Ping unanswered: the connection is half-open".into());
            }
            let err = Error::Timeout {
                action: pending.action.clone(),
                action_id: expired.action_id,
                seconds: now.duration_since(pending.started).as_secs_f64(),
                partial: expired.partial.map(Box::new),
            };
            self.link.shared.deliver(pending.reply, Err(err));
        }
        if let Some(interval) = self.link.options.keepalive {
            if !s.keepalive_out && now >= deadline_after(s.last_read, interval) {
                s.keepalive_out = true;
                let timeout = interval.min(Duration::from_secs(10));
                self.send(
                    s,
                    Request {
                        action: Action::new("Ping"),
                        expect: Expect::Auto,
                        timeout: Some(timeout),
                        reply: Reply::Keepalive,
                    },
                );
            }
        }
        None
    }

    /// Decodes and routes everything buffered.
    fn process(&mut self, s: &mut Session) -> std::result::Result<(), String> {
        let mut events = Vec::new();
        // Handed over together after the read, so that a burst of replies wakes the loop once
        // (pushing them one by one lets the loop wake, drain and sleep again for each).
        let mut done = Vec::new();
        let mut messages = 0u64;
        let mut orphans = 0u64;
        let mut errors = 0u64;
        let mut published = 0u64;
        while let Some(item) = s.next_message() {
            let msg = match item {
                Ok(msg) => msg,
                Err(e) => {
                    // One oversized message is dropped; the stream goes on.
                    warn!("amiwire: dropped a message: {e}");
                    errors += 1;
                    continue;
                }
            };
            messages += 1;
            // An event flood with nothing pending: straight to the batch. Through `route` each
            // event is moved in and out of `Routed`, copies that cost the driver 20-30 ns an event.
            if msg.is_event() && s.correlator.is_empty() {
                events.push(msg);
                continue;
            }
            if let Some((action_id, pending)) = self.past_list_bytes(s, &msg) {
                let error = Error::ListTooLong {
                    action: pending.action,
                    action_id,
                    limit: self.link.options.max_list_bytes,
                    bound: ListBound::Bytes,
                    partial: None,
                };
                Self::settle(&self.link.shared, pending.reply, Err(error), &mut done);
            }
            match s.correlator.route(msg) {
                Routed::Event(ev) => events.push(ev),
                Routed::Done(c) => {
                    s.forget_list_bytes(&c.action_id);
                    published += self.publish_before_probe(&c.token.reply, &mut events);
                    self.complete(s, c.token, c.outcome, &mut done);
                }
                Routed::DoneAndEvent(c, ev) => {
                    s.forget_list_bytes(&c.action_id);
                    published += self.publish_before_probe(&c.token.reply, &mut events);
                    self.complete(s, c.token, c.outcome, &mut done);
                    events.push(ev);
                }
                Routed::Absorbed => {}
                Routed::Orphan(msg) => {
                    orphans += 1;
                    trace!("amiwire: unmatched response dropped: {msg:?}");
                }
                Routed::TooLong(given_up) => {
                    let pending = given_up.token;
                    s.forget_list_bytes(&given_up.action_id);
                    let error = Error::ListTooLong {
                        action: pending.action,
                        action_id: given_up.action_id,
                        limit: self.link.options.list_limit,
                        bound: ListBound::Items,
                        partial: given_up.partial.map(Box::new),
                    };
                    Self::settle(&self.link.shared, pending.reply, Err(error), &mut done);
                }
            }
        }
        let n_events = published + events.len() as u64;
        let completed = self.link.shared.queue_completions(done);
        if self.link.shared.push_events(events) || completed {
            self.link.shared.wake();
        }
        self.link.shared.stats_mut(|st| {
            st.messages += messages;
            st.events += n_events;
            st.orphans += orphans;
            st.decode_errors += errors;
        });
        Ok(())
    }

    /// A probe's view must include the events before its answer: they are published now
    /// rather than with the rest of the read. Returns how many were.
    fn publish_before_probe(&self, reply: &Reply, events: &mut Vec<Message>) -> u64 {
        if !matches!(reply, Reply::Probe(_)) {
            return 0;
        }
        let n = events.len() as u64;
        self.link.shared.publish(std::mem::take(events));
        n
    }

    /// Counts the bytes of a pending action's list items; past `max_list_bytes` the action is
    /// given up (the correlator drains the rest of its list) and returned to be failed.
    fn past_list_bytes(&mut self, s: &mut Session, msg: &Message) -> Option<(String, Pending)> {
        // Most events belong to no action: with nothing pending, skip the header scan that
        // looking for an ActionID costs every event of a flood.
        if !msg.is_event() || s.correlator.is_empty() {
            return None;
        }
        let id = msg.action_id()?;
        if !s.correlator.is_pending(&id) {
            return None;
        }
        let used = s.list_bytes.entry(id.to_string()).or_default();
        *used += msg.heap_size();
        if *used <= self.link.options.max_list_bytes {
            return None;
        }
        s.list_bytes.remove(id.as_ref());
        let pending = s.correlator.cancel(&id)?;
        Some((id.into_owned(), pending))
    }

    /// Settles one action; a `Reply::Queued` result joins `done`, the read's batch.
    fn complete(
        &mut self,
        s: &mut Session,
        pending: Pending,
        outcome: Outcome,
        done: &mut Vec<(u64, Result<Outcome>)>,
    ) {
        match pending.reply {
            Reply::Keepalive => s.keepalive_out = false,
            reply => Self::settle(
                &self.link.shared,
                reply,
                judge(&pending.action, outcome),
                done,
            ),
        }
    }

    /// A `Reply::Queued` result joins `done`, the read's batch; any other is delivered now.
    fn settle(
        shared: &Shared,
        reply: Reply,
        result: Result<Outcome>,
        done: &mut Vec<(u64, Result<Outcome>)>,
    ) {
        match reply {
            Reply::Queued(token) => done.push((token, result)),
            reply => shared.deliver(reply, result),
        }
    }

    /// Sends Logoff and waits briefly for Goodbye or EOF, then drops the socket.
    async fn logoff(&mut self, s: &mut Session, reply: Option<Reply>) -> End {
        let id = self.ids.next_id();
        if Action::new("Logoff").encode(Some(&id), &mut s.out).is_ok() {
            let out = std::mem::take(&mut s.out);
            let bye = async {
                s.write.write_all(&out).await?;
                if let Some(rec) = self.link.recorder.as_mut() {
                    rec.record("send", &out, false);
                }
                loop {
                    s.rbuf.clear();
                    let n = s.read.read_buf(&mut s.rbuf).await?;
                    if let Some(rec) = self.link.recorder.as_mut() {
                        rec.record("recv", &s.rbuf, n == 0);
                    }
                    if n == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    s.decoder.feed(&s.rbuf);
                    while let Some(Ok(msg)) = s.decoder.next_message() {
                        if msg.has_value("Response", "Goodbye") {
                            return Ok(());
                        }
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), bye)
                .await
                .is_err()
            {
                debug!("amiwire: no Goodbye within 2 s; closing anyway");
            }
        }
        let _ = s.write.shutdown().await;
        match reply {
            Some(reply) => End::UserClosed(reply),
            None => End::HandlesDropped,
        }
    }
}
