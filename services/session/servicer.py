"""SessionService: proto messages in, domain calls, proto messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.session.v1 import session_pb2 as pb
from chatmesh.session.v1 import session_pb2_grpc
from services.runtime.clients import Network, caller_address
from services.runtime.contacts import HistoryContacts
from services.runtime.errors import Unauthenticated
from services.runtime.ids import canonical_uuid, canonical_uuids
from services.runtime.interceptors import Context, current_principal
from services.session.accounts import Accounts, LoggedIn, TokenPair
from services.session.feed import DeviceFeed

PUBLIC_METHODS = (
    "/chatmesh.session.v1.SessionService/Register",
    "/chatmesh.session.v1.SessionService/Login",
    "/chatmesh.session.v1.SessionService/Refresh",
)


def _authorization(context: Context) -> str:
    """The caller's `authorization` header, to forward to history as is (AuthLayer already checked it)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    raise Unauthenticated("missing access token: send `authorization: Bearer <token>`")


def _ts(value: datetime | float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC))
    return stamp


def _tokens(pair: TokenPair) -> pb.Tokens:
    return pb.Tokens(
        access_token=pair.access.token,
        access_expires_at=_ts(pair.access.expires_at),
        refresh_token=pair.refresh_token,
        refresh_expires_at=_ts(pair.refresh_expires_at),
    )


def _logged_in(result: LoggedIn) -> tuple[str, str, pb.Tokens]:
    return result.user_id, result.device_id, _tokens(result.tokens)


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """Accounts and tokens (Accounts) and the per-device event stream (DeviceFeed)."""

    def __init__(
        self, accounts: Accounts, feed: DeviceFeed, contacts: HistoryContacts, trusted_proxies: Sequence[Network]
    ) -> None:
        self._accounts = accounts
        self._feed = feed
        self._contacts = contacts
        self._trusted = tuple(trusted_proxies)

    async def Connect(self, request: pb.ConnectRequest, context: Context) -> AsyncIterator[pb.ConnectResponse]:
        principal = current_principal()
        asked = canonical_uuids("watch_user_ids", request.watch_user_ids)
        others = [u for u in asked if u != principal.user_id]
        # Presence only of contacts (users sharing a conversation with the caller), and one's own.
        followed = await self._contacts.contacts(others, _authorization(context)) if others else []
        if len(others) < len(asked):
            followed.append(principal.user_id)
        events = self._feed.open(principal, request.last_sequence, followed)
        try:
            async for sequence, event in events:
                yield pb.ConnectResponse(sequence=sequence, event=event)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        user_id, device_id, tokens = _logged_in(
            await self._accounts.register(request.username, request.password, request.display_name, request.device_name)
        )
        return pb.RegisterResponse(user_id=user_id, device_id=device_id, tokens=tokens)

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        user_id, device_id, tokens = _logged_in(
            await self._accounts.login(
                request.username,
                request.password,
                request.device_name,
                canonical_uuid("device_id", request.device_id) if request.device_id else None,
                caller_address(context, self._trusted),
            )
        )
        return pb.LoginResponse(user_id=user_id, device_id=device_id, tokens=tokens)

    async def Refresh(self, request: pb.RefreshRequest, context: Context) -> pb.RefreshResponse:
        return pb.RefreshResponse(tokens=_tokens(await self._accounts.refresh(request.refresh_token)))

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        await self._accounts.logout(current_principal())
        return pb.LogoutResponse()

    async def ListDevices(self, request: pb.ListDevicesRequest, context: Context) -> pb.ListDevicesResponse:
        devices = await self._accounts.devices(current_principal().user_id)
        return pb.ListDevicesResponse(
            devices=[
                pb.Device(
                    device_id=d.device_id,
                    name=d.name,
                    created_at=_ts(d.created_at),
                    last_seen_at=_ts(d.last_seen_at),
                )
                for d in devices
            ]
        )

    async def LookupUsers(self, request: pb.LookupUsersRequest, context: Context) -> pb.LookupUsersResponse:
        users = await self._accounts.lookup(request.usernames, canonical_uuids("user_ids", request.user_ids))
        return pb.LookupUsersResponse(
            users=[pb.User(user_id=u.user_id, username=u.username, display_name=u.display_name) for u in users]
        )

    async def RevokeDevice(self, request: pb.RevokeDeviceRequest, context: Context) -> pb.RevokeDeviceResponse:
        await self._accounts.revoke_device(current_principal().user_id, canonical_uuid("device_id", request.device_id))
        return pb.RevokeDeviceResponse()
