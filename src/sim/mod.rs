//! The embedded AMI simulator: an Asterisk 22 stand-in on tokio. No Python here.
//!
//! It speaks the recorded server's exact wire format (`../shared/fixtures/asterisk-22/`):
//! banner, plain and MD5 login, the common actions and list actions, Command in both styles,
//! Originate with simulated Local channels running a small dialplan (by default the recorded
//! server's `test` context), event masks and filters. Its calls' channels and bridges answer
//! CoreShowChannels, Status, BridgeList and BridgeInfo after exactly the events they reflect. It
//! can keep N calls going ([`SimConfig::load_calls`]), misbehave on purpose ([`Faults`]), stream
//! a capture as fast as possible ([`Firehose`]), replay a transcript, and serve TLS.
//!
//! # Safe to expose, as Asterisk is
//!
//! - Every AMI connection reads actions as `main/manager.c` does (`input.rs`): 1,024-byte lines,
//!   128 lines an action, whether logged in or not; a connection holds ~1 KB of input plus
//!   the lines it kept.
//! - `authlimit` ([`SimConfig::auth_limit`], 50): beyond that many connections not logged in,
//!   a new one is closed at accept, before the banner (manager.c `session_do()`); `authtimeout`
//!   ([`SimConfig::auth_timeout`], 30 s) runs from the accept, TLS handshake included.
//! - HTTP (`main/http.c` `httpd_helper_thread()`): `session_keep_alive` (15 s) to start a
//!   request, 30 s to finish it (else `400 Bad Request` / `Timeout`), `sessionlimit` (100)
//!   open connections, the next one closed unanswered.
//!
//! # Layout
//!
//! `core.rs` holds what every connection and call shares and depends only on data
//! (`config.rs`, `wire.rs`, `calls/model.rs`); the listeners (`server.rs`, `http.rs`), the
//! session and its actions, the call model (`calls/`), replay and firehose depend on it, never
//! the other way round. `scripts/check_cycles.py src/sim` (run by `make test`) keeps the
//! module graph acyclic.
//!
//! # Deliberately less than Asterisk
//!
//! - One Asterisk version (22.10.1, AMI 11.0.0); Asterisk 13 only as the legacy Command form.
//! - Only `Local/<exten>@<context>` channels; any other technology fails to originate. The
//!   dialplan knows `Answer`, `Ringing`, `Wait`, `Echo`, `Set`, `UserEvent`, `Dial` (one
//!   Local target), `Hangup`, `NoOp`/`Verbose` and the `h` extension; other applications are
//!   no-ops. Event sequences have the recorded shapes and header order, not every event
//!   Asterisk would send (one DeviceStateChange where Asterisk may send two, no Local channel
//!   optimisation, no Masquerade, simplified Cdr timing). Hangup causes are simplified: 16
//!   (Normal Clearing) or the Hangup action's `Cause`, where Asterisk reports 0 for some Local
//!   halves (an Originate's `;1` whose application ended, a channel hung up by the action
//!   without a `Cause`) and puts the HangupRequest on the other half.
//! - Action coverage: the ones in `ListCommands` that the fixtures exercise (Login, Challenge,
//!   Logoff, Ping, CoreSettings, CoreStatus, Getvar, Setvar, Events, Filter, UserEvent,
//!   Command, ListCommands, WaitEvent, Originate, Hangup, Redirect, CoreShowChannels, Status,
//!   ShowDialPlan, BridgeList, BridgeInfo, DeviceStateList, ExtensionStateList,
//!   CoreShowChannelMap); the other listed actions answer `Action X is not simulated`.
//! - CLI: `core show version|channels [count|concise]|uptime [seconds]`, `dialplan show
//!   <ctx>`, `manager show commands`, `channel request hangup`; no `core show help`.
//! - Getvar functions: `LEN`, `GLOBAL`, `CALLERID`, `STRFTIME(<epoch>,UTC,%Y)` only.
//! - `writetimeout` only when asked for ([`SimConfig::write_timeout`]; Asterisk's default is
//!   100 ms): by default a slow reader gets a bounded queue of 10,000 events; UTC only.
//! - AJAM ([`SimConfig::http`]): no `prefix`, no Basic auth, realm always `asterisk`, no
//!   static files; requests up to 64 KB (Asterisk: 4,096-byte lines, 100 headers, 40,960-byte
//!   bodies); a whole request is timed rather than each gap between reads, and the first
//!   request gets `session_keep_alive` like the others (Asterisk waits at least 10 s); idle
//!   Digest logins expire after `httptimeout` like cookies.
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
