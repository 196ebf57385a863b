//! Live mode: a channel's task frames every message of its subscription and pushes it.

use std::sync::Arc;

use futures::StreamExt;
use realtime_bridge_wire::{EventName, UserId};
use tokio::sync::watch;

use super::channel::{Channel, Kind};
use super::Hub;
use crate::metrics::DropReason;

impl Hub {
    /// Live mode: frame and push every message.
    pub(super) async fn run_live(self: Arc<Self>, kind: Kind, channel: Arc<Channel>, ready: watch::Sender<bool>) {
        // Boxed: a rare, large await would otherwise stay part of the task.
        let Some((mut sub, _)) = Box::pin(self.subscribe(kind.live_subject(false))).await else { return };
        let _ = ready.send(true);
        while let Some(msg) = sub.next().await {
            self.metrics.events_received.inc();
            self.push_live(&channel, kind.event_of(&msg.subject), kind.user(), &msg);
        }
    }

    /// Frames a live message for `channel` and pushes it; a bad event name or payload is
    /// counted and skipped.
    pub(super) fn push_live(
        &self,
        channel: &Channel,
        event: Option<EventName>,
        user: Option<&UserId>,
        msg: &async_nats::Message,
    ) {
        let Some(event) = event else {
            self.drop_event(DropReason::InvalidSubject, &msg.subject);
            return;
        };
        match self.framer.frame_live(event, user, &msg.payload) {
            Ok(frame) => channel.push(frame),
            Err(reason) => self.drop_event(reason, &msg.subject),
        }
    }
}
