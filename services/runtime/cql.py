"""CQL (ScyllaDB / Cassandra) access for asyncio services.

The driver is thread-based; :class:`CqlSession` bridges its futures to asyncio so no
query blocks the event loop, and prepares each statement once.

Every failure that means "the cluster cannot answer now" (no host reachable, too few
replicas alive for the consistency level, a coordinator or driver timeout, a dropped
connection, an overloaded or bootstrapping node) is raised as the runtime's
:class:`~services.runtime.errors.Unavailable`, so a caller sees UNAVAILABLE ("retry"),
never INTERNAL, while Cassandra or one of its nodes is down. A write that timed out may
still have been applied: callers retry with their idempotency keys.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from cassandra import ConsistencyLevel, CoordinationFailure, InvalidRequest, OperationTimedOut, Timeout
from cassandra import Unavailable as ReplicasUnavailable
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, ResponseFuture, Session
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.protocol import IsBootstrappingErrorMessage
from cassandra.protocol import RequestExecutionException as ServerRequestFailed
from cassandra.query import BatchStatement, BatchType, PreparedStatement, SimpleStatement, dict_factory
from pydantic import BaseModel, Field

from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.cql")

#: Driver and server errors that mean "the cluster cannot answer now; retry" (see the module docstring).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    NoHostAvailable,  # every contact point down or refusing
    ReplicasUnavailable,  # the coordinator knows too few live replicas for the consistency level
    Timeout,  # ReadTimeout, WriteTimeout: replicas did not answer the coordinator in time
    CoordinationFailure,  # ReadFailure, WriteFailure: a replica failed the request
    OperationTimedOut,  # the driver's own request timeout, or a connection lost mid-request
    ConnectionException,  # ConnectionShutdown, ConnectionBusy...
    ServerRequestFailed,  # the server's Overloaded, Unavailable, timeout messages
    IsBootstrappingErrorMessage,  # a node that has not finished joining
)

#: What callers are told; the driver's details (hosts, ports) go to the log only.
UNAVAILABLE_MESSAGE = "the database is unavailable; retry"

BATCH_PARTITIONS = 10
"""Partitions one unlogged batch of :meth:`CqlSession.execute_many` touches at most."""


class CqlSettings(BaseModel):
    """Where the CQL cluster is and how to talk to it (nested in a service's settings)."""

    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1, description="Contact points.")
    port: int = Field(9042, ge=1, le=65535, description="Native protocol port.")
    keyspace: str = Field("chatmesh", pattern=r"^[a-z][a-z0-9_]{0,47}$", description="Keyspace of the mesh.")
    replication_factor: int = Field(1, ge=1, le=7, description="SimpleStrategy RF used when creating the keyspace.")
    request_timeout_s: float = Field(5.0, gt=0, le=60, description="Per-query timeout.")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of the first connection.")
    reconnect_max_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="Longest wait between reconnection attempts to a node that went down (the driver's "
        "default of 10 minutes would leave a restarted node unused for minutes).",
    )
    compression: bool | None = Field(
        None,
        description="LZ4 frames; unset: on unless every host is on loopback (where they only cost CPU both ends).",
    )

    def wants_compression(self) -> bool:
        """Whether to ask the cluster for compressed frames."""
        if self.compression is not None:
            return self.compression
        return not all(_is_loopback(host) for host in self.hosts)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class CqlSession:
    """An open session to one keyspace."""

    def __init__(self, cluster: Cluster, session: Session, keyspace: str) -> None:
        self._cluster = cluster
        self._session = session
        self._keyspace = keyspace
        self._prepared: dict[str, PreparedStatement] = {}

    @classmethod
    async def connect(cls, settings: CqlSettings, schema: Sequence[str] = ()) -> CqlSession:
        """Connect, create the keyspace and ``schema`` tables if missing, and use the keyspace."""
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            request_timeout=settings.request_timeout_s,
            row_factory=dict_factory,
        )
        cluster = Cluster(
            settings.hosts,
            port=settings.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=settings.connect_timeout_s,
            protocol_version=5,
            compression=settings.wants_compression(),
            reconnection_policy=ExponentialReconnectionPolicy(
                min(0.5, settings.reconnect_max_s), settings.reconnect_max_s
            ),
        )
        try:
            session = await asyncio.to_thread(cluster.connect)
        except Exception as exc:
            cluster.shutdown()
            log.warning("cql connect failed", extra={"hosts": settings.hosts, "reason": str(exc)})
            raise Unavailable(UNAVAILABLE_MESSAGE) from exc
        self = cls(cluster, session, settings.keyspace)
        await self._schema_change(
            f"CREATE KEYSPACE IF NOT EXISTS {settings.keyspace} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.replication_factor}}}",
            keyspace=None,
        )
        # Statements name tables without a keyspace; each carries the keyspace itself
        # (protocol v5) instead of a session-wide USE, which Cassandra 5 warns about.
        for statement in schema:
            await self._schema_change(statement)
        return self

    async def _prepare(self, query: str) -> PreparedStatement:
        statement = self._prepared.get(query)
        if statement is None:
            # Preparing is a one-time round trip per statement; the driver only has a blocking call.
            try:
                statement = await asyncio.to_thread(self._session.prepare, query, None, self._keyspace)
            except TRANSIENT_ERRORS as exc:
                raise _unavailable(exc) from exc
            self._prepared[query] = statement
        return statement

    async def execute(
        self, query: str, params: Sequence[Any] | None = None, *, prepare: bool = False
    ) -> list[dict[str, Any]]:
        """Run ``query`` and return the rows of its first page as dicts (hot paths read one page)."""
        statement: Any = query
        if prepare:
            statement = self._prepared.get(query) or await self._prepare(query)
        else:
            statement = SimpleStatement(query, keyspace=self._keyspace)
        result = await self._send(statement, params)
        return list(result or ())

    async def execute_many(
        self, query: str, params: Sequence[Sequence[Any]], *, partitions_per_request: int = BATCH_PARTITIONS
    ) -> None:
        """Run one prepared write for each of ``params``, ``partitions_per_request`` at a time in unlogged batches.

        For independent single-partition writes (no atomicity between them): one request
        per few writes instead of one each. Kept at or under Cassandra's
        ``unlogged_batch_across_partitions_warn_threshold`` (10), so a batch is not warned about.
        """
        if not params:
            return
        statement = await self._prepare(query)
        futures = []
        for start in range(0, len(params), partitions_per_request):
            chunk = params[start : start + partitions_per_request]
            if len(chunk) == 1:
                futures.append(self._send(statement, chunk[0]))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for values in chunk:
                batch.add(statement, values)
            futures.append(self._send(batch))
        await asyncio.gather(*futures)

    async def execute_unlogged(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run prepared writes (query, params) as one unlogged batch: one request, no batch log.

        For a few independent single-partition writes that need no atomicity between them.
        """
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for query, values in statements:
            batch.add(await self._prepare(query), values)
        await self._send(batch)

    async def _schema_change(self, statement: str, keyspace: str | None = "", timeout_s: float = 120.0) -> None:
        """Run an idempotent DDL statement (IF NOT EXISTS), on a cluster until it takes.

        A change the statement makes is awaited by the driver until every node agrees on the
        schema. But on a cluster several services create the keyspace at once through different
        nodes: one finds it made already (no change, so no wait), and its CREATE TABLE may reach a
        node that has not heard of the keyspace yet; that is retried until the node has. Schema changes
        are slow on a busy cluster (every node flushes its schema tables), so each attempt
        may take up to 30 s, and one that timed out is tried again (it is idempotent).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                target = self._keyspace if keyspace == "" else keyspace
                await self._send(SimpleStatement(statement, keyspace=target), timeout=30.0)
                break
            except (InvalidRequest, Unavailable) as exc:
                retry = isinstance(exc, Unavailable) or "does not exist" in str(exc)
                if not retry or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    def _send(
        self, statement: Any, params: Sequence[Any] | None = None, timeout: float | None = None
    ) -> asyncio.Future[Any]:
        """Start ``statement``; a future of its result, failing with Unavailable on transient errors.

        ``timeout``: seconds, instead of the execution profile's ``request_timeout``.
        """
        try:
            if timeout is None:
                future = self._session.execute_async(statement, params)
            else:
                future = self._session.execute_async(statement, params, timeout=timeout)
        except TRANSIENT_ERRORS as exc:
            raise _unavailable(exc) from exc
        return _wait(future)

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.to_thread(self._cluster.shutdown)


def _wait(future: ResponseFuture) -> asyncio.Future[Any]:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[Any] = loop.create_future()

    def done(result: Any) -> None:
        loop.call_soon_threadsafe(_settle, waiter, result, None)

    def failed(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_settle, waiter, None, exc)

    future.add_callbacks(done, failed)
    waiter.add_done_callback(partial(_forget_timer, future))
    return waiter


def _forget_timer(future: ResponseFuture, waiter: asyncio.Future[Any]) -> None:
    """Once the request ended, drop the driver's reference to its (cancelled) timer.

    The driver's request and its timer refer to each other (``_timer.callback`` is the
    request's ``_on_timeout``) and nothing breaks that when the request ends, so every
    request, with its statement, batch and locks (30-45 objects), was garbage only the
    collector could free: at 500 form submissions/s the forms worker collected about 36,000
    such objects every few seconds, in pauses of 100-500 ms. With the reference dropped they
    are freed as soon as the caller lets go. A request whose caller gave up (the waiter
    cancelled) may still be running and keeps its timer.
    """
    if not waiter.cancelled():
        future._timer = None


def _unavailable(exc: BaseException) -> Unavailable:
    log.warning("cql request failed", extra={"error": type(exc).__name__, "reason": str(exc)[:500]})
    return Unavailable(UNAVAILABLE_MESSAGE)


def _settle(waiter: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if waiter.done():
        return
    if isinstance(exc, TRANSIENT_ERRORS):
        waiter.set_exception(_unavailable(exc))
    elif exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(result)
