"""When a failed call is tried again, and how long the client waits before it does.

Only UNAVAILABLE is retried (the mesh's "a dependency is down or the service is draining:
retry with back-off"), and only for calls that are safe to repeat: the RPCs marked
``NO_SIDE_EFFECTS`` in the contracts, and those the contracts call idempotent (see
:data:`IDEMPOTENT_METHODS`). Everything else fails at once with its status.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from chatmesh.forms.v1 import forms_pb2
from chatmesh.history.v1 import history_pb2
from chatmesh.inference.v1 import inference_pb2
from chatmesh.ingest.v1 import ingest_pb2
from chatmesh.presence.v1 import presence_pb2
from chatmesh.session.v1 import session_pb2

# Idempotent by contract, though not read-only: a repeat changes nothing more.
#   SendMessage            the same client_message_id stores and delivers the message once
#                          (the client always sets one).
#   MarkRead               a read pointer never moves back.
#   EditMessage            sets the same text again.
#   DeleteMessage          documented idempotent.
#   AppendAssistantMessage idempotent on request_id.
#   SetTyping              sets the same indicator again.
#   Cancel                 documented idempotent.
#   Embed                  stores nothing.
#   Upsert                 the same points (ids) again replace themselves.
#   CancelJob              documented idempotent.
#   Submit                 the same idempotency_key is accepted once (the client always sets one).
#   Redrive                documented harmless to retry: redriven ids are skipped.
# Not here on purpose: Register, Login (a repeat makes another device), Refresh (a repeated
# single-use refresh token revokes the whole login), Logout, RevokeDevice, Heartbeat (rate
# limited), CreateForm and UpdateForm (a repeat of one that went through is refused),
# CreateConversation (an assistant conversation is created anew each time; the
# client retries only the DIRECT kind itself) and the streams, whose retries the client's
# stream helpers handle.
IDEMPOTENT_METHODS = frozenset(
    {
        "/chatmesh.history.v1.HistoryService/SendMessage",
        "/chatmesh.history.v1.HistoryService/MarkRead",
        "/chatmesh.history.v1.HistoryService/EditMessage",
        "/chatmesh.history.v1.HistoryService/DeleteMessage",
        "/chatmesh.history.v1.HistoryService/AppendAssistantMessage",
        "/chatmesh.presence.v1.PresenceService/SetTyping",
        "/chatmesh.inference.v1.InferenceService/Cancel",
        "/chatmesh.inference.v1.InferenceService/Embed",
        "/chatmesh.ingest.v1.IngestService/Upsert",
        "/chatmesh.ingest.v1.IngestService/CancelJob",
        "/chatmesh.forms.v1.FormsService/Submit",
        "/chatmesh.forms.v1.FormsService/Redrive",
    }
)


def _read_only_methods(*files: FileDescriptor) -> frozenset[str]:
    """Full method names (``/package.Service/Method``) marked ``NO_SIDE_EFFECTS`` in ``files``."""
    names = set()
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                if method.GetOptions().idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS:
                    names.add(f"/{service.full_name}/{method.name}")
    return frozenset(names)


READ_ONLY_METHODS = _read_only_methods(
    session_pb2.DESCRIPTOR,
    history_pb2.DESCRIPTOR,
    presence_pb2.DESCRIPTOR,
    inference_pb2.DESCRIPTOR,
    ingest_pb2.DESCRIPTOR,
    forms_pb2.DESCRIPTOR,
)

# Methods that need no access token: the client never attaches one to them nor refreshes for them.
PUBLIC_METHODS = frozenset(
    {
        "/chatmesh.session.v1.SessionService/Register",
        "/chatmesh.session.v1.SessionService/Login",
        "/chatmesh.session.v1.SessionService/Refresh",
    }
)


def retry_safe(method: str) -> bool:
    """True when the unary RPC ``method`` (``/package.Service/Method``) may be sent again after UNAVAILABLE."""
    return method in READ_ONLY_METHODS or method in IDEMPOTENT_METHODS


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter and a cap, for UNAVAILABLE.

    The n-th retry (n from 1) waits ``initial_backoff_s * multiplier ** (n - 1)``, at most
    ``max_backoff_s``, scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so that
    many clients dropped at once do not come back at once. The call's deadline covers all
    its attempts and waits: a retry that would not fit in it is not made.

    Attributes:
        max_attempts: Attempts in all, the first included (1 disables retries).
        initial_backoff_s: Wait before the first retry, in seconds.
        max_backoff_s: Longest wait between two attempts, in seconds (before jitter).
        multiplier: Growth of the wait from one retry to the next.
        jitter: Fraction of the wait that is random, 0 to 1.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("RetryPolicy needs 0 <= initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1:
            raise ValueError("RetryPolicy.multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** max(0, retry - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))
