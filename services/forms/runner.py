"""Runs one consumer plug-in: pulls batches from its durable, records statuses, acks, retries, dead letters.

For each batch, in this order (each step durable before the next):

1. ``handle(batch)``: the plug-in's effect (idempotent by submission id).
2. Failures past ``max_deliveries`` are published to FORMS_DLQ (acked by JetStream).
3. The consumer's status rows (done, failed, dead-lettered) are written to CQL.
4. A required consumer finds out, for its done submissions, whether every required
   consumer is done now (services/forms/commits.py: from what this process committed, or
   from the status rows); those are announced on ``forms.processed.<id>`` (de-duplicated
   by id, so two consumers finishing at once announce once).
5. Done and dead-lettered deliveries are acknowledged (a required consumer's done ones
   that wait for another consumer of this process may be held until it commits, see
   commits.py); failed ones are NAKed with the back-off as delay. Then one core-NATS
   notice wakes WatchSubmission streams.

A crash anywhere before 5 redelivers the batch after ``ack_wait_s``; every step is an
upsert or de-duplicated, so the redelivery changes nothing that was already done. A
delivery already past its maximum when it arrives (its worker died handling it) becomes
a dead letter without being handled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.commits import CommitBook
from services.forms.consumers.base import Consumer, ConsumerSpec, Delivery, Done, Failed, Outcome
from services.forms.deadletters import DeadLetters, short_error
from services.forms.directory import MARKER, ConsumerDirectory
from services.forms.metrics import WorkerMetrics
from services.forms.store import FormStore, StatusWrite
from services.forms.streams import FORMS_STREAM, STATUS_CHANGED_SUBJECT, redrive_subjects
from services.runtime.bus import AckedPublisher
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("chatmesh.forms.runner")

FETCH_WAIT_S = 2.0


def durable_config(spec: ConsumerSpec, deliver_policy: DeliverPolicy | None = None) -> ConsumerConfig:
    """The durable JetStream consumer of ``spec``, with the metadata the service reads."""
    cls = spec.cls
    return ConsumerConfig(
        durable_name=cls.name,
        name=cls.name,
        description=cls.description[:200],
        filter_subjects=[*cls.subjects, redrive_subjects(cls.name)],
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=-1,  # the runner counts deliveries and dead-letters itself (nothing is dropped)
        max_ack_pending=max(1000, spec.batch_size * cls.parallel_batches * 8),
        max_waiting=512,
        deliver_policy=deliver_policy or (DeliverPolicy.NEW if spec.start == "new" else DeliverPolicy.ALL),
        metadata={
            MARKER: "1",
            "required": "true" if spec.required else "false",
            "enabled": "true" if spec.enabled else "false",
            "max_deliveries": str(spec.max_deliveries),
            "batch_size": str(spec.batch_size),
            "backoff_ms": ",".join(str(int(b * 1000)) for b in cls.backoff_s),
        },
    )


async def ensure_durable(nc: Client, spec: ConsumerSpec) -> None:
    """Create the consumer's durable, or update it (keeping where an existing one started)."""
    js = nc.jetstream()
    try:
        info = await js.consumer_info(FORMS_STREAM, spec.name)
    except NotFoundError:
        await js.add_consumer(FORMS_STREAM, durable_config(spec))
        log.info("consumer created", extra={"consumer": spec.name, "start": spec.start})
        return
    config = durable_config(spec, info.config.deliver_policy)
    config.opt_start_seq, config.opt_start_time = info.config.opt_start_seq, info.config.opt_start_time
    await js.add_consumer(FORMS_STREAM, config)


class ConsumerRunner:
    """Pulls and handles one consumer's batches until stopped."""

    def __init__(
        self,
        plugin: Consumer,
        spec: ConsumerSpec,
        nc: Client,
        store: FormStore,
        dead_letters: DeadLetters,
        directory: ConsumerDirectory,
        publisher: AckedPublisher,
        metrics: WorkerMetrics,
        publish_timeout_s: float,
        book: CommitBook,
    ) -> None:
        self.plugin = plugin
        self.spec = spec
        self._nc = nc
        self._js = nc.jetstream()
        self._store = store
        self._dead = dead_letters
        self._directory = directory
        self._publisher = publisher
        self._metrics = metrics
        self._timeout_s = publish_timeout_s
        self._book = book
        # Held acknowledgements count against max_ack_pending: hold at most half of it.
        self._max_held = max(1000, spec.batch_size * plugin.parallel_batches * 8) // 2
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Declare the durable, open the plug-in, start pulling."""
        await ensure_durable(self._nc, self.spec)
        if not self.spec.enabled:
            return
        await self.plugin.open()
        for _ in range(self.plugin.parallel_batches):
            subscription = await self._js.pull_subscribe_bind(
                durable=self.spec.name, stream=FORMS_STREAM, pending_msgs_limit=self.spec.batch_size * 4
            )
            self._tasks.append(asyncio.create_task(self._loop(subscription)))

    async def stop(self) -> None:
        """Finish the batches in hand, close the plug-in."""
        self._stopping.set()
        await cancel_and_wait(self._tasks)
        if self.spec.enabled:
            await self.plugin.close()

    async def _gather(self, subscription: object) -> list[Msg]:
        fetch = subscription.fetch  # type: ignore[attr-defined]
        size = self.spec.batch_size
        try:
            msgs: list[Msg] = await fetch(size, FETCH_WAIT_S)
        except TimeoutError:
            return []
        wait = self.plugin.batch_wait_s
        if wait > 0 and len(msgs) < size:
            deadline = time.monotonic() + wait
            while len(msgs) < size:
                left = deadline - time.monotonic()
                if left <= 0.001:
                    break
                try:
                    msgs.extend(await fetch(size - len(msgs), left))
                except TimeoutError:
                    break
        return msgs

    async def _loop(self, subscription: object) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await self._gather(subscription)
                if msgs:
                    await self.run_batch(msgs)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the batch is redelivered after ack_wait; keep pulling
                log.exception("batch failed", extra={"consumer": self.spec.name})
                self._metrics.batch_errors.labels(self.spec.name).inc()
                await asyncio.sleep(1.0)

    async def run_batch(self, msgs: Sequence[Msg]) -> None:
        """Handle one batch of deliveries end to end (see the module docstring)."""
        started = time.perf_counter()
        name = self.spec.name
        batch: list[tuple[Msg, Delivery]] = []
        buried: list[tuple[Msg, Delivery, str]] = []
        for msg in msgs:
            meta = msg.metadata
            try:
                submission = pb.Submission.FromString(msg.data)
            except DecodeError:
                submission = pb.Submission()
            delivery = Delivery(submission, meta.num_delivered, meta.sequence.stream, msg.headers or {})
            if not submission.submission_id:
                buried.append((msg, delivery, "not a submission (unreadable payload)"))
            elif delivery.deliveries > self.spec.max_deliveries:
                buried.append((msg, delivery, "a worker stopped while handling it, more often than allowed"))
            else:
                batch.append((msg, delivery))
        outcomes: Sequence[Outcome] = []
        if batch:
            try:
                outcomes = await self.plugin.handle([d for _, d in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{name}.handle answered {len(outcomes)} outcomes for {len(batch)} deliveries")
            except Exception as exc:  # noqa: BLE001 - a plug-in's failure fails its batch, nothing else
                error = short_error(f"{type(exc).__name__}: {exc}")
                log.warning("handle failed", extra={"consumer": name, "reason": error})
                outcomes = [Failed(error)] * len(batch)
        done: list[tuple[Msg, Delivery]] = []
        retry: list[tuple[Msg, Delivery, str]] = []
        for (msg, delivery), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Done):
                done.append((msg, delivery))
            elif delivery.deliveries >= self.spec.max_deliveries:
                buried.append((msg, delivery, outcome.error))
            else:
                retry.append((msg, delivery, outcome.error))
        if buried:
            await self._dead.bury(
                name,
                [
                    (d.submission, d.deliveries, d.stream_seq, error)
                    for _, d, error in buried
                    if d.submission.submission_id
                ],
            )
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # CQL keeps milliseconds
        facts = self.plugin.writes_facts
        writes = [
            StatusWrite(d.submission, name, pb.CONSUMER_STATE_DONE, d.deliveries, "", now, facts) for _, d in done
        ]
        writes += [
            StatusWrite(d.submission, name, pb.CONSUMER_STATE_FAILED, d.deliveries, short_error(e), now)
            for _, d, e in retry
        ]
        writes += [
            StatusWrite(d.submission, name, pb.CONSUMER_STATE_DEAD_LETTERED, d.deliveries, short_error(e), now)
            for _, d, e in buried
            if d.submission.submission_id
        ]
        await self._store.put_statuses(writes)
        to_ack = [msg for msg, _ in done]
        if done and self.spec.required:
            to_ack = await self._book.committed(
                name, [(m, d.submission) for m, d in done], now, self._max_held, self.spec.ack_wait_s
            )
        for msg in to_ack:
            await msg.ack()
        for msg, _, _ in buried:
            await msg.ack()
        for msg, delivery, _ in retry:
            await msg.nak(delay=self._backoff(delivery.deliveries))
        if writes:
            with contextlib.suppress(Exception):  # a lost notice only delays a watcher until its next poll
                sids = "\n".join(w.submission.submission_id for w in writes)
                await self._nc.publish(STATUS_CHANGED_SUBJECT, sids.encode())
        m = self._metrics
        m.processed.labels(name).inc(len(done))
        m.failed.labels(name).inc(len(retry))
        m.dead_lettered.labels(name).inc(len(buried))
        m.batch_seconds.labels(name).observe(time.perf_counter() - started)

    def _backoff(self, deliveries: int) -> float:
        steps = self.plugin.backoff_s or (1.0,)
        return steps[min(deliveries, len(steps)) - 1]
