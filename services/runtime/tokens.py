"""Access tokens: signed by the session service, verified by every service.

An access token is a JWT signed with Ed25519 (EdDSA). Only the session service holds
the private key; every other service verifies with the public key, so a compromised
service cannot mint tokens. Claims: ``sub`` (user id), ``did`` (device id), ``sid``
(refresh family id), ``iss``, ``iat``, ``exp``, ``jti``, ``typ`` = "access".

Service tokens identify a process of the mesh itself (an ingest worker calling inference
and ingest for a job's owner). They are signed with a second Ed25519 key pair, held only
by the processes that act for users (``service_token.pem``), short-lived (minutes), and
verified by the same :class:`TokenVerifier` with the service public key. Claims: ``sub``
(the service or worker name), ``iss``, ``iat``, ``exp``, ``jti``, ``typ`` = "service".
A service names the user it acts for in the call's metadata (``x-chatmesh-on-behalf-of``,
see :mod:`services.runtime.interceptors`); a user's token can never do that.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.runtime.errors import Unauthenticated
from services.runtime.revocation import RevocationList

ALGORITHM = "EdDSA"
LEEWAY_S = 5


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified claims of their access token."""

    user_id: str
    device_id: str
    session_id: str
    service: str = ""
    """The calling service's name for a service token (acting for ``user_id``); "" for users."""
    expires_at: float = 0.0
    """When the token expires (unix seconds); 0 when unknown (a principal built in code)."""


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed access token and when it expires (unix seconds)."""

    token: str
    expires_at: int


class TokenVerifier:
    """Verifies access tokens with the session service's public key.

    A signature check costs about 0.2 ms of CPU, as much as the rest of a loopback call,
    and a client sends the same token with every call for minutes: verified tokens are
    remembered (bounded LRU) until they expire, so each is checked once per replica.
    """

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        issuer: str,
        cache_size: int = 10_000,
        service_key: Ed25519PublicKey | None = None,
        revocations: RevocationList | None = None,
    ) -> None:
        self._key = public_key
        #: Sessions ended before their tokens expire (followed from NATS by the server); None: not consulted.
        self.revocations = revocations
        self._service_key = service_key
        self._issuer = issuer
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    @classmethod
    def from_file(cls, path: Path, issuer: str, service_path: Path | None = None) -> TokenVerifier:
        """Load the PEM public key at ``path`` (and the service tokens' one at ``service_path``)."""
        return cls(load_public_key(path), issuer, service_key=load_public_key(service_path) if service_path else None)

    def verify(self, token: str) -> Principal:
        """Return the token's principal, or raise Unauthenticated saying why (never echoing the token)."""
        principal = self._verify(token)
        if self.revocations is not None and principal.session_id and self.revocations.is_revoked(principal.session_id):
            raise Unauthenticated("access token revoked: sign in again")
        return principal

    def _verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() < expires_at + LEEWAY_S:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires_at = self._verify_signature(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _verify_signature(self, token: str) -> tuple[Principal, float]:
        try:
            # Only picks the key: the token is verified in full with it below.
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise Unauthenticated("access token invalid") from None
        if unverified.get("typ") == "service":
            return self._verify_service(token)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": ["sub", "did", "sid", "exp", "iat", "iss", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired: refresh it") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("access token invalid") from None
        if claims.get("typ") != "access":
            raise Unauthenticated("access token invalid")
        principal = Principal(
            user_id=str(claims["sub"]),
            device_id=str(claims["did"]),
            session_id=str(claims["sid"]),
            expires_at=float(claims["exp"]),
        )
        return principal, float(claims["exp"])

    def _verify_service(self, token: str) -> tuple[Principal, float]:
        if self._service_key is None:
            raise Unauthenticated("service tokens are not accepted here")
        try:
            claims = jwt.decode(
                token,
                self._service_key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": ["sub", "exp", "iat", "iss", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("service token expired") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("service token invalid") from None
        if claims.get("typ") != "service" or not claims["sub"]:
            raise Unauthenticated("service token invalid")
        expires = float(claims["exp"])
        principal = Principal(user_id="", device_id="", session_id="", service=str(claims["sub"]), expires_at=expires)
        return principal, expires


class TokenSigner:
    """Signs access tokens. Only the session service has one."""

    def __init__(self, private_key: Ed25519PrivateKey, issuer: str, ttl_s: int) -> None:
        self._key = private_key
        self._issuer = issuer
        self._ttl_s = ttl_s

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key that verifies this signer's tokens."""
        return self._key.public_key()

    def sign(self, principal: Principal, now: float | None = None) -> IssuedToken:
        """A token for ``principal`` valid for the signer's TTL from ``now``."""
        issued = int(time.time() if now is None else now)
        expires = issued + self._ttl_s
        claims = {
            "sub": principal.user_id,
            "did": principal.device_id,
            "sid": principal.session_id,
            "iss": self._issuer,
            "iat": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "typ": "access",
        }
        return IssuedToken(jwt.encode(claims, self._key, algorithm=ALGORITHM), expires)


class ServiceTokenSigner:
    """Signs this process's own service tokens (``typ`` = "service", ``sub`` = its name).

    A token is reused until ``refresh_margin_s`` before it expires, so a busy worker signs
    one every few minutes, not one per call.
    """

    def __init__(
        self, private_key: Ed25519PrivateKey, issuer: str, name: str, ttl_s: int = 300, refresh_margin_s: int = 60
    ) -> None:
        if not name:
            raise ValueError("a service token needs the service's name")
        self._key = private_key
        self._issuer = issuer
        self._name = name
        self._ttl_s = ttl_s
        self._margin_s = min(refresh_margin_s, ttl_s // 2)
        self._current: IssuedToken | None = None

    @classmethod
    def from_file(cls, path: Path, issuer: str, name: str, ttl_s: int = 300) -> ServiceTokenSigner:
        """A signer with the PEM private key at ``path``."""
        return cls(load_private_key(path), issuer, name, ttl_s)

    @property
    def name(self) -> str:
        """The service name tokens carry in ``sub``."""
        return self._name

    def token(self, now: float | None = None) -> str:
        """A valid service token (the current one, or a fresh one near its expiry)."""
        at = time.time() if now is None else now
        if self._current is None or at >= self._current.expires_at - self._margin_s:
            issued = int(at)
            claims = {
                "sub": self._name,
                "iss": self._issuer,
                "iat": issued,
                "exp": issued + self._ttl_s,
                "jti": uuid.uuid4().hex,
                "typ": "service",
            }
            self._current = IssuedToken(jwt.encode(claims, self._key, algorithm=ALGORITHM), issued + self._ttl_s)
        return self._current.token


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load the PEM Ed25519 public key at ``path``."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """Write a new Ed25519 key pair as PEM files (private one readable by the owner only)."""
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load the PEM Ed25519 private key at ``path``."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key
