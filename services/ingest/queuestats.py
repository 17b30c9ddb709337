"""GetQueueStats: the INGEST work queue's backlog, for anyone signed in, and workers reporting in.

What it reads, every call (no cache: an operations view polls every few seconds, and each
read is one CONSUMER.LIST plus a KV read per active job):

* the planner's and every job's consumer on the INGEST stream: ``num_pending`` (waiting for
  a worker), ``num_ack_pending`` (handed out, not acked), ``num_redelivered``; a job's
  consumer exists from StartJob until the job ends, so their number is the jobs in flight,
  and each carries its owner in its metadata (set by ``WorkQueue.open_job``);
* the active jobs' records, for their rate (``progress.rate``: points per second over the
  last few seconds, as WatchJob shows it);
* the ``ingest_workers`` KV bucket: each worker puts its name there every
  ``worker_seen_ttl_s / 3`` seconds, and the bucket forgets a key ``worker_seen_ttl_s``
  after its last write, so the keys are the workers seen lately (a SIGKILLed worker drops
  out by itself).

What a caller sees, and why it is safe for any signed-in user: sums and counts over the
whole mesh (as /metrics shows an operator), plus the caller's own jobs and rate counted
apart. No job id, owner, collection or source of another user leaves this module: the
consumers' names and metadata are only counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from services.ingest import progress
from services.ingest.kvtable import KvTable
from services.ingest.records import JobRecord, job_key
from services.ingest.streams import IngestNames
from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.ingest.queuestats")


@dataclass(frozen=True)
class QueueStats:
    """The work queue now: mesh-wide counts, and the caller's own share."""

    pending_items: int
    in_flight_items: int
    redelivered_items: int
    jobs_in_flight: int
    my_jobs_in_flight: int
    workers_seen: int
    points_per_second: float
    my_points_per_second: float
    sampled_at: float


class QueueStatsReader:
    """Reads :class:`QueueStats` from JetStream (consumers, job records, worker heartbeats)."""

    def __init__(self, js: JetStreamContext, names: IngestNames, jobs: KvTable[JobRecord], workers: KeyValue) -> None:
        self._js = js
        self._names = names
        self._jobs = jobs
        self._workers = workers

    async def read(self, caller: str) -> QueueStats:
        """The queue as ``caller`` may see it. UNAVAILABLE when NATS does not answer."""
        try:
            consumers = await self._js.consumers_info(self._names.stream)
        except Exception as exc:  # NATS down or the stream gone: no number rather than a wrong one
            raise Unavailable("the work queue (NATS) is unavailable; retry") from exc
        pending = in_flight = redelivered = 0
        jobs: list[tuple[str, str]] = []  # (owner, job id): never leaves this method
        for info in consumers:
            pending += int(info.num_pending or 0)
            in_flight += int(info.num_ack_pending or 0)
            redelivered += int(info.num_redelivered or 0)
            if info.name == self._names.PLANNER:
                continue
            metadata = (info.config.metadata if info.config else None) or {}
            jobs.append((metadata.get("owner", ""), metadata.get("job", "")))
        now = time.time()
        rates = await asyncio.gather(*(self._rate(owner, job_id, now) for owner, job_id in jobs))
        return QueueStats(
            pending_items=pending,
            in_flight_items=in_flight,
            redelivered_items=redelivered,
            jobs_in_flight=len(jobs),
            my_jobs_in_flight=sum(1 for owner, _ in jobs if owner == caller),
            workers_seen=await self._workers_seen(),
            points_per_second=sum(rates),
            my_points_per_second=sum(r for (owner, _), r in zip(jobs, rates, strict=True) if owner == caller),
            sampled_at=now,
        )

    async def _rate(self, owner: str, job_id: str, now: float) -> float:
        if not owner or not job_id:
            return 0.0
        try:
            job = await self._jobs.get(job_key(owner, job_id))
        except Exception:  # noqa: BLE001 - one record unreadable: that job counts 0 points/s
            log.warning("could not read a job's record for its rate", exc_info=True)
            return 0.0
        return progress.rate(job, now)[0] if job is not None else 0.0

    async def _workers_seen(self) -> int:
        try:
            return len(await self._workers.keys())
        except NoKeysError:
            return 0
        except Exception as exc:
            raise Unavailable("the work queue (NATS) is unavailable; retry") from exc


async def report_in(workers: KeyValue, name: str, every_s: float, stop: asyncio.Event) -> None:
    """A worker's heartbeat: its name in the workers bucket every ``every_s`` until ``stop``; then gone."""
    key = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "worker"
    while not stop.is_set():
        try:
            await workers.put(key, f'{{"at": {time.time():.3f}}}'.encode())
        except Exception:  # noqa: BLE001 - NATS away: the next beat tries again
            log.warning("could not report in", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    with contextlib.suppress(Exception):
        await workers.delete(key)
