"""Render the Kubernetes gateway's Envoy bootstrap (deploy/k8s/base/gateway/envoy.yaml).

The listener, filters and routes are ``gateway.render``'s, from the same typed settings and
the same contracts as ``make up``: every package in proto/chatmesh/*/v1 gets its routes to
the cluster named after its service. What differs on Kubernetes:

- the six service clusters are not in the file: they come from the xDS control plane over
  ADS (``dynamic_resources``), whose only static way in is ``xds_cluster`` (Service
  ``chatmesh-xds:18000``); the routes name clusters Envoy learns later, so the route table
  does not ask for them at load (``validate_clusters: false``);
- a new Envoy opens its listener only once the control plane has sent the clusters
  (``initial_fetch_timeout: 0s``), which is what its readiness probe sees;
- the catalog and the browser client's static site stay static STRICT_DNS clusters (one
  Service each, no per-pod balancing needed);
- edge JWT verification reads its JWKS from a file (ConfigMap ``chatmesh-gateway-jwks``), not
  from keys inlined at render time, so one rendered file serves every cluster's keys.

``python -m deploy.k8s.render_gateway`` rewrites the committed file;
``python -m deploy.k8s.render_gateway --jwks ACCESS.pub.pem SERVICE.pub.pem`` prints the JWKS
for the ConfigMap. tests/deploy/test_gateway_bootstrap.py fails when the committed file is not
what this renders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gateway.edge import jwks
from gateway.render import render
from gateway.routes import RouteSpec
from gateway.settings import EdgeAuth, GatewaySettings, StaticSite, Upstream
from mesh.contracts import ServiceContract, load_all, route_specs
from services.runtime.tokens import generate_key_pair

HERE = Path(__file__).resolve().parent
BOOTSTRAP = HERE / "base" / "gateway" / "envoy.yaml"

#: The gRPC port of each service's Deployment and Service (base/services/*.yaml): the services' defaults.
SERVICE_PORTS = {
    "session": 50051,
    "history": 50052,
    "presence": 50053,
    "inference": 50054,
    "ingest": 50055,
    "forms": 50056,
}
CATALOG_PORT = 50050
WEB_PORT = 8000
GATEWAY_PORT = 8080
ADMIN_PORT = 9901
XDS_CLUSTER = "xds_cluster"
XDS_SERVICE = "chatmesh-xds"
XDS_PORT = 18000
JWKS_FILE = "/etc/chatmesh/jwks/jwks.json"
INGEST_MAX_REQUEST_BYTES = 8 * 1024 * 1024

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def service_host(name: str) -> str:
    """The Kubernetes Service of a mesh component (``chatmesh-history``)."""
    return f"chatmesh-{name}"


def gateway_settings(contracts: list[ServiceContract], key_dir: Path) -> GatewaySettings:
    """The gateway's settings on Kubernetes (``key_dir``: throwaway public keys to render with)."""
    return GatewaySettings(
        host="0.0.0.0",  # noqa: S104 - the pod's listener; the NetworkPolicy and the Service decide who reaches it
        port=GATEWAY_PORT,
        admin_port=ADMIN_PORT,
        upstreams=[
            Upstream(
                name=c.name,
                host=service_host(c.name),
                port=SERVICE_PORTS[c.name],
                package=c.package,
                health_service=c.full_name,
            )
            for c in contracts
        ],
        catalog=Upstream(name="catalog", host=service_host("catalog"), port=CATALOG_PORT, health_service=""),
        web=StaticSite(name="web", host=service_host("web"), port=WEB_PORT),
        access_log_path=None,  # stdout: the container log
        max_request_bytes_overrides={"chatmesh.ingest.v1": INGEST_MAX_REQUEST_BYTES},
        edge_auth=EdgeAuth(
            enabled=True,
            access_token_public_key_file=key_dir / "access_token.pub.pem",
            service_token_public_key_file=key_dir / "service_token.pub.pem",
        ),
    )


def routes(contracts: list[ServiceContract]) -> list[RouteSpec]:
    """One RouteSpec per contract package, as the local supervisor builds them."""
    return route_specs(contracts)


def _xds_cluster() -> dict[str, Any]:
    return {
        "name": XDS_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": XDS_SERVICE, "port_value": XDS_PORT}}}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                # ADS is one long gRPC stream: pings notice a control plane that went away silently.
                "explicit_http_config": {
                    "http2_protocol_options": {"connection_keepalive": {"interval": "30s", "timeout": "5s"}}
                },
            }
        },
    }


def bootstrap() -> dict[str, Any]:
    """The bootstrap: gateway.render's listener and routes, service clusters over ADS."""
    contracts = load_all()
    with tempfile.TemporaryDirectory() as tmp:
        key_dir = Path(tmp)
        generate_key_pair(key_dir / "access_token.pem", key_dir / "access_token.pub.pem")
        generate_key_pair(key_dir / "service_token.pem", key_dir / "service_token.pub.pem")
        config = render(gateway_settings(contracts, key_dir), routes(contracts))
    dynamic = {c.name for c in contracts}
    static = config["static_resources"]
    static["clusters"] = [c for c in static["clusters"] if c["name"] not in dynamic] + [_xds_cluster()]
    for listener in static["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                hcm = network_filter["typed_config"]
                hcm["route_config"]["validate_clusters"] = False
                for http_filter in hcm["http_filters"]:
                    for provider in http_filter["typed_config"].get("providers", {}).values():
                        provider["local_jwks"] = {"filename": JWKS_FILE}
    config["dynamic_resources"] = {
        "ads_config": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "set_node_on_first_message_only": True,
            "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
        },
        # No timeout on the first CDS answer: until the control plane has named the service
        # clusters, Envoy's init does not finish and its listener stays closed, so a new gateway
        # pod never turns ready (TCP probe) and takes traffic it could only fail. Once it has
        # them, a control plane outage changes nothing: Envoy keeps the last configuration.
        "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
    }
    return config


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER = "# Rendered by `python -m deploy.k8s.render_gateway` (make kube-gateway-config): do not edit by hand.\n"


def bootstrap_text() -> str:
    """The bootstrap as the committed YAML file's text."""
    return HEADER + yaml.dump(bootstrap(), Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    """Write the bootstrap, or print the JWKS of two public keys."""
    parser = argparse.ArgumentParser(prog="python -m deploy.k8s.render_gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--jwks", nargs=2, type=Path, metavar=("ACCESS_PUB", "SERVICE_PUB"), help="print the JWKS")
    parser.add_argument("--output", type=Path, default=BOOTSTRAP, help="bootstrap file to write")
    args = parser.parse_args(argv)
    if args.jwks:
        auth = EdgeAuth(access_token_public_key_file=args.jwks[0], service_token_public_key_file=args.jwks[1])
        print(json.dumps(jwks(auth)))
        return 0
    args.output.write_text(bootstrap_text(), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
