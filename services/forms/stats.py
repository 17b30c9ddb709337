"""Consumer statistics: each consumer's JetStream counters, its dead letters, its rate and its oldest backlog.

Counters come from the consumer's durable (``num_pending``: not yet delivered;
``num_ack_pending``: in flight; ``num_redelivered``). Dead letters are counted per
consumer in FORMS_DLQ. Processed per minute is the growth of the consumer's acknowledged
delivery floor over up to the last minute of samples (taken at every call and every
``interval_s`` by the sampler task). The oldest unprocessed submission is the first
message after the consumer's acknowledged floor that its filters take. No gRPC here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from services.forms.directory import ConsumerDirectory, ConsumerEntry
from services.forms.errors import ConsumerNotFound
from services.forms.metrics import ConsumerGauges
from services.forms.streams import DLQ_STREAM, FORMS_STREAM, dlq_filter
from services.runtime.errors import ChatmeshError, Unavailable

log = logging.getLogger("chatmesh.forms.stats")

WINDOW_S = 60.0


@dataclass(frozen=True)
class ConsumerCounters:
    """One consumer's numbers."""

    entry: ConsumerEntry
    pending: int
    ack_pending: int
    redelivered: int
    delivered: int
    dead_lettered: int
    last_active_at: datetime | None
    processed_per_minute: float
    oldest_unprocessed_age_ms: int


class ConsumerStatsReader:
    """Reads and samples every consumer's counters."""

    def __init__(self, nc: Client, directory: ConsumerDirectory, gauges: ConsumerGauges | None) -> None:
        self._js = nc.jetstream()
        self._directory = directory
        self._gauges = gauges
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._task: asyncio.Task[None] | None = None

    def export_to(self, gauges: ConsumerGauges) -> None:
        """Also set these Prometheus gauges at every reading."""
        self._gauges = gauges

    def start(self, interval_s: float) -> None:
        """Sample every ``interval_s`` (for the rates and the Prometheus gauges)."""
        self._task = asyncio.create_task(self._sample_forever(interval_s))

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample_forever(self, interval_s: float) -> None:
        while True:
            try:
                await self.read("")
            except Exception:  # noqa: BLE001 - sampling retries next round (JetStream may be restarting)
                log.debug("consumer sampling failed", exc_info=True)
            await asyncio.sleep(interval_s)

    def _rate(self, name: str, floor: int) -> float:
        now = time.monotonic()
        samples = self._samples.setdefault(name, deque())
        samples.append((now, floor))
        while len(samples) > 2 and now - samples[1][0] >= WINDOW_S:
            samples.popleft()
        first_at, first = samples[0]
        span = now - first_at
        return (floor - first) * 60.0 / span if span >= 1.0 else 0.0

    async def _dead_lettered(self, name: str) -> int:
        try:
            info = await self._js.stream_info(DLQ_STREAM, subjects_filter=dlq_filter(name).replace(".*.*", ".>"))
        except NotFoundError:
            return 0
        return sum((info.state.subjects or {}).values())

    async def _oldest_age_ms(self, info: ConsumerInfo) -> int:
        if not (info.num_pending or 0) + (info.num_ack_pending or 0):
            return 0
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        subjects = info.config.filter_subjects or ([info.config.filter_subject] if info.config.filter_subject else [])
        oldest: datetime | None = None
        for subject in subjects:
            try:
                raw = await self._js.get_msg(FORMS_STREAM, seq=floor + 1, subject=subject, next=True)
            except NotFoundError:
                continue
            if raw.time is not None and (oldest is None or raw.time < oldest):
                oldest = raw.time
        if oldest is None:
            return 0
        return max(0, int((datetime.now(UTC) - oldest).total_seconds() * 1000))

    async def read(self, only: str) -> list[ConsumerCounters]:
        """Counters of every consumer, or of ``only`` (ConsumerNotFound if no such consumer)."""
        try:
            infos = await self._directory.infos(fresh=True)
            entries = await self._directory.entries()
            if only:
                entries = [e for e in entries if e.name == only]
                if not entries:
                    raise ConsumerNotFound("consumer", only)
            counters = []
            for entry in entries:
                info = infos[entry.name]
                floor = info.ack_floor.consumer_seq if info.ack_floor else 0
                c = ConsumerCounters(
                    entry=entry,
                    pending=info.num_pending or 0,
                    ack_pending=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                    delivered=info.delivered.consumer_seq if info.delivered else 0,
                    dead_lettered=await self._dead_lettered(entry.name),
                    last_active_at=info.delivered.last_active if info.delivered else None,
                    processed_per_minute=self._rate(entry.name, floor),
                    oldest_unprocessed_age_ms=await self._oldest_age_ms(info),
                )
                counters.append(c)
                if self._gauges is not None:
                    self._gauges.set(
                        entry.name,
                        {
                            "pending": c.pending,
                            "ack_pending": c.ack_pending,
                            "redelivered": c.redelivered,
                            "dead_lettered": c.dead_lettered,
                            "processed_per_minute": c.processed_per_minute,
                            "oldest_unprocessed_age_seconds": c.oldest_unprocessed_age_ms / 1000,
                        },
                    )
            return counters
        except ChatmeshError:
            raise
        except Exception as exc:  # nats raises timeouts and connection errors of several types
            raise Unavailable("JetStream unavailable: consumer counters cannot be read; retry") from exc
