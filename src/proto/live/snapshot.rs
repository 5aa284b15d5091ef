//! Reading the channel and bridge snapshots that Asterisk 12 and later put in their events and list
//! items: a fixed set of headers, bare (`Channel`, `Uniqueid`, …) or behind a prefix (`DestChannel`,
//! `LocalOneUniqueid`, `ToBridgeUniqueid`, …). One pass over the headers, values borrowed.

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

/// The header name without `prefix` (ASCII case-insensitive), if it starts with it.
fn strip_prefix<'n>(name: &'n [u8], prefix: &str) -> Option<&'n [u8]> {
    let (head, rest) = name.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes()).then_some(rest)
}

/// Sets `slot` once: the first of repeated headers wins, as everywhere in amiwire.
fn fill<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8]) {
    slot.get_or_insert(value);
}

impl<'a> ChannelSnapshot<'a> {
    /// The channel snapshot behind `prefix` (`""` for the bare one); `None` unless it names both
    /// the channel and its Uniqueid (a `Cdr`'s `Channel`/`UniqueID` pair is not a snapshot, but
    /// such events are never read as one).
    pub(crate) fn read(msg: &'a Message, prefix: &str) -> Option<ChannelSnapshot<'a>> {
        let mut snap = ChannelSnapshot::default();
        let mut uniqueid = None;
        for header in msg.headers() {
            let Some(field) = strip_prefix(header.name, prefix) else {
                continue;
            };
            let value = header.value;
            // Dispatch on the length first: most headers are rejected by one integer compare.
            let slot = match field.len() {
                5 if field.eq_ignore_ascii_case(b"Exten") => &mut snap.exten,
                7 if field.eq_ignore_ascii_case(b"Channel") => &mut snap.name,
                7 if field.eq_ignore_ascii_case(b"Context") => &mut snap.context,
                8 if field.eq_ignore_ascii_case(b"Uniqueid") => &mut uniqueid,
                8 if field.eq_ignore_ascii_case(b"Linkedid") => &mut snap.linkedid,
                8 if field.eq_ignore_ascii_case(b"Language") => &mut snap.language,
                8 if field.eq_ignore_ascii_case(b"Priority") => &mut snap.priority,
                11 if field.eq_ignore_ascii_case(b"CallerIDNum") => &mut snap.caller_num,
                11 if field.eq_ignore_ascii_case(b"AccountCode") => &mut snap.account_code,
                12 if field.eq_ignore_ascii_case(b"ChannelState") => &mut snap.state,
                12 if field.eq_ignore_ascii_case(b"CallerIDName") => &mut snap.caller_name,
                16 if field.eq_ignore_ascii_case(b"ConnectedLineNum") => &mut snap.connected_num,
                17 if field.eq_ignore_ascii_case(b"ConnectedLineName") => &mut snap.connected_name,
                _ => continue,
            };
            fill(slot, value);
        }
        snap.uniqueid = uniqueid.filter(|id| !id.is_empty())?;
        snap.name.is_some().then_some(snap)
    }
}

impl<'a> BridgeSnapshot<'a> {
    /// The bridge snapshot behind `prefix` (`Bridge`, `ToBridge`, `FromBridge`); `None` without an id.
    pub(crate) fn read(msg: &'a Message, prefix: &str) -> Option<BridgeSnapshot<'a>> {
        let mut snap = BridgeSnapshot::default();
        let mut id = None;
        for header in msg.headers() {
            let Some(field) = strip_prefix(header.name, prefix) else {
                continue;
            };
            let slot = match field.len() {
                4 if field.eq_ignore_ascii_case(b"Type") => &mut snap.kind,
                4 if field.eq_ignore_ascii_case(b"Name") => &mut snap.name,
                7 if field.eq_ignore_ascii_case(b"Creator") => &mut snap.creator,
                8 if field.eq_ignore_ascii_case(b"Uniqueid") => &mut id,
                10 if field.eq_ignore_ascii_case(b"Technology") => &mut snap.technology,
                15 if field.eq_ignore_ascii_case(b"VideoSourceMode") => &mut snap.video_source_mode,
                _ => continue,
            };
            fill(slot, header.value);
        }
        snap.id = id.filter(|id| !id.is_empty())?;
        Some(snap)
    }
}
