"""Conversations: create, send, page, receipts, edit, delete. No gRPC here.

Ordering: each conversation's messages get sequence 1, 2, 3..., with no gap and no
duplicate, however many history replicas write to it (any replica may take any send): each
sequence is claimed with a lightweight transaction on the message row (services/history/
claims.py). A lock per conversation in this process keeps one replica from racing itself,
and the newest sequence it saw stays in memory, a lower bound: a lost claim says another
replica is past it, and reads that need the newest sequence (the newest page, MarkRead past
it) read it again.

Durability: SendMessage answers only after the message is in CQL and every member's
event is acked by JetStream. A failure after the claim answers UNAVAILABLE; the client's
retry (same client_message_id, on any replica) finds the stored message, writes its keys
and members' rows again (idempotent; at the message's own write time, so nothing newer
moves back) and publishes again, and JetStream's Nats-Msg-Id keeps the events single.

Delivery reports (one per device per message) are folded per member and conversation and
applied by one task, a few pointer writes per CQL request; their receipts are published
without waiting for JetStream's ack (nobody's call waits on them, and a later one says more).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as pb
from services.history.claims import Draft, Newest, find_or_claim
from services.history.directory import UserDirectory
from services.history.errors import (
    BadPageToken,
    ConversationNotFound,
    ConversationWithSelf,
    MessageDeleted,
    MessageNotFound,
    NotAMember,
    NotAnAssistantConversation,
    NotTheAuthor,
    PeerNotFound,
    SendingTooFast,
)
from services.history.events import EventPublisher
from services.history.protos import event, message_pb
from services.history.store import (
    ConversationRecord,
    HistoryStore,
    MessageRecord,
    UserConversationRecord,
    assistant_key,
    client_key,
    id_key,
)
from services.runtime.errors import ChatmeshError, InvalidArgument
from services.runtime.ids import canonical_uuid_or_none
from services.runtime.ratelimit import RateLimiter

log = logging.getLogger("chatmesh.history")

DEFAULT_PAGE = 50


@dataclass
class _Live:
    """What this replica keeps in memory about one conversation."""

    record: ConversationRecord
    newest: Newest = field(default_factory=Newest)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class ConversationView:
    """A conversation as one member sees it."""

    record: ConversationRecord
    last_message: bytes | None
    last_seq: int
    read_seq: int
    last_activity: datetime

    @property
    def unread(self) -> int:
        """Messages after the member's read pointer."""
        return max(0, self.last_seq - self.read_seq)


@dataclass(frozen=True)
class MessagePage:
    """A page of messages and the cursor to the next one."""

    messages: list[pb.Message]
    next_token: str


MAX_PAGE_TOKEN = 256
"""Longest page token this service issues and accepts (issued ones are under 100 characters)."""

MAX_SEQ = 2**63 - 1
"""Largest sequence a page token may name (CQL bigint)."""

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]*", re.ASCII)
_SEQ = re.compile(r"[0-9]{1,19}", re.ASCII)
_ACTIVITY = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:e[-+]?[0-9]{1,3})?", re.ASCII)


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str) -> str:
    """The text of a page token; BadPageToken for anything this service did not issue.

    Only ASCII is accepted at every step (``str.isdigit``, ``int`` and ``float`` take other
    scripts' digits too), and the length is bounded before anything is decoded.
    """
    if len(token) > MAX_PAGE_TOKEN or not _TOKEN_CHARS.fullmatch(token):
        raise BadPageToken()
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadPageToken() from None
    if not text.isascii() or not text.isprintable():
        raise BadPageToken()
    return text


def _seq_of_token(text: str) -> int:
    """The sequence part of a message page token (ASCII digits, a CQL bigint)."""
    if not _SEQ.fullmatch(text):
        raise BadPageToken()
    value = int(text)
    if value > MAX_SEQ:
        raise BadPageToken()
    return value


def _activity_of_token(text: str) -> float:
    """The last-activity part of a conversation page token (a finite ASCII float)."""
    if not _ACTIVITY.fullmatch(text):
        raise BadPageToken()
    value = float(text)
    if not math.isfinite(value):
        raise BadPageToken()
    return value


class Conversations:
    """The history service's use cases."""

    def __init__(
        self,
        store: HistoryStore,
        publisher: EventPublisher,
        limiter: RateLimiter,
        cache_size: int,
        directory: UserDirectory,
    ) -> None:
        self._store = store
        self._directory = directory
        self._publisher = publisher
        self._limiter = limiter
        self._cache_size = cache_size
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._delivered: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._delivered_pending: dict[tuple[str, str], int] = {}
        self._delivered_flusher: asyncio.Task[None] | None = None

    # -- membership ----------------------------------------------------------------

    async def _conversation(self, conversation_id: str) -> _Live:
        live = self._live.get(conversation_id)
        if live is None:
            record = await self._store.conversation(conversation_id)
            if record is None:
                raise ConversationNotFound(conversation_id)
            live = self._live.setdefault(conversation_id, _Live(record))
        self._live.move_to_end(conversation_id)
        while len(self._live) > self._cache_size:
            oldest_id, oldest = next(iter(self._live.items()))
            if oldest.lock.locked():
                break  # a send is in flight on it: keep it, trim later
            del self._live[oldest_id]
        return live

    async def _member(self, user_id: str, conversation_id: str) -> _Live:
        live = await self._conversation(conversation_id)
        if user_id not in live.record.member_ids:
            raise NotAMember()
        return live

    async def _last_seq(self, live: _Live, at_least: int = 0) -> int:
        """The newest sequence: the one remembered if it is known and at least ``at_least``, else read again.

        Other replicas store messages too: what this one remembers may be behind, never ahead.
        """
        known = live.newest.seq
        if known is not None and known >= at_least:
            return known
        start = max(live.record.last_seq_hint, known or 0)
        rows = await self._store.tail(live.record.conversation_id, start, 1)
        if rows:
            live.newest.saw(rows[0].seq, rows[0].created_at)
        elif live.newest.seq is None:
            live.newest.seq = 0
        return live.newest.seq or 0

    # -- conversations -------------------------------------------------------------

    async def create(
        self,
        user_id: str,
        kind: int,
        peer_user_id: str,
        model: str,
        credentials: str,
        collections: Sequence[str] = (),
    ) -> tuple[ConversationView, bool]:
        """Create a conversation (the same one again for the same pair of users).

        Ids are compared canonical (the servicer canonicalizes them): an upper-case spelling
        of one's own id is oneself, of the peer's the same pair. The peer must be an account
        (session's LookupUsers, asked with the caller's ``credentials``): else PeerNotFound.
        """
        now = datetime.now(UTC)
        if kind == pb.CONVERSATION_KIND_DIRECT:
            if not peer_user_id:
                raise InvalidArgument("peer_user_id", "required for a direct conversation")
            if collections:
                raise InvalidArgument("collections", "only an assistant conversation answers from collections")
            if peer_user_id == user_id:
                raise ConversationWithSelf()
            if not await self._directory.exists(peer_user_id, credentials):
                raise PeerNotFound(peer_user_id)
            pair = ":".join(sorted((user_id, peer_user_id)))
            proposed = str(uuid.uuid4())
            conversation_id = await self._store.claim_direct_pair(pair, proposed)
            created = conversation_id == proposed
            members: tuple[str, ...] = tuple(sorted((user_id, peer_user_id)))
        else:
            if peer_user_id:
                raise InvalidArgument("peer_user_id", "must be empty for an assistant conversation")
            conversation_id, created, members = str(uuid.uuid4()), True, (user_id,)
        # Written on every call, idempotently: a create that crashed after claiming the
        # pair is completed by the next call.
        record = ConversationRecord(conversation_id, kind, members, model, now, 0, tuple(collections))
        await self._store.put_conversation(record)
        return await self.get(user_id, conversation_id), created

    async def get(self, user_id: str, conversation_id: str) -> ConversationView:
        """One conversation as the member sees it."""
        live = await self._member(user_id, conversation_id)
        row = await self._store.user_conversation(user_id, conversation_id)
        return _view(live.record, row)

    async def list(self, user_id: str, page_size: int, token: str) -> tuple[list[ConversationView], str]:
        """The user's conversations, most recent activity first, from one partition read."""
        rows = await self._store.user_conversations(user_id)
        views = [
            _view(ConversationRecord(r.conversation_id, r.kind, r.member_ids, "", r.created_at, r.last_seq), r)
            for r in rows
        ]
        views.sort(key=lambda v: (-v.last_activity.timestamp(), v.record.conversation_id))
        if token:
            position = _decode(token).split("|")
            if len(position) != 3 or position[0] != "c1" or canonical_uuid_or_none(position[2]) != position[2]:
                raise BadPageToken()
            after = (-_activity_of_token(position[1]), position[2])
            views = [v for v in views if (-v.last_activity.timestamp(), v.record.conversation_id) > after]
        size = page_size or DEFAULT_PAGE
        page, rest = views[:size], views[size:]
        next_token = ""
        if rest:
            last = page[-1]
            next_token = _encode(f"c1|{last.last_activity.timestamp()!r}|{last.record.conversation_id}")
        return page, next_token

    async def contacts(self, user_id: str, user_ids: Sequence[str]) -> tuple[str, ...]:
        """Those of ``user_ids`` who share a conversation with ``user_id`` (in order; one partition read)."""
        if not user_ids:
            return ()
        rows = await self._store.user_conversations(user_id)
        shared = {m for r in rows for m in r.member_ids if m != user_id}
        return tuple(u for u in user_ids if u in shared)

    # -- messages ------------------------------------------------------------------

    async def send(
        self, user_id: str, conversation_id: str, client_message_id: str, text: str
    ) -> tuple[pb.Message, bool]:
        """Store a message once per client id and publish it to every member; return it and whether it was a retry."""
        if not text.strip():
            raise InvalidArgument("text", "must not be only whitespace")
        live = await self._member(user_id, conversation_id)
        wait = self._limiter.acquire(user_id, time.monotonic())
        if wait > 0:
            raise SendingTooFast(wait)
        # The key is the sender's: another member reusing the same client id sends their own message.
        return await self._store_once(
            live, client_key(user_id, client_message_id), client_message_id, user_id, pb.AUTHOR_KIND_USER, text
        )

    async def append_assistant(
        self, user_id: str, conversation_id: str, request_id: str, text: str, citations: Sequence[pb.Citation] = ()
    ) -> tuple[pb.Message, bool]:
        """Store the assistant's finished reply (a grounded one with its citations) once per request id; publish it."""
        live = await self._member(user_id, conversation_id)
        if live.record.kind != pb.CONVERSATION_KIND_ASSISTANT:
            raise NotAnAssistantConversation()
        stored = tuple(c.SerializeToString() for c in citations)
        return await self._store_once(
            live, assistant_key(request_id), request_id, "", pb.AUTHOR_KIND_ASSISTANT, text, stored
        )

    async def _store_once(
        self,
        live: _Live,
        key: str,
        client_message_id: str,
        author_user_id: str,
        author_kind: int,
        text: str,
        citations: tuple[bytes, ...] = (),
    ) -> tuple[pb.Message, bool]:
        """Store under ``key`` unless it is stored already; fan out either way. The message as sent."""
        draft = Draft(live.record.conversation_id, key, client_message_id, author_user_id, author_kind, text, citations)
        async with live.lock:  # one claim at a time from this replica; other replicas are met in CQL
            message, found = await find_or_claim(self._store, live.newest, live.record.last_seq_hint, draft)
            body = message_pb(message)
            # Every member's recent-chats row moves to it (again, for a retry: its writer may have
            # died before), with the author's read pointer.
            members = [(m, m == author_user_id) for m in live.record.member_ids]
            await self._store.link_message(message, key, members, body.SerializeToString())
            body.delivery_state = pb.DELIVERY_STATE_SENT
            await self._publish_created(live, body)  # in sequence order, from this replica
        return body, found

    async def _publish_created(self, live: _Live, body: pb.Message) -> None:
        """Publish MessageCreated to every member (idempotent: de-duplicated by JetStream)."""
        created = event(message_created=events_pb2.MessageCreated(message=body))
        await self._publisher.publish(live.record.member_ids, created, f"m:{body.conversation_id}:{body.sequence}")

    async def list_messages(
        self, user_id: str, conversation_id: str, page_size: int, token: str, forward: bool, from_seq: int
    ) -> MessagePage:
        """A page of messages by cursor; stable while new messages arrive."""
        live = await self._member(user_id, conversation_id)
        if token:
            parts = _decode(token).split("|")
            if len(parts) != 3 or parts[0] != "m1" or parts[1] not in ("f", "b"):
                raise BadPageToken()
            forward = parts[1] == "f"
            start = _seq_of_token(parts[2])
            if not forward:
                # Issued one below a stored sequence; a forged one far past the newest would walk
                # down empty buckets.
                start = min(start, await self._last_seq(live, start))
        elif forward:
            start = max(1, from_seq)
        else:
            # The newest page must be the newest (another replica may have stored past what this one saw).
            last = await self._last_seq(live, from_seq or MAX_SEQ)
            start = min(from_seq, last) if from_seq else last
        size = page_size or DEFAULT_PAGE
        records = await self._store.page(conversation_id, start, size + 1, forward) if start >= 1 else []
        page, more = records[:size], len(records) > size
        next_token = ""
        if more:
            after = page[-1].seq + (1 if forward else -1)
            next_token = _encode(f"m1|{'f' if forward else 'b'}|{after}")
        delivered, read = await self._pointers_of_others(user_id, live.record)
        return MessagePage([_with_state(m, user_id, delivered, read) for m in page], next_token)

    async def _pointers_of_others(self, user_id: str, record: ConversationRecord) -> tuple[int, int]:
        others = [m for m in record.member_ids if m != user_id]
        if not others:
            return 0, 0
        rows = await asyncio.gather(*(self._store.user_conversation(m, record.conversation_id) for m in others))
        delivered = min((r.delivered_seq if r else 0) for r in rows)
        read = min((r.read_seq if r else 0) for r in rows)
        return max(delivered, read), read

    async def mark_read(self, user_id: str, conversation_id: str, seq: int) -> tuple[int, int]:
        """Move the user's read pointer forward; publish a receipt to every member if it moved."""
        live = await self._member(user_id, conversation_id)
        last = await self._last_seq(live, seq)  # a message another replica stored counts too
        target = min(seq, last)
        if target >= 1 and await self._store.advance_pointer("read_seq", user_id, conversation_id, target):
            receipt = event(
                read_receipt=events_pb2.ReadReceipt(
                    conversation_id=conversation_id, user_id=user_id, read_sequence=target
                )
            )
            await self._publisher.publish(live.record.member_ids, receipt, f"r:{conversation_id}:{user_id}:{target}")
        row = await self._store.user_conversation(user_id, conversation_id)
        read = row.read_seq if row else 0
        return read, max(0, last - read)

    def report_delivered(self, user_id: str, conversation_id: str, seq: int) -> None:
        """A device of ``user_id`` received messages up to ``seq``: tell the other members once (soon).

        Never waits: reports are folded per (user, conversation) and applied by one flusher
        task, which takes everything that came in while it was busy in one go, so the bus
        callback is never held up by CQL and a busy moment costs one write per pointer, in
        a few batches, instead of one round trip per report.
        """
        key = (user_id, conversation_id)
        if self._delivered.get(key, 0) >= seq or self._delivered_pending.get(key, 0) >= seq:
            return  # every device of every member reports each message: most reports change nothing
        self._delivered_pending[key] = seq
        if self._delivered_flusher is None or self._delivered_flusher.done():
            self._delivered_flusher = asyncio.create_task(self._flush_delivered())

    async def _flush_delivered(self) -> None:
        while self._delivered_pending:
            batch, self._delivered_pending = self._delivered_pending, {}
            try:
                await self._apply_delivered(batch)
            except Exception as exc:  # best effort: the next report of the same member moves it
                log.warning("delivery reports not applied", extra={"reason": str(exc), "reports": len(batch)})

    async def _apply_delivered(self, reports: dict[tuple[str, str], int]) -> None:
        lives: dict[str, _Live] = {}
        writes: list[tuple[str, str, int]] = []
        first: list[tuple[str, str, int]] = []
        for (user_id, conversation_id), seq in reports.items():
            known = self._delivered.get((user_id, conversation_id))
            if known is not None and known >= seq:
                continue
            try:
                lives[conversation_id] = await self._member(user_id, conversation_id)
            except ChatmeshError as exc:  # a forged or stale report: nothing to tell anyone
                log.info("delivery report ignored", extra={"reason": str(exc)})
                continue
            # The pointer is known and only this replica moves it (one flusher at a time): a
            # plain write is enough (a Paxos round per delivered message was the costliest
            # statement). The first report since this replica loaded it compares and sets
            # against what is stored (it may be ahead, after a restart).
            (first if known is None else writes).append((user_id, conversation_id, seq))
        advanced = list(writes)
        applied = await asyncio.gather(
            self._store.set_pointers("delivered_seq", writes),
            *(self._store.advance_pointer("delivered_seq", u, c, s) for u, c, s in first),
        )
        advanced.extend(report for report, moved in zip(first, applied[1:], strict=True) if moved)
        for user_id, conversation_id, seq in (*writes, *first):
            key = (user_id, conversation_id)
            self._delivered[key] = max(seq, self._delivered.get(key, 0))
            self._delivered.move_to_end(key)
        while len(self._delivered) > self._cache_size:
            self._delivered.popitem(last=False)
        for user_id, conversation_id, seq in advanced:
            receipt = event(
                delivery_receipt=events_pb2.DeliveryReceipt(
                    conversation_id=conversation_id, delivered_sequence=seq, user_id=user_id
                )
            )
            others = [m for m in lives[conversation_id].record.member_ids if m != user_id]
            # Nobody waits on a receipt, and a later one says more: no ack round trip for it.
            await self._publisher.publish_unacked(others, receipt, f"d:{conversation_id}:{user_id}:{seq}")

    async def _own_message(self, user_id: str, conversation_id: str, message_id: str) -> tuple[_Live, MessageRecord]:
        live = await self._member(user_id, conversation_id)
        seq = await self._store.seq_of(conversation_id, id_key(message_id))
        message = await self._store.message(conversation_id, seq) if seq is not None else None
        if message is None:
            raise MessageNotFound(message_id)
        if message.author_user_id != user_id:
            raise NotTheAuthor()
        return live, message

    async def edit(self, user_id: str, conversation_id: str, message_id: str, text: str) -> MessageRecord:
        """Replace the text of the user's own message; every device sees the edit."""
        if not text.strip():
            raise InvalidArgument("text", "must not be only whitespace")
        live, message = await self._own_message(user_id, conversation_id, message_id)
        if message.deleted:
            raise MessageDeleted()
        return await self._change(live, message, text=text, deleted=False)

    async def delete(self, user_id: str, conversation_id: str, message_id: str) -> MessageRecord:
        """Make the user's own message a tombstone (idempotent); every device sees it deleted."""
        live, message = await self._own_message(user_id, conversation_id, message_id)
        if message.deleted:
            return message
        return await self._change(live, message, text="", deleted=True)

    async def _change(self, live: _Live, message: MessageRecord, text: str, deleted: bool) -> MessageRecord:
        now = datetime.now(UTC)
        changed = MessageRecord(
            message.conversation_id, message.seq, message.message_id, message.author_user_id, message.author_kind,
            text, message.client_message_id, message.created_at, now, deleted, message.citations,
        )  # fmt: skip
        async with live.lock:
            await self._store.update_message(message.conversation_id, message.seq, text, now, deleted)
            # A message before the newest one this replica saw is not anyone's last; otherwise
            # each row is changed only if its last message still is this one (another replica
            # may have stored a newer one).
            if message.seq >= (live.newest.seq or 0):
                preview = message_pb(changed).SerializeToString()
                await asyncio.gather(
                    *(
                        self._store.replace_last_message(m, message.conversation_id, message.seq, preview)
                        for m in live.record.member_ids
                    )
                )
        body = message_pb(changed)
        kind = (
            {"message_deleted": events_pb2.MessageDeleted(message=body)}
            if deleted
            else {"message_edited": events_pb2.MessageEdited(message=body)}
        )
        version = int(now.timestamp() * 1_000_000)
        await self._publisher.publish(
            live.record.member_ids, event(**kind), f"e:{message.conversation_id}:{message.seq}:{version}"
        )
        return changed


def _view(record: ConversationRecord, row: UserConversationRecord | None) -> ConversationView:
    if row is None:
        return ConversationView(record, None, 0, 0, record.created_at)
    return ConversationView(record, row.last_message, row.last_seq, row.read_seq, row.last_activity)


def _with_state(record: MessageRecord, user_id: str, delivered: int, read: int) -> pb.Message:
    if record.author_user_id != user_id:
        return message_pb(record)
    if read >= record.seq:
        state = pb.DELIVERY_STATE_READ
    elif delivered >= record.seq:
        state = pb.DELIVERY_STATE_DELIVERED
    else:
        state = pb.DELIVERY_STATE_SENT
    return message_pb(record, state)
