//! Realtime Bridge example producer in Rust (async-nats).
//!
//! The original system's server side, with NATS as the realtime service: the port
//! `IRealtimeService` becomes [`RealtimeService`] (`user.<userId>.<event>` and
//! `broadcast.<event>` subjects), and the three use cases `SendRealtimeMessage`,
//! `NotifyTransactionCompleted` and `NotifyTyping` are the functions of the same names.
//!
//! ```sh
//! cargo run -- [NATS_URL] [USER_ID]        # or NATS_URL=... USER_ID=... cargo run
//! ```
//!
//! Runs one scenario for USER_ID: "rust-service is typing…" for TYPING_MS (1500 ms), a chat
//! message, a completed CREDIT transaction of 250.00 on account `acc-<USER_ID>`, and a
//! notification. Exit code 69 when NATS is not reachable, 64 on a bad argument.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;

type Error = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------
// The port: IRealtimeService, over NATS.

/// `sendEventToUser`, `sendEventToUsers` and `broadcastEvent` of the original port.
#[derive(Debug, Clone)]
pub struct RealtimeService {
    client: async_nats::Client,
}

impl RealtimeService {
    pub fn new(client: async_nats::Client) -> Self {
        Self { client }
    }

    /// Publishes `data` as JSON on `user.<user_id>.<event>`.
    pub async fn send_event_to_user<T: Serialize>(&self, user_id: &str, event: &str, data: &T) -> Result<(), Error> {
        self.send_event_to_users(&[user_id], event, data).await
    }

    pub async fn send_event_to_users<T: Serialize>(&self, user_ids: &[&str], event: &str, data: &T) -> Result<(), Error> {
        check_token("event", event)?;
        let payload = serde_json::to_vec(data)?;
        for user_id in user_ids {
            check_token("user id", user_id)?;
            self.client.publish(format!("user.{user_id}.{event}"), payload.clone().into()).await?;
        }
        Ok(())
    }

    pub async fn broadcast_event<T: Serialize>(&self, event: &str, data: &T) -> Result<(), Error> {
        check_token("event", event)?;
        self.client.publish(format!("broadcast.{event}"), serde_json::to_vec(data)?.into()).await?;
        Ok(())
    }

    /// Sets `Nats-Msg-Id`: with the bridge's history on, JetStream stores a retried publish once.
    pub async fn send_event_to_user_once<T: Serialize>(
        &self,
        user_id: &str,
        event: &str,
        data: &T,
        msg_id: &str,
    ) -> Result<(), Error> {
        check_token("user id", user_id)?;
        check_token("event", event)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let subject = format!("user.{user_id}.{event}");
        self.client.publish_with_headers(subject, headers, serde_json::to_vec(data)?.into()).await?;
        Ok(())
    }

    /// Returns once everything published so far has been written to the server.
    pub async fn flush(&self) -> Result<(), Error> {
        self.client.flush().await?;
        Ok(())
    }
}

/// User ids and event names are 1 to 128 characters of `[A-Za-z0-9_-]` (never a NATS wildcard).
fn check_token(what: &str, s: &str) -> Result<(), Error> {
    let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {s:?} must be 1 to 128 characters of [A-Za-z0-9_-]").into())
    }
}

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
    rt.send_event_to_user_once(&input.recipient_id, "message_new", &dto, &id).await
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
pub async fn notify_transaction_completed(rt: &RealtimeService, input: NotifyTransactionCompletedInput) -> Result<(), Error> {
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
    std::env::args().nth(n).or_else(|| std::env::var(env).ok()).filter(|s| !s.is_empty()).unwrap_or_else(|| default.to_owned())
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
    if let Err(e) = check_token("USER_ID", &user_id) {
        eprintln!("producer: {e}");
        return ExitCode::from(EX_USAGE);
    }

    // Fail fast (no retry loop) with a message a person can act on.
    let client = match async_nats::ConnectOptions::new()
        .name("realtime-bridge-example-rust")
        .connection_timeout(Duration::from_secs(3))
        .connect(nats_url.as_str())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("NATS not reachable at {nats_url}: is nats-server running? ({e})");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let rt = RealtimeService::new(client);
    match scenario(&rt, &user_id, Duration::from_millis(typing_ms)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: publishing to {nats_url} failed: {e}");
            ExitCode::from(EX_UNAVAILABLE)
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
