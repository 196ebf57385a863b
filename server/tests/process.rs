//! Real `realtime-bridge` processes (the binary cargo built): signals and exit codes,
//! configuration errors, the `token`/`send`/`listen` subcommands, what reaches the logs,
//! presence across two instances on one NATS, a NATS restart under an open stream, and a
//! producer written in another language (Python, nats-py).
//!
//! Every test has its own nats-server; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::{json, Value};

const GRACE: Duration = Duration::from_secs(5);

/// A NATS URL nobody listens on: a nats-server was started there and killed.
fn dead_nats_url() -> String {
    let mut n = NatsServer::start();
    n.stop();
    n.url()
}

fn single_line(ran: &Ran) -> &str {
    let t = ran.stderr.trim();
    assert!(!t.is_empty(), "no message on stderr");
    assert!(!t.contains('\n'), "more than one stderr line:\n{t}");
    t
}

// ---------------------------------------------------------------------------------------
// 1. Shutdown on SIGTERM / SIGINT with open streams

async fn shutdown_with_open_streams(sig: &str) {
    let nats = NatsServer::start();
    let mut bridge = BridgeProcess::start(&nats.url(), &["--shutdown-grace", "5s"]);
    let base = bridge.base();
    let mut streams = vec![
        SseClient::open(&base, "42", "", Some(&token("42"))).await,
        SseClient::open(&base, "42", "", Some(&token("42"))).await,
        SseClient::open(&base, "43", "", Some(&token("43"))).await,
    ];
    // The streams are live, not just answered: a broadcast reaches each of them.
    let client = nats.client().await;
    publish(&client, "broadcast.ping", "1").await;
    for s in &mut streams {
        assert_eq!(s.next().await.event, "ping");
    }

    bridge.signal(sig);
    let Some((status, took)) = bridge.wait_exit_async(GRACE + WAIT).await else {
        panic!("SIG{sig}: the bridge is still running {:?} after the signal; logs:\n{}", GRACE + WAIT, bridge.logs());
    };
    println!("SIG{sig} with 3 open streams: exited with {status} after {took:?} (grace {GRACE:?})");
    assert_eq!(status.code(), Some(0), "SIG{sig}: exit status {status}; logs:\n{}", bridge.logs());
    assert!(took < GRACE, "SIG{sig}: took {took:?}, not within the {GRACE:?} grace; logs:\n{}", bridge.logs());
    for s in &mut streams {
        s.expect_end(WAIT).await;
    }
    let logs = eventually("the shutdown log lines", WAIT, || {
        let logs = bridge.logs();
        let ok = logs.contains("shutting down") && logs.contains("shutdown complete");
        async move { ok.then_some(logs) }
    })
    .await;
    assert!(!logs.contains("grace elapsed"), "shutdown hit the grace limit:\n{logs}");
}

#[tokio::test]
async fn sigterm_with_open_streams_exits_0_quickly_and_ends_every_stream() {
    shutdown_with_open_streams("TERM").await;
}

#[tokio::test]
async fn sigint_with_open_streams_exits_0_quickly_and_ends_every_stream() {
    shutdown_with_open_streams("INT").await;
}

/// A client that stopped reading (its socket full) must not hold shutdown: its write gives
/// up as soon as shutdown begins, and the process drains NATS and says "shutdown complete"
/// well inside a grace chosen far above that bound (and above the 60 s write-stall limit,
/// so that the guard cannot be what ends it).
async fn shutdown_with_a_stalled_stream(keep_alive: bool) {
    let nats = NatsServer::start();
    let grace = Duration::from_secs(120);
    let mut bridge = BridgeProcess::start(&nats.url(), &["--shutdown-grace", "120s", "--heartbeat", "20s"]);
    let base = bridge.base();
    let client = nats.client().await;
    let stalled = common::raw::open_unread_stream(bridge.addr, "42", keep_alive).await;
    let mut reading = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    let filled = fill_until_stalled(&base, &client, "user.42.bulk").await;
    println!("keep-alive {keep_alive}: the socket of user 42's stream is full after {filled} events of 4 KiB");

    bridge.signal("TERM");
    let bound = Duration::from_secs(10);
    let Some((status, took)) = bridge.wait_exit_async(bound + WAIT).await else {
        panic!(
            "still running {:?} after SIGTERM with a stalled client (grace {grace:?}); logs:\n{}",
            bound + WAIT,
            bridge.logs()
        );
    };
    println!("keep-alive {keep_alive}: exited with {status} {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}; logs:\n{}", bridge.logs());
    assert!(took < bound, "shutdown took {took:?} with a stalled client; logs:\n{}", bridge.logs());
    reading.expect_end(WAIT).await;
    let logs = eventually("the shutdown log lines", WAIT, || {
        let logs = bridge.logs();
        async move { logs.contains("shutdown complete").then_some(logs) }
    })
    .await;
    assert!(!logs.contains("grace elapsed"), "shutdown hit the grace limit:\n{logs}");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_hold_shutdown() {
    shutdown_with_a_stalled_stream(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_on_a_keep_alive_connection_does_not_hold_shutdown() {
    shutdown_with_a_stalled_stream(true).await;
}

// ---------------------------------------------------------------------------------------
// 2. Bad configuration: exit 64, one line naming the flag

#[test]
fn bad_config_values_exit_64_with_one_line_naming_the_flag() {
    let dead = dead_nats_url();
    // Every case but the one value under test is valid (loopback, port 0, unused NATS),
    // so a value wrongly accepted shows up as a bridge that starts (and is killed by run_bin).
    let base = ["serve", "--nats-url", dead.as_str()];
    // (arguments after `base`, environment, words the error line must contain)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case<'_>> = vec![
        (vec!["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--heartbeat", "abc"], vec![], &["--heartbeat"]),
        (vec!["--jwt-secret", SECRET, "--listen", "nope"], vec![], &["--listen"]),
        (
            vec!["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--max-streams-per-user", "0"],
            vec![],
            &["--max-streams-per-user"],
        ),
        (vec!["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--history", "sometimes"], vec![], &["--history"]),
        (
            vec!["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--cors-origin", "ftp:/x"],
            vec![],
            &["--cors-origin"],
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--jwt-secret", SECRET],
            vec![("RB_HEARTBEAT", "abc")],
            &["--heartbeat", "RB_HEARTBEAT"],
        ),
        (vec!["--listen", "127.0.0.1:0"], vec![], &["--jwt-secret"]),
        (vec!["--no-auth", "--listen", "0.0.0.0:0"], vec![], &["--no-auth"]),
        // Boolean flags take 1/true/yes from the environment too.
        (vec!["--listen", "0.0.0.0:0"], vec![("RB_NO_AUTH", "1")], &["--no-auth"]),
        (vec!["--listen", "0.0.0.0:0"], vec![("RB_NO_AUTH", "yes")], &["--no-auth"]),
        (vec!["--listen", "127.0.0.1:0", "--jwt-public-key", "/nonexistent"], vec![], &["--jwt-public-key"]),
        (vec!["--listen", "127.0.0.1:0", "--jwt-secret", SECRET, "--subscribe", "each"], vec![], &["--subscribe"]),
    ];
    let mut failures = Vec::new();
    for (extra, env, needles) in &cases {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        let ran = run_bin(&args, env);
        let err = ran.stderr.trim();
        println!("{env:?} {args:?} -> {:?} in {:?}: {err}", ran.code(), ran.took);
        if ran.code() != Some(64) {
            failures.push(format!("{env:?} {args:?}: exit {:?}, want 64; stderr: {err}", ran.code()));
        }
        if err.is_empty() || err.contains('\n') {
            failures.push(format!("{env:?} {args:?}: stderr is not exactly one line:\n{err}"));
        }
        if !needles.iter().any(|n| err.contains(n)) {
            failures.push(format!("{env:?} {args:?}: stderr does not name {needles:?}: {err}"));
        }
    }
    // --no-auth on a non-loopback address is refused because it is not loopback.
    let ran = run_bin(&["serve", "--nats-url", &dead, "--no-auth", "--listen", "0.0.0.0:0"], &[]);
    if !ran.stderr.contains("loopback") {
        failures.push(format!("--no-auth on 0.0.0.0: the message does not say why (loopback): {}", ran.stderr.trim()));
    }
    assert!(failures.is_empty(), "bad configuration handling:\n{}", failures.join("\n"));

    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let ran = run_bin(args, &[]);
        assert_eq!(ran.code(), Some(0), "{args:?} exits 0; stderr: {}", ran.stderr);
        assert!(ran.stdout.contains("Usage"), "{args:?} prints usage on stdout:\n{}", ran.stdout);
    }
}

/// `--listen-backlog`: documented with its variable and the kernel's cap, refused out of
/// range with the range as the reason, and a bridge serves with it.
#[tokio::test]
async fn listen_backlog_is_documented_checked_and_served_with() {
    let help = run_bin(&["serve", "--help"], &[]);
    assert_eq!(help.code(), Some(0), "{}", help.stderr);
    for needle in ["--listen-backlog <N>", "RB_LISTEN_BACKLOG", "somaxconn", "[default: 4096]"] {
        assert!(help.stdout.contains(needle), "serve --help does not mention {needle}:\n{}", help.stdout);
    }

    let dead = dead_nats_url();
    let base = ["serve", "--nats-url", dead.as_str(), "--listen", "127.0.0.1:0", "--jwt-secret", SECRET];
    // (extra arguments, environment, words the error line must all contain)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case<'_>; 5] = [
        (&["--listen-backlog", "0"], &[], &["--listen-backlog", "1..=65535"]),
        (&["--listen-backlog", "65536"], &[], &["--listen-backlog", "1..=65535"]),
        (&["--listen-backlog=-1"], &[], &["--listen-backlog", "-1"]),
        (&["--listen-backlog", "lots"], &[], &["--listen-backlog", "lots"]),
        (&[], &[("RB_LISTEN_BACKLOG", "0")], &["--listen-backlog", "1..=65535"]),
    ];
    for (extra, env, needles) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let ran = run_bin(&args, env);
        let line = single_line(&ran);
        println!("{env:?} {extra:?} -> {:?}: {line}", ran.code());
        assert_eq!(ran.code(), Some(64), "{env:?} {extra:?}: {line}");
        for n in needles {
            assert!(line.contains(n), "{env:?} {extra:?}: the error does not say {n:?}: {line}");
        }
    }

    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &["--listen-backlog", "16"]);
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    expect_sentinel_next(&mut sse, &nats.client().await, "user.42.hello").await;
}

// ---------------------------------------------------------------------------------------
// 2b. HS256 secrets and key sources

#[test]
fn short_secrets_and_conflicting_key_sources_exit_64_naming_the_flag() {
    let dead = dead_nats_url();
    let dir = tempfile::tempdir().unwrap();
    let short_file = dir.path().join("short-secret");
    std::fs::write(&short_file, "0123456789abcdef0123456789\n").unwrap(); // 26 bytes + newline
    let good_file = dir.path().join("secret");
    std::fs::write(&good_file, format!("{SECRET}\n")).unwrap();
    let (short_file, good_file) = (short_file.to_str().unwrap(), good_file.to_str().unwrap());
    let short = "short-secret-0123456789"; // 23 bytes: what the bridge used to accept
    let rsa_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa_public.pem");
    let idp = "https://idp.example.com/jwks";
    let serve = |extra: &[&str]| -> Vec<String> {
        ["serve", "--nats-url", &dead, "--listen", "127.0.0.1:0"].iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let sub = |all: &[&str]| -> Vec<String> { all.iter().map(|s| (*s).to_owned()).collect() };
    // (arguments, environment, words the error line must all contain)
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case<'_>> = vec![
        (serve(&["--jwt-secret", short]), vec![], &["--jwt-secret", "32", "brute-forced"]),
        (serve(&[]), vec![("RB_JWT_SECRET", short)], &["--jwt-secret", "32"]),
        (serve(&["--jwt-secret-file", short_file]), vec![], &["--jwt-secret-file", "32", "brute-forced"]),
        (serve(&["--jwt-secret-file", "/nonexistent/secret"]), vec![], &["--jwt-secret-file", "cannot read"]),
        // Exactly one key source.
        (serve(&["--jwt-secret", SECRET, "--jwks-url", idp]), vec![], &["--jwks-url", "--jwt-secret"]),
        (serve(&["--jwks-url", idp]), vec![("RB_JWT_SECRET", SECRET)], &["--jwks-url", "--jwt-secret"]),
        (
            serve(&["--jwt-secret-file", good_file, "--jwt-public-key", rsa_pem]),
            vec![],
            &["--jwt-public-key", "--jwt-secret-file"],
        ),
        (
            serve(&["--jwt-secret", SECRET, "--jwt-secret-file", good_file]),
            vec![],
            &["--jwt-secret-file", "--jwt-secret"],
        ),
        (serve(&["--no-auth", "--jwks-url", idp]), vec![], &["--no-auth", "--jwks-url"]),
        // The other new flags.
        (serve(&["--jwks-url", "ftp://idp.example.com/jwks"]), vec![], &["--jwks-url", "https://"]),
        (serve(&["--jwks-url", "not a url"]), vec![], &["--jwks-url"]),
        (serve(&["--jwks-url", idp, "--jwt-issuer", ""]), vec![], &["--jwt-issuer"]),
        (serve(&["--jwks-url", idp, "--jwt-leeway", "soon"]), vec![], &["--jwt-leeway"]),
        (serve(&["--jwks-url", idp, "--user-claim", ""]), vec![], &["--user-claim"]),
        // `token` and `listen` sign, under the same rule.
        (sub(&["token", "--user", "42", "--jwt-secret", short]), vec![], &["--jwt-secret", "32"]),
        (sub(&["token", "--user", "42"]), vec![("RB_JWT_SECRET", short)], &["--jwt-secret", "32"]),
        (sub(&["token", "--user", "42", "--jwt-secret-file", short_file]), vec![], &["--jwt-secret-file", "32"]),
        (
            sub(&["token", "--user", "42", "--jwt-secret", SECRET, "--jwt-secret-file", good_file]),
            vec![],
            &["--jwt-secret-file", "--jwt-secret"],
        ),
        (sub(&["listen", "--user", "42", "--jwt-secret", short]), vec![], &["--jwt-secret", "32"]),
    ];

    let mut failures = Vec::new();
    for (args, env, needles) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = run_bin(&args, env);
        let err = ran.stderr.trim();
        println!("{env:?} {args:?} -> {:?}: {err}", ran.code());
        if ran.code() != Some(64) {
            failures.push(format!("{env:?} {args:?}: exit {:?}, want 64; stderr: {err}", ran.code()));
        }
        if err.is_empty() || err.contains('\n') {
            failures.push(format!("{env:?} {args:?}: stderr is not exactly one line:\n{err}"));
        }
        if let Some(missing) = needles.iter().find(|n| !err.contains(*n)) {
            failures.push(format!("{env:?} {args:?}: stderr does not say {missing:?}: {err}"));
        }
        if !ran.stdout.trim().is_empty() {
            failures.push(format!("{env:?} {args:?}: printed {:?}", ran.stdout.trim()));
        }
    }
    assert!(failures.is_empty(), "secret and key-source handling:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn jwt_secret_file_keeps_the_secret_out_of_the_process_list() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwt-secret");
    // A trailing newline, as `echo` and editors leave it: not part of the secret.
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let file = file.to_str().unwrap();
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &["--jwt-secret-file", file]);

    let cmdline = std::fs::read(format!("/proc/{}/cmdline", bridge.child.id())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    println!("bridge command line: {cmdline}");
    assert!(cmdline.contains("--jwt-secret-file"), "the file flag is there: {cmdline}");
    assert!(!cmdline.contains(SECRET), "the secret is in the process list: {cmdline}");

    // Tokens signed with the file's secret (newline excluded) are accepted...
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    publish(&nats.client().await, "user.42.message_new", r#"{"n":1}"#).await;
    assert_eq!(envelope(&sse.next().await)["data"], json!({"n": 1}));
    // ...and the newline is not part of the key.
    let with_newline = realtime_bridge::auth::sign_hs256(
        format!("{SECRET}\n"),
        &realtime_bridge::auth::Claims {
            sub: Some("42".into()),
            exp: realtime_bridge::auth::unix_now() + 60,
            rb_admin: false,
            rb_scope: realtime_bridge::auth::Scopes::default(),
        },
    )
    .unwrap();
    assert_eq!(open_raw(&bridge.base(), "42", "", Some(&with_newline)).await.status(), 401);

    // `token --jwt-secret-file` signs with the same secret.
    let ran = run_bin(&["token", "--user", "43", "--jwt-secret-file", file], &[]);
    assert_eq!(ran.code(), Some(0), "token --jwt-secret-file: {}", ran.stderr);
    let jwt = ran.stdout.trim();
    let _s43 = SseClient::open(&bridge.base(), "43", "", Some(jwt)).await;
}

// ---------------------------------------------------------------------------------------
// 3. `token`

#[tokio::test]
async fn token_subcommand_prints_a_jwt_the_bridge_accepts() {
    const S: &str = "another-secret-for-the-token-test";
    let ran = run_bin(&["token", "--user", "42", "--jwt-secret", S, "--scope", "publish,presence", "--admin"], &[]);
    assert_eq!(ran.code(), Some(0), "token failed: {}", ran.stderr);
    let jwt = ran.stdout.trim().to_owned();
    assert!(!jwt.contains('\n'), "token prints one line: {jwt:?}");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {jwt}");
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0])).unwrap();
    assert_eq!(header["alg"], "HS256");
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
    println!("token claims: {claims}");
    assert_eq!(claims["sub"], "42");
    assert_eq!(claims["rb_admin"], true);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert!((now + 3500..=now + 3700).contains(&exp), "exp {exp} is not about an hour from now ({now})");
    let scopes: Vec<String> = match &claims["rb_scope"] {
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        Value::String(s) => s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        other => panic!("rb_scope is {other}"),
    };
    assert!(scopes.contains(&"publish".to_owned()) && scopes.contains(&"presence".to_owned()), "{scopes:?}");

    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &["--jwt-secret", S]);
    let base = bridge.base();
    let mut sse = SseClient::open(&base, "42", "", Some(&jwt)).await;
    let resp =
        post_publish(&base, &jwt, &json!({"users": ["42"], "event": "message_new", "data": {"text": "via http"}}))
            .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"published": 1}));
    let e = sse.next().await;
    assert_eq!(e.event, "message_new");
    assert_eq!(envelope(&e)["data"]["text"], "via http");
    // --admin: may read another user's stream.
    let _other = SseClient::open(&base, "43", "", Some(&jwt)).await;
    // The secret matters: a token signed with another secret is refused.
    assert_eq!(open_raw(&base, "42", "", Some(&token("42"))).await.status(), 401);

    let ran = run_bin(&["token", "--user", "a.b", "--jwt-secret", S], &[]);
    assert_eq!(ran.code(), Some(64), "token --user a.b: {}", ran.stderr);
    assert!(single_line(&ran).contains("--user"), "{}", ran.stderr);
    assert!(ran.stdout.trim().is_empty(), "no token printed for a bad user: {}", ran.stdout);
}

// ---------------------------------------------------------------------------------------
// 4. `send`

#[tokio::test]
async fn send_subcommand_publishes_to_users_and_broadcast() {
    let nats = NatsServer::start();
    let url = nats.url();
    let bridge = BridgeProcess::start(&url, &[]);
    let base = bridge.base();
    let mut s42 = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    let mut s43 = SseClient::open(&base, "43", "", Some(&token("43"))).await;

    let ran = run_bin(&["send", "--nats-url", &url, "--user", "42", "--event", "message_new", r#"{"text":"hi"}"#], &[]);
    println!("send --user 42: {:?} in {:?}", ran.code(), ran.took);
    assert_eq!(ran.code(), Some(0), "send failed: {}", ran.stderr);
    assert!(ran.stdout.contains("user.42.message_new"), "{}", ran.stdout);
    let e = s42.next().await;
    assert_eq!(e.event, "message_new");
    let env = envelope(&e);
    assert_eq!(env["data"], json!({"text": "hi"}));
    assert_eq!(env["userId"], "42");

    let ran = run_bin(&["send", "--nats-url", &url, "--broadcast", "--event", "system_alert", r#""maintenance""#], &[]);
    assert_eq!(ran.code(), Some(0), "send --broadcast failed: {}", ran.stderr);
    for s in [&mut s42, &mut s43] {
        // For 43 this is also the first event: it never got 42's message.
        let e = s.next().await;
        assert_eq!(e.event, "system_alert");
        let env = envelope(&e);
        assert_eq!(env["data"], "maintenance");
        assert!(env.get("userId").is_none(), "broadcast has no userId: {env}");
    }

    let ran = run_bin(
        &["send", "--nats-url", &url, "--user", "42", "--user", "43", "--event", "message_new", r#"{"n":2}"#],
        &[],
    );
    assert_eq!(ran.code(), Some(0), "send --user 42 --user 43 failed: {}", ran.stderr);
    for (s, user) in [(&mut s42, "42"), (&mut s43, "43")] {
        let env = envelope(&s.next().await);
        assert_eq!(env["data"], json!({"n": 2}));
        assert_eq!(env["userId"], user);
    }

    let ran = run_bin(&["send", "--nats-url", &url, "--user", "42", "--event", "message_new", "not json"], &[]);
    assert_eq!(ran.code(), Some(64), "non-JSON payload: {}", ran.stderr);
    assert!(single_line(&ran).contains("JSON"), "{}", ran.stderr);

    let dead = dead_nats_url();
    let ran = run_bin(&["send", "--nats-url", &dead, "--user", "42", "--event", "message_new", "1"], &[]);
    println!("send to a dead NATS: {:?} in {:?}: {}", ran.code(), ran.took, ran.stderr.trim());
    assert_eq!(ran.code(), Some(69), "unreachable NATS: {}", ran.stderr);
    let err = single_line(&ran);
    assert!(err.contains("is nats-server running") && err.contains(&dead), "{err}");

    let ran = run_bin(&["send", "--nats-url", &url, "--user", "*", "--event", "message_new", "1"], &[]);
    assert_eq!(ran.code(), Some(64), "--user '*': {}", ran.stderr);
    assert!(single_line(&ran).contains("--user"), "{}", ran.stderr);
    let ran = run_bin(&["send", "--nats-url", &url, "--user", "42", "--event", ">", "1"], &[]);
    assert_eq!(ran.code(), Some(64), "--event '>': {}", ran.stderr);
    // The stream name becomes part of a JetStream API subject: the same rule as `serve`.
    let ran = run_bin(
        &["send", "--nats-url", &url, "--stream-name", "REAL.TIME", "--user", "42", "--event", "message_new", "1"],
        &[],
    );
    assert_eq!(ran.code(), Some(64), "--stream-name 'REAL.TIME': {}", ran.stderr);
    assert!(single_line(&ran).contains("--stream-name"), "{}", ran.stderr);

    // Nothing else was delivered (the refused sends published nothing).
    expect_sentinel_next(&mut s42, &nats.client().await, "user.42.sentinel").await;
}

// ---------------------------------------------------------------------------------------
// 5. `listen`

#[tokio::test]
async fn listen_subcommand_prints_the_stream() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let mut cmd = bridge_command(
        &["listen", "--url", &bridge.base(), "--user", "42", "--jwt-secret", SECRET, "--events", "message_new"],
        &[],
    );
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let out = lines_of(child.0.stdout.take().unwrap());
    let err = lines_of(child.0.stderr.take().unwrap());

    // It prints "connected to <url>" once the bridge answered 200, i.e. the stream is attached.
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match err.recv_timeout(left) {
            Ok(l) if l.contains("connected to") => break,
            Ok(l) => println!("listen stderr: {l}"),
            Err(e) => panic!("listen did not connect within {WAIT:?} ({e})"),
        }
    }
    let client = nats.client().await;
    publish(&client, "user.42.typing_start", r#"{"filtered":"out"}"#).await;
    publish(&client, "user.42.message_new", r#"{"text":"to the terminal"}"#).await;
    let line = tokio::task::spawn_blocking(move || out.recv_timeout(WAIT).map(|l| (l, out))).await.unwrap();
    let (line, out) = line.unwrap_or_else(|e| panic!("listen printed nothing within {WAIT:?} ({e})"));
    println!("listen printed: {line}");
    assert!(line.contains("message_new"), "{line}");
    assert!(line.contains(r#"{"text":"to the terminal"}"#), "{line}");
    assert!(!line.contains("typing_start"), "--events message_new lets typing_start through: {line}");
    assert!(out.try_recv().is_err(), "only one event was printed");
    assert!(child.0.try_wait().unwrap().is_none(), "listen keeps running");
    drop(child);
}

// ---------------------------------------------------------------------------------------
// 6. Tokens never reach the logs

#[tokio::test]
async fn tokens_never_appear_in_debug_logs() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]); // RUST_LOG=debug (harness default)
    let base = bridge.base();

    let t_query = token("42");
    let t_header = token("43");
    let t_cookie = token("44");
    let t_publish = token_with("svc", false, &["publish"]);
    // A well-formed JWT with a forged signature, and plain garbage.
    let bad_jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6NDEwMjQ0NDgwMH0.Zm9yZ2VkLXNpZ25hdHVyZS1tdXN0LW5vdC1iZS1sb2dnZWQ";
    let garbage = "garbage-token-7f3a9c2e1b";

    let _s1 = SseClient::open(&base, "42", &format!("?access_token={t_query}"), None).await;
    let _s2 = SseClient::open(&base, "43", "", Some(&t_header)).await;
    let cookie = reqwest::Client::new()
        .get(format!("{base}/v1/users/44/events"))
        .header("cookie", format!("rb_token={t_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), 200);
    assert_eq!(open_raw(&base, "42", "", Some(bad_jwt)).await.status(), 401);
    assert_eq!(open_raw(&base, "42", &format!("?access_token={bad_jwt}"), None).await.status(), 401);
    assert_eq!(open_raw(&base, "42", "", Some(garbage)).await.status(), 401);
    assert_eq!(open_raw(&base, "42", &format!("?access_token={garbage}"), None).await.status(), 401);
    let resp = post_publish(&base, &t_publish, &json!({"users": ["42"], "event": "message_new", "data": 1})).await;
    assert_eq!(resp.status(), 202);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/publish?access_token={garbage}"))
        .json(&json!({"broadcast": true, "event": "x", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The requests were logged (by path): the check below is not vacuous.
    let logs = eventually("the request paths in the logs", WAIT, || {
        let logs = bridge.logs();
        let ok = logs.contains("/v1/users/42/events") && logs.contains("/v1/publish");
        async move { ok.then_some(logs) }
    })
    .await;
    println!("{} log lines captured", logs.lines().count());
    let mut secrets: Vec<(&str, String)> = vec![("garbage token", garbage.to_owned())];
    for (what, t) in [
        ("query token", t_query.as_str()),
        ("header token", t_header.as_str()),
        ("cookie token", t_cookie.as_str()),
        ("publish token", t_publish.as_str()),
        ("forged token", bad_jwt),
    ] {
        let (_, payload_and_sig) = t.split_once('.').unwrap();
        let sig = t.rsplit('.').next().unwrap();
        secrets.push((what, t.to_owned()));
        secrets.push((what, payload_and_sig.to_owned()));
        secrets.push((what, sig.to_owned()));
    }
    for (what, s) in &secrets {
        assert!(!logs.contains(s.as_str()), "the {what} (or a part of it: {s}) is in the logs:\n{logs}");
    }
}

// ---------------------------------------------------------------------------------------
// 7. Presence across two instances

async fn until_presence(what: &str, timeout: Duration, base: &str, tok: &str, want: &Value) -> Duration {
    let start = Instant::now();
    eventually(what, timeout, || {
        let (base, tok, want) = (base.to_owned(), tok.to_owned(), want.clone());
        async move { (counts(&presence_http(&base, "42", &tok).await) == want).then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test]
async fn presence_counts_streams_over_every_instance() {
    let nats = NatsServer::start();
    let a = BridgeProcess::start(&nats.url(), &[]);
    let mut b = BridgeProcess::start(&nats.url(), &[]);
    let ptok = token_with("svc", false, &["presence"]);
    let _a1 = SseClient::open(&a.base(), "42", "", Some(&token("42"))).await;
    let mut b1 = SseClient::open(&b.base(), "42", "", Some(&token("42"))).await;
    let mut b2 = SseClient::open(&b.base(), "42", "", Some(&token("42"))).await;

    let three = json!({"userId": "42", "connected": true, "streams": 3});
    let took = until_presence("A counts 3 streams", WAIT, &a.base(), &ptok, &three).await;
    println!("A saw 3 streams after {took:?}");
    until_presence("B counts 3 streams", WAIT, &b.base(), &ptok, &three).await;
    let client = nats.client().await;
    assert_eq!(counts(&presence_nats(&client, "42").await), three);
    let nobody = json!({"userId": "a-b", "connected": false, "streams": 0});
    assert_eq!(counts(&presence_nats(&client, "a-b").await), nobody);
    assert_eq!(counts(&presence_http(&a.base(), "a-b", &ptok).await), nobody);
    // The presence scope is required.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/presence/42", a.base()))
        .bearer_auth(token("42"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // A graceful stop (TERM) removes that instance's streams, and it says goodbye: the
    // next query does not wait for its answer.
    let five = json!({"userId": "42", "connected": true, "streams": 5});
    let mut c = BridgeProcess::start(&nats.url(), &["--shutdown-grace", "5s"]);
    let _c1 = SseClient::open(&c.base(), "42", "", Some(&token("42"))).await;
    let _c2 = SseClient::open(&c.base(), "42", "", Some(&token("42"))).await;
    until_presence("A counts C's streams too", WAIT, &a.base(), &ptok, &five).await;
    c.signal("TERM");
    let start = Instant::now();
    let (status, _) = c.wait_exit_async(GRACE + WAIT).await.expect("C exits after TERM");
    assert_eq!(status.code(), Some(0), "C after TERM: {status}");
    let took = until_presence("A counts 3 after C stopped", Duration::from_secs(30), &a.base(), &ptok, &three).await;
    println!(
        "after SIGTERM of C, A counted 3 streams within {:?} of the signal ({took:?} after C exited)",
        start.elapsed()
    );
    // A heard C's goodbye (rather than forgetting it after the peer TTL): queries no longer
    // wait for it. Read from A's log, not from how long a query takes.
    let c_instance = instance_of(&c).await;
    eventually("A to hear C's bye", WAIT, || {
        let heard = a.logs().lines().any(|l| l.contains("a peer said bye") && l.contains(&c_instance));
        async move { heard.then_some(()) }
    })
    .await;
    assert_eq!(counts(&presence_http(&a.base(), "42", &ptok).await), three);
    assert_eq!(counts(&presence_nats(&client, "42").await), three);

    // B dies without a word: within 30 s A no longer counts its streams.
    b.signal("KILL");
    let start = Instant::now();
    b.wait_exit_async(WAIT).await.expect("B killed");
    b1.expect_end(WAIT).await;
    b2.expect_end(WAIT).await;
    let one = json!({"userId": "42", "connected": true, "streams": 1});
    until_presence("A counts 1 stream after B was killed", Duration::from_secs(30), &a.base(), &ptok, &one).await;
    println!("after SIGKILL of B, A counted 1 stream within {:?}", start.elapsed());
    assert_eq!(counts(&presence_nats(&client, "42").await), one);
}

/// The clients of a presence answer as sorted `(id, instance)` pairs, after checking that each
/// `since` is an RFC 3339 UTC time with milliseconds between `opened` and now.
fn clients_of(v: &Value, opened: SystemTime) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in v["clients"].as_array().unwrap_or_else(|| panic!("no clients list in {v}")) {
        let since = c["since"].as_str().unwrap_or_else(|| panic!("no since in {c}"));
        assert!(since.len() == 24 && since.ends_with('Z'), "since {since:?} is not RFC 3339 UTC with ms");
        let t = humantime::parse_rfc3339(since).unwrap();
        // The answer has ms; `opened` may have finer digits.
        let earliest = opened - Duration::from_millis(1);
        assert!(t >= earliest && t <= SystemTime::now(), "since {since} is not when the stream opened");
        out.push((c["id"].as_str().unwrap().to_owned(), c["instance"].as_str().unwrap().to_owned()));
    }
    out.sort();
    out
}

/// A presence answer of `base` for 42 listing `n` clients, within [`WAIT`].
async fn until_clients(what: &str, base: &str, tok: &str, n: usize) -> Value {
    eventually(what, WAIT, || {
        let (base, tok) = (base.to_owned(), tok.to_owned());
        async move {
            let v = presence_http(&base, "42", &tok).await;
            (v["clients"].as_array().map(Vec::len) == Some(n)).then_some(v)
        }
    })
    .await
}

#[tokio::test]
async fn presence_lists_each_client_with_its_instance_and_since_over_every_instance() {
    let nats = NatsServer::start();
    // A short heartbeat: a stream whose client left is noticed within a second at worst.
    let a = BridgeProcess::start(&nats.url(), &["--heartbeat", "1s"]);
    let b = BridgeProcess::start(&nats.url(), &["--heartbeat", "1s"]);
    let (ia, ib) = (instance_of(&a).await, instance_of(&b).await);
    assert_ne!(ia, ib);
    let ptok = token_with("svc", false, &["presence"]);
    let opened = SystemTime::now();
    let _a1 = SseClient::open(&a.base(), "42", "?clientId=tab-1", Some(&token("42"))).await;
    let _a2 = SseClient::open(&a.base(), "42", "", Some(&token("42"))).await;
    let b1 = SseClient::open(&b.base(), "42", "?events=x&clientId=phone", Some(&token("42"))).await;
    let _b2 = SseClient::open(&b.base(), "42", "", Some(&token("42"))).await;
    // Another user's stream is not listed for 42.
    let _other = SseClient::open(&b.base(), "43", "?clientId=other", Some(&token("43"))).await;

    let v = until_clients("A lists the 4 clients of both instances", &a.base(), &ptok, 4).await;
    assert_eq!(counts(&v), json!({"userId": "42", "connected": true, "streams": 4}));
    let listed = clients_of(&v, opened);
    println!("A lists {listed:?}");
    let given: Vec<_> = listed.iter().filter(|(id, _)| id == "tab-1" || id == "phone").cloned().collect();
    assert_eq!(given, vec![("phone".to_owned(), ib.clone()), ("tab-1".to_owned(), ia.clone())]);
    // The two streams without clientId got made-up ids: distinct, in the grammar, on the right instance.
    let mut made_up: Vec<_> = listed.iter().filter(|(id, _)| id != "tab-1" && id != "phone").cloned().collect();
    made_up.sort_by(|x, y| x.1.cmp(&y.1));
    let mut want_instances = vec![ia.clone(), ib.clone()];
    want_instances.sort();
    assert_eq!(made_up.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(), want_instances);
    assert_ne!(made_up[0].0, made_up[1].0);
    for (id, _) in &made_up {
        assert!(id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "made-up id {id:?}");
    }

    // B and the NATS request give the same list.
    let vb = until_clients("B lists the 4 clients", &b.base(), &ptok, 4).await;
    assert_eq!(clients_of(&vb, opened), listed);
    let client = nats.client().await;
    let vn = presence_nats(&client, "42").await;
    assert_eq!(counts(&vn), counts(&v));
    assert_eq!(clients_of(&vn, opened), listed);
    // Oldest first: tab-1 opened before phone.
    let order: Vec<&str> = vn["clients"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
    let (t, p) = (order.iter().position(|i| *i == "tab-1"), order.iter().position(|i| *i == "phone"));
    assert!(t < p, "not oldest first: {order:?}");

    // A closed stream leaves the list, on every instance.
    drop(b1);
    let v = until_clients("A lists 3 clients once phone closed", &a.base(), &ptok, 3).await;
    assert_eq!(v["streams"], 3);
    let left = clients_of(&v, opened);
    assert!(left.iter().all(|(id, _)| id != "phone"), "{left:?}");
    let vn = presence_nats(&client, "42").await;
    assert_eq!(clients_of(&vn, opened), left);
}

// ---------------------------------------------------------------------------------------
// 8. NATS restarted under an open stream

#[tokio::test]
async fn events_flow_again_on_the_same_stream_after_a_nats_restart() {
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    let client = nats.client().await;
    publish(&client, "user.42.message_new", r#"{"n":0}"#).await;
    assert_eq!(envelope(&sse.next().await)["data"], json!({"n": 0}));

    nats.restart();
    let start = Instant::now();
    let mut n = 0u32;
    let e = loop {
        assert!(
            start.elapsed() < WAIT,
            "no event on the open stream within {WAIT:?} of the NATS restart ({n} publishes); logs:\n{}",
            bridge.logs()
        );
        n += 1;
        let payload = format!(r#"{{"n":{n}}}"#);
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            client.publish("user.42.message_new", payload.into()).await?;
            client.flush().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await;
        if let Some(e) = sse.next_within(Duration::from_millis(200)).await {
            break e;
        }
    };
    println!("after the NATS restart, events flowed again after {:?} ({n} publishes)", start.elapsed());
    assert_eq!(e.event, "message_new");
    assert_eq!(envelope(&e)["userId"], "42");
}

// ---------------------------------------------------------------------------------------
// B. A producer in another language: Python with nats-py

fn python_producer() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/producers/publish.py")
}

/// Fails (never skips) when python3 or nats-py is missing.
fn require_nats_py() {
    let ran = run_bounded(
        {
            let mut c = Command::new("python3");
            c.args(["-c", "import nats"]);
            c
        },
        WAIT,
    );
    assert!(
        ran.status.success(),
        "python3 cannot import nats-py: `pip install nats-py` (for the python3 on PATH) and run again.\n{}",
        ran.stderr.trim()
    );
}

fn run_producer(args: &[&str]) -> Ran {
    let mut c = Command::new("python3");
    c.arg(python_producer()).args(args);
    run_bounded(c, WAIT)
}

#[tokio::test]
async fn python_producer_reaches_the_stream() {
    require_nats_py();
    let nats = NatsServer::start();
    let url = nats.url();
    let bridge = BridgeProcess::start(&url, &[]);
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;

    let ran =
        run_producer(&["--url", &url, "--user", "42", "--event", "message_new", "--data", r#"{"text":"from python"}"#]);
    println!("publish.py: {:?} in {:?}: {}", ran.code(), ran.took, ran.stdout.trim());
    assert_eq!(ran.code(), Some(0), "publish.py failed: {}", ran.stderr);
    let e = sse.next().await;
    assert_eq!(e.event, "message_new");
    let env = envelope(&e);
    assert_eq!(env["data"], json!({"text": "from python"}));
    assert_eq!(env["userId"], "42");

    let ran = run_producer(&[
        "--url",
        &url,
        "--user",
        "42",
        "--event",
        "message_new",
        "--data",
        r#"{"k":1}"#,
        "--count",
        "3",
    ]);
    assert_eq!(ran.code(), Some(0), "publish.py --count 3 failed: {}", ran.stderr);
    for _ in 0..3 {
        assert_eq!(envelope(&sse.next().await)["data"], json!({"k": 1}));
    }

    // The bridge runs in history mode here (JetStream on): the same Nats-Msg-Id twice is stored,
    // and delivered, once.
    let ran = run_producer(&[
        "--url",
        &url,
        "--user",
        "42",
        "--event",
        "message_new",
        "--data",
        r#"{"k":2}"#,
        "--count",
        "2",
        "--msg-id",
        "py-1",
    ]);
    assert_eq!(ran.code(), Some(0), "publish.py --msg-id failed: {}", ran.stderr);
    assert_eq!(envelope(&sse.next().await)["data"], json!({"k": 2}));

    let dead = dead_nats_url();
    let ran = run_producer(&["--url", &dead, "--user", "42", "--event", "message_new", "--data", "1"]);
    println!("publish.py to a dead NATS: {:?} in {:?}: {}", ran.code(), ran.took, ran.stderr.trim());
    assert_eq!(ran.code(), Some(2), "unreachable NATS: {}", ran.stderr);
    assert!(ran.stderr.contains(&format!("NATS not reachable at {dead}: is nats-server running?")), "{}", ran.stderr);
    assert!(ran.took < Duration::from_secs(5), "fails fast, took {:?}", ran.took);

    // Nothing else arrived (the failed run published nothing).
    expect_sentinel_next(&mut sse, &nats.client().await, "user.42.sentinel").await;
}
