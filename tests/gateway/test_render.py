"""The rendered Envoy bootstrap: routes, timeouts, CORS, limits; and Envoy's own verdict on it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.envoy import Envoy
from gateway.errors import InvalidEnvoyConfigError
from gateway.render import render, write_config
from gateway.routes import RouteSpec
from gateway.settings import ClientBucket, ClientRateLimits, EdgeAuth, GatewaySettings, RateLimit, StaticSite, Upstream
from services.runtime.tokens import generate_key_pair, load_public_key

JWT_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig"
CONNECT = "/chatmesh.session.v1.SessionService/Connect"
STREAM_UPSERT = "/chatmesh.ingest.v1.IngestService/StreamUpsert"
WATCH_JOB = "/chatmesh.ingest.v1.IngestService/WatchJob"
LOGIN = "/chatmesh.session.v1.SessionService/Login"
GET_FORM = "/chatmesh.forms.v1.FormsService/GetForm"
APPEND_ASSISTANT = "/chatmesh.history.v1.HistoryService/AppendAssistantMessage"
MESH_ROUTES = [
    RouteSpec(package="chatmesh.session.v1", cluster="session", streaming_methods=[CONNECT], public_methods=[LOGIN]),
    RouteSpec(package="chatmesh.forms.v1", cluster="forms", optional_auth_methods=[GET_FORM]),
    RouteSpec(package="chatmesh.history.v1", cluster="history", internal_methods=[APPEND_ASSISTANT]),
    RouteSpec(
        package="chatmesh.ingest.v1",
        cluster="ingest",
        streaming_methods=[WATCH_JOB],
        client_streaming_methods=[STREAM_UPSERT],
    ),
]


def edge_auth(home: Path, *, service_key: bool = True) -> EdgeAuth:
    """Edge auth with fresh key pairs written under ``home``."""
    generate_key_pair(home / "access.pem", home / "access.pub.pem")
    generate_key_pair(home / "service.pem", home / "service.pub.pem")
    return EdgeAuth(
        access_token_public_key_file=home / "access.pub.pem",
        service_token_public_key_file=home / "service.pub.pem" if service_key else None,
    )


def connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    manager: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def virtual_host(config: dict[str, Any]) -> dict[str, Any]:
    host: dict[str, Any] = connection_manager(config)["route_config"]["virtual_hosts"][0]
    return host


def routes_by_name(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {route["name"]: route for route in virtual_host(config)["routes"]}


def route_names(config: dict[str, Any]) -> list[str]:
    return [route["name"] for route in virtual_host(config)["routes"]]


def bucket(route: dict[str, Any]) -> dict[str, Any]:
    limit: dict[str, Any] = route["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    return limit


def test_every_package_has_a_prefix_route_to_its_upstream() -> None:
    config = render(GatewaySettings(), MESH_ROUTES)

    routes = routes_by_name(config)
    for upstream in GatewaySettings().upstreams:
        route = routes[upstream.package]
        assert route["match"] == {"prefix": f"/{upstream.package}."}
        assert route["route"]["cluster"] == upstream.name


def test_reflection_and_health_go_to_the_catalog() -> None:
    routes = routes_by_name(render(GatewaySettings(), []))

    assert routes["grpc.reflection"]["match"] == {"prefix": "/grpc.reflection."}
    assert routes["grpc.reflection"]["route"]["cluster"] == "catalog"
    assert routes["grpc.health.v1"]["route"]["cluster"] == "catalog"
    for version in ("v1", "v1alpha"):
        info = routes[f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"]
        assert info["route"]["cluster"] == "catalog"
        assert info["route"]["timeout"] == "0s"


def test_streaming_methods_come_before_prefix_routes_without_a_total_timeout() -> None:
    config = render(GatewaySettings(stream_idle_timeout_s=120), MESH_ROUTES)

    names = route_names(config)
    last_exact = max(i for i, n in enumerate(names) if n.startswith("/"))
    first_prefix = min(i for i, n in enumerate(names) if not n.startswith("/"))
    assert last_exact < first_prefix
    connect = routes_by_name(config)[CONNECT]
    assert connect["match"] == {"path": CONNECT}
    assert connect["route"]["timeout"] == "0s"
    assert connect["route"]["idle_timeout"] == "120s"
    assert "max_stream_duration" not in connect["route"]["max_stream_duration"]


def test_unary_routes_end_at_the_unary_timeout_or_the_client_deadline() -> None:
    route = routes_by_name(render(GatewaySettings(unary_timeout_s=2.5), MESH_ROUTES))["chatmesh.session.v1"]

    assert route["route"]["timeout"] == "2.500s"
    assert route["route"]["max_stream_duration"] == {
        "max_stream_duration": "2.500s",
        "grpc_timeout_header_max": "2.500s",
    }


def test_nested_package_prefix_is_tried_before_its_parent() -> None:
    settings = GatewaySettings(
        upstreams=[
            Upstream(name="session", port=1, package="chatmesh.session.v1"),
            Upstream(name="admin", port=2, package="chatmesh.session.v1.admin"),
        ]
    )
    names = route_names(render(settings, []))

    assert names.index("chatmesh.session.v1.admin") < names.index("chatmesh.session.v1")


def test_only_client_streams_skip_the_request_size_limit() -> None:
    config = render(GatewaySettings(max_request_bytes=4096), MESH_ROUTES)

    filters = {f["name"]: f["typed_config"] for f in connection_manager(config)["http_filters"]}
    assert filters["envoy.filters.http.buffer"]["max_request_bytes"] == 4096
    routes = routes_by_name(config)
    upsert = routes[STREAM_UPSERT]["typed_per_filter_config"]
    assert upsert["envoy.filters.http.buffer"]["disabled"] is True
    for name in (WATCH_JOB, CONNECT, "chatmesh.ingest.v1"):
        assert "envoy.filters.http.buffer" not in routes[name]["typed_per_filter_config"]


def test_filters_run_grpc_web_cors_jwt_rate_limits_buffer_frame_check_router_in_that_order(tmp_path: Path) -> None:
    without = [f["name"] for f in connection_manager(render(GatewaySettings(), []))["http_filters"]]
    edge = GatewaySettings(edge_auth=edge_auth(tmp_path))
    with_auth = [f["name"] for f in connection_manager(render(edge, []))["http_filters"]]

    assert with_auth == [
        "envoy.filters.http.grpc_web",
        "envoy.filters.http.cors",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.local_ratelimit",
        "chatmesh.client_ratelimit",
        "envoy.filters.http.buffer",
        "envoy.filters.http.lua",
        "envoy.filters.http.router",
    ]
    assert without == [f for f in with_auth if f != "envoy.filters.http.jwt_authn"]


def test_cors_allows_exactly_the_configured_origins() -> None:
    origins = ["https://chat.example", "http://localhost:5173"]
    config = render(GatewaySettings(cors_allowed_origins=origins), [])

    policy = virtual_host(config)["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == [{"exact": o} for o in origins]
    assert policy["allow_methods"] == "GET, PUT, DELETE, POST, OPTIONS"
    assert {"x-grpc-web", "authorization", "grpc-timeout", "connect-protocol-version"} <= set(
        policy["allow_headers"].split(",")
    )
    assert policy["expose_headers"] == "grpc-status,grpc-message,grpc-status-details-bin,retry-after-ms"


def test_default_origins_are_the_local_web_client() -> None:
    assert GatewaySettings().cors_allowed_origins == [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://127.0.0.1:5173",
        "http://localhost:5173",
    ]


def test_every_route_has_the_default_bucket_unless_overridden() -> None:
    settings = GatewaySettings(
        rate_limit=RateLimit(max_tokens=100, tokens_per_fill=50, fill_interval_s=0.5),
        rate_limit_overrides={
            "chatmesh.ingest.v1": RateLimit(max_tokens=10, tokens_per_fill=10),
            STREAM_UPSERT: RateLimit(max_tokens=2, tokens_per_fill=1, fill_interval_s=60),
            "chatmesh.forms.v1": RateLimit(enabled=False),
        },
    )
    routes = routes_by_name(render(settings, MESH_ROUTES))

    assert bucket(routes["chatmesh.session.v1"])["token_bucket"] == {
        "max_tokens": 100,
        "tokens_per_fill": 50,
        "fill_interval": "0.500s",
    }
    assert bucket(routes["chatmesh.ingest.v1"])["token_bucket"]["max_tokens"] == 10
    # A method route falls back to its package's override.
    assert bucket(routes[WATCH_JOB])["token_bucket"]["max_tokens"] == 10
    assert bucket(routes[STREAM_UPSERT])["token_bucket"] == {
        "max_tokens": 2,
        "tokens_per_fill": 1,
        "fill_interval": "60s",
    }
    assert "typed_per_filter_config" not in routes["chatmesh.forms.v1"]
    # The forms package's override covers its method routes; an internal method's route forwards nothing.
    limited = {n: r for n, r in routes.items() if "forms" not in n and "direct_response" not in r}
    assert all(bucket(r)["rate_limited_as_resource_exhausted"] for r in limited.values())


def test_an_override_that_names_no_route_is_refused() -> None:
    settings = GatewaySettings(rate_limit_overrides={"chatmesh.sesion.v1": RateLimit()})

    with pytest.raises(ValueError, match="chatmesh.sesion.v1"):
        render(settings, [])


def test_a_route_to_an_unknown_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="nowhere"):
        render(GatewaySettings(), [RouteSpec(package="chatmesh.session.v1", cluster="nowhere")])


def test_a_streaming_method_outside_its_package_is_refused() -> None:
    with pytest.raises(ValueError, match="not a method path"):
        RouteSpec(package="chatmesh.history.v1", cluster="history", streaming_methods=[CONNECT])


def test_clusters_speak_http2_and_check_grpc_health_by_service_name() -> None:
    settings = GatewaySettings(connect_timeout_s=0.25)
    clusters = {c["name"]: c for c in render(settings, [])["static_resources"]["clusters"]}

    assert set(clusters) == {u.name for u in settings.upstreams} | {"catalog"}
    session = clusters["session"]
    assert session["type"] == "STATIC"
    assert session["connect_timeout"] == "0.250s"
    options = session["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    assert session["health_checks"][0]["grpc_health_check"] == {"service_name": "chatmesh.session.v1.SessionService"}
    assert session["circuit_breakers"]["thresholds"][0]["max_requests"] == 65_536


def test_a_named_upstream_host_makes_a_dns_cluster() -> None:
    settings = GatewaySettings(upstreams=[Upstream(name="session", host="localhost", port=1)])
    clusters = {c["name"]: c for c in render(settings, [])["static_resources"]["clusters"]}

    assert clusters["session"]["type"] == "STRICT_DNS"


def test_admin_listens_on_loopback_only() -> None:
    config = render(GatewaySettings(host="0.0.0.0", admin_port=9999), [])

    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9999}


def router_config(config: dict[str, Any]) -> dict[str, Any]:
    router: dict[str, Any] = connection_manager(config)["http_filters"][-1]["typed_config"]
    return router


def test_access_logs_are_json_and_never_log_authorization(tmp_path: Path) -> None:
    to_file = render(GatewaySettings(access_log_path=tmp_path / "a.log"), [])
    to_stdout = render(GatewaySettings(), [])

    for config in (to_file, to_stdout):
        loggers = connection_manager(config)["access_log"] + router_config(config)["upstream_log"]
        assert len(loggers) == 2
        for logger in loggers:
            fields = logger["typed_config"]["log_format"]["json_format"]
            assert {"method", "path", "grpc_status", "duration_ms", "request_bytes", "response_bytes"} <= fields.keys()
            assert "authorization" not in json.dumps(fields).lower()
    assert connection_manager(to_file)["access_log"][0]["typed_config"]["path"] == str(tmp_path / "a.log")
    assert router_config(to_stdout)["upstream_log"][0]["name"] == "envoy.access_loggers.stdout"


def test_no_access_log_when_disabled() -> None:
    config = render(GatewaySettings(access_log_enabled=False), [])

    assert connection_manager(config)["access_log"] == []
    assert router_config(config)["upstream_log"] == []


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATMESH_GATEWAY_PORT", "18080")
    monkeypatch.setenv("CHATMESH_GATEWAY_HEALTH_CHECK__INTERVAL_S", "2")
    monkeypatch.setenv("CHATMESH_GATEWAY_CORS_ALLOWED_ORIGINS", '["https://chat.example"]')

    settings = GatewaySettings()

    assert settings.port == 18080
    assert settings.health_check.interval_s == 2
    assert settings.cors_allowed_origins == ["https://chat.example"]


def test_bad_settings_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="max_request_bytes"):
        GatewaySettings(max_request_bytes=0)
    with pytest.raises(ValueError, match="host"):
        GatewaySettings(host="gateway.local")
    with pytest.raises(ValueError, match="unique"):
        GatewaySettings(upstreams=[Upstream(name="catalog", port=1)])


def test_written_yaml_reads_back_as_the_rendered_config(tmp_path: Path) -> None:
    settings = GatewaySettings()
    path = write_config(settings, MESH_ROUTES, tmp_path / "conf" / "envoy.yaml")

    text = path.read_text()
    assert "&id" not in text  # no YAML anchors: the file reads plainly
    assert yaml.safe_load(text) == render(settings, MESH_ROUTES)


def test_envoy_validates_the_rendered_config(tmp_path: Path) -> None:
    settings = GatewaySettings(rate_limit_overrides={STREAM_UPSERT: RateLimit(max_tokens=1)})
    envoy = Envoy(settings, MESH_ROUTES, tmp_path)

    envoy.prepare()  # runs envoy --mode validate; raises if Envoy refuses

    assert envoy.config_path.is_file()


def test_a_config_envoy_refuses_raises_with_envoys_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write_bad(settings: GatewaySettings, routes: list[RouteSpec], path: Path) -> Path:
        path.write_text("static_resources:\n  clusters:\n  - name: x\n    no_such_field: 1\n")
        return path

    monkeypatch.setattr("gateway.envoy.write_config", write_bad)

    with pytest.raises(InvalidEnvoyConfigError, match="no_such_field") as refused:
        Envoy(GatewaySettings(), [], tmp_path).prepare()
    assert "\n" not in str(refused.value)


def test_the_static_site_route_comes_after_every_grpc_route_and_takes_only_get_and_head() -> None:
    config = render(GatewaySettings(web=StaticSite(port=8090)), MESH_ROUTES)

    names = route_names(config)
    assert names[-1] == "web"
    web = routes_by_name(config)["web"]
    assert web["match"]["prefix"] == "/"
    assert web["match"]["headers"] == [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}]
    assert web["route"]["cluster"] == "web"
    assert bucket(web)["token_bucket"]["max_tokens"] == GatewaySettings().rate_limit.max_tokens


def test_without_a_static_site_there_is_no_catch_all_route_nor_cluster() -> None:
    config = render(GatewaySettings(), MESH_ROUTES)

    assert "web" not in route_names(config)
    assert "web" not in {c["name"] for c in config["static_resources"]["clusters"]}


def test_the_static_cluster_speaks_http1_and_checks_its_health_path() -> None:
    config = render(GatewaySettings(web=StaticSite(port=8090, health_path="/up")), [])
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

    web = clusters["web"]
    assert "typed_extension_protocol_options" not in web  # HTTP/1.1 upstream
    endpoint = web["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8090}
    assert web["health_checks"][0]["http_health_check"] == {"path": "/up"}


def test_a_static_site_named_like_an_upstream_is_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        GatewaySettings(web=StaticSite(name="session", port=8090))


def test_the_static_route_takes_a_rate_limit_override() -> None:
    settings = GatewaySettings(web=StaticSite(port=8090), rate_limit_overrides={"web": RateLimit(max_tokens=7)})

    assert bucket(routes_by_name(render(settings, []))["web"])["token_bucket"]["max_tokens"] == 7


def test_envoy_validates_the_rendered_config_with_a_static_site(tmp_path: Path) -> None:
    envoy = Envoy(GatewaySettings(web=StaticSite(port=8090)), MESH_ROUTES, tmp_path)

    envoy.prepare()

    assert envoy.config_path.is_file()


def test_every_request_carries_the_client_address_envoy_saw_whatever_the_client_sent() -> None:
    config = render(GatewaySettings(), MESH_ROUTES)
    [header] = virtual_host(config)["request_headers_to_add"]
    assert header["header"] == {
        "key": "x-chatmesh-client-address",
        "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    }
    assert header["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"


def jwt_of(route: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = route["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]
    return config


def test_edge_auth_verifies_with_a_local_jwks_of_both_public_keys(tmp_path: Path) -> None:
    auth = edge_auth(tmp_path)
    filters = connection_manager(render(GatewaySettings(edge_auth=auth), []))["http_filters"]
    jwt = next(f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.jwt_authn")

    (provider,) = jwt["providers"].values()
    assert provider["issuer"] == "chatmesh"
    assert provider["forward"] is True  # services verify the token again
    keys = json.loads(provider["local_jwks"]["inline_string"])["keys"]
    assert [(k["kty"], k["crv"], k["alg"], k["kid"]) for k in keys] == [
        ("OKP", "Ed25519", "EdDSA", "access"),
        ("OKP", "Ed25519", "EdDSA", "service"),
    ]
    raw = load_public_key(tmp_path / "access.pub.pem").public_bytes_raw()
    assert base64.urlsafe_b64decode(keys[0]["x"] + "=") == raw


def test_each_route_requires_a_token_by_its_methods_access(tmp_path: Path) -> None:
    settings = GatewaySettings(edge_auth=edge_auth(tmp_path, service_key=False), web=StaticSite(port=8081))
    routes = routes_by_name(render(settings, MESH_ROUTES))

    required = {"@type": JWT_ROUTE, "requirement_name": "token_required"}
    assert jwt_of(routes["chatmesh.session.v1"]) == required
    assert jwt_of(routes[CONNECT]) == required
    assert jwt_of(routes[GET_FORM]) == {"@type": JWT_ROUTE, "requirement_name": "token_optional"}
    for public in (LOGIN, "grpc.health.v1", "grpc.reflection", "web"):
        assert jwt_of(routes[public]) == {"@type": JWT_ROUTE, "disabled": True}, public
    # Login is the session service's, routed ahead of its package's prefix route.
    assert routes[LOGIN]["route"]["cluster"] == "session"
    assert route_names(render(settings, MESH_ROUTES)).index(LOGIN) < route_names(render(settings, MESH_ROUTES)).index(
        "chatmesh.session.v1"
    )


def test_an_internal_method_is_answered_by_the_gateway_and_routed_nowhere() -> None:
    route = routes_by_name(render(GatewaySettings(), MESH_ROUTES))[APPEND_ASSISTANT]

    assert route["match"] == {"path": APPEND_ASSISTANT}
    assert route["direct_response"] == {"status": 403}
    assert "route" not in route


def test_a_method_listed_twice_or_outside_its_package_is_refused() -> None:
    with pytest.raises(ValueError, match="one access only"):
        RouteSpec(package="chatmesh.session.v1", cluster="session", public_methods=[LOGIN], internal_methods=[LOGIN])
    with pytest.raises(ValueError, match="not a method path"):
        RouteSpec(package="chatmesh.session.v1", cluster="session", public_methods=[GET_FORM])


def test_clients_are_bucketed_by_verified_subject_or_by_address_when_anonymous(tmp_path: Path) -> None:
    limits = ClientRateLimits(user=ClientBucket(burst=50, per_second=20), address=ClientBucket(burst=5, per_second=3))
    settings = GatewaySettings(edge_auth=edge_auth(tmp_path), client_rate_limits=limits)
    config = render(settings, MESH_ROUTES)
    filters = connection_manager(config)["http_filters"]
    limiter = next(f["typed_config"] for f in filters if f["name"] == "chatmesh.client_ratelimit")
    routes = routes_by_name(config)

    assert limiter["descriptors"] == [
        {
            "entries": [{"key": "user"}],
            "token_bucket": {"max_tokens": 50, "tokens_per_fill": 2, "fill_interval": "0.1s"},
        },
        {
            "entries": [{"key": "client", "value": "anonymous"}, {"key": "remote_address"}],
            "token_bucket": {"max_tokens": 5, "tokens_per_fill": 3, "fill_interval": "1s"},
        },
    ]
    assert limiter["always_consume_default_token_bucket"] is False
    assert limiter["response_headers_to_add"][0]["header"] == {"key": "retry-after-ms", "value": "1000"}
    user, anonymous = routes["chatmesh.session.v1"]["route"]["rate_limits"]
    assert user["actions"][0]["metadata"]["metadata_key"] == {
        "key": "envoy.filters.http.jwt_authn",
        "path": [{"key": "jwt_payload"}, {"key": "sub"}],
    }
    assert anonymous["actions"][0]["header_value_match"]["expect_match"] is False
    assert anonymous["actions"][1] == {"remote_address": {}}
    (login,) = routes[LOGIN]["route"]["rate_limits"]
    assert login["actions"] == [
        {"generic_key": {"descriptor_key": "client", "descriptor_value": "anonymous"}},
        {"remote_address": {}},
    ]


def test_without_edge_auth_a_users_calls_are_bucketed_by_their_token() -> None:
    config = render(GatewaySettings(), MESH_ROUTES)
    user, _ = routes_by_name(config)["chatmesh.session.v1"]["route"]["rate_limits"]

    assert user["actions"] == [
        {"request_headers": {"header_name": "authorization", "descriptor_key": "token", "skip_if_absent": True}}
    ]
    assert (
        "envoy.filters.http.jwt_authn" not in routes_by_name(config)["chatmesh.session.v1"]["typed_per_filter_config"]
    )


def test_a_request_must_arrive_within_the_request_timeout_and_headers_within_theirs() -> None:
    settings = GatewaySettings(request_timeout_s=4, request_headers_timeout_s=2, stream_idle_timeout_s=120)
    manager = connection_manager(render(settings, MESH_ROUTES))
    routes = routes_by_name(render(settings, MESH_ROUTES))

    assert (manager["request_timeout"], manager["request_headers_timeout"]) == ("4s", "2s")
    # No idle timeout on unary routes: a slow service's answer is the unary timeout's business.
    assert "idle_timeout" not in routes["chatmesh.session.v1"]["route"]
    assert routes[CONNECT]["route"]["idle_timeout"] == "120s"


def test_client_streams_skip_the_frame_check() -> None:
    routes = routes_by_name(render(GatewaySettings(), MESH_ROUTES))

    assert routes[STREAM_UPSERT]["typed_per_filter_config"]["envoy.filters.http.lua"]["disabled"] is True
    for name in (CONNECT, LOGIN, "chatmesh.session.v1"):
        assert "envoy.filters.http.lua" not in routes[name].get("typed_per_filter_config", {})


def test_envoy_validates_the_rendered_config_with_edge_auth(tmp_path: Path) -> None:
    settings = GatewaySettings(edge_auth=edge_auth(tmp_path), web=StaticSite(port=8081))
    envoy = Envoy(settings, MESH_ROUTES, tmp_path / "envoy")

    envoy.prepare()

    assert envoy.config_path.is_file()


def test_x_forwarded_for_is_believed_from_trusted_proxies_only() -> None:
    plain = connection_manager(render(GatewaySettings(), []))
    proxied = connection_manager(render(GatewaySettings(trusted_proxies=["10.1.0.0/16", "192.0.2.7"]), []))

    assert plain["use_remote_address"] is True
    assert "original_ip_detection_extensions" not in plain
    (xff,) = proxied["original_ip_detection_extensions"]
    assert xff["typed_config"]["xff_trusted_cidrs"]["cidrs"] == [
        {"address_prefix": "10.1.0.0", "prefix_len": 16},
        {"address_prefix": "192.0.2.7", "prefix_len": 32},
    ]
    with pytest.raises(ValueError, match="trusted_proxies"):
        GatewaySettings(trusted_proxies=["not-a-network"])


def test_envoy_stops_taking_calls_before_its_heap_outgrows_the_ceiling() -> None:
    overload = render(GatewaySettings(max_heap_bytes=256 << 20), [])["overload_manager"]

    heap = next(m for m in overload["resource_monitors"] if m["name"] == "envoy.resource_monitors.fixed_heap")
    assert heap["typed_config"]["max_heap_size_bytes"] == 256 << 20
    actions = {a["name"]: a["triggers"][0]["threshold"]["value"] for a in overload["actions"]}
    assert actions == {
        "envoy.overload_actions.shrink_heap": 0.90,
        "envoy.overload_actions.stop_accepting_requests": 0.95,
    }
