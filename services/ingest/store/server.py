"""The server store: a Qdrant server or cluster through qdrant-client over gRPC.

Follows Qdrant's bulk-upload guidance: callers send batches of 64-256 points, a few in
parallel; payload indexes are created with the collection, before any point; indexing is
deferred during a big job (``indexing_threshold`` 0) and restored after; every upsert uses
``wait=true``, so an acknowledged batch is applied (and, with ``write_consistency_factor``,
on that many replicas).

A cluster is given as several nodes (``http://a:6333,http://b:6333``): calls go to the first
node that answers, and a node that fails with UNAVAILABLE (or a deadline) is skipped for the
next call, so the service keeps working while a node is down as long as the collection's
replicas are elsewhere (replication factor 2 or more).

Points go as one columnar ``Batch`` per upsert (one pydantic model for the batch rather
than one per point).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from qdrant_client import AsyncQdrantClient, models

from services.ingest.errors import CollectionNotFound, StoreUnavailable
from services.ingest.store.base import (
    MAX_SCROLL_PAGE,
    CollectionSpec,
    Hit,
    PointKey,
    StoredPoint,
    VectorQuery,
    VectorStore,
)

log = logging.getLogger("chatmesh.ingest.qdrant")

T = TypeVar("T")

_DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
_INDEXES = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "text": models.PayloadSchemaType.TEXT,
    "uuid": models.PayloadSchemaType.UUID,
    "datetime": models.PayloadSchemaType.DATETIME,
}
# Codes after which another node may well succeed.
_NODE_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


@dataclass(frozen=True)
class ServerOptions:
    """How collections are laid out on the server.

    Attributes:
        shard_number: shards per collection (spread over the cluster's nodes).
        replication_factor: copies of each shard; 2 or more survives a node.
        write_consistency_factor: replicas that must apply a write before it is acknowledged.
        indexing_threshold_kb: Qdrant's ``indexing_threshold`` outside bulk mode.
        timeout_s: deadline of one request.
    """

    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    indexing_threshold_kb: int = 10_000
    timeout_s: int = 30


def batch_of(points: Sequence[StoredPoint]) -> models.Batch:
    """Store points as one columnar Batch (one model for the lot, not one per point)."""
    return models.Batch(
        ids=[p.id for p in points],
        vectors=[list(p.vector) for p in points],
        payloads=[dict(p.payload) for p in points],
    )


def _key(value: Any) -> PointKey:
    if isinstance(value, int):
        return value
    return str(uuid.UUID(str(value)))


def _node(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "127.0.0.1", parts.port or 6333


class ServerStore(VectorStore):
    """Collections on a Qdrant server or cluster."""

    kind = "server"

    def __init__(self, urls: Sequence[str], grpc_port: int | None, options: ServerOptions) -> None:
        """Clients for every node.

        Args:
            urls: REST URLs of the nodes (``http://host:6333``); calls use their gRPC port.
            grpc_port: the nodes' gRPC port; None: REST port + 1 (Qdrant's default layout).
            options: collection layout and timeouts.
        """
        if not urls:
            raise ValueError("at least one Qdrant URL")
        self._options = options
        self._clients: list[AsyncQdrantClient] = []
        for url in urls:
            host, port = _node(url)
            self._clients.append(
                AsyncQdrantClient(
                    host=host,
                    port=port,
                    grpc_port=grpc_port or port + 1,
                    prefer_grpc=True,
                    timeout=options.timeout_s,
                    check_compatibility=False,
                    grpc_options={"grpc.max_send_message_length": 64 * 1024 * 1024},
                )
            )
        self._current = 0

    async def _call(self, name: str, fn: Callable[[AsyncQdrantClient], Awaitable[T]]) -> T:
        """Run ``fn`` on the current node, moving on to the next ones while nodes are down."""
        last: Exception | None = None
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            try:
                result = await fn(self._clients[index])
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.NOT_FOUND and name:
                    raise CollectionNotFound(name) from None
                if code in _NODE_DOWN:
                    last = exc
                    log.warning("qdrant node unavailable", extra={"node": index, "code": code.name})
                    continue
                log.warning(
                    "qdrant refused a request", extra={"code": code.name, "reason": (exc.details() or "")[:300]}
                )
                raise StoreUnavailable("the Qdrant server") from None
            except (OSError, TimeoutError) as exc:
                last = exc
                continue
            self._current = index
            return result
        log.warning("no qdrant node answered", extra={"reason": type(last).__name__ if last else ""})
        raise StoreUnavailable("the Qdrant server")

    async def create_collection(self, name: str, spec: CollectionSpec) -> None:
        o = self._options

        async def create(client: AsyncQdrantClient) -> None:
            if not await client.collection_exists(name):
                await client.create_collection(
                    name,
                    vectors_config=models.VectorParams(size=spec.vector_size, distance=_DISTANCES[spec.distance]),
                    shard_number=o.shard_number,
                    replication_factor=o.replication_factor,
                    write_consistency_factor=o.write_consistency_factor,
                    optimizers_config=models.OptimizersConfigDiff(indexing_threshold=o.indexing_threshold_kb),
                )
            for key, kind in spec.payload_indexes.items():
                await client.create_payload_index(name, key, field_schema=_INDEXES[kind], wait=True)

        await self._call("", create)

    async def delete_collection(self, name: str) -> None:
        async def delete(client: AsyncQdrantClient) -> None:
            await client.delete_collection(name)

        await self._call("", delete)

    async def collection_exists(self, name: str) -> bool:
        async def exists(client: AsyncQdrantClient) -> bool:
            return bool(await client.collection_exists(name))

        return await self._call("", exists)

    async def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        batch = batch_of(points)

        async def upsert(client: AsyncQdrantClient) -> None:
            await client.upsert(name, points=batch, wait=True)

        await self._call(name, upsert)

    async def search(self, name: str, query: VectorQuery) -> list[Hit]:
        flt = (
            models.Filter(
                must=[models.FieldCondition(key=m.key, match=models.MatchValue(value=m.value)) for m in query.matches]
            )
            if query.matches
            else None
        )

        async def search(client: AsyncQdrantClient) -> list[Hit]:
            answer = await client.query_points(
                name,
                query=list(query.vector),
                limit=query.limit,
                query_filter=flt,
                score_threshold=query.score_threshold,
                with_payload=True,
                with_vectors=query.with_vectors,
            )
            return [
                Hit(
                    _key(p.id),
                    float(p.score),
                    p.payload or {},
                    list(p.vector) if query.with_vectors and isinstance(p.vector, list) else None,  # type: ignore[arg-type]
                )
                for p in answer.points
            ]

        return await self._call(name, search)

    async def count(self, name: str) -> int:
        async def count(client: AsyncQdrantClient) -> int:
            return int((await client.count(name, exact=True)).count)

        return await self._call(name, count)

    async def scroll(self, name: str, offset: PointKey | None, limit: int) -> tuple[list[StoredPoint], PointKey | None]:
        async def page(client: AsyncQdrantClient) -> tuple[list[StoredPoint], PointKey | None]:
            records, next_offset = await client.scroll(
                name, limit=min(limit, MAX_SCROLL_PAGE), offset=offset, with_payload=True, with_vectors=True
            )
            points = [StoredPoint(_key(r.id), list(r.vector or []), r.payload or {}) for r in records]  # type: ignore[arg-type]
            return points, (_key(next_offset) if next_offset is not None else None)

        return await self._call(name, page)

    async def set_bulk_mode(self, name: str, bulk: bool) -> None:
        threshold = 0 if bulk else self._options.indexing_threshold_kb

        async def update(client: AsyncQdrantClient) -> None:
            await client.update_collection(
                name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=threshold)
            )

        await self._call(name, update)

    async def check(self) -> None:
        async def ping(client: AsyncQdrantClient) -> None:
            await client.get_collections()

        await self._call("", ping)

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
