//! The connection's state and its recent changes, kept for a loop that wakes late.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Reconnecting,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Reconnecting => "reconnecting",
            State::Closed => "closed",
        }
    }
}

/// One change of connection state; `seq` counts changes from 1.
#[derive(Clone, Debug)]
pub struct Transition {
    pub seq: u64,
    pub state: State,
    pub reason: Option<String>,
}

/// How many recent transitions are kept for a loop that wakes late: enough for every change
/// of a reconnect storm between two wake-ups of a busy loop, bounded all the same.
const RECENT_TRANSITIONS: usize = 32;

pub(super) struct StateLog {
    pub(super) current: State,
    pub(super) reason: Option<String>,
    pub(super) changes: u64,
    pub(super) recent: VecDeque<Transition>,
}

impl Default for StateLog {
    fn default() -> Self {
        StateLog {
            current: State::Connecting,
            reason: None,
            changes: 0,
            recent: VecDeque::with_capacity(RECENT_TRANSITIONS),
        }
    }
}

impl StateLog {
    pub(super) fn record(&mut self, state: State, reason: Option<String>) {
        self.changes += 1;
        if self.recent.len() == RECENT_TRANSITIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(Transition {
            seq: self.changes,
            state,
            reason: reason.clone(),
        });
        self.reason = reason;
        self.current = state;
    }
}
