//! Start-up, serving and shutdown of the bridge: [`Bridge`] (NATS, history, background
//! tasks), [`run`] (the accept loop) and [`shutdown_signal`]. What it runs with is a
//! [`Config`] (`crate::config`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::{check_no_auth, Config, ConfigError, HistoryMode};
use crate::conn::ConnConfig;
use crate::frame::Framer;
use crate::heartbeat::Heartbeats;
use crate::history::{History, HistoryError};
use crate::http::{app, AppState, Shared};
use crate::hub::{Hub, HubSettings};
use crate::metrics::Metrics;
use crate::nats::{connect_server, NatsError};
use crate::presence::Presence;

/// The server failed at run time.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("NATS subscription failed: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A started bridge: NATS connected (or connecting), subscriptions and background
/// tasks running, ready to be served by [`Bridge::router`].
#[derive(Debug)]
pub struct Bridge {
    state: AppState,
    client: async_nats::Client,
    presence: Arc<Presence>,
    /// Background tasks (broadcast fan-in, presence, heartbeat ticker), aborted at shutdown.
    tasks: Vec<JoinHandle<()>>,
    /// Cancelling it ends every open stream.
    stop: CancellationToken,
}

impl Bridge {
    /// Connects to NATS and starts the background work.
    pub async fn start(config: &Config) -> Result<Self, ServerError> {
        let metrics = Arc::new(Metrics::new());
        let (connections_tx, connections) = watch::channel(0u64);
        let client =
            connect_server(&config.nats_url, &config.nats_credentials, Arc::clone(&metrics), connections_tx).await?;
        // The first connection runs in the background; give it a moment so the broadcast
        // subscription is confirmed before we serve, without stalling start-up when NATS is away.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while client.connection_state() != async_nats::connection::State::Connected
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if config.history.mode != HistoryMode::Off {
            // Whether history is on is decided against the real NATS: wait for it.
            let mut waited = 1;
            while client.connection_state() != async_nats::connection::State::Connected {
                if waited % 5 == 0 {
                    tracing::warn!(url = %config.nats_url, "waiting for NATS (is nats-server running?) to set up history");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                waited += 1;
            }
        }
        let history = match config.history.mode {
            HistoryMode::Off => None,
            _ => {
                let js = crate::nats::connect_jetstream(&config.nats_url, &config.nats_credentials).await?;
                // The first connection is up: this one follows within moments (bounded, so a
                // second login that fails cannot hold start-up; history then says why).
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                while js.connection_state() != async_nats::connection::State::Connected
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                History::setup(&js, &config.history).await?
            }
        };
        let shared = config.subscribe.is_shared(history.is_some());
        if history.is_none() {
            tracing::info!("live mode: at most once, no resume (history is off or JetStream is unavailable)");
        }
        let framer = Arc::new(Framer::new(config.max_event_bytes));
        let hub = Hub::new(
            client.clone(),
            Arc::clone(&framer),
            Arc::clone(&metrics),
            history,
            HubSettings { max_streams_per_user: config.max_streams_per_user, queue_len: config.queue_len, shared },
            connections,
        );
        let mut tasks: Vec<JoinHandle<()>> = hub.start_broadcasts().into_iter().collect();
        tasks.extend(hub.start_user_dispatch());
        let presence = Presence::new(client.clone(), Arc::clone(&hub));
        tasks.extend(presence.start().await?);
        tasks.extend(config.auth.start());
        if client.connection_state() != async_nats::connection::State::Connected {
            tracing::warn!(url = %config.nats_url, "NATS not reachable yet: is nats-server running? retrying in the background");
        }

        let (heartbeats, ticker) = Heartbeats::start(config.heartbeat);
        tasks.push(ticker);

        let stop = CancellationToken::new();
        let state = AppState(Arc::new(Shared {
            auth: config.auth.clone(),
            client: client.clone(),
            hub,
            framer,
            presence: Arc::clone(&presence),
            metrics,
            heartbeats,
            shutdown: stop.clone(),
            retry_ms: config.retry_ms,
            max_event_bytes: config.max_event_bytes,
            queue_bytes: config.queue_bytes,
            cors_origins: config.cors_origins.clone(),
            limits: config.limits.clone(),
            readiness: tokio::sync::Mutex::new(None),
        }));
        Ok(Self { state, client, presence, tasks, stop })
    }

    /// The HTTP API over this bridge's state.
    pub fn router(&self) -> Router {
        app(self.state.clone())
    }

    /// Users with at least one open stream on this bridge (each holds one NATS
    /// subscription in per-user mode).
    pub fn connected_users(&self) -> usize {
        self.state.0.hub.connected_users()
    }

    /// Streams of `user` open on this bridge (what `--max-streams-per-user` counts).
    pub fn local_streams(&self, user: &str) -> u32 {
        self.state.0.hub.local_streams(user)
    }

    /// A token that, once cancelled, ends every open stream.
    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.state.0.metrics)
    }

    /// This process's presence instance id (logged at start-up).
    pub(crate) fn instance(&self) -> &str {
        self.presence.instance()
    }

    /// Ends every stream, says goodbye to peers and drains NATS.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.presence.leave().await;
        for t in &self.tasks {
            t.abort();
        }
        // Everything published so far reaches the server before the connection goes.
        let _ = tokio::time::timeout(Duration::from_secs(2), crate::nats::round_trip(&self.client)).await;
        if let Err(e) = self.client.drain().await {
            tracing::warn!(error = %e, "NATS drain failed");
        }
    }
}

/// A listener on `addr` whose queue of connections not yet accepted holds up to `backlog`
/// (`--listen-backlog`; Linux caps it at `net.core.somaxconn`). `TcpListener::bind` asks for
/// 1024, which a reconnect storm of thousands of clients overflows: the SYNs beyond it are
/// dropped, and those clients wait for their retransmits (1 s, 3 s, 7 s...).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std does on Unix: a restarted bridge takes its port back while the last one's
    // connections are still in TIME_WAIT. (On Windows it would let two processes share it.)
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Runs the bridge on `listener` until `shutdown` resolves, then shuts down within
/// `config.shutdown_grace`: stop accepting, end every stream, drain NATS.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let addr = listener.local_addr()?;
    check_no_auth(&config.auth, addr)?;
    if matches!(config.auth, Auth::Disabled) {
        tracing::warn!(%addr, "AUTHENTICATION IS DISABLED (--no-auth): anyone who can reach this address reads every stream");
    }
    // A signal during start-up (NATS may be slow to answer) still shuts down cleanly.
    let mut shutdown = std::pin::pin!(shutdown);
    let bridge = tokio::select! {
        b = Bridge::start(&config) => b?,
        () = &mut shutdown => {
            tracing::info!("shutdown requested during start-up");
            return Ok(());
        }
    };
    let stop = bridge.stop_token();
    let open_files = crate::limits::raise_open_file_limit();
    let max_connections = config.max_connections.unwrap_or_else(|| crate::limits::default_max_connections(open_files));
    tracing::info!(%addr, instance = bridge.instance(), max_connections, open_files, "listening");
    let conn_config = Arc::new(ConnConfig {
        router: bridge.router(),
        // A client that stops reading for three heartbeats is cut off (see `stall`): the
        // same bound the SDK's heartbeat watchdog uses by default (45 s at 15 s heartbeats).
        stall_limit: (config.heartbeat * 3).max(Duration::from_secs(1)),
        head_timeout: config.head_timeout,
        metrics: bridge.metrics(),
        max_connections,
        open_connections: std::sync::atomic::AtomicUsize::new(0),
        stop: stop.clone(),
    });
    let accept = tokio::spawn(serve_connections(listener, conn_config, stop.clone()));

    // Only `stop` ends the accept loop; a signal is what normally cancels it.
    shutdown.await;
    tracing::info!(grace = ?config.shutdown_grace, "shutting down: no new connections, ending streams, draining NATS");
    // Stops accepting and ends every open stream (their bodies watch `stop`): an SSE body
    // never ends on its own, so without this no stream connection would finish.
    stop.cancel();
    let finish = async {
        let _ = accept.await;
        bridge.shutdown().await;
    };
    if tokio::time::timeout(config.shutdown_grace, finish).await.is_err() {
        tracing::warn!("shutdown grace elapsed; exiting with work left");
    } else {
        tracing::info!("shutdown complete");
    }
    Ok(())
}

/// Accepts connections until `stop` is cancelled, each served by its own task; then waits
/// for them to finish (streams end on `stop`, hyper's connections finish their request).
async fn serve_connections(listener: TcpListener, config: Arc<ConnConfig>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, _)) => {
                // Counted here, released by the connection's task when it ends.
                let Some(slot) = crate::conn::ConnSlot::take(&config) else {
                    crate::conn::refuse_busy(sock, &config);
                    continue;
                };
                connections.spawn(crate::conn::serve(sock, slot, graceful.watcher()));
            }
            // The client gave up between SYN and accept: not ours to worry about.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Out of file descriptors (or similar): wait for connections to close
                // rather than spinning; open streams go on meanwhile.
                tracing::error!(error = %e, "accept failed; retrying in 1s");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    connections.close();
    connections.wait().await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
