"""NATS JetStream access: connecting, and declaring streams and KV buckets idempotently."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
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


async def _log_error(exc: Exception) -> None:
    log.warning("nats connection error", extra={"reason": str(exc) or type(exc).__name__})


async def connect(settings: NatsSettings, name: str) -> Client:
    """Connect to NATS (reconnecting forever once connected); raise Unavailable if unreachable now."""
    try:
        return await nats.connect(
            servers=settings.url.split(","),
            name=f"chatmesh-{name}",
            connect_timeout=settings.connect_timeout_s,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=_log_error,
        )
    except Exception as exc:  # nats raises several unrelated types for "cannot connect"
        raise Unavailable(f"NATS at {settings.url} unreachable: {exc}") from exc


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it to ``config`` if it exists."""
    try:
        await js.stream_info(str(config.name))
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", extra={"stream": config.name})
    else:
        await js.update_stream(config)


async def ensure_kv(js: JetStreamContext, config: KeyValueConfig) -> None:
    """Create the key-value bucket if it does not exist."""
    try:
        await js.key_value(config.bucket)
    except BucketNotFoundError:
        await js.create_key_value(config)
        log.info("kv bucket created", extra={"bucket": config.bucket})
