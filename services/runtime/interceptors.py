"""Server interceptors every service runs, outermost first.

``MetricsInterceptor`` (count, latency) -> ``ErrorInterceptor`` (domain errors to
statuses) -> ``DeadlineInterceptor`` (default deadline for unary calls) ->
``AuthInterceptor`` (access token) -> ``ValidationInterceptor`` (protovalidate) ->
the servicer. Inner layers raise :mod:`services.runtime.errors`; only
``ErrorInterceptor`` talks to gRPC about failures.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import grpc
import protovalidate

from services.runtime.errors import ChatmeshError, DeadlineExceeded, InvalidArgument, ResourceExhausted, Unauthenticated
from services.runtime.metrics import RpcMetrics
from services.runtime.tokens import Principal, TokenVerifier

log = logging.getLogger("chatmesh.rpc")

UnaryCall = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamCall = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]

# Methods any caller may reach without a token (besides PUBLIC_PREFIXES).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("chatmesh_principal", default=None)
_status: contextvars.ContextVar[list[grpc.StatusCode]] = contextvars.ContextVar("chatmesh_status")


def current_principal() -> Principal:
    """The verified caller of the RPC being served (set by AuthInterceptor)."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token")
    return principal


async def _iterate(result: Any) -> AsyncIterator[Any]:
    """Yield from a streaming behavior, whether an async generator or a context.write coroutine."""
    if inspect.isawaitable(result):
        await result
        return
    async for item in result:
        yield item


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each RPC's behavior; subclasses override ``unary`` and/or ``stream``."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._wrap(handler, handler_call_details.method)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                return await self.unary(method, inner_uu, request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                return await self.unary(method, inner_su, requests, context)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )
        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in self.stream(method, lambda r, c: _iterate(inner_stream(r, c)), request, context):
                yield item

        factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return factory(streaming, handler.request_deserializer, handler.response_serializer)

    async def unary(self, method: str, call: UnaryCall, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Serve one call with a single response. Default: pass through."""
        return await call(request, context)

    def stream(
        self, method: str, call: StreamCall, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Serve one call with a stream of responses. Default: pass through."""
        return call(request, context)


class MetricsInterceptor(WrappingInterceptor):
    """Counts calls by method and status, and times them (streams: until they end)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def unary(self, method: str, call: UnaryCall, request: Any, context: grpc.aio.ServicerContext) -> Any:
        status: list[grpc.StatusCode] = []
        _status.set(status)
        started = time.perf_counter()
        try:
            return await call(request, context)
        finally:
            self._metrics.observe(method, status[-1] if status else grpc.StatusCode.OK, time.perf_counter() - started)

    async def stream(
        self, method: str, call: StreamCall, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
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


class ErrorInterceptor(WrappingInterceptor):
    """Turns domain errors into statuses; anything unexpected is logged and answered INTERNAL."""

    async def unary(self, method: str, call: UnaryCall, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await call(request, context)
        except Exception as exc:  # noqa: BLE001 - every failure gets a status; AbortError passes through
            await self._abort(method, exc, context)
            raise  # unreachable: abort raises

    async def stream(
        self, method: str, call: StreamCall, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        try:
            async for item in call(request, context):
                yield item
        except Exception as exc:  # noqa: BLE001 - as above
            await self._abort(method, exc, context)
            raise

    async def _abort(self, method: str, exc: Exception, context: grpc.aio.ServicerContext) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        status = _status.get(None)
        metadata: tuple[tuple[str, str], ...] = ()
        if isinstance(exc, ChatmeshError):
            code, message = exc.code, str(exc)
            if isinstance(exc, ResourceExhausted) and exc.retry_after_s is not None:
                metadata = (("retry-after-ms", str(int(exc.retry_after_s * 1000))),)
            log.info("rpc failed", extra={"method": method, "code": code.name, "reason": message})
        elif isinstance(exc, NotImplementedError):
            code, message = grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet"
        else:
            code, message = grpc.StatusCode.INTERNAL, "internal error; the service logged the details"
            log.exception("rpc crashed", extra={"method": method})
        if status is not None:
            status.append(code)
        await context.abort(code, message, trailing_metadata=metadata)


class DeadlineInterceptor(WrappingInterceptor):
    """Gives unary calls without a client deadline the service's default one."""

    def __init__(self, default_deadline_s: float) -> None:
        self._default_s = default_deadline_s

    async def unary(self, method: str, call: UnaryCall, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if context.time_remaining() is not None:
            return await call(request, context)
        try:
            async with asyncio.timeout(self._default_s):
                return await call(request, context)
        except TimeoutError:
            raise DeadlineExceeded(f"{method} took longer than {self._default_s:g}s") from None


class AuthInterceptor(WrappingInterceptor):
    """Checks the access token of every call but the public ones, and records the principal."""

    def __init__(self, verifier: TokenVerifier | None, public_methods: Collection[str]) -> None:
        self._verifier = verifier
        self._public = frozenset(public_methods)

    def _authenticate(self, method: str, context: grpc.aio.ServicerContext) -> None:
        if method in self._public or method.startswith(PUBLIC_PREFIXES):
            _principal.set(None)
            return
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
                token = value[7:].strip()
        if not token:
            raise Unauthenticated("missing access token: send `authorization: Bearer <token>`")
        if self._verifier is None:
            raise Unauthenticated("this service has no token key configured")
        _principal.set(self._verifier.verify(token))

    async def unary(self, method: str, call: UnaryCall, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._authenticate(method, context)
        return await call(request, context)

    async def stream(
        self, method: str, call: StreamCall, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        self._authenticate(method, context)
        async for item in call(request, context):
            yield item


def _violation_field(violation: protovalidate.Violation) -> str:
    parts = []
    for element in violation.proto.field.elements:
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


class ValidationInterceptor(WrappingInterceptor):
    """Applies each request's protovalidate rules before the servicer sees it."""

    async def unary(self, method: str, call: UnaryCall, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await call(self._check(request), context)

    def stream(
        self, method: str, call: StreamCall, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        return call(self._check(request), context)

    @staticmethod
    def _check(request: Any) -> Any:
        if hasattr(request, "DESCRIPTOR"):
            validate(request)
            return request
        return _validated(request)
