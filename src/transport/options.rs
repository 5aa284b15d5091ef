//! Connection options: what `amiwire.connect(...)` accepts, in Rust form.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    Plain,
    /// `Challenge` + `Key: md5(challenge + secret)`: the secret never crosses the wire.
    Md5,
}

/// The login `Events:` header: `on`, `off` or a class mask such as `call,user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMask(pub String);

/// Event classes Asterisk knows (manager.c `perms`); a typo in a mask silently turns events off,
/// so masks are checked client-side.
pub const EVENT_CLASSES: &[&str] = &[
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
    "all",
];

impl EventMask {
    pub fn parse(mask: &str) -> Result<EventMask, String> {
        let m = mask.trim();
        if ["on", "off", "yes", "no", "true", "false"]
            .iter()
            .any(|w| m.eq_ignore_ascii_case(w))
        {
            return Ok(EventMask(m.to_ascii_lowercase()));
        }
        for class in m.split(',') {
            let class = class.trim();
            if !EVENT_CLASSES.iter().any(|c| c.eq_ignore_ascii_case(class)) {
                return Err(format!(
                    "unknown event class {class:?} in mask {mask:?} (Asterisk would silently turn events off)"
                ));
            }
        }
        Ok(EventMask(m.to_owned()))
    }

    /// Whether the mask sends no events at all.
    pub fn is_off(&self) -> bool {
        ["off", "no", "false"].contains(&self.0.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reconnect {
    pub enabled: bool,
    pub initial: Duration,
    pub max: Duration,
    /// 0 = forever.
    pub max_attempts: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            max_attempts: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tls {
    /// PEM file of extra trust anchors (self-signed PBX certificates).
    pub ca_file: Option<PathBuf>,
    /// Name to verify instead of the host (connecting by IP to a named certificate).
    pub server_name: Option<String>,
    /// Accept any certificate. Explicit opt-in only.
    pub insecure: bool,
}

#[derive(Clone)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: String,
    pub auth: Auth,
    pub events: EventMask,
    pub tls: Option<Tls>,
    pub connect_timeout: Duration,
    /// Default deadline of every action (each call may override it).
    pub action_timeout: Duration,
    /// Ping this often when idle; a missed Ping deadline declares the connection dead.
    pub keepalive: Option<Duration>,
    pub reconnect: Reconnect,
    /// Write every byte sent and received as a JSONL transcript (the fixtures' format); TCP
    /// and TLS only (over HTTP, connecting fails with `Error::Usage`).
    pub record: Option<PathBuf>,
    /// AMI over HTTP instead of TCP.
    pub http: Option<Http>,
    /// Items one list action may collect before it fails with `Error::ListTooLong`.
    pub list_limit: usize,
    /// Bytes of items one list action may collect (64 MiB), likewise: 250,000 items of
    /// 100 KB would otherwise be 25 GB. (Over HTTP a list is one body: `Http::max_body`.)
    pub max_list_bytes: usize,
    /// Bytes the event queues of this client may hold together (128 MiB), on top of each
    /// queue's own `QueueLimits`.
    pub max_event_bytes: usize,
    /// Keep the PBX's channels, bridges and calls from the events (`Client::live`), rebuilt
    /// from its own lists on connect and after every reconnect. Needs the `call` event class.
    pub live: Option<crate::proto::live::LiveConfig>,
}

/// AJAM: the manager over Asterisk's HTTP server (`http.conf`).
#[derive(Clone, Debug, PartialEq)]
pub struct Http {
    pub endpoint: crate::proto::http::Endpoint,
    /// `http.conf` `prefix` (`/asterisk/rawman`); empty for none.
    pub prefix: String,
    /// `https://` (TLS options from `Options::tls`).
    pub https: bool,
    /// Seconds each WaitEvent long-poll may last (clamped under `http_timeout - 10`).
    pub poll_timeout: u32,
    /// The server's `httptimeout` (cookie lifetime), 60 by default.
    pub http_timeout: u32,
    /// Largest response body read (32 MiB): a bigger one fails the action instead of
    /// taking memory without end.
    pub max_body: usize,
    /// Bytes of all the bodies one client reads at once (64 MiB): concurrent large replies
    /// fail beyond it rather than multiply `max_body`.
    pub max_bodies: usize,
}

impl Http {
    pub fn new(endpoint: crate::proto::http::Endpoint) -> Http {
        Http {
            endpoint,
            prefix: String::new(),
            https: false,
            poll_timeout: 20,
            http_timeout: 60,
            max_body: 32 * MIB,
            max_bodies: 64 * MIB,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "127.0.0.1".into(),
            port: 5038,
            username: String::new(),
            secret: String::new(),
            auth: Auth::Plain,
            events: EventMask("on".into()),
            tls: None,
            connect_timeout: Duration::from_secs(10),
            action_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(20)),
            reconnect: Reconnect::default(),
            record: None,
            http: None,
            list_limit: crate::proto::DEFAULT_LIST_LIMIT,
            max_event_bytes: 128 * MIB,
            max_list_bytes: 64 * MIB,
            live: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("secret", &"********")
            .field("auth", &self.auth)
            .field("events", &self.events)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("action_timeout", &self.action_timeout)
            .field("keepalive", &self.keepalive)
            .field("reconnect", &self.reconnect)
            .field("record", &self.record)
            .field("http", &self.http)
            .field("list_limit", &self.list_limit)
            .field("max_list_bytes", &self.max_list_bytes)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("live", &self.live)
            .finish()
    }
}
