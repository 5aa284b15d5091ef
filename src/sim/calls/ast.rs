//! Asterisk's numbers under Asterisk's names, so that no bare `6` or `16` stands for a state
//! or a cause elsewhere in the simulator.
//!
//! - Channel states: `enum ast_channel_state` (`include/asterisk/channelstate.h`), texts from
//!   `ast_state2str()` (`main/channel.c`).
//! - Hangup causes: `AST_CAUSE_*` (`include/asterisk/causes.h`), texts from the `causes[]`
//!   table behind `ast_cause2str()` (`main/channel.c`), which says `Unknown` for the rest.
//! - Originate reasons: OriginateResponse's `Reason` is the last control frame of the dialed
//!   channel, an `AST_CONTROL_*` value (`include/asterisk/frame.h`), or 0 when the call never
//!   got that far (ami-protocol.md §4.3).

/// The states a simulated channel takes (a subset of `enum ast_channel_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelState {
    /// `AST_STATE_DOWN`: the calling (`;1`) half of a new Local pair.
    Down = 0,
    /// `AST_STATE_RING`: the dialed (`;2`) half of a new Local pair.
    Ring = 4,
    /// `AST_STATE_RINGING`
    Ringing = 5,
    /// `AST_STATE_UP`
    Up = 6,
}

impl ChannelState {
    /// `ChannelState:` as events write it.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// `ChannelStateDesc:`, `ast_state2str()`.
    pub(crate) fn desc(self) -> &'static str {
        match self {
            ChannelState::Down => "Down",
            ChannelState::Ring => "Ring",
            ChannelState::Ringing => "Ringing",
            ChannelState::Up => "Up",
        }
    }
}

/// A hangup cause. Any number may arrive (the Hangup action's `Cause:`), so this is a number
/// with names for the ones the simulator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cause(pub(crate) u32);

impl Cause {
    /// `AST_CAUSE_NORMAL_CLEARING`
    pub(crate) const NORMAL_CLEARING: Cause = Cause(16);
    /// `AST_CAUSE_USER_BUSY`
    pub(crate) const USER_BUSY: Cause = Cause(17);
    /// `AST_CAUSE_NO_USER_RESPONSE`
    pub(crate) const NO_USER_RESPONSE: Cause = Cause(18);
    /// `AST_CAUSE_NO_ANSWER`: an Originate that times out.
    pub(crate) const NO_ANSWER: Cause = Cause(19);

    /// `Cause-txt:`, `ast_cause2str()`.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Cause::NORMAL_CLEARING => "Normal Clearing",
            Cause::USER_BUSY => "User busy",
            Cause::NO_USER_RESPONSE => "No user responding",
            Cause::NO_ANSWER => "User alerting, no answer",
            _ => "Unknown",
        }
    }
}

/// OriginateResponse's `Reason:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OriginateReason {
    /// No control frame: the channel could not be created or never rang.
    Failed = 0,
    /// `AST_CONTROL_HANGUP`: the dialed side hung up before answering.
    Hangup = 1,
    /// `AST_CONTROL_RINGING`: it rang until the Originate's timeout.
    Ringing = 3,
    /// `AST_CONTROL_ANSWER`
    Answer = 4,
}

impl OriginateReason {
    pub(crate) fn code(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_texts_follow_asterisk_causes_table() {
        assert_eq!(Cause(16).text(), "Normal Clearing");
        assert_eq!(Cause(18).text(), "No user responding");
        assert_eq!(Cause(19).text(), "User alerting, no answer");
        assert_eq!(Cause(0).text(), "Unknown");
    }

    #[test]
    fn channel_states_carry_asterisk_numbers() {
        let states = [
            ChannelState::Down,
            ChannelState::Ring,
            ChannelState::Ringing,
            ChannelState::Up,
        ];
        let codes: Vec<(u8, &str)> = states.iter().map(|s| (s.code(), s.desc())).collect();
        assert_eq!(codes, [(0, "Down"), (4, "Ring"), (5, "Ringing"), (6, "Up")]);
    }
}
