//! Smoke test of the harness: every subcommand with `--quick` against a real nats-server and
//! a real bridge process exits 0 and ends with one JSON line holding its figures. The
//! performance targets are not asserted here (machines are noisy): see BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_realtime-bridge-bench");
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The bridge binary: next to the bench binary (built by `cargo test --workspace`), else
/// built here once with the same profile.
fn bridge_bin() -> PathBuf {
    let dir = Path::new(BENCH).parent().unwrap();
    let bin = dir.join("realtime-bridge");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "realtime-bridge", "--bin", "realtime-bridge"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "cannot build the bridge");
    }
    assert!(bin.is_file(), "no bridge binary at {}", bin.display());
    bin
}

/// Runs the bench (bounded), returns its stdout; panics unless it exits 0.
fn run(args: &[&str]) -> String {
    let mut child = Command::new(BENCH)
        .args(args)
        .env("RB_BRIDGE_BIN", bridge_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still running after {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "{args:?} failed ({status}):\n{stdout}\n{stderr}");
    stdout
}

/// The last line, parsed as a JSON object holding `keys`.
fn last_json(stdout: &str, keys: &[&str]) -> serde_json::Value {
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last line not JSON ({e}): {last}"));
    assert!(v.is_object(), "last line is not an object: {last}");
    for k in keys {
        assert!(v.get(*k).is_some(), "key {k:?} missing from {last}");
    }
    v
}

#[test]
fn throughput_quick_live_and_history() {
    for history in ["off", "on"] {
        let out = run(&["--quick", "--history", history, "throughput"]);
        let v = last_json(
            &out,
            &[
                "bench",
                "history",
                "users",
                "published_per_s",
                "nats_events_per_s",
                "bridge_events_per_s",
                "ratio_vs_nats",
            ],
        );
        assert_eq!(v["bench"], "throughput");
        assert_eq!(v["history"], history);
        assert!(v["nats_events_per_s"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["bridge_events_per_s"].as_f64().unwrap() > 0.0, "{v}");
    }
}

#[test]
fn throughput_quick_history_core_publishes_count_stored_and_delivered() {
    let out = run(&["--quick", "--history", "on", "throughput", "--core"]);
    let v = last_json(&out, &["bench", "publish", "stored", "delivered_total", "all_delivered"]);
    assert_eq!(v["publish"], "core_flush_per_batch");
    assert!(v["stored"].as_u64().unwrap() > 0, "{v}");
    // Every stream was open before the first publish: what the store kept reaches them all.
    assert_eq!(v["all_delivered"], true, "{v}");
}

#[test]
fn latency_quick() {
    let out = run(&["--quick", "latency"]);
    let v = last_json(&out, &["bench", "rate_target", "bridge", "nats", "added_p99_ms"]);
    for path in ["bridge", "nats"] {
        for k in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "count"] {
            assert!(v[path].get(k).is_some(), "{path}.{k} missing: {v}");
        }
        assert!(v[path]["count"].as_u64().unwrap() > 0, "{v}");
    }
}

#[test]
fn idle_quick() {
    let out = run(&["--quick", "--history", "off", "idle"]);
    let v = last_json(&out, &["bench", "streams", "rss_before_kib", "rss_after_kib", "bytes_per_stream", "open_all_s"]);
    assert_eq!(v["streams"], 100);
}

#[test]
fn broadcast_quick() {
    let out = run(&["--quick", "broadcast"]);
    let v = last_json(&out, &["bench", "streams", "rounds", "last_stream_p50_ms", "last_stream_p99_ms", "missed"]);
    assert_eq!(v["missed"], 0, "{v}");
}

/// Several bridges on one NATS, the streams held by a worker process: idle sums the
/// bridges' RSS, broadcast reaches every stream of every bridge.
#[test]
fn multi_instance_quick() {
    let out = run(&["--quick", "--history", "off", "--bridges", "3", "idle"]);
    let v = last_json(&out, &["bench", "bridges", "workers", "rss_before_each_kib", "bytes_per_stream"]);
    assert_eq!(v["bridges"], 3, "{v}");
    assert_eq!(v["streams"], 300, "{v}");
    assert_eq!(v["bridge_open_streams_each"].as_array().unwrap().len(), 3, "{v}");
    let out = run(&["--quick", "--history", "on", "--bridges", "2", "--workers", "2", "broadcast"]);
    let v = last_json(&out, &["bench", "bridges", "workers", "last_stream_p99_ms", "missed"]);
    assert_eq!(v["missed"], 0, "{v}");
    assert_eq!(v["workers"], 2, "{v}");
    let out =
        run(&["--quick", "--history", "off", "--bridges", "2", "latency", "--burst", "4", "--payload-bytes", "64"]);
    let v = last_json(&out, &["bench", "burst", "added_p99_ms"]);
    assert!(v["bridge"]["count"].as_u64().unwrap() > 0, "{v}");
}

/// Every stream at once, first try only: counts by outcome, whatever they are.
#[test]
fn storm_quick() {
    let out = run(&["--quick", "--history", "on", "--bridges", "2", "storm"]);
    let v = last_json(&out, &["bench", "streams", "opened", "failed", "refused_503", "failures", "last_open_s"]);
    assert_eq!(v["opened"].as_u64().unwrap() + v["failed"].as_u64().unwrap(), v["streams"].as_u64().unwrap(), "{v}");
}

/// One of three bridges killed mid-run; its clients resume on the others.
#[test]
fn failover_quick() {
    let out = run(&["--quick", "--history", "on", "--bridges", "3", "failover"]);
    let v = last_json(&out, &["bench", "published", "lost", "duplicated", "reconnects"]);
    assert!(v["published"].as_u64().unwrap() > 0, "{v}");
}
