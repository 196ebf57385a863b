"""Test fixtures: a real nats-server and real bridge processes on loopback, an SSE reader, and
JetStream look-ups. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from typing import Any, Awaitable, Callable, Dict, List, Optional, TypeVar

import nats
from nats.aio.client import Client as NATS

REPO = pathlib.Path(__file__).resolve().parents[2]
BRIDGE_BIN = os.environ.get("RB_BIN") or str(REPO / "target" / "debug" / "realtime-bridge")
START_TIMEOUT = 20.0
T = TypeVar("T")


async def wait_until(check: Callable[[], Awaitable[Optional[T]]], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls ``check`` until it returns a truthy value (returned); fails after ``timeout``."""
    end = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - kept for the failure message
            last = e
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


class NatsServer:
    """nats-server on 127.0.0.1 with an OS-chosen port (read back from its ports file); with
    ``trace``, its log holds every protocol line the clients send (``-V``)."""

    def __init__(self, jetstream: bool = True, trace: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="rb-py-nats-")
        args = ["nats-server", "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", self.dir]
        if jetstream:
            args += ["-js", "-sd", os.path.join(self.dir, "store")]
        if trace:
            args += ["-V"]
        self.log = open(os.path.join(self.dir, "nats-server.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        ports_file = os.path.join(self.dir, f"nats-server_{self.proc.pid}.ports")
        end = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with open(ports_file) as f:
                    self.url: str = json.load(f)["nats"][0]
                break
            except (OSError, ValueError, KeyError, IndexError):
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"nats-server did not start: {self.log_text()}")
            time.sleep(0.02)

    def log_text(self) -> str:
        try:
            return pathlib.Path(self.dir, "nats-server.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Bridge:
    """A realtime-bridge process (``--no-auth``, JSON logs); ready once it logged "listening"."""

    def __init__(self, nats_url: str, *args: str) -> None:
        # The bridge reads its flags from RB_* variables: a developer's shell must not change
        # what a test checks.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        env["RUST_LOG"] = "info"
        cmd = [BRIDGE_BIN, "serve", "--listen", "127.0.0.1:0", "--nats-url", nats_url, "--no-auth", "--log-format", "json", *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self.logs: List[str] = []
        self.addr: Optional[str] = None
        self.instance: Optional[str] = None
        listening = threading.Event()

        def drain() -> None:
            # Reads until the process ends, so a full pipe never blocks the bridge.
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.logs.append(line)
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("message") == "listening" and self.addr is None:
                    self.addr = fields.get("addr")
                    self.instance = fields.get("instance")
                    listening.set()
            listening.set()

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        if not listening.wait(START_TIMEOUT) or self.addr is None:
            self.stop()
            raise AssertionError("the bridge did not log 'listening':\n" + "\n".join(self.logs[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._drain.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class SseReader:
    """Reads a user's stream (GET /v1/users/<id>/events) with asyncio streams; when the bridge
    cuts it (e.g. as a slow client) it reconnects with the last ``id:`` as Last-Event-ID."""

    def __init__(self, addr: str, user: str, client_id: Optional[str] = None) -> None:
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.user = user
        self.client_id = client_id
        self.events: List[Dict[str, Any]] = []
        self.cursor: Optional[str] = None
        self.connections = 0
        self.opened = asyncio.Event()
        self.changed = asyncio.Event()
        self._writer: Optional[asyncio.StreamWriter] = None
        self._task: Optional["asyncio.Task[None]"] = None

    async def start(self, timeout: float = 10.0) -> "SseReader":
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.opened.wait(), timeout)
        return self

    async def _run(self) -> None:
        while True:
            try:
                await self._read_once()
            except (OSError, asyncio.IncompleteReadError):
                pass
            await asyncio.sleep(0.05)  # the bridge cut the stream: resume from the cursor

    async def _read_once(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        try:
            path = f"/v1/users/{self.user}/events" + (f"?clientId={self.client_id}" if self.client_id else "")
            head = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n"
            if self.cursor is not None:
                head += f"Last-Event-ID: {self.cursor}\r\n"
            writer.write((head + "\r\n").encode())
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                raise AssertionError(f"stream refused: {status!r} {await reader.read(2000)!r}")
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # response headers
            self.connections += 1
            event: Optional[str] = None
            data: List[str] = []
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\n")
                if line == "":
                    if event is not None and data:
                        self.events.append(json.loads("\n".join(data)))
                        self.changed.set()
                    event, data = None, []
                elif line.startswith("id:"):
                    self.cursor = line[3:].lstrip(" ")
                elif line.startswith("event:"):
                    event = line[6:].lstrip(" ")
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line.startswith("retry:"):
                    self.opened.set()
        finally:
            writer.close()

    def of(self, event: str) -> List[Dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    async def wait_for_count(self, event: str, n: int, timeout: float) -> List[Dict[str, Any]]:
        async def enough() -> Optional[List[Dict[str, Any]]]:
            got = self.of(event)
            return got if len(got) >= n else None

        return await wait_until(enough, timeout, f"{n} '{event}' events on {self.user}'s stream (have {len(self.of(event))})")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self._writer is not None:
            self._writer.close()


async def stored_count(nc: NATS, subject_filter: str, stream: str = "REALTIME") -> int:
    """How many messages of ``subject_filter`` the stream holds (JetStream stream info)."""
    msg = await nc.request(
        f"$JS.API.STREAM.INFO.{stream}", json.dumps({"subjects_filter": subject_filter}).encode(), timeout=5
    )
    info = json.loads(msg.data)
    if "error" in info:
        raise AssertionError(f"stream info: {info['error']}")
    return sum((info.get("state", {}).get("subjects") or {}).values())


class Spy:
    """A plain NATS subscription that records what reaches a subject pattern: proof that a
    refused call sent nothing."""

    def __init__(self) -> None:
        self.msgs: List[Any] = []

    async def start(self, nc: NATS, *subjects: str) -> "Spy":
        async def cb(msg: Any) -> None:
            self.msgs.append(msg)

        for s in subjects:
            await nc.subscribe(s, cb=cb)
        await nc.flush(timeout=5)
        return self

    def subjects(self) -> List[str]:
        return [m.subject for m in self.msgs]


class RealTestCase(unittest.IsolatedAsyncioTestCase):
    """Starts nothing by itself; ``start_nats``/``start_bridge``/``client`` register cleanups."""

    async def asyncSetUp(self) -> None:
        # unittest runs the loop in debug mode; starting a process blocks it for a moment,
        # which is not the slow callback that warning is about.
        asyncio.get_running_loop().slow_callback_duration = 2.0

    def start_nats(self, jetstream: bool = True, trace: bool = False) -> NatsServer:
        server = NatsServer(jetstream, trace)
        self.addCleanup(server.stop)
        return server

    def start_bridge(self, nats_url: str, *args: str) -> Bridge:
        bridge = Bridge(nats_url, *args)
        self.addCleanup(bridge.stop)
        return bridge

    async def client(self, url: str) -> NATS:
        nc = await asyncio.wait_for(nats.connect(url, allow_reconnect=False, max_reconnect_attempts=1), 10)
        self.addAsyncCleanup(nc.close)
        return nc

    async def reader(self, bridge: Bridge, user: str, client_id: Optional[str] = None) -> SseReader:
        r = await SseReader(bridge.addr or "", user, client_id).start()
        self.addAsyncCleanup(r.stop)
        return r
