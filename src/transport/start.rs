//! Starting a client: the handle and its driver task, supervised so that a driver that dies
//! fails every action it still owed instead of leaving it waiting.

use std::sync::Arc;

use log::warn;
use tokio::sync::{mpsc, oneshot};

use super::client::Client;
use super::command::{Command, Reply};
use super::events::Wake;
use super::http::AjamDriver;
use super::options::Options;
use super::shared::Shared;
use super::supervisor::{Link, supervise};
use super::tcp::Tcp;
use crate::error::{Error, Result};

impl Client {
    /// Connects and logs in, returning once the session is ready.
    pub async fn connect(options: Options) -> Result<Client> {
        let (tx, rx) = oneshot::channel();
        let client = Client::spawn(
            options,
            Reply::Oneshot(tx),
            None,
            &tokio::runtime::Handle::current(),
        );
        match rx.await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal(
                "the connection task ended without answering".into(),
            )),
        }
    }

    /// Starts the driver on `runtime`; `ready` learns whether the first login worked (its
    /// outcome is a synthetic login response). The waker is installed before the driver
    /// starts, so not even the first completion can happen unannounced.
    pub fn spawn(
        options: Options,
        ready: Reply,
        waker: Option<Arc<dyn Wake>>,
        runtime: &tokio::runtime::Handle,
    ) -> Client {
        let (client, start) = Client::prepare(options, waker);
        start.start(ready, runtime);
        client
    }

    /// A client whose driver has not started yet: what is subscribed before `Start::start`
    /// sees the session from its first event (FullyBooted, and whatever happens as it opens).
    pub fn prepare(options: Options, waker: Option<Arc<dyn Wake>>) -> (Client, Start) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(
            options.max_event_bytes,
            options.live,
            tx.downgrade(),
        ));
        if let Ok(mut slot) = shared.waker.lock() {
            *slot = waker;
        }
        let client = Client {
            tx,
            shared: shared.clone(),
            default_timeout: options.action_timeout,
        };
        (
            client,
            Start {
                options,
                rx,
                shared,
            },
        )
    }
}

/// The driver of a prepared client, not started yet.
pub struct Start {
    options: Options,
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
}

impl Start {
    /// Starts the driver on `runtime`; `ready` learns whether the first login worked.
    pub fn start(self, ready: Reply, runtime: &tokio::runtime::Handle) {
        let Start {
            options,
            rx,
            shared,
        } = self;
        if let Reply::Queued(token) = ready {
            shared.expect(std::iter::once(token));
        }
        let guard_shared = shared.clone();
        runtime.spawn(async move {
            // A panic in the driver must not leave waiters hanging: the guard task observes
            // the driver's JoinHandle and fails everything that is left.
            let over_http = options.http.is_some();
            let link = Link::new(options, rx, shared);
            let result = match over_http {
                true => tokio::spawn(supervise(AjamDriver::new(link), ready)).await,
                false => tokio::spawn(supervise(Tcp::new(link), ready)).await,
            };
            if let Err(e) = result {
                warn!("amiwire driver ended abnormally: {e}");
                guard_shared.fail_outstanding(&format!("the connection's driver task died: {e}"));
                guard_shared.finish("internal error", true);
            }
        });
    }
}
