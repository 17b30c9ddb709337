"""The channel's interceptors: every call made through a :class:`~chatmesh.client.Client`,
its convenience methods and its raw stubs alike, gets a token, a deadline and retries.

Unary calls:
  - ``authorization: Bearer <access token>`` on every RPC but Register, Login and Refresh;
    an access token about to expire is refreshed first.
  - UNAUTHENTICATED: the tokens are refreshed once and the call is sent once more.
  - UNAVAILABLE: sent again with back-off (:class:`~chatmesh.client.RetryPolicy`), for
    calls that are safe to repeat only (:func:`~chatmesh.client.retry.retry_safe`). A
    SendMessage without ``client_message_id`` (a forms Submit without ``idempotency_key``)
    gets one first, so its retries store the message (accept the submission) once.
  - a deadline covering every attempt and wait: the call's ``timeout``, else the client's.

Server-streaming calls get the token and a deadline (none for the live streams, Connect
and WatchPresence); their retries belong to the stream helpers, which know how far a
stream got. Client-streaming calls (ingest's StreamUpsert and UploadSource) get the token
and the stream deadline; they are never repeated, as their requests are consumed once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar, cast

import grpc

from chatmesh.client.retry import PUBLIC_METHODS, RetryPolicy, retry_safe
from chatmesh.client.tokens import TokenKeeper
from chatmesh.forms.v1 import forms_pb2
from chatmesh.history.v1 import history_pb2

log = logging.getLogger("chatmesh.client")

_TRequest = TypeVar("_TRequest")
_TResponse = TypeVar("_TResponse")

# Streams that stay open for as long as the device is online: no deadline by default.
LIVE_STREAMS = frozenset(
    {
        "/chatmesh.session.v1.SessionService/Connect",
        "/chatmesh.presence.v1.PresenceService/WatchPresence",
    }
)


@dataclass(frozen=True)
class CallPolicy:
    """What the interceptors apply to each call.

    Attributes:
        keeper: The device's tokens.
        retry: Back-off for UNAVAILABLE.
        deadline_s: Default deadline of a unary call, in seconds, all attempts included.
        stream_deadline_s: Default deadline of a Generate or Reply stream, in seconds.
        rng: Random source of the back-off jitter.
    """

    keeper: TokenKeeper
    retry: RetryPolicy
    deadline_s: float
    stream_deadline_s: float
    rng: random.Random


def method_name(details: grpc.aio.ClientCallDetails) -> str:
    """``/package.Service/Method`` of a call (grpc.aio hands it over as bytes)."""
    method: str | bytes = details.method
    return method.decode() if isinstance(method, bytes) else method


def call_details(
    details: grpc.aio.ClientCallDetails, access_token: str | None, timeout: float | None
) -> grpc.aio.ClientCallDetails:
    """``details`` with the access token (replacing any the caller set) and ``timeout``."""
    metadata = grpc.aio.Metadata()
    for key, value in details.metadata or ():
        if key.lower() != "authorization":
            metadata.add(key, value)
    if access_token is not None:
        metadata.add("authorization", f"Bearer {access_token}")
    return grpc.aio.ClientCallDetails(details.method, timeout, metadata, details.credentials, details.wait_for_ready)


def _idempotent_request(request: _TRequest) -> tuple[_TRequest, bool]:
    """The request to send, and whether this particular request is safe to repeat."""
    if isinstance(request, history_pb2.SendMessageRequest) and not request.client_message_id:
        stamped = history_pb2.SendMessageRequest()
        stamped.CopyFrom(request)
        stamped.client_message_id = uuid.uuid4().hex
        return cast(_TRequest, stamped), True
    if isinstance(request, forms_pb2.SubmitRequest) and not request.idempotency_key:
        keyed = forms_pb2.SubmitRequest()
        keyed.CopyFrom(request)
        keyed.idempotency_key = str(uuid.uuid4())
        return cast(_TRequest, keyed), True
    if isinstance(request, history_pb2.CreateConversationRequest):
        # The same pair always gets the same direct conversation; an assistant one is new each time.
        return request, request.kind == history_pb2.CONVERSATION_KIND_DIRECT
    return request, False


class UnaryPolicyInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Token, refresh on UNAUTHENTICATED, retries on UNAVAILABLE and a deadline for unary calls."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _TRequest], Awaitable[grpc.aio.UnaryUnaryCall[_TRequest, _TResponse]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _TRequest,
    ) -> _TResponse | grpc.aio.UnaryUnaryCall[_TRequest, _TResponse]:
        policy = self._policy
        method = method_name(client_call_details)
        public = method in PUBLIC_METHODS
        request, safe_request = _idempotent_request(request)
        retryable = safe_request or retry_safe(method)
        loop = asyncio.get_running_loop()
        timeout = client_call_details.timeout if client_call_details.timeout is not None else policy.deadline_s
        deadline = loop.time() + timeout
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            token = None if public else await policy.keeper.access_token()
            details = call_details(client_call_details, token, max(0.0, deadline - loop.time()))
            call = await continuation(details, request)
            code = await call.code()
            if code == grpc.StatusCode.UNAUTHENTICATED and token is not None and not refreshed:
                refreshed = True
                try:
                    await policy.keeper.refresh(rejected_access_token=token)
                except (grpc.aio.AioRpcError, LookupError):
                    return call
                log.debug("%s: UNAUTHENTICATED, tokens refreshed, sending once more", method)
                attempt -= 1  # an auth retry is not an UNAVAILABLE attempt
                continue
            if code != grpc.StatusCode.UNAVAILABLE or not retryable or attempt >= policy.retry.max_attempts:
                return call
            wait = policy.retry.backoff_s(attempt, policy.rng)
            if loop.time() + wait >= deadline:
                return call
            log.debug("%s: UNAVAILABLE (attempt %d), retrying in %.3f s", method, attempt, wait)
            await asyncio.sleep(wait)


class StreamPolicyInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """Token and deadline for server-streaming calls."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _TRequest], Awaitable[grpc.aio.UnaryStreamCall[_TRequest, _TResponse]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _TRequest,
    ) -> AsyncIterator[_TResponse] | grpc.aio.UnaryStreamCall[_TRequest, _TResponse]:
        method = method_name(client_call_details)
        timeout = client_call_details.timeout
        if timeout is None and method not in LIVE_STREAMS:
            timeout = self._policy.stream_deadline_s
        token = None if method in PUBLIC_METHODS else await self._policy.keeper.access_token()
        return await continuation(call_details(client_call_details, token, timeout), request)


class ClientStreamPolicyInterceptor(grpc.aio.StreamUnaryClientInterceptor):
    """Token and deadline for client-streaming calls."""

    def __init__(self, policy: CallPolicy) -> None:
        self._policy = policy

    async def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_TRequest] | Iterable[_TRequest]],
            Awaitable[grpc.aio.StreamUnaryCall[_TRequest, _TResponse]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_TRequest] | Iterable[_TRequest],
    ) -> _TResponse | grpc.aio.StreamUnaryCall[_TRequest, _TResponse]:
        timeout = client_call_details.timeout
        if timeout is None:
            timeout = self._policy.stream_deadline_s
        token = await self._policy.keeper.access_token()
        return await continuation(call_details(client_call_details, token, timeout), request_iterator)
