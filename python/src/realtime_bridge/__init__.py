"""Realtime Bridge producer library: send events to users over NATS, ask who is connected.

    from realtime_bridge import RealtimeService

    async with await RealtimeService.connect("nats://127.0.0.1:4222") as rt:
        await rt.send_event_to_user("42", "message_new", {"text": "hi"})

The contract (subjects, modes, acknowledged publishing, error codes) is docs/protocol.md §1.7
of the Realtime Bridge repository.
"""

from ._errors import ErrorCode, RealtimeInputError, RealtimeServiceError
from ._service import Mode, Presence, PresenceClient, RealtimeService

__version__ = "0.1.0"

__all__ = [
    "ErrorCode",
    "Mode",
    "Presence",
    "PresenceClient",
    "RealtimeInputError",
    "RealtimeService",
    "RealtimeServiceError",
    "__version__",
]
