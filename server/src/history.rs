//! JetStream history (docs/protocol.md §5.2): the stream that keeps `user.>` and
//! `broadcast.>`, and short-lived reads from it for catch-ups.
//!
//! The live path never uses a consumer: the stream's RePublish setting re-emits every
//! stored message on `rt.<subject>` with its sequence in `Nats-Sequence`, and the hub
//! subscribes to those per user, exactly as in live mode. Consumers are only created for a
//! bounded range of sequences (a client resuming, or a subscription filling a gap) and go
//! away when the range has been read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use realtime_bridge_wire::subject;

use crate::config::HistoryMode;

/// History settings (`--history-*`, `--stream-name`).
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub mode: HistoryMode,
    pub stream_name: String,
    pub max_age: Duration,
    pub max_bytes: u64,
    pub replicas: u8,
    /// `--trust-republished`: take `rt.>` messages' sequences as JetStream's without asking
    /// the stream (only where NATS permissions keep everyone else off `rt.>`).
    pub trust_republished: bool,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            mode: HistoryMode::Auto,
            stream_name: "REALTIME".into(),
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
            replicas: 1,
            trust_republished: false,
        }
    }
}

/// History could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("JetStream is not available on this NATS ({0}); start nats-server with -js, or use --history off")]
    Unavailable(String),
    #[error("cannot create or update the JetStream stream {stream:?}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("reading history failed: {0}")]
    Read(String),
}

/// One stored message, as read back from the stream.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) seq: u64,
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
    pub(crate) time: SystemTime,
}

/// The history stream of this bridge.
#[derive(Debug, Clone)]
pub(crate) struct History {
    js: jetstream::Context,
    stream_name: String,
    /// Kept to re-apply after NATS comes back (a server restarted without its store
    /// would otherwise have no stream, and nothing would be republished).
    config: stream::Config,
    /// The highest sequence the stream is known to hold, shared by every channel.
    watermark: Arc<Watermark>,
    /// `--trust-republished`: no check of re-published sequences.
    trust_republished: bool,
    /// Which incarnation of the stream the bridge is following.
    identity: Arc<Identity>,
}

/// The stream's identity, to notice it was re-created (NATS restarted without its store, or
/// the stream deleted and created again): its sequences then start again at 1, and every
/// position the bridge holds belongs to a numbering that no longer exists.
#[derive(Debug, Default)]
struct Identity {
    /// Creation time (Unix nanoseconds) of the stream last seen; `None` before the first look.
    created: std::sync::Mutex<Option<i128>>,
    /// Bumped each time the stream turns out to be another one. Channels compare it with
    /// theirs and start again from the new stream's beginning (docs/protocol.md §5.8).
    epoch: AtomicU64,
}

/// What the bridge knows of the stream's last sequence, to tell a re-published message from
/// a forged one.
///
/// The live path reads re-published copies on `rt.>`, and any NATS client allowed to publish
/// there could send one with any `Nats-Sequence`. Trusting a huge one would move a channel's
/// position past every real event to come (they would be taken for duplicates) and poison
/// every client's cursor. JetStream re-publishes a message only after storing it, so a real
/// sequence is never past the stream's last one asked for after the message arrived.
#[derive(Debug, Default)]
struct Watermark {
    /// Every sequence up to this one is known to have been stored.
    known: AtomicU64,
    /// One stream-info request at a time for the whole process: a burst of new messages over
    /// many channels waits for the same answer instead of each asking.
    asking: tokio::sync::Mutex<()>,
}

impl History {
    /// Creates or updates the stream. `Ok(None)` means live mode (`off`, or `auto`
    /// without JetStream); with `on`, a missing JetStream is an error.
    ///
    /// `client` is the bridge's JetStream connection (`nats::connect_jetstream`), not the one
    /// the live flow arrives on: on that one, the answers to API requests (a sequence check, a
    /// catch-up's consumer) would queue behind every message NATS has already sent the bridge,
    /// and a burst of events would delay the very requests those events wait for.
    pub(crate) async fn setup(client: &async_nats::Client, cfg: &HistoryConfig) -> Result<Option<Self>, HistoryError> {
        if cfg.mode == HistoryMode::Off {
            return Ok(None);
        }
        let js = jetstream::new(client.clone());
        if let Err(e) = js.query_account().await {
            return match cfg.mode {
                HistoryMode::On => Err(HistoryError::Unavailable(e.to_string())),
                _ => {
                    tracing::warn!(error = %e, "JetStream not available: live mode (at most once); use --history on to require it");
                    Ok(None)
                }
            };
        }
        let config = stream::Config {
            name: cfg.stream_name.clone(),
            subjects: subject::history_store_subjects().into(),
            max_age: cfg.max_age,
            max_bytes: i64::try_from(cfg.max_bytes).unwrap_or(i64::MAX),
            storage: stream::StorageType::File,
            num_replicas: usize::from(cfg.replicas),
            duplicate_window: Duration::from_secs(120).min(cfg.max_age),
            republish: Some(stream::Republish {
                source: ">".into(),
                destination: subject::republish_destination(),
                headers_only: false,
            }),
            allow_direct: true,
            ..Default::default()
        };
        let history = Self {
            js,
            stream_name: cfg.stream_name.clone(),
            config,
            watermark: Arc::default(),
            trust_republished: cfg.trust_republished,
            identity: Arc::default(),
        };
        history.ensure().await?;
        tracing::info!(
            stream = %cfg.stream_name,
            max_age = ?cfg.max_age,
            max_bytes = cfg.max_bytes,
            replicas = cfg.replicas,
            "history mode: JetStream stream ready"
        );
        Ok(Some(history))
    }

    /// Creates the stream, or updates it to our settings.
    pub(crate) async fn ensure(&self) -> Result<(), HistoryError> {
        let info = self
            .js
            .create_or_update_stream(self.config.clone())
            .await
            .map_err(|e| HistoryError::Stream { stream: self.stream_name.clone(), reason: e.to_string() })?;
        self.observe(&info);
        Ok(())
    }

    /// Notes what a look at the stream showed: its last sequence, and whether it is still
    /// the stream the bridge was following.
    fn observe(&self, info: &stream::Info) {
        let created = info.created.unix_timestamp_nanos();
        let last = info.state.last_sequence;
        let mut seen = self.identity.created.lock().unwrap_or_else(|p| p.into_inner());
        match *seen {
            Some(before) if before != created => {
                // Sequences start again: what was known of the old stream says nothing now.
                self.watermark.known.store(last, Ordering::Release);
                let epoch = self.identity.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::error!(
                    stream = %self.stream_name,
                    last,
                    epoch,
                    "the history stream was re-created (NATS lost its store, or it was deleted): \
                     open streams get `reset` (history_recreated) and continue in the new numbering"
                );
            }
            _ => {
                self.watermark.known.fetch_max(last, Ordering::AcqRel);
            }
        }
        *seen = Some(created);
    }

    /// How many times the stream has been found re-created since start-up.
    pub(crate) fn epoch(&self) -> u64 {
        self.identity.epoch.load(Ordering::Acquire)
    }

    /// A channel found the stream's last sequence below its own position while the stream
    /// kept its creation time (e.g. a position taken from a forged sequence with
    /// `--trust-republished`): start every channel again, once for all that notice.
    pub(crate) fn went_backwards(&self, seen_epoch: u64, last: u64) {
        if self.identity.epoch.compare_exchange(seen_epoch, seen_epoch + 1, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.watermark.known.store(last, Ordering::Release);
            tracing::error!(stream = %self.stream_name, "the history stream's last sequence is behind the bridge's position: starting over from it");
        }
    }

    /// How often a channel confirms its position when it has no events: well inside
    /// `--history-max-age`, so idle cursors never fall out of history.
    pub(crate) fn confirm_every(&self) -> Duration {
        (self.config.max_age / 8).clamp(Duration::from_millis(250), Duration::from_secs(3600))
    }

    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// `(first, last)` sequence held by the stream now (one JetStream API request).
    pub(crate) async fn bounds(&self) -> Result<(u64, u64), HistoryError> {
        let s = self.js.get_stream(&self.stream_name).await.map_err(|e| HistoryError::Read(e.to_string()))?;
        let info = s.cached_info();
        self.observe(info);
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Whether `seq` is known to be stored already (no request): the common case for a
    /// message that arrives while others are being checked, and every message with
    /// `--trust-republished`.
    pub(crate) fn known_to_hold(&self, seq: u64) -> bool {
        self.trust_republished || seq <= self.watermark.known.load(Ordering::Acquire)
    }

    /// Whether the stream holds (or held) sequence `seq` of a message the caller received
    /// before calling: at once when `seq` is not past the highest sequence known, else after
    /// asking the stream (one request at a time for the whole process).
    pub(crate) async fn holds(&self, seq: u64) -> Result<bool, HistoryError> {
        let w = &self.watermark;
        if seq <= w.known.load(Ordering::Acquire) {
            return Ok(true);
        }
        let _asking = w.asking.lock().await;
        // Whoever asked while we waited may have learned enough.
        if seq <= w.known.load(Ordering::Acquire) {
            return Ok(true);
        }
        let (_, last) = self.bounds().await?;
        Ok(seq <= last)
    }

    /// Stored messages matching `filters` with sequence in `from..=to`, in stored order.
    /// The consumer behind it is ephemeral and gone once the returned stream is dropped.
    pub(crate) async fn read(
        &self,
        filters: Vec<String>,
        from: u64,
        to: u64,
    ) -> Result<futures::stream::BoxStream<'static, Result<Stored, HistoryError>>, HistoryError> {
        if from > to || from == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let s = self.js.get_stream_no_info(&self.stream_name).await.map_err(|e| HistoryError::Read(e.to_string()))?;
        let (filter_subject, filter_subjects) = match filters.len() {
            1 => (filters.into_iter().next().unwrap_or_default(), Vec::new()),
            _ => (String::new(), filters),
        };
        let consumer = s
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject,
                filter_subjects,
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
                ..Default::default()
            })
            .await
            .map_err(|e| HistoryError::Read(e.to_string()))?;
        // From here on the consumer goes away with the read (see `DeleteOnDrop`).
        let cleanup = DeleteOnDrop { stream: s, name: consumer.cached_info().name.clone() };
        if consumer.cached_info().num_pending == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let messages = consumer.messages().await.map_err(|e| HistoryError::Read(e.to_string()))?;
        // Stop after `to`, or once the consumer has nothing pending (the range may end
        // with messages that don't match the filter).
        let stream = futures::stream::unfold(Some((messages, cleanup)), move |state| async move {
            let (mut messages, cleanup) = state?;
            match messages.next().await {
                None => None,
                Some(Err(e)) => Some((Err(HistoryError::Read(e.to_string())), None)),
                Some(Ok(msg)) => {
                    let Ok(info) = msg.info() else {
                        return Some((Err(HistoryError::Read("message without JetStream metadata".into())), None));
                    };
                    let (seq, pending, time) = (info.stream_sequence, info.pending, SystemTime::from(info.published));
                    if seq > to {
                        return None;
                    }
                    let stored = Stored { seq, subject: msg.subject.to_string(), payload: msg.payload.clone(), time };
                    let next = if seq >= to || pending == 0 { None } else { Some((messages, cleanup)) };
                    Some((Ok(stored), next))
                }
            }
        });
        Ok(stream.boxed())
    }
}

/// Deletes a read's consumer as soon as the read is over or dropped. The server would
/// otherwise keep an ordered consumer for 30 s after its last pull (async-nats fixes its
/// `inactive_threshold`), and nats-server holds at most 1000 consumers per stream by
/// default (`default_max_consumers`): a few dozen resumes and gap fills a second, over
/// all bridges, would fill the stream and make every further read fail.
struct DeleteOnDrop {
    stream: jetstream::stream::Stream<()>,
    name: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let (stream, name) = (self.stream.clone(), std::mem::take(&mut self.name));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = stream.delete_consumer(&name).await {
                    tracing::debug!(consumer = name, error = %e, "could not delete a history read's consumer; it expires on its own");
                }
            });
        }
    }
}

/// Reads `Nats-Sequence` and `Nats-Time-Stamp` from a republished message.
///
/// The last value of each: the stream appends its own headers to the ones the message was
/// published with, and a producer may publish `user.42.x` with a `Nats-Sequence` of its
/// choosing. The first value would be the producer's (a sequence far ahead makes the
/// channel skip every real event up to it), the last one is the stream's.
pub(crate) fn republished_meta(msg: &async_nats::Message) -> Option<(u64, SystemTime, &str)> {
    let headers = msg.headers.as_ref()?;
    let seq = headers.get_last("Nats-Sequence")?.as_str().parse().ok()?;
    let time = headers
        .get_last("Nats-Time-Stamp")
        .and_then(|v| humantime::parse_rfc3339_weak(v.as_str()).ok())
        .unwrap_or_else(SystemTime::now);
    let subject = subject::strip_republished(&msg.subject)?;
    Some((seq, time, subject))
}
