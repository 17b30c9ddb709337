"""What this worker process's required consumers committed: "processed" decided without reading CQL back.

Each required consumer, after its status rows are durable, must find out whether it
completed the set of required consumers (then it announces ``forms.processed.<id>``).
Reading every submission's status rows back costs Cassandra a partition read per
submission per required consumer; most of those reads answer "not yet". In one worker
process running every required consumer, the process itself knows: the book records each
local commit (only once its row is durable), so

- the consumer that completes the set sees it in the book and announces without a read;
- a consumer that is not the last, when every consumer still missing runs in this process
  too, does not read either: it *holds* its acknowledgements of those deliveries until
  the last one commits here (which announces, then acknowledges the held deliveries) or
  until ``hold_s`` passed; then it reads the statuses (as before), announces what they
  say is complete, and acknowledges. Holding the acknowledgement keeps the guarantee
  across crashes: a worker that dies holding one gets the delivery again, and its check is
  made again.

The book never says "processed" that is not true (it holds durable commits only); what it
lacks (another process's commits, its own before a restart) costs a read and at most
``hold_s`` of delay. A delivery's required consumers may run in several processes: the
book then cannot know, so while another worker is alive (a heartbeat on
``forms_workers.alive`` every second) a consumer that is not the last reads at once, as
before; a missed heartbeat costs latency, never an announcement (the held deliveries are
checked by a read when their time is up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.directory import ConsumerDirectory
from services.forms.store import FormStore
from services.forms.streams import WORKERS_ALIVE_SUBJECT, processed_subject
from services.runtime.bus import AckedPublisher
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger("chatmesh.forms.commits")

HOLD_S = 5.0
"""Longest a delivery's acknowledgement is held waiting for this process's other consumers."""
BOOK_SIZE = 200_000
"""Submissions whose local commits are remembered (oldest forgotten first: a read then)."""
HEARTBEAT_S = 1.0
PEER_SILENT_S = 5.0
"""Another worker not heard of this long is taken as gone."""


def processed_time(states: dict[str, tuple[int, datetime | None]] | None, required: frozenset[str]) -> datetime | None:
    """When the last required consumer committed, or None while any required one is not done."""
    if states is None or not required:
        return None
    latest: datetime | None = None
    for name in required:
        state, at = states.get(name, (pb.CONSUMER_STATE_PENDING, None))
        if state != pb.CONSUMER_STATE_DONE:
            return None
        if at is not None and (latest is None or at > latest):
            latest = at
    return latest


@dataclass
class _Held:
    msg: Msg
    submission: pb.Submission
    consumer: str
    due: float


class CommitBook:
    """One worker process's record of its required consumers' commits, and the acknowledgements held."""

    def __init__(
        self,
        nc: Client,
        store: FormStore,
        directory: ConsumerDirectory,
        publisher: AckedPublisher,
        publish_timeout_s: float,
        hold_s: float = HOLD_S,
    ) -> None:
        self._nc = nc
        self._store = store
        self._directory = directory
        self._publisher = publisher
        self._timeout_s = publish_timeout_s
        self.hold_s = hold_s
        self.local: set[str] = set()
        """Required consumers this process runs (set by the worker)."""
        self._commits: OrderedDict[str, dict[str, datetime]] = OrderedDict()
        self._held: dict[str, list[_Held]] = {}
        self._held_by_consumer: dict[str, int] = {}
        self._identity = uuid.uuid4().hex
        self._peer_heard_at = -1e9
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Listen to and send the workers' heartbeat, start checking held deliveries."""

        async def heard(msg: Msg) -> None:
            if msg.data.decode(errors="replace") != self._identity:
                self._peer_heard_at = time.monotonic()

        self._subscription = await self._nc.subscribe(WORKERS_ALIVE_SUBJECT, cb=heard)
        await self._beat()
        self._tasks = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._sweep())]

    async def _beat(self) -> None:
        with contextlib.suppress(Exception):  # a lost beat only makes a peer read more
            await self._nc.publish(WORKERS_ALIVE_SUBJECT, self._identity.encode())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._beat()

    def alone(self) -> bool:
        """Whether no other worker was heard of lately."""
        return time.monotonic() - self._peer_heard_at > PEER_SILENT_S

    def held(self, consumer: str) -> int:
        """Deliveries of ``consumer`` whose acknowledgement is held now."""
        return self._held_by_consumer.get(consumer, 0)

    async def committed(
        self,
        consumer: str,
        done: Sequence[tuple[Msg, pb.Submission]],
        at: datetime,
        max_held: int,
        ack_wait_s: float = float("inf"),
    ) -> list[Msg]:
        """``consumer`` durably committed ``done`` at ``at``: announce what is processed now.

        A delivery is held at most half of ``ack_wait_s`` (the consumer's), so JetStream never
        gives a held one to another worker.

        Returns:
            The messages to acknowledge now (the rest are held; the book acknowledges them).
        """
        required = await self._directory.required()
        complete: list[tuple[pb.Submission, datetime]] = []
        unknown: list[pb.Submission] = []
        to_ack: list[Msg] = []
        hold: list[tuple[Msg, pb.Submission]] = []
        may_hold = self.hold_s > 0 and self.alone() and required <= self.local | {consumer}
        for msg, submission in done:
            sid = submission.submission_id
            commits = self._commits.get(sid)
            if commits is None:
                commits = self._commits[sid] = {}
                if len(self._commits) > BOOK_SIZE:
                    self._commits.popitem(last=False)
            commits[consumer] = at
            if required and required <= commits.keys():
                complete.append((submission, max(commits[name] for name in required)))
                to_ack.append(msg)
            elif may_hold and self.held(consumer) + len(hold) < max_held:
                hold.append((msg, submission))
            else:
                unknown.append(submission)
                to_ack.append(msg)
        due = time.monotonic() + min(self.hold_s, ack_wait_s / 2)
        for msg, submission in hold:  # before any await: the last commit may come while this one reads
            self._held.setdefault(submission.submission_id, []).append(_Held(msg, submission, consumer, due))
            self._held_by_consumer[consumer] = self.held(consumer) + 1
        if unknown:
            complete += await self._read_complete(unknown, required)
        await self._announce(complete)
        for submission, _ in complete:
            self._commits.pop(submission.submission_id, None)
            to_ack += self._release(submission.submission_id)
        return to_ack

    def _release(self, sid: str) -> list[Msg]:
        held = self._held.pop(sid, [])
        for h in held:
            self._held_by_consumer[h.consumer] -= 1
        return [h.msg for h in held]

    async def _read_complete(
        self, submissions: Sequence[pb.Submission], required: frozenset[str]
    ) -> list[tuple[pb.Submission, datetime]]:
        states = await self._store.states([s.submission_id for s in submissions])
        complete = []
        for s in submissions:
            at = processed_time(states.get(s.submission_id), required)
            if at is not None:
                complete.append((s, at))
        return complete

    async def _announce(self, complete: Sequence[tuple[pb.Submission, datetime]]) -> None:
        messages = []
        for submission, at in complete:
            headers = {
                "Nats-Msg-Id": f"processed:{submission.submission_id}",
                "Chatmesh-Processed-At": str(int(at.timestamp() * 1000)),
            }
            messages.append((processed_subject(submission.submission_id), submission.SerializeToString(), headers))
        if messages:
            await self._publisher.publish(messages, self._timeout_s)

    async def _check_held(self, due_before: float) -> None:
        """Read the statuses of the held deliveries due, announce what is complete, acknowledge them."""
        sids = []
        for sid, held in self._held.items():  # first held first: in the order they fall due
            if held[0].due > due_before:
                break
            sids.append(sid)
        if not sids:
            return
        required = await self._directory.required()
        for start in range(0, len(sids), 500):
            chunk = sids[start : start + 500]
            submissions = [self._held[sid][0].submission for sid in chunk if sid in self._held]
            complete = await self._read_complete(submissions, required)
            await self._announce(complete)
            for submission, _ in complete:
                self._commits.pop(submission.submission_id, None)
            for sid in chunk:
                for msg in self._release(sid):
                    with contextlib.suppress(Exception):  # not acknowledged: delivered again, checked again
                        await msg.ack()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(0.2, self.hold_s / 4))
            try:
                await self._check_held(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - held deliveries stay held; tried again next round
                log.exception("checking held deliveries failed")
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Check every held delivery now (read, announce, acknowledge), stop the heartbeat."""
        await cancel_and_wait(self._tasks)
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        try:
            await self._check_held(float("inf"))
        except Exception:  # noqa: BLE001 - what stays unacknowledged is delivered again
            log.exception("checking held deliveries at stop failed")
