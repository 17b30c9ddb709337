"""Conversations and messages in CQL (ScyllaDB-compatible; no secondary indexes).

Tables:
- ``conversations``: members and kind by id; ``last_seq`` is a hint for restarts: a
  sequence in the newest bucket (written with the first message of each bucket).
- ``direct_pairs``: the one conversation of a pair of users (LWT on creation).
- ``messages``: partitioned by (conversation_id, bucket), bucket = seq // BUCKET_SIZE,
  clustered by seq descending: a page is one slice of one or two partitions, and no
  partition grows past BUCKET_SIZE messages. A message row is only ever created by a
  lightweight transaction (``INSERT ... IF NOT EXISTS`` on its sequence, one row of one
  partition: what Cassandra and ScyllaDB both allow): the claim of a sequence *is* the
  durable message, so replicas writing the same conversation never share a sequence and
  a writer that dies after claiming leaves a message, not a hole.
- ``message_keys``: (conversation_id, "c:<sender user id>:<client_message_id>",
  "a:<request_id>" or "m:<message_id>") -> seq. A send writes its idempotency key's
  *tentative* sequence before claiming it, and both keys again once it holds it: a
  retried send (on any replica, after a crash at any point) finds the first one, and
  edits and deletes find a message by id.
- ``conversations_by_user``: a user's conversations with last message, read and
  delivered pointers: the recent-chats list is one partition read. A send moves its
  members' rows with the message's own write time (its ``created_at``, which grows with
  the sequence), so rows written late, or out of order by two replicas, never move back.

Columns added after a table's first release (``ADDED_COLUMNS``: a grounded reply's
``citations``, an assistant conversation's ``collections``) are in its CREATE TABLE and
added by :func:`add_columns` to a keyspace made before them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra import InvalidRequest

from services.runtime.cql import CqlSession


@functools.lru_cache(maxsize=65_536)
def _uuid(value: str) -> uuid.UUID:
    """``uuid.UUID(value)``, remembered: a send binds the same few conversation and user ids many times."""
    return uuid.UUID(value)


BUCKET_SIZE = 1000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conversations (
        conversation_id uuid PRIMARY KEY, kind int, member_ids list<uuid>, model text, created_at timestamp,
        last_seq bigint, collections list<text>)""",
    """CREATE TABLE IF NOT EXISTS direct_pairs (pair_key text PRIMARY KEY, conversation_id uuid)""",
    """CREATE TABLE IF NOT EXISTS messages (
        conversation_id uuid, bucket int, seq bigint, message_id text, author_user_id text, author_kind int,
        text text, client_message_id text, created_at timestamp, edited_at timestamp, deleted boolean,
        citations list<blob>, PRIMARY KEY ((conversation_id, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC)""",
    """CREATE TABLE IF NOT EXISTS message_keys (
        conversation_id uuid, key text, seq bigint, PRIMARY KEY ((conversation_id, key)))""",
    """CREATE TABLE IF NOT EXISTS conversations_by_user (
        user_id uuid, conversation_id uuid, kind int, member_ids list<uuid>, model text, created_at timestamp,
        last_seq bigint, last_message blob, last_activity timestamp, read_seq bigint, delivered_seq bigint,
        PRIMARY KEY (user_id, conversation_id))""",
)

#: (table, column, type) added after the table's first release: a grounded reply's citations (each a
#: serialized history.v1.Citation) and the collections an assistant conversation answers from.
ADDED_COLUMNS = (("messages", "citations", "list<blob>"), ("conversations", "collections", "list<text>"))


async def add_columns(cql: CqlSession) -> None:
    """Add ``ADDED_COLUMNS`` to tables created before them (a column already there is left as is)."""
    for table, column, kind in ADDED_COLUMNS:
        try:
            await cql.execute(f"ALTER TABLE {table} ADD {column} {kind}")
        except InvalidRequest as exc:  # "conflicts with an existing column": made with it, or added before
            if "conflict" not in str(exc) and "already" not in str(exc):
                raise


@dataclass(frozen=True)
class ConversationRecord:
    """A conversation's immutable facts."""

    conversation_id: str
    kind: int
    member_ids: tuple[str, ...]
    model: str
    created_at: datetime
    last_seq_hint: int
    collections: tuple[str, ...] = ()
    """Assistant conversations: the owner's collections a Reply answers from when it names none."""


@dataclass(frozen=True)
class MessageRecord:
    """A stored message."""

    conversation_id: str
    seq: int
    message_id: str
    author_user_id: str
    author_kind: int
    text: str
    client_message_id: str
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    citations: tuple[bytes, ...] = ()
    """A grounded assistant reply's citations, each a serialized ``history.v1.Citation``."""


@dataclass(frozen=True)
class UserConversationRecord:
    """One row of a user's recent-chats list."""

    user_id: str
    conversation_id: str
    kind: int
    member_ids: tuple[str, ...]
    model: str
    created_at: datetime
    last_seq: int
    last_message: bytes | None
    last_activity: datetime
    read_seq: int
    delivered_seq: int


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _message(conversation_id: str, row: dict[str, Any]) -> MessageRecord:
    return MessageRecord(
        conversation_id=conversation_id,
        seq=int(row["seq"]),
        message_id=row["message_id"],
        author_user_id=row["author_user_id"] or "",
        author_kind=int(row["author_kind"]),
        text=row["text"] or "",
        client_message_id=row["client_message_id"] or "",
        created_at=_utc(row["created_at"]) or datetime.now(UTC),
        edited_at=_utc(row["edited_at"]),
        deleted=bool(row["deleted"]),
        citations=tuple(row.get("citations") or ()),
    )


_MESSAGE_COLUMNS = (
    "seq, message_id, author_user_id, author_kind, text, client_message_id, created_at, edited_at, deleted, citations"
)


def client_key(sender_user_id: str, client_message_id: str) -> str:
    """The message_keys key of a sender's client message id (idempotency keys are per sender)."""
    return f"c:{sender_user_id}:{client_message_id}"


def assistant_key(request_id: str) -> str:
    """The message_keys key of an assistant reply's generation request id."""
    return f"a:{request_id}"


def id_key(message_id: str) -> str:
    """The message_keys key of a message id."""
    return f"m:{message_id}"


_CLAIM_MESSAGE = (
    "INSERT INTO messages (conversation_id, bucket, seq, message_id, author_user_id, author_kind, text, "
    "client_message_id, created_at, edited_at, deleted, citations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, null, false, ?) "
    "IF NOT EXISTS"
)
_PUT_KEY = "INSERT INTO message_keys (conversation_id, key, seq) VALUES (?, ?, ?)"
_LINK_KEYS = (
    "INSERT INTO message_keys (conversation_id, key, seq) VALUES (?, ?, ?); "
    "INSERT INTO message_keys (conversation_id, key, seq) VALUES (?, ?, ?);"
)
_SET_HINT = "UPDATE conversations SET last_seq = ? WHERE conversation_id = ?;"
_SET_LAST = (
    "UPDATE conversations_by_user USING TIMESTAMP ? SET last_seq = ?, last_message = ?, last_activity = ? "
    "WHERE user_id = ? AND conversation_id = ?;"
)
_SET_LAST_READ = (
    "UPDATE conversations_by_user USING TIMESTAMP ? SET last_seq = ?, last_message = ?, last_activity = ?, "
    "read_seq = ? WHERE user_id = ? AND conversation_id = ?;"
)
_TAIL_COLUMNS = "seq, author_user_id, author_kind, client_message_id, created_at"


@dataclass(frozen=True)
class TailRecord:
    """The identifying columns of one of a conversation's newest messages (no text)."""

    seq: int
    author_user_id: str
    author_kind: int
    client_message_id: str
    created_at: datetime


def write_time_us(created_at: datetime) -> int:
    """The CQL write time (microseconds) of a message's members' rows: its ``created_at``, whole milliseconds.

    ``created_at`` is stored in milliseconds and made to grow by at least one with each
    sequence (see ``Conversations``), so later messages' rows always win over earlier ones'.
    """
    return int(created_at.timestamp() * 1000) * 1000


class HistoryStore:
    """CQL reads and writes of the history service."""

    def __init__(self, cql: CqlSession) -> None:
        self._cql = cql

    # -- conversations -------------------------------------------------------------

    async def claim_direct_pair(self, pair_key: str, conversation_id: str) -> str:
        """The conversation of a user pair: ``conversation_id`` if this call created it, else the existing one."""
        rows = await self._cql.execute(
            "INSERT INTO direct_pairs (pair_key, conversation_id) VALUES (?, ?) IF NOT EXISTS",
            (pair_key, _uuid(conversation_id)),
            prepare=True,
        )
        return conversation_id if rows[0]["[applied]"] else str(rows[0]["conversation_id"])

    async def put_conversation(self, record: ConversationRecord) -> None:
        """Write the conversation and one recent-chats row per member (idempotent)."""
        members = [_uuid(m) for m in record.member_ids]
        await self._cql.execute(
            "INSERT INTO conversations (conversation_id, kind, member_ids, model, created_at, last_seq, collections) "
            "VALUES (?, ?, ?, ?, ?, 0, ?) IF NOT EXISTS",
            (
                _uuid(record.conversation_id),
                record.kind,
                members,
                record.model,
                record.created_at,
                list(record.collections) or None,
            ),
            prepare=True,
        )
        for member in members:
            await self._cql.execute(
                "UPDATE conversations_by_user SET kind = ?, member_ids = ?, model = ?, created_at = ?, "
                "last_activity = ? WHERE user_id = ? AND conversation_id = ?",
                (
                    record.kind,
                    members,
                    record.model,
                    record.created_at,
                    record.created_at,
                    member,
                    _uuid(record.conversation_id),
                ),
                prepare=True,
            )

    async def conversation(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation, or None."""
        rows = await self._cql.execute(
            "SELECT kind, member_ids, model, created_at, last_seq, collections FROM conversations "
            "WHERE conversation_id = ?",
            (_uuid(conversation_id),),
            prepare=True,
        )
        if not rows:
            return None
        row = rows[0]
        return ConversationRecord(
            conversation_id=conversation_id,
            kind=int(row["kind"]),
            member_ids=tuple(str(m) for m in row["member_ids"] or ()),
            model=row["model"] or "",
            created_at=_utc(row["created_at"]) or datetime.now(UTC),
            last_seq_hint=int(row["last_seq"] or 0),
            collections=tuple(row.get("collections") or ()),
        )

    async def last_seq(self, conversation_id: str, hint: int) -> int:
        """The highest stored sequence, found from ``hint`` by walking buckets forward."""
        last = hint
        bucket = hint // BUCKET_SIZE
        while True:
            rows = await self._cql.execute(
                "SELECT seq FROM messages WHERE conversation_id = ? AND bucket = ? LIMIT 1",
                (_uuid(conversation_id), bucket),
                prepare=True,
            )
            if not rows:
                return last
            last = max(last, int(rows[0]["seq"]))
            if last % BUCKET_SIZE != BUCKET_SIZE - 1:
                return last
            bucket += 1

    # -- messages ------------------------------------------------------------------

    async def insert_message(
        self, message: MessageRecord, key: str, members: Sequence[tuple[str, bool]] = (), preview: bytes = b""
    ) -> MessageRecord | None:
        """Store a message the way a send does: the key's tentative sequence, the claim, then the links.

        Returns None if the message was stored, else the message that holds its sequence
        (nothing else is written then).
        """
        await self.put_key(message.conversation_id, key, message.seq)
        holder = await self.claim_message(message)
        if holder is None:
            await self.link_message(message, key, members, preview)
        return holder

    async def put_key(self, conversation_id: str, key: str, seq: int) -> None:
        """Point ``key`` at ``seq`` (a send's tentative sequence, written before it claims it)."""
        await self._cql.execute(_PUT_KEY, (_uuid(conversation_id), key, seq), prepare=True)

    async def claim_message(self, message: MessageRecord) -> MessageRecord | None:
        """Create the message row if its sequence is free (a lightweight transaction).

        Returns None if this call created it, else the message holding the sequence (as the
        transaction read it: settled, even if its writer's own transaction was left in flight).
        An unknown outcome (a timeout) raises Unavailable: the sequence may or may not be ours.
        """
        cid = _uuid(message.conversation_id)
        rows = await self._cql.execute(
            _CLAIM_MESSAGE,
            (
                cid,
                message.seq // BUCKET_SIZE,
                message.seq,
                message.message_id,
                message.author_user_id,
                message.author_kind,
                message.text,
                message.client_message_id,
                message.created_at,
                list(message.citations) or None,
            ),
            prepare=True,
        )
        if rows[0]["[applied]"]:
            return None
        return _message(message.conversation_id, rows[0])

    async def link_message(
        self, message: MessageRecord, key: str, members: Sequence[tuple[str, bool]] = (), preview: bytes = b""
    ) -> None:
        """Point the idempotency and id keys at a claimed message and move the members' rows: one logged batch.

        Idempotent, so a retry of a send whose writer died after claiming runs it again.
        ``members``: (user id, whether they wrote it; sending means having read up to one's own
        message), each member's row getting this message as its last one with ``preview``. The
        rows are written at :func:`write_time_us` of the message, not now: a newer message's
        rows (written earlier by another replica, or before this late retry) stay.
        """
        cid = _uuid(message.conversation_id)
        written = write_time_us(message.created_at)
        params: list[Any] = [cid, key, message.seq, cid, id_key(message.message_id), message.seq]
        statements = [_LINK_KEYS]
        if message.seq % BUCKET_SIZE == 0:
            # The hint only has to name the newest bucket (last_seq walks forward from it), so it
            # moves once a bucket, not once a message: one partition fewer in nearly every batch.
            statements.append(_SET_HINT)
            params.extend((message.seq, cid))
        for member, read in members:
            if read:
                statements.append(_SET_LAST_READ)
                params.extend((written, message.seq, preview, message.created_at, message.seq, _uuid(member), cid))
            else:
                statements.append(_SET_LAST)
                params.extend((written, message.seq, preview, message.created_at, _uuid(member), cid))
        await self._cql.execute("BEGIN BATCH " + " ".join(statements) + " APPLY BATCH", params, prepare=True)

    async def tail(self, conversation_id: str, from_seq: int, limit: int) -> list[TailRecord]:
        """The newest messages (up to ``limit``, newest first), found by walking buckets forward from ``from_seq``.

        ``from_seq`` must be 0 or a stored sequence (a hint, or one seen taken). The rows of the
        newest bucket, and of the one before when it has fewer: a sender's twin (the same
        request on another replica) is looked for among them.
        """
        cid = _uuid(conversation_id)
        query = f"SELECT {_TAIL_COLUMNS} FROM messages WHERE conversation_id = ? AND bucket = ? LIMIT ?"
        bucket = max(0, from_seq) // BUCKET_SIZE
        rows = await self._cql.execute(query, (cid, bucket, limit), prepare=True)
        while rows and int(rows[0]["seq"]) % BUCKET_SIZE == BUCKET_SIZE - 1:
            newer = await self._cql.execute(query, (cid, bucket + 1, limit), prepare=True)
            if not newer:
                break
            bucket, rows = bucket + 1, newer
        if len(rows) < limit and bucket > 0:
            rows = rows + await self._cql.execute(query, (cid, bucket - 1, limit - len(rows)), prepare=True)
        return [
            TailRecord(
                seq=int(r["seq"]),
                author_user_id=r["author_user_id"] or "",
                author_kind=int(r["author_kind"]),
                client_message_id=r["client_message_id"] or "",
                created_at=_utc(r["created_at"]) or datetime.now(UTC),
            )
            for r in rows
        ]

    async def seq_of(self, conversation_id: str, key: str) -> int | None:
        """The sequence stored under a key (:func:`client_key`, :func:`id_key`), or None."""
        rows = await self._cql.execute(
            "SELECT seq FROM message_keys WHERE conversation_id = ? AND key = ?",
            (_uuid(conversation_id), key),
            prepare=True,
        )
        return int(rows[0]["seq"]) if rows else None

    async def message(self, conversation_id: str, seq: int) -> MessageRecord | None:
        """One message by sequence."""
        rows = await self._cql.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND bucket = ? AND seq = ?",
            (_uuid(conversation_id), seq // BUCKET_SIZE, seq),
            prepare=True,
        )
        return _message(conversation_id, rows[0]) if rows else None

    async def page(self, conversation_id: str, start_seq: int, limit: int, forward: bool) -> list[MessageRecord]:
        """Up to ``limit`` messages from ``start_seq`` (inclusive) in the given direction.

        Needs no last sequence (another replica may have written past what this one knows):
        sequences have no holes, so forward the walk goes on to the next bucket only when this
        one was read to its end, and backward it goes down to bucket 0.
        """
        cid = _uuid(conversation_id)
        found: list[MessageRecord] = []
        bucket = start_seq // BUCKET_SIZE
        while len(found) < limit and bucket >= 0:
            if forward:
                query = (
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND bucket = ? AND seq >= ? "
                    "ORDER BY seq ASC LIMIT ?"
                )
            else:
                query = (
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND bucket = ? AND seq <= ? "
                    "LIMIT ?"
                )
            rows = await self._cql.execute(query, (cid, bucket, start_seq, limit - len(found)), prepare=True)
            found.extend(_message(conversation_id, row) for row in rows)
            if forward and (not rows or int(rows[-1]["seq"]) % BUCKET_SIZE != BUCKET_SIZE - 1):
                break  # the newest bucket (or past the last message)
            bucket += 1 if forward else -1
        return found

    async def update_message(
        self, conversation_id: str, seq: int, text: str, edited_at: datetime, deleted: bool
    ) -> None:
        """Replace a message's text (or make it a tombstone)."""
        await self._cql.execute(
            "UPDATE messages SET text = ?, edited_at = ?, deleted = ? "
            "WHERE conversation_id = ? AND bucket = ? AND seq = ?",
            (None if deleted else text, edited_at, deleted, _uuid(conversation_id), seq // BUCKET_SIZE, seq),
            prepare=True,
        )

    # -- per-user rows -------------------------------------------------------------

    async def replace_last_message(self, user_id: str, conversation_id: str, seq: int, last_message: bytes) -> bool:
        """Update the preview after an edit or delete of message ``seq``, if it still is the row's last one.

        A lightweight transaction (edits are rare): another replica may have stored a newer
        message meanwhile, whose preview must stay. False if the row's last message is another.
        """
        rows = await self._cql.execute(
            "UPDATE conversations_by_user SET last_message = ? WHERE user_id = ? AND conversation_id = ? "
            "IF last_seq = ?",
            (last_message, _uuid(user_id), _uuid(conversation_id), seq),
            prepare=True,
        )
        return bool(rows[0]["[applied]"])

    async def set_pointer(self, column: str, user_id: str, conversation_id: str, seq: int) -> None:
        """Write ``read_seq`` or ``delivered_seq`` (the caller knows it moves forward)."""
        assert column in ("read_seq", "delivered_seq")
        await self._cql.execute(
            f"UPDATE conversations_by_user SET {column} = ? WHERE user_id = ? AND conversation_id = ?",
            (seq, _uuid(user_id), _uuid(conversation_id)),
            prepare=True,
        )

    async def set_pointers(self, column: str, pointers: Sequence[tuple[str, str, int]]) -> None:
        """:meth:`set_pointer` for many (user id, conversation id, seq), a few partitions a request."""
        assert column in ("read_seq", "delivered_seq")
        await self._cql.execute_many(
            f"UPDATE conversations_by_user SET {column} = ? WHERE user_id = ? AND conversation_id = ?",
            [(seq, _uuid(u), _uuid(c)) for u, c, seq in pointers],
        )

    async def advance_pointer(self, column: str, user_id: str, conversation_id: str, seq: int) -> bool:
        """Move ``read_seq`` or ``delivered_seq`` forward to ``seq``; False if it already was there or past."""
        assert column in ("read_seq", "delivered_seq")
        key = (_uuid(user_id), _uuid(conversation_id))
        rows = await self._cql.execute(
            f"UPDATE conversations_by_user SET {column} = ? WHERE user_id = ? AND conversation_id = ? IF {column} < ?",
            (seq, *key, seq),
            prepare=True,
        )
        if rows[0]["[applied]"]:
            return True
        if rows[0].get(column) is None:  # never set: the condition can't compare with null
            rows = await self._cql.execute(
                f"UPDATE conversations_by_user SET {column} = ? WHERE user_id = ? AND conversation_id = ? "
                f"IF {column} = null",
                (seq, *key),
                prepare=True,
            )
            return bool(rows[0]["[applied]"])
        return False

    async def user_conversations(self, user_id: str) -> list[UserConversationRecord]:
        """Every recent-chats row of the user (one partition)."""
        rows = await self._cql.execute(
            "SELECT conversation_id, kind, member_ids, model, created_at, last_seq, last_message, last_activity, "
            "read_seq, delivered_seq FROM conversations_by_user WHERE user_id = ?",
            (_uuid(user_id),),
            prepare=True,
        )
        return [_user_row(user_id, row) for row in rows]

    async def user_conversation(self, user_id: str, conversation_id: str) -> UserConversationRecord | None:
        """One recent-chats row."""
        rows = await self._cql.execute(
            "SELECT conversation_id, kind, member_ids, model, created_at, last_seq, last_message, last_activity, "
            "read_seq, delivered_seq FROM conversations_by_user WHERE user_id = ? AND conversation_id = ?",
            (_uuid(user_id), _uuid(conversation_id)),
            prepare=True,
        )
        return _user_row(user_id, rows[0]) if rows else None


def _user_row(user_id: str, row: dict[str, Any]) -> UserConversationRecord:
    created = _utc(row["created_at"]) or datetime.now(UTC)
    return UserConversationRecord(
        user_id=user_id,
        conversation_id=str(row["conversation_id"]),
        kind=int(row["kind"] or 0),
        member_ids=tuple(str(m) for m in row["member_ids"] or ()),
        model=row["model"] or "",
        created_at=created,
        last_seq=int(row["last_seq"] or 0),
        last_message=row["last_message"],
        last_activity=_utc(row["last_activity"]) or created,
        read_seq=int(row["read_seq"] or 0),
        delivered_seq=int(row["delivered_seq"] or 0),
    )
