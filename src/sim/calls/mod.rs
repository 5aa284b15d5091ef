//! Simulated calls: Local channel pairs running the dialplan, bridges, and the events they
//! raise, shaped like the recorded ones (`tcp-originate-sync.jsonl`, `tcp-pipelining.jsonl`,
//! `event-stream-load.raw`).
//!
//! Every channel has its own task ([`runner`]) that executes its program and reacts
//! to control messages (hangup, redirect, start, bridge ended). Shared state lives in
//! [`model::Calls`] behind a std mutex in the simulator's core that is never held across an
//! await. The files, from the bottom up (each uses only those above it):
//!
//! - [`ast`]: Asterisk's numbers under Asterisk's names (channel states, hangup causes,
//!   Originate reasons).
//! - [`model`]: the tables of channels and bridges, and what a channel is told to do.
//! - [`events`]: the channel, dial, bridge and Cdr events in the recorded header order.
//! - [`vars`]: `${...}` variables and the few dialplan functions.
//! - [`channel`]: channel life: Local pairs, states, answer, variables, caller ID.
//! - [`bridge`]: basic two-party bridges.
//! - [`runner`]: the task of one channel: the dialplan applications, Dial, the hangup sequence.
//! - [`originate`]: the Originate action's call and its OriginateResponse.
//! - [`load`]: the load mode, N Originated calls kept going.
//!
//! Growing it: a bridge action (Bridge, BridgeKick, BridgeDestroy) is a function beside
//! [`bridge::bridge_dial`], answered from the same [`model::Calls`] table that BridgeList and
//! BridgeInfo read; a per-channel fact that Status reports is a field of [`model::Channel`].
//!
//! A change to a channel or bridge and its event happen under one lock of the tables (the
//! event functions take the locked tables), so list answers agree with the event stream.

pub(crate) mod ast;
pub(crate) mod bridge;
pub(crate) mod channel;
pub(crate) mod events;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod originate;
pub(crate) mod runner;
pub(crate) mod vars;
