"""NATS JetStream access: connecting, and declaring streams and KV buckets idempotently.

Failures that mean "the bus cannot take this now" (the connection is closed or
reconnecting with a full buffer, no JetStream ack in time, no stream for the subject,
a stream without quorum) are raised as the runtime's
:class:`~services.runtime.errors.Unavailable`, so a caller sees UNAVAILABLE ("retry"),
never INTERNAL or a false OK: a publish only counts once JetStream acked it.

On a NATS cluster, streams and KV buckets get ``NatsSettings.stream_replicas`` replicas
(R3 on the 3-node mesh): :func:`connect` remembers the setting for the connection, and
:func:`ensure_stream` / :func:`ensure_kv` apply it to every stream a service declares.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from pydantic import BaseModel, Field

from services.runtime.errors import Unavailable

log = logging.getLogger("chatmesh.bus")


class NatsSettings(BaseModel):
    """Where NATS is (nested in a service's settings)."""

    url: str = Field("nats://127.0.0.1:4222", min_length=1, description="NATS server URL(s), comma-separated.")
    connect_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of each connection attempt.")
    publish_timeout_s: float = Field(5.0, gt=0, le=60, description="How long a publish waits for the JetStream ack.")
    stream_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="Replicas of every JetStream stream and KV bucket the service declares: 1 on a single "
        "server, 3 on a 3-node cluster (an acked message is then on a majority of the servers' disks).",
    )
    reconnect_wait_s: float = Field(
        0.5, gt=0, le=30, description="Wait between reconnection attempts after the connection to NATS is lost."
    )


#: What callers are told; details go to the log.
UNAVAILABLE_MESSAGE = "the event bus is unavailable; retry"

#: stream_replicas of each open connection (see :func:`connect`).
_replicas: weakref.WeakKeyDictionary[Client, int] = weakref.WeakKeyDictionary()


def _replicas_of(js: JetStreamContext) -> int:
    nc = getattr(js, "_nc", None)
    return _replicas.get(nc, 1) if nc is not None else 1


async def _log_error(exc: Exception) -> None:
    log.warning("nats connection error", extra={"reason": str(exc) or type(exc).__name__})


async def connect(settings: NatsSettings, name: str) -> Client:
    """Connect to NATS (reconnecting forever once connected); raise Unavailable if unreachable now."""
    try:
        nc = await nats.connect(
            servers=settings.url.split(","),
            name=f"chatmesh-{name}",
            connect_timeout=settings.connect_timeout_s,
            max_reconnect_attempts=-1,
            reconnect_time_wait=settings.reconnect_wait_s,
            allow_reconnect=True,
            error_cb=_log_error,
        )
    except Exception as exc:  # nats raises several unrelated types for "cannot connect"
        log.warning("nats connect failed", extra={"url": settings.url, "reason": str(exc) or type(exc).__name__})
        raise Unavailable(UNAVAILABLE_MESSAGE) from exc
    _replicas[nc] = settings.stream_replicas
    return nc


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it to ``config`` if it exists (replicas from the connection's settings)."""
    replicas = _replicas_of(js)
    if (config.num_replicas or 1) < replicas:
        config.num_replicas = replicas
    try:
        await js.stream_info(str(config.name))
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", extra={"stream": config.name})
    else:
        await js.update_stream(config)


async def ensure_kv(js: JetStreamContext, config: KeyValueConfig) -> None:
    """Create the key-value bucket if it does not exist (replicas from the connection's settings)."""
    replicas = _replicas_of(js)
    if (config.replicas or 1) < replicas:
        config.replicas = replicas
    try:
        await js.key_value(config.bucket)
    except BucketNotFoundError:
        await js.create_key_value(config)
        log.info("kv bucket created", extra={"bucket": config.bucket})


class AckedPublisher:
    """JetStream publishes that wait for the stream's acks, over one reply subscription.

    nats-py's ``js.publish`` is a request: a fresh reply token per publish (``secrets``: a
    system call each), each publish awaited on its own (a task each to send several at
    once). Here every publish of a process replies to ``<inbox>.<counter>`` under one
    wildcard subscription, and ``publish`` sends all of its messages before waiting for any
    ack: one flush, one wait for the lot.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._counter = 0
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._starting = asyncio.Lock()

    async def _reply_prefix(self) -> str:
        if not self._prefix:
            async with self._starting:
                if not self._prefix:
                    prefix = f"{self._nc.new_inbox()}."
                    await self._nc.subscribe(prefix + "*", cb=self._on_ack)
                    self._prefix = prefix
        return self._prefix

    async def _on_ack(self, msg: Msg) -> None:
        waiter = self._waiting.get(msg.subject[len(self._prefix) :])
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    async def publish(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]], timeout_s: float
    ) -> list[dict[str, Any]]:
        """Publish each (subject, payload, headers) and wait until JetStream acked every one.

        Returns:
            Each message's PubAck (``stream``, ``seq``; ``duplicate`` true when the stream
            already had its ``Nats-Msg-Id``, and then ``seq`` is the first one's), in order.

        Raises:
            Unavailable: an ack did not come in ``timeout_s``, no stream takes a subject, or
                the stream refused a message.
        """
        prefix = await self._reply_prefix()
        loop = asyncio.get_running_loop()
        tokens = []
        acks: list[dict[str, Any]] = []
        try:
            for subject, payload, headers in messages:
                self._counter += 1
                token = str(self._counter)
                self._waiting[token] = loop.create_future()
                tokens.append(token)
                await self._nc.publish(subject, payload, reply=prefix + token, headers=headers)
            async with asyncio.timeout(timeout_s):
                for token in tokens:
                    acks.append(_check_ack(await self._waiting[token]))
            return acks
        except TimeoutError:
            log.warning("no jetstream ack", extra={"timeout_s": timeout_s, "messages": len(tokens)})
            raise Unavailable(UNAVAILABLE_MESSAGE) from None
        except NatsError as exc:  # closed, draining, stale, or the reconnect buffer is full
            log.warning("nats publish failed", extra={"error": type(exc).__name__, "reason": str(exc)})
            raise Unavailable(UNAVAILABLE_MESSAGE) from exc
        finally:
            for token in tokens:
                self._waiting.pop(token, None)


def _check_ack(msg: Msg) -> dict[str, Any]:
    """The PubAck in ``msg``; raise Unavailable unless it is one."""
    if msg.headers and msg.headers.get("Status") == "503":
        raise Unavailable("the event bus is unavailable (no JetStream stream takes this subject); retry")
    try:
        ack = json.loads(msg.data)
    except ValueError:
        log.warning("not a jetstream ack", extra={"data": repr(msg.data[:80])})
        raise Unavailable(UNAVAILABLE_MESSAGE) from None
    if "error" in ack:
        log.warning("jetstream refused the message", extra={"error": ack["error"]})
        raise Unavailable(UNAVAILABLE_MESSAGE)
    return dict(ack)
