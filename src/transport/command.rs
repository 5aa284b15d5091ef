//! What a handle sends its driver: actions (each with where its result goes), cancels and
//! the close.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::Result;
use crate::proto::live::View;
use crate::proto::{Action, Expect, Outcome};

/// Where an action's result goes.
pub enum Reply {
    Oneshot(oneshot::Sender<Result<Outcome>>),
    /// Pushed to the completion queue under this token; the waker is poked when the queue
    /// turns non-empty (the Python side resolves its future on the loop thread).
    Queued(u64),
    /// The driver's own keepalive Ping.
    Keepalive,
    /// With the live view as of the point in the stream where the answer completed (`None`
    /// without live state, or while it is being rebuilt): over TCP the two describe the same
    /// moment of the PBX, which is what a check of the state against its own lists needs.
    Probe(oneshot::Sender<(Result<Outcome>, Option<View>)>),
}

impl Reply {
    pub(super) fn gone(&self) -> bool {
        match self {
            Reply::Oneshot(tx) => tx.is_closed(),
            Reply::Probe(tx) => tx.is_closed(),
            Reply::Queued(_) | Reply::Keepalive => false,
        }
    }
}

pub struct Request {
    pub action: Action,
    pub expect: Expect,
    pub timeout: Option<Duration>,
    pub reply: Reply,
}

pub(super) enum Command {
    /// One or more actions, in order: a batch costs the driver one wake-up.
    Actions(Vec<Request>),
    Cancel(u64),
    Close(Reply),
}
