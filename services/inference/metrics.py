"""Prometheus metrics of generation: speed, time to first token, queue, slots, KV cache reuse.

Created unregistered, then registered on the server's own registry (``RpcMetrics.registry``)
so they appear on the same /metrics endpoint as the RPC metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPS_BUCKETS = (1, 5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)


class InferenceMetrics:
    """The inference service's own metrics, by model."""

    def __init__(self) -> None:
        self.tokens_per_second = Histogram(
            "chatmesh_inference_tokens_per_second",
            "Decode speed of finished generations (completion tokens/s, first token to last).",
            ["model"],
            buckets=TPS_BUCKETS,
            registry=None,
        )
        self.time_to_first_token = Histogram(
            "chatmesh_inference_time_to_first_token_seconds",
            "From a request's arrival to its first token, queue wait included.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=None,
        )
        self.completion_tokens = Counter(
            "chatmesh_inference_completion_tokens_total", "Tokens generated.", ["model"], registry=None
        )
        self.prompt_tokens = Counter(
            "chatmesh_inference_prompt_tokens_total", "Prompt tokens, cached or not.", ["model"], registry=None
        )
        self.cached_prompt_tokens = Counter(
            "chatmesh_inference_cached_prompt_tokens_total",
            "Prompt tokens reused from KV state instead of processed.",
            ["model"],
            registry=None,
        )
        self.cache_hits = Counter(
            "chatmesh_inference_kv_cache_hits_total",
            "Generations that reused at least one prompt token of KV state.",
            ["model"],
            registry=None,
        )
        self.queue_depth = Gauge(
            "chatmesh_inference_queue_depth", "Requests waiting for a slot.", ["model"], registry=None
        )
        self.slots_busy = Gauge("chatmesh_inference_slots_busy", "Slots generating now.", ["model"], registry=None)
        self.rejected = Counter(
            "chatmesh_inference_rejected_total",
            "Requests refused because the queue was full.",
            ["model"],
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        """Expose every metric through ``registry``."""
        for metric in (
            self.tokens_per_second,
            self.time_to_first_token,
            self.completion_tokens,
            self.prompt_tokens,
            self.cached_prompt_tokens,
            self.cache_hits,
            self.queue_depth,
            self.slots_busy,
            self.rejected,
        ):
            registry.register(metric)
