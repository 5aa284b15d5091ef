//! Which documented AMI event a message is: a number into the list of events Asterisk 13 and
//! 22 document (`documented_events.rs`, generated from their AMI schema), decided once when a
//! message is decoded. A consumer (the Python layer's typed event classes) then indexes its
//! own table by that number instead of reading and looking up the name again.

/// Every documented event name, in the order [`EventType::index`] counts.
pub use super::documented_events::EVENT_NAMES;

/// Slots of the name table: a power of two well above the ~190 documented events, so that
/// probes are short.
const TABLE_BITS: u32 = 11;
const MASK: usize = (1 << TABLE_BITS) - 1;
/// Set in an [`EventType`] whose wire spelling differs from the documented one (`Newexten`).
const RESPELLED: u16 = 0x8000;

const _: () = assert!(EVENT_NAMES.len() < (1 << TABLE_BITS) / 2);

/// A documented event's 1-based position in the generated list (0: not documented), with
/// [`RESPELLED`] when the wire spells the name otherwise than the docs. Two bytes, so that
/// it fits in `Message`'s padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventType(u16);

/// A name's first and last 8 bytes (see [`ends`]) and its length: equal for two names of up
/// to 16 bytes exactly when the names are, and, lower-cased, exactly when they match ASCII
/// case-insensitively; so most names are compared in three integer comparisons (this runs
/// for every decoded event).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    head: u64,
    tail: u64,
    len: usize,
}

/// The first and the last 8 bytes (overlapping, or the whole zero-padded slice when shorter)
/// as integers: plain loads, not a `memcpy` call. `const` for the documented events' table; the
/// Python layer's string cache hashes names with it too.
pub const fn ends(bytes: &[u8]) -> (u64, u64) {
    match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        // 4 to 7 bytes: two overlapping 4-byte loads (most event names), not a byte loop.
        _ if bytes.len() >= 4 => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(low), Some(high)) => {
                let low = u32::from_le_bytes(*low) as u64;
                let high = u32::from_le_bytes(*high) as u64;
                let word = low | (high << ((bytes.len() - 4) * 8));
                (word, word)
            }
            _ => (0, 0),
        },
        _ => {
            let mut word = 0;
            let mut rest = bytes;
            while let Some((&last, before)) = rest.split_last() {
                word = (word << 8) | last as u64;
                rest = before;
            }
            (word, word)
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// ASCII lower case of 8 bytes at once (SWAR): only `A`..=`Z` change. Adding to the low
/// seven bits of a byte never carries into the next byte, so each byte is tested alone.
const fn lower(word: u64) -> u64 {
    let low7 = word & !HIGHS;
    let at_least_a = low7 + ONES * (0x80 - b'A' as u64);
    let above_z = low7 + ONES * (0x80 - b'Z' as u64 - 1);
    let upper = at_least_a & !above_z & !word & HIGHS;
    word | (upper >> 2)
}

impl Key {
    const fn of(name: &[u8]) -> Key {
        let (head, tail) = ends(name);
        Key {
            head,
            tail,
            len: name.len(),
        }
    }

    const fn lowered(self) -> Key {
        Key {
            head: lower(self.head),
            tail: lower(self.tail),
            len: self.len,
        }
    }

    /// Where the name's probe starts: the same for every case of a name, as its bytes are
    /// hashed with bit 0x20 set (where a letter differs from its other case), which is
    /// cheaper than lowering them first.
    const fn start(self) -> usize {
        const FOLD: u64 = 0x2020_2020_2020_2020;
        let hash = ((self.head | FOLD) ^ (self.tail | FOLD).rotate_left(29) ^ self.len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (hash >> (64 - TABLE_BITS)) as usize
    }
}

/// Each documented name's key as documented, by position (the names' own bytes are only
/// read for the rare name over 16 bytes).
static KEYS: [Key; EVENT_NAMES.len()] = {
    let mut keys = [Key::of(b""); EVENT_NAMES.len()];
    let mut n = 0;
    while n < EVENT_NAMES.len() {
        keys[n] = Key::of(EVENT_NAMES[n].as_bytes());
        n += 1;
    }
    keys
};

/// Open addressing on the case-folded key: position + 1 of each documented name, 0 for an empty
/// slot. 1 KB, so that it stays in cache beside the stream being decoded.
static SLOTS: [u16; 1 << TABLE_BITS] = {
    let mut slots = [0; 1 << TABLE_BITS];
    let mut n = 0;
    while n < EVENT_NAMES.len() {
        let mut i = KEYS[n].start();
        while slots[i] != 0 {
            i = (i + 1) & MASK;
        }
        slots[i] = n as u16 + 1;
        n += 1;
    }
    slots
};

impl EventType {
    /// Not a documented event (or not an event).
    pub const UNDOCUMENTED: EventType = EventType(0);

    /// The documented event named `name` (`Event:` value), matched ASCII case-insensitively
    /// as Asterisk does (the docs say `NewExten`, the wire says `Newexten`).
    pub fn of(name: &[u8]) -> EventType {
        let wanted = Key::of(name);
        let mut i = wanted.start();
        loop {
            let position = SLOTS.get(i).copied().unwrap_or_default();
            let index = usize::from(position).checked_sub(1);
            let Some(&known) = index.and_then(|n| KEYS.get(n)) else {
                return EventType::UNDOCUMENTED;
            };
            // Longer names can differ in the middle, which the key does not cover.
            let documented = || {
                index
                    .and_then(|n| EVENT_NAMES.get(n))
                    .map_or(&b""[..], |n| n.as_bytes())
            };
            // Spelled as documented (most events), else in another case (`Newexten`).
            if known == wanted && (name.len() <= 16 || documented() == name) {
                return EventType(position);
            }
            if known.lowered() == wanted.lowered()
                && (name.len() <= 16 || documented().eq_ignore_ascii_case(name))
            {
                return EventType(position | RESPELLED);
            }
            i = (i + 1) & MASK;
        }
    }

    /// The event's position in [`EVENT_NAMES`] order (which the generated consumers share),
    /// or `None` for an undocumented one.
    pub fn index(self) -> Option<usize> {
        usize::from(self.0 & !RESPELLED).checked_sub(1)
    }

    /// The event's name as documented, matched case-insensitively on the wire.
    pub fn documented_name(self) -> Option<&'static str> {
        EVENT_NAMES.get(self.index()?).copied()
    }

    /// A documented event whose `Event:` value is spelled exactly as documented (so the
    /// documented name can stand for the wire's).
    pub fn spelled_as_documented(self) -> bool {
        self.0 != 0 && self.0 & RESPELLED == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_finds_itself_in_any_case() {
        for (index, name) in EVENT_NAMES.iter().enumerate() {
            let exact = EventType::of(name.as_bytes());
            assert_eq!(exact.index(), Some(index), "{name}");
            assert!(exact.spelled_as_documented(), "{name}");
            assert_eq!(exact.documented_name(), Some(*name));
            let lower = EventType::of(name.to_ascii_lowercase().as_bytes());
            assert_eq!(lower.index(), Some(index), "{name}");
            assert_eq!(
                lower.spelled_as_documented(),
                name.bytes().all(|b| !b.is_ascii_uppercase()),
                "{name}"
            );
        }
    }

    #[test]
    fn the_decoder_names_the_first_event_line_wherever_it_is() {
        let stream = b"Event: Newexten\r\nA: b\r\n\r\n\
            Response: Success\r\nActionID: 1\r\nEvent: OriginateResponse\r\nEvent: Hangup\r\n\r\n\
            Response: Success\r\n\r\n\
            Event: MyOwn\r\n\r\n\
            Privilege: call,all\nEvent: hangup\n\n";
        let (_, messages) = crate::proto::decode_all(stream);
        let types: Vec<_> = messages
            .iter()
            .flatten()
            .map(|m| {
                let t = m.event_type();
                (t.documented_name(), t.spelled_as_documented())
            })
            .collect();
        assert_eq!(
            types,
            [
                (Some("NewExten"), false),
                (Some("OriginateResponse"), true),
                (None, false),
                (None, false),
                (Some("Hangup"), false),
            ]
        );
    }

    #[test]
    fn lower_changes_only_ascii_capitals() {
        let all: Vec<u8> = (0..=255).collect();
        for chunk in all.chunks(8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let expected: Vec<u8> = chunk.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(lower(word).to_le_bytes().to_vec(), expected);
        }
    }

    #[test]
    fn undocumented_names_are_not_typed() {
        for name in [
            "UserEventX",
            "",
            "Hangupp",
            "Hangu",
            "MyModuleEvent",
            "Newexten2",
        ] {
            let t = EventType::of(name.as_bytes());
            assert!(EVENT_NAMES.iter().all(|n| !n.eq_ignore_ascii_case(name)));
            assert_eq!(t, EventType::UNDOCUMENTED, "{name}");
            assert_eq!(t.index(), None);
            assert!(!t.spelled_as_documented());
        }
    }
}
