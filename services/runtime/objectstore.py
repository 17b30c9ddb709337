"""S3-compatible object storage (AWS S3, S3Proxy, Ceph, R2...) through boto3, for asyncio services.

Credentials are configured on the server, one entry per endpoint, and never come from a
request: a request names an endpoint URL (or none, for the default) and a bucket, and
:meth:`ObjectStore.bucket` answers PERMISSION_DENIED for an endpoint or bucket the server
has no credentials for. Secrets are ``SecretStr`` so they never reach a log or a repr.

boto3 is blocking; every call runs in a worker thread (boto3 clients are thread-safe), so
no request waits on the event loop. Its default checksum headers break multipart uploads
on several S3-compatible servers (S3Proxy answers NotImplemented): checksums are sent and
checked only where the API requires them.

The tree of errors raised: NotFound (no such key or bucket), PermissionDenied (the
endpoint or bucket is not configured, or the server refused the credentials), Unavailable
(the endpoint cannot be reached or failed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
import boto3.s3.transfer
import botocore.config
import botocore.exceptions
from pydantic import BaseModel, Field, SecretStr

from services.runtime.errors import ChatmeshError, NotFound, PermissionDenied, Unavailable

log = logging.getLogger("chatmesh.objectstore")

ENDPOINT_PATTERN = r"^https?://[^/?#@]+(/.*)?$"
_MiB = 1024 * 1024


class S3Endpoint(BaseModel):
    """One S3-compatible endpoint and the credentials the server uses there."""

    url: str = Field(pattern=ENDPOINT_PATTERN, max_length=256, description="Base URL, http(s)://host[:port].")
    access_key_id: str = Field(min_length=1, max_length=128, description="Access key id.")
    secret_access_key: SecretStr = Field(description="Secret access key (never logged).")
    region: str = Field("us-east-1", min_length=1, max_length=64, description="Signing region.")
    buckets: list[str] = Field(
        default_factory=list, max_length=256, description="Buckets requests may name here; empty: any bucket."
    )
    addressing_style: Literal["path", "virtual"] = Field(
        "path", description="path (S3Proxy, most self-hosted stores) or virtual-hosted buckets (AWS)."
    )


class S3Settings(BaseModel):
    """The S3 endpoints a service may read and write (nested in a service's settings)."""

    endpoints: list[S3Endpoint] = Field(
        default_factory=list,
        max_length=32,
        description='Endpoints with credentials, JSON: [{"url": ..., "access_key_id": ..., "secret_access_key": ...}].',
    )
    default_endpoint: str = Field(
        "", max_length=256, description="URL of the endpoint used when a request names none; empty: the first."
    )
    connect_timeout_s: float = Field(3.0, gt=0, le=60, description="Timeout of opening a connection.")
    read_timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of one read on a connection.")
    max_attempts: int = Field(3, ge=1, le=10, description="Attempts of one request (boto3's standard retries).")
    multipart_chunk_bytes: int = Field(
        16 * _MiB, ge=5 * _MiB, le=512 * _MiB, description="Part size of multipart uploads and downloads."
    )


@dataclass(frozen=True)
class ObjectInfo:
    """An object's key, size and ETag, as listed."""

    key: str
    size: int
    etag: str


def _normalise(url: str) -> str:
    return url.rstrip("/")


class Bucket:
    """One bucket at one endpoint, with the server's credentials for it."""

    def __init__(self, store: ObjectStore, client: Any, endpoint: str, name: str) -> None:
        self._store = store
        self._client = client
        self.endpoint = endpoint
        self.name = name

    async def put_file(self, key: str, path: Path) -> None:
        """Upload ``path`` to ``key`` (multipart above the chunk size)."""
        await self._call(self._client.upload_file, str(path), self.name, key, Config=self._store.transfer, key=key)

    async def get_file(self, key: str, path: Path) -> None:
        """Download ``key`` into ``path``."""
        await self._call(self._client.download_file, self.name, key, str(path), Config=self._store.transfer, key=key)

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` to ``key`` in one request."""
        await self._call(
            self._client.put_object, Bucket=self.name, Key=key, Body=data, ContentType=content_type, key=key
        )

    async def get_bytes(self, key: str) -> bytes:
        """The whole object at ``key``."""

        def read() -> bytes:
            body = self._client.get_object(Bucket=self.name, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

        result: bytes = await self._call(read, key=key)
        return result

    async def head(self, key: str) -> ObjectInfo:
        """Size and ETag of ``key``."""
        reply = await self._call(self._client.head_object, Bucket=self.name, Key=key, key=key)
        return ObjectInfo(key, int(reply["ContentLength"]), str(reply.get("ETag", "")).strip('"'))

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under ``prefix``, by key."""

        def walk() -> list[ObjectInfo]:
            found: list[ObjectInfo] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents", ()):
                    found.append(ObjectInfo(item["Key"], int(item["Size"]), str(item.get("ETag", "")).strip('"')))
            return found

        result: list[ObjectInfo] = await self._call(walk, key=prefix)
        return result

    async def delete(self, key: str) -> None:
        """Delete ``key`` (no error if it is gone already)."""
        await self._call(self._client.delete_object, Bucket=self.name, Key=key, key=key)

    async def ensure_exists(self) -> None:
        """Create the bucket if it does not exist (for local set-ups and tests)."""
        try:
            await self._call(self._client.head_bucket, Bucket=self.name, key="")
        except NotFound:
            await self._call(self._client.create_bucket, Bucket=self.name, key="")

    async def _call(self, fn: Any, *args: Any, key: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ChatmeshError:
            raise
        except botocore.exceptions.ClientError as exc:
            raise self._translate(exc, key) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            log.warning("s3 request failed", extra={"endpoint": self.endpoint, "reason": type(exc).__name__})
            raise Unavailable(f"object storage at {self.endpoint} unreachable; retry") from None

    def _translate(self, exc: botocore.exceptions.ClientError, key: str) -> ChatmeshError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket"):
            return NotFound(f"no object {key!r} in bucket {self.name!r}")
        if code == "NoSuchBucket":
            return NotFound(f"no bucket {self.name!r} at {self.endpoint}")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
            return PermissionDenied(f"object storage at {self.endpoint} refused the server's credentials")
        log.warning("s3 error", extra={"endpoint": self.endpoint, "code": code, "status": status})
        return Unavailable(f"object storage at {self.endpoint} failed ({code or status}); retry")


class ObjectStore:
    """The configured endpoints; hands out :class:`Bucket` handles for allowed buckets only."""

    def __init__(self, settings: S3Settings) -> None:
        self._settings = settings
        self._endpoints = {_normalise(e.url): e for e in settings.endpoints}
        self._clients: dict[str, Any] = {}
        self.transfer = boto3.s3.transfer.TransferConfig(
            multipart_threshold=settings.multipart_chunk_bytes,
            multipart_chunksize=settings.multipart_chunk_bytes,
            max_concurrency=4,
        )

    @property
    def default_endpoint(self) -> str:
        """URL of the endpoint used when a request names none ("" when none is configured)."""
        if self._settings.default_endpoint:
            return _normalise(self._settings.default_endpoint)
        return _normalise(self._settings.endpoints[0].url) if self._settings.endpoints else ""

    def __iter__(self) -> Iterator[S3Endpoint]:
        return iter(self._endpoints.values())

    def bucket(self, endpoint: str, bucket: str) -> Bucket:
        """A handle on ``bucket`` at ``endpoint`` ("" for the default).

        Raises:
            PermissionDenied: the server has no credentials for that endpoint, or they do not
                cover that bucket.
        """
        url = _normalise(endpoint) if endpoint else self.default_endpoint
        config = self._endpoints.get(url)
        if config is None:
            raise PermissionDenied(f"this server has no credentials for the S3 endpoint {url or '(none configured)'}")
        if config.buckets and bucket not in config.buckets:
            raise PermissionDenied(f"this server may not use bucket {bucket!r} at {url}")
        return Bucket(self, self._client(url, config), url, bucket)

    def _client(self, url: str, config: S3Endpoint) -> Any:
        client = self._clients.get(url)
        if client is None:
            s = self._settings
            client = self._clients[url] = boto3.session.Session().client(
                "s3",
                endpoint_url=url,
                region_name=config.region,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key.get_secret_value(),
                config=botocore.config.Config(
                    connect_timeout=s.connect_timeout_s,
                    read_timeout=s.read_timeout_s,
                    retries={"max_attempts": s.max_attempts, "mode": "standard"},
                    s3={"addressing_style": config.addressing_style},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    max_pool_connections=16,
                ),
            )
        return client
