//! What the live view holds: channels, bridges and calls, each immutable once published.
//!
//! Strings are [`Text`] (24 bytes, inline up to 24 bytes, else on the heap): a live channel with
//! ordinary values costs about 0.4 KB (see `Channel::memory_size`). Values are kept as the PBX sent them,
//! `<unknown>` included, so that they compare equal to its own lists.

use std::sync::Arc;
use std::time::SystemTime;

use bitflags::bitflags;

/// A string of the view: inline up to 24 bytes.
pub type Text = compact_str::CompactString;

/// A map of the view: key (Uniqueid, bridge id or Linkedid) to an immutable entry.
pub type Map<T> = imbl::GenericHashMap<
    Text,
    Arc<T>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// A channel state as Asterisk numbers it (`ChannelState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChannelState(pub u8);

impl ChannelState {
    pub const DOWN: ChannelState = ChannelState(0);
    pub const RING: ChannelState = ChannelState(4);
    pub const RINGING: ChannelState = ChannelState(5);
    pub const UP: ChannelState = ChannelState(6);

    /// The `ChannelStateDesc` text Asterisk sends with this state (`ast_state2str`).
    pub fn description(self) -> &'static str {
        match self.0 {
            0 => "Down",
            1 => "Rsrvd",
            2 => "OffHook",
            3 => "Dialing",
            4 => "Ring",
            5 => "Ringing",
            6 => "Up",
            7 => "Busy",
            8 => "Dialing Offhook",
            9 => "Pre-ring",
            _ => "Unknown",
        }
    }
}

/// A number and a name, as in caller ID and connected line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Party {
    pub number: Text,
    pub name: Text,
}

/// One live channel.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Channel {
    pub uniqueid: Text,
    pub name: Text,
    pub linkedid: Text,
    pub state: ChannelState,
    pub caller_id: Party,
    pub connected_line: Party,
    pub language: Text,
    pub account_code: Text,
    pub context: Text,
    pub exten: Text,
    pub priority: u32,
    /// The id of the bridge the channel is in.
    pub bridge: Option<Text>,
    /// For a Local channel, the Uniqueid of its other half (`;1` ↔ `;2`).
    pub local_peer: Option<Text>,
    /// When amiwire first saw the channel (for channels found by a rebuild: the PBX's own duration
    /// counted back from the moment the list was read).
    pub created_at: SystemTime,
    /// Channel variables from `VarSet`/`ChanVariable`, in first-set order; empty unless opted in.
    pub variables: Vec<(Text, Text)>,
}

bitflags! {
    /// Which fields of a channel an update changed.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ChannelFields: u16 {
        const NAME = 1 << 0;
        const LINKEDID = 1 << 1;
        const STATE = 1 << 2;
        const CALLER_ID = 1 << 3;
        const CONNECTED_LINE = 1 << 4;
        const LANGUAGE = 1 << 5;
        const ACCOUNT_CODE = 1 << 6;
        /// Context, exten or priority.
        const DIALPLAN = 1 << 7;
        const BRIDGE = 1 << 8;
        const LOCAL_PEER = 1 << 9;
        const VARIABLES = 1 << 10;
    }
}

impl Channel {
    pub(crate) fn new(uniqueid: Text, created_at: SystemTime) -> Channel {
        Channel {
            linkedid: uniqueid.clone(),
            uniqueid,
            name: Text::default(),
            state: ChannelState::default(),
            caller_id: Party::default(),
            connected_line: Party::default(),
            language: Text::default(),
            account_code: Text::default(),
            context: Text::default(),
            exten: Text::default(),
            priority: 0,
            bridge: None,
            local_peer: None,
            created_at,
            variables: Vec::new(),
        }
    }

    /// The fields in which `other` differs from `self` (creation time aside: it never changes).
    pub fn fields_changed(&self, other: &Channel) -> ChannelFields {
        let mut fields = ChannelFields::empty();
        let mut mark = |differs: bool, field| fields.set(field, differs);
        mark(self.name != other.name, ChannelFields::NAME);
        mark(self.linkedid != other.linkedid, ChannelFields::LINKEDID);
        mark(self.state != other.state, ChannelFields::STATE);
        mark(self.caller_id != other.caller_id, ChannelFields::CALLER_ID);
        mark(
            self.connected_line != other.connected_line,
            ChannelFields::CONNECTED_LINE,
        );
        mark(self.language != other.language, ChannelFields::LANGUAGE);
        mark(
            self.account_code != other.account_code,
            ChannelFields::ACCOUNT_CODE,
        );
        mark(
            (&self.context, &self.exten, self.priority)
                != (&other.context, &other.exten, other.priority),
            ChannelFields::DIALPLAN,
        );
        mark(self.bridge != other.bridge, ChannelFields::BRIDGE);
        mark(
            self.local_peer != other.local_peer,
            ChannelFields::LOCAL_PEER,
        );
        mark(self.variables != other.variables, ChannelFields::VARIABLES);
        fields
    }

    /// Bytes this channel costs: the struct plus the heap its strings and variables own (a
    /// string of up to 24 bytes lives inside the struct).
    pub fn memory_size(&self) -> usize {
        let strings = [
            &self.uniqueid,
            &self.name,
            &self.linkedid,
            &self.caller_id.number,
            &self.caller_id.name,
            &self.connected_line.number,
            &self.connected_line.name,
            &self.language,
            &self.account_code,
            &self.context,
            &self.exten,
        ];
        let optional = [&self.bridge, &self.local_peer];
        let variables = self.variables.iter().flat_map(|(k, v)| [k, v]);
        let heap = strings
            .into_iter()
            .chain(optional.into_iter().flatten())
            .chain(variables)
            .filter(|s| s.is_heap_allocated())
            .map(Text::capacity)
            .sum::<usize>();
        std::mem::size_of::<Channel>()
            + heap
            + self.variables.capacity() * std::mem::size_of::<(Text, Text)>()
    }
}

/// One live bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Bridge {
    pub id: Text,
    /// `BridgeType` (`basic`, `holding`, …).
    pub kind: Text,
    pub technology: Text,
    pub creator: Text,
    pub name: Text,
    pub video_source_mode: Text,
    /// Uniqueids of the channels in the bridge, in the order they entered.
    pub members: Vec<Text>,
}

bitflags! {
    /// Which fields of a bridge an update changed.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BridgeFields: u8 {
        const KIND = 1 << 0;
        const TECHNOLOGY = 1 << 1;
        const CREATOR = 1 << 2;
        const NAME = 1 << 3;
        const VIDEO_SOURCE_MODE = 1 << 4;
        const MEMBERS = 1 << 5;
    }
}

impl Bridge {
    pub(crate) fn new(id: Text) -> Bridge {
        Bridge {
            id,
            kind: Text::default(),
            technology: Text::default(),
            creator: Text::default(),
            name: Text::default(),
            video_source_mode: Text::default(),
            members: Vec::new(),
        }
    }

    /// The fields in which `other` differs from `self`.
    pub fn fields_changed(&self, other: &Bridge) -> BridgeFields {
        let mut fields = BridgeFields::empty();
        let mut mark = |differs: bool, field| fields.set(field, differs);
        mark(self.kind != other.kind, BridgeFields::KIND);
        mark(
            self.technology != other.technology,
            BridgeFields::TECHNOLOGY,
        );
        mark(self.creator != other.creator, BridgeFields::CREATOR);
        mark(self.name != other.name, BridgeFields::NAME);
        mark(
            self.video_source_mode != other.video_source_mode,
            BridgeFields::VIDEO_SOURCE_MODE,
        );
        mark(self.members != other.members, BridgeFields::MEMBERS);
        fields
    }
}

/// One call: the channels that share a Linkedid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call {
    pub linkedid: Text,
    /// Uniqueids of its live channels, in the order they joined the call.
    pub channels: Vec<Text>,
}

/// Why a channel left the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HangupCause {
    /// Asterisk's (Q.850) cause code, `Cause`.
    pub code: u16,
    /// `Cause-txt`.
    pub text: Text,
}

/// One change to the view.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    ChannelAdded(Arc<Channel>),
    ChannelChanged {
        channel: Arc<Channel>,
        fields: ChannelFields,
    },
    /// `cause` is `None` when the channel went without a `Hangup` amiwire saw (gone during a gap).
    ChannelRemoved {
        channel: Arc<Channel>,
        cause: Option<HangupCause>,
    },
    BridgeAdded(Arc<Bridge>),
    BridgeChanged {
        bridge: Arc<Bridge>,
        fields: BridgeFields,
    },
    BridgeRemoved(Arc<Bridge>),
    CallAdded(Arc<Call>),
    /// Its channel list changed.
    CallChanged(Arc<Call>),
    CallRemoved(Arc<Call>),
}

impl Change {
    /// The call a change belongs to: its channel's or its own Linkedid (a bridge belongs to
    /// none: its members may come from several calls).
    pub fn linkedid(&self) -> Option<&str> {
        match self {
            Change::ChannelAdded(c)
            | Change::ChannelChanged { channel: c, .. }
            | Change::ChannelRemoved { channel: c, .. } => Some(&c.linkedid),
            Change::CallAdded(c) | Change::CallChanged(c) | Change::CallRemoved(c) => {
                Some(&c.linkedid)
            }
            Change::BridgeAdded(_) | Change::BridgeChanged { .. } | Change::BridgeRemoved(_) => {
                None
            }
        }
    }
}

/// A consistent, read-only copy of the live state. Cloning is O(1) (persistent maps that share
/// structure with the state machine's own), and later events never change a view already taken.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub(crate) channels: Map<Channel>,
    pub(crate) bridges: Map<Bridge>,
    pub(crate) calls: Map<Call>,
    pub(crate) version: u64,
}

impl View {
    /// Live channels by Uniqueid.
    pub fn channels(&self) -> &Map<Channel> {
        &self.channels
    }

    /// Live bridges by id.
    pub fn bridges(&self) -> &Map<Bridge> {
        &self.bridges
    }

    /// Calls in progress by Linkedid.
    pub fn calls(&self) -> &Map<Call> {
        &self.calls
    }

    pub fn channel(&self, uniqueid: &str) -> Option<&Arc<Channel>> {
        self.channels.get(uniqueid)
    }

    pub fn bridge(&self, id: &str) -> Option<&Arc<Bridge>> {
        self.bridges.get(id)
    }

    pub fn call(&self, linkedid: &str) -> Option<&Arc<Call>> {
        self.calls.get(linkedid)
    }

    /// Grows by one with every change set that was not empty: two views with the same version
    /// are the same.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.bridges.is_empty() && self.calls.is_empty()
    }
}
