//! AMI over TCP (plain or TLS): the driver that owns one socket per session. Connecting is
//! here (socket, TLS, banner, then the session setup of `proto::Login` over the socket);
//! serving the session is `serve.rs`.

mod serve;

use std::collections::{HashMap, VecDeque};

use log::warn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::client::StreamBox;
use super::options::Auth;
use super::outcome::{clone_err, lost};
use super::shared::Info;
use super::supervisor::{Driver, End, Link};
use crate::error::{DecodeError, Error, Result};
use crate::proto::{Action, ActionIds, Correlator, Decoder, Login, Message, Progress, Replay};

use super::command::Reply;

/// An action on the wire, waiting for its outcome.
struct Pending {
    reply: Reply,
    action: String,
    token: Option<u64>,
    started: Instant,
}

/// One connected, logged-in socket.
pub(super) struct Session {
    read: tokio::io::ReadHalf<Box<dyn StreamBox>>,
    write: tokio::io::WriteHalf<Box<dyn StreamBox>>,
    decoder: Decoder,
    correlator: Correlator<Pending>,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    last_read: Instant,
    keepalive_out: bool,
    /// Decoded while waiting for the banner, before anyone routes messages.
    backlog: VecDeque<std::result::Result<Message, DecodeError>>,
    /// Bytes of list items collected so far, per pending ActionID (`max_list_bytes`).
    list_bytes: HashMap<String, usize>,
}

impl Session {
    /// The action's list (if it had one) no longer counts against `max_list_bytes`. Most
    /// actions have none: an empty map is not hashed into (SipHash of the ActionID, for every
    /// completion of a Ping flood).
    fn forget_list_bytes(&mut self, action_id: &str) {
        if !self.list_bytes.is_empty() {
            self.list_bytes.remove(action_id);
        }
    }

    fn next_message(&mut self) -> Option<std::result::Result<Message, DecodeError>> {
        self.backlog
            .pop_front()
            .or_else(|| self.decoder.next_message())
    }
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
}

impl Driver for Tcp {
    type Session = Session;

    fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    async fn open(&mut self) -> Result<Session> {
        self.connect().await
    }

    async fn serve(&mut self, session: &mut Session) -> End {
        self.serve_session(session).await
    }

    fn end_session(&mut self, mut session: Session, error: &Error) {
        for expired in session.correlator.drain() {
            self.link
                .shared
                .deliver(expired.token.reply, Err(clone_err(error)));
        }
    }
}

impl Tcp {
    async fn connect(&mut self) -> Result<Session> {
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
        let stream: Box<dyn StreamBox> = match &o.tls {
            Some(tls) => super::tls::wrap(tcp, &o.host, tls, o.connect_timeout).await?,
            None => Box::new(tcp),
        };
        let (read, write) = tokio::io::split(stream);
        let mut session = Session {
            read,
            write,
            decoder: Decoder::new(),
            correlator: Correlator::new().with_list_limit(o.list_limit),
            out: Vec::with_capacity(4096),
            rbuf: Vec::with_capacity(64 * 1024),
            last_read: Instant::now(),
            keepalive_out: false,
            backlog: Default::default(),
            list_bytes: HashMap::new(),
        };
        // The banner is part of connecting; the login is an exchange like any action (Asterisk
        // delays a refusal by a second).
        tokio::time::timeout(o.connect_timeout, self.wait_banner(&mut session))
            .await
            .map_err(|_| {
                lost(format!(
                    "no AMI banner from {addr} within {:.1} s (is it an AMI port? a TLS one needs tls://)",
                    o.connect_timeout.as_secs_f64()
                ))
            })??;
        tokio::time::timeout(o.action_timeout, self.login(&mut session))
            .await
            .map_err(|_| lost(format!("no login answer from {addr} in time")))??;
        Ok(session)
    }

    async fn wait_banner(&mut self, s: &mut Session) -> Result<()> {
        while s.decoder.banner().is_none() {
            self.read_some(s).await?;
            while let Some(item) = s.decoder.next_message() {
                s.backlog.push_back(item);
            }
            if s.decoder.banner().is_none() && s.decoder.stream_offset() > 4096 {
                return Err(Error::Remote("no AMI banner in the first 4 KiB".into()));
            }
        }
        Ok(())
    }

    /// The session setup (`proto::Login`) driven over the socket, one round trip per step.
    async fn login(&mut self, s: &mut Session) -> Result<()> {
        let banner = s.decoder.banner().unwrap_or_default().to_owned();
        let o = &self.link.options;
        let mut login = Login::new(&o.username, &o.secret, o.auth == Auth::Md5)
            .with_events(&o.events.0)
            .with_replay(self.replay.actions());
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
    async fn roundtrip(&mut self, s: &mut Session, action: Action) -> Result<Message> {
        let id = self.ids.next_id();
        action.encode(Some(&id), &mut s.out)?;
        let out = std::mem::take(&mut s.out);
        if let Some(rec) = self.link.recorder.as_mut() {
            rec.record("send", &out, false);
        }
        s.write
            .write_all(&out)
            .await
            .map_err(|e| lost(format!("write: {e}")))?;
        loop {
            while let Some(item) = s.next_message() {
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

    async fn read_some(&mut self, s: &mut Session) -> Result<()> {
        s.rbuf.clear();
        let n = s
            .read
            .read_buf(&mut s.rbuf)
            .await
            .map_err(|e| lost(format!("read: {e}")))?;
        if let Some(rec) = self.link.recorder.as_mut() {
            rec.record("recv", &s.rbuf, n == 0);
        }
        if n == 0 {
            return Err(lost("the server closed the connection"));
        }
        self.link.shared.stats_mut(|st| st.bytes_read += n as u64);
        s.decoder.feed(&s.rbuf);
        s.rbuf.clear();
        Ok(())
    }
}
