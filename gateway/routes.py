"""Which gRPC paths go where, and how each route is limited.

A :class:`RouteSpec` says, for one proto package, which cluster serves it and which of its
methods stream. Every package gets a prefix route (``/chatmesh.session.v1.``) with the unary
timeout; every streaming method gets an exact-path route placed before the prefix routes,
with no total timeout (``0s``) and an idle timeout instead, because Envoy's default route
timeout would cut long server streams. Methods whose access differs from their package's
(public Login, internal AppendAssistantMessage...) get exact-path routes too: the token
requirement and the rate-limit bucket are per route (see :mod:`gateway.edge`); an internal
method's route answers PERMISSION_DENIED itself and reaches no service. So do unary methods
that are safe to repeat (``retry_safe_methods``): only their routes carry a retry policy
(UNAVAILABLE, reset, refused stream, failed connect; another replica each try).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.edge import JWT_FILTER, RETRY_AFTER_HEADER, Access, client_rate_limits, edge_auth_on, jwt_route_config
from gateway.frames import LUA_FILTER, frame_check_disabled
from gateway.settings import CLUSTER_NAME_PATTERN, PACKAGE_PATTERN, GatewaySettings, RateLimit, RetryPolicy

REFLECTION_PREFIX = "grpc.reflection"
HEALTH_PACKAGE = "grpc.health.v1"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION_INFO = (
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)

STATIC_ROUTE = "web"
#: Rate-limit stage of the route-wide buckets (the client buckets' actions are stage 0).
ROUTE_BUCKET_STAGE = 1

_RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
_BUFFER_FILTER = "envoy.filters.http.buffer"
_LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
_BUFFER_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
_PREVIOUS_HOSTS_TYPE = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"


class RouteSpec(BaseModel):
    """The routes of one proto package.

    Attributes:
        package: proto package, routed by the path prefix ``/<package>.``; a prefix of several
            packages works too (``grpc.reflection`` covers v1 and v1alpha).
        cluster: name of the upstream (or ``catalog``) that serves the package.
        streaming_methods: full paths (``/chatmesh.session.v1.SessionService/Connect``) of
            server-streaming methods: no total timeout, an idle timeout instead.
        client_streaming_methods: full paths of client- and bidirectional-streaming methods
            (SDK-only). Streaming like the above, and exempt from the request size limit,
            whose buffering would hold the whole stream until the client half-closes.
        access: who may call the package's methods unless listed below (default: users with
            a valid token).
        public_methods: full paths of methods anyone may call without a token (ACCESS_PUBLIC).
        optional_auth_methods: full paths of methods callable with or without a token
            (ACCESS_OPTIONAL): a token that is sent must be valid.
        internal_methods: full paths of methods only services may call (ACCESS_INTERNAL): the
            gateway answers them PERMISSION_DENIED and never forwards them.
        retry_safe_methods: full paths of unary methods that are safe to repeat (read-only, or
            idempotent by a client id): each gets an exact route with the gateway's retry
            policy. A streaming method here is an error: a stream is never retried.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    package: str = Field(max_length=200, pattern=PACKAGE_PATTERN)
    cluster: str = Field(pattern=CLUSTER_NAME_PATTERN)
    streaming_methods: list[str] = Field(default_factory=list, max_length=256)
    client_streaming_methods: list[str] = Field(default_factory=list, max_length=256)
    access: Access = Access.USER
    public_methods: list[str] = Field(default_factory=list, max_length=256)
    optional_auth_methods: list[str] = Field(default_factory=list, max_length=256)
    internal_methods: list[str] = Field(default_factory=list, max_length=256)
    retry_safe_methods: list[str] = Field(default_factory=list, max_length=256)

    @model_validator(mode="after")
    def _methods_belong_to_the_package(self) -> Self:
        method = re.compile(rf"^/{re.escape(self.package)}\.([A-Za-z_][A-Za-z0-9_]*\.)*[A-Za-z_][A-Za-z0-9_]*/\w+$")
        bad = [
            m
            for m in self.streaming_methods
            + self.client_streaming_methods
            + self.access_listed_methods()
            + self.retry_safe_methods
            if not method.match(m)
        ]
        if bad:
            raise ValueError(f"not a method path of package {self.package}: {', '.join(bad)}")
        streams = set(self.streaming_methods) | set(self.client_streaming_methods)
        retried_streams = sorted(streams & set(self.retry_safe_methods))
        if retried_streams:
            raise ValueError(f"streaming methods are never retried: {', '.join(retried_streams)}")
        listed = self.access_listed_methods()
        twice = sorted({m for m in listed if listed.count(m) > 1})
        if twice:
            raise ValueError(f"a method has one access only: {', '.join(twice)}")
        return self

    def access_listed_methods(self) -> list[str]:
        return [*self.public_methods, *self.optional_auth_methods, *self.internal_methods]

    def access_of(self, path: str) -> Access:
        """Who may call the method at ``path``."""
        if path in self.public_methods:
            return Access.PUBLIC
        if path in self.optional_auth_methods:
            return Access.OPTIONAL
        if path in self.internal_methods:
            return Access.INTERNAL
        return self.access


def builtin_routes(catalog: str) -> list[RouteSpec]:
    """Routes every gateway has: reflection (for grpcurl) and grpc.health.v1, both to the catalog.

    Args:
        catalog: cluster name of the catalog server.
    """
    return [
        RouteSpec(package=HEALTH_PACKAGE, cluster=catalog, streaming_methods=[HEALTH_WATCH], access=Access.PUBLIC),
        # ServerReflectionInfo is bidirectional: grpcurl waits for each answer before asking again.
        RouteSpec(
            package=REFLECTION_PREFIX,
            cluster=catalog,
            client_streaming_methods=list(REFLECTION_INFO),
            access=Access.PUBLIC,
        ),
    ]


@dataclass(frozen=True)
class _Route:
    """One Envoy route before rendering; ``key`` is its name and its rate-limit override key."""

    key: str
    package: str
    cluster: str
    exact: bool
    streaming: bool
    client_streaming: bool
    access: Access
    retry: bool = False


def resolve_routes(settings: GatewaySettings, routes: list[RouteSpec]) -> list[RouteSpec]:
    """Complete ``routes`` with the built-ins and a plain route for every upstream not covered.

    Raises:
        ValueError: a route names an unknown cluster, or a package or method appears twice.
    """
    given = [*builtin_routes(settings.catalog.name), *routes]
    covered = {r.package for r in given}
    plain = [
        RouteSpec(package=u.package, cluster=u.name)
        for u in settings.upstreams
        if u.package and u.package not in covered
    ]
    resolved = given + plain
    clusters = {u.name for u in settings.upstreams} | {settings.catalog.name}
    unknown = sorted({r.cluster for r in resolved if r.cluster not in clusters})
    if unknown:
        raise ValueError(f"routes name clusters that no upstream defines: {', '.join(unknown)}")
    packages = [r.package for r in resolved]
    twice = sorted({p for p in packages if packages.count(p) > 1})
    if twice:
        raise ValueError(f"more than one RouteSpec for package: {', '.join(twice)}")
    return resolved


def _flatten(specs: list[RouteSpec]) -> list[_Route]:
    """Exact-path routes first, then prefix routes, longest prefix first (nested packages)."""
    exact: dict[str, _Route] = {}
    for spec in specs:
        streams = spec.streaming_methods + spec.client_streaming_methods
        for path in dict.fromkeys(streams + spec.access_listed_methods() + spec.retry_safe_methods):
            if path in exact and exact[path].package != spec.package:
                raise ValueError(f"method {path} is listed by two packages")
            client = path in spec.client_streaming_methods
            retry = path in spec.retry_safe_methods
            exact[path] = _Route(
                path, spec.package, spec.cluster, True, path in streams, client, spec.access_of(path), retry
            )
    prefixes = [_Route(s.package, s.package, s.cluster, False, False, False, s.access) for s in specs]
    prefixes.sort(key=lambda r: len(r.package), reverse=True)
    return list(exact.values()) + prefixes


def duration(value: float) -> str:
    """A protobuf Duration in its JSON form: ``30s``, ``0.250s``."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value:.3f}s"


def retry_policy(policy: RetryPolicy) -> dict[str, Any]:
    """Envoy's retry policy of a retry-safe unary route: another replica each time, with back-off.

    The cluster's retry budget (circuit breakers) caps how many retries are in flight.
    """
    return {
        "retry_on": policy.retry_on,
        "num_retries": policy.num_retries,
        "per_try_timeout": duration(policy.per_try_timeout_s),
        # A retry picks another replica than the ones that failed, where there is one.
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": _PREVIOUS_HOSTS_TYPE},
            }
        ],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {
            "base_interval": duration(policy.base_interval_s),
            "max_interval": duration(policy.base_interval_s * 10),
        },
    }


def _rate_limit_config(limit: RateLimit, stat_prefix: str) -> dict[str, Any]:
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "gateway_rate_limit"}
    return {
        "@type": _LOCAL_RATE_LIMIT_TYPE,
        "stat_prefix": stat_prefix,
        # The routes' rate_limits actions (stage 0) name clients for the client buckets; this
        # route-wide bucket needs none, and skips building them.
        "stage": ROUTE_BUCKET_STAGE,
        "token_bucket": {
            "max_tokens": limit.max_tokens,
            "tokens_per_fill": limit.tokens_per_fill,
            "fill_interval": duration(limit.fill_interval_s),
        },
        "filter_enabled": always,
        "filter_enforced": always,
        # Else a rate-limited native gRPC call reads UNAVAILABLE, which clients retry at once
        # (gRPC-web calls get RESOURCE_EXHAUSTED from local_reply.py).
        "rate_limited_as_resource_exhausted": True,
        # The bucket has a token again at the next fill.
        "response_headers_to_add": [
            {
                "header": {"key": RETRY_AFTER_HEADER, "value": str(round(limit.fill_interval_s * 1000))},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def _rate_limit_for(settings: GatewaySettings, route: _Route) -> RateLimit:
    overrides = settings.rate_limit_overrides
    return overrides.get(route.key) or overrides.get(route.package) or settings.rate_limit


def _stat_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", key.strip("/"))


def _render_internal_route(settings: GatewaySettings, route: _Route) -> dict[str, Any]:
    """PERMISSION_DENIED from the gateway (local_reply.py turns the 403 into gRPC status 7)."""
    rendered: dict[str, Any] = {
        "name": route.key,
        "match": {"path": route.key},
        "direct_response": {"status": 403},
    }
    if edge_auth_on(settings):
        rendered["typed_per_filter_config"] = {JWT_FILTER: jwt_route_config(route.access)}
    return rendered


def _render_route(settings: GatewaySettings, route: _Route) -> dict[str, Any]:
    if route.access is Access.INTERNAL:
        return _render_internal_route(settings, route)
    match: dict[str, Any] = {"path": route.key} if route.exact else {"prefix": f"/{route.package}."}
    action: dict[str, Any] = {"cluster": route.cluster}
    # With max_stream_duration set, Envoy ignores ``timeout`` ("new timeouts"): the stream's
    # total life is max_stream_duration, or the client's grpc-timeout capped by the header max.
    # ``timeout`` still says the same thing, for a reader and in case the other goes.
    if route.streaming:
        action["timeout"] = "0s"
        action["idle_timeout"] = duration(settings.stream_idle_timeout_s)
        # No total limit; a client deadline (grpc-timeout) is honoured as sent.
        action["max_stream_duration"] = {"grpc_timeout_header_max": "0s"}
    else:
        unary = duration(settings.unary_timeout_s)
        action["timeout"] = unary
        # A shorter client deadline wins; no deadline or a longer one gets the unary timeout.
        action["max_stream_duration"] = {"max_stream_duration": unary, "grpc_timeout_header_max": unary}
        if route.retry and settings.retries.enabled:
            action["retry_policy"] = retry_policy(settings.retries)
    limits = client_rate_limits(settings, route.access)
    if limits:
        action["rate_limits"] = limits
    per_filter: dict[str, Any] = {}
    if edge_auth_on(settings):
        per_filter[JWT_FILTER] = jwt_route_config(route.access)
    limit = _rate_limit_for(settings, route)
    if limit.enabled:
        per_filter[_RATE_LIMIT_FILTER] = _rate_limit_config(limit, f"route_{_stat_name(route.key)}")
    if route.client_streaming:
        per_filter[_BUFFER_FILTER] = {"@type": _BUFFER_PER_ROUTE_TYPE, "disabled": True}
        per_filter[LUA_FILTER] = frame_check_disabled()
    else:
        sizes = settings.max_request_bytes_overrides
        size = sizes.get(route.key) or sizes.get(route.package)
        if size:
            per_filter[_BUFFER_FILTER] = {"@type": _BUFFER_PER_ROUTE_TYPE, "buffer": {"max_request_bytes": size}}
    rendered: dict[str, Any] = {"name": route.key, "match": match, "route": action}
    if per_filter:
        rendered["typed_per_filter_config"] = per_filter
    return rendered


def _render_static_route(settings: GatewaySettings) -> dict[str, Any] | None:
    """The catch-all route to the static site: GET and HEAD only, after every gRPC route.

    gRPC and gRPC-web calls are POSTs, so a call to an unknown method still gets Envoy's 404
    (UNIMPLEMENTED to a gRPC client) rather than a page.
    """
    if settings.web is None:
        return None
    rendered: dict[str, Any] = {
        "name": STATIC_ROUTE,
        "match": {
            "prefix": "/",
            "headers": [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}],
        },
        "route": {"cluster": settings.web.name, "timeout": duration(settings.unary_timeout_s)},
    }
    limits = client_rate_limits(settings, Access.PUBLIC)
    if limits:
        rendered["route"]["rate_limits"] = limits
    per_filter: dict[str, Any] = {LUA_FILTER: frame_check_disabled()}
    if edge_auth_on(settings):
        per_filter[JWT_FILTER] = jwt_route_config(Access.PUBLIC)
    limit = settings.rate_limit_overrides.get(STATIC_ROUTE) or settings.rate_limit
    if limit.enabled:
        per_filter[_RATE_LIMIT_FILTER] = _rate_limit_config(limit, f"route_{STATIC_ROUTE}")
    rendered["typed_per_filter_config"] = per_filter
    return rendered


def render_routes(settings: GatewaySettings, routes: list[RouteSpec]) -> list[dict[str, Any]]:
    """The virtual host's ordered route list: gRPC routes, then the static site's catch-all (if any).

    Args:
        settings: gateway settings (timeouts, rate limits).
        routes: the mesh's RouteSpecs; built-ins and plain upstream routes are added.

    Raises:
        ValueError: unknown cluster, duplicate package or method, or a rate-limit override
            that names no route.
    """
    flat = _flatten(resolve_routes(settings, routes))
    keys = {r.key for r in flat} | {r.package for r in flat} | ({STATIC_ROUTE} if settings.web else set())
    stray = sorted(set(settings.rate_limit_overrides) - keys)
    if stray:
        raise ValueError(f"rate_limit_overrides name no route: {', '.join(stray)}")
    stray = sorted(set(settings.max_request_bytes_overrides) - keys)
    if stray:
        raise ValueError(f"max_request_bytes_overrides name no route: {', '.join(stray)}")
    rendered = [_render_route(settings, r) for r in flat]
    static = _render_static_route(settings)
    return rendered if static is None else [*rendered, static]
