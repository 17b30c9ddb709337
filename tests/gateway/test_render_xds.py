"""The bootstrap with an xDS control plane, retries of retry-safe methods, and the retry budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from betterproto2 import Casing

from gateway.envoy import Envoy
from gateway.render import render
from gateway.routes import RouteSpec
from gateway.settings import CircuitBreakers, GatewaySettings, HealthCheck, RetryPolicy, Upstream, XdsSource
from mesh.contracts import load_all, route_specs
from mesh.xds.resources import cluster
from mesh.xds.settings import XdsSettings

SEND = "/chatmesh.history.v1.HistoryService/SendMessage"
LIST = "/chatmesh.history.v1.HistoryService/ListMessages"
EDIT = "/chatmesh.history.v1.HistoryService/EditMessage"
CONNECT = "/chatmesh.session.v1.SessionService/Connect"


def mesh_routes() -> list[RouteSpec]:
    """The mesh's routes from its contracts, as the supervisor builds them (with retry_safe)."""
    return route_specs(load_all())


def routes_by_name(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {r["name"]: r for r in manager["route_config"]["virtual_hosts"][0]["routes"]}


def route_config(config: dict[str, Any]) -> dict[str, Any]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    result: dict[str, Any] = manager["route_config"]
    return result


def test_with_xds_the_service_clusters_come_from_ads_and_the_rest_stays_static() -> None:
    config = render(GatewaySettings(xds=XdsSource(port=18000)), mesh_routes())
    static = {c["name"] for c in config["static_resources"]["clusters"]}
    assert static == {"catalog", "xds_cluster"}
    dynamic = config["dynamic_resources"]
    assert dynamic["cds_config"]["ads"] == {}
    assert dynamic["ads_config"]["api_type"] == "GRPC"
    assert dynamic["ads_config"]["grpc_services"][0]["envoy_grpc"]["cluster_name"] == "xds_cluster"
    xds = next(c for c in config["static_resources"]["clusters"] if c["name"] == "xds_cluster")
    assert xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 18000,
    }
    assert "http2_protocol_options" in str(xds["typed_extension_protocol_options"])
    assert config["node"]["id"] == "chatmesh-gateway"
    # Routes name clusters that only CDS brings: Envoy must not refuse them at start.
    assert route_config(config)["validate_clusters"] is False
    assert routes_by_name(config)["chatmesh.history.v1"]["route"]["cluster"] == "history"


def test_without_xds_the_bootstrap_is_as_before() -> None:
    config = render(GatewaySettings(), mesh_routes())
    assert "dynamic_resources" not in config and "node" not in config
    assert {c["name"] for c in config["static_resources"]["clusters"]} == {
        "session",
        "history",
        "presence",
        "inference",
        "ingest",
        "forms",
        "catalog",
    }
    assert route_config(config)["validate_clusters"] is True


def test_envoy_accepts_the_xds_bootstrap(tmp_path: Path) -> None:
    Envoy(GatewaySettings(xds=XdsSource(port=18000)), mesh_routes(), tmp_path).prepare()  # raises if refused


def test_only_retry_safe_unary_methods_get_a_retry_policy() -> None:
    routes = routes_by_name(render(GatewaySettings(), mesh_routes()))
    policy = routes[SEND]["route"]["retry_policy"]
    assert policy["retry_on"] == "unavailable,reset,connect-failure,refused-stream"
    assert policy["num_retries"] == 2
    assert policy["per_try_timeout"] == "10s"
    assert policy["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    assert "retry_policy" in routes[LIST]["route"]  # NO_SIDE_EFFECTS
    assert EDIT not in routes  # not retry-safe: served by the package's prefix route...
    assert "retry_policy" not in routes["chatmesh.history.v1"]["route"]  # ...which never retries
    assert "retry_policy" not in routes[CONNECT]["route"]  # a stream
    retried = [name for name, r in routes.items() if "retry_policy" in r.get("route", {})]
    streams = {m for c in load_all() for m in c.server_streaming + c.client_streaming}
    assert retried and not set(retried) & streams


def test_retries_can_be_turned_off() -> None:
    routes = routes_by_name(render(GatewaySettings(retries=RetryPolicy(enabled=False)), mesh_routes()))
    assert all("retry_policy" not in r.get("route", {}) for r in routes.values())


def test_a_stream_listed_as_retry_safe_is_refused() -> None:
    with pytest.raises(ValueError, match="never retried"):
        RouteSpec(
            package="chatmesh.session.v1", cluster="session", streaming_methods=[CONNECT], retry_safe_methods=[CONNECT]
        )


def test_clusters_have_a_retry_budget() -> None:
    config = render(GatewaySettings(), mesh_routes())
    threshold = config["static_resources"]["clusters"][0]["circuit_breakers"]["thresholds"][0]
    assert threshold["retry_budget"] == {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3}
    fixed = render(GatewaySettings(circuit_breakers=CircuitBreakers(retry_budget_percent=None)), mesh_routes())
    assert "retry_budget" not in fixed["static_resources"]["clusters"][0]["circuit_breakers"]["thresholds"][0]


def test_a_cds_cluster_checks_and_limits_like_the_static_one() -> None:
    check = HealthCheck(interval_s=2.0, unhealthy_threshold=2)
    breakers = CircuitBreakers(max_requests=1000, retry_budget_percent=10.0)
    static = render(
        GatewaySettings(
            health_check=check,
            circuit_breakers=breakers,
            upstreams=[Upstream(name="history", port=50052, health_service="chatmesh.history.v1.HistoryService")],
        ),
        [],
    )["static_resources"]["clusters"][0]
    dynamic = cluster(
        XdsSettings(health_check=check, circuit_breakers=breakers), "history", "chatmesh.history.v1.HistoryService"
    ).to_dict(casing=Casing.SNAKE)
    assert dynamic["type"] == "EDS"
    assert dynamic["lb_policy"] == "LEAST_REQUEST"
    assert dynamic["health_checks"][0]["grpc_health_check"] == static["health_checks"][0]["grpc_health_check"]
    assert dynamic["health_checks"][0]["interval"] == static["health_checks"][0]["interval"] == "2s"
    assert dynamic["circuit_breakers"]["thresholds"][0]["max_requests"] == 1000
    assert dynamic["circuit_breakers"]["thresholds"][0]["retry_budget"]["budget_percent"]["value"] == 10.0
    assert dynamic["connect_timeout"] == static["connect_timeout"]
