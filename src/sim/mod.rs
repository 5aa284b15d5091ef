//! The embedded AMI simulator: an Asterisk 22 stand-in on tokio. No Python here.
//!
//! It speaks the recorded server's exact wire format (`../shared/fixtures/asterisk-22/`):
//! banner, plain and MD5 login, the common actions and list actions, Command in both styles,
//! Originate with simulated Local channels running a small dialplan (by default the recorded
//! server's `test` context), event masks and filters. It can also misbehave on purpose
//! ([`Faults`]), stream a capture as fast as possible ([`Firehose`]), replay a transcript, and
//! serve TLS.
//!
//! # Deliberately less than Asterisk
//!
//! - One Asterisk version (22.10.1, AMI 11.0.0); Asterisk 13 only as the legacy Command form.
//! - Only `Local/<exten>@<context>` channels; any other technology fails to originate. The
//!   dialplan knows `Answer`, `Ringing`, `Wait`, `Echo`, `Set`, `UserEvent`, `Dial` (one
//!   Local target), `Hangup`, `NoOp`/`Verbose` and the `h` extension; other applications are
//!   no-ops. Event sequences have the recorded shapes and header order, not every event
//!   Asterisk would send (one DeviceStateChange where Asterisk may send two, no Local channel
//!   optimisation, no Masquerade, simplified Cdr timing).
//! - Action coverage: the ones in `ListCommands` that the fixtures exercise (Login, Challenge,
//!   Logoff, Ping, CoreSettings, CoreStatus, Getvar, Setvar, Events, Filter, UserEvent,
//!   Command, ListCommands, WaitEvent, Originate, Hangup, Redirect, CoreShowChannels, Status,
//!   ShowDialPlan, BridgeList, BridgeInfo, DeviceStateList, ExtensionStateList,
//!   CoreShowChannelMap); the other listed actions answer `Action X is not simulated`.
//! - CLI: `core show version|channels [count|concise]|uptime [seconds]`, `dialplan show
//!   <ctx>`, `manager show commands`, `channel request hangup`; no `core show help`.
//! - Getvar functions: `LEN`, `GLOBAL`, `CALLERID`, `STRFTIME(<epoch>,UTC,%Y)` only.
//! - `writetimeout` only when asked for ([`SimConfig::write_timeout`]; Asterisk's default is
//!   100 ms): by default a slow reader is buffered without bound; no `authlimit`; UTC only.
//! - AJAM ([`SimConfig::http`]): no `prefix`, no Basic auth, realm always `asterisk`, no
//!   static files, no 4 KB cap on form bodies (64 KB here); idle Digest logins expire after
//!   `httptimeout` like cookies.
//! - WaitEvent over TCP just waits its timeout (capped at 50 s), like an idle Asterisk.
//! - The firehose streams bytes after login regardless of the session's event mask.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use amiwire::sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::new()).await?;
//! println!("tcp://admin:amiwire@{}", sim.addr());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod actions;
mod calls;
mod cli;
mod commands;
mod config;
mod core;
mod dialplan;
mod firehose;
mod http;
mod input;
mod replay;
mod server;
mod session;
mod stream;
mod time;
mod tls;
mod wire;

pub use config::{
    CommandStyle, Faults, Firehose, FirehoseSource, SimConfig, Tls, User, default_users,
};
pub use dialplan::{Context, Dialplan, Extension, Step};
pub use server::{SimHandle, Simulator};
pub use wire::{Event, class};
