"""A keyspace made before the grounded-reply columns gets them at start-up, and keeps working."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chatmesh.history.v1 import history_pb2 as pb
from services.history.protos import message_pb
from services.history.store import SCHEMA, ConversationRecord, HistoryStore, MessageRecord, add_columns
from services.runtime.cql import CqlSession, CqlSettings


def before_citations() -> list[str]:
    """The tables as they were made before ``citations`` and ``collections`` existed."""
    old = [s.replace(" citations list<blob>,", "").replace(", collections list<text>", "") for s in SCHEMA]
    assert old != list(SCHEMA)
    return old


async def test_an_older_keyspace_gets_the_new_columns_and_stores_citations(cql: CqlSettings) -> None:
    session = await CqlSession.connect(cql, before_citations())
    try:
        await add_columns(session)
        await add_columns(session)  # a second start: the columns are there, nothing to do
        store = HistoryStore(session)
        cid, owner = str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC)
        kind = pb.CONVERSATION_KIND_ASSISTANT
        await store.put_conversation(ConversationRecord(cid, kind, (owner,), "", now, 0, ("notes", "papers")))
        record = await store.conversation(cid)
        assert record is not None and record.collections == ("notes", "papers")
        cited = pb.Citation(number=1, collection="notes", point_id="7", source="a.md", score=0.8, passage="p")
        reply = MessageRecord(
            cid, 1, str(uuid.uuid4()), "", pb.AUTHOR_KIND_ASSISTANT, "It is [1].", "r1", now, None, False,
            (cited.SerializeToString(),),
        )  # fmt: skip
        assert await store.insert_message(reply, "a:r1") is None
        stored = await store.message(cid, 1)
        assert stored is not None and list(message_pb(stored).citations) == [cited]
    finally:
        await session.close()
