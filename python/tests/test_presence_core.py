"""Presence over NATS (docs/protocol.md §1.7 "Presence", §4.2) and core mode against a
live-mode bridge (§5.1)."""

from __future__ import annotations

import time

from realtime_bridge import RealtimeService, RealtimeServiceError
from support import RealTestCase, stored_count, wait_until


class PresenceTest(RealTestCase):
    async def test_client_ids_of_real_streams_on_two_bridges(self) -> None:
        nats_server = self.start_nats()
        a = self.start_bridge(nats_server.url, "--history", "on")
        b = self.start_bridge(nats_server.url, "--history", "on")
        async with await RealtimeService.connect(nats_server.url) as rt:
            self.assertEqual(await rt.get_connected_clients("p1"), [])
            self.assertFalse(await rt.is_user_connected("p1"))
            tab_a = await self.reader(a, "p1", client_id="tab-a")
            tab_b = await self.reader(b, "p1", client_id="tab-b")
            await self.reader(a, "p2", client_id="other-user")

            # Whichever bridge answers, it needs the other as a known peer (hello every 5 s).
            async def both() -> bool:
                return await rt.get_connected_clients("p1") == ["tab-a", "tab-b"]

            await wait_until(both, 15, "both client ids, oldest first", interval=0.2)
            presence = await rt.get_presence("p1")
            self.assertEqual(presence["userId"], "p1")
            self.assertTrue(presence["connected"])
            self.assertEqual(presence["streams"], 2)
            self.assertEqual({c["instance"] for c in presence["clients"]}, {a.instance, b.instance})
            self.assertTrue(await rt.is_user_connected("p1"))

            await tab_a.stop()

            async def only_b() -> bool:
                return await rt.get_connected_clients("p1") == ["tab-b"]

            await wait_until(only_b, 10, "tab-a to leave the list", interval=0.2)
            await tab_b.stop()

            async def nobody() -> bool:
                return not await rt.is_user_connected("p1")

            await wait_until(nobody, 10, "p1 to be disconnected", interval=0.2)
            self.assertEqual(await rt.get_connected_clients("p2"), ["other-user"])

    async def test_no_bridge(self) -> None:
        nats_server = self.start_nats()
        async with await RealtimeService.connect(nats_server.url, presence_timeout=1.0) as rt:
            started = time.monotonic()
            for call in (rt.get_presence, rt.get_connected_clients, rt.is_user_connected):
                with self.assertRaises(RealtimeServiceError) as ctx:
                    await call("42")
                self.assertEqual(ctx.exception.code, "no_bridge")
                self.assertNotIsInstance(ctx.exception, ValueError)
            self.assertLess(time.monotonic() - started, 5.0)


class CoreModeTest(RealTestCase):
    async def test_core_mode_delivers_through_a_live_bridge(self) -> None:
        nats_server = self.start_nats()  # JetStream on, but a live bridge creates no stream
        bridge = self.start_bridge(nats_server.url, "--history", "off")
        reader = await self.reader(bridge, "c1")
        async with await RealtimeService.connect(nats_server.url) as auto:
            self.assertEqual(auto.mode, "core")
            await auto.send_event_to_user("c1", "from_auto", {"n": 1})
            await auto.flush()
        async with await RealtimeService.connect(nats_server.url, mode="core") as core:
            self.assertEqual(core.mode, "core")
            await core.send_event_to_users(["c1", "c2"], "from_core", {"n": 2})
            await core.broadcast_event("notice", {"n": 3})
        # close() flushed: everything reached the server.
        await reader.wait_for_count("notice", 1, 10)
        # A broadcast and a user's events come through two subscriptions: no order between them.
        self.assertEqual(sorted((e["event"], e["data"]["n"]) for e in reader.events), [("from_auto", 1), ("from_core", 2), ("notice", 3)])

    async def test_core_mode_without_jetstream_and_with_an_existing_stream(self) -> None:
        plain = self.start_nats(jetstream=False)
        bridge = self.start_bridge(plain.url, "--history", "auto")  # no JetStream: live mode
        reader = await self.reader(bridge, "c3")
        async with await RealtimeService.connect(plain.url) as rt:
            self.assertEqual(rt.mode, "core")
            await rt.send_event_to_user("c3", "hello", {})
        await reader.wait_for_count("hello", 1, 10)
        # mode="core" never uses JetStream, even with the stream there (stored unconfirmed).
        js_server = self.start_nats()
        self.start_bridge(js_server.url, "--history", "on")
        nc = await self.client(js_server.url)
        async with await RealtimeService.connect(js_server.url, mode="core") as rt:
            self.assertEqual(rt.mode, "core")
            await rt.send_event_to_user("c4", "x", {}, msg_id="m-1")
            await rt.send_event_to_user("c4", "x", {}, msg_id="m-1")
            await rt.flush()

        async def stored() -> bool:
            return await stored_count(nc, "user.c4.>") == 1

        await wait_until(stored, 5, "the core publish to be stored once (same Nats-Msg-Id)")
