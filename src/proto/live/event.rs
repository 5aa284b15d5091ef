//! Which events the live state reads, by name (ASCII case-insensitive: Asterisk 13 and 22 spell
//! `Newexten` alike, older modules and docs write `NewExten`).
//!
//! Asterisk (12+) compares each channel snapshot with the one before and sends a `New*` event
//! for every change of the fields the model keeps (`manager_channels.c`); `Rename` covers the
//! name. Other events (`DialBegin`, `HangupRequest`, `LocalBridge`, `VarSet`, …) repeat the same
//! snapshot: reading them would cost a header scan each (a third of the channel events in the
//! load capture) and tell nothing new, so they are not read.

/// What an event does to the live state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// `Newchannel`: a channel is born (its snapshot is complete).
    NewChannel,
    /// A change of the channel's snapshot (`Newstate`, `NewCallerid`, `NewConnectedLine`,
    /// `NewAccountCode`, `Newexten`): every field is refreshed from it, not just the one named.
    Refresh,
    Hangup,
    /// `Rename`: `Channel` (old name), `Newname`, `Uniqueid`.
    Rename,
    BridgeCreate,
    BridgeEnter,
    BridgeLeave,
    BridgeDestroy,
    /// `BridgeMerge`: every member of `FromBridge*` moves to `ToBridge*`.
    BridgeMerge,
    /// `BridgeVideoSourceUpdate`: only the bridge's own fields.
    BridgeUpdate,
    /// `VarSet`: read only when variables are opted in (it refreshes the snapshot too).
    VarSet,
}

impl EventKind {
    pub(crate) fn of(name: &[u8]) -> Option<EventKind> {
        let mut lower = [0u8; 24];
        let lower = lower.get_mut(..name.len())?;
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"newchannel" => EventKind::NewChannel,
            b"newstate" | b"newcallerid" | b"newconnectedline" | b"newaccountcode"
            | b"newexten" => EventKind::Refresh,
            b"hangup" => EventKind::Hangup,
            b"rename" => EventKind::Rename,
            b"bridgecreate" => EventKind::BridgeCreate,
            b"bridgeenter" => EventKind::BridgeEnter,
            b"bridgeleave" => EventKind::BridgeLeave,
            b"bridgedestroy" => EventKind::BridgeDestroy,
            b"bridgemerge" => EventKind::BridgeMerge,
            b"bridgevideosourceupdate" => EventKind::BridgeUpdate,
            b"varset" => EventKind::VarSet,
            _ => return None,
        })
    }
}
