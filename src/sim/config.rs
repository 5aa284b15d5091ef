//! What a simulator is told: users, dialplan, Command style, faults, firehose, replay, TLS.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::dialplan::Dialplan;
use super::wire::class;

/// Events waiting for one session (its socket or its next WaitEvent). A session further behind
/// than this loses the newer events, counted in `SimHandle::events_dropped`: a client that stops
/// reading must not make the simulator's memory grow without end. (Asterisk bounds the same by
/// dropping the session after `writetimeout`; see `SimConfig::write_timeout`.)
const DEFAULT_SESSION_EVENT_QUEUE: usize = 10_000;

/// One `manager.conf` user.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub secret: String,
    /// Event classes the user may read (bits of [`class`]).
    pub read: u32,
    /// Action classes the user may run.
    pub write: u32,
}

impl User {
    /// `read`/`write` are manager.conf lists such as `all`, `none` or `system,call`.
    pub fn new(name: &str, secret: &str, read: &str, write: &str) -> User {
        User {
            name: name.into(),
            secret: secret.into(),
            read: class::parse(read),
            write: class::parse(write),
        }
    }
}

impl fmt::Debug for User {
    // The secret stays out of Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

/// How `Action: Command` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommandStyle {
    /// Asterisk 14+: `Response: Success`, `Message: Command output follows`, `Output:` lines.
    #[default]
    Output,
    /// Asterisk <= 13: `Response: Follows`, raw text, `--END COMMAND--`.
    Legacy,
}

/// Misbehaviours a client must survive. Each applies to every connection of the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Close the connection when a Login arrives, without answering.
    pub close_during_login: bool,
    /// Write the first half of the reply to the first action after login, then close.
    pub close_mid_message: bool,
    /// List actions send their start and first item, then the connection closes.
    pub close_mid_list: bool,
    /// After the login reply, stop reading and writing (the socket stays open).
    pub stall_after_login: bool,
    /// Write a block of non-AMI bytes right after the login reply, then carry on.
    pub garbage_after_login: bool,
    /// Write everything one byte at a time, pausing this long after each byte.
    pub drip: Option<Duration>,
    /// Never answer Ping; everything else works (a half-open link as the client sees it).
    pub ignore_pings: bool,
}

/// What the firehose streams after login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirehoseSource {
    /// A raw capture such as `event-stream-load.raw`; its banner and login reply are skipped.
    File(PathBuf),
    /// Generated call events shaped like the load capture (`count` per repeat).
    Generated { count: u64 },
}

/// Stream events as fast as the socket accepts, right after a successful login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firehose {
    pub source: FirehoseSource,
    /// How many times the source is sent (at least once).
    pub repeats: u32,
    /// Start after the reply to this action instead of right after login, so that a client
    /// can subscribe first (benchmarks count every event).
    pub after_action: Option<String>,
}

/// TLS: a certificate given as PEM, or one generated for `localhost`/`127.0.0.1`.
#[derive(Clone, PartialEq, Eq)]
pub enum Tls {
    Pem { cert: String, key: String },
    Generate,
}

impl fmt::Debug for Tls {
    // The private key never appears in Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tls::Pem { .. } => f.write_str("Tls::Pem { .. }"),
            Tls::Generate => f.write_str("Tls::Generate"),
        }
    }
}

/// The simulator's configuration, built with chained setters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) users: Vec<User>,
    pub(crate) dialplan: Dialplan,
    pub(crate) command_style: CommandStyle,
    pub(crate) faults: Faults,
    pub(crate) firehose: Option<Firehose>,
    pub(crate) replay: Option<PathBuf>,
    pub(crate) tls: Option<Tls>,
    pub(crate) auth_fail_delay: Duration,
    pub(crate) auth_timeout: Duration,
    pub(crate) auth_limit: usize,
    pub(crate) write_timeout: Option<Duration>,
    /// Multiplies every dialplan wait and ring (0.1 makes calls ten times faster).
    pub(crate) time_scale: f64,
    pub(crate) http: bool,
    pub(crate) http_timeout: Duration,
    pub(crate) http_session_limit: usize,
    pub(crate) http_keep_alive: Duration,
    pub(crate) http_request_timeout: Duration,
    pub(crate) digest_stale: Duration,
    pub(crate) load_calls: usize,
    pub(crate) call_duration: Duration,
    pub(crate) session_event_queue: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: default_users(),
            dialplan: Dialplan::default(),
            command_style: CommandStyle::Output,
            faults: Faults::default(),
            firehose: None,
            replay: None,
            tls: None,
            auth_fail_delay: Duration::from_secs(1),
            auth_timeout: Duration::from_secs(30),
            auth_limit: 50,
            write_timeout: None,
            time_scale: 1.0,
            http: false,
            http_timeout: Duration::from_secs(60),
            http_session_limit: 100,
            http_keep_alive: Duration::from_secs(15),
            http_request_timeout: Duration::from_secs(30),
            digest_stale: Duration::from_secs(62),
            load_calls: 0,
            call_duration: Duration::from_secs(10),
            session_event_queue: DEFAULT_SESSION_EVENT_QUEUE,
        }
    }
}

/// The users of the recorded server's `manager.conf` (`config/manager.conf` in the fixtures).
pub fn default_users() -> Vec<User> {
    vec![
        User::new("admin", "amiwire", "all", "all"),
        User::new("reader", "readonly", "all", "none"),
        User::new(
            "local",
            "localonly",
            "system,call,log,verbose,agent,user,config,dtmf,reporting,cdr,dialplan",
            "system,call,agent,user,config,command,reporting,originate,message",
        ),
    ]
}

impl SimConfig {
    pub fn new() -> SimConfig {
        SimConfig::default()
    }

    /// Where to listen (default 127.0.0.1, port 0 = ephemeral).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.bind.set_port(port);
        self
    }

    /// Replaces the user list.
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.users = users;
        self
    }

    /// Adds a user, replacing one of the same name (names compare case-insensitively, as
    /// Asterisk's do).
    pub fn user(mut self, user: User) -> Self {
        self.users
            .retain(|u| !u.name.eq_ignore_ascii_case(&user.name));
        self.users.push(user);
        self
    }

    pub fn dialplan(mut self, dialplan: Dialplan) -> Self {
        self.dialplan = dialplan;
        self
    }

    pub fn command_style(mut self, style: CommandStyle) -> Self {
        self.command_style = style;
        self
    }

    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn firehose(mut self, firehose: Firehose) -> Self {
        self.firehose = Some(firehose);
        self
    }

    /// Serve a recorded JSONL transcript instead of simulating.
    pub fn replay(mut self, path: impl Into<PathBuf>) -> Self {
        self.replay = Some(path.into());
        self
    }

    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The pause before `Authentication failed` (Asterisk: 1 s).
    pub fn auth_fail_delay(mut self, delay: Duration) -> Self {
        self.auth_fail_delay = delay;
        self
    }

    /// How long a connection may stay without logging in (Asterisk `authtimeout`: 30 s),
    /// counted from the accept, a TLS handshake included; then it is closed without a word.
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// Asterisk's `authlimit` (default 50, at least 1): how many AMI connections may be open
    /// without having logged in. As in manager.c (`session_do()`), one more is closed as soon
    /// as it is accepted, before the banner; a login frees its place.
    pub fn auth_limit(mut self, limit: usize) -> Self {
        self.auth_limit = limit.max(1);
        self
    }

    /// Asterisk's `writetimeout` (its default is 100 ms): a session whose write cannot make
    /// progress for that long is disconnected, as Asterisk drops a client that stops reading.
    /// None (the default here) queues up to `session_event_queue` events for a slow reader
    /// and then drops the newer ones (`SimHandle::events_dropped`).
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = if scale.is_finite() && scale >= 0.0 {
            scale
        } else {
            1.0
        };
        self
    }

    /// Also serve AJAM (`/rawman`, `/mxml`, `/manager` and their Digest twins) on a second,
    /// ephemeral 127.0.0.1 port ([`super::SimHandle::http_addr`]).
    pub fn http(mut self, on: bool) -> Self {
        self.http = on;
        self
    }

    /// `http.conf` `httptimeout` (default 60 s): cookie Max-Age, idle session expiry, and
    /// the WaitEvent clamp (this minus 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// `http.conf` `sessionlimit` (default 100, at least 1): open HTTP connections. As in
    /// main/http.c (`httpd_helper_thread()`), one more is closed at once, unanswered.
    pub fn http_session_limit(mut self, limit: usize) -> Self {
        self.http_session_limit = limit.max(1);
        self
    }

    /// `http.conf` `session_keep_alive` (default 15 s): how long a connection may wait for
    /// its next request (its first one too) before it is closed.
    pub fn http_keep_alive(mut self, timeout: Duration) -> Self {
        self.http_keep_alive = timeout;
        self
    }

    /// How long a request may take to arrive, head and body, once its first byte has
    /// (default 30 s, `http.conf` `session_inactivity`). A request still incomplete then is
    /// answered `400 Bad Request` and the connection closed, as main/http.c does.
    pub fn http_request_timeout(mut self, timeout: Duration) -> Self {
        self.http_request_timeout = timeout;
        self
    }

    /// How old a Digest nonce may get before it is answered with `stale=true` (Asterisk: ~62 s).
    pub fn digest_stale(mut self, age: Duration) -> Self {
        self.digest_stale = age;
        self
    }

    /// Load mode: keep this many calls in progress (0, the default, is off), the first ones
    /// placed evenly over one call duration.
    /// Each is a Local pair that rings a second pair, which answers and is bridged to it;
    /// it hangs up after its talk time and a new call takes its place
    /// ([`super::SimHandle::load_calls_started`]).
    pub fn load_calls(mut self, calls: usize) -> Self {
        self.load_calls = calls;
        self
    }

    /// The load mode's typical call (default 10 s, PBX time: `time_scale` applies): it rings
    /// for a fifth of it, then talks for between half and one and a half times it.
    pub fn call_duration(mut self, duration: Duration) -> Self {
        self.call_duration = duration;
        self
    }

    /// Events queued per session for a reader that is behind (10,000 by default, at least 1);
    /// past it the newer ones are dropped and counted (`SimHandle::events_dropped`). A large
    /// load with its lists of tens of thousands of channels needs more.
    pub fn session_event_queue(mut self, events: usize) -> Self {
        self.session_event_queue = events.max(1);
        self
    }

    /// The configured users.
    pub fn user_list(&self) -> &[User] {
        &self.users
    }
}
