"""Which presence replica announces which user.

Every replica folds every user (they all watch the same KV bucket), but a change must
be published on ``presence.changed.<user_id>`` and its last seen written to CQL once,
not once per replica. Replicas register in the bucket and each user is owned by the
live replica that ranks highest for it (rendezvous hashing): no coordination, and when
a replica comes or goes only the users it owned move.

Knows nothing of NATS; time is passed in (unix seconds, as registrations carry).
"""

from __future__ import annotations

import hashlib


def _rank(replica_id: str, user_id: str) -> int:
    # A stable hash: Python's hash() differs between processes.
    digest = hashlib.blake2b(f"{replica_id}/{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class ReplicaRing:
    """The live replicas as this one knows them; this one always counts as live."""

    def __init__(self, self_id: str, ttl_s: float) -> None:
        self.self_id = self_id
        self._ttl = ttl_s
        self._seen: dict[str, float] = {}

    def apply(self, replica_id: str, seen_at: float | None) -> None:
        """A replica registered at ``seen_at``, or left (None)."""
        if seen_at is None:
            self._seen.pop(replica_id, None)
        else:
            self._seen[replica_id] = max(seen_at, self._seen.get(replica_id, seen_at))

    def live(self, now: float) -> list[str]:
        """Ids of the replicas registered within the TTL, this one included, sorted."""
        alive = {r for r, seen in self._seen.items() if seen + self._ttl > now}
        alive.add(self.self_id)
        return sorted(alive)

    def owns(self, user_id: str, now: float) -> bool:
        """True if this replica announces ``user_id``."""
        return max(self.live(now), key=lambda r: _rank(r, user_id)) == self.self_id
