//! One user action over HTTP: its body holds the whole answer, list items included, so it
//! is correlated on its own; a tracked Originate then waits for its `OriginateResponse`,
//! which the poller brings.

use std::sync::Arc;

use tokio::time::Instant;

use super::session::{Ajam, Pending};
use crate::error::{Error, ListBound};
use crate::proto::{Correlator, Expect, Message, Routed};
use crate::transport::command::Request;
use crate::transport::deadline::Deadline;
use crate::transport::outcome::judge;

impl Ajam {
    /// Ends tracking `id` as in flight; returns the OriginateResponse that came early.
    pub(super) fn take_early(&self, id: &str) -> Option<Message> {
        self.early.lock().ok()?.remove(id).flatten()
    }

    /// Runs one user action: its body is correlated on its own; a tracked originate then
    /// waits for the poller.
    pub(super) async fn execute(self: Arc<Self>, request: Request) {
        let id = request
            .action
            .action_id()
            .map(str::to_owned)
            .unwrap_or_else(|| self.next_id());
        let timeout = request.timeout.unwrap_or(self.options.action_timeout);
        let started = Instant::now();
        let name = request.action.name().to_owned();
        let tracked = request.expect == Expect::Originate;
        if let Ok(mut setup) = self.setup.lock() {
            setup.note(&request.action);
        }
        if tracked {
            if let Ok(mut early) = self.early.lock() {
                early.insert(id.clone(), None);
            }
        }
        let deadline = Deadline::after(timeout);
        // Waiting for the Digest turn counts against the action's deadline too.
        let sent = if self.http.endpoint.uses_digest() {
            match tokio::time::timeout_at(deadline.at, self.digest_turn.lock()).await {
                Ok(_turn) => self.send(&request.action, &id, deadline, true).await,
                Err(_) => Err(Error::Timeout {
                    action: name.clone(),
                    action_id: id.clone(),
                    seconds: timeout.as_secs_f64(),
                    partial: None,
                }),
            }
        } else {
            self.send(&request.action, &id, deadline, true).await
        };
        let messages = match sent {
            Ok(messages) => messages,
            Err(e) => {
                self.take_early(&id);
                return self.shared.deliver(request.reply, Err(e));
            }
        };
        let mut correlator: Correlator<()> =
            Correlator::new().with_list_limit(self.options.list_limit);
        let _ = correlator.register(id.clone(), request.expect.clone(), None, ());
        let mut events = Vec::new();
        let mut done = None;
        for msg in messages {
            match correlator.route(msg) {
                Routed::Done(c) => done = Some(judge(&name, c.outcome)),
                Routed::DoneAndEvent(c, ev) => {
                    done = Some(judge(&name, c.outcome));
                    events.push(ev);
                }
                Routed::TooLong(given_up) => {
                    done = Some(Err(Error::ListTooLong {
                        action: name.clone(),
                        action_id: given_up.action_id,
                        limit: self.options.list_limit,
                        bound: ListBound::Items,
                        partial: given_up.partial.map(Box::new),
                    }))
                }
                Routed::Event(ev) => events.push(ev),
                Routed::Absorbed | Routed::Orphan(_) => {}
            }
        }
        self.shared.publish(events);
        if let Some(result) = done {
            self.take_early(&id);
            return self.shared.deliver(request.reply, result);
        }
        // Still waiting: only an accepted async Originate (its OriginateResponse comes by
        // WaitEvent). Anything else ended without its completion: say so, with what came.
        let leftover = correlator
            .drain()
            .into_iter()
            .next()
            .and_then(|e| e.partial);
        match (request.expect, leftover) {
            (Expect::Originate, Some(outcome)) => {
                let deadline = deadline.at;
                let pending = Pending {
                    reply: request.reply,
                    action: name,
                    started,
                };
                if let Ok(mut originates) = self.originates.lock() {
                    if let Err(pending) = originates.register(
                        id.clone(),
                        Expect::Originate,
                        Some(deadline.into_std()),
                        pending,
                    ) {
                        self.shared.deliver(
                            pending.reply,
                            Err(Error::Usage(format!(
                                "ActionID {id:?} is already in flight"
                            ))),
                        );
                        return;
                    }
                    // The correlator wants the response first: replay it.
                    let _ = originates.route(outcome.response);
                    // Under the `originates` lock, so the poller cannot slip in between.
                    if let Some(ev) = self.take_early(&id) {
                        if let Routed::Done(c) | Routed::DoneAndEvent(c, _) = originates.route(ev) {
                            drop(originates);
                            let result = judge(&c.token.action, c.outcome);
                            return self.shared.deliver(c.token.reply, result);
                        }
                    }
                }
                self.wake_deadlines.notify_one();
            }
            (_, partial) => {
                self.take_early(&id);
                let err = Error::Remote(format!(
                    "the HTTP reply to {name} ended before its list completed"
                ));
                let err = match partial {
                    Some(outcome) => Error::ActionFailed {
                        action: name,
                        message: err.to_string(),
                        response: Box::new(outcome.response),
                        events: outcome.events,
                    },
                    None => err,
                };
                self.shared.deliver(request.reply, Err(err));
            }
        }
    }

    pub(super) fn expire(&self) -> Option<Instant> {
        let now = Instant::now();
        let (expired, next) = match self.originates.lock() {
            Ok(mut originates) => (
                originates.expire(now.into_std()),
                originates.next_deadline(),
            ),
            Err(_) => (Vec::new(), None),
        };
        for e in expired {
            let err = Error::Timeout {
                action: e.token.action.clone(),
                action_id: e.action_id,
                seconds: now.duration_since(e.token.started).as_secs_f64(),
                partial: e.partial.map(Box::new),
            };
            self.shared.deliver(e.token.reply, Err(err));
        }
        next.map(Instant::from_std)
    }
}
