"""Sequence claims: a conversation's next sequence, taken safely by any number of history replicas.

Each message's sequence is claimed with a lightweight transaction on the message row itself
(``INSERT ... IF NOT EXISTS`` on (conversation, bucket, seq): one row of one partition, which
Cassandra and ScyllaDB both run as Paxos). Two replicas aiming at the same sequence: one wins,
the other is shown the winner's row and aims again after the newest message there is. The
claim *is* the durable message, so a writer that dies after claiming leaves a message, never a
hole; and a replica only ever aims at one past a message it has seen, so no sequence is
skipped: every conversation is 1..n, whichever replicas wrote it.

Retries (the same idempotency key, on any replica, after an unknown outcome at any point):

- the key's *tentative* sequence is written before each claim, so a retry finds it: the message
  there is its own (found: linked again and published again), someone else's (an attempt that
  lost, or was replayed late: stored anew), or missing (the attempt died, or its claim was left
  in flight): then it claims that very sequence, which settles a claim left in flight (Paxos
  completes it, and the retry is shown it) or takes the still free sequence;
- the same request running at once on two replicas (a client or Envoy retrying while the first
  attempt still runs) is caught where they meet: a lost claim shows the winner's row, and the
  newest messages read after a lost claim (and when this replica first writes to a
  conversation) are looked through for one with the same key. Both attempts then answer with
  the one message. (Twins that do not meet there would have needed more than TAIL_ROWS other
  messages stored in the conversation while the later one ran.)

What a replica remembers (:class:`Newest`) is a lower bound: another replica may be past it.
Sends find out by losing a claim; readers that need the newest sequence re-read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.history.errors import ConversationBusy
from services.history.ids import uuid7
from services.history.store import HistoryStore, MessageRecord, TailRecord

log = logging.getLogger("chatmesh.history")

TAIL_ROWS = 32
"""Newest messages looked through for a sender's twin after a lost claim (small columns only)."""

MAX_CLAIMS = 64
"""Claims one send makes before it gives up with UNAVAILABLE (each lost one means another message was stored)."""


@dataclass
class Newest:
    """What this replica last saw of a conversation's newest message (other replicas may be past it)."""

    seq: int | None = None
    created_at: datetime | None = None

    def saw(self, seq: int, created_at: datetime | None) -> None:
        """A message at ``seq`` exists: move forward to it (never back)."""
        if self.seq is None or seq > self.seq:
            self.seq, self.created_at = seq, created_at


@dataclass(frozen=True)
class Draft:
    """A message to store once under ``key``."""

    conversation_id: str
    key: str
    client_message_id: str
    author_user_id: str
    author_kind: int
    text: str
    citations: tuple[bytes, ...] = ()
    """A grounded assistant reply's citations (serialized ``history.v1.Citation``), stored with it."""

    def made(self, message: MessageRecord | TailRecord) -> bool:
        """Whether ``message`` is this draft stored (same author and client id: the key's own message)."""
        return (message.author_user_id, message.author_kind, message.client_message_id) == (
            self.author_user_id,
            self.author_kind,
            self.client_message_id,
        )


async def find_or_claim(store: HistoryStore, newest: Newest, hint: int, draft: Draft) -> tuple[MessageRecord, bool]:
    """The message stored under ``draft.key`` (and True), or ``draft`` claimed at the next sequence (and False).

    ``hint``: a stored sequence (the conversation row's hint) or 0. The caller links and
    publishes the message either way. Unavailable if the outcome is unknown (retry).
    """
    first: int | None = None
    seq = await store.seq_of(draft.conversation_id, draft.key)
    if seq is not None:
        message = await store.message(draft.conversation_id, seq)
        if message is None:
            # An attempt wrote its tentative sequence and its claim's outcome was lost: claiming
            # that same sequence settles it. It was one past a stored message when written (checked
            # again: a key row that says otherwise must not open a hole).
            if seq == 1 or await store.message(draft.conversation_id, seq - 1) is not None:
                first = seq
        elif draft.made(message):
            newest.saw(message.seq, message.created_at)
            return message, True
        else:
            # The key points at another message: an attempt that lost its claim, or (data written
            # before claims) a batch the batchlog applied late, after that sequence went to someone
            # else's message. The attempt never took a sequence: it is stored now, at the next one.
            log.warning(
                "idempotency key found on another message; storing anew",
                extra={"conversation_id": draft.conversation_id, "seq": seq},
            )
    if first is None and newest.seq is None:
        twin = await _reload(store, newest, hint, draft)
        if twin is not None:
            return twin, True
    target = first if first is not None else (newest.seq or 0) + 1
    for _ in range(MAX_CLAIMS):
        message = _draft_at(draft, target, newest)
        await store.put_key(draft.conversation_id, draft.key, target)
        try:
            holder = await store.claim_message(message)
        except BaseException:
            newest.seq = None  # unknown whether it landed: reload before the next send
            raise
        if holder is None:
            newest.saw(target, message.created_at)
            return message, False
        newest.saw(holder.seq, holder.created_at)
        if draft.made(holder):  # the same request, on another replica, got there first
            return holder, True
        twin = await _reload(store, newest, max(hint, target), draft)
        if twin is not None:
            return twin, True
        target = (newest.seq or 0) + 1
    raise ConversationBusy(draft.conversation_id)


async def _reload(store: HistoryStore, newest: Newest, start: int, draft: Draft) -> MessageRecord | None:
    """Read the newest messages (from ``start``, a stored sequence or 0): move ``newest``, and return a twin if any."""
    rows = await store.tail(draft.conversation_id, max(start, newest.seq or 0), TAIL_ROWS)
    if not rows:
        newest.seq, newest.created_at = 0, None
        return None
    newest.saw(rows[0].seq, rows[0].created_at)
    for row in rows:
        if draft.made(row):
            return await store.message(draft.conversation_id, row.seq)
    return None


def _draft_at(draft: Draft, seq: int, newest: Newest) -> MessageRecord:
    """The message to claim ``seq`` with, created now (whole milliseconds, as stored).

    Later than the message before it when that one is known: ``created_at`` is the write time
    of the members' rows (store.write_time_us), so it must grow with the sequence even when
    replicas' clocks disagree or several messages fall in one millisecond.
    """
    now = datetime.now(UTC)
    created = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if newest.seq == seq - 1 and newest.created_at is not None and created <= newest.created_at:
        created = newest.created_at + timedelta(milliseconds=1)
    return MessageRecord(
        conversation_id=draft.conversation_id,
        seq=seq,
        message_id=uuid7(),
        author_user_id=draft.author_user_id,
        author_kind=draft.author_kind,
        text=draft.text,
        client_message_id=draft.client_message_id,
        created_at=created,
        edited_at=None,
        deleted=False,
        citations=draft.citations,
    )
