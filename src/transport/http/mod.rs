//! AMI over HTTP (AJAM): the same `Client` handle, driven by HTTP requests instead of a
//! socket, under the same supervisor as TCP.
//!
//! Each action is one request (reqwest keeps the connections alive and pools them), run as
//! its own task (`actions.rs`) with the session's credentials (`session.rs`); events come
//! from the WaitEvent long-poll (`poller.rs`). A session ends when the poll fails: the
//! supervisor then logs in again with its backoff, like a TCP reconnect.

mod actions;
mod poller;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use self::session::Ajam;
use super::command::{Command, Reply};
use super::deadline::Deadline;
use super::options::EventMask;
use super::outcome::clone_err;
use super::shared::Info;
use super::supervisor::{Driver, End, Link};
use crate::error::{Error, Result};
use crate::proto::Action;

/// The HTTP driver. Its `Ajam` (the reqwest client and the credentials) is made by the
/// first `open` and kept across sessions.
pub(super) struct AjamDriver {
    link: Link,
    ajam: Option<Arc<Ajam>>,
    /// Events were on in the last session (a mask turned on later included): the next one
    /// polls from its start.
    polling: bool,
}

/// One logged-in HTTP session: the poller and the action tasks in flight.
pub(super) struct Session {
    ajam: Arc<Ajam>,
    poller: Option<JoinHandle<String>>,
    tasks: HashMap<u64, AbortHandle>,
}

impl AjamDriver {
    pub(super) fn new(link: Link) -> AjamDriver {
        let polling = !link.options.events.is_off();
        AjamDriver {
            link,
            ajam: None,
            polling,
        }
    }

    fn ajam(&mut self) -> Result<Arc<Ajam>> {
        if let Some(ajam) = &self.ajam {
            return Ok(ajam.clone());
        }
        if self.link.options.record.is_some() {
            // The transcript format is a socket's bytes; reqwest does not show them.
            return Err(Error::Usage(
                "recording is available over TCP and TLS, not over HTTP".into(),
            ));
        }
        let options = self.link.options.clone();
        let http = options
            .http
            .clone()
            .ok_or_else(|| Error::Internal("an HTTP driver without HTTP options".into()))?;
        let ajam = Arc::new(Ajam::new(options, http, self.link.shared.clone())?);
        self.ajam = Some(ajam.clone());
        Ok(ajam)
    }

    /// Starts the poller unless it runs.
    fn poll(&mut self, session: &mut Session) {
        if session.poller.is_none() {
            self.polling = true;
            session.poller = Some(tokio::spawn(session.ajam.clone().poll()));
        }
    }

    /// Runs one batch of the handles' actions, each as its own task.
    fn actions(&mut self, session: &mut Session, requests: Vec<super::command::Request>) {
        session.tasks.retain(|_, handle| !handle.is_finished());
        for request in requests {
            if let Err(e) = request.action.validate() {
                self.link.shared.deliver(request.reply, Err(e.into()));
                continue;
            }
            // Logged in with events off, the session gets none until an Events action turns
            // them on: the poller starts then (a WaitEvent before would only wait out its
            // timeout).
            let turns_events_on = request.action.is("Events")
                && request
                    .action
                    .get("EventMask")
                    .and_then(|m| EventMask::parse(m).ok())
                    .is_some_and(|m| !m.is_off());
            if turns_events_on {
                self.poll(session);
            }
            let token = match request.reply {
                Reply::Queued(t) => Some(t),
                _ => None,
            };
            let handle = tokio::spawn(session.ajam.clone().execute(request)).abort_handle();
            if let Some(token) = token {
                session.tasks.insert(token, handle);
            }
        }
    }

    fn cancel(session: &mut Session, token: u64) {
        if let Some(handle) = session.tasks.remove(&token) {
            handle.abort();
        }
        if let Ok(mut originates) = session.ajam.originates.lock() {
            originates.cancel_where(|p| matches!(p.reply, Reply::Queued(t) if t == token));
        }
    }

    /// Ends the server's session (cookie endpoints; a Digest session has nothing to end).
    async fn logoff(ajam: &Ajam) {
        if !ajam.http.endpoint.uses_digest() {
            let deadline = Deadline::after(Duration::from_secs(2));
            let _ = ajam
                .send(&Action::new("Logoff"), &ajam.next_id(), deadline, false)
                .await;
        }
    }
}

impl Driver for AjamDriver {
    type Session = Session;

    fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    async fn open(&mut self) -> Result<Session> {
        let ajam = self.ajam()?;
        let o = &self.link.options;
        let deadline = Deadline::after(o.connect_timeout.max(o.action_timeout));
        let ready = ajam.set_up(deadline, true).await?;
        if let Ok(mut info) = self.link.shared.info.lock() {
            *info = Info {
                banner: None,
                ami_version: ready.ami_version,
                asterisk_version: ready.asterisk_version,
            };
        }
        let mut session = Session {
            ajam,
            poller: None,
            tasks: HashMap::new(),
        };
        if self.polling {
            self.poll(&mut session);
        }
        Ok(session)
    }

    async fn serve(&mut self, session: &mut Session) -> End {
        loop {
            let next = session.ajam.expire();
            let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                cmd = self.link.rx.recv() => match cmd {
                    None => {
                        Self::logoff(&session.ajam).await;
                        return End::HandlesDropped;
                    }
                    Some(Command::Close(reply)) => {
                        Self::logoff(&session.ajam).await;
                        return End::UserClosed(reply);
                    }
                    Some(Command::Actions(requests)) => self.actions(session, requests),
                    Some(Command::Cancel(token)) => Self::cancel(session, token),
                },
                ended = async {
                    match session.poller.as_mut() {
                        Some(poller) => poller.await,
                        None => std::future::pending().await,
                    }
                } => {
                    session.poller = None;
                    return End::Lost(ended.unwrap_or_else(|e| format!("the WaitEvent poller died: {e}")));
                }
                _ = tokio::time::sleep_until(sleep_until) => {}
                _ = session.ajam.wake_deadlines.notified() => {}
            }
        }
    }

    fn end_session(&mut self, session: Session, error: &Error) {
        if let Some(poller) = session.poller {
            poller.abort();
        }
        // Closed: nothing runs on. Lost: actions already sent finish on their own, each by
        // its deadline (an HTTP request does not share the poll's fate).
        if matches!(error, Error::Closed { .. }) {
            for handle in session.tasks.values() {
                handle.abort();
            }
            // An aborted task never answers its waiter: the close does.
            let aborted = session.tasks.keys().copied();
            self.link.shared.fail_owed(aborted, || clone_err(error));
        }
        let pending = session
            .ajam
            .originates
            .lock()
            .map(|mut o| o.drain())
            .unwrap_or_default();
        for expired in pending {
            self.link
                .shared
                .deliver(expired.token.reply, Err(clone_err(error)));
        }
    }
}
