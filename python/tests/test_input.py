"""Input checks (docs/protocol.md §1.7 "Input"): each code, and a refused call sends nothing."""

from __future__ import annotations

import asyncio
import math

from realtime_bridge import RealtimeInputError, RealtimeService, RealtimeServiceError
from support import RealTestCase, Spy, wait_until


class InputTest(RealTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.nats = self.start_nats()
        self.spy = await Spy().start(await self.client(self.nats.url), "user.>", "broadcast.>")
        # Core mode: a refused call must send nothing, whatever the mode; core shows it plainest.
        self.rt = await RealtimeService.connect(self.nats.url, mode="core", max_event_bytes=1000)
        self.addAsyncCleanup(self.rt.close)

    async def assert_refused(self, code: str, call: "asyncio.Future[None] | object", needle: str = "") -> None:
        with self.assertRaises(RealtimeInputError) as ctx:
            await call  # type: ignore[misc]
        self.assertEqual(ctx.exception.code, code, str(ctx.exception))
        self.assertIsInstance(ctx.exception, ValueError)
        self.assertIsInstance(ctx.exception, RealtimeServiceError)
        if needle:
            self.assertIn(needle, str(ctx.exception))

    async def test_each_input_error_code_and_nothing_is_sent(self) -> None:
        rt = self.rt
        cyclic: list = []
        cyclic.append(cyclic)
        await self.assert_refused("invalid_user_id", rt.send_event_to_user("a.b", "x", 1), "'a.b'")
        await self.assert_refused("invalid_user_id", rt.send_event_to_user("", "x", 1))
        await self.assert_refused("invalid_user_id", rt.send_event_to_user("x" * 129, "x", 1))
        await self.assert_refused("invalid_user_id", rt.send_event_to_user("é", "x", 1))
        await self.assert_refused("invalid_user_id", rt.send_event_to_user(42, "x", 1))  # type: ignore[arg-type]
        # One bad id among good ones: nothing to the good ones either.
        await self.assert_refused("invalid_user_id", rt.send_event_to_users(["ok1", "ok2", "no*"], "x", 1), "'no*'")
        # A bare string is one id, not a list of one-character ids.
        await self.assert_refused("invalid_user_id", rt.send_event_to_users("42", "x", 1))
        await self.assert_refused("invalid_user_id", rt.get_presence("a b"))
        await self.assert_refused("invalid_event_name", rt.send_event_to_user("42", "a.b", 1), "'a.b'")
        await self.assert_refused("invalid_event_name", rt.broadcast_event(">", 1))
        await self.assert_refused("invalid_event_name", rt.send_event_to_user("42", "", 1))
        await self.assert_refused("reserved_event", rt.send_event_to_user("42", "end", 1), "'end'")
        await self.assert_refused("reserved_event", rt.broadcast_event("reset", 1))
        await self.assert_refused("reserved_event", rt.send_event_to_users(["1", "2"], "end", 1))
        await self.assert_refused("invalid_data", rt.send_event_to_user("42", "x", math.nan))
        await self.assert_refused("invalid_data", rt.send_event_to_user("42", "x", {"v": math.inf}))
        await self.assert_refused("invalid_data", rt.send_event_to_user("42", "x", cyclic))
        await self.assert_refused("invalid_data", rt.send_event_to_user("42", "x", {1, 2}))
        await self.assert_refused("invalid_data", rt.send_event_to_user("42", "x", object()))
        await self.assert_refused("invalid_data", rt.send_event_to_user("42", "x", "\ud800"))  # not UTF-8
        await self.assert_refused("too_large", rt.send_event_to_user("42", "x", "y" * 999), "1001 bytes")
        await self.assert_refused("too_large", rt.broadcast_event("x", ["y" * 1000]))
        await self.assert_refused("invalid_msg_id", rt.send_event_to_user("42", "x", 1, msg_id="a\r\nb"))
        await self.assert_refused("invalid_msg_id", rt.send_event_to_user("42", "x", 1, msg_id=""))

        # Exactly max_event_bytes is accepted; an empty list of users sends nothing.
        await rt.send_event_to_users([], "x", 1)
        await rt.send_event_to_user("42", "edge", "y" * 998)
        await rt.broadcast_event("sentinel", {"last": True})
        await rt.flush()
        await wait_until(lambda: _async(len(self.spy.msgs) >= 2), 5, "the two accepted messages")
        self.assertEqual(self.spy.subjects(), ["user.42.edge", "broadcast.sentinel"])
        self.assertEqual(len(self.spy.msgs[0].data), 1000)

    async def test_repeated_users_get_one_message_each_in_order(self) -> None:
        await self.rt.send_event_to_users(["b", "a", "b", "c", "a"], "ping", {"n": 1})
        await self.rt.flush()
        await wait_until(lambda: _async(len(self.spy.msgs) >= 3), 5, "three messages")
        self.assertEqual(self.spy.subjects(), ["user.b.ping", "user.a.ping", "user.c.ping"])
        self.assertEqual({m.data for m in self.spy.msgs}, {b'{"n":1}'})

    async def test_payload_is_compact_utf8_json(self) -> None:
        await self.rt.send_event_to_user("42", "x", {"text": "héllo\u2028", "n": [1, 2.5, None, True]})
        await self.rt.flush()
        await wait_until(lambda: _async(len(self.spy.msgs) >= 1), 5, "the message")
        self.assertEqual(self.spy.msgs[0].data, '{"text":"héllo\u2028","n":[1,2.5,null,true]}'.encode())

    async def test_options_are_checked(self) -> None:
        nc = await self.client(self.nats.url)
        for bad in (
            {"mode": "fast"},
            {"stream": "a.b"},
            {"stream": ""},
            {"max_in_flight": 0},
            {"ack_timeout": 0},
            {"publish_timeout": -1},
            {"max_event_bytes": 1.5},
        ):
            with self.assertRaises(ValueError, msg=str(bad)):
                RealtimeService(nc, **bad)  # type: ignore[arg-type]

    async def test_close_refuses_new_sends(self) -> None:
        await self.rt.close()
        with self.assertRaises(RealtimeServiceError) as ctx:
            await self.rt.send_event_to_user("42", "x", 1)
        self.assertEqual(ctx.exception.code, "closed")
        self.assertNotIsInstance(ctx.exception, ValueError)
        with self.assertRaises(RealtimeServiceError) as ctx:
            await self.rt.get_presence("42")
        self.assertEqual(ctx.exception.code, "closed")
        await self.rt.close()  # twice is fine


async def _async(value: object) -> object:
    return value
