//! The shared dispatch's thread. In live mode one `user.*.*` subscription feeds the channel
//! of every user with a stream here (this file); in history mode see `shared_history.rs`.

use std::sync::Arc;

use futures::StreamExt;
use realtime_bridge_wire::subject::{self, parse_subject, Target};
use realtime_bridge_wire::EventName;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Hub;
use crate::metrics::DropReason;

impl Hub {
    /// `--subscribe shared`: starts the dispatch that feeds every user channel (once).
    ///
    /// It frames every user event of the process, so it gets a thread of its own instead of
    /// sharing a worker with the streams it wakes (which halved its rate when measured).
    pub(crate) fn start_user_dispatch(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let shared = self.shared.as_ref()?;
        let ready = shared.ready_tx.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let position = Arc::clone(&shared.position);
        let hub = Arc::clone(self);
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name("rb-dispatch".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) if hub.history.is_some() => rt.block_on(hub.run_shared_history(position, ready)),
                Ok(rt) => rt.block_on(hub.run_user_dispatch(ready)),
                Err(e) => tracing::error!(error = %e, "cannot start the dispatch thread's runtime"),
            }
            drop(done_tx);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the dispatch thread");
        }
        // Ends with the thread (the subscription ends when NATS is drained at shutdown).
        Some(tokio::spawn(async move {
            let _ = done.await;
        }))
    }

    /// One `user.*.*` subscription: each event goes to its user's channel if that user has a
    /// stream here, and is framed only then.
    async fn run_user_dispatch(self: Arc<Self>, ready: watch::Sender<bool>) {
        let Some((mut sub, _)) = Box::pin(self.subscribe(subject::ALL_USERS_WILDCARD.to_owned())).await else { return };
        let _ = ready.send(true);
        while let Some(msg) = sub.next().await {
            self.metrics.events_received.inc();
            let Some(Target::User { user, event }) = parse_subject(&msg.subject) else {
                self.drop_event(DropReason::InvalidSubject, &msg.subject);
                continue;
            };
            // Users with no stream here are the common case: one map lookup, nothing else.
            let Some(channel) = self.channel_of(user) else { continue };
            self.push_live(&channel, EventName::parse(event).ok(), channel.user(), &msg);
        }
    }
}
