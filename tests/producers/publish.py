#!/usr/bin/env python3
"""Publish events to Realtime Bridge with the repository's Python package (python/, over nats-py;
docs/protocol.md §1 and §1.7).

    python3 tests/producers/publish.py --url nats://127.0.0.1:4222 \
        --user 42 --event message_new --data '{"text":"from python"}' [--count N] [--msg-id ID]

Subjects: ``user.<userId>.<event>`` (``--user``, repeatable) or ``broadcast.<event>``
(``--broadcast``). The payload must be one JSON value; it becomes the envelope's ``data``. When
the bridge keeps history (the stream exists), each publish waits for JetStream's
acknowledgement; ``--msg-id`` is the Nats-Msg-Id (``<id>:<subject>`` with several users).
This tool imports the package from this checkout's python/src, so it needs only nats-py.

Exit codes: 0 published and flushed; 2 NATS not reachable (or did not confirm);
64 bad arguments (invalid id, event name or JSON payload; ``end`` and ``reset`` are reserved).
"""

import argparse
import asyncio
import json
import pathlib
import re
import sys

# The package of this checkout, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python" / "src"))

EX_UNAVAILABLE = 2
EX_USAGE = 64

TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"publish.py: {message}", file=sys.stderr)
        sys.exit(EX_USAGE)


def parse_args(argv):
    p = Parser(description="Publish an event to Realtime Bridge over NATS (nats-py).")
    p.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS server URL")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", action="append", help="recipient user id (repeatable)")
    target.add_argument("--broadcast", action="store_true", help="send to every connected user")
    p.add_argument("--event", required=True, help="event name, e.g. message_new")
    p.add_argument("--data", required=True, help="the JSON payload (becomes data)")
    p.add_argument("--count", type=int, default=1, help="publish the event N times (default 1)")
    p.add_argument("--msg-id", help="Nats-Msg-Id header (JetStream drops duplicates)")
    p.add_argument("--timeout", type=float, default=2.0, help="connect and per-publish timeout in seconds")
    args = p.parse_args(argv)

    for u in args.user or []:
        if not TOKEN.match(u):
            p.error(f"--user: user id {u!r} must be 1 to 128 characters of [A-Za-z0-9_-]")
    if not TOKEN.match(args.event):
        p.error(f"--event: event name {args.event!r} must be 1 to 128 characters of [A-Za-z0-9_-]")
    if args.event in ("end", "reset"):
        p.error(f"--event: {args.event!r} is reserved for the stream's control frames")
    try:
        json.loads(args.data)
    except ValueError as e:
        p.error(f"--data: the payload must be JSON (e.g. '{{\"text\":\"hi\"}}'): {e}")
    if args.count < 1:
        p.error("--count: must be at least 1")
    return args


def describe(e):
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


async def run(args):
    try:
        from realtime_bridge import RealtimeService, RealtimeServiceError
    except ImportError as e:
        print(f"publish.py: nats-py is not installed: pip install nats-py ({describe(e)})", file=sys.stderr)
        return EX_UNAVAILABLE

    async def quiet(_err):
        # Connection errors are reported once, below, in one clear line.
        pass

    try:
        rt = await asyncio.wait_for(
            RealtimeService.connect(
                args.url,
                ack_timeout=args.timeout,
                publish_timeout=args.timeout,
                # The rest goes to nats.connect.
                connect_timeout=args.timeout,
                allow_reconnect=False,
                # Not 0: in nats-py 2.16, 0 (like -1) makes the initial connect retry a
                # refused server forever. With 1 and no wait: two quick tries, then
                # NoServersError. wait_for bounds the whole thing anyway.
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=quiet,
                name="realtime-bridge-python-producer",
            ),
            timeout=args.timeout + 1,
        )
    except Exception as e:  # noqa: BLE001 - any failure here means "not reachable"
        print(
            f"NATS not reachable at {args.url}: is nats-server running? ({describe(e.__cause__ or e)})",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE

    subjects = (
        [f"broadcast.{args.event}"]
        if args.broadcast
        else [f"user.{u}.{args.event}" for u in dict.fromkeys(args.user)]
    )
    data = json.loads(args.data)
    try:
        for _ in range(args.count):
            if args.broadcast:
                await rt.broadcast_event(args.event, data, msg_id=args.msg_id)
            else:
                await rt.send_event_to_users(args.user, args.event, data, msg_id=args.msg_id)
        await rt.flush()
    except RealtimeServiceError as e:
        if isinstance(e, ValueError):  # refused input, e.g. a payload over 256 KiB
            print(f"publish.py: {e}", file=sys.stderr)
            return EX_USAGE
        print(f"NATS did not confirm the publish at {args.url}: {e.code}: {e}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        try:
            await asyncio.wait_for(rt.close(), timeout=args.timeout)
        except Exception:  # noqa: BLE001
            pass
    for s in subjects:
        print(f"published {s} x{args.count}")
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
