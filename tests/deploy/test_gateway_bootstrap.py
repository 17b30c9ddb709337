"""The Kubernetes gateway's bootstrap (deploy/k8s/base/gateway/envoy.yaml) follows the contracts.

Every package of proto/chatmesh/*/v1 that declares a service routes to its cluster, its
streams get their own untimed routes, its internal methods never reach it; the clusters
come from the xDS control plane, which Envoy finds at the Service the manifests define; and
the file is what deploy/k8s/render_gateway.py renders today, which Envoy itself accepts.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.k8s import render_gateway
from gateway.envoy import find_envoy
from mesh.contracts import ServiceContract, load_all
from services.runtime.tokens import generate_key_pair
from tests.deploy import manifests

ROOT = manifests.ROOT


def committed() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(render_gateway.BOOTSTRAP.read_text(encoding="utf-8"))
    return config


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (network_filter,) = chain["filters"]
    hcm: dict[str, Any] = network_filter["typed_config"]
    return hcm


def routes_of(config: dict[str, Any]) -> list[dict[str, Any]]:
    (host,) = _hcm(config)["route_config"]["virtual_hosts"]
    routes: list[dict[str, Any]] = host["routes"]
    return routes


def _route_for(routes: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The first route Envoy would pick for a POST to ``path``."""
    for route in routes:
        match = route["match"]
        if match.get("path") == path or ("prefix" in match and path.startswith(match["prefix"])):
            if any(h["name"] == ":method" for h in match.get("headers", [])):
                continue  # the static site's GET/HEAD route: gRPC is POST
            return route
    raise AssertionError(f"no route for {path}")


def _proto_packages_with_services() -> set[str]:
    packages = set()
    for proto in (ROOT / "proto" / "chatmesh").glob("*/v1/*.proto"):
        text = proto.read_text(encoding="utf-8")
        if re.search(r"^service \w+", text, re.MULTILINE):
            (package,) = re.findall(r"^package ([\w.]+);", text, re.MULTILINE)
            packages.add(package)
    return packages


def test_committed_bootstrap_is_what_render_gateway_renders() -> None:
    assert render_gateway.BOOTSTRAP.read_text(encoding="utf-8") == render_gateway.bootstrap_text(), (
        "deploy/k8s/base/gateway/envoy.yaml is stale: run `make kube-gateway-config` and commit it"
    )


def test_every_contract_package_routes_to_its_cluster() -> None:
    contracts = load_all()
    assert {c.package for c in contracts} == _proto_packages_with_services()
    routes = routes_of(committed())
    for c in contracts:
        prefix = [r for r in routes if r["match"].get("prefix") == f"/{c.package}."]
        assert len(prefix) == 1, c.package
        assert prefix[0]["route"]["cluster"] == c.name


def _every_method(contract: ServiceContract) -> list[str]:
    module = __import__(f"chatmesh.{contract.name}.v1.{contract.name}_pb2", fromlist=["DESCRIPTOR"])
    (service,) = module.DESCRIPTOR.services_by_name.values()
    return [f"/{service.full_name}/{m.name}" for m in service.methods]


@pytest.mark.parametrize("contract", load_all(), ids=lambda c: c.name)
def test_every_method_reaches_its_service_or_is_refused_at_the_edge(contract: ServiceContract) -> None:
    routes = routes_of(committed())
    for path in _every_method(contract):
        route = _route_for(routes, path)
        if path in contract.internal:
            assert "route" not in route and "direct_response" in route, path
            continue
        assert route["route"]["cluster"] == contract.name, path
        streams = path in contract.server_streaming or path in contract.client_streaming
        assert (route["route"]["timeout"] == "0s") is streams, path


def test_service_clusters_come_from_the_control_plane_over_ads() -> None:
    config = committed()
    contracts = {c.name for c in load_all()}
    static = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert set(static) == {"catalog", "web", render_gateway.XDS_CLUSTER}
    ads = config["dynamic_resources"]
    assert ads["cds_config"] == {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    assert ads["ads_config"]["api_type"] == "GRPC"
    assert ads["ads_config"]["grpc_services"] == [{"envoy_grpc": {"cluster_name": render_gateway.XDS_CLUSTER}}]
    routed = {r["route"]["cluster"] for r in routes_of(config) if "route" in r}
    assert routed <= set(static) | contracts
    assert contracts <= routed
    # The routes name clusters CDS brings later: Envoy must not refuse them at load.
    assert _hcm(config)["route_config"]["validate_clusters"] is False


def _endpoint(cluster: dict[str, Any]) -> tuple[str, int]:
    (locality,) = cluster["load_assignment"]["endpoints"]
    (lb,) = locality["lb_endpoints"]
    address = lb["endpoint"]["address"]["socket_address"]
    return str(address["address"]), int(address["port_value"])


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_static_clusters_and_the_listener_match_the_manifests(overlay: str) -> None:
    objs = manifests.render(overlay)
    config = committed()
    for cluster in config["static_resources"]["clusters"]:
        host, port = _endpoint(cluster)
        service = manifests.find(objs, "Service", host)
        assert port in [p["port"] for p in service["spec"]["ports"]], cluster["name"]
    (listener,) = config["static_resources"]["listeners"]
    gateway = manifests.find(objs, "Deployment", "chatmesh-gateway")
    (container,) = manifests.pod_spec(gateway)["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [listener["address"]["socket_address"]["port_value"]]
    assert container["command"] == ["envoy"]
    assert container["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in manifests.pod_spec(gateway)["volumes"]}
    assert mounts["bootstrap"] == "/etc/envoy"
    assert volumes["bootstrap"]["configMap"]["name"].startswith("chatmesh-gateway-bootstrap-")  # hashed: rolls
    bootstrap = manifests.find(objs, "ConfigMap", volumes["bootstrap"]["configMap"]["name"])
    assert yaml.safe_load(bootstrap["data"]["envoy.yaml"]) == config
    assert mounts["jwks"] == str(Path(render_gateway.JWKS_FILE).parent)
    # Admin stays on loopback: nothing in the cluster can reach it.
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_envoy_accepts_the_bootstrap_with_the_jwks_render_gateway_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_key_pair(tmp_path / "a.pem", tmp_path / "a.pub.pem")
    generate_key_pair(tmp_path / "s.pem", tmp_path / "s.pub.pem")
    jwks = tmp_path / "jwks.json"
    assert render_gateway.main(["--jwks", str(tmp_path / "a.pub.pem"), str(tmp_path / "s.pub.pem")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [key["kid"] for key in printed["keys"]] == ["access", "service"]
    jwks.write_text(json.dumps(printed), encoding="utf-8")
    text = render_gateway.BOOTSTRAP.read_text(encoding="utf-8")
    assert render_gateway.JWKS_FILE in text
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(text.replace(render_gateway.JWKS_FILE, str(jwks)), encoding="utf-8")
    out = subprocess.run(  # noqa: S603 - envoy from the venv, our file
        [
            str(find_envoy()),
            "--mode",
            "validate",
            "-c",
            str(config_file),
            "--service-node",
            "test",
            "--service-cluster",
            "chatmesh-gateway",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
