"""Envoy's resources from the live replicas: clusters (CDS) and their endpoints (EDS).

Each cluster is the gateway's gRPC cluster (:func:`gateway.render.grpc_cluster_base`:
HTTP/2, gRPC health checks, circuit breakers, retry budget) of type EDS over ADS. Each
endpoint is a replica: SERVING is HEALTHY, DRAINING is DRAINING (Envoy sends it no new
call and lets the ones in flight finish), grouped by zone into localities.

Resources are typed messages of ``envoy-data-plane`` (betterproto2), built from the same
JSON-shaped dicts the bootstrap renderer writes and checked by their types as they are
built; a :class:`Snapshot` holds them packed as ``Any`` with a version per resource type
that is a hash of their content, so an unchanged set is never pushed twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.render import grpc_cluster_base
from mesh.xds.envoy_types import AnyMessage, Cluster, ClusterLoadAssignment, OutlierDetection
from mesh.xds.settings import XdsSettings
from services.runtime.registry import ReplicaRecord

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

_HEALTH = {"SERVING": "HEALTHY", "DRAINING": "DRAINING"}


def health_service_of(name: str) -> str:
    """The full service name a cluster's gRPC health check asks about ("" for a service without a contract)."""
    from mesh.contracts import SERVICES, load

    return load(name).full_name if name in SERVICES else ""


def cluster(settings: XdsSettings, name: str, health_service: str) -> Cluster:
    """The CDS cluster of one service: its endpoints come from EDS over the same ADS stream."""
    base = grpc_cluster_base(
        name,
        health_service,
        health_check=settings.health_check,
        circuit_breakers=settings.circuit_breakers,
        connect_timeout_s=settings.connect_timeout_s,
        lb_policy=settings.lb_policy,
    )
    base["type"] = "EDS"
    base["eds_cluster_config"] = {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
    # A replica gone from EDS leaves at once, not after failing health checks (a stopped
    # replica's port may belong to a new process by then).
    base["ignore_health_on_host_removal"] = True
    # Envoy merges host health changes for up to 1 s (its default) before the worker threads
    # see them: a new replica that passed its first health check would wait for that.
    base["common_lb_config"]["update_merge_window"] = "0s"
    # betterproto2's from_dict misreads field names with digits ("consecutive_5xx"): set those after.
    outlier = dict(base.pop("outlier_detection", {}))
    digits = {key: outlier.pop(key) for key in list(outlier) if any(ch.isdigit() for ch in key)}
    built = Cluster.from_dict(base)
    if outlier or digits:
        built.outlier_detection = OutlierDetection.from_dict(outlier)
        for key, value in digits.items():
            setattr(built.outlier_detection, key, value)
    return built


def load_assignment(name: str, replicas: Iterable[ReplicaRecord]) -> ClusterLoadAssignment:
    """The EDS resource of one cluster: its replicas by zone, SERVING as HEALTHY, DRAINING as DRAINING."""
    zones: dict[str, list[dict[str, Any]]] = {}
    for replica in sorted(replicas, key=lambda r: (r.zone, r.replica)):
        zones.setdefault(replica.zone, []).append(
            {
                "endpoint": {
                    "address": {"socket_address": {"address": replica.host, "port_value": replica.port}},
                    "hostname": replica.replica,
                },
                "health_status": _HEALTH[replica.health],
            }
        )
    return ClusterLoadAssignment.from_dict(
        {
            "cluster_name": name,
            "endpoints": [{"locality": {"zone": zone}, "lb_endpoints": hosts} for zone, hosts in zones.items()],
        }
    )


def _version(resources: Iterable[AnyMessage]) -> str:
    digest = hashlib.sha256()
    for resource in resources:
        digest.update(bytes(resource))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Snapshot:
    """Every resource the control plane serves at one moment, packed, by type and name."""

    clusters: dict[str, AnyMessage] = field(default_factory=dict)
    endpoints: dict[str, AnyMessage] = field(default_factory=dict)

    def resources(self, type_url: str, names: Iterable[str] = ()) -> list[AnyMessage]:
        """The resources of ``type_url`` named in ``names`` (all of them when empty), by name."""
        table = self.clusters if type_url == CLUSTER_TYPE else self.endpoints if type_url == ENDPOINT_TYPE else {}
        wanted = sorted(set(names)) or sorted(table)
        return [table[n] for n in wanted if n in table]

    def version(self, type_url: str, names: Iterable[str] = ()) -> str:
        """A hash of what :meth:`resources` returns: equal versions, equal content."""
        return _version(self.resources(type_url, names))


def build_snapshot(
    settings: XdsSettings, clusters: Mapping[str, str], replicas: Mapping[str, list[ReplicaRecord]]
) -> Snapshot:
    """The snapshot of ``clusters`` (name -> health service) with the live ``replicas`` by service.

    Replicas of a service without a cluster are left out: the gateway has no route to them.
    """
    return Snapshot(
        clusters={n: AnyMessage.pack(cluster(settings, n, h)) for n, h in clusters.items()},
        endpoints={n: AnyMessage.pack(load_assignment(n, replicas.get(n, []))) for n in clusters},
    )
