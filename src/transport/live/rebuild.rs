//! The rebuild task: asks the PBX for its channels and bridges through the client's own command
//! queue (so the actions are ordinary actions: one deadline each, failed if the session ends)
//! and hands the answers to the live state.

use std::sync::Arc;
use std::time::Duration;

use log::warn;
use tokio::sync::{mpsc, oneshot};

use super::{Finished, Lists, Live};
use crate::error::{Error, Result};
use crate::proto::{Action, Expect, Message, Outcome};
use crate::transport::command::{Command, Reply, Request};
use crate::transport::shared::Shared;

/// Rebuilds the live state for the session that just opened (rebuild `generation`, begun
/// before the session served its first event). The first lists are asked before this returns,
/// so that they leave ahead of any action sent once the session is announced: the state is
/// then rebuilt before that action's answer arrives.
pub(crate) fn start(live: Arc<Live>, shared: Arc<Shared>, generation: u64, timeout: Duration) {
    let first = live
        .commands
        .upgrade()
        .map(|tx| ask_first(&shared, &tx, timeout));
    tokio::spawn(rebuild(live, shared, generation, timeout, first));
}

async fn rebuild(
    live: Arc<Live>,
    shared: Arc<Shared>,
    generation: u64,
    timeout: Duration,
    mut first: Option<Result<Vec<Answer>>>,
) {
    loop {
        let Some(tx) = live.commands.upgrade() else {
            return;
        };
        let asked = first
            .take()
            .unwrap_or_else(|| ask_first(&shared, &tx, timeout));
        let lists = match ask_lists(&shared, &tx, asked, timeout).await {
            Ok(lists) => lists,
            // The session ended: the next one begins its own rebuild.
            Err(Error::ConnectionLost { .. } | Error::Closed { .. }) => return,
            Err(e) => {
                warn!("amiwire: live state not rebuilt from the PBX's lists: {e}");
                if live.abandon_rebuild(generation, e.to_string()) {
                    shared.wake();
                }
                return;
            }
        };
        match live.finish_rebuild(generation, &lists) {
            Finished::Done => {
                shared.wake();
                return;
            }
            Finished::Stale => return,
            Finished::AskAgain => {}
        }
    }
}

/// The lists every rebuild starts with.
fn ask_first(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Command>,
    timeout: Duration,
) -> Result<Vec<Answer>> {
    let lists = vec![Action::new("CoreShowChannels"), Action::new("BridgeList")];
    ask(shared, tx, lists, timeout)
}

/// The answers to `ask_first`, then each bridge's members.
async fn ask_lists(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Command>,
    asked: Result<Vec<Answer>>,
    timeout: Duration,
) -> Result<Lists> {
    let mut answers = asked?;
    let bridges = answers
        .pop()
        .ok_or_else(missing)?
        .await
        .map_err(|_| missing())??;
    let channels = answers
        .pop()
        .ok_or_else(missing)?
        .await
        .map_err(|_| missing())??;
    let infos = bridges
        .events
        .iter()
        .filter_map(|item| item.get("BridgeUniqueid"))
        .map(|id| Action::new("BridgeInfo").header("BridgeUniqueid", id.into_owned()))
        .collect();
    let mut members = Vec::new();
    for answer in ask(shared, tx, infos, timeout)? {
        match answer.await.map_err(|_| missing())? {
            Ok(outcome) => members.push(items(outcome)),
            // The bridge ended between the two answers: its events say so.
            Err(Error::ActionFailed { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Lists {
        channels: channels.events,
        bridges: bridges.events,
        members,
    })
}

/// A list's items followed by its completion event (which names a `BridgeInfo`'s bridge).
fn items(outcome: Outcome) -> Vec<Message> {
    let mut items = outcome.events;
    items.extend(outcome.complete);
    items
}

type Answer = oneshot::Receiver<Result<Outcome>>;

/// Sends `actions` in one batch, the way the handles send theirs (so that they leave in the
/// order they were asked); their answers, in order.
fn ask(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Command>,
    actions: Vec<Action>,
    timeout: Duration,
) -> Result<Vec<Answer>> {
    let (requests, answers): (Vec<Request>, Vec<Answer>) = actions
        .into_iter()
        .map(|action| {
            let (reply, answer) = oneshot::channel();
            let request = Request {
                action,
                expect: Expect::Auto,
                timeout: Some(timeout),
                reply: Reply::Oneshot(reply),
            };
            (request, answer)
        })
        .unzip();
    if requests.is_empty() {
        return Ok(answers);
    }
    shared
        .send_requests(tx, requests)
        .map_err(|_| Error::Closed {
            reason: "the client closed".into(),
        })?;
    Ok(answers)
}

fn missing() -> Error {
    Error::Closed {
        reason: "the connection ended before the PBX's lists arrived".into(),
    }
}
