"""The inference service in-process on the bundled SmolLM2 model (small context: tests stay quick)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mesh.deps.nats import Nats
from services.inference.server import build
from services.inference.settings import InferenceSettings
from services.runtime.bus import NatsSettings
from services.runtime.server import ServiceServer
from tests.conftest import KeyPair


def inference_settings(nats: Nats, token_keys: KeyPair, **overrides: object) -> InferenceSettings:
    """Settings for a test: 2 threads, 1 slot, a short queue, history on an unused port unless given."""
    values: dict[str, object] = {
        "port": 0,
        "nats": NatsSettings(url=nats.url),
        "token_public_key_file": token_keys.public,
        "n_ctx": 1024,
        "n_threads": 2,
        "slots": 1,
        "queue_size": 1,
        "history_target": "127.0.0.1:9",
        "shutdown_drain_s": 0,
        "shutdown_grace_s": 0.5,
        **overrides,
    }
    return InferenceSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def inference_service(nats_server: Nats, token_keys: KeyPair) -> AsyncIterator[ServiceServer]:
    """Inference with one slot and a queue of one (history unreachable: Generate, Embed, Cancel only)."""
    app = await build(inference_settings(nats_server, token_keys))
    async with app:
        yield app


@pytest.fixture
async def reply_inference_service(
    nats_server: Nats, token_keys: KeyPair, service_keys: KeyPair, history_service: ServiceServer
) -> AsyncIterator[ServiceServer]:
    """Inference wired to the in-process history service (Reply reads as the caller, stores with its service token)."""
    settings = inference_settings(
        nats_server,
        token_keys,
        history_target=f"127.0.0.1:{history_service.port}",
        queue_size=4,
        service_token_private_key_file=service_keys.private,
        service_token_public_key_file=service_keys.public,
    )
    app = await build(settings)
    async with app:
        yield app
