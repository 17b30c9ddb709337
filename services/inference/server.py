"""Wiring of the inference service: settings -> models, engine, history, NATS, servicer, server."""

from __future__ import annotations

from chatmesh.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference.engine import GenerationEngine
from services.inference.history_client import HistoryClient
from services.inference.ingest_client import IngestSearch
from services.inference.live import LiveTokens
from services.inference.metrics import InferenceMetrics
from services.inference.models import ModelRegistry
from services.inference.reply import Grounding, ReplyRunner
from services.inference.servicer import InferenceServicer
from services.inference.settings import InferenceSettings
from services.inference.streams import KV_BUCKETS, STREAMS
from services.runtime.bus import connect, ensure_kv, ensure_stream
from services.runtime.server import ServiceBinding, ServiceServer, create_server, run
from services.runtime.tokens import ServiceTokenSigner

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def service_signer(settings: InferenceSettings) -> ServiceTokenSigner | None:
    """Inference's own service-token signer (``sub`` = "inference"), when it has the key."""
    if settings.service_token_private_key_file is None:
        return None
    return ServiceTokenSigner.from_file(
        settings.service_token_private_key_file, settings.token_issuer, "inference", settings.service_token_ttl_s
    )


async def build(settings: InferenceSettings) -> ServiceServer:
    """Read the models' metadata, connect to NATS and history, and build the server."""
    registry = await ModelRegistry.load(settings)
    nc = await connect(settings.nats, "inference")
    js = nc.jetstream()
    for stream in STREAMS:
        await ensure_stream(js, stream)
    for bucket in KV_BUCKETS:
        await ensure_kv(js, bucket)
    metrics = InferenceMetrics()
    engine = GenerationEngine(metrics)
    history = HistoryClient(
        settings.history_target, settings.history_timeout_s, settings.history_page_size, service_signer(settings)
    )
    search = IngestSearch(settings.ingest_target, settings.ingest_timeout_s)
    grounding = Grounding(
        search, settings.grounding_passages, settings.grounding_min_score, settings.grounding_passage_chars
    )
    replies = ReplyRunner(engine, registry, history, LiveTokens(nc), settings.system_prompt, grounding)
    app = create_server(
        "inference",
        settings,
        [ServiceBinding(SERVICE_NAME, inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                        InferenceServicer(registry, engine, replies),
                        finishing_methods=(f"/{SERVICE_NAME}/Generate", f"/{SERVICE_NAME}/Reply"))],
    )  # fmt: skip
    metrics.register(app.metrics.registry)

    async def stop_models() -> None:
        engine.draining = True
        registry.close()

    app.on_stop.append(nc.drain)
    app.on_stop.append(history.close)
    app.on_stop.append(search.close)
    app.on_stop.append(stop_models)
    return app


def main() -> None:
    """Run the inference service until SIGTERM."""
    run("inference", InferenceSettings, build)
