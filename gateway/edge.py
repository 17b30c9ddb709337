"""Who may call what, decided at the edge: JWT verification and per-client rate limits.

Every gRPC route has an :class:`Access` taken from its method's contract option
(``chatmesh.common.v1.access``, read by :mod:`mesh.contracts`):

============  ======================================  =====================================
access        token at the edge (``jwt_authn``)       rate-limit bucket (``client_ratelimit``)
============  ======================================  =====================================
public        not looked at (Login, Register, ...)    the client address's
optional      verified if present, else none needed   the user's, or the address's if none
user          required, verified (user or service)    the user's
internal      never forwarded: PERMISSION_DENIED      the client address's
============  ======================================  =====================================

Health, reflection and the web page are public. Tokens are checked with the session
service's Ed25519 public keys, turned into a local JWKS when the configuration is rendered:
one provider holds both keys (users' access tokens and the mesh's service tokens), so a
token verifies against whichever signed it. The edge checks signature, issuer and expiry;
the services check everything again (``typ``, revocation, whom a service acts for): the
edge only keeps calls that cannot succeed from costing a service anything.

The verified claims go to dynamic metadata (``envoy.filters.http.jwt_authn`` /
``jwt_payload``), where the client rate limiter reads ``sub``: a client cannot forge it with
a header. Without edge auth, a user's calls are bucketed by their ``authorization`` header
(one bucket per token) since nothing has verified a subject.
"""

from __future__ import annotations

import base64
import enum
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.settings import ClientBucket, ClientRateLimits, EdgeAuth, GatewaySettings

JWT_FILTER = "envoy.filters.http.jwt_authn"
CLIENT_RATE_LIMIT_FILTER = "chatmesh.client_ratelimit"
#: Where jwt_authn puts a verified token's claims (namespace ``JWT_FILTER``).
PAYLOAD_METADATA_KEY = "jwt_payload"
PROVIDER = "chatmesh"
#: Header of a rate-limited answer: milliseconds until the client's bucket has a token again.
RETRY_AFTER_HEADER = "retry-after-ms"

_JWT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
_JWT_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig"
_LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
_REQUIRED = "token_required"
_OPTIONAL = "token_optional"

# Descriptor keys of the client buckets.
_USER_KEY = "user"
_TOKEN_KEY = "token"
_CLIENT_KEY = "client"
_ANONYMOUS = "anonymous"
_ADDRESS_KEY = "remote_address"


class Access(enum.StrEnum):
    """Who may call a route (the method's ``chatmesh.common.v1.access`` option)."""

    PUBLIC = "public"
    OPTIONAL = "optional"
    USER = "user"
    INTERNAL = "internal"


def _okp_key(key_id: str, pem: bytes) -> dict[str, str]:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{key_id} token key is not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig", "kid": key_id}


def jwks(auth: EdgeAuth) -> dict[str, Any]:
    """The JWKS (RFC 8037, OKP keys) of the access-token key and, if set, the service-token key.

    Raises:
        OSError: a key file cannot be read.
        ValueError: a file holds no Ed25519 public key.
    """
    keys = [_okp_key("access", auth.access_token_public_key_file.read_bytes())]
    if auth.service_token_public_key_file is not None:
        keys.append(_okp_key("service", auth.service_token_public_key_file.read_bytes()))
    return {"keys": keys}


def edge_auth_on(settings: GatewaySettings) -> bool:
    """Whether the gateway verifies tokens."""
    return settings.edge_auth is not None and settings.edge_auth.enabled


def jwt_filter(auth: EdgeAuth) -> dict[str, Any]:
    """The ``jwt_authn`` filter: one provider, two named requirements routes pick from."""
    provider: dict[str, Any] = {
        "issuer": auth.issuer,
        "local_jwks": {"inline_string": json.dumps(jwks(auth))},
        # Services verify the same token again: it must reach them.
        "forward": True,
        "payload_in_metadata": PAYLOAD_METADATA_KEY,
        "clock_skew_seconds": auth.clock_skew_s,
    }
    if auth.cache_size:
        provider["jwt_cache_config"] = {"jwt_cache_size": auth.cache_size}
    return {
        "@type": _JWT_TYPE,
        "providers": {PROVIDER: provider},
        "requirement_map": {
            _REQUIRED: {"provider_name": PROVIDER},
            # A token that is present must verify; no token is fine.
            _OPTIONAL: {"requires_any": {"requirements": [{"provider_name": PROVIDER}, {"allow_missing": {}}]}},
        },
    }


def jwt_route_config(access: Access) -> dict[str, Any]:
    """A route's ``jwt_authn`` setting: which requirement applies, or none."""
    if access is Access.USER:
        return {"@type": _JWT_ROUTE_TYPE, "requirement_name": _REQUIRED}
    if access is Access.OPTIONAL:
        return {"@type": _JWT_ROUTE_TYPE, "requirement_name": _OPTIONAL}
    return {"@type": _JWT_ROUTE_TYPE, "disabled": True}


def _fill(bucket: ClientBucket) -> tuple[int, float]:
    """(tokens per fill, fill interval in s): refills every 100 ms where the rate allows, at least 50 ms."""
    if bucket.per_second >= 10 and bucket.per_second % 10 == 0:
        return bucket.per_second // 10, 0.1
    return bucket.per_second, 1.0


def retry_after_ms(limits: ClientRateLimits) -> int:
    """The retry hint: the longest wait until any client bucket refills."""
    return int(max(_fill(limits.user)[1], _fill(limits.address)[1]) * 1000)


def _token_bucket(bucket: ClientBucket) -> dict[str, Any]:
    tokens, interval = _fill(bucket)
    return {"max_tokens": bucket.burst, "tokens_per_fill": tokens, "fill_interval": f"{interval:g}s"}


def client_rate_limit_filter(settings: GatewaySettings) -> dict[str, Any]:
    """The client rate limiter's filter config: wildcard descriptors make one bucket per value.

    Buckets are shared by every route (the config is the filter's, not a route's); routes
    only say, with their ``rate_limits`` actions, which client a call is.
    """
    limits = settings.client_rate_limits
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "client_rate_limit"}
    user_key = _USER_KEY if edge_auth_on(settings) else _TOKEN_KEY
    return {
        "@type": _LOCAL_RATE_LIMIT_TYPE,
        "stat_prefix": "client_rate_limit",
        # A call that names no client (none should) is limited by no bucket of its own.
        "always_consume_default_token_bucket": False,
        "max_dynamic_descriptors": limits.max_tracked_clients,
        "descriptors": [
            {"entries": [{"key": user_key}], "token_bucket": _token_bucket(limits.user)},
            {
                "entries": [{"key": _CLIENT_KEY, "value": _ANONYMOUS}, {"key": _ADDRESS_KEY}],
                "token_bucket": _token_bucket(limits.address),
            },
        ],
        "filter_enabled": always,
        "filter_enforced": always,
        "rate_limited_as_resource_exhausted": True,
        "response_headers_to_add": [
            {
                "header": {"key": RETRY_AFTER_HEADER, "value": str(retry_after_ms(limits))},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def _anonymous_by_address(*, only_without_token: bool) -> dict[str, Any]:
    """The rate-limit entry of a call without a token: (client=anonymous, remote_address=<ip>)."""
    if only_without_token:
        first: dict[str, Any] = {
            "header_value_match": {
                "descriptor_key": _CLIENT_KEY,
                "descriptor_value": _ANONYMOUS,
                "expect_match": False,
                "headers": [{"name": "authorization", "present_match": True}],
            }
        }
    else:
        first = {"generic_key": {"descriptor_key": _CLIENT_KEY, "descriptor_value": _ANONYMOUS}}
    # The connection's peer, or the address a trusted proxy forwarded (use_remote_address).
    return {"actions": [first, {"remote_address": {}}]}


def _by_user(settings: GatewaySettings) -> dict[str, Any]:
    if edge_auth_on(settings):
        subject = {
            "metadata": {
                "descriptor_key": _USER_KEY,
                "metadata_key": {"key": JWT_FILTER, "path": [{"key": PAYLOAD_METADATA_KEY}, {"key": "sub"}]},
                "source": "DYNAMIC",
                "skip_if_absent": True,
            }
        }
        return {"actions": [subject]}
    token = {"request_headers": {"header_name": "authorization", "descriptor_key": _TOKEN_KEY, "skip_if_absent": True}}
    return {"actions": [token]}


def client_rate_limits(settings: GatewaySettings, access: Access) -> list[dict[str, Any]]:
    """A route's ``rate_limits``: the descriptors that name the calling client, by access."""
    if not settings.client_rate_limits.enabled:
        return []
    if access in (Access.PUBLIC, Access.INTERNAL):
        return [_anonymous_by_address(only_without_token=False)]
    return [_by_user(settings), _anonymous_by_address(only_without_token=True)]
