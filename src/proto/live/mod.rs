//! Live state: the PBX's channels, bridges and calls, kept from the event stream and rebuilt
//! from the PBX's own lists after every gap. Sans-IO like the rest of `proto`: messages and the
//! time come in, a read-only [`View`] and change sets go out.
//!
//! # Model
//! A [`Channel`] is keyed by Uniqueid and carries what Asterisk 12+ puts in every channel event's
//! snapshot (name, Linkedid, state, caller ID, connected line, language, account code,
//! context/exten/priority), plus the bridge it is in, its Local-channel other half (paired by
//! name, `;1` with `;2`, as soon as both are live), when it was first seen, and (opted in, [`LiveConfig::variables`]) its variables. A [`Bridge`] keeps its
//! type, technology, creator, name, video mode and members in entry order; a [`Call`] is the
//! channels sharing a Linkedid. The application a channel runs is not kept: Asterisk does not
//! announce every change of it (a `Newexten` only comes when context/exten/priority move), so a
//! kept value would drift from the PBX's lists.
//!
//! Which events are read, and why, is in `event.rs`; each of them carries the channel's complete
//! snapshot as of that event, so every read refreshes every field, not just the one the event is
//! named for. An event about a channel never seen is counted ([`LiveStats::orphan_events`]) and
//! skipped: only `Newchannel` (or the PBX's own list) brings a channel in, so a late event never
//! resurrects a channel that hung up.
//!
//! # Reading
//! The state lives in persistent maps (`imbl`): [`LiveState::view`] is an O(1) copy that shares
//! structure with the live maps, and an entry is an `Arc` that is copied on write only while a
//! view still holds it. A reader therefore never sees a half-applied event, and reading 10,000
//! channels costs no more than iterating them.
//!
//! # How the layers above use it (issue 12's next steps)
//! - The transport's supervisor owns one [`LiveState`] per client on the driver task that decodes
//!   (not on Python's loop thread, which pays only for the changes it reads). It feeds
//!   every unsolicited event to [`LiveState::apply`] with the current time, and publishes the
//!   returned changes to the change stream (same bounded-queue rules as event streams) and the
//!   latest [`View`] (an `ArcSwap`-like slot) for readers.
//! - On connect and after every reconnect it calls [`LiveState::begin_rebuild`], then sends
//!   `CoreShowChannels` and `BridgeList` (and `BridgeInfo` per bridge if member order matters),
//!   keeps applying events as they arrive, hands each answer's items to
//!   [`LiveState::rebuild_channels`] / [`LiveState::rebuild_bridges`] /
//!   [`LiveState::rebuild_bridge_members`] at the point in the stream where the answer completed
//!   (Asterisk writes a list answer in one piece, so no event falls inside it; channels before
//!   bridges), and publishes the
//!   single change set [`LiveState::finish_rebuild`] returns: channels that went during the gap
//!   are removed with cause `None`, the rest is added or changed, never a reset. An answer can be
//!   a little ahead of the events (Asterisk writes it from its snapshot cache while events are
//!   still queued): the events that follow bring the same values, and a late `Hangup` of a
//!   channel the list no longer had gives the removal its cause instead of counting as an orphan.
//!   Over HTTP the same calls wrap `WaitEvent` polling.
//! - The Python layer exposes the published view as `ami.channels` / `ami.bridges` /
//!   `ami.calls` (read-only mappings over the `Arc`s, converted on access), the change stream as
//!   `ami.live.changes()`, and builds `ami.call()` on top: the OriginateResponse's Uniqueid (or
//!   the Local pair it starts) names the call's Linkedid, and the handle follows that [`Call`]'s
//!   changes to its removal.

mod event;
mod model;
mod snapshot;
mod state;

pub use model::{
    Bridge, BridgeFields, Call, Change, Channel, ChannelFields, ChannelState, HangupCause, Map,
    Party, Text, View,
};
pub use state::{LiveConfig, LiveState, LiveStats};
