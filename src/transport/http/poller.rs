//! The WaitEvent long-poll: events only arrive in WaitEvent replies, so one task keeps
//! exactly one in flight (a second one on the same session would make Asterisk return the
//! first empty) and feeds the same bounded subscriber queues as TCP. An async Originate's
//! `OriginateResponse` arrives here too, and is routed to the originate waiting for it.

use std::sync::Arc;
use std::time::Duration;

use log::warn;
use tokio::time::Instant;

use super::session::Ajam;
use crate::proto::http::{split_wait_event, wait_event_timeout};
use crate::proto::{Action, Message, Routed};
use crate::transport::deadline::Deadline;
use crate::transport::outcome::judge;

/// The least time between the starts of two WaitEvent polls when one came back empty before
/// its timeout (a server answering at once). A poll that brought events is followed at once:
/// the events are the work, and pacing them would only delay a busy PBX's stream.
const EMPTY_POLL_PACE: Duration = Duration::from_millis(500);

impl Ajam {
    /// Polls until a poll fails, and returns why: that ends the session (the supervisor then
    /// reconnects, with its backoff, or shuts down).
    pub(super) async fn poll(self: Arc<Self>) -> String {
        // Asterisk clamps the wait under its `httptimeout`; `Timeout: 0` would make every
        // poll return at once, so at least one second is asked for.
        let seconds = wait_event_timeout(self.http.poll_timeout, self.http.http_timeout).max(1);
        let action = Action::new("WaitEvent").header("Timeout", seconds.to_string());
        let timeout = Duration::from_secs(u64::from(seconds) + 15);
        loop {
            let started = Instant::now();
            let deadline = Deadline::after(timeout);
            let messages = match self.send(&action, &self.next_id(), deadline, true).await {
                Ok(messages) => messages,
                Err(e) => return format!("WaitEvent failed: {e}"),
            };
            let got_events = match split_wait_event(messages) {
                Ok(reply) => {
                    let any = !reply.events.is_empty();
                    self.route_events(reply.events);
                    any
                }
                Err(e) => {
                    warn!("amiwire: WaitEvent failed: {e}");
                    false
                }
            };
            // An empty poll that returns at once must not make the next one start at once: a
            // server answering every WaitEvent immediately would get thousands a second.
            if !got_events {
                tokio::time::sleep_until(started + EMPTY_POLL_PACE).await;
            }
        }
    }

    fn route_events(&self, events: Vec<Message>) {
        let mut out = Vec::with_capacity(events.len());
        let mut done = Vec::new();
        if let Ok(mut originates) = self.originates.lock() {
            for ev in events {
                match originates.route(ev) {
                    Routed::Event(ev) => {
                        // An OriginateResponse for an originate whose reply is still on its
                        // way: keep it for execute() (it is published now all the same).
                        if ev.event_name().as_deref() == Some("OriginateResponse") {
                            if let (Some(id), Ok(mut early)) = (ev.action_id(), self.early.lock()) {
                                if let Some(slot) = early.get_mut(id.as_ref()) {
                                    *slot = Some(ev.clone());
                                }
                            }
                        }
                        out.push(ev)
                    }
                    Routed::DoneAndEvent(c, ev) => {
                        done.push(c);
                        out.push(ev);
                    }
                    Routed::Done(c) => done.push(c),
                    // Only Originates wait here, never a list, so nothing is ever TooLong.
                    Routed::Absorbed | Routed::Orphan(_) | Routed::TooLong(_) => {}
                }
            }
        }
        for c in done {
            let result = judge(&c.token.action, c.outcome);
            self.shared.deliver(c.token.reply, result);
        }
        self.shared.publish(out);
    }
}
