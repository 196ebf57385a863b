//! Cuts off hyper-served connections whose client stopped reading (streams answered by
//! `conn` itself bound their writes the same way there).
//!
//! hyper stops polling a response body while the socket is full, so a stream whose
//! client never reads would sit forever: its slot taken, the user shown as present,
//! shutdown waiting out its grace. The per-stream ring cannot notice (it is never
//! polled), so the check lives in the socket: a write that makes no progress for
//! `limit` fails the connection, hyper drops the body, and the stream is released.
//! At shutdown a write that waits fails at once: the stream's `end` frame cannot reach a
//! client that does not read, and graceful shutdown would wait for it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::metrics::Metrics;

/// An IO whose writes fail after `limit` without progress.
#[derive(Debug)]
pub(crate) struct StallGuard<T> {
    io: T,
    limit: Duration,
    /// Armed when a write first returns Pending; disarmed by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Armed with `stalled`: wakes the waiting write when shutdown begins.
    stopping: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    metrics: Arc<Metrics>,
    /// The process's shutdown token.
    stop: CancellationToken,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(io: T, limit: Duration, metrics: Arc<Metrics>, stop: CancellationToken) -> Self {
        Self { io, limit, stalled: None, stopping: None, metrics, stop }
    }

    fn check<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => {
                let stop = &self.stop;
                let stopping = self.stopping.get_or_insert_with(|| Box::pin(stop.clone().cancelled_owned()));
                if stopping.as_mut().poll(cx).is_ready() {
                    tracing::debug!("connection closed at shutdown with unwritten bytes: client not reading");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "shutting down")));
                }
                let limit = self.limit;
                let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.metrics.stream_cut("write_stalled");
                    tracing::info!(?limit, "connection cut off: client stopped reading");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                self.stopping = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
