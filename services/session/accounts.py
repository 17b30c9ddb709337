"""Accounts and sessions: register, log in, rotate refresh tokens, log out, devices.

Knows nothing of gRPC: it takes plain values and raises services.session.errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.runtime.revocation import RevocationList
from services.runtime.tokens import IssuedToken, Principal, TokenSigner
from services.session.errors import (
    DeviceNotFound,
    InvalidCredentials,
    RefreshTokenRejected,
    TooManyLoginFailures,
    UsernameTaken,
)
from services.session.passwords import PasswordVault
from services.session.store import Account, AccountStore, DeviceRecord, RefreshRecord, UserRecord
from services.session.throttle import LoginThrottle

log = logging.getLogger("chatmesh.session")


@dataclass(frozen=True)
class TokenPair:
    """Tokens handed to a logged-in device."""

    access: IssuedToken
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class LoggedIn:
    """Result of Register and Login."""

    user_id: str
    device_id: str
    tokens: TokenPair


def _hash_refresh(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """The session service's use cases."""

    def __init__(
        self,
        store: AccountStore,
        vault: PasswordVault,
        signer: TokenSigner,
        throttle: LoginThrottle,
        refresh_ttl_s: int,
        max_devices: int,
        *,
        revocations: RevocationList | None = None,
    ) -> None:
        self._revocations = revocations
        self._store = store
        self._vault = vault
        self._signer = signer
        self._throttle = throttle
        self._refresh_ttl_s = refresh_ttl_s
        self._max_devices = max_devices

    async def register(self, username: str, password: str, display_name: str, device_name: str) -> LoggedIn:
        """Create an account and log its first device in."""
        now = datetime.now(UTC)
        account = Account(str(uuid.uuid4()), username, await self._vault.hash(password), display_name or username)
        if not await self._store.create_account(account, now):
            raise UsernameTaken()
        log.info("account registered", extra={"user_id": account.user_id})
        return await self._start_session(account.user_id, None, device_name, now)

    async def login(
        self, username: str, password: str, device_name: str, device_id: str | None, address: str
    ) -> LoggedIn:
        """Check the password and log a device in; ``address`` is the client's (throttling).

        Existing and unknown usernames take the same path (an argon2 check against a decoy
        for unknown ones) and get the same answers, throttled alike.
        """
        wait = self._throttle.retry_after(username, address, time.monotonic())
        if wait > 0:
            log.info("login throttled", extra={"retry_after_s": round(wait, 3)})
            raise TooManyLoginFailures(retry_after_s=wait)
        account = await self._store.account_by_username(username)
        if not await self._vault.verify(account.password_hash if account else None, password) or account is None:
            self._throttle.record_failure(username, address, time.monotonic())
            log.info("login failed", extra={"reason": "bad credentials"})
            raise InvalidCredentials()
        self._throttle.record_success(username, address)
        return await self._start_session(account.user_id, device_id, device_name, datetime.now(UTC))

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token: the old one stops working, a reused one revokes its family."""
        token_hash = _hash_refresh(refresh_token)
        record = await self._store.refresh(token_hash)
        now = datetime.now(UTC)
        if record is None or record.expires_at <= now or await self._store.family_revoked(record.family_id):
            raise RefreshTokenRejected()
        if record.used or not await self._store.mark_refresh_used(token_hash):
            # A used token presented again means it leaked: end that login everywhere.
            await self._revoke_family(record.family_id)
            log.warning("refresh token reused; family revoked", extra={"user_id": record.user_id})
            raise RefreshTokenRejected()
        device = await self._store.device(record.user_id, record.device_id)
        if device is None or device.revoked:
            raise RefreshTokenRejected()
        await self._store.put_device(_touched(device, now))
        return await self._issue(Principal(record.user_id, record.device_id, record.family_id), now)

    async def logout(self, principal: Principal) -> None:
        """End the calling device's login."""
        await self._revoke_family(principal.session_id)

    async def lookup(self, usernames: Sequence[str], user_ids: Sequence[str]) -> list[UserRecord]:
        """Accounts by exact username, then by id (one partition read each, concurrently); unknown ones left out."""
        found = await asyncio.gather(
            *(self._store.user_by_username(name) for name in dict.fromkeys(usernames)),
            *(self._store.user_by_id(user_id) for user_id in dict.fromkeys(user_ids)),
        )
        unique = {user.user_id: user for user in found if user is not None}
        return list(unique.values())

    async def devices(self, user_id: str) -> list[DeviceRecord]:
        """The user's logged-in devices, most recently seen first."""
        devices = [d for d in await self._store.devices(user_id) if not d.revoked]
        return sorted(devices, key=lambda d: d.last_seen_at, reverse=True)

    async def revoke_device(self, user_id: str, device_id: str) -> None:
        """Log one of the user's devices out."""
        device = await self._store.device(user_id, device_id)
        if device is None or device.revoked:
            raise DeviceNotFound(device_id)
        if device.family_id:
            await self._revoke_family(device.family_id)
        await self._store.put_device(
            DeviceRecord(
                device.user_id, device.device_id, device.name, device.created_at, device.last_seen_at, None, True
            )
        )

    async def _revoke_family(self, family_id: str) -> None:
        """End a login: its refresh tokens here, its access tokens and streams across the mesh at once."""
        await self._store.revoke_family(family_id)
        if self._revocations is not None:
            await self._revocations.revoke(family_id)

    async def _start_session(self, user_id: str, device_id: str | None, device_name: str, now: datetime) -> LoggedIn:
        existing = await self._store.device(user_id, device_id) if device_id else None
        if existing is not None and existing.family_id:
            await self._revoke_family(existing.family_id)  # one live login per device
        if existing is None:
            live = [d for d in await self._store.devices(user_id) if not d.revoked]
            if len(live) >= self._max_devices:
                # Make room by logging out the device seen longest ago, like most chat apps.
                oldest = min(live, key=lambda d: d.last_seen_at)
                await self.revoke_device(user_id, oldest.device_id)
        family_id = str(uuid.uuid4())
        device = DeviceRecord(
            user_id=user_id,
            device_id=existing.device_id if existing else str(uuid.uuid4()),
            name=device_name,
            created_at=existing.created_at if existing else now,
            last_seen_at=now,
            family_id=family_id,
            revoked=False,
        )
        await self._store.put_device(device)
        await self._store.put_family(family_id, user_id, device.device_id)
        tokens = await self._issue(Principal(user_id, device.device_id, family_id), now)
        return LoggedIn(user_id, device.device_id, tokens)

    async def _issue(self, principal: Principal, now: datetime) -> TokenPair:
        refresh_token = secrets.token_urlsafe(32)
        expires = now + timedelta(seconds=self._refresh_ttl_s)
        await self._store.put_refresh(
            _hash_refresh(refresh_token),
            RefreshRecord(principal.user_id, principal.device_id, principal.session_id, expires, False),
            self._refresh_ttl_s,
        )
        return TokenPair(self._signer.sign(principal, now.timestamp()), refresh_token, expires)


def _touched(device: DeviceRecord, now: datetime) -> DeviceRecord:
    return DeviceRecord(
        device.user_id, device.device_id, device.name, device.created_at, now, device.family_id, device.revoked
    )
