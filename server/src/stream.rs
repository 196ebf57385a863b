//! One SSE response body: `retry:` first, then the user's and the broadcast frames that
//! pass its `events=` filter, heartbeats, and an end of its own on shutdown.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use realtime_bridge_wire::{sse, EventName};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::frame::SharedFrame;
use crate::hub::{Attached, StreamGuard};
use crate::metrics::{DropReason, Metrics};

/// State of one open stream, moved through `futures::stream::unfold`.
struct StreamState {
    user_rx: broadcast::Receiver<SharedFrame>,
    broadcast_rx: broadcast::Receiver<SharedFrame>,
    /// `None` means every event. A short list: a linear scan beats hashing here.
    filter: Option<Arc<[EventName]>>,
    heartbeat: watch::Receiver<()>,
    /// Cancelled on shutdown: the body ends, so graceful shutdown is not held up.
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    /// Sent before anything else (the `retry:` line).
    prelude: Option<Bytes>,
    /// Released when the body is dropped, whatever the reason (client gone, shutdown, cut).
    _guard: StreamGuard,
}

enum Next {
    Send(Bytes),
    End,
}

/// Builds the body stream.
pub fn sse_body(
    attached: Attached,
    filter: Option<Arc<[EventName]>>,
    retry_ms: u64,
    heartbeat: watch::Receiver<()>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut prelude = Vec::with_capacity(16);
    sse::write_retry(&mut prelude, retry_ms);
    let mut heartbeat = heartbeat;
    heartbeat.mark_unchanged();
    let state = StreamState {
        user_rx: attached.user_rx,
        broadcast_rx: attached.broadcast_rx,
        filter,
        heartbeat,
        shutdown,
        metrics,
        prelude: Some(Bytes::from(prelude)),
        _guard: attached.guard,
    };
    futures::stream::unfold(state, |mut st| async move {
        match st.next().await {
            Next::Send(b) => Some((Ok(b), st)),
            Next::End => None,
        }
    })
}

impl StreamState {
    async fn next(&mut self) -> Next {
        if let Some(p) = self.prelude.take() {
            return Next::Send(p);
        }
        loop {
            // Unbiased on purpose: a busy user ring must not starve the broadcast ring.
            let got = tokio::select! {
                () = self.shutdown.cancelled() => return Next::End,
                r = self.user_rx.recv() => r,
                r = self.broadcast_rx.recv() => r,
                r = self.heartbeat.changed() => {
                    if r.is_err() {
                        return Next::End;
                    }
                    return Next::Send(Bytes::from_static(sse::HEARTBEAT));
                }
            };
            match got {
                Ok(frame) => {
                    if self.wants(&frame.event) {
                        self.metrics.events_delivered.inc();
                        return Next::Send(frame.bytes.clone());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    // This client reads slower than events arrive: cut it off rather than
                    // buffer without bound. It reconnects (and, with history, catches up).
                    self.metrics.dropped(DropReason::SlowClient, missed);
                    self.metrics.stream_cut("slow_client");
                    tracing::info!(missed, "stream cut off: client too slow");
                    return Next::End;
                }
                // The hub dropped the ring: the process is going away.
                Err(RecvError::Closed) => return Next::End,
            }
        }
    }

    fn wants(&self, event: &EventName) -> bool {
        self.filter.as_ref().is_none_or(|f| f.iter().any(|e| e == event))
    }
}
