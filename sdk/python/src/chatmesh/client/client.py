"""The chatmesh client: one channel to the gateway, the device's tokens, and typed stubs."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc

from chatmesh.client.ask import Answer
from chatmesh.client.citations import Citation
from chatmesh.client.documents import DistanceName, MatchValue, SearchHit
from chatmesh.client.forms import FieldValueLike, field_values
from chatmesh.client.ingest import IngestStub
from chatmesh.client.interceptors import (
    CallPolicy,
    ClientStreamPolicyInterceptor,
    StreamPolicyInterceptor,
    UnaryPolicyInterceptor,
)
from chatmesh.client.retry import RetryPolicy
from chatmesh.client.streams import AssistantReply, EventStream
from chatmesh.client.tokens import TokenKeeper, Tokens
from chatmesh.forms.v1 import forms_pb2, forms_pb2_grpc
from chatmesh.history.v1 import history_pb2, history_pb2_grpc
from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from chatmesh.ingest.v1 import ingest_pb2
from chatmesh.presence.v1 import presence_pb2_grpc
from chatmesh.session.v1 import session_pb2, session_pb2_grpc


@dataclass(frozen=True)
class Account:
    """Who the client is logged in as.

    Attributes:
        user_id: UUID of the account.
        device_id: UUID of this device (pass it to ``login`` to log the same device in again).
    """

    user_id: str
    device_id: str


class Client:
    """An async client of a chatmesh mesh, through its gateway (or one service).

    Every call made through it, convenience method or raw stub, carries the access token,
    refreshes it shortly before it expires (and once when a call is refused with
    UNAUTHENTICATED, then sends that call again), has a deadline, and is retried with
    back-off on UNAVAILABLE when it is safe to repeat. See the package README.

    Args:
        target: ``host:port`` of the gateway.
        secure: Use TLS with the system's roots (or ``credentials``).
        credentials: TLS credentials for a gateway with its own CA; implies ``secure``.
        deadline_s: Default deadline of a unary call, in seconds, its retries included.
            A call's own ``timeout=`` overrides it.
        stream_deadline_s: Default deadline of a Reply or Generate stream, in seconds.
            Connect and WatchPresence stay open without one.
        retry: Back-off and cap for UNAVAILABLE.
        refresh_margin_s: Refresh the access token this many seconds before it expires.
        tokens: A saved login to resume (``client.tokens`` of an earlier client).
        options: Extra gRPC channel options.
        rng: Random source for the back-off jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        target: str,
        *,
        secure: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        deadline_s: float = 10.0,
        stream_deadline_s: float = 300.0,
        retry: RetryPolicy | None = None,
        refresh_margin_s: float = 60.0,
        tokens: Tokens | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        rng: random.Random | None = None,
    ) -> None:
        if deadline_s <= 0 or stream_deadline_s <= 0:
            raise ValueError("deadline_s and stream_deadline_s must be positive")
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._keeper = TokenKeeper(self._refresh_with, refresh_margin_s, tokens)
        policy = CallPolicy(self._keeper, self._retry, deadline_s, stream_deadline_s, self._rng)
        interceptors: list[grpc.aio.ClientInterceptor] = [
            UnaryPolicyInterceptor(policy),
            StreamPolicyInterceptor(policy),
            ClientStreamPolicyInterceptor(policy),
        ]
        channel_options = list(options)
        if secure or credentials is not None:
            self._channel = grpc.aio.secure_channel(
                target, credentials or grpc.ssl_channel_credentials(), channel_options, interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.insecure_channel(target, channel_options, interceptors=interceptors)
        self._session = session_pb2_grpc.SessionServiceStub(self._channel)
        self._history = history_pb2_grpc.HistoryServiceStub(self._channel)
        self._presence = presence_pb2_grpc.PresenceServiceStub(self._channel)
        self._inference = inference_pb2_grpc.InferenceServiceStub(self._channel)
        self._ingest = IngestStub(self._channel, self._inference, self._retry, self._rng, stream_deadline_s)
        self._forms = forms_pb2_grpc.FormsServiceStub(self._channel)
        self._collections = self._ingest.helpers
        self._account: Account | None = None
        self._last_sequence = 0

    def __repr__(self) -> str:
        return f"Client(account={self._account!r}, last_sequence={self._last_sequence})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self, grace_s: float | None = None) -> None:
        """Close the channel; calls still running end with CANCELLED."""
        await self._channel.close(grace_s)

    # -- the generated stubs, with auth, deadlines and retries ------------------------------------

    @property
    def session(self) -> session_pb2_grpc.SessionServiceStub:
        """SessionService: accounts, tokens, devices, Connect."""
        return self._session

    @property
    def history(self) -> history_pb2_grpc.HistoryServiceStub:
        """HistoryService: conversations and messages."""
        return self._history

    @property
    def presence(self) -> presence_pb2_grpc.PresenceServiceStub:
        """PresenceService: heartbeats, presence, typing."""
        return self._presence

    @property
    def inference(self) -> inference_pb2_grpc.InferenceServiceStub:
        """InferenceService: the assistant, generation, embeddings, models."""
        return self._inference

    @property
    def ingest(self) -> IngestStub:
        """IngestService: collections, upserts, jobs, search, snapshots; and a call that ingests.

        ``client.ingest.Search(...)`` and every other RPC are the generated stub's;
        ``await client.ingest(collection, items)`` writes documents, points or a file
        (:meth:`IngestStub.__call__ <chatmesh.client.ingest.IngestStub.__call__>`).
        """
        return self._ingest

    @property
    def forms(self) -> forms_pb2_grpc.FormsServiceStub:
        """FormsService: forms, submissions, consumers, dead letters."""
        return self._forms

    # -- tokens ------------------------------------------------------------------------------------

    @property
    def tokens(self) -> Tokens | None:
        """The current token pair (save it to resume the login later), or None when logged out."""
        return self._keeper.tokens

    @property
    def account(self) -> Account | None:
        """The account and device logged in by ``register`` or ``login``; None otherwise."""
        return self._account

    @property
    def last_sequence(self) -> int:
        """The last event sequence this client's event streams saw; ``events()`` resumes after it."""
        return self._last_sequence

    async def register(self, username: str, password: str, device_name: str, *, display_name: str = "") -> Account:
        """Create an account, log this device in, and keep its tokens.

        Raises:
            grpc.aio.AioRpcError: INVALID_ARGUMENT (field named), ALREADY_EXISTS (username taken).
        """
        answer: session_pb2.RegisterResponse = await self._session.Register(
            session_pb2.RegisterRequest(
                username=username, password=password, display_name=display_name, device_name=device_name
            )
        )
        return self._logged_in(answer.user_id, answer.device_id, answer.tokens)

    async def login(self, username: str, password: str, device_name: str, *, device_id: str = "") -> Account:
        """Log this device in and keep its tokens; ``device_id`` logs a known device in again.

        Raises:
            grpc.aio.AioRpcError: UNAUTHENTICATED (wrong username or password), RESOURCE_EXHAUSTED.
        """
        answer: session_pb2.LoginResponse = await self._session.Login(
            session_pb2.LoginRequest(username=username, password=password, device_name=device_name, device_id=device_id)
        )
        return self._logged_in(answer.user_id, answer.device_id, answer.tokens)

    async def refresh(self) -> Tokens:
        """Rotate the tokens now (the client also does it by itself before they expire).

        Raises:
            LookupError: Not logged in.
            grpc.aio.AioRpcError: UNAUTHENTICATED (the login was revoked: log in again).
        """
        return await self._keeper.refresh()

    async def logout(self) -> None:
        """End this device's session on the server and forget the tokens."""
        await self._session.Logout(session_pb2.LogoutRequest())
        self._keeper.set(None)
        self._account = None

    def _logged_in(self, user_id: str, device_id: str, tokens: session_pb2.Tokens) -> Account:
        self._keeper.set(Tokens.from_proto(tokens))
        self._account = Account(user_id=user_id, device_id=device_id)
        return self._account

    async def _refresh_with(self, refresh_token: str) -> Tokens:
        answer: session_pb2.RefreshResponse = await self._session.Refresh(
            session_pb2.RefreshRequest(refresh_token=refresh_token)
        )
        return Tokens.from_proto(answer.tokens)

    # -- conveniences -------------------------------------------------------------------------------

    async def lookup_user(self, username: str) -> session_pb2.User | None:
        """The account with this exact username, or None."""
        answer: session_pb2.LookupUsersResponse = await self._session.LookupUsers(
            session_pb2.LookupUsersRequest(usernames=[username])
        )
        return answer.users[0] if answer.users else None

    async def direct_conversation(self, peer_user_id: str) -> history_pb2.Conversation:
        """The one-to-one conversation with ``peer_user_id`` (created the first time)."""
        answer: history_pb2.CreateConversationResponse = await self._history.CreateConversation(
            history_pb2.CreateConversationRequest(kind=history_pb2.CONVERSATION_KIND_DIRECT, peer_user_id=peer_user_id)
        )
        return answer.conversation

    async def assistant_conversation(
        self, model: str = "", *, collections: Sequence[str] = ()
    ) -> history_pb2.Conversation:
        """A new conversation with the assistant (``model``: empty for the default).

        ``collections``: the caller's collections (at most 8) its replies answer from when
        a reply names none; the conversation remembers them (``Conversation.collections``).
        """
        answer: history_pb2.CreateConversationResponse = await self._history.CreateConversation(
            history_pb2.CreateConversationRequest(
                kind=history_pb2.CONVERSATION_KIND_ASSISTANT, model=model, collections=names(collections)
            )
        )
        return answer.conversation

    async def send_message(
        self, conversation_id: str, text: str, *, client_message_id: str | None = None
    ) -> history_pb2.Message:
        """Send ``text``; returns the stored message.

        Retried on UNAVAILABLE under one ``client_message_id`` (a fresh UUID unless given),
        so the message is stored and delivered once however many attempts it takes.
        """
        answer: history_pb2.SendMessageResponse = await self._history.SendMessage(
            history_pb2.SendMessageRequest(
                conversation_id=conversation_id, client_message_id=client_message_id or uuid.uuid4().hex, text=text
            )
        )
        return answer.message

    def events(
        self,
        *,
        last_sequence: int | None = None,
        watch_user_ids: Sequence[str] = (),
        include_keepalives: bool = False,
        idle_timeout_s: float = 60.0,
    ) -> EventStream:
        """This device's live events (``session.Connect``), reconnecting by itself.

        Args:
            last_sequence: Replay events after this sequence; default: the last one this
                client saw (0 for a new client: new events only).
            watch_user_ids: Users whose presence changes to receive.
            include_keepalives: Also yield the KeepAlive events.
            idle_timeout_s: Reconnect when nothing (not even a KeepAlive) arrives for this
                long; above the server's KeepAlive interval (25 s by default).
        """
        return EventStream(
            lambda: self._session,
            self._keeper,
            self._retry,
            self._rng,
            last_sequence=self._last_sequence if last_sequence is None else last_sequence,
            watch_user_ids=watch_user_ids,
            include_keepalives=include_keepalives,
            idle_timeout_s=idle_timeout_s,
            on_sequence=self._saw,
        )

    def reply(
        self,
        conversation_id: str,
        *,
        model: str = "",
        max_tokens: int | None = None,
        sampling: inference_pb2.SamplingParams | None = None,
        request_id: str | None = None,
        collections: Sequence[str] = (),
        on_citations: Callable[[tuple[Citation, ...]], None] | None = None,
    ) -> AssistantReply:
        """The assistant's reply in an assistant conversation, streamed as it is generated.

        ``async for text in client.reply(conversation_id)`` prints it token by token; the
        finished reply is stored in the conversation. ``max_tokens`` overrides
        ``sampling.max_tokens``. ``collections`` (the caller's, at most 8; empty: the ones
        the conversation remembers) makes it a grounded reply: ``reply.citations`` are set
        before the first token, and ``on_citations`` is called with them.
        """
        params = inference_pb2.SamplingParams()
        if sampling is not None:
            params.CopyFrom(sampling)
        if max_tokens is not None:
            params.max_tokens = max_tokens
        request = inference_pb2.ReplyRequest(
            conversation_id=conversation_id,
            model=model,
            sampling=params,
            request_id=request_id or str(uuid.uuid4()),
            collections=names(collections),
        )
        return AssistantReply(lambda: self._inference, self._keeper, self._retry, self._rng, request, on_citations)

    def ask(
        self,
        question: str,
        *,
        collections: Sequence[str] = (),
        conversation_id: str | None = None,
        model: str = "",
        max_tokens: int | None = None,
        sampling: inference_pb2.SamplingParams | None = None,
        request_id: str | None = None,
        on_citations: Callable[[tuple[Citation, ...]], None] | None = None,
    ) -> Answer:
        """Ask the assistant ``question``, answered from ``collections`` with citations, streamed.

        ``async for text in client.ask("Which proxy is the gateway?", collections=["notes"])``
        creates an assistant conversation that remembers the collections (or, with
        ``conversation_id``, goes on in that one: a follow-up), sends the question, then
        streams the grounded reply; ``answer.citations`` hold the passages it cites (set
        before its first token; ``on_citations`` is called with them as they arrive) and
        ``answer.conversation_id`` the conversation to ask the next question in. Without
        collections, the reply answers from the ones the conversation remembers, or from
        none (a plain reply). Nothing is sent until the answer is iterated.

        Args:
            question: The user's turn, 1 to 4,000 characters.
            collections: Names of the caller's collections, at most 8.
            conversation_id: An assistant conversation of the caller's to go on in.
            model, max_tokens, sampling, request_id: As for :meth:`reply`.
            on_citations: Called with the citations when they arrive.

        Raises:
            TypeError: ``collections`` is a single string, not a list of names.
        """
        wanted = names(collections)
        rid = request_id or str(uuid.uuid4())

        async def prepare() -> tuple[str, history_pb2.Message]:
            chat = conversation_id or (await self.assistant_conversation(model, collections=wanted)).conversation_id
            return chat, await self.send_message(chat, question)

        def reply_for(chat: str) -> AssistantReply:
            return self.reply(
                chat,
                model=model,
                max_tokens=max_tokens,
                sampling=sampling,
                request_id=rid,
                collections=wanted,
                on_citations=on_citations,
            )

        return Answer(prepare, reply_for, rid)

    # -- documents: collections, ingestion, search ---------------------------------------------------

    async def create_collection(
        self,
        name: str,
        *,
        vector_size: int | None = None,
        embedding_model: str | None = None,
        distance: DistanceName = "cosine",
        payload_indexes: Mapping[str, ingest_pb2.PayloadIndexType] | None = None,
    ) -> ingest_pb2.Collection:
        """Create a collection of the caller's.

        With neither ``vector_size`` nor ``embedding_model``, it embeds with inference's
        default embedding model (documents and text queries); ``embedding_model`` names
        another one (its dimensions are looked up; ``""`` is the default one); only
        ``vector_size`` makes a collection of vectors only.

        Args:
            name: A lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'.
            vector_size: Length of every vector, 1 to 4,096.
            embedding_model: A model of ``inference.ListModels`` that can embed.
            distance: How vectors are compared.
            payload_indexes: Payload keys to index up front (``{"lang": PAYLOAD_INDEX_TYPE_KEYWORD}``).

        Raises:
            LookupError: Inference has no such embedding model.
            grpc.aio.AioRpcError: INVALID_ARGUMENT (field named), ALREADY_EXISTS,
                RESOURCE_EXHAUSTED (as many collections as allowed).
        """
        return await self._collections.create_collection(
            name,
            vector_size=vector_size,
            embedding_model=embedding_model,
            distance=distance,
            payload_indexes=payload_indexes,
        )

    async def search(
        self,
        collection: str,
        query: str | Sequence[float],
        *,
        limit: int = 10,
        filter: Mapping[str, MatchValue] | None = None,
        score_threshold: float | None = None,
        with_vectors: bool = False,
        timeout: float | None = None,
    ) -> list[SearchHit]:
        """The points of ``collection`` nearest to a text (embedded with its model) or a vector, best first.

        Args:
            collection: One of the caller's collections.
            query: A text (1 to 8,192 characters) or a vector of the collection's size.
            limit: Most hits, 1 to 100.
            filter: Payload values every hit must hold (``{"lang": "en", "year": 2024}``):
                strings exactly, integers and booleans by value; dots reach into nested
                objects (``"meta.lang"``).
            score_threshold: Only hits at least this good (cosine, dot: a minimum score;
                euclid: a maximum distance).
            with_vectors: Return each hit's vector too.
            timeout: This call's deadline (a text query is embedded first).

        Raises:
            grpc.aio.AioRpcError: INVALID_ARGUMENT (``vector`` of the wrong length, ...),
                NOT_FOUND (collection), FAILED_PRECONDITION (a text on a collection of
                vectors only), RESOURCE_EXHAUSTED (inference's queue is full).
        """
        return await self._collections.search(
            collection,
            query,
            limit=limit,
            filter=filter,
            score_threshold=score_threshold,
            with_vectors=with_vectors,
            timeout=timeout,
        )

    # -- forms -------------------------------------------------------------------------------------

    async def create_form(
        self,
        name: str,
        title: str,
        fields: Sequence[forms_pb2.Field],
        *,
        description: str = "",
        public: bool = False,
    ) -> forms_pb2.Form:
        """Create a form owned by the caller (version 1); ``public`` lets anyone submit without an account.

        Raises:
            grpc.aio.AioRpcError: INVALID_ARGUMENT (field named, e.g. ``fields[2].limits.pattern``),
                ALREADY_EXISTS (the caller has a form of that name).
        """
        answer: forms_pb2.CreateFormResponse = await self._forms.CreateForm(
            forms_pb2.CreateFormRequest(name=name, title=title, description=description, fields=fields, public=public)
        )
        return answer.form

    async def submit_form(
        self,
        form_id: str,
        values: Mapping[str, FieldValueLike | forms_pb2.FieldValue],
        *,
        idempotency_key: str | None = None,
    ) -> forms_pb2.SubmitResponse:
        """Submit ``values`` (by field key) to a form; returns once the server has the submission durably.

        Works without ``register``/``login`` for a public form (the call then carries no
        token). Values are plain Python (see :mod:`chatmesh.client.forms`). Retried on
        UNAVAILABLE under one ``idempotency_key`` (a fresh UUID unless given), so it is
        accepted once however many attempts it takes; ``duplicate`` is true when an earlier
        attempt had already been accepted.

        Raises:
            grpc.aio.AioRpcError: INVALID_ARGUMENT naming the first broken value
                (``values["email"]: ...``; :func:`chatmesh.client.field_errors` lists them
                all), NOT_FOUND (form), UNAUTHENTICATED (a private form without an
                account), RESOURCE_EXHAUSTED (rate limit; ``retry-after-ms``).
            TypeError: A value of no field type.
        """
        answer: forms_pb2.SubmitResponse = await self._forms.Submit(
            forms_pb2.SubmitRequest(
                form_id=form_id, idempotency_key=idempotency_key or str(uuid.uuid4()), values=field_values(values)
            )
        )
        return answer

    def _saw(self, sequence: int) -> None:
        self._last_sequence = max(self._last_sequence, sequence)


def names(collections: Sequence[str]) -> list[str]:
    """Collection names as a list; a lone string is refused (it would read as one name a letter)."""
    if isinstance(collections, str):
        raise TypeError(f"collections: a list of names, not one string (collections=[{collections!r}])")
    return list(collections)
