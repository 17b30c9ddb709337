"""The bytes a browser sends: gRPC-web over HTTP/1.1, framed by hand (no client library)."""

from __future__ import annotations

import asyncio
import http.client
import struct
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


@dataclass
class GrpcWebReply:
    """What came back: HTTP status, gRPC status and message, the response messages."""

    http_status: int
    grpc_status: int
    grpc_message: str
    messages: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def parse(self, cls: type[M]) -> M:
        """The single response message as ``cls``."""
        assert self.grpc_status == 0, f"grpc-status {self.grpc_status}: {self.grpc_message}"
        assert len(self.messages) == 1, f"{len(self.messages)} messages"
        return cls.FromString(self.messages[0])


def frame(payload: bytes, flag: int = 0) -> bytes:
    """One gRPC-web frame: flag byte, 4-byte big-endian length, payload."""
    return struct.pack(">BI", flag, len(payload)) + payload


def parse_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """The data frames' messages and the trailer frame's fields of a gRPC-web body."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    offset = 0
    while offset + 5 <= len(body):
        flag, length = struct.unpack(">BI", body[offset : offset + 5])
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if ":" in line:
                    key, value = line.split(":", 1)
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def _post(base_url: str, path: str, body: bytes, headers: dict[str, str]) -> GrpcWebReply:
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                "x-user-agent": "grpc-web-javascript/0.1",
                "accept": "application/grpc-web+proto",
                "origin": "http://127.0.0.1:5173",
                **headers,
            },
        )
        response = conn.getresponse()
        data = response.read()
        response_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    messages, trailers = parse_frames(data)
    # A trailers-only answer (an error before any message) carries the status in the headers.
    status = trailers.get("grpc-status", response_headers.get("grpc-status", "-1"))
    message = trailers.get("grpc-message", response_headers.get("grpc-message", ""))
    return GrpcWebReply(response.status, int(status), urllib.parse.unquote(message), messages, response_headers)


async def call(
    base_url: str, path: str, request: Message | bytes, token: str | None = None, **headers: Any
) -> GrpcWebReply:
    """POST one gRPC-web call the way a browser does; ``request`` may be raw body bytes."""
    body = frame(request.SerializeToString()) if isinstance(request, Message) else request
    extra = {k.replace("_", "-"): str(v) for k, v in headers.items()}
    if token is not None:
        extra["authorization"] = f"Bearer {token}"
    return await asyncio.to_thread(_post, base_url, path, body, extra)
