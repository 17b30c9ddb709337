"""Which consumers exist, read from JetStream: the durable consumers of FORMS and their metadata.

The worker that runs a consumer declares its durable (services/forms/runner.py) with
metadata saying what the service needs to know (required, enabled, limits), so the
service and every worker see the same list, whichever processes registered which
plug-ins. The list is read again after ``cache_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from services.forms.streams import FORMS_STREAM
from services.runtime.errors import Unavailable

MARKER = "chatmesh_forms_consumer"


@dataclass(frozen=True)
class ConsumerEntry:
    """A consumer as the service sees it."""

    name: str
    description: str
    enabled: bool
    required: bool
    max_deliveries: int
    batch_size: int
    backoff_ms: tuple[int, ...]


def entry_of(info: ConsumerInfo) -> ConsumerEntry | None:
    """The entry of a durable this service declared (None for any other consumer)."""
    config = info.config
    meta = config.metadata or {}
    if meta.get(MARKER) != "1" or not info.name:
        return None
    backoff = tuple(int(v) for v in meta.get("backoff_ms", "").split(",") if v)
    return ConsumerEntry(
        name=info.name,
        description=config.description or "",
        enabled=meta.get("enabled", "true") == "true",
        required=meta.get("required", "true") == "true",
        max_deliveries=int(meta.get("max_deliveries", "0") or 0),
        batch_size=int(meta.get("batch_size", "0") or 0),
        backoff_ms=backoff,
    )


class ConsumerDirectory:
    """The registered consumers, cached for ``cache_s``."""

    def __init__(self, js: JetStreamContext, cache_s: float) -> None:
        self._js = js
        self._cache_s = cache_s
        self._entries: list[ConsumerEntry] = []
        self._infos: dict[str, ConsumerInfo] = {}
        self._read_at = -1e9

    async def infos(self, fresh: bool = False) -> dict[str, ConsumerInfo]:
        """Each consumer's JetStream info by name (``fresh``: not from the cache)."""
        if fresh or time.monotonic() - self._read_at > self._cache_s:
            try:
                infos = await self._js.consumers_info(FORMS_STREAM)
            except NotFoundError:
                infos = []
            except Exception as exc:  # nats raises timeouts and connection errors of several types
                raise Unavailable("JetStream unavailable: the consumers cannot be listed; retry") from exc
            entries, by_name = [], {}
            for info in infos:
                entry = entry_of(info)
                if entry is not None:
                    entries.append(entry)
                    by_name[entry.name] = info
            self._entries = sorted(entries, key=lambda e: e.name)
            self._infos = by_name
            self._read_at = time.monotonic()
        return self._infos

    async def entries(self) -> list[ConsumerEntry]:
        """Every registered consumer, by name."""
        await self.infos()
        return self._entries

    async def required(self) -> frozenset[str]:
        """Names of the consumers a submission needs to be processed."""
        return frozenset(e.name for e in await self.entries() if e.required)
