"""The forms service and a forms worker in-process, each test module on a nats-server of its own.

The FORMS stream and its durable consumers are per server: a shared server would let one
module's workers take another's submissions, so each module gets a fresh nats-server and
keyspace (on the run's shared Cassandra); tests within a module keep apart by using forms
and users of their own. A test that needs a pipeline to itself (counters, crashes) builds
its own with :func:`forms_stack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatmesh.forms.v1 import forms_pb2 as fpb
from chatmesh.forms.v1 import forms_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.cassandra import Cassandra
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import running
from services.forms.consumers.base import ConsumerRegistry
from services.forms.server import build as build_forms
from services.forms.settings import FormsSettings, SheetsSettings
from services.forms.worker import FormsWorker, start_worker
from services.history.streams import STREAMS as HISTORY_STREAMS
from services.runtime.bus import NatsSettings, connect, ensure_stream
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, generate_key_pair, load_private_key
from tests.conftest import KeyPair


@dataclass
class FormsUser:
    """A signed-in user of the forms service."""

    user_id: str
    device_id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        """Call metadata carrying the token."""
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class FormsEnv:
    """A forms service, its worker(s) and a client, on one NATS and keyspace."""

    nats: Nats
    settings: FormsSettings
    service: ServiceServer
    stub: forms_pb2_grpc.FormsServiceStub
    signer: TokenSigner
    workers: list[FormsWorker] = field(default_factory=list)

    async def add_worker(self, registry: ConsumerRegistry | None = None, **overrides: Any) -> FormsWorker:
        """Start one more worker (other consumers, other settings); stopped with the stack."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        worker = await start_worker(settings, registry)
        self.workers.append(worker)
        return worker

    def user(self) -> FormsUser:
        """A new user with a valid token."""
        principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
        return FormsUser(principal.user_id, principal.device_id, self.signer.sign(principal).token)

    async def form(self, owner: FormsUser, fields: list[fpb.Field], public: bool = False, **kw: Any) -> fpb.Form:
        """Create a form of ``owner``."""
        request = fpb.CreateFormRequest(
            name=kw.pop("name", f"f-{uuid.uuid4().hex[:10]}"), title="A form", fields=fields, public=public, **kw
        )
        return (await self.stub.CreateForm(request, metadata=owner.auth)).form

    async def wait_processed(self, submission_id: str, timeout_s: float = 30.0) -> fpb.SubmissionStatus:
        """Poll GetSubmission until processed (fails the test after ``timeout_s``)."""
        return await wait_for(
            lambda: self.stub.GetSubmission(fpb.GetSubmissionRequest(submission_id=submission_id)),
            lambda r: r.status.processed,
            timeout_s,
        )  # type: ignore[no-any-return]


async def wait_for(call: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout_s: float) -> Any:
    """Call ``call`` until ``done`` says yes; return the status part of the last answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        answer = await call()
        if done(answer):
            return getattr(answer, "status", answer)
        if loop.time() > deadline:
            raise AssertionError(f"not done after {timeout_s}s: {answer}")
        await asyncio.sleep(0.05)


def forms_settings(nats_url: str, cql: CqlSettings, keys: KeyPair, home: Path, **overrides: Any) -> FormsSettings:
    """Settings for tests: quick caches and renders, local sheets under ``home``."""
    values: dict[str, Any] = {
        "port": 0,
        "nats": NatsSettings(url=nats_url),
        "cql": cql,
        "token_public_key_file": keys.public,
        "shutdown_drain_s": 0,
        "consumers_cache_s": 0.2,
        "watch_poll_s": 0.2,
        "stats_interval_s": 0.5,
        "sheets": SheetsSettings(directory=home / "sheets", render_interval_s=0.2, flush_interval_s=0.1),
        "submits_per_second": 5,
        "submit_burst": 50,
    }
    values.update(overrides)
    return FormsSettings(**values)


async def declare_chat_stream(nats_url: str) -> None:
    """The CHAT stream history declares (the confirm consumer publishes on it)."""
    nc = await connect(NatsSettings(url=nats_url), "test")
    try:
        for stream in HISTORY_STREAMS:
            await ensure_stream(nc.jetstream(), stream)
    finally:
        await nc.close()


@asynccontextmanager
async def forms_stack(
    home: Path, cql: CqlSettings, keys: KeyPair, *, workers: int = 1, nats: Nats | None = None, **overrides: Any
) -> AsyncIterator[FormsEnv]:
    """A nats-server of its own (or ``nats``), the forms service and ``workers`` workers (every built-in consumer)."""
    async with contextlib.AsyncExitStack() as stack:
        if nats is None:
            started = await stack.enter_async_context(
                running(Nats(NatsConfig(home=home / "nats", port=free_port())), ready_timeout_s=30)
            )
            assert isinstance(started, Nats)
            nats = started
        dep = nats
        settings = forms_settings(dep.url, cql, keys, home, **overrides)
        await declare_chat_stream(dep.url)
        service = await build_forms(settings)
        signer = TokenSigner(load_private_key(keys.private), "chatmesh", 3600)
        await service.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                env = FormsEnv(dep, settings, service, forms_pb2_grpc.FormsServiceStub(channel), signer)
                try:
                    for _ in range(workers):
                        env.workers.append(await start_worker(settings))
                    yield env
                finally:
                    for worker in env.workers:
                        await asyncio.wait_for(worker.stop(), 90)  # a hang fails the test, never the run
        finally:
            await asyncio.wait_for(service.stop(), 90)


@pytest.fixture(scope="module")
def module_cql(cassandra: Cassandra) -> CqlSettings:
    """A keyspace for one test module."""
    return CqlSettings(hosts=[cassandra.config.host], port=cassandra.config.native_port,
                       keyspace=f"m_{uuid.uuid4().hex[:20]}")  # fmt: skip


@pytest.fixture(scope="module")
def module_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """An access-token key pair for one test module."""
    home = tmp_path_factory.mktemp("keys")
    pair = KeyPair(home / "access_token.pem", home / "access_token.pub.pem")
    generate_key_pair(pair.private, pair.public)
    return pair


@pytest.fixture(scope="module")
async def forms_env(
    module_cql: CqlSettings, module_keys: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FormsEnv]:
    """The forms service and one worker, shared by the tests of a module."""
    async with forms_stack(tmp_path_factory.mktemp("forms"), module_cql, module_keys) as env:
        yield env
