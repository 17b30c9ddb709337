"""The mesh's revocation list: sessions (refresh-token families) ended before their tokens expire.

Access tokens are verified offline (a signature and an expiry), so without this a token
would keep working after Logout or RevokeDevice until it expires. The session service
writes the session id of every ended login into the ``REVOKED`` JetStream KV bucket;
every service process follows the bucket (a KV watch: the current entries, then every
new one, typically within milliseconds) into memory, and its :class:`TokenVerifier`
refuses tokens of a revoked session. Streams opened with such a token are ended too:
:meth:`RevocationList.on_revoked` tells AuthLayer, which cancels them.

Entries expire with the bucket's TTL, which is at least the longest access token
lifetime: by then every token of that session has expired on its own.

While NATS is unreachable a process keeps what it has and keeps trying to follow; a
revocation written meanwhile reaches it when NATS is back (Logout itself answers
UNAVAILABLE until the entry is written, so the client retries it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from services.runtime.bus import ensure_kv
from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.revocation")

BUCKET = "REVOKED"
#: Longer than the longest access token lifetime the session service allows (24 h) plus leeway.
TTL_S = 24 * 3600 + 120
_RETRY_S = 1.0


def bucket_config() -> KeyValueConfig:
    """The bucket every process declares the same way (idempotent)."""
    return KeyValueConfig(bucket=BUCKET, history=1, ttl=TTL_S, storage=StorageType.FILE, max_value_size=64)


class RevocationList:
    """Revoked session ids, followed from the ``REVOKED`` bucket (and written by the session service)."""

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}
        self._listeners: dict[str, set[Callable[[], None]]] = {}
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def is_revoked(self, session_id: str) -> bool:
        """True if the session was ended (its tokens must no longer be accepted)."""
        return session_id in self._revoked

    def on_revoked(self, session_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once when ``session_id`` is revoked; returns a function that unsubscribes."""
        listeners = self._listeners.setdefault(session_id, set())
        listeners.add(callback)

        def unsubscribe() -> None:
            current = self._listeners.get(session_id)
            if current is not None:
                current.discard(callback)
                if not current:
                    del self._listeners[session_id]

        return unsubscribe

    def mark(self, session_id: str, at: float | None = None) -> None:
        """Record ``session_id`` as revoked here and tell its listeners (the watch calls this)."""
        self._revoked[session_id] = time.time() if at is None else at
        for callback in list(self._listeners.pop(session_id, ())):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("revocation listener failed")

    async def revoke(self, session_id: str) -> None:
        """Write the revocation for the whole mesh (session service); Unavailable if NATS is down."""
        self.mark(session_id)
        if self._kv is None:
            raise Unavailable("the revocation list is not reachable yet; retry")
        try:
            await self._kv.put(session_id, str(time.time()).encode())
        except Exception as exc:  # nats raises timeouts and connection errors of several types
            raise Unavailable("could not record the revocation; retry") from exc

    def follow(self, nc: Client) -> None:
        """Start following the bucket over ``nc`` in the background (until :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(nc), name="revocation-follow")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the current entries are loaded; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def _follow(self, nc: Client) -> None:
        while True:
            try:
                js = nc.jetstream()
                await ensure_kv(js, bucket_config())
                self._kv = await js.key_value(BUCKET)
                watcher = await self._kv.watchall()
                async for entry in watcher:
                    if entry is None:  # the current entries are all in
                        self._ready.set()
                        continue
                    if entry.key and entry.operation is None:
                        self.mark(entry.key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS down or restarting: keep trying
                log.warning("revocation list unreachable; retrying", extra={"reason": str(exc) or type(exc).__name__})
            await asyncio.sleep(_RETRY_S)

    async def close(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
