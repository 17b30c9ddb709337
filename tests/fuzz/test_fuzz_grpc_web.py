"""gRPC-web bodies through the Envoy gateway, for every RPC a browser can call.

Empty bodies, truncated frames, length prefixes that lie, the compressed flag without
compression, garbage payloads: each gets a gRPC status that is neither INTERNAL nor
UNKNOWN, within a few seconds, with no internals in its message.
"""

from __future__ import annotations

import http.client
import struct
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.e2e.grpcweb import frame, parse_frames
from tests.fuzz import checks
from tests.fuzz.conftest import FuzzMesh
from tests.fuzz.messages import Rpc, all_rpcs, seed_message

#: What a browser can call: gRPC-web carries no client streams.
WEB_RPCS = [rpc for rpc in all_rpcs() if not rpc.client_streaming]
UNKNOWN, INTERNAL = 2, 13
WELL_FORMED = "well-formed"


@dataclass(frozen=True)
class WebAnswer:
    """HTTP status, grpc-status (-1: none), grpc-message, seconds taken."""

    http_status: int
    grpc_status: int
    grpc_message: str
    elapsed_s: float


def bodies(valid: bytes) -> list[tuple[str, bytes]]:
    """The malformed (and one well-formed) gRPC-web bodies for a request whose valid form is ``valid``."""
    return [
        ("empty body", b""),
        ("frame header cut short", b"\x00\x00\x00"),
        ("length prefix beyond the body", struct.pack(">BI", 0, len(valid) + 64) + valid),
        ("length prefix 4 GiB", b"\x00\xff\xff\xff\xff" + valid),
        ("bytes after the frame", frame(valid) + b"\x00\x00"),
        ("compressed flag, no compression", frame(valid, flag=1)),
        ("trailer flag on a request", frame(valid, flag=0x80)),
        ("garbage payload", frame(b"\xff" * 12)),
        ("invalid UTF-8 in field 1", frame(b"\x0a\x02\xff\xfe")),
        ("two frames", frame(valid) + frame(valid)),
        ("not gRPC-web at all", b"hello, not grpc-web"),
        (WELL_FORMED, frame(valid)),
    ]


def post(url: str, path: str, body: bytes, token: str, server_streaming: bool) -> WebAnswer:
    """One gRPC-web POST as a browser sends it (no answer within the fuzz bound and a second: a hang)."""
    parts = urllib.parse.urlsplit(url)
    started = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=checks.TIMEOUT_S + 1)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                "accept": "application/grpc-web+proto",
                "origin": "http://127.0.0.1:5173",
                "authorization": f"Bearer {token}",
            },
        )
        response = conn.getresponse()
        # A stream that stays open (a watch) is read for a moment only: its first frames show it answered.
        streaming = response.getheader("grpc-status") is None and server_streaming
        data = response.read1(4096) if streaming else response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
    except TimeoutError:
        return WebAnswer(0, -1, "no answer", time.monotonic() - started)
    finally:
        conn.close()
    _, trailers = parse_frames(data)
    status = trailers.get("grpc-status", headers.get("grpc-status", "-1"))
    message = urllib.parse.unquote(trailers.get("grpc-message", headers.get("grpc-message", "")))
    return WebAnswer(response.status, int(status), message, time.monotonic() - started)


def web_problems(rpc: Rpc, label: str, answer: WebAnswer) -> list[str]:
    """What is wrong with ``answer`` to the body ``label`` (empty: a fine answer)."""
    found = []
    if answer.grpc_status in (UNKNOWN, INTERNAL):
        found.append(f"grpc-status {answer.grpc_status}")
    if answer.http_status == 0 and not (rpc.server_streaming and label == WELL_FORMED):
        # (A well-formed watch may stay silent; a malformed body must never be waited on.)
        found.append(f"no answer within {checks.TIMEOUT_S + 1:g} s")
    elif answer.elapsed_s > checks.TIMEOUT_S and not rpc.server_streaming:
        found.append(f"answered after {answer.elapsed_s:.1f} s")
    if answer.grpc_status == -1 and answer.http_status == 200 and not rpc.server_streaming:
        found.append("HTTP 200 without a grpc-status")
    if checks.LEAKS.search(answer.grpc_message):
        found.append("the message shows internals")
    return found


Probe = tuple[str, bytes, WebAnswer]


@pytest.fixture(scope="session")
def web_answers(fuzz_mesh: FuzzMesh) -> dict[str, list[Probe]]:
    """Every body of every RPC posted at once (a hang then costs its timeout once, not once per body).

    Each probe has a token of its own device and session: a fuzzed Logout revokes only itself.
    """

    def token() -> str:
        return fuzz_mesh.metadata()[0][1].removeprefix("Bearer ")

    jobs = [
        (rpc, label, body)
        for rpc in WEB_RPCS
        for label, body in bodies(
            seed_message(rpc.method.input_type, fuzz_mesh.known, fuzz_mesh.by_field).SerializeToString()
        )
    ]
    answers: dict[str, list[Probe]] = {rpc.path: [] for rpc in WEB_RPCS}
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = [
            (
                rpc.path,
                label,
                body,
                pool.submit(post, fuzz_mesh.mesh.gateway_url, rpc.path, body, token(), rpc.server_streaming),
            )
            for rpc, label, body in jobs
        ]
        for path, label, body, future in futures:
            answers[path].append((label, body, future.result()))
    return answers


@pytest.mark.parametrize("rpc", WEB_RPCS, ids=str)
def test_malformed_grpc_web_bodies_get_a_specific_status_quickly(web_answers: dict[str, list[Probe]], rpc: Rpc) -> None:
    failures = []
    for label, body, answer in web_answers[rpc.path]:
        found = web_problems(rpc, label, answer)
        if found:
            status = f"HTTP {answer.http_status} grpc-status {answer.grpc_status}"
            checks.record("grpc-web", rpc, label, body, status, answer.grpc_message, answer.elapsed_s, found)
            failures.append(
                f"{rpc.path} [{label}] -> HTTP {answer.http_status} grpc-status {answer.grpc_status} "
                f"{answer.grpc_message[:200]!r} in {answer.elapsed_s:.2f}s: {'; '.join(found)}"
            )
    assert not failures, f"{len(failures)} gRPC-web bodies:\n" + "\n".join(failures)
