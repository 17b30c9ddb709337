"""The forms service and a forms worker in-process, each test on a nats-server of its own.

The FORMS stream and its durable consumers are per server: a shared server would let one
test's worker take another test's submissions, so each test gets a fresh nats-server
(about half a second) on the run's shared Cassandra (a keyspace each).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatmesh.forms.v1 import forms_pb2 as fpb
from chatmesh.forms.v1 import forms_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import running
from services.forms.server import build as build_forms
from services.forms.settings import FormsSettings, SheetsSettings
from services.forms.worker import FormsWorker, start_worker
from services.history.streams import STREAMS as HISTORY_STREAMS
from services.runtime.bus import NatsSettings, connect, ensure_stream
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
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
        "submits_per_second": 10_000,
        "submit_burst": 10_000,
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


@pytest.fixture
async def forms_nats(tmp_path: Path) -> AsyncIterator[Nats]:
    """A nats-server of this test's own."""
    async with running(Nats(NatsConfig(home=tmp_path / "nats", port=free_port())), ready_timeout_s=30) as dep:
        assert isinstance(dep, Nats)
        yield dep


@pytest.fixture
async def forms_env(
    forms_nats: Nats, cql: CqlSettings, token_keys: KeyPair, tmp_path: Path
) -> AsyncIterator[FormsEnv]:
    """The forms service and one worker running every built-in consumer."""
    settings = forms_settings(forms_nats.url, cql, token_keys, tmp_path)
    await declare_chat_stream(forms_nats.url)
    service = await build_forms(settings)
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)
    async with service, grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        env = FormsEnv(forms_nats, settings, service, forms_pb2_grpc.FormsServiceStub(channel), signer)
        env.workers.append(await start_worker(settings))
        try:
            yield env
        finally:
            for worker in env.workers:
                await worker.stop()
