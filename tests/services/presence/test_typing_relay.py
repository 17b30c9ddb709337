"""SetTyping's domain logic with a fake membership port and a recording sink."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.presence.errors import TypingTooFrequent
from services.presence.typing_relay import MembershipCache, TypingRelay, TypingSignal
from services.runtime.errors import PermissionDenied
from services.runtime.ratelimit import RateLimiter

CONVERSATION = "c1"


class FakeMembership:
    """History as a dict: conversation -> members; counts the questions."""

    def __init__(self, members: dict[str, list[str]]) -> None:
        self._members = members
        self.asked: list[tuple[str, str]] = []

    async def members(self, conversation_id: str, credentials: str) -> Sequence[str]:
        self.asked.append((conversation_id, credentials))
        members = self._members[conversation_id]
        if credentials not in members:  # the fake's "token" is the user id
            raise PermissionDenied(f"conversation_id: not a member of {conversation_id}")
        return members


class RecordingSink:
    def __init__(self) -> None:
        self.sent: list[tuple[list[str], TypingSignal]] = []

    async def typing(self, recipients: Sequence[str], signal: TypingSignal) -> None:
        self.sent.append((list(recipients), signal))


def _relay(membership: FakeMembership, sink: RecordingSink, rate: float = 5.0) -> TypingRelay:
    return TypingRelay(membership, sink, RateLimiter(rate, rate), MembershipCache(30.0, 100), ttl_ms=5000)


async def test_typing_is_sent_to_the_other_member_only_not_the_caller_nor_the_assistant() -> None:
    sink = RecordingSink()
    relay = _relay(FakeMembership({CONVERSATION: ["ann", "bob", ""]}), sink)
    signal = await relay.set_typing("ann", CONVERSATION, True, "ann", now=0.0)
    assert signal == TypingSignal(CONVERSATION, "ann", True, 5000)
    assert sink.sent == [(["bob"], signal)]


async def test_stopping_typing_is_sent_with_no_expiry() -> None:
    sink = RecordingSink()
    relay = _relay(FakeMembership({CONVERSATION: ["ann", "bob"]}), sink)
    signal = await relay.set_typing("ann", CONVERSATION, False, "ann", now=0.0)
    assert (signal.typing, signal.expires_in_ms) == (False, 0)
    assert sink.sent == [(["bob"], signal)]


async def test_membership_is_asked_once_while_the_answer_is_fresh() -> None:
    membership = FakeMembership({CONVERSATION: ["ann", "bob"]})
    relay = _relay(membership, RecordingSink())
    for second in (0.0, 1.0, 29.0):
        await relay.set_typing("ann", CONVERSATION, True, "ann", now=second)
    assert len(membership.asked) == 1
    await relay.set_typing("ann", CONVERSATION, True, "ann", now=31.0)
    assert len(membership.asked) == 2


async def test_a_non_member_is_refused_and_nothing_is_sent() -> None:
    sink = RecordingSink()
    relay = _relay(FakeMembership({CONVERSATION: ["ann", "bob"]}), sink)
    with pytest.raises(PermissionDenied):
        await relay.set_typing("eve", CONVERSATION, True, "eve", now=0.0)
    assert sink.sent == []


async def test_typing_faster_than_the_rate_is_refused_with_a_wait() -> None:
    relay = _relay(FakeMembership({CONVERSATION: ["ann", "bob"]}), RecordingSink(), rate=2.0)
    await relay.set_typing("ann", CONVERSATION, True, "ann", now=0.0)
    await relay.set_typing("ann", CONVERSATION, True, "ann", now=0.0)
    with pytest.raises(TypingTooFrequent) as err:
        await relay.set_typing("ann", CONVERSATION, True, "ann", now=0.1)
    assert err.value.retry_after_s == pytest.approx(0.4)
