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
    pub uniqueid: &'a [u8],
    pub linkedid: Option<&'a [u8]>,
}

/// One bridge as a message describes it.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct BridgeSnapshot<'a> {
    pub id: &'a [u8],
    pub kind: Option<&'a [u8]>,
    pub technology: Option<&'a [u8]>,
    pub creator: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
    pub video_source_mode: Option<&'a [u8]>,
}

/// Sets `slot` once (the first of repeated headers wins, as everywhere in amiwire); true when
/// it was empty.
fn fill<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) -> bool {
    let empty = slot.is_none();
    slot.get_or_insert(value);
    empty
}

/// Reads `msg`'s headers into the slots `slot_of` names, stopping once `wanted` are filled
/// (which skips the headers an event adds after a snapshot).
fn scan<'a>(
    msg: &'a Message,
    wanted: usize,
    mut slot_of: impl FnMut(&[u8]) -> Option<usize>,
    slots: &mut [Option<&'a [u8]>],
) {
    let mut found = 0;
    for header in msg.headers() {
        let Some(slot) = slot_of(header.name).and_then(|i| slots.get_mut(i)) else {
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

/// The [`ChannelSnapshot`] slot of a header, matched on the length first: most headers are
/// turned away by one integer compare.
fn channel_slot(name: &[u8]) -> Option<usize> {
    Some(match name.len() {
        5 if is(name, b"Exten") => 9,
        7 if is(name, b"Channel") => 0,
        7 if is(name, b"Context") => 8,
        8 if is(name, b"Uniqueid") => 11,
        8 if is(name, b"Linkedid") => 12,
        8 if is(name, b"Language") => 6,
        8 if is(name, b"Priority") => 10,
        11 if is(name, b"CallerIDNum") => 2,
        11 if is(name, b"AccountCode") => 7,
        12 if is(name, b"ChannelState") => 1,
        12 if is(name, b"CallerIDName") => 3,
        16 if is(name, b"ConnectedLineNum") => 4,
        17 if is(name, b"ConnectedLineName") => 5,
        _ => return None,
    })
}

/// The slot of `name` among `headers` (ASCII case-insensitive).
fn slot_of(headers: &[&str], name: &[u8]) -> Option<usize> {
    headers
        .iter()
        .position(|h| h.len() == name.len() && is(name, h.as_bytes()))
}

impl<'a> ChannelSnapshot<'a> {
    /// The bare channel snapshot of `msg`; `None` unless it names both the channel and its
    /// Uniqueid.
    pub(crate) fn read(msg: &'a Message) -> Option<ChannelSnapshot<'a>> {
        let mut slots = [None; 13];
        scan(msg, slots.len(), channel_slot, &mut slots);
        let [
            name,
            state,
            caller_num,
            caller_name,
            connected_num,
            connected_name,
            language,
            account_code,
            context,
            exten,
            priority,
            uniqueid,
            linkedid,
        ] = slots;
        Some(ChannelSnapshot {
            name: Some(name?),
            state,
            caller_num,
            caller_name,
            connected_num,
            connected_name,
            language,
            account_code,
            context,
            exten,
            priority,
            uniqueid: uniqueid.filter(|id| !id.is_empty())?,
            linkedid,
        })
    }
}

/// Slots of a bridge snapshot, in [`BridgeSnapshot`] field order.
const BRIDGE_HEADERS: [&str; 6] = [
    "BridgeUniqueid",
    "BridgeType",
    "BridgeTechnology",
    "BridgeCreator",
    "BridgeName",
    "BridgeVideoSourceMode",
];

impl<'a> BridgeSnapshot<'a> {
    /// The bridge snapshot behind `prefix` (`""`, or `To`/`From` in `BridgeMerge`); `None`
    /// without an id.
    pub(crate) fn read(msg: &'a Message, prefix: &str) -> Option<BridgeSnapshot<'a>> {
        let mut slots = [None; 6];
        let unprefixed = |name: &[u8]| {
            let (head, rest) = name.split_at_checked(prefix.len())?;
            head.eq_ignore_ascii_case(prefix.as_bytes())
                .then(|| slot_of(&BRIDGE_HEADERS, rest))?
        };
        scan(msg, slots.len(), unprefixed, &mut slots);
        let [id, kind, technology, creator, name, video_source_mode] = slots;
        Some(BridgeSnapshot {
            id: id.filter(|id| !id.is_empty())?,
            kind,
            technology,
            creator,
            name,
            video_source_mode,
        })
    }
}

/// What a `Hangup` says: whose, and why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HangupSnapshot<'a> {
    pub uniqueid: &'a [u8],
    pub cause: Option<&'a [u8]>,
    pub cause_text: Option<&'a [u8]>,
}

impl<'a> HangupSnapshot<'a> {
    pub(crate) fn read(msg: &'a Message) -> Option<HangupSnapshot<'a>> {
        let mut slots = [None; 3];
        let names = ["Uniqueid", "Cause", "Cause-txt"];
        scan(msg, slots.len(), |n| slot_of(&names, n), &mut slots);
        let [uniqueid, cause, cause_text] = slots;
        Some(HangupSnapshot {
            uniqueid: uniqueid.filter(|id| !id.is_empty())?,
            cause,
            cause_text,
        })
    }
}
