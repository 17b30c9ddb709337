"""Channels to other chatmesh services, balanced over their replicas.

A peer's target is one address (``127.0.0.1:50052``) or, with several replicas, every
replica's (``ipv4:127.0.0.1:50052,127.0.0.1:41234``; on Kubernetes the Service's DNS name,
``dns:///history:50052``, resolves to its ready pods). The channel spreads calls round
robin over the replicas that gRPC health says are SERVING: a replica that starts draining
(NOT_SERVING before it stops) takes no new call from its peers, and one that is gone is
skipped until it answers again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

#: Round robin over the replicas whose health (the server's overall status, service "") is SERVING.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
    }
)


def peer_channel(target: str, options: Sequence[tuple[str, object]] = ()) -> grpc.aio.Channel:
    """An insecure channel to ``target`` (one address or several), balanced over its healthy replicas."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            *options,
        ],
    )
