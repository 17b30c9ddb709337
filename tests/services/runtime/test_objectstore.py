"""The S3 client every service uses, against a real S3 API server (S3Proxy)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from mesh.deps.s3proxy import S3Proxy
from services.runtime.errors import NotFound, PermissionDenied, Unavailable
from services.runtime.objectstore import ObjectStore, S3Endpoint, S3Settings


def _bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


async def test_a_large_file_goes_up_in_parts_and_comes_back_identical(s3: S3Settings, tmp_path: Path) -> None:
    store = ObjectStore(s3.model_copy(update={"multipart_chunk_bytes": 5 * 1024 * 1024}))
    bucket = store.bucket("", _bucket_name())
    await bucket.ensure_exists()
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024 + 123))
    await bucket.put_file("snapshots/big.bin", source)
    target = tmp_path / "back.bin"
    await bucket.get_file("snapshots/big.bin", target)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    listed = await bucket.list("snapshots/")
    assert [(o.key, o.size) for o in listed] == [("snapshots/big.bin", source.stat().st_size)]
    await bucket.delete("snapshots/big.bin")
    assert await bucket.list("snapshots/") == []


async def test_a_missing_key_is_not_found(s3: S3Settings) -> None:
    bucket = ObjectStore(s3).bucket("", _bucket_name())
    await bucket.ensure_exists()
    await bucket.put_bytes("a.txt", b"hello")
    assert await bucket.get_bytes("a.txt") == b"hello"
    with pytest.raises(NotFound, match="b.txt"):
        await bucket.get_bytes("b.txt")


async def test_only_configured_endpoints_and_buckets_are_reachable(s3: S3Settings, s3_server: S3Proxy) -> None:
    limited = s3.model_copy(update={"endpoints": [s3.endpoints[0].model_copy(update={"buckets": ["allowed-bucket"]})]})
    store = ObjectStore(limited)
    store.bucket(s3_server.endpoint + "/", "allowed-bucket")  # a trailing slash names the same endpoint
    with pytest.raises(PermissionDenied, match="other-bucket"):
        store.bucket("", "other-bucket")
    with pytest.raises(PermissionDenied, match="no credentials"):
        store.bucket("http://s3.example.com", "allowed-bucket")


async def test_wrong_credentials_are_refused_and_the_secret_never_shows(s3_server: S3Proxy) -> None:
    secret = "not-the-secret-" + uuid.uuid4().hex
    settings = S3Settings(
        endpoints=[S3Endpoint(url=s3_server.endpoint, access_key_id="chatmesh", secret_access_key=secret)]
    )
    assert secret not in repr(settings) and secret not in settings.model_dump_json()
    with pytest.raises(PermissionDenied) as caught:
        await ObjectStore(settings).bucket("", _bucket_name()).ensure_exists()
    assert secret not in str(caught.value)


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    settings = S3Settings(
        endpoints=[S3Endpoint(url="http://127.0.0.1:1", access_key_id="k", secret_access_key="s")],
        connect_timeout_s=0.5,
        max_attempts=1,
    )
    with pytest.raises(Unavailable, match="unreachable"):
        await ObjectStore(settings).bucket("", "some-bucket").get_bytes("x")
