"""The flood (helper contract): N acknowledged sends started at once, bounded by the library's
in-flight window, against a history-mode bridge with one reader; then N bare core publishes as a
baseline measurement."""

from __future__ import annotations

import asyncio
import os
import time

from realtime_bridge import RealtimeService
from support import RealTestCase, stored_count, wait_until

N = int(os.environ.get("FLOOD_EVENTS", "20000"))


class FloodTest(RealTestCase):
    async def test_flood_every_send_acked_stored_once_and_read_once(self) -> None:
        # unittest's debug mode checks every callback: a measurement runs without it.
        asyncio.get_running_loop().set_debug(False)
        nats_server = self.start_nats()  # fresh: the stream holds only this test's messages
        bridge = self.start_bridge(nats_server.url, "--history", "on")
        reader = await self.reader(bridge, "flood")
        nc = await self.client(nats_server.url)
        rt = await RealtimeService.connect(nats_server.url)
        self.addAsyncCleanup(rt.close)
        self.assertEqual(rt.mode, "jetstream")

        started = time.monotonic()
        results = await asyncio.gather(
            *(rt.send_event_to_user("flood", "tick", {"n": i}) for i in range(N)), return_exceptions=True
        )
        took = time.monotonic() - started
        failed = [r for r in results if r is not None]
        print(f"\nacked publish (python): {N} events in {took:.2f} s = {N / took:.0f} events/s (maxInFlight=256)")
        self.assertEqual(failed[:3], [], f"{len(failed)} of {N} sends failed")
        self.assertEqual(await stored_count(nc, "user.flood.>"), N)

        async def all_read() -> bool:
            return len(reader.of("tick")) >= N

        await wait_until(all_read, 60 + N / 500, f"the reader to get {N} events", interval=0.2)
        seen = sorted(e["data"]["n"] for e in reader.of("tick"))
        self.assertEqual(seen, list(range(N)), "every n exactly once")
        if reader.connections > 1:
            print(f"(the reader was cut {reader.connections - 1} times and resumed from its cursor)")

        # Baseline: bare core publishes (no window, no acknowledgement); stored is measured, not asserted.
        started = time.monotonic()
        for i in range(N):
            await nc.publish("user.floodcore.tick", b'{"n":%d}' % i)
        await nc.flush(timeout=30)
        took = time.monotonic() - started
        last = -1

        async def settled() -> bool:
            # Stored count stops moving (JetStream stores behind the flush), or reaches N.
            nonlocal last
            now = await stored_count(nc, "user.floodcore.>")
            done = now == N or now == last
            last = now
            return done

        await wait_until(settled, 30, "the stored count to settle", interval=0.5)
        print(f"core publish (python): {N} events in {took:.2f} s = {N / took:.0f} events/s, stored {last} of {N}")
