"""The server interceptor every service runs: a chain of layers, outermost first.

``MetricsLayer`` (count, latency) -> ``ErrorLayer`` (domain errors to statuses) ->
``DeadlineLayer`` (default deadline for unary calls) -> ``AuthLayer`` (access token) ->
``ConcurrencyLayer`` (calls and streams in flight per caller) -> ``ValidationLayer``
(decoding, protovalidate) -> the servicer. Inner layers raise
:mod:`services.runtime.errors`; only ``ErrorLayer`` talks to gRPC about failures.

Every method is served as a stream of raw request bytes, whatever its kind, so the layers
run as soon as the call's headers arrive, before any request message: a call without a
valid token is refused at once, a caller over its concurrency share is refused before it
holds anything, and a call whose message does not come within ``first_message_timeout_s``
ends DEADLINE_EXCEEDED instead of holding a slot until the gateway gives up. Decoding
happens in ``ValidationLayer``, so bytes that are not the method's message (or carry
invalid UTF-8 in a string) are INVALID_ARGUMENT naming the message, never UNKNOWN.

The layers are composed once per method and cached by :class:`RuntimeInterceptor`, so a
call pays for one interceptor hop and a few awaits, not one grpc interceptor per layer
(five chained grpc.aio interceptors cost about half of a loopback unary call).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.runtime.clients import Network, caller_address
from services.runtime.errors import (
    ChatmeshError,
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from services.runtime.ids import canonical_uuid_or_none
from services.runtime.metrics import RpcMetrics
from services.runtime.tokens import Principal, TokenVerifier

log = logging.getLogger("chatmesh.rpc")

# String aliases: grpc's stubs make these generic, the runtime classes are not subscriptable.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
UnaryCall: TypeAlias = "Callable[[Any, Context], Awaitable[Any]]"
StreamCall: TypeAlias = "Callable[[Any, Context], AsyncIterator[Any]]"

# Methods any caller may reach without a token (besides PUBLIC_PREFIXES).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# Metadata with which a service (a service token) names the user it acts for.
ON_BEHALF_OF = "x-chatmesh-on-behalf-of"

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("chatmesh_principal", default=None)
_status: contextvars.ContextVar[list[grpc.StatusCode]] = contextvars.ContextVar("chatmesh_status")


def current_principal() -> Principal:
    """The verified caller of the RPC being served (set by AuthLayer)."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token")
    return principal


def optional_principal() -> Principal | None:
    """The verified caller, or None for an anonymous call to an optional-auth method."""
    return _principal.get()


def status_details(exc: InvalidArgument) -> bytes:
    """``grpc-status-details-bin``: a google.rpc.Status with every field violation of ``exc``."""
    request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=problem)
            for field, problem in exc.violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(request)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(exc), details=[detail])
    encoded: bytes = status.SerializeToString()
    return encoded


async def _iterate(result: Any) -> AsyncIterator[Any]:
    """Yield from a streaming behavior, whether an async generator or a context.write coroutine."""
    if inspect.isawaitable(result):
        await result
        return
    async for item in result:
        yield item


class Layer:
    """One concern wrapped around every RPC; subclasses override ``unary`` and/or ``stream``."""

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        """Serve one call with a single response. Default: pass through."""
        return await call(request, context)

    def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        """Serve one call with a stream of responses. Default: pass through."""
        return call(request, context)


class Prevalidated:
    """A request a method's own decoder built and checked against the contract's rules.

    ValidationLayer passes it through unchanged: its decoder (``ServiceBinding.request_decoders``)
    checked what protovalidate would, or handed the call the ordinary message instead.
    """

    __slots__ = ()


_END = object()


class Incoming:
    """The request side of a call served from its headers: raw messages, read and decoded on demand.

    ``single`` methods (unary request) take exactly one message; the first one must arrive
    within ``first_timeout_s`` of the headers.
    """

    __slots__ = ("_iterator", "_decode", "_message", "single", "_first_timeout_s")

    def __init__(
        self, iterator: AsyncIterator[bytes], decode: Callable[[bytes], Any], single: bool, first_timeout_s: float
    ) -> None:
        self._iterator = iterator
        self._decode = decode
        self._message = _message_name(decode)
        self.single = single
        self._first_timeout_s = first_timeout_s

    async def _next(self, first: bool) -> Any:
        if not first:
            return await anext(self._iterator, _END)
        try:
            async with asyncio.timeout(self._first_timeout_s):
                return await anext(self._iterator, _END)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no request message within {self._first_timeout_s:g}s of the call's headers"
            ) from None

    def _decoded(self, raw: Any) -> Any:
        try:
            return self._decode(raw)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, and anything a broken message raises
            raise InvalidArgument("request", f"the request is not a valid {self._message} message") from None

    async def one(self) -> Any:
        """The call's only request message, decoded."""
        raw = await self._next(first=True)
        if raw is _END:
            raise InvalidArgument("request", f"the call carried no {self._message} message")
        return self._decoded(raw)

    async def messages(self) -> AsyncIterator[Any]:
        """The call's request messages, decoded, until the client half-closes."""
        first = True
        while True:
            raw = await self._next(first)
            first = False
            if raw is _END:
                return
            yield self._decoded(raw)


def _message_name(decode: Callable[[bytes], Any]) -> str:
    owner = getattr(decode, "__self__", decode)  # FromString's class, or a decoder with a DESCRIPTOR
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(descriptor.full_name) if descriptor is not None else "request"


def _identity(raw: bytes) -> bytes:
    return raw


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    """Runs ``layers`` (outermost first) around every RPC's behavior, from the call's headers on."""

    def __init__(
        self,
        layers: Sequence[Layer],
        first_message_timeout_s: float = 5.0,
        decoders: Mapping[str, Callable[[bytes], Any]] | None = None,
    ) -> None:
        self._layers = tuple(layers)
        self._first_s = first_message_timeout_s
        self._decoders = dict(decoders or {})
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # unknown method: grpc answers UNIMPLEMENTED
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _unary_chain(self, method: str, inner: Callable[..., Any]) -> UnaryCall:
        call = inner
        for layer in reversed(self._layers):
            call = functools.partial(layer.unary, method, call)
        return call

    def _stream_chain(self, method: str, inner: Callable[..., Any]) -> StreamCall:
        def innermost(request: Any, context: Context) -> AsyncIterator[Any]:
            return _iterate(inner(request, context))

        call: StreamCall = innermost
        for layer in reversed(self._layers):
            call = functools.partial(layer.stream, method, call)
        return call

    def _wrap(self, handler: Handler, method: str) -> Handler:
        # Exactly one of the four behaviors is set; in grpc.aio each is an async callable.
        behavior: Callable[..., Any] = (
            handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream  # type: ignore[assignment]
        )
        decode = self._decoders.get(method) or handler.request_deserializer or _identity
        single = bool(handler.unary_unary or handler.unary_stream)
        first_s = self._first_s
        if handler.unary_unary or handler.stream_unary:
            unary = self._unary_chain(method, behavior)

            async def serve_unary(requests: AsyncIterator[bytes], context: Context) -> Any:
                return await unary(Incoming(requests, decode, single, first_s), context)

            return grpc.stream_unary_rpc_method_handler(serve_unary, None, handler.response_serializer)
        chain = self._stream_chain(method, behavior)

        async def serve_stream(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            async for item in chain(Incoming(requests, decode, single, first_s), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(serve_stream, None, handler.response_serializer)


class MetricsLayer(Layer):
    """Counts calls by method and status, and times them (streams: until they end)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        status: list[grpc.StatusCode] = []
        _status.set(status)
        started = time.perf_counter()
        try:
            return await call(request, context)
        finally:
            self._metrics.observe(method, status[-1] if status else grpc.StatusCode.OK, time.perf_counter() - started)

    async def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        status: list[grpc.StatusCode] = []
        _status.set(status)
        started = time.perf_counter()
        try:
            async for item in call(request, context):
                yield item
        except asyncio.CancelledError:
            status.append(grpc.StatusCode.CANCELLED)
            raise
        finally:
            self._metrics.observe(method, status[-1] if status else grpc.StatusCode.OK, time.perf_counter() - started)


class ErrorLayer(Layer):
    """Turns domain errors into statuses; anything unexpected is logged and answered INTERNAL."""

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        try:
            return await call(request, context)
        except Exception as exc:  # noqa: BLE001 - every failure gets a status; AbortError passes through
            await self._abort(method, exc, context)
            raise  # unreachable: abort raises

    async def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            async for item in call(request, context):
                yield item
        except Exception as exc:  # noqa: BLE001 - as above
            await self._abort(method, exc, context)
            raise

    async def _abort(self, method: str, exc: Exception, context: Context) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        status = _status.get(None)
        metadata: tuple[tuple[str, str | bytes], ...] = ()
        if isinstance(exc, ChatmeshError):
            code, message = exc.code, str(exc)
            if isinstance(exc, ResourceExhausted) and exc.retry_after_s is not None:
                metadata = (("retry-after-ms", str(int(exc.retry_after_s * 1000))),)
            if isinstance(exc, InvalidArgument) and exc.violations:
                metadata = (("grpc-status-details-bin", status_details(exc)),)
            log.info("rpc failed", extra={"method": method, "code": code.name, "reason": message})
        elif isinstance(exc, NotImplementedError):
            code, message = grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet"
        else:
            code, message = grpc.StatusCode.INTERNAL, "internal error; the service logged the details"
            log.exception("rpc crashed", extra={"method": method})
        if status is not None:
            status.append(code)
        await context.abort(code, message, trailing_metadata=metadata)


class DeadlineLayer(Layer):
    """Gives unary calls without a client deadline the service's default one."""

    def __init__(self, default_deadline_s: float) -> None:
        self._default_s = default_deadline_s

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        if context.time_remaining() is not None:
            return await call(request, context)
        try:
            async with asyncio.timeout(self._default_s):
                return await call(request, context)
        except TimeoutError:
            raise DeadlineExceeded(f"{method} took longer than {self._default_s:g}s") from None


class AuthLayer(Layer):
    """Checks the access token of every call but the public ones, and records the principal.

    A service token (see :mod:`services.runtime.tokens`) must name the user it acts for in
    ``x-chatmesh-on-behalf-of``; the principal is then that user, with ``service`` set to the
    caller's name, and the service's own rules apply as for the user. The header on a user's
    token is PERMISSION_DENIED: only services act for others.

    ``optional_methods`` take calls with or without a token: a token that is sent is
    verified as anywhere else (an invalid one is UNAUTHENTICATED); without one the
    principal is None (:func:`optional_principal`) and the servicer decides (the forms
    service serves public forms that way). ``internal_methods`` (ACCESS_INTERNAL in the
    contract) take service tokens only: a user's token is PERMISSION_DENIED.

    A stream lives no longer than its token: when the token expires, or its session is
    revoked (Logout, RevokeDevice, a replayed refresh token: see
    :mod:`services.runtime.revocation`), the stream ends UNAUTHENTICATED at once. Clients
    refresh and reopen it from their last sequence (the re-auth flow in the README).
    """

    def __init__(
        self,
        verifier: TokenVerifier | None,
        public_methods: Collection[str],
        optional_methods: Collection[str] = (),
        internal_methods: Collection[str] = (),
    ) -> None:
        self._verifier = verifier
        self._public = frozenset(public_methods)
        self._optional = frozenset(optional_methods)
        self._internal = frozenset(internal_methods)

    def _authenticate(self, method: str, context: Context) -> Principal | None:
        if method in self._public or method.startswith(PUBLIC_PREFIXES):
            _principal.set(None)
            return None
        token = None
        acting_for = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
                token = value[7:].strip()
            elif key == ON_BEHALF_OF and isinstance(value, str):
                acting_for = value
        if not token and method in self._optional:
            _principal.set(None)
            return None
        if not token:
            raise Unauthenticated("missing access token: send `authorization: Bearer <token>`")
        if self._verifier is None:
            raise Unauthenticated("this service has no token key configured")
        principal = self._verifier.verify(token)
        if method in self._internal and not principal.service:
            raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} is internal: only chatmesh services may call it")
        if principal.service or acting_for is not None:
            principal = _acting_for(principal, acting_for)
        _principal.set(principal)
        return principal

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        self._authenticate(method, context)
        return await call(request, context)

    async def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        principal = self._authenticate(method, context)
        if principal is None or not principal.expires_at:
            async for item in call(request, context):
                yield item
            return
        async for item in _bounded_by_token(principal, self._verifier, call(request, context)):
            yield item


async def _bounded_by_token(
    principal: Principal, verifier: TokenVerifier | None, items: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    """``items``, ended UNAUTHENTICATED when the principal's token expires or its session is revoked."""

    def arm(end: Callable[[Exception], None]) -> Callable[[], None]:
        timer = asyncio.get_running_loop().call_later(
            max(0.0, principal.expires_at - time.time()), lambda: end(_token_ended("expired"))
        )
        revocations = verifier.revocations if verifier is not None else None
        unsubscribe = (
            revocations.on_revoked(principal.session_id, lambda: end(_token_ended("revoked")))
            if revocations is not None and principal.session_id
            else None
        )

        def disarm() -> None:
            timer.cancel()
            if unsubscribe is not None:
                unsubscribe()

        return disarm

    async for item in _interruptible(items, arm):
        yield item


async def _interruptible(
    items: AsyncIterator[Any], arm: Callable[[Callable[[Exception], None]], Callable[[], None]]
) -> AsyncIterator[Any]:
    """``items`` until ``arm``'s callbacks call ``end(error)``: then the stream ends with that error.

    ``arm(end)`` sets up whatever may end the stream and returns what undoes it. An end
    while the stream waits for its next item interrupts the wait.
    """
    task = asyncio.current_task()
    reason: Exception | None = None
    waiting = False

    def end(error: Exception) -> None:
        nonlocal reason
        if reason is None:
            reason = error
            if waiting and task is not None:
                task.cancel()  # interrupts the stream where it waits for its next item

    disarm = arm(end)
    iterator = items.__aiter__()
    try:
        while True:
            if reason is not None:
                raise reason
            waiting = True
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if reason is None or task is None:
                    raise
                task.uncancel()
                raise reason from None
            finally:
                waiting = False
            yield item
    finally:
        disarm()
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await aclose()


class DrainLayer(Layer):
    """Ends open streams when the server starts draining, so their clients reconnect elsewhere.

    A replica about to stop (a rolling restart, a scale-down) calls :meth:`begin`: every open
    server stream except the ``finishing`` ones (generations, which end by themselves within
    the grace period) ends UNAVAILABLE with "reconnect", and a stream opened after that is
    refused the same way; clients reopen it on another replica from their last sequence.
    Unary calls are not touched: the server's grace period lets them finish. Health's Watch
    keeps running: the peers' channels follow NOT_SERVING on it and stop sending calls here.
    """

    def __init__(self, finishing: Collection[str] = ()) -> None:
        self._finishing = frozenset({*finishing, "/grpc.health.v1.Health/Watch"})
        self._draining = False
        self._ends: set[Callable[[Exception], None]] = set()

    @property
    def draining(self) -> bool:
        """Whether :meth:`begin` was called."""
        return self._draining

    def begin(self) -> None:
        """End every open stream (but the finishing ones) and refuse new ones."""
        self._draining = True
        for end in list(self._ends):
            end(_draining())

    async def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        if method in self._finishing:
            async for item in call(request, context):
                yield item
            return
        if self._draining:
            raise _draining()

        def arm(end: Callable[[Exception], None]) -> Callable[[], None]:
            self._ends.add(end)
            return lambda: self._ends.discard(end)

        async for item in _interruptible(call(request, context), arm):
            yield item


def _draining() -> Unavailable:
    return Unavailable("this server is restarting: reconnect (from your last sequence)")


def _token_ended(reason: str) -> Unauthenticated:
    if reason == "revoked":
        return Unauthenticated("access token revoked: sign in again")
    return Unauthenticated("access token expired: refresh it and reopen the stream from your last sequence")


class ConcurrencyLayer(Layer):
    """Sheds load per caller: each caller may have so many unary calls and streams in flight.

    A caller is the user (their token's subject, also when a service acts for them), or,
    without a token, the client address (the gateway's ``x-chatmesh-client-address`` when
    the gateway is the peer). The call over the share is RESOURCE_EXHAUSTED with a retry
    hint before it holds anything, so one flooding caller is refused while everybody
    else's calls go through; grpc's own ``maximum_concurrent_rpcs`` stays as a memory
    guard far above the sum of fair shares.
    """

    def __init__(self, max_calls: int, max_streams: int, trusted_proxies: Sequence[Network]) -> None:
        self._max_calls = max_calls
        self._max_streams = max_streams
        self._trusted = tuple(trusted_proxies)
        self._calls: dict[str, int] = {}
        self._streams: dict[str, int] = {}

    def _caller(self, context: Context) -> str:
        principal = _principal.get()
        if principal is not None and principal.user_id:
            return "user:" + principal.user_id
        if principal is not None:
            return "service:" + principal.service
        return "address:" + caller_address(context, self._trusted)

    def _enter(self, table: dict[str, int], key: str, limit: int, what: str) -> None:
        count = table.get(key, 0)
        if count >= limit:
            raise ResourceExhausted(f"too many {what} in flight for this caller (at most {limit})", retry_after_s=1.0)
        table[key] = count + 1

    @staticmethod
    def _leave(table: dict[str, int], key: str) -> None:
        count = table[key] - 1
        if count:
            table[key] = count
        else:
            del table[key]

    def in_flight(self, caller: str) -> tuple[int, int]:
        """(unary calls, streams) in flight for a caller key (for metrics and tests)."""
        return self._calls.get(caller, 0), self._streams.get(caller, 0)

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        key = self._caller(context)
        self._enter(self._calls, key, self._max_calls, "calls")
        try:
            return await call(request, context)
        finally:
            self._leave(self._calls, key)

    async def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        key = self._caller(context)
        self._enter(self._streams, key, self._max_streams, "streams")
        try:
            async for item in call(request, context):
                yield item
        finally:
            self._leave(self._streams, key)


def _acting_for(principal: Principal, user_id: str | None) -> Principal:
    """The principal of a service token acting for ``user_id`` (checked), or a refusal."""
    if not principal.service:
        raise PermissionDenied(f"{ON_BEHALF_OF} is for services only")
    if user_id is None:
        raise Unauthenticated(f"a service token must name the user it acts for in {ON_BEHALF_OF}")
    canonical = canonical_uuid_or_none(user_id)
    if canonical is None:
        raise Unauthenticated(f"{ON_BEHALF_OF} must be a user id (UUID)")
    return dataclasses.replace(principal, user_id=canonical)


def _violation_field(violation: protovalidate.Violation) -> str:
    parts = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        name = element.field_name
        subscript = element.subscript
        if subscript is not None:
            name += f'["{subscript.value}"]' if subscript.field == "string_key" else f"[{subscript.value}]"
        parts.append(name)
    return ".".join(parts) or violation.proto.rule_id


def validate(message: Any) -> None:
    """Raise InvalidArgument naming the first broken field of ``message`` (protovalidate rules)."""
    try:
        protovalidate.validate(message)
    except protovalidate.ValidationError as exc:
        first = exc.violations[0]
        problems = "; ".join(f"{_violation_field(v)}: {v.proto.message}" for v in exc.violations[1:])
        detail = first.proto.message + (f" (also {problems})" if problems else "")
        raise InvalidArgument(_violation_field(first), detail) from None


async def _validated(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for message in requests:
        validate(message)
        yield message


class ValidationLayer(Layer):
    """Decodes each request message (INVALID_ARGUMENT if it is not one) and applies its protovalidate rules.

    The innermost layer: the servicer gets a validated message (unary request) or an async
    iterator of validated messages (client streams).
    """

    async def unary(self, method: str, call: UnaryCall, request: Any, context: Context) -> Any:
        return await call(await self._check(request), context)

    async def stream(self, method: str, call: StreamCall, request: Any, context: Context) -> AsyncIterator[Any]:
        checked = await self._check(request)
        async for item in call(checked, context):
            yield item

    @staticmethod
    async def _check(request: Any) -> Any:
        if isinstance(request, Incoming):
            if not request.single:
                return _validated(request.messages())
            request = await request.one()
        if isinstance(request, Prevalidated):
            return request
        if hasattr(request, "DESCRIPTOR"):
            validate(request)
            return request
        return _validated(request)
