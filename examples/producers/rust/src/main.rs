//! Realtime Bridge example producer in Rust, over the producer library
//! (`realtime-bridge-producer`, docs/protocol.md §1.7).
//!
//! The original system's server side, with NATS as the realtime service: the port
//! `IRealtimeService` is the library's [`RealtimeService`] (`user.<userId>.<event>` and
//! `broadcast.<event>` subjects, acknowledged by JetStream when the bridge keeps history), and
//! the three use cases `SendRealtimeMessage`, `NotifyTransactionCompleted` and `NotifyTyping`
//! are the functions of the same names.
//!
//! ```sh
//! cargo run -- [NATS_URL] [USER_ID]        # or NATS_URL=... USER_ID=... cargo run
//! ```
//!
//! Runs one scenario for USER_ID: "rust-service is typing…" for TYPING_MS (1500 ms), a chat
//! message, a completed CREDIT transaction of 250.00 on account `acc-<USER_ID>`, and a
//! notification. Exit code 69 when NATS is not reachable (or a publish is not confirmed), 64
//! on a bad argument.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use realtime_bridge_producer::{async_nats, Error, Options, RealtimeService, SendOptions, UserId};
use serde::Serialize;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;

// ---------------------------------------------------------------------------------------
// The DTOs (realtime.dto.ts).

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeMessageDto {
    pub id: String,
    pub conversation_id: String,
    pub sender_id: String,
    pub recipient_id: String,
    pub content: String,
    pub created_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeTransactionDto {
    pub transaction_id: String,
    pub account_id: String,
    pub user_id: String,
    pub amount: f64,
    /// `CREDIT` or `DEBIT`.
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub completed_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeNotificationDto {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub read: bool,
    pub created_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TypingDto<'a> {
    conversation_id: &'a str,
    user_id: &'a str,
}

// ---------------------------------------------------------------------------------------
// The use cases.

#[derive(Debug)]
pub struct SendRealtimeMessageInput {
    pub conversation_id: String,
    pub sender_id: String,
    pub recipient_id: String,
    pub content: String,
}

/// SendRealtimeMessageUseCase: `message_new` to the recipient.
pub async fn send_realtime_message(rt: &RealtimeService, input: SendRealtimeMessageInput) -> Result<(), Error> {
    let id = new_id("msg");
    let dto = RealtimeMessageDto {
        id: id.clone(),
        conversation_id: input.conversation_id,
        sender_id: input.sender_id,
        recipient_id: input.recipient_id.clone(),
        content: input.content,
        created_at: now_rfc3339(),
    };
    // The message id doubles as the NATS message id: a retried publish is delivered once.
    rt.send_event_to_user_with(&input.recipient_id, "message_new", &dto, &SendOptions::msg_id(id)).await
}

#[derive(Debug)]
pub struct NotifyTransactionCompletedInput {
    pub transaction_id: String,
    pub account_id: String,
    pub user_id: String,
    pub amount: f64,
    pub kind: TransactionKind,
}

#[derive(Debug, Clone, Copy)]
pub enum TransactionKind {
    Credit,
    Debit,
}

/// NotifyTransactionCompletedUseCase: `transaction_completed` to the account's owner.
pub async fn notify_transaction_completed(
    rt: &RealtimeService,
    input: NotifyTransactionCompletedInput,
) -> Result<(), Error> {
    let dto = RealtimeTransactionDto {
        transaction_id: input.transaction_id,
        account_id: input.account_id,
        user_id: input.user_id.clone(),
        amount: input.amount,
        kind: match input.kind {
            TransactionKind::Credit => "CREDIT",
            TransactionKind::Debit => "DEBIT",
        }
        .to_owned(),
        status: "COMPLETED".to_owned(),
        completed_at: now_rfc3339(),
    };
    rt.send_event_to_user(&input.user_id, "transaction_completed", &dto).await
}

#[derive(Debug)]
pub struct NotifyTypingInput {
    pub conversation_id: String,
    /// Who is typing.
    pub user_id: String,
    pub recipient_id: String,
    pub is_typing: bool,
}

/// NotifyTypingUseCase: `typing_start` or `typing_stop` to the recipient.
pub async fn notify_typing(rt: &RealtimeService, input: NotifyTypingInput) -> Result<(), Error> {
    let event = if input.is_typing { "typing_start" } else { "typing_stop" };
    let dto = TypingDto { conversation_id: &input.conversation_id, user_id: &input.user_id };
    rt.send_event_to_user(&input.recipient_id, event, &dto).await
}

/// A `notification` for the bell.
pub async fn send_notification(rt: &RealtimeService, user_id: &str, title: &str, message: &str) -> Result<(), Error> {
    let dto = RealtimeNotificationDto {
        id: new_id("notif"),
        kind: "info".to_owned(),
        title: title.to_owned(),
        message: message.to_owned(),
        read: false,
        created_at: now_rfc3339(),
    };
    rt.send_event_to_user(user_id, "notification", &dto).await
}

// ---------------------------------------------------------------------------------------

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn new_id(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-rs-{nanos:x}-{}", std::process::id())
}

/// Argument `n` (1-based), else the environment variable, else the default.
fn setting(n: usize, env: &str, default: &str) -> String {
    std::env::args()
        .nth(n)
        .or_else(|| std::env::var(env).ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let nats_url = setting(1, "NATS_URL", "nats://127.0.0.1:4222");
    let user_id = setting(2, "USER_ID", "42");
    let typing_ms: u64 = match setting(3, "TYPING_MS", "1500").parse() {
        Ok(ms) => ms,
        Err(_) => {
            eprintln!("producer: TYPING_MS must be a number of milliseconds");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = UserId::parse(&user_id) {
        eprintln!("producer: USER_ID {user_id:?} {e}");
        return ExitCode::from(EX_USAGE);
    }

    // Fail fast (no retry loop) with a message a person can act on.
    let nats = async_nats::ConnectOptions::new()
        .name("realtime-bridge-example-rust")
        .connection_timeout(Duration::from_secs(3));
    let rt = match RealtimeService::connect_with(nats_url.as_str(), nats, Options::default()).await {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("NATS not reachable at {nats_url}: is nats-server running? ({e})");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let outcome = scenario(&rt, &user_id, Duration::from_millis(typing_ms)).await;
    // Waits for anything still in flight, then closes the connection it opened.
    let closed = rt.close().await;
    match outcome.and(closed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: publishing to {nats_url} failed ({}): {e}", e.code());
            ExitCode::from(if e.is_input_error() { EX_USAGE } else { EX_UNAVAILABLE })
        }
    }
}

async fn scenario(rt: &RealtimeService, user_id: &str, typing: Duration) -> Result<(), Error> {
    let me = "rust-service";
    let conversation_id = "demo";
    let typing_input = |is_typing| NotifyTypingInput {
        conversation_id: conversation_id.to_owned(),
        user_id: me.to_owned(),
        recipient_id: user_id.to_owned(),
        is_typing,
    };

    notify_typing(rt, typing_input(true)).await?;
    rt.flush().await?;
    println!("typing_start          → user.{user_id}.typing_start ({me} is typing for {} ms)", typing.as_millis());
    tokio::time::sleep(typing).await;

    send_realtime_message(
        rt,
        SendRealtimeMessageInput {
            conversation_id: conversation_id.to_owned(),
            sender_id: me.to_owned(),
            recipient_id: user_id.to_owned(),
            content: "Hello from Rust (async-nats)".to_owned(),
        },
    )
    .await?;
    notify_typing(rt, typing_input(false)).await?;
    println!("message_new           → user.{user_id}.message_new");

    notify_transaction_completed(
        rt,
        NotifyTransactionCompletedInput {
            transaction_id: new_id("tx"),
            account_id: format!("acc-{user_id}"),
            user_id: user_id.to_owned(),
            amount: 250.0,
            kind: TransactionKind::Credit,
        },
    )
    .await?;
    println!("transaction_completed → CREDIT 250.00 on acc-{user_id}");

    send_notification(rt, user_id, "Payment received", "Rust service credited 250.00 € to your account").await?;
    println!("notification          → user.{user_id}.notification");

    rt.flush().await?;
    Ok(())
}
