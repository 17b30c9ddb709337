"""The INGEST work queue on JetStream: declaring it, a job's consumer, publishing work, backlog.

See :mod:`services.ingest.streams` for the layout. Work item messages are JSON::

    {"job": "<uuid>", "owner": "<user>", "index": 3, "first": 3073, "count": 1024,
     "start": 1048576, "end": 2097152, "passages": [{"id": ..., "text": ..., "payload": {...}}]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.ingest.points import Passage
from services.ingest.sources import ItemPlan
from services.ingest.streams import IngestNames
from services.runtime.bus import AckedPublisher, ensure_kv, ensure_stream
from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.ingest.queue")

_PUBLISH_CHUNK = 256


@dataclass(frozen=True)
class Backlog:
    """What the queue holds now, every job together."""

    waiting: int
    in_flight: int
    redelivered: int
    jobs: int


def item_message(job_id: str, owner: str, item: ItemPlan) -> dict[str, Any]:
    """The JSON body of one work item."""
    body: dict[str, Any] = {
        "job": job_id,
        "owner": owner,
        "index": item.index,
        "first": item.first_position,
        "count": item.count,
        "start": item.start,
        "end": item.end,
    }
    if item.passages:
        body["passages"] = [{"id": p.id, "text": p.text, "payload": p.payload} for p in item.passages]
    return body


def item_of(body: dict[str, Any]) -> ItemPlan:
    """A work item back from its JSON body."""
    passages = [Passage(p["id"], p["text"], p["payload"]) for p in body.get("passages", ())]
    return ItemPlan(body["index"], body["first"], body["count"], body["start"], body["end"], passages)


class WorkQueue:
    """The stream, its consumers, and publishing into it."""

    def __init__(self, nc: Client, names: IngestNames, ack_wait_s: float, publish_timeout_s: float) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self.names = names
        self._ack_wait_s = ack_wait_s
        self._publisher = AckedPublisher(nc)
        self._timeout_s = publish_timeout_s

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context."""
        return self._js

    async def declare(self, job_retention_s: int, worker_seen_ttl_s: float = 15.0) -> None:
        """The stream, the KV buckets and the planner consumer (idempotent)."""
        await ensure_stream(self._js, self.names.stream_config())
        for config in self.names.kv_configs(job_retention_s, worker_seen_ttl_s):
            await ensure_kv(self._js, config)
        await self._js.add_consumer(
            self.names.stream,
            ConsumerConfig(
                durable_name=self.names.PLANNER,
                filter_subject=self.names.plan_filter,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,
                max_ack_pending=64,
            ),
        )

    async def open_job(self, job_id: str, owner: str, parallelism: int) -> None:
        """The job's consumer: at most ``parallelism`` of its items in flight, across all workers."""
        await self._js.add_consumer(
            self.names.stream,
            ConsumerConfig(
                durable_name=self.names.job_consumer(job_id),
                filter_subject=self.names.item_filter(job_id),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,
                max_ack_pending=parallelism,
                metadata={"owner": owner, "job": job_id},
            ),
        )

    async def close_job(self, job_id: str, drop_items: bool) -> None:
        """Remove the job's consumer (and, for a cancelled job, its remaining items)."""
        try:
            await self._js.delete_consumer(self.names.stream, self.names.job_consumer(job_id))
        except NotFoundError:
            pass
        if drop_items:
            await self._js.purge_stream(self.names.stream, subject=self.names.item_filter(job_id))
            await self._js.purge_stream(self.names.stream, subject=self.names.plan_subject(job_id))

    async def publish_plan(self, job_id: str, owner: str) -> None:
        """Queue the planning of a file job."""
        body = json.dumps({"job": job_id, "owner": owner}).encode()
        await self._publisher.publish(
            [(self.names.plan_subject(job_id), body, {"Nats-Msg-Id": f"plan.{job_id}"})], self._timeout_s
        )

    async def publish_items(self, job_id: str, owner: str, items: Sequence[ItemPlan]) -> None:
        """Queue a job's work items (each once: ``Nats-Msg-Id`` is ``<job>.<index>``)."""
        for start in range(0, len(items), _PUBLISH_CHUNK):
            batch = [
                (
                    self.names.item_subject(job_id, item.index),
                    json.dumps(item_message(job_id, owner, item)).encode(),
                    {"Nats-Msg-Id": f"{job_id}.{item.index}"},
                )
                for item in items[start : start + _PUBLISH_CHUNK]
            ]
            await self._publisher.publish(batch, self._timeout_s)

    async def backlog(self) -> Backlog:
        """Items waiting and in flight, over every job's consumer and the planner."""
        try:
            consumers = await self._js.consumers_info(self.names.stream)
        except Exception as exc:  # NATS down or the stream gone: no number rather than a wrong one
            raise Unavailable("the work queue (NATS) is unavailable") from exc
        waiting = in_flight = redelivered = jobs = 0
        for info in consumers:
            waiting += int(info.num_pending or 0)
            in_flight += int(info.num_ack_pending or 0)
            redelivered += int(info.num_redelivered or 0)
            if info.name != self.names.PLANNER:
                jobs += 1
        return Backlog(waiting, in_flight, redelivered, jobs)
