"""Prometheus metrics: per-RPC count and latency, served on the metrics port.

Each server owns its own registry so several servers can live in one process (tests).
"""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

# Buckets from 0.25 ms to 60 s: loopback unary calls sit well under a millisecond,
# streams and inference last seconds to minutes.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class RpcMetrics:
    """Counters and histograms of one server."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._service = service
        self._calls = Counter(
            "chatmesh_rpc_total",
            "RPCs finished, by method and status code.",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "chatmesh_rpc_duration_seconds",
            "RPC duration from the first byte in to the status out.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Record one finished call."""
        children = self._children.get((method, code))
        if children is None:  # labels() validates and locks on every call: once per method and code
            children = self._children[(method, code)] = (
                self._calls.labels(self._service, method, code.name),
                self._latency.labels(self._service, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics on ``host:port`` (0: a free port); return the port."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        """Stop the /metrics endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
