"""The ingest service as a grounded Reply needs it: Search over the caller's own collections.

Every call forwards the caller's own ``authorization``: ingest applies its ownership rule
(a user sees only their own collections; another user's answers NOT_FOUND, exactly like a
missing one), so a user can never ground a reply on someone else's documents. Queries are
texts: ingest embeds each with its collection's own embedding model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from chatmesh.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.runtime.channels import peer_channel
from services.runtime.errors import ChatmeshError, NotFound
from services.runtime.peers import forwarded, relayed_error


@dataclass(frozen=True)
class Found:
    """One point a Search found: its id (text), score and payload (as JSON values)."""

    collection: str
    point_id: str
    score: float
    payload: dict[str, Any]


def _point_id(point: ingest_pb2.ScoredPoint) -> str:
    return point.id.uuid if point.id.WhichOneof("kind") == "uuid" else str(point.id.num)


class IngestSearch:
    """ingest.Search over gRPC with the caller's token."""

    def __init__(self, target: str, timeout_s: float) -> None:
        self._channel = peer_channel(target)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def search(self, collection: str, field: str, text: str, limit: int, credentials: str) -> list[Found]:
        """The ``limit`` points of the caller's ``collection`` nearest to ``text``, best first.

        Raises:
            NotFound: naming ``field`` (``collections[i]``): no such collection of the caller's.
            ChatmeshError: ingest's other refusals as :mod:`services.runtime.peers` relays them.
        """
        try:
            reply = await self._stub.Search(
                ingest_pb2.SearchRequest(collection=collection, text=text[:8192], limit=limit),
                metadata=forwarded(credentials),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            error: ChatmeshError = relayed_error(exc, "ingest")
            if isinstance(error, NotFound):
                raise NotFound(f"{field}: {exc.details()}") from None
            raise error from None
        return [
            Found(collection, _point_id(p), p.score, MessageToDict(p.payload) if p.HasField("payload") else {})
            for p in reply.points
        ]

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
