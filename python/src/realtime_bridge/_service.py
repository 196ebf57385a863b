"""RealtimeService: the producer side of Realtime Bridge over NATS (docs/protocol.md §1.7)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import sys
from types import TracebackType
from typing import Any, Dict, Iterable, List, Literal, Optional, Set, Tuple, Type, TypedDict, Union

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS

from ._errors import RealtimeInputError, RealtimeServiceError

Mode = Literal["auto", "jetstream", "core"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_RESERVED_EVENTS = frozenset({"end", "reset"})
# A JetStream stream name: no subject separators or wildcards, no whitespace or path characters.
_STREAM_NAME = re.compile(r"[^.*>\s/\\]{1,255}")
# Retries after a lost acknowledgement or "no responders": 100 ms doubling to 2 s (§1.7).
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0
# Auto mode on JetStream: "no responders" to a publish makes the service look the stream up again
# (has it been deleted?), at most this often (seconds), however many sends get it. A lost
# acknowledgement always does (one lookup in flight at a time, shared).
_GONE_RECHECK_MIN = 1.0
# "No responders" to a JetStream publish: nothing listens on the subject, no stream or no leader.
_NO_RESPONDERS = (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)
# Errors after which the same message is sent again: nothing was stored, or the answer was lost.
_RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
)


class PresenceClient(TypedDict):
    """One open stream of a user (docs/protocol.md §4.2)."""

    id: str
    instance: str
    since: str


class Presence(TypedDict):
    """The bridges' presence answer for one user (docs/protocol.md §4.2)."""

    userId: str
    connected: bool
    streams: int
    clients: List[PresenceClient]


def _check_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not _TOKEN.fullmatch(user_id):
        raise RealtimeInputError(
            "invalid_user_id", f"invalid user id {user_id!r}: must be 1 to 128 characters of [A-Za-z0-9_-]"
        )
    return user_id


def _check_event(event: object) -> str:
    if not isinstance(event, str) or not _TOKEN.fullmatch(event):
        raise RealtimeInputError(
            "invalid_event_name", f"invalid event name {event!r}: must be 1 to 128 characters of [A-Za-z0-9_-]"
        )
    if event in _RESERVED_EVENTS:
        raise RealtimeInputError(
            "reserved_event", f"event name {event!r} is reserved for the stream's control frames (end, reset)"
        )
    return event


def _check_msg_id(msg_id: object) -> Optional[str]:
    # It travels as a NATS header value: a line break would end the header.
    if msg_id is None:
        return None
    if not isinstance(msg_id, str) or not msg_id or any(c in msg_id for c in "\r\n\0"):
        raise RealtimeInputError(
            "invalid_msg_id", f"invalid msg_id {msg_id!r}: must be a non-empty string without line breaks"
        )
    return msg_id


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return float(value)


class RealtimeService:
    """Sends events to Realtime Bridge users and asks the bridges who is connected.

    Use :meth:`connect` to open a NATS connection owned by the service, or pass an existing
    connection (``nats.aio.client.Client``) to the constructor; that one is never closed by the
    service. Every method is a coroutine; the service is an async context manager that closes
    itself on exit.
    """

    def __init__(
        self,
        nc: NATS,
        *,
        mode: Mode = "auto",
        stream: str = "REALTIME",
        max_in_flight: int = 256,
        ack_timeout: float = 5.0,
        publish_timeout: float = 30.0,
        presence_timeout: float = 2.0,
        max_event_bytes: int = 262144,
        stream_recheck_interval: float = 30.0,
    ) -> None:
        if mode not in ("auto", "jetstream", "core"):
            raise ValueError(f"mode must be 'auto', 'jetstream' or 'core', not {mode!r}")
        if not isinstance(stream, str) or not _STREAM_NAME.fullmatch(stream):
            raise ValueError(f"stream {stream!r} is not a JetStream stream name")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer, not {max_in_flight!r}")
        if isinstance(max_event_bytes, bool) or not isinstance(max_event_bytes, int) or max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be a positive integer, not {max_event_bytes!r}")
        self._nc = nc
        self._js = nc.jetstream()
        self._owns_connection = False
        self._configured_mode: Mode = mode
        # What sends use now. Until the first stream lookup (a service built on an existing
        # connection looks the stream up before its first send) it is the configured mode.
        self._mode: Mode = mode
        self._resolved = mode == "core"
        self._stream = stream
        self._max_in_flight = max_in_flight
        self._ack_timeout = _positive("ack_timeout", ack_timeout)
        self._publish_timeout = _positive("publish_timeout", publish_timeout)
        self._presence_timeout = _positive("presence_timeout", presence_timeout)
        self._max_event_bytes = max_event_bytes
        self._recheck_interval = _positive("stream_recheck_interval", stream_recheck_interval)
        self._window = asyncio.Semaphore(max_in_flight)
        self._last_lookup: Optional[float] = None
        self._lookup_task: Optional[asyncio.Task[None]] = None
        # The lookup after "no responders" (auto mode on JetStream), shared by the sends that got it.
        self._gone_task: Optional[asyncio.Task[None]] = None
        self._last_gone_lookup: Optional[float] = None
        self._sends: Set[asyncio.Future[None]] = set()
        self._closed = False
        # Message ids the library makes up: random per service, a counter per message.
        self._id_prefix = os.urandom(9).hex()
        self._id_counter = itertools.count(1)

    # --- Construction and lifetime -------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        servers: Union[str, List[str]] = "nats://127.0.0.1:4222",
        *,
        mode: Mode = "auto",
        stream: str = "REALTIME",
        max_in_flight: int = 256,
        ack_timeout: float = 5.0,
        publish_timeout: float = 30.0,
        presence_timeout: float = 2.0,
        max_event_bytes: int = 262144,
        stream_recheck_interval: float = 30.0,
        **nats_options: Any,
    ) -> RealtimeService:
        """Opens a NATS connection (``nats.connect(servers, **nats_options)``) owned by the
        service, and looks the stream up: fails with ``unavailable`` when NATS cannot be
        reached, or in ``jetstream`` mode when the stream does not exist."""
        try:
            nc = await nats.connect(servers, **nats_options)
        except Exception as e:  # noqa: BLE001 - every failure to connect means the same here
            raise RealtimeServiceError("unavailable", f"cannot connect to NATS at {servers}: {_describe(e)}") from e
        try:
            service = cls(
                nc,
                mode=mode,
                stream=stream,
                max_in_flight=max_in_flight,
                ack_timeout=ack_timeout,
                publish_timeout=publish_timeout,
                presence_timeout=presence_timeout,
                max_event_bytes=max_event_bytes,
                stream_recheck_interval=stream_recheck_interval,
            )
            service._owns_connection = True
            await service._lookup()
        except BaseException:
            await _close_quietly(nc)
            raise
        return service

    @property
    def mode(self) -> Mode:
        """``"jetstream"`` or ``"core"``: how sends are published now. A service built with the
        constructor looks the stream up at its first send; until then this is the configured
        mode (``"auto"`` or ``"jetstream"``).

        In ``auto`` mode it follows the stream both ways: from core to JetStream when a lookup
        (at most every ``stream_recheck_interval``, before a send) finds the stream, and from
        JetStream to core when a publish gets "no responders" or no acknowledgement and
        JetStream then answers that the stream does not exist (it was deleted: the bridge's
        history was turned off); the following sends go out with core NATS."""
        return self._mode

    async def flush(self) -> None:
        """Waits until every send started before the call is settled (resolved or failed), then
        for a round trip to the NATS server (which confirms core publishes reached it)."""
        started = list(self._sends)
        if started:
            await asyncio.wait(started)
        if self._nc.is_closed:
            raise RealtimeServiceError("closed", "the NATS connection is closed")
        try:
            await self._nc.flush(timeout=max(1, int(self._ack_timeout + 0.999)))
        except Exception as e:  # noqa: BLE001
            raise RealtimeServiceError("timeout", f"NATS did not confirm the flush: {_describe(e)}") from e

    async def close(self) -> None:
        """Refuses new sends (``closed``), waits for those in flight (at most
        ``publish_timeout``), then closes the NATS connection if the service opened it."""
        if self._closed:
            return
        self._closed = True
        started = list(self._sends)
        if started:
            await asyncio.wait(started, timeout=self._publish_timeout)
        if self._owns_connection:
            await _close_quietly(self._nc)
        elif not self._nc.is_closed:
            # Core publishes sit in the client's buffer until flushed: push them out.
            try:
                await self._nc.flush(timeout=max(1, int(self._ack_timeout + 0.999)))
            except Exception:  # noqa: BLE001 - the connection is the caller's; its state is theirs
                pass

    async def __aenter__(self) -> RealtimeService:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    # --- Sending -------------------------------------------------------------------------

    async def send_event_to_user(self, user_id: str, event: str, data: Any, *, msg_id: Optional[str] = None) -> None:
        """Sends ``event`` with ``data`` (any JSON-serialisable value) to one user."""
        await self.send_event_to_users([user_id], event, data, msg_id=msg_id)

    async def send_event_to_users(
        self, user_ids: Iterable[str], event: str, data: Any, *, msg_id: Optional[str] = None
    ) -> None:
        """Sends ``event`` to each user once (repeated ids removed, order kept). Resolves when
        every user's message is published (JetStream: acknowledged); a bad input sends nothing."""
        if isinstance(user_ids, (str, bytes)):
            raise RealtimeInputError(
                "invalid_user_id", f"user_ids must be a list of user ids, not the single value {user_ids!r}"
            )
        users = list(dict.fromkeys(_check_user_id(u) for u in user_ids))
        subjects = [f"user.{u}.{event}" for u in users]
        await self._send(subjects, event, data, msg_id)

    async def broadcast_event(self, event: str, data: Any, *, msg_id: Optional[str] = None) -> None:
        """Sends ``event`` to every connected user (subject ``broadcast.<event>``)."""
        await self._send([f"broadcast.{event}"], event, data, msg_id)

    async def _send(self, subjects: List[str], event: str, data: Any, msg_id: Optional[str]) -> None:
        if self._closed:
            raise RealtimeServiceError("closed", "the service is closed")
        _check_event(event)
        msg_id = _check_msg_id(msg_id)
        payload = self._serialise(data)
        if not subjects:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sends.add(done)
        try:
            if not (self._resolved and self._mode == "jetstream"):
                await self._ensure_mode()
            if self._mode == "jetstream":
                ids = [self._message_id(msg_id, s, len(subjects)) for s in subjects]
                given = msg_id is not None
                if len(subjects) == 1:
                    await self._publish_jetstream(subjects[0], payload, ids[0], given)
                else:
                    results = await asyncio.gather(
                        *(self._publish_jetstream(s, payload, i, given) for s, i in zip(subjects, ids)),
                        return_exceptions=True,
                    )
                    for r in results:
                        if isinstance(r, BaseException):
                            raise r
            else:
                for s in subjects:
                    headers = {"Nats-Msg-Id": self._message_id(msg_id, s, len(subjects))} if msg_id else None
                    await self._publish_core(s, payload, headers)
        finally:
            self._sends.discard(done)
            done.set_result(None)

    def _serialise(self, data: Any) -> bytes:
        try:
            # ensure_ascii=False and a strict UTF-8 encode: a lone surrogate fails here, instead
            # of becoming a \ud800 escape the bridge would drop as invalid JSON.
            payload = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            raise RealtimeInputError("invalid_data", f"data does not serialise to one JSON value: {e}") from e
        if len(payload) > self._max_event_bytes:
            raise RealtimeInputError(
                "too_large", f"data is {len(payload)} bytes once serialised, over max_event_bytes ({self._max_event_bytes})"
            )
        return payload

    def _message_id(self, msg_id: Optional[str], subject: str, count: int) -> str:
        # The duplicate window is per stream: several subjects of one call need ids of their own.
        if msg_id is None:
            return f"{self._id_prefix}-{next(self._id_counter)}"
        return msg_id if count == 1 else f"{msg_id}:{subject}"

    async def _publish_core(self, subject: str, payload: bytes, headers: Optional[Dict[str, str]]) -> None:
        try:
            await self._nc.publish(subject, payload, headers=headers)
        except Exception as e:  # noqa: BLE001 - closed, draining, buffer full, over max_payload
            raise RealtimeServiceError("unavailable", f"cannot publish {subject}: {_describe(e)}") from e

    async def _publish_jetstream(self, subject: str, payload: bytes, msg_id: str, given: bool) -> None:
        if not await self._publish_acked(subject, payload, msg_id):
            # Auto mode found the stream gone meanwhile and nobody got the message: published as
            # a core-mode send is (the id travels only when the caller gave one).
            await self._publish_core(subject, payload, {"Nats-Msg-Id": msg_id} if given else None)

    async def _publish_acked(self, subject: str, payload: bytes, msg_id: str) -> bool:
        """True once JetStream acknowledged the message, or once auto mode switched to core
        after an attempt that went out unacknowledged (counted as sent, see below); False when
        auto mode switched to core and no attempt reached anybody (the caller then publishes
        with core NATS)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout
        # The window: a send beyond max_in_flight waits here, and that wait counts toward
        # publish_timeout like the attempts do.
        if self._window.locked():
            try:
                await _acquire_before(self._window, deadline)
            except asyncio.TimeoutError:
                raise RealtimeServiceError(
                    "timeout",
                    f"{subject}: no free slot in the in-flight window ({self._max_in_flight}) within "
                    f"publish_timeout ({self._publish_timeout:g} s)",
                ) from None
        else:
            await self._window.acquire()
        try:
            backoff = _BACKOFF_FIRST
            attempts = 0
            last: Optional[BaseException] = None
            headers = {"Nats-Msg-Id": msg_id}
            while True:
                if self._mode == "core":
                    # Another send's lookup found the stream deleted while this one waited. Its
                    # last attempt, if unacknowledged, may have been delivered (stored, or taken
                    # by a live bridge): core mode is at most once, so it counts as sent.
                    return isinstance(last, nats.errors.TimeoutError)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise RealtimeServiceError(
                        "timeout",
                        f"{subject}: not acknowledged within publish_timeout ({self._publish_timeout:g} s, "
                        f"{attempts} attempts; last: {_describe(last) if last else 'none'})",
                    )
                attempts += 1
                try:
                    await self._js.publish(subject, payload, timeout=min(self._ack_timeout, remaining), headers=headers)
                    return True  # an acknowledgement, possibly of a duplicate: stored once either way
                except nats.js.errors.APIError as e:
                    raise RealtimeServiceError(
                        "unavailable", f"JetStream refused {subject}: {e.description or e} (code {e.code})"
                    ) from e
                except _RETRYABLE as e:
                    last = e
                    timed_out = isinstance(e, nats.errors.TimeoutError)
                    if (timed_out or isinstance(e, _NO_RESPONDERS)) and await self._stream_gone(deadline, timed_out):
                        # The stream is gone. After "no responders" nobody got the message: the
                        # caller publishes it with core NATS. After a lost acknowledgement the
                        # attempt went out as a plain message to the subject's subscribers (a
                        # live bridge delivered it): sent, as a core publish would be, not again.
                        return timed_out
                except Exception as e:  # noqa: BLE001 - closed connection and the like: final
                    raise RealtimeServiceError("unavailable", f"cannot publish {subject}: {_describe(e)}") from e
                # Jitter (half to all of the step): many messages' retries do not arrive together.
                delay = backoff * random.uniform(0.5, 1.0)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        finally:
            self._window.release()

    # --- Mode ----------------------------------------------------------------------------

    async def _ensure_mode(self) -> None:
        if self._resolved and self._mode == "jetstream" or self._configured_mode == "core":
            return
        now = asyncio.get_running_loop().time()
        due = self._last_lookup is None or now - self._last_lookup >= self._recheck_interval
        if not self._resolved or due:
            # One lookup at a time: concurrent sends wait for the same answer.
            if self._lookup_task is None or self._lookup_task.done():
                self._lookup_task = asyncio.ensure_future(self._lookup())
            await asyncio.shield(self._lookup_task)

    async def _lookup(self) -> None:
        """One JetStream stream-info request: sets the mode (auto), or checks that the stream
        exists (jetstream mode: ``unavailable`` if not)."""
        if self._configured_mode == "core":
            self._mode = "core"
            return
        self._last_lookup = asyncio.get_running_loop().time()
        found, why, _ = await self._stream_info()
        if found:
            self._mode = "jetstream"
        elif self._configured_mode == "jetstream":
            # Stays unresolved: the next send looks again.
            raise RealtimeServiceError("unavailable", f"mode is 'jetstream' but {why}")
        else:
            self._mode = "core"
        self._resolved = True

    async def _stream_gone(self, deadline: float, timed_out: bool) -> bool:
        """Auto mode on JetStream, after "no responders" to a publish or a lost acknowledgement
        (``timed_out``): was the stream deleted? Looks it up again (one request at a time, shared
        by the sends that ask; after "no responders" at most one per ``_GONE_RECHECK_MIN``, after
        a lost acknowledgement always, since a live bridge subscribing to the subject takes each
        attempt and never answers) and waits for it until ``deadline`` at most. True when the
        service is in core mode now."""
        if self._configured_mode != "auto":
            return False
        if self._mode == "core":
            return True
        loop = asyncio.get_running_loop()
        task = self._gone_task
        if task is None or task.done():
            now = loop.time()
            if (
                not timed_out
                and self._last_gone_lookup is not None
                and now - self._last_gone_lookup < _GONE_RECHECK_MIN
            ):
                return False  # looked a moment ago: retry as usual
            self._last_gone_lookup = now
            task = self._gone_task = asyncio.ensure_future(self._look_again())
        remaining = deadline - loop.time()
        if remaining > 0:
            # Not wait_for: a send giving up must not cancel the lookup others wait for.
            await asyncio.wait({task}, timeout=remaining)
        return self._in_core()

    def _in_core(self) -> bool:
        # A method, not an inline test: the mode changes across awaits, which narrowing ignores.
        return self._mode == "core"

    async def _look_again(self) -> None:
        started = asyncio.get_running_loop().time()
        try:
            _, _, not_found = await self._stream_info()
        except Exception:  # noqa: BLE001 - a failed lookup tells nothing: the send retries
            return
        # Only JetStream saying the stream does not exist switches: no answer, or another error
        # answer (JetStream momentarily without a leader answers 503), changes nothing, and the
        # sends keep retrying.
        if not_found and self._mode == "jetstream":
            self._mode = "core"
            # From here the rule of core mode: look again at most every stream_recheck_interval.
            self._last_lookup = started

    async def _stream_info(self) -> Tuple[bool, str, bool]:
        """One stream-info request: whether the stream exists; why not; and whether JetStream
        answered "not found" (404), the one answer that says it is gone."""
        try:
            msg = await self._nc.request(f"$JS.API.STREAM.INFO.{self._stream}", b"", timeout=self._ack_timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return False, "JetStream does not answer (not enabled on this NATS server?)", False
        except Exception as e:  # noqa: BLE001
            raise RealtimeServiceError("unavailable", f"cannot look the stream up: {_describe(e)}") from e
        try:
            answer = json.loads(msg.data)
        except ValueError:
            return False, "JetStream's stream-info answer is not JSON", False
        error = answer.get("error") if isinstance(answer, dict) else None
        if error is not None:
            description = error.get("description") if isinstance(error, dict) else error
            not_found = isinstance(error, dict) and error.get("code") == 404
            return False, f"stream {self._stream} is not available: {description}", not_found
        return True, "", False

    # --- Presence ------------------------------------------------------------------------

    async def get_presence(self, user_id: str) -> Presence:
        """The bridges' answer for ``user_id`` (docs/protocol.md §4.2): ``no_bridge`` when none
        answers within ``presence_timeout``."""
        _check_user_id(user_id)
        if self._closed:
            raise RealtimeServiceError("closed", "the service is closed")
        try:
            msg = await self._nc.request(f"realtime.presence.{user_id}", b"", timeout=self._presence_timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as e:
            raise RealtimeServiceError(
                "no_bridge", f"no bridge answered the presence request for {user_id!r}: {_describe(e)}"
            ) from e
        except Exception as e:  # noqa: BLE001
            raise RealtimeServiceError("unavailable", f"presence request failed: {_describe(e)}") from e
        try:
            answer = json.loads(msg.data)
        except ValueError as e:
            raise RealtimeServiceError("unavailable", "the presence answer is not JSON") from e
        if not isinstance(answer, dict) or "error" in answer or not isinstance(answer.get("clients", []), list):
            raise RealtimeServiceError("unavailable", f"the bridge refused the presence request: {answer!r}")
        answer.setdefault("clients", [])
        result: Presence = answer  # type: ignore[assignment]
        return result

    async def get_connected_clients(self, user_id: str) -> List[str]:
        """The client ids of the user's open streams, oldest first."""
        presence = await self.get_presence(user_id)
        return [c["id"] for c in presence["clients"]]

    async def is_user_connected(self, user_id: str) -> bool:
        """Whether the user has at least one open stream on any bridge."""
        return bool((await self.get_presence(user_id))["connected"])


async def _acquire_before(window: asyncio.Semaphore, deadline: float) -> None:
    """Waits for a slot until ``deadline`` (loop time); asyncio.TimeoutError after it."""
    if sys.version_info >= (3, 11):
        # A timer on this task: no extra task per waiting send, which a flood has thousands of.
        async with asyncio.timeout_at(deadline):
            await window.acquire()
    else:
        await asyncio.wait_for(window.acquire(), deadline - asyncio.get_running_loop().time())


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


async def _close_quietly(nc: NATS) -> None:
    try:
        await asyncio.wait_for(nc.close(), timeout=5)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
