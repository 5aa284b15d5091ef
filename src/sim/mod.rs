//! The embedded AMI simulator: an Asterisk 22 stand-in on tokio. No Python here.
//!
//! It speaks the recorded server's exact wire format (`../shared/fixtures/asterisk-22/`):
//! banner, plain and MD5 login, the common actions and list actions, Command in both styles,
//! Originate with simulated Local channels running a small dialplan (by default the recorded
//! server's `test` context), event masks and filters. It can also misbehave on purpose
//! ([`Faults`]), stream a capture as fast as possible ([`Firehose`]), replay a transcript, and
//! serve TLS.
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
mod dialplan;
mod firehose;
mod replay;
mod server;
mod session;
mod time;
mod tls;
mod wire;

pub use config::{
    CommandStyle, Faults, Firehose, FirehoseSource, SimConfig, Tls, User, default_users,
};
pub use dialplan::{Context, Dialplan, Extension, Step};
pub use server::{SimHandle, Simulator};
pub use wire::{Event, class};
