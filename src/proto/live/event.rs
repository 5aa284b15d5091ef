//! Which events the live state reads, by name (ASCII case-insensitive: Asterisk 13 and 22 spell
//! `Newexten` alike, older modules and docs write `NewExten`).

/// What an event does to the live state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// `Newchannel`: a channel is born (its snapshot is complete).
    NewChannel,
    /// An event whose bare channel snapshot is the channel's latest state: `Newstate`,
    /// `NewCallerid`, `NewConnectedLine`, `NewAccountCode`, `Newexten`, the hangup requests, holds.
    Refresh,
    Hangup,
    /// `Rename`: `Channel` (old name), `Newname`, `Uniqueid`.
    Rename,
    /// `LocalBridge`: the two halves of a Local channel (`LocalOne*`, `LocalTwo*`).
    LocalBridge,
    /// `DialBegin`/`DialState`/`DialEnd`: the caller's bare snapshot (absent for an originated
    /// call) and the callee's `Dest*` one.
    Dial,
    BridgeCreate,
    BridgeEnter,
    BridgeLeave,
    BridgeDestroy,
    /// `BridgeMerge`: every member of `FromBridge*` moves to `ToBridge*`.
    BridgeMerge,
    /// `BridgeVideoSourceUpdate`: only the bridge's own fields.
    BridgeUpdate,
    /// `VarSet`: read only when variables are opted in.
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
            | b"newexten" | b"hanguprequest" | b"softhanguprequest" | b"hold" | b"unhold" => {
                EventKind::Refresh
            }
            b"hangup" => EventKind::Hangup,
            b"rename" => EventKind::Rename,
            b"localbridge" => EventKind::LocalBridge,
            b"dialbegin" | b"dialstate" | b"dialend" => EventKind::Dial,
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
