"""Modes and acknowledged JetStream publishing (docs/protocol.md §1.7 "Mode", "Acknowledged
publishing", "Flush and close"), against nats-server and a history-mode bridge."""

from __future__ import annotations

import asyncio
import json
import time

from realtime_bridge import RealtimeService, RealtimeServiceError
from support import RealTestCase, Spy, stored_count, wait_until


async def _true(value: object) -> object:
    return value


class JetStreamTest(RealTestCase):
    async def test_history_bridge_acked_sends_reach_the_stream_and_the_reader(self) -> None:
        nats_server = self.start_nats()
        bridge = self.start_bridge(nats_server.url, "--history", "on")
        reader = await self.reader(bridge, "u1")
        async with await RealtimeService.connect(nats_server.url) as rt:
            self.assertEqual(rt.mode, "jetstream")
            await rt.send_event_to_user("u1", "message_new", {"text": "hi"})
            await rt.send_event_to_users(["u1", "u2"], "both", [1])
            await rt.broadcast_event("system_alert", {"level": "info"})
            # Resolved means acknowledged: the stream holds them now, no waiting needed.
            nc = await self.client(nats_server.url)
            self.assertEqual(await stored_count(nc, "user.u1.>"), 2)
            self.assertEqual(await stored_count(nc, "user.u2.>"), 1)
            self.assertEqual(await stored_count(nc, "broadcast.>"), 1)
        got = await reader.wait_for_count("system_alert", 1, 10)
        # The user's events in order; a broadcast comes through another subscription.
        self.assertEqual([e["event"] for e in reader.events if "userId" in e], ["message_new", "both"])
        self.assertEqual(len(reader.events), 3)
        self.assertEqual(reader.events[0]["data"], {"text": "hi"})
        self.assertEqual(reader.events[0]["userId"], "u1")
        self.assertNotIn("userId", got[0])

    async def test_same_msg_id_is_stored_and_delivered_once(self) -> None:
        nats_server = self.start_nats()
        bridge = self.start_bridge(nats_server.url, "--history", "on")
        reader = await self.reader(bridge, "d1")
        nc = await self.client(nats_server.url)
        spy = await Spy().start(nc, "user.>")
        async with await RealtimeService.connect(nats_server.url) as rt:
            # Twice at once and once more later: what a retry after a lost acknowledgement does.
            await asyncio.gather(
                rt.send_event_to_user("d1", "order", {"n": 1}, msg_id="order-1"),
                rt.send_event_to_user("d1", "order", {"n": 1}, msg_id="order-1"),
            )
            await rt.send_event_to_user("d1", "order", {"n": 1}, msg_id="order-1")
            # Several users: each subject has its own id (<msgId>:<subject>), so both are stored,
            # and a repeat of the call stores nothing more.
            await rt.send_event_to_users(["d1", "d2"], "order", {"n": 2}, msg_id="order-2")
            await rt.send_event_to_users(["d1", "d2"], "order", {"n": 2}, msg_id="order-2")
            await rt.send_event_to_user("d1", "sentinel", {})
        self.assertEqual(await stored_count(nc, "user.d1.order"), 2)
        self.assertEqual(await stored_count(nc, "user.d2.order"), 1)
        await reader.wait_for_count("sentinel", 1, 10)
        self.assertEqual([e["data"] for e in reader.of("order")], [{"n": 1}, {"n": 2}])
        await wait_until(lambda: _true(len(spy.msgs) >= 8), 5, "the spy's copies")
        ids = [m.headers.get("Nats-Msg-Id") for m in spy.msgs if m.subject.endswith(".order")]
        self.assertEqual(ids, ["order-1"] * 3 + ["order-2:user.d1.order", "order-2:user.d2.order"] * 2)
        # Without msg_id every message gets an id of its own.
        made_up = [m.headers.get("Nats-Msg-Id") for m in spy.msgs if m.subject.endswith(".sentinel")]
        self.assertTrue(made_up[0])

    async def test_jetstream_error_answer_fails_at_once_with_unavailable(self) -> None:
        nats_server = self.start_nats()
        nc = await self.client(nats_server.url)
        await nc.jetstream().add_stream(name="SMALL", subjects=["user.>"], max_msg_size=64)
        async with await RealtimeService.connect(nats_server.url, mode="jetstream", stream="SMALL") as rt:
            await rt.send_event_to_user("s1", "fits", "ok")
            started = time.monotonic()
            with self.assertRaises(RealtimeServiceError) as ctx:
                await rt.send_event_to_user("s1", "big", "y" * 100)
            self.assertEqual(ctx.exception.code, "unavailable")
            self.assertIn("maximum", str(ctx.exception))  # JetStream's own description
            self.assertLess(time.monotonic() - started, 2.0, "no retry after an error answer")
        self.assertEqual(await stored_count(nc, "user.s1.>", "SMALL"), 1)

    async def test_no_responders_and_lost_acks_are_retried_until_publish_timeout(self) -> None:
        nats_server = self.start_nats()
        nc = await self.client(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name="GONE", subjects=["user.>"])
        rt = await RealtimeService.connect(
            nats_server.url, mode="jetstream", stream="GONE", publish_timeout=1.5, ack_timeout=0.3
        )
        self.addAsyncCleanup(rt.close)
        await js.delete_stream("GONE")
        # Nobody answers on user.> now ("no responders"): retried, not a failure at once.
        started = time.monotonic()
        with self.assertRaises(RealtimeServiceError) as ctx:
            await rt.send_event_to_user("g1", "x", 1, msg_id="keep-me")
        took = time.monotonic() - started
        self.assertEqual(ctx.exception.code, "timeout", str(ctx.exception))
        self.assertIn("NoStreamResponseError", str(ctx.exception))
        self.assertGreaterEqual(took, 1.45)  # publish_timeout, not earlier
        self.assertLess(took, 3.0)
        # A subscriber that never answers: each attempt's acknowledgement is "lost" (ack_timeout),
        # and every attempt carries the same id, so JetStream would store one copy.
        spy = await Spy().start(nc, "user.>")
        started = time.monotonic()
        with self.assertRaises(RealtimeServiceError) as ctx:
            await rt.send_event_to_user("g1", "x", 1, msg_id="keep-me")
        self.assertEqual(ctx.exception.code, "timeout", str(ctx.exception))
        self.assertLess(time.monotonic() - started, 3.0)
        await wait_until(lambda: _true(len(spy.msgs) >= 3), 5, "the attempts")
        self.assertLessEqual(len(spy.msgs), 6)
        self.assertEqual({m.headers.get("Nats-Msg-Id") for m in spy.msgs}, {"keep-me"})

    async def test_jetstream_mode_refuses_without_the_stream(self) -> None:
        for jetstream in (True, False):
            nats_server = self.start_nats(jetstream=jetstream)
            with self.assertRaises(RealtimeServiceError) as ctx:
                await RealtimeService.connect(nats_server.url, mode="jetstream")
            self.assertEqual(ctx.exception.code, "unavailable")
            self.assertIn("jetstream", str(ctx.exception))
        # The constructor's service looks at its first send.
        nc = await self.client(nats_server.url)
        rt = RealtimeService(nc, mode="jetstream")
        with self.assertRaises(RealtimeServiceError) as ctx:
            await rt.send_event_to_user("42", "x", 1)
        self.assertEqual(ctx.exception.code, "unavailable")
        await rt.close()
        self.assertFalse(nc.is_closed, "a connection given to the constructor stays open")

    async def test_auto_follows_a_stream_created_after_connect(self) -> None:
        nats_server = self.start_nats()
        nc = await self.client(nats_server.url)
        lookups = await Spy().start(nc, "$JS.API.STREAM.INFO.REALTIME")
        rt = await RealtimeService.connect(nats_server.url, stream_recheck_interval=0.5)
        self.addAsyncCleanup(rt.close)
        self.assertEqual(rt.mode, "core")
        await wait_until(lambda: _true(len(lookups.msgs) == 1), 5, "the lookup at connect")
        # A history bridge starts: it creates the stream; the next send after the interval sees it.
        self.start_bridge(nats_server.url, "--history", "on")

        async def switched() -> bool:
            await rt.send_event_to_user("a1", "probe", {})
            return rt.mode == "jetstream"

        await wait_until(switched, 10, "auto mode to switch to jetstream", interval=0.2)
        before = await stored_count(nc, "user.a1.>")
        await rt.send_event_to_user("a1", "after", {})
        self.assertEqual(await stored_count(nc, "user.a1.>"), before + 1, "acknowledged, so stored already")

    async def test_auto_follows_a_deleted_stream_to_core(self) -> None:
        # Traced: the server's log shows how each message arrived (with a reply inbox: a
        # JetStream attempt; without: a core publish). A subscriber cannot check the sends that
        # switch here: its interest would take the JetStream publish, which then gets no "no
        # responders" (the lost-acknowledgement case, tested with a live bridge below).
        nats_server = self.start_nats(trace=True)
        nc = await self.client(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name="GONE", subjects=["user.>"])
        lookups = await Spy().start(nc, "$JS.API.STREAM.INFO.GONE")
        rt = await RealtimeService.connect(
            nats_server.url, stream="GONE", publish_timeout=30.0, stream_recheck_interval=60.0
        )
        self.addAsyncCleanup(rt.close)
        self.assertEqual(rt.mode, "jetstream")
        await rt.send_event_to_user("z1", "before", 0)
        self.assertEqual(await stored_count(nc, "user.z1.>", "GONE"), 1, "acknowledged")
        await wait_until(lambda: _true(len(lookups.msgs) == 2), 5, "the connect's and the test's lookups")
        # History turned off: nothing listens on user.> any more, so a publish gets "no
        # responders". Concurrent sends, several users in one of them: one lookup for them all,
        # its "stream not found" switches the service, and each message goes out with core NATS.
        await js.delete_stream("GONE")
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(
                rt.send_event_to_user("z1", "after", 1),
                rt.send_event_to_user("z2", "after", 2),
                rt.send_event_to_users(["z3", "z4"], "after", 3, msg_id="m3"),
            ),
            5,
        )
        self.assertLess(time.monotonic() - started, 3.0, "well before publish_timeout (30 s)")
        self.assertEqual(rt.mode, "core")
        await rt.flush()

        def publishes(subject: str) -> list[tuple[bool, str]]:
            # (had a reply inbox, the line) for each publish on subject the server traced.
            lines = [line for line in nats_server.log_text().splitlines() if "<<- [" in line]
            found = []
            for line in lines:
                words = line.split("<<- [", 1)[1].rstrip("]").split(" ")
                if words[0] in ("PUB", "HPUB") and words[1] == subject:
                    found.append((any(w.startswith("_INBOX.") for w in words[2:]), line))
            return found

        for user in ("z1", "z2", "z3", "z4"):
            subject = f"user.{user}.after"
            await wait_until(
                lambda: _true(any(not acked for acked, _ in publishes(subject))), 5, f"a core {subject} in the trace"
            )
            traced = publishes(subject)
            # The JetStream attempt that got "no responders", then exactly one core publish.
            self.assertEqual([acked for acked, _ in traced], [True] * (len(traced) - 1) + [False], traced)
        # A plain core subscriber receives what follows: once each, no reply subject, and the
        # caller's id still travels as in core mode.
        spy = await Spy().start(nc, "user.z1.>")
        await rt.send_event_to_user("z1", "next", 4)
        await rt.send_event_to_user("z1", "next", 5, msg_id="m5")
        await rt.flush()
        await wait_until(lambda: _true(len(spy.msgs) >= 2), 5, "the core messages")
        await nc.flush()
        self.assertEqual([(m.subject, json.loads(m.data), m.reply) for m in spy.msgs], [
            ("user.z1.next", 4, ""),
            ("user.z1.next", 5, ""),
        ])
        self.assertEqual((spy.msgs[1].headers or {}).get("Nats-Msg-Id"), "m5")
        # One lookup after the deletion, shared; none since (stream_recheck_interval is 60 s).
        self.assertEqual(len(lookups.msgs), 3)

    async def test_auto_follows_a_deleted_stream_to_a_live_bridge_without_duplicates(self) -> None:
        # The stream deleted and a bridge without history serving a connected user: the bridge
        # subscribes to the user's subject (and the broadcasts), so a JetStream attempt gets no
        # "no responders"; it reaches the bridge as a plain message, which delivers it, and is
        # never acknowledged. After that lost acknowledgement the lookup finds the stream gone:
        # the send resolves as sent, and nothing is published again.
        nats_server = self.start_nats()
        nc = await self.client(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name="LIVE", subjects=["user.>", "broadcast.>"])
        rt = await RealtimeService.connect(
            nats_server.url, stream="LIVE", ack_timeout=1.0, publish_timeout=30.0, stream_recheck_interval=60.0
        )
        self.addAsyncCleanup(rt.close)
        self.assertEqual(rt.mode, "jetstream")
        await js.delete_stream("LIVE")
        bridge = self.start_bridge(nats_server.url, "--history", "off")
        reader = await self.reader(bridge, "v1")
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(rt.send_event_to_user("v1", "first", 1), rt.broadcast_event("all", 2)), 5
        )
        # One ack timeout (1 s) and a lookup; without the switch each retry would reach the
        # bridge again until publish_timeout (30 s).
        self.assertLess(time.monotonic() - started, 3.0, "well before publish_timeout (30 s)")
        self.assertEqual(rt.mode, "core")
        await rt.send_event_to_user("v1", "second", 3)
        await rt.flush()
        await reader.wait_for_count("second", 1, 5)
        await reader.wait_for_count("all", 1, 5)
        # The user's events share one subject order: a second copy of "first" would come before
        # "second". The broadcast comes through another subscription; it was sent only once, too.
        self.assertEqual([(e["event"], e["data"]) for e in reader.events if "userId" in e], [("first", 1), ("second", 3)])
        self.assertEqual([e["data"] for e in reader.of("all")], [2])

    async def test_auto_stays_on_jetstream_while_the_stream_exists(self) -> None:
        # The stream exists but does not hold the subject: every attempt gets "no responders",
        # every lookup finds the stream, so nothing switches and the send fails with timeout.
        # Twenty sends retrying share their lookups: at most one per second.
        nats_server = self.start_nats()
        nc = await self.client(nats_server.url)
        await nc.jetstream().add_stream(name="OTHER", subjects=["other.>"])
        lookups = await Spy().start(nc, "$JS.API.STREAM.INFO.OTHER")
        rt = await RealtimeService.connect(nats_server.url, stream="OTHER", publish_timeout=2.5)
        self.addAsyncCleanup(rt.close)
        self.assertEqual(rt.mode, "jetstream")
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(rt.send_event_to_user("o1", "x", i) for i in range(20)), return_exceptions=True), 10
        )
        self.assertGreaterEqual(time.monotonic() - started, 2.45)
        self.assertEqual({getattr(r, "code", r) for r in results}, {"timeout"})
        self.assertEqual(rt.mode, "jetstream")
        await nc.flush()
        # The connect's lookup, then one per second at most while they retry (2.5 s).
        self.assertGreaterEqual(len(lookups.msgs), 2)
        self.assertLessEqual(len(lookups.msgs), 4)

    async def test_auto_stays_on_jetstream_when_the_lookup_answers_another_error(self) -> None:
        # Only "not found" (404) takes auto back to core: JetStream electing a leader answers
        # 503 "temporarily unavailable", and the stream stays found. The test plays JetStream's
        # stream-info API on a server without JetStream: found at connect, 503 afterwards.
        nats_server = self.start_nats(jetstream=False)
        nc = await self.client(nats_server.url)
        looks = 0

        async def info(msg: object) -> None:
            nonlocal looks
            looks += 1
            answer = (
                {"config": {"name": "REALTIME"}}
                if looks == 1
                else {"error": {"code": 503, "err_code": 10008, "description": "JetStream system temporarily unavailable"}}
            )
            await nc.publish(getattr(msg, "reply"), json.dumps(answer).encode())

        await nc.subscribe("$JS.API.STREAM.INFO.REALTIME", cb=info)
        await nc.flush()
        rt = await RealtimeService.connect(nats_server.url, ack_timeout=0.3, publish_timeout=2.5)
        self.addAsyncCleanup(rt.close)
        self.assertEqual(rt.mode, "jetstream")
        # Nobody answers user.fake.>: "no responders" until publish_timeout, the mode unchanged.
        with self.assertRaises(RealtimeServiceError) as ctx:
            await asyncio.wait_for(rt.send_event_to_user("fake", "x", 1), 10)
        self.assertEqual(ctx.exception.code, "timeout", str(ctx.exception))
        self.assertEqual(rt.mode, "jetstream")
        self.assertGreaterEqual(looks, 2, "it looked again after no responders")

    async def test_auto_looks_again_at_most_once_per_interval(self) -> None:
        nats_server = self.start_nats()
        nc = await self.client(nats_server.url)
        lookups = await Spy().start(nc, "$JS.API.STREAM.INFO.REALTIME")
        async with await RealtimeService.connect(nats_server.url) as rt:  # default: 30 s
            self.assertEqual(rt.mode, "core")
            await asyncio.gather(*(rt.send_event_to_user("r1", "x", i) for i in range(50)))
            await rt.flush()
        await nc.flush()
        self.assertEqual(len(lookups.msgs), 1)

    async def test_constructor_service_resolves_auto_at_first_send(self) -> None:
        nats_server = self.start_nats()
        self.start_bridge(nats_server.url, "--history", "on")
        nc = await self.client(nats_server.url)
        rt = RealtimeService(nc)
        self.assertEqual(rt.mode, "auto")
        await rt.send_event_to_user("c1", "x", 1)
        self.assertEqual(rt.mode, "jetstream")
        self.assertEqual(await stored_count(nc, "user.c1.>"), 1)
        await rt.close()
        self.assertFalse(nc.is_closed)

    async def test_flush_and_close_wait_for_sends_in_flight(self) -> None:
        nats_server = self.start_nats()
        self.start_bridge(nats_server.url, "--history", "on")
        nc = await self.client(nats_server.url)
        rt = await RealtimeService.connect(nats_server.url, max_in_flight=4)
        sends = [asyncio.ensure_future(rt.send_event_to_user("f1", "x", {"n": i})) for i in range(40)]
        await asyncio.sleep(0)  # let them start: flush waits for sends started before it
        await rt.flush()
        self.assertTrue(all(s.done() and s.exception() is None for s in sends))
        self.assertEqual(await stored_count(nc, "user.f1.>"), 40)
        more = [asyncio.ensure_future(rt.send_event_to_user("f1", "y", {"n": i})) for i in range(40)]
        await asyncio.sleep(0)
        await rt.close()
        self.assertTrue(all(s.done() and s.exception() is None for s in more))
        self.assertEqual(await stored_count(nc, "user.f1.>"), 80)
        self.assertTrue(rt._nc.is_closed, "the connection connect() opened is closed")
        with self.assertRaises(RealtimeServiceError) as ctx:
            await rt.broadcast_event("x", 1)
        self.assertEqual(ctx.exception.code, "closed")

    async def test_window_bounds_the_acks_awaited_at_once(self) -> None:
        nats_server = self.start_nats()
        self.start_bridge(nats_server.url, "--history", "on")
        nc = await self.client(nats_server.url)
        # Hold every acknowledgement back by answering nothing: a spy on the reply subjects
        # cannot do that, so count the publishes JetStream sees while acknowledgements pend.
        spy = await Spy().start(nc, "user.w1.>")
        async with await RealtimeService.connect(nats_server.url, max_in_flight=3) as rt:
            in_flight = 0
            peak = 0
            real = rt._js.publish

            async def counting(*args: object, **kwargs: object) -> object:
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await asyncio.sleep(0.01)  # every acknowledgement takes a while
                    return await real(*args, **kwargs)  # type: ignore[arg-type]
                finally:
                    in_flight -= 1

            rt._js.publish = counting  # type: ignore[method-assign]
            await asyncio.gather(*(rt.send_event_to_user("w1", "x", i) for i in range(30)))
        self.assertEqual(peak, 3)
        await wait_until(lambda: _true(len(spy.msgs) == 30), 5, "30 publishes")
        self.assertEqual(sorted(json.loads(m.data) for m in spy.msgs), list(range(30)))
