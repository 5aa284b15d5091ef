//! The load mode ([`crate::sim::SimConfig::load_calls`]): N calls in progress at every moment,
//! each one placed, ringing, answered, bridged and hung up like the recording's bridged call
//! (`tcp-live-state-calls.jsonl`, 600 dialing 500), and replaced by a new one as it ends.
//!
//! A call is an Originate of `Local/1000@amiwire-load` whose `;1` half, once answered, waits
//! out the call's talk time and hangs up (cause 16), which clears the Dial bridge and the
//! dialed pair behind it. The load dialplan context is added to the configured one. The calls
//! in progress are bounded by a semaphore whose permit every channel of a call shares (its
//! [`CallToken`]): the permit, and a new call, come back when the call's last channel is gone.
//! The first N calls are placed evenly over one call duration, as a PBX fills up: N placed at
//! once would be a burst no PBX sends (10,000 calls are some 220,000 events in a second).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::model::CallToken;
use super::originate::{OriginateReq, originate};
use crate::sim::core::{Core, stopped};
use crate::sim::dialplan::Dialplan;

/// The dialplan context load calls run in.
pub(crate) const CONTEXT: &str = "amiwire-load";

/// The load context: `1000` dials `2000`, which rings for `ring` seconds, answers and stays
/// up (Echo) until the caller hangs up.
pub(crate) fn context_text(ring: f64) -> String {
    format!(
        "[{CONTEXT}]\n\
         exten => 1000,1,NoOp(amiwire load call)\n \
         same => n,Dial(Local/2000@{CONTEXT})\n \
         same => n,Hangup()\n\
         exten => 2000,1,Ringing()\n \
         same => n,Wait({ring})\n \
         same => n,Answer()\n \
         same => n,Echo()\n \
         same => n,Hangup()\n"
    )
}

/// Adds the load context to a dialplan (a configured context of that name is replaced).
pub(crate) fn with_context(mut plan: Dialplan, duration: Duration) -> Dialplan {
    let load = Dialplan::parse("amiwire-load.conf", &context_text(ring_secs(duration)));
    plan.contexts.retain(|c| c.name != CONTEXT);
    plan.contexts.extend(load.contexts);
    plan
}

/// A call rings for a fifth of the configured duration.
fn ring_secs(duration: Duration) -> f64 {
    duration.as_secs_f64() / 5.0
}

/// Calls placed and ended by the load mode, and the switch that stops placing them.
#[derive(Clone)]
pub(crate) struct Load {
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Counts {
    started: AtomicU64,
    ended: AtomicU64,
}

/// What every channel of one load call holds: the call's place among the N, and the count
/// of ended calls it adds to when its last holder goes.
struct Slot {
    _permit: OwnedSemaphorePermit,
    counts: Arc<Counts>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.ended.fetch_add(1, Ordering::Relaxed);
    }
}

impl Load {
    /// Starts keeping `calls` calls of about `duration` (PBX time, before `time_scale`) going.
    pub(crate) fn start(core: &Arc<Core>, calls: usize, duration: Duration) -> Load {
        let (stop, stop_rx) = watch::channel(false);
        let load = Load {
            counts: Arc::new(Counts::default()),
            stop,
        };
        tokio::spawn(run(
            core.clone(),
            calls,
            duration,
            load.counts.clone(),
            stop_rx,
        ));
        load
    }

    pub(crate) fn started(&self) -> u64 {
        self.counts.started.load(Ordering::Relaxed)
    }

    pub(crate) fn ended(&self) -> u64 {
        self.counts.ended.load(Ordering::Relaxed)
    }

    /// Places no new call; those in progress run to their end.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn run(
    core: Arc<Core>,
    calls: usize,
    duration: Duration,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    let places = Arc::new(Semaphore::new(calls));
    let mut shutdown = core.shutdown.clone();
    let ramp =
        core.scaled(duration.as_secs_f64()) / u32::try_from(calls.max(1)).unwrap_or(u32::MAX);
    let mut ramping = calls;
    loop {
        if ramping > 0 {
            ramping -= 1;
            tokio::select! {
                _ = tokio::time::sleep(ramp) => {}
                _ = stopped(&mut stop) => return,
                _ = stopped(&mut shutdown) => return,
            }
        }
        let permit = tokio::select! {
            p = places.clone().acquire_owned() => p,
            _ = stopped(&mut stop) => return,
            _ = stopped(&mut shutdown) => return,
        };
        let Ok(permit) = permit else {
            return;
        };
        counts.started.fetch_add(1, Ordering::Relaxed);
        let token: CallToken = Arc::new(Slot {
            _permit: permit,
            counts: counts.clone(),
        });
        let core = core.clone();
        tokio::spawn(async move {
            originate(&core, request(&core, duration, token)).await;
        });
    }
}

/// One load call: talk time between half and one and a half times the configured duration
/// (so that calls end spread out), after the ring.
fn request(core: &Core, duration: Duration, token: CallToken) -> OriginateReq {
    let talk = duration.as_secs_f64() * (0.5 + fastrand::f64());
    let ring = ring_secs(duration);
    OriginateReq {
        channel: format!("Local/1000@{CONTEXT}"),
        application: Some("Wait".into()),
        data: format!("{talk:.3}"),
        // Well past the ring, so that a busy machine does not turn a call into a timeout.
        timeout: core.scaled(ring * 2.0 + 30.0),
        token: Some(token),
        ..OriginateReq::default()
    }
}
