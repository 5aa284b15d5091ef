//! Session setup, sans-IO: the one description of how an AMI session opens, for every
//! transport. Shaped like postgres-protocol's SASL exchange: the object says which action to
//! send next, takes the response, and reports progress; the driver only moves the bytes.
//!
//! The steps: an MD5 `Challenge` (with `auth=md5`), the `Login` (skipped where the transport
//! authenticates itself, HTTP Digest), the `CoreSettings` probe for the Asterisk version
//! (a user without `system` read simply gets no version), then the replay of what shaped
//! the previous session (its `Events` mask and `Filter`s) when this one replaces it.

use std::fmt;

use super::action::Action;
use super::auth::md5_key;
use super::message::Message;

/// What to do next.
#[derive(Debug)]
pub enum Progress {
    /// Send this action and hand its response to [`Login::on_response`].
    Send(Action),
    /// The session is ready.
    Ready(SessionInfo),
    /// The server refused the credentials (the text says why, never with the secret).
    Refused(String),
}

/// What the setup learnt about the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// `AsteriskVersion` from CoreSettings.
    pub asterisk_version: Option<String>,
    /// `AMIversion` from CoreSettings.
    pub ami_version: Option<String>,
    /// Replayed actions the new session refused: `(action, the server's message)`.
    pub replay_failures: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Start,
    Challenge,
    Login,
    Probe,
    /// Waiting for the answer to replayed action number `n`.
    Replay(usize),
    Done,
}

/// One session's setup. Feed it the response to each action it asks for, in order.
pub struct Login {
    username: String,
    secret: String,
    md5: bool,
    /// The login `Events:` header, if the driver sends one.
    events: Option<String>,
    /// The transport authenticates (HTTP Digest): no Challenge, no Login.
    authenticated: bool,
    /// Ask CoreSettings for the version (a session renewed in passing already knows it).
    probe: bool,
    replay: Vec<Action>,
    step: Step,
    info: SessionInfo,
}

impl Login {
    /// A plain login (`Secret:` on the wire) or, with `md5`, the challenge login (only
    /// md5(challenge + secret) crosses the wire).
    pub fn new(username: &str, secret: &str, md5: bool) -> Login {
        Login {
            username: username.to_owned(),
            secret: secret.to_owned(),
            md5,
            events: None,
            authenticated: false,
            probe: true,
            replay: Vec::new(),
            step: Step::Start,
            info: SessionInfo::default(),
        }
    }

    /// A session the transport already authenticates (HTTP Digest): only the probe and the
    /// replay are left.
    pub fn authenticated() -> Login {
        Login {
            authenticated: true,
            ..Login::new("", "", false)
        }
    }

    /// The `Events:` header of the Login action (`on`, `off`, a class mask).
    pub fn with_events(mut self, mask: &str) -> Login {
        self.events = Some(mask.to_owned());
        self
    }

    /// Without the CoreSettings probe: for a session renewed in passing (an expired HTTP
    /// cookie), whose server is known already.
    pub fn without_probe(mut self) -> Login {
        self.probe = false;
        self
    }

    /// Actions to send again once logged in, in order (see [`Replay`]).
    pub fn with_replay(mut self, actions: Vec<Action>) -> Login {
        self.replay = actions;
        self
    }

    /// The first action to send.
    pub fn start(&mut self) -> Progress {
        debug_assert_eq!(self.step, Step::Start, "start() once");
        if self.authenticated {
            return self.probe();
        }
        if self.md5 {
            self.step = Step::Challenge;
            return Progress::Send(Action::new("Challenge").header("AuthType", "MD5"));
        }
        let login = self.login_action().header("Secret", &self.secret);
        self.send(Step::Login, login)
    }

    /// The response to the action last asked for.
    pub fn on_response(&mut self, response: &Message) -> Progress {
        match self.step {
            Step::Start | Step::Done => Progress::Refused(format!(
                "a response arrived while no login step waited for one: {:?}",
                response.get("Message").unwrap_or_default()
            )),
            Step::Challenge => match response.get("Challenge") {
                Some(challenge) => {
                    let key = md5_key(&challenge, &self.secret);
                    let login = self
                        .login_action()
                        .header("AuthType", "MD5")
                        .header("Key", key);
                    self.send(Step::Login, login)
                }
                None => Progress::Refused(format!(
                    "MD5 challenge refused: {}",
                    message_of(response, "no challenge")
                )),
            },
            Step::Login if response.has_value("Response", "Success") => self.probe(),
            Step::Login => Progress::Refused(format!(
                "user {:?}: {}",
                self.username,
                message_of(response, "login refused")
            )),
            Step::Probe => {
                self.info.asterisk_version = response.get("AsteriskVersion").map(Into::into);
                self.info.ami_version = response.get("AMIversion").map(Into::into);
                self.replay_from(0)
            }
            Step::Replay(n) => {
                if !response.has_value("Response", "Success") {
                    let name = self.replay.get(n).map(|a| a.name().to_owned());
                    let why = message_of(response, "refused");
                    self.info
                        .replay_failures
                        .push((name.unwrap_or_default(), why));
                }
                self.replay_from(n + 1)
            }
        }
    }

    fn login_action(&self) -> Action {
        let login = Action::new("Login").header("Username", &self.username);
        match &self.events {
            Some(mask) => login.header("Events", mask),
            None => login,
        }
    }

    fn probe(&mut self) -> Progress {
        match self.probe {
            true => self.send(Step::Probe, Action::new("CoreSettings")),
            false => self.replay_from(0),
        }
    }

    fn replay_from(&mut self, n: usize) -> Progress {
        match self.replay.get(n) {
            Some(action) => {
                let action = action.clone();
                self.send(Step::Replay(n), action)
            }
            None => {
                self.step = Step::Done;
                Progress::Ready(std::mem::take(&mut self.info))
            }
        }
    }

    fn send(&mut self, step: Step, action: Action) -> Progress {
        self.step = step;
        Progress::Send(action)
    }
}

fn message_of(response: &Message, otherwise: &str) -> String {
    response
        .get("Message")
        .map_or_else(|| otherwise.to_owned(), Into::into)
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("secret", &"********")
            .field("md5", &self.md5)
            .field("step", &self.step)
            .finish()
    }
}

/// What a new session needs to look like the one it replaces: the last `Events` mask and
/// every `Filter` the user sent, to be sent again in order (filters cannot be listed or
/// removed, only added, so all of them are kept).
#[derive(Clone, Debug, Default)]
pub struct Replay {
    mask: Option<Action>,
    filters: Vec<Action>,
}

impl Replay {
    /// Remembers `action` if it shapes the session.
    pub fn note(&mut self, action: &Action) {
        if action.is("Filter") {
            self.filters.push(action.clone());
        } else if action.is("Events") {
            self.mask = Some(action.clone());
        }
    }

    pub fn actions(&self) -> Vec<Action> {
        self.mask.iter().chain(&self.filters).cloned().collect()
    }
}
