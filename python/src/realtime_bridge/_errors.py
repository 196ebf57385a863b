"""Errors of the producer library, with the codes of docs/protocol.md §1.7."""

from __future__ import annotations

from typing import Literal

#: Every code a :class:`RealtimeServiceError` can carry.
ErrorCode = Literal[
    "invalid_user_id",
    "invalid_event_name",
    "reserved_event",
    "invalid_data",
    "too_large",
    "invalid_msg_id",
    "timeout",
    "unavailable",
    "no_bridge",
    "closed",
]


class RealtimeServiceError(Exception):
    """A send, a presence request or connect failed; ``code`` says why (one of :data:`ErrorCode`)."""

    code: ErrorCode

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={str(self)!r})"


class RealtimeInputError(RealtimeServiceError, ValueError):
    """A call's input was refused before anything was sent (a bad user id, event name, data or
    message id). Also a ``ValueError``, so code that validates with ``except ValueError`` keeps
    working."""
