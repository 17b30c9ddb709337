"""Fixtures that start the real thing: nats-server and Cassandra once per test run
(session scope, free ports, torn down at the end), a keyspace and a key pair per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh.deps.base import free_port
from mesh.deps.cassandra import Cassandra, CassandraConfig
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import running
from mesh.deps.s3proxy import S3Proxy, S3ProxyConfig
from services.runtime.cql import CqlSettings
from services.runtime.objectstore import S3Endpoint, S3Settings
from services.runtime.tokens import generate_key_pair

pytest_plugins = [
    "tests.conftest_services",
    "tests.conftest_history",
    "tests.conftest_inference",
    "tests.conftest_mesh",
    "tests.conftest_ingest",
    "tests.conftest_forms",
]


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Nats]:
    """A real nats-server with JetStream for the whole run."""
    home = tmp_path_factory.mktemp("nats")
    async with running(Nats(NatsConfig(home=home, port=free_port())), ready_timeout_s=30) as dep:
        assert isinstance(dep, Nats)
        yield dep


@pytest.fixture(scope="session")
async def cassandra(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cassandra]:
    """A real single-node Cassandra for the whole run (each test gets its own keyspace)."""
    home = tmp_path_factory.mktemp("cassandra")
    config = CassandraConfig(home=home, native_port=free_port(), storage_port=free_port())
    async with running(Cassandra(config), ready_timeout_s=240) as dep:
        assert isinstance(dep, Cassandra)
        yield dep


@pytest.fixture(scope="session")
async def s3_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[S3Proxy]:
    """A real S3 API server (S3Proxy, filesystem backend) for the whole run."""
    home = tmp_path_factory.mktemp("s3proxy")
    async with running(S3Proxy(S3ProxyConfig(home=home, port=free_port())), ready_timeout_s=60) as dep:
        assert isinstance(dep, S3Proxy)
        yield dep


@pytest.fixture
def s3(s3_server: S3Proxy) -> S3Settings:
    """S3 settings with the server's credentials for the run's S3Proxy (any bucket)."""
    c = s3_server.config
    return S3Settings(
        endpoints=[S3Endpoint(url=s3_server.endpoint, access_key_id=c.access_key, secret_access_key=c.secret_key)]
    )


@pytest.fixture
def cql(cassandra: Cassandra) -> CqlSettings:
    """CQL settings pointing at a fresh keyspace of the shared Cassandra."""
    return CqlSettings(
        hosts=[cassandra.config.host],
        port=cassandra.config.native_port,
        keyspace=f"t_{uuid.uuid4().hex[:20]}",
    )


@dataclass(frozen=True)
class KeyPair:
    """PEM files of an access-token key pair."""

    private: Path
    public: Path


@pytest.fixture
def token_keys(tmp_path: Path) -> KeyPair:
    """A fresh Ed25519 key pair."""
    pair = KeyPair(tmp_path / "keys" / "access_token.pem", tmp_path / "keys" / "access_token.pub.pem")
    generate_key_pair(pair.private, pair.public)
    return pair


@pytest.fixture
def service_keys(tmp_path: Path) -> KeyPair:
    """A fresh Ed25519 key pair for service tokens (as `make up` writes service_token.pem)."""
    pair = KeyPair(tmp_path / "keys" / "service_token.pem", tmp_path / "keys" / "service_token.pub.pem")
    generate_key_pair(pair.private, pair.public)
    return pair
