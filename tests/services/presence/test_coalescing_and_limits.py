"""Coalescing windows, rate limits, replica ownership and the watch index (domain alone)."""

from __future__ import annotations

import pytest

from services.presence.coalescer import ChangeCoalescer
from services.presence.errors import TooManyWatches
from services.presence.folder import Presence, PresenceState
from services.presence.ring import ReplicaRing
from services.presence.watches import WatchIndex
from services.runtime.ratelimit import RateLimiter


def test_changes_inside_a_window_make_the_user_due_once_at_the_end_of_the_first_window() -> None:
    coalescer = ChangeCoalescer(window_s=1.0)
    assert coalescer.touch("ann", 10.0)
    assert not coalescer.touch("ann", 10.4)
    assert not coalescer.touch("ann", 10.9)  # does not extend the window
    assert coalescer.next_deadline() == 11.0
    assert coalescer.due(10.99) == []
    assert coalescer.due(11.0) == ["ann"]
    assert coalescer.next_deadline() is None
    assert coalescer.touch("ann", 11.1)  # a new window


def test_a_heartbeat_limit_of_one_a_second_rejects_the_second_within_a_second_and_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.acquire("d", 100.0) == 0.0
    assert limiter.acquire("d", 100.25) == pytest.approx(0.75)
    assert limiter.acquire("other", 100.25) == 0.0
    assert limiter.acquire("d", 101.0) == 0.0


def test_a_burst_limit_allows_the_burst_then_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=5.0, burst=5)
    assert [limiter.acquire("u", 0.0) for _ in range(6)][-2:] == [0.0, pytest.approx(0.2)]
    assert limiter.acquire("u", 0.2) == 0.0


def test_a_limiter_forgets_keys_that_were_quiet_for_a_while_on_its_own() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, prune_every_s=30.0)
    for i in range(100):
        limiter.acquire(f"device-{i}", 0.0)
    limiter.acquire("busy", 29.5)
    limiter.acquire("busy", 31.0)
    assert len(limiter) == 1


def test_each_user_is_owned_by_exactly_one_live_replica_and_only_a_leaving_replicas_users_move() -> None:
    now = 1000.0
    rings = {r: ReplicaRing(r, ttl_s=60) for r in ("a", "b", "c")}
    for ring in rings.values():
        for other in rings:
            ring.apply(other, now)
    users = [f"user-{i}" for i in range(300)]
    owners = {u: [r for r, ring in rings.items() if ring.owns(u, now)] for u in users}
    assert all(len(o) == 1 for o in owners.values())
    assert {o[0] for o in owners.values()} == {"a", "b", "c"}  # spread over all

    for ring in (rings["a"], rings["b"]):
        ring.apply("c", None)
    after = {u: [r for r in ("a", "b") if rings[r].owns(u, now)] for u in users}
    assert all(len(o) == 1 for o in after.values())
    assert all(after[u] == owners[u] for u in users if owners[u] != ["c"])


def test_a_replica_that_stopped_registering_stops_owning_after_the_ttl() -> None:
    ring = ReplicaRing("a", ttl_s=60)
    ring.apply("b", 1000.0)
    assert ring.live(1059.0) == ["a", "b"]
    assert ring.live(1060.0) == ["a"]
    assert all(ring.owns(f"u{i}", 1060.0) for i in range(50))


def _online(user: str) -> Presence:
    return Presence(user, PresenceState.ONLINE, 1.0, 1)


def test_a_change_reaches_only_the_watches_of_that_user_and_closed_watches_leave_no_trace() -> None:
    index = WatchIndex(max_watches=10)
    ann_and_bob = index.open(["ann", "bob"])
    cid = index.open(["cid"])
    assert index.deliver(_online("ann")) == 1
    assert index.deliver(_online("zed")) == 0
    index.close(ann_and_bob)
    index.close(ann_and_bob)
    index.close(cid)
    assert (index.open_watches, index.watched_users) == (0, 0)


def test_watches_past_the_limit_are_refused() -> None:
    index = WatchIndex(max_watches=1)
    index.open(["ann"])
    with pytest.raises(TooManyWatches):
        index.open(["bob"])


async def test_a_slow_watch_holds_only_the_latest_change_of_each_user() -> None:
    index = WatchIndex(max_watches=1)
    watch = index.open(["ann", "bob"])
    watch.mark_sent([Presence("ann", PresenceState.OFFLINE, None, 0), Presence("bob", PresenceState.OFFLINE, None, 0)])
    index.deliver(_online("ann"))
    index.deliver(Presence("bob", PresenceState.AWAY, None, 1))
    index.deliver(Presence("ann", PresenceState.AWAY, None, 2))
    assert await watch.changes() == [
        Presence("bob", PresenceState.AWAY, None, 1),
        Presence("ann", PresenceState.AWAY, None, 2),
    ]
