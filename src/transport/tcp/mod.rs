//! AMI over TCP (plain or TLS): the driver that owns one socket per session. Connecting is
//! here (socket, TLS, banner, then the session setup of `proto::Login` over the socket);
//! serving the session is `serve.rs`.

mod core;
mod direct;
mod serve;

use std::sync::Arc;

use log::warn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::StreamBox;
use super::options::Auth;
use super::outcome::lost;
use super::shared::Info;
use super::supervisor::{Driver, End, Link};
use crate::error::{Error, Result};
use crate::proto::{Action, ActionIds, Login, Message, Progress, Replay};

/// The socket while connecting: plain TCP can later be shared with the loop (`direct.rs`).
enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<dyn StreamBox>),
}

impl Stream {
    fn get(&mut self) -> &mut dyn StreamBox {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.as_mut(),
        }
    }
}

/// A socket being connected and logged in.
struct Opening {
    stream: Stream,
    core: core::Core,
    rbuf: Vec<u8>,
}

/// One connected, logged-in session: served by the driver alone over tokio (TLS, or a
/// recorded session), or by the driver and the asyncio loop together (plain TCP).
pub(super) enum Session {
    Async(Box<serve::AsyncSession>),
    Direct(Arc<direct::DirectSession>),
}

pub(super) struct Tcp {
    link: Link,
    ids: ActionIds,
    /// The mask and filters a new session gets again.
    replay: Replay,
}

impl Tcp {
    pub(super) fn new(link: Link) -> Tcp {
        Tcp {
            link,
            ids: ActionIds::new(),
            replay: Replay::default(),
        }
    }

    /// A fresh session's core, lent what outlives sessions.
    fn new_core(&mut self) -> core::Core {
        core::Core::new(
            self.link.shared.clone(),
            &self.link.options,
            std::mem::take(&mut self.ids),
            std::mem::take(&mut self.replay),
        )
    }

    /// Takes back what the session's core was lent, and fails what it still owed.
    fn retire(&mut self, core: &mut core::Core, error: &Error) {
        core.fail_pending(error);
        self.ids = std::mem::take(&mut core.ids);
        self.replay = std::mem::take(&mut core.replay);
    }
}

impl Driver for Tcp {
    type Session = Session;

    fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    async fn open(&mut self) -> Result<Session> {
        let opening = self.connect().await?;
        // A plain socket is shared with the loop; TLS and a recording stay with the driver.
        Ok(match opening.stream {
            Stream::Plain(tcp) if self.link.recorder.is_none() => {
                let socket = tcp.into_std().map_err(|e| lost(format!("socket: {e}")))?;
                let session = direct::DirectSession::new(socket, opening.core);
                // Shared before the session is announced: whoever learns of it may use it.
                self.link.shared.set_direct(session.clone());
                Session::Direct(session)
            }
            Stream::Plain(tcp) => Session::Async(Box::new(serve::AsyncSession::new(
                Box::new(tcp),
                opening.core,
                opening.rbuf,
            ))),
            Stream::Tls(tls) => Session::Async(Box::new(serve::AsyncSession::new(
                tls,
                opening.core,
                opening.rbuf,
            ))),
        })
    }

    async fn serve(&mut self, session: &mut Session) -> End {
        match session {
            Session::Async(s) => serve::serve(s, &mut self.link).await,
            Session::Direct(d) => direct::driver::serve(d, &mut self.link).await,
        }
    }

    fn end_session(&mut self, session: Session, error: &Error) {
        match session {
            Session::Async(mut s) => self.retire(&mut s.core, error),
            Session::Direct(d) => d.end(error, |core| self.retire(core, error)),
        }
    }
}

impl Tcp {
    async fn connect(&mut self) -> Result<Opening> {
        let o = self.link.options.clone();
        let addr = format!("{}:{}", o.host, o.port);
        let tcp = tokio::time::timeout(o.connect_timeout, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| {
                lost(format!(
                    "connect to {addr} timed out after {:?}",
                    o.connect_timeout
                ))
            })?
            .map_err(|e| lost(format!("connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream = match &o.tls {
            Some(tls) => Stream::Tls(super::tls::wrap(tcp, &o.host, tls, o.connect_timeout).await?),
            None => Stream::Plain(tcp),
        };
        let mut opening = Opening {
            stream,
            core: self.new_core(),
            rbuf: Vec::with_capacity(64 * 1024),
        };
        match self.set_up(&mut opening, &addr).await {
            Ok(()) => Ok(opening),
            Err(e) => {
                self.retire(&mut opening.core, &e);
                Err(e)
            }
        }
    }

    /// The banner is part of connecting; the login is an exchange like any action (Asterisk
    /// delays a refusal by a second).
    async fn set_up(&mut self, s: &mut Opening, addr: &str) -> Result<()> {
        let o = self.link.options.clone();
        tokio::time::timeout(o.connect_timeout, self.wait_banner(s))
            .await
            .map_err(|_| {
                lost(format!(
                    "no AMI banner from {addr} within {:.1} s (is it an AMI port? a TLS one needs tls://)",
                    o.connect_timeout.as_secs_f64()
                ))
            })??;
        tokio::time::timeout(o.action_timeout, self.login(s))
            .await
            .map_err(|_| lost(format!("no login answer from {addr} in time")))?
    }

    async fn wait_banner(&mut self, s: &mut Opening) -> Result<()> {
        while s.core.decoder.banner().is_none() {
            self.read_some(s).await?;
            while let Some(item) = s.core.decoder.next_message() {
                s.core.backlog.push_back(item);
            }
            if s.core.decoder.banner().is_none() && s.core.decoder.stream_offset() > 4096 {
                return Err(Error::Remote("no AMI banner in the first 4 KiB".into()));
            }
        }
        Ok(())
    }

    /// The session setup (`proto::Login`) driven over the socket, one round trip per step.
    async fn login(&mut self, s: &mut Opening) -> Result<()> {
        let banner = s.core.decoder.banner().unwrap_or_default().to_owned();
        let o = &self.link.options;
        let mut login = Login::new(&o.username, &o.secret, o.auth == Auth::Md5)
            .with_events(&o.events.0)
            .with_replay(s.core.replay.actions());
        let mut progress = login.start();
        let ready = loop {
            progress = match progress {
                Progress::Send(action) => login.on_response(&self.roundtrip(s, action).await?),
                Progress::Ready(ready) => break ready,
                Progress::Refused(why) => return Err(Error::Auth(why)),
            };
        };
        for (action, why) in &ready.replay_failures {
            warn!("amiwire: restoring {action} after reconnect failed: {why}");
        }
        let info = Info {
            ami_version: banner.rsplit('/').next().map(str::to_owned),
            banner: Some(banner),
            asterisk_version: ready.asterisk_version,
        };
        if let Ok(mut shared) = self.link.shared.info.lock() {
            *shared = info;
        }
        Ok(())
    }

    /// Before the main loop: one action, waiting for its response; events seen meanwhile
    /// go to the subscribers.
    async fn roundtrip(&mut self, s: &mut Opening, action: Action) -> Result<Message> {
        let id = s.core.ids.next_id();
        let mut out = Vec::new();
        action.encode(Some(&id), &mut out)?;
        if let Some(rec) = self.link.recorder.as_mut() {
            rec.record("send", &out, false);
        }
        s.stream
            .get()
            .write_all(&out)
            .await
            .map_err(|e| lost(format!("write: {e}")))?;
        loop {
            while let Some(item) = s.core.next_message() {
                // An oversized message is dropped, as in the main loop; the session goes on.
                let msg = match item {
                    Ok(msg) => msg,
                    Err(e) => {
                        warn!("amiwire: dropped a message during login: {e}");
                        self.link.shared.stats_mut(|st| st.decode_errors += 1);
                        continue;
                    }
                };
                // Login traffic counts like the main loop's (a firehose may arrive right here).
                let event = msg.is_event();
                self.link.shared.stats_mut(|st| {
                    st.messages += 1;
                    st.events += u64::from(event);
                });
                if event {
                    self.link.shared.publish(vec![msg]);
                } else if msg.action_id().as_deref() == Some(id.as_str()) {
                    return Ok(msg);
                } else if msg.has_value("Response", "Error") && msg.action_id().is_none() {
                    // Asterisk answers a failed login without echoing the ActionID on some paths.
                    return Ok(msg);
                } else {
                    // Counted like the main loop's unmatched messages (garbage lands here).
                    self.link.shared.stats_mut(|st| st.orphans += 1);
                }
            }
            self.read_some(s).await?;
        }
    }

    async fn read_some(&mut self, s: &mut Opening) -> Result<()> {
        s.rbuf.clear();
        let n = s
            .stream
            .get()
            .read_buf(&mut s.rbuf)
            .await
            .map_err(|e| lost(format!("read: {e}")))?;
        if let Some(rec) = self.link.recorder.as_mut() {
            rec.record("recv", &s.rbuf, n == 0);
        }
        if n == 0 {
            return Err(lost("the server closed the connection"));
        }
        s.core.feed(&s.rbuf, false);
        s.rbuf.clear();
        Ok(())
    }
}
