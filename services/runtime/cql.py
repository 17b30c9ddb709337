"""CQL (ScyllaDB / Cassandra) access for asyncio services.

The driver is thread-based; :class:`CqlSession` bridges its futures to asyncio so no
query blocks the event loop, and prepares each statement once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, SimpleStatement, dict_factory
from pydantic import BaseModel, Field

from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.cql")


class CqlSettings(BaseModel):
    """Where the CQL cluster is and how to talk to it (nested in a service's settings)."""

    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1, description="Contact points.")
    port: int = Field(9042, ge=1, le=65535, description="Native protocol port.")
    keyspace: str = Field("chatmesh", pattern=r"^[a-z][a-z0-9_]{0,47}$", description="Keyspace of the mesh.")
    replication_factor: int = Field(1, ge=1, le=7, description="SimpleStrategy RF used when creating the keyspace.")
    request_timeout_s: float = Field(5.0, gt=0, le=60, description="Per-query timeout.")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="Timeout of the first connection.")


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
        )
        try:
            session = await asyncio.to_thread(cluster.connect)
        except Exception as exc:
            cluster.shutdown()
            raise Unavailable(f"CQL cluster at {settings.hosts}:{settings.port} unreachable: {exc}") from exc
        self = cls(cluster, session, settings.keyspace)
        await _wait(
            session.execute_async(
                f"CREATE KEYSPACE IF NOT EXISTS {settings.keyspace} WITH replication = "
                f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.replication_factor}}}"
            )
        )
        # Statements name tables without a keyspace; each carries the keyspace itself
        # (protocol v5) instead of a session-wide USE, which Cassandra 5 warns about.
        for statement in schema:
            await self.execute(statement)
        return self

    async def execute(
        self, query: str, params: Sequence[Any] | None = None, *, prepare: bool = False
    ) -> list[dict[str, Any]]:
        """Run ``query`` and return the rows of its first page as dicts (hot paths read one page)."""
        statement: Any = query
        if prepare:
            statement = self._prepared.get(query)
            if statement is None:
                # Preparing is a one-time round trip per statement; the driver only has a blocking call.
                statement = await asyncio.to_thread(self._session.prepare, query, None, self._keyspace)
                self._prepared[query] = statement
        else:
            statement = SimpleStatement(query, keyspace=self._keyspace)
        future = self._session.execute_async(statement, params)
        result = await _wait(future)
        return list(result or ())

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
    return waiter


def _settle(waiter: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if waiter.done():
        return
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(result)
