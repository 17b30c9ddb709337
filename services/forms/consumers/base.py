"""The consumer plug-in interface: a class with a name, batching and retry settings, and ``handle``.

A consumer is a durable JetStream pull consumer on the FORMS stream (its name is the
durable's name); every worker process that runs it pulls from the same durable, so the
processes share the work (a consumer group) and a consumer scales by starting more
workers. The runner (services/forms/runner.py) does the rest: batching, statuses,
acknowledgements, back-off, dead letters.

``handle(batch)`` gets up to ``batch_size`` deliveries and answers one outcome per
delivery, in order: :class:`Done` once its effect is durable (the runner then records
the status and acknowledges), or :class:`Failed` with a short error (delivered again
after ``backoff_s``; after ``max_deliveries`` it becomes a dead letter). An exception
fails the whole batch. ``handle`` must be idempotent by submission id: a delivery can
come again after a crash between the effect and the acknowledgement.

Writing one::

    class Audit(Consumer):
        name = "audit"
        description = "Writes every submission to the audit log."

        async def handle(self, batch: Sequence[Delivery]) -> list[Outcome]:
            ...
            return [DONE] * len(batch)

and registering it is one line in services/forms/consumers/__init__.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from nats.aio.client import Client

from chatmesh.forms.v1 import forms_pb2 as pb
from services.forms.definitions import FormDefinitions
from services.forms.settings import FormsSettings
from services.forms.store import FormStore
from services.forms.streams import SUBMIT_SUBJECTS
from services.runtime.objectstore import ObjectStore


@dataclass(frozen=True)
class Delivery:
    """One submission handed to a consumer."""

    submission: pb.Submission
    deliveries: int
    """This delivery's number, from 1."""
    stream_seq: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    """The delivery's effect is durable."""


@dataclass(frozen=True)
class Failed:
    """The delivery failed; ``error`` (no stack trace, at most 1,024 characters) is kept."""

    error: str


Outcome = Done | Failed
DONE = Done()


@dataclass(frozen=True)
class ConsumerContext:
    """What a consumer may use: the stores, the forms, NATS, object storage and the settings."""

    settings: FormsSettings
    store: FormStore
    definitions: FormDefinitions
    nc: Client
    objects: ObjectStore


class Consumer:
    """Base of every consumer plug-in: override the class attributes and ``handle``."""

    name: ClassVar[str] = ""
    """Unique, ``^[a-z][a-z0-9_-]{0,62}$``: the durable JetStream consumer's name."""
    description: ClassVar[str] = ""
    subjects: ClassVar[tuple[str, ...]] = (SUBMIT_SUBJECTS,)
    """What it consumes from FORMS (its redriven dead letters come on top)."""
    required: ClassVar[bool] = True
    """Whether a submission counts as processed only once this consumer is done with it."""
    batch_size: ClassVar[int] = 100
    batch_wait_s: ClassVar[float] = 0.0
    """How long to keep gathering a batch after its first delivery (0: what is there)."""
    max_deliveries: ClassVar[int] = 5
    backoff_s: ClassVar[tuple[float, ...]] = (0.5, 2.0, 10.0, 30.0)
    """Wait before the n-th redelivery after a failure (the last one repeats)."""
    ack_wait_s: ClassVar[float] = 60.0
    """A delivery not answered this long is delivered again (a worker died)."""
    parallel_batches: ClassVar[int] = 2
    """Batches one process handles at once (their round trips to CQL and JetStream overlap)."""
    start: ClassVar[Literal["all", "new"]] = "all"
    """Where the durable starts when it is first made: every retained submission, or new ones."""
    writes_facts: ClassVar[bool] = False
    """Whether its "done" rows also carry the submission's form, submitter and time (one
    consumer's is enough: the store's; readers find them in the FORMS stream until then)."""

    def __init__(self, context: ConsumerContext) -> None:
        self.context = context

    async def open(self) -> None:
        """Set up before the first batch (connections, files). Default: nothing."""

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        """Handle ``batch``; one outcome per delivery, in order."""
        raise NotImplementedError

    async def close(self) -> None:
        """Finish (flush what is buffered) before the worker stops. Default: nothing."""


@dataclass(frozen=True)
class ConsumerSpec:
    """A registered consumer with the settings' overrides applied."""

    cls: type[Consumer]
    enabled: bool
    required: bool
    batch_size: int
    max_deliveries: int
    start: Literal["all", "new"]
    ack_wait_s: float

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.cls.name


class ConsumerRegistry:
    """The consumer plug-ins of a mesh, by name."""

    def __init__(self, classes: Sequence[type[Consumer]] = ()) -> None:
        self._classes: dict[str, type[Consumer]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[Consumer]) -> type[Consumer]:
        """Add a consumer class (usable as a decorator); its name must be new."""
        if not cls.name or cls.name in self._classes:
            raise ValueError(f"consumer name {cls.name!r} is empty or taken")
        self._classes[cls.name] = cls
        return cls

    def with_(self, *classes: type[Consumer]) -> ConsumerRegistry:
        """A copy of this registry with ``classes`` added."""
        return ConsumerRegistry([*self._classes.values(), *classes])

    def specs(self, settings: FormsSettings) -> list[ConsumerSpec]:
        """Every registered consumer with the settings' overrides applied, by name."""
        specs = []
        for name, cls in sorted(self._classes.items()):
            o = settings.consumers.get(name)
            specs.append(
                ConsumerSpec(
                    cls=cls,
                    enabled=o.enabled if o is not None and o.enabled is not None else True,
                    required=o.required if o is not None and o.required is not None else cls.required,
                    batch_size=o.batch_size if o is not None and o.batch_size else cls.batch_size,
                    max_deliveries=o.max_deliveries if o is not None and o.max_deliveries else cls.max_deliveries,
                    start=o.start if o is not None and o.start else cls.start,
                    ack_wait_s=o.ack_wait_s if o is not None and o.ack_wait_s else cls.ack_wait_s,
                )
            )
        return specs
