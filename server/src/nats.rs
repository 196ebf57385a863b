//! The NATS connection: reconnects forever, reports its state to metrics and logs.

use std::sync::Arc;
use std::time::Duration;

use crate::config::nats_servers;
use crate::metrics::Metrics;

/// NATS could not be reached, with a hint a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("bad --nats-url: {0}")]
    BadUrl(String),
    #[error("NATS not reachable at {url}: is nats-server running? ({source})")]
    Unreachable { url: String, source: async_nats::ConnectError },
}

/// Connects for the long-running server: the first connection is retried in the
/// background (the bridge serves `/readyz` 503 meanwhile) and every later loss too.
pub async fn connect_server(
    urls: &str,
    metrics: Arc<Metrics>,
    connections: tokio::sync::watch::Sender<u64>,
) -> Result<async_nats::Client, NatsError> {
    let servers = nats_servers(urls).map_err(NatsError::BadUrl)?;
    let shown = urls.to_owned();
    let opts = async_nats::ConnectOptions::new()
        .name("realtime-bridge")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |ev| {
            let metrics = Arc::clone(&metrics);
            let shown = shown.clone();
            let connections = connections.clone();
            async move {
                match ev {
                    async_nats::Event::Connected => {
                        metrics.nats_connected.set(1);
                        metrics.nats_connects.inc();
                        // History channels fill what was stored while we were away.
                        connections.send_modify(|n| *n += 1);
                        tracing::info!(url = %shown, "NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        metrics.nats_connected.set(0);
                        tracing::warn!(url = %shown, "NATS disconnected; reconnecting (is nats-server running?)");
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(sid, "NATS slow consumer: the bridge is not keeping up");
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        });
    let client =
        opts.connect(servers).await.map_err(|source| NatsError::Unreachable { url: urls.to_owned(), source })?;
    Ok(client)
}

/// Connects once for a short-lived command (`send`): fails fast with a clear message.
pub async fn connect_once(urls: &str) -> Result<async_nats::Client, NatsError> {
    let servers = nats_servers(urls).map_err(NatsError::BadUrl)?;
    async_nats::ConnectOptions::new()
        .name("realtime-bridge-cli")
        .connection_timeout(Duration::from_secs(3))
        .connect(servers)
        .await
        .map_err(|source| NatsError::Unreachable { url: urls.to_owned(), source })
}

/// Returns once the server has processed everything this client sent before (a SUB
/// included). `Client::flush` only empties the local buffer; this is a real round trip:
/// our own message on a fresh inbox comes back only after the server processed everything
/// sent before it. (A request "nobody answers" is not: any subscriber on `>` or `_RB.>`
/// elsewhere on the NATS receives it, never replies, and the request times out.)
/// Relies on echo, which async-nats leaves on.
///
/// While disconnected it returns at once: the confirmation would only come after the
/// reconnect (async-nats resubscribes then), and nobody should wait for that.
pub async fn round_trip(client: &async_nats::Client) -> Result<(), async_nats::RequestError> {
    use async_nats::{RequestError, RequestErrorKind};
    use futures::StreamExt;
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(RequestError::new(RequestErrorKind::Other));
    }
    let inbox = client.new_inbox();
    let mut echo =
        client.subscribe(inbox.clone()).await.map_err(|e| RequestError::with_source(RequestErrorKind::Other, e))?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| RequestError::with_source(RequestErrorKind::Other, e))?;
    match tokio::time::timeout(Duration::from_secs(10), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(RequestError::new(RequestErrorKind::Other)),
        Err(_) => Err(RequestError::new(RequestErrorKind::TimedOut)),
    }
}
