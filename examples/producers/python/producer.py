#!/usr/bin/env python3
"""Realtime Bridge example producer in Python (the realtime_bridge package, over nats-py).

    python3 producer.py [NATS_URL] [USER_ID]      # or NATS_URL=... USER_ID=... python3 producer.py

The original system's server side with NATS as the realtime service: the package's
``RealtimeService`` (python/ in this repository, docs/protocol.md §1.7) has the port's methods;
``send_event_to_user`` publishes on ``user.<userId>.<event>``, acknowledged by JetStream when the
bridge keeps history. The use cases SendRealtimeMessage, NotifyTransactionCompleted and
NotifyTyping are functions. One scenario for USER_ID: "python-service is typing..." for TYPING_MS
(1500 ms), a chat message, a completed CREDIT of 100.00 on account ``acc-<USER_ID>``, and a
notification. Needs the package: ``pip install ./python`` (scripts/setup.sh does it).
Exit code 69 when NATS is not reachable, 64 on a bad argument.
"""

import asyncio
import os
import re
import sys
import uuid
from datetime import datetime, timezone

EX_USAGE = 64
EX_UNAVAILABLE = 69
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix):
    return f"{prefix}-py-{uuid.uuid4().hex[:12]}"


def check(what, s):
    # The arguments are checked before connecting; the package checks every send again.
    if not TOKEN.match(s):
        raise ValueError(f"{what} {s!r} must be 1 to 128 characters of [A-Za-z0-9_-]")


# --- Use cases ------------------------------------------------------------------------------


async def send_realtime_message(rt, conversation_id, sender_id, recipient_id, content):
    """SendRealtimeMessageUseCase: ``message_new`` to the recipient."""
    dto = {
        "id": new_id("msg"),
        "conversationId": conversation_id,
        "senderId": sender_id,
        "recipientId": recipient_id,
        "content": content,
        "createdAt": now(),
    }
    await rt.send_event_to_user(recipient_id, "message_new", dto, msg_id=dto["id"])


async def notify_transaction_completed(rt, transaction_id, account_id, user_id, amount, type_):
    """NotifyTransactionCompletedUseCase: ``transaction_completed`` to the account's owner."""
    dto = {
        "transactionId": transaction_id,
        "accountId": account_id,
        "userId": user_id,
        "amount": amount,
        "type": type_,  # "CREDIT" or "DEBIT"
        "status": "COMPLETED",
        "completedAt": now(),
    }
    await rt.send_event_to_user(user_id, "transaction_completed", dto)


async def notify_typing(rt, conversation_id, user_id, recipient_id, is_typing):
    """NotifyTypingUseCase: ``typing_start`` or ``typing_stop`` to the recipient."""
    event = "typing_start" if is_typing else "typing_stop"
    await rt.send_event_to_user(recipient_id, event, {"conversationId": conversation_id, "userId": user_id})


async def send_notification(rt, user_id, title, message):
    dto = {"id": new_id("notif"), "type": "info", "title": title, "message": message, "read": False, "createdAt": now()}
    await rt.send_event_to_user(user_id, "notification", dto)


# --- Main -----------------------------------------------------------------------------------


def setting(n, env, default):
    return (sys.argv[n] if len(sys.argv) > n and sys.argv[n] else None) or os.environ.get(env) or default


async def main():
    nats_url = setting(1, "NATS_URL", "nats://127.0.0.1:4222")
    user_id = setting(2, "USER_ID", "42")
    try:
        typing_s = float(setting(3, "TYPING_MS", "1500")) / 1000
        check("USER_ID", user_id)
    except ValueError as e:
        print(f"producer: {e}", file=sys.stderr)
        return EX_USAGE

    try:
        from realtime_bridge import RealtimeService
    except ImportError:
        print("producer: the realtime-bridge package is not installed: pip install ./python (from the repository root)", file=sys.stderr)
        return EX_UNAVAILABLE

    async def quiet(_err):
        pass  # reported once below

    try:
        # No reconnect loop: fail fast with a message a person can act on. (In nats-py 2.x
        # max_reconnect_attempts=0 would retry a refused first connect forever; 1 and no wait
        # gives up at once.) The extra keywords go to nats.connect.
        rt = await asyncio.wait_for(
            RealtimeService.connect(
                nats_url,
                name="realtime-bridge-example-python",
                connect_timeout=3,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=quiet,
            ),
            timeout=5,
        )
    except Exception as e:  # noqa: BLE001 - whatever it is, NATS is not reachable
        cause = e.__cause__ or e
        print(f"NATS not reachable at {nats_url}: is nats-server running? ({type(cause).__name__}: {cause})", file=sys.stderr)
        return EX_UNAVAILABLE

    me, conversation = "python-service", "demo"
    try:
        await notify_typing(rt, conversation, me, user_id, True)
        await rt.flush()
        print(f"typing_start          → user.{user_id}.typing_start ({me} is typing for {int(typing_s * 1000)} ms)")
        await asyncio.sleep(typing_s)

        await send_realtime_message(rt, conversation, me, user_id, "Hello from Python (nats-py)")
        await notify_typing(rt, conversation, me, user_id, False)
        print(f"message_new           → user.{user_id}.message_new")

        await notify_transaction_completed(rt, new_id("tx"), f"acc-{user_id}", user_id, 100.0, "CREDIT")
        print(f"transaction_completed → CREDIT 100.00 on acc-{user_id}")

        await send_notification(rt, user_id, "Refund received", "Python service credited 100.00 € (refund)")
        print(f"notification          → user.{user_id}.notification")
        await rt.flush()
    except Exception as e:  # noqa: BLE001
        print(f"producer: publishing to {nats_url} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        try:
            await asyncio.wait_for(rt.close(), timeout=3)
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
