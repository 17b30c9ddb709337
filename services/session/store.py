"""Accounts, devices and refresh tokens in CQL.

Tables (ScyllaDB-compatible, no secondary indexes):
- ``accounts_by_username``: everything a login needs in one partition; inserted with
  a lightweight transaction so two registrations can't take the same username.
- ``users``: profile by id.
- ``devices``: a user's devices in one partition.
- ``refresh_tokens``: by SHA-256 of the token (the token itself is never stored),
  expiring by TTL. ``refresh_families``: one per login; revoking it kills every token
  rotated from that login.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.runtime.cql import CqlSession

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS accounts_by_username (
        username text PRIMARY KEY, user_id uuid, password_hash text, display_name text, created_at timestamp)""",
    """CREATE TABLE IF NOT EXISTS users (
        user_id uuid PRIMARY KEY, username text, display_name text, created_at timestamp)""",
    """CREATE TABLE IF NOT EXISTS devices (
        user_id uuid, device_id uuid, name text, created_at timestamp, last_seen_at timestamp,
        family_id uuid, revoked boolean, PRIMARY KEY (user_id, device_id))""",
    """CREATE TABLE IF NOT EXISTS refresh_tokens (
        token_hash text PRIMARY KEY, user_id uuid, device_id uuid, family_id uuid, expires_at timestamp,
        used boolean)""",
    """CREATE TABLE IF NOT EXISTS refresh_families (
        family_id uuid PRIMARY KEY, user_id uuid, device_id uuid, revoked boolean)""",
)


@dataclass(frozen=True)
class Account:
    """What a login needs."""

    user_id: str
    username: str
    password_hash: str
    display_name: str


@dataclass(frozen=True)
class UserRecord:
    """The public view of an account."""

    user_id: str
    username: str
    display_name: str


@dataclass(frozen=True)
class DeviceRecord:
    """A device of an account."""

    user_id: str
    device_id: str
    name: str
    created_at: datetime
    last_seen_at: datetime
    family_id: str | None
    revoked: bool


@dataclass(frozen=True)
class RefreshRecord:
    """A stored refresh token (by hash)."""

    user_id: str
    device_id: str
    family_id: str
    expires_at: datetime
    used: bool


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class AccountStore:
    """CQL reads and writes of the session service."""

    def __init__(self, cql: CqlSession) -> None:
        self._cql = cql

    async def create_account(self, account: Account, now: datetime) -> bool:
        """Insert the account unless the username exists; False if it does."""
        rows = await self._cql.execute(
            "INSERT INTO accounts_by_username (username, user_id, password_hash, display_name, created_at) "
            "VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
            (account.username, uuid.UUID(account.user_id), account.password_hash, account.display_name, now),
            prepare=True,
        )
        if not rows[0]["[applied]"]:
            return False
        await self._cql.execute(
            "INSERT INTO users (user_id, username, display_name, created_at) VALUES (?, ?, ?, ?)",
            (uuid.UUID(account.user_id), account.username, account.display_name, now),
            prepare=True,
        )
        return True

    async def account_by_username(self, username: str) -> Account | None:
        """The account with ``username``, or None."""
        rows = await self._cql.execute(
            "SELECT user_id, password_hash, display_name FROM accounts_by_username WHERE username = ?",
            (username,),
            prepare=True,
        )
        if not rows:
            return None
        row = rows[0]
        return Account(str(row["user_id"]), username, row["password_hash"], row["display_name"])

    async def user_by_username(self, username: str) -> UserRecord | None:
        """The public view of the account with ``username``, or None."""
        rows = await self._cql.execute(
            "SELECT user_id, display_name FROM accounts_by_username WHERE username = ?", (username,), prepare=True
        )
        return UserRecord(str(rows[0]["user_id"]), username, rows[0]["display_name"]) if rows else None

    async def user_by_id(self, user_id: str) -> UserRecord | None:
        """The public view of the account with ``user_id``, or None."""
        rows = await self._cql.execute(
            "SELECT username, display_name FROM users WHERE user_id = ?", (uuid.UUID(user_id),), prepare=True
        )
        return UserRecord(user_id, rows[0]["username"], rows[0]["display_name"]) if rows else None

    async def put_device(self, device: DeviceRecord) -> None:
        """Insert or replace a device row."""
        await self._cql.execute(
            "INSERT INTO devices (user_id, device_id, name, created_at, last_seen_at, family_id, revoked) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                uuid.UUID(device.user_id),
                uuid.UUID(device.device_id),
                device.name,
                device.created_at,
                device.last_seen_at,
                uuid.UUID(device.family_id) if device.family_id else None,
                device.revoked,
            ),
            prepare=True,
        )

    async def devices(self, user_id: str) -> list[DeviceRecord]:
        """Every device row of the user, revoked ones included."""
        rows = await self._cql.execute(
            "SELECT device_id, name, created_at, last_seen_at, family_id, revoked FROM devices WHERE user_id = ?",
            (uuid.UUID(user_id),),
            prepare=True,
        )
        return [
            DeviceRecord(
                user_id=user_id,
                device_id=str(r["device_id"]),
                name=r["name"],
                created_at=_utc(r["created_at"]),
                last_seen_at=_utc(r["last_seen_at"]),
                family_id=str(r["family_id"]) if r["family_id"] else None,
                revoked=bool(r["revoked"]),
            )
            for r in rows
        ]

    async def device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        """One device of the user, or None."""
        for device in await self.devices(user_id):
            if device.device_id == device_id:
                return device
        return None

    async def put_refresh(self, token_hash: str, record: RefreshRecord, ttl_s: int) -> None:
        """Store a new refresh token, expiring after ``ttl_s``."""
        await self._cql.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, device_id, family_id, expires_at, used) "
            "VALUES (?, ?, ?, ?, ?, false) USING TTL ?",
            (
                token_hash,
                uuid.UUID(record.user_id),
                uuid.UUID(record.device_id),
                uuid.UUID(record.family_id),
                record.expires_at,
                ttl_s,
            ),
            prepare=True,
        )

    async def refresh(self, token_hash: str) -> RefreshRecord | None:
        """The refresh token with this hash, or None."""
        rows = await self._cql.execute(
            "SELECT user_id, device_id, family_id, expires_at, used FROM refresh_tokens WHERE token_hash = ?",
            (token_hash,),
            prepare=True,
        )
        if not rows:
            return None
        r = rows[0]
        return RefreshRecord(
            str(r["user_id"]), str(r["device_id"]), str(r["family_id"]), _utc(r["expires_at"]), bool(r["used"])
        )

    async def mark_refresh_used(self, token_hash: str) -> bool:
        """Mark the token used; False if it already was (a concurrent or replayed use)."""
        rows = await self._cql.execute(
            "UPDATE refresh_tokens SET used = true WHERE token_hash = ? IF used = false", (token_hash,), prepare=True
        )
        return bool(rows[0]["[applied]"])

    async def put_family(self, family_id: str, user_id: str, device_id: str) -> None:
        """Start a refresh family (one per login)."""
        await self._cql.execute(
            "INSERT INTO refresh_families (family_id, user_id, device_id, revoked) VALUES (?, ?, ?, false)",
            (uuid.UUID(family_id), uuid.UUID(user_id), uuid.UUID(device_id)),
            prepare=True,
        )

    async def family_revoked(self, family_id: str) -> bool:
        """True if the family was revoked (or never existed)."""
        rows = await self._cql.execute(
            "SELECT revoked FROM refresh_families WHERE family_id = ?", (uuid.UUID(family_id),), prepare=True
        )
        return not rows or bool(rows[0]["revoked"])

    async def revoke_family(self, family_id: str) -> None:
        """Revoke every refresh token of the family."""
        await self._cql.execute(
            "UPDATE refresh_families SET revoked = true WHERE family_id = ?", (uuid.UUID(family_id),), prepare=True
        )
