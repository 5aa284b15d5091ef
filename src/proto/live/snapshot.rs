//! Reading the channel and bridge snapshots that Asterisk 12 and later put in their events and list
//! items: a fixed set of headers (`Channel`, `Uniqueid`, …; `ToBridgeUniqueid` behind a prefix).
//! One pass over the headers, values borrowed.

use crate::proto::Message;

/// One channel as a message describes it, borrowed from the message.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct ChannelSnapshot<'a> {
    pub name: Option<&'a [u8]>,
    pub state: Option<&'a [u8]>,
    pub caller_num: Option<&'a [u8]>,
    pub caller_name: Option<&'a [u8]>,
    pub connected_num: Option<&'a [u8]>,
    pub connected_name: Option<&'a [u8]>,
    pub language: Option<&'a [u8]>,
    pub account_code: Option<&'a [u8]>,
    pub context: Option<&'a [u8]>,
    pub exten: Option<&'a [u8]>,
    pub priority: Option<&'a [u8]>,
    /// Never empty once [`ChannelSnapshot::read`] returned the snapshot.
    uniqueid: Option<&'a [u8]>,
    pub linkedid: Option<&'a [u8]>,
}

/// One bridge as a message describes it.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct BridgeSnapshot<'a> {
    /// Never empty once [`BridgeSnapshot::read`] returned the snapshot.
    id: Option<&'a [u8]>,
    pub kind: Option<&'a [u8]>,
    pub technology: Option<&'a [u8]>,
    pub creator: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
    pub video_source_mode: Option<&'a [u8]>,
}

/// What a `Hangup` says: whose, and why.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct HangupSnapshot<'a> {
    uniqueid: Option<&'a [u8]>,
    pub cause: Option<&'a [u8]>,
    pub cause_text: Option<&'a [u8]>,
}

fn present(value: Option<&[u8]>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// Sets `slot` once (the first of repeated headers wins, as everywhere in amiwire); true when
/// it was empty.
fn fill<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) -> bool {
    let empty = slot.is_none();
    slot.get_or_insert(value);
    empty
}

/// Where a header (its name without the prefix) goes in a snapshot, if it is one of its fields.
type SlotOf<'a, T> = for<'t> fn(&'t mut T, &[u8]) -> Option<&'t mut Option<&'a [u8]>>;

/// Reads `msg`'s headers behind `prefix` into the slots `slot` names, stopping once `wanted` are
/// filled (which skips the headers an event adds after a snapshot).
fn scan<'a, T>(msg: &'a Message, prefix: &str, wanted: usize, target: &mut T, slot: SlotOf<'a, T>) {
    let mut found = 0;
    for header in msg.headers() {
        let Some((head, name)) = header.name.split_at_checked(prefix.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
            continue;
        }
        let Some(slot) = slot(target, name) else {
            continue;
        };
        found += usize::from(fill(slot, header.value));
        if found == wanted {
            break;
        }
    }
}

/// `name` is `want`, ASCII case-insensitively; the exact spelling Asterisk uses is tried first
/// (a fixed-length compare), the case-folding loop only when that fails.
fn is(name: &[u8], want: &[u8]) -> bool {
    name == want || name.eq_ignore_ascii_case(want)
}

/// The [`ChannelSnapshot`] field of a header, matched on the length first: most headers are
/// turned away by one integer compare.
fn channel_slot<'t, 'a>(
    snap: &'t mut ChannelSnapshot<'a>,
    name: &[u8],
) -> Option<&'t mut Option<&'a [u8]>> {
    Some(match name.len() {
        5 if is(name, b"Exten") => &mut snap.exten,
        7 if is(name, b"Channel") => &mut snap.name,
        7 if is(name, b"Context") => &mut snap.context,
        8 if is(name, b"Uniqueid") => &mut snap.uniqueid,
        8 if is(name, b"Linkedid") => &mut snap.linkedid,
        8 if is(name, b"Language") => &mut snap.language,
        8 if is(name, b"Priority") => &mut snap.priority,
        11 if is(name, b"CallerIDNum") => &mut snap.caller_num,
        11 if is(name, b"AccountCode") => &mut snap.account_code,
        12 if is(name, b"ChannelState") => &mut snap.state,
        12 if is(name, b"CallerIDName") => &mut snap.caller_name,
        16 if is(name, b"ConnectedLineNum") => &mut snap.connected_num,
        17 if is(name, b"ConnectedLineName") => &mut snap.connected_name,
        _ => return None,
    })
}

impl<'a> ChannelSnapshot<'a> {
    /// The bare channel snapshot of `msg`; `None` unless it names both the channel and its
    /// Uniqueid.
    pub(crate) fn read(msg: &'a Message) -> Option<ChannelSnapshot<'a>> {
        let mut snap = ChannelSnapshot::default();
        scan(msg, "", 13, &mut snap, channel_slot);
        (snap.name.is_some() && present(snap.uniqueid)).then_some(snap)
    }

    pub(crate) fn uniqueid(&self) -> &'a [u8] {
        self.uniqueid.unwrap_or_default()
    }
}

fn bridge_slot<'t, 'a>(
    snap: &'t mut BridgeSnapshot<'a>,
    name: &[u8],
) -> Option<&'t mut Option<&'a [u8]>> {
    Some(match name.len() {
        10 if is(name, b"BridgeType") => &mut snap.kind,
        10 if is(name, b"BridgeName") => &mut snap.name,
        13 if is(name, b"BridgeCreator") => &mut snap.creator,
        14 if is(name, b"BridgeUniqueid") => &mut snap.id,
        16 if is(name, b"BridgeTechnology") => &mut snap.technology,
        21 if is(name, b"BridgeVideoSourceMode") => &mut snap.video_source_mode,
        _ => return None,
    })
}

impl<'a> BridgeSnapshot<'a> {
    /// The bridge snapshot behind `prefix` (`""`, or `To`/`From` in `BridgeMerge`); `None`
    /// without an id.
    pub(crate) fn read(msg: &'a Message, prefix: &str) -> Option<BridgeSnapshot<'a>> {
        let mut snap = BridgeSnapshot::default();
        scan(msg, prefix, 6, &mut snap, bridge_slot);
        present(snap.id).then_some(snap)
    }

    pub(crate) fn id(&self) -> &'a [u8] {
        self.id.unwrap_or_default()
    }
}

fn hangup_slot<'t, 'a>(
    snap: &'t mut HangupSnapshot<'a>,
    name: &[u8],
) -> Option<&'t mut Option<&'a [u8]>> {
    Some(match name.len() {
        5 if is(name, b"Cause") => &mut snap.cause,
        8 if is(name, b"Uniqueid") => &mut snap.uniqueid,
        9 if is(name, b"Cause-txt") => &mut snap.cause_text,
        _ => return None,
    })
}

impl<'a> HangupSnapshot<'a> {
    pub(crate) fn read(msg: &'a Message) -> Option<HangupSnapshot<'a>> {
        let mut snap = HangupSnapshot::default();
        scan(msg, "", 3, &mut snap, hangup_slot);
        present(snap.uniqueid).then_some(snap)
    }

    pub(crate) fn uniqueid(&self) -> &'a [u8] {
        self.uniqueid.unwrap_or_default()
    }
}
