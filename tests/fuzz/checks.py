"""Calling an RPC with raw bytes, and what an answer must never be.

A call goes through a generic ``channel.unary_unary/unary_stream/stream_unary/stream_stream``
with identity serializers, so the fuzzer sends exactly the bytes it built.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.fuzz.messages import Rpc


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


#: Hypothesis examples per RPC (``make test``: a fixed budget; ``make fuzz-long``: far more).
EXAMPLES = _env_int("CHATMESH_FUZZ_EXAMPLES", 50)
#: Byte mutations per RPC (the crafted ones first, then random ones).
MUTATIONS = _env_int("CHATMESH_FUZZ_MUTATIONS", 100)
#: An answer later than this (seconds) is a finding ("every answer within a few seconds").
TIMEOUT_S = float(os.environ.get("CHATMESH_FUZZ_TIMEOUT_S", "5") or 5)
#: A server stream still open, without an error, this long after the call is a watch doing its job.
STREAM_OPEN_S = float(os.environ.get("CHATMESH_FUZZ_STREAM_OPEN_S", "1") or 1)
#: Random (not derandomized) examples, for long runs that should explore beyond the fixed set.
RANDOM = os.environ.get("CHATMESH_FUZZ_RANDOM", "") not in ("", "0")
#: Where findings are appended as JSON lines (unset: nowhere; the test failure shows them anyway).
REPORT = os.environ.get("CHATMESH_FUZZ_REPORT", "")
#: A server stream answered once it sent this many messages; the fuzzer then cancels it.
STREAM_ITEMS = 3

#: RPCs whose valid requests may take longer than TIMEOUT_S by design (Embed: up to 256 texts of 8,192
#: characters on a CPU); for them a deadline is a finding only when the request does not even parse.
SLOW_BY_DESIGN = frozenset({"/chatmesh.inference.v1.InferenceService/Embed"})

FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS)
#: What a status message must not show: tracebacks, source files, Python class names, library internals.
LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|<class |<module|\b[A-Z]\w*(?:Error|Exception)\b|google\.protobuf|"
    r"\bprotobuf\b.*\b(?:decode|parse)|grpc\._|asyncio\.|NoneType|object at 0x"
)


@dataclass(frozen=True)
class Outcome:
    """How a call ended: its status (OK included), message, seconds taken, messages received."""

    code: grpc.StatusCode
    details: str
    elapsed_s: float
    received: int


def call(channel: grpc.Channel, rpc: Rpc, bodies: Sequence[bytes], metadata: Sequence[tuple[str, str]]) -> Outcome:
    """Call ``rpc`` with the raw request ``bodies`` (one unless the request streams)."""
    started = time.monotonic()
    received = 0
    md = tuple(metadata)
    try:
        if rpc.client_streaming and rpc.server_streaming:
            stream = channel.stream_stream(rpc.path)(iter(bodies), metadata=md, timeout=STREAM_OPEN_S)
            received = _drain(stream)
        elif rpc.client_streaming:
            channel.stream_unary(rpc.path)(iter(bodies), metadata=md, timeout=TIMEOUT_S)
            received = 1
        elif rpc.server_streaming:
            stream = channel.unary_stream(rpc.path)(bodies[0], metadata=md, timeout=STREAM_OPEN_S)
            received = _drain(stream)
        else:
            channel.unary_unary(rpc.path)(bodies[0], metadata=md, timeout=TIMEOUT_S)
            received = 1
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        return Outcome(code, exc.details() or "", time.monotonic() - started, received)  # type: ignore[attr-defined]
    return Outcome(grpc.StatusCode.OK, "", time.monotonic() - started, received)


def _drain(stream: grpc.Call) -> int:
    received = 0
    for _ in stream:  # type: ignore[attr-defined]
        received += 1
        if received >= STREAM_ITEMS:
            stream.cancel()
            break
    return received


def parses(rpc: Rpc, body: bytes) -> bool:
    """``body`` is a valid serialized request of ``rpc``."""
    try:
        rpc.request.FromString(body)
    except Exception:  # noqa: BLE001 - DecodeError, and whatever else upb raises on garbage
        return False
    return True


def problems(rpc: Rpc, outcome: Outcome, body: bytes = b"") -> list[str]:
    """What is wrong with ``outcome`` to ``body`` (empty: a fine answer, whatever its status)."""
    found = []
    if outcome.code in FORBIDDEN:
        found.append(f"answered {outcome.code.name}")
    slow_ok = rpc.server_streaming or (rpc.path in SLOW_BY_DESIGN and parses(rpc, body))
    if outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED and not slow_ok:
        # (A server stream still open after STREAM_OPEN_S is a watch doing its job.)
        found.append(f"no answer within {TIMEOUT_S:g} s")
    if outcome.code == grpc.StatusCode.CANCELLED and outcome.received < STREAM_ITEMS:
        found.append("the server cancelled the call")
    if LEAKS.search(outcome.details):
        found.append("the message shows internals")
    return found


def fields(outcome: Outcome) -> tuple[str, str, float]:
    """Status name, message and seconds of ``outcome`` (for :func:`record`)."""
    return outcome.code.name, outcome.details, outcome.elapsed_s


def describe(rpc: Rpc, label: str, body: bytes, outcome: Outcome, found: Sequence[str]) -> str:
    """One line for a failure report."""
    shown = body[:48].hex() + ("…" if len(body) > 48 else "")
    return (
        f"{rpc.path} [{label}] body={shown} ({len(body)} bytes) -> {outcome.code.name} "
        f"{outcome.details[:200]!r} in {outcome.elapsed_s:.2f}s: {'; '.join(found)}"
    )


def record(kind: str, rpc: Rpc, label: str, body: bytes, status: str, message: str, seconds: float,
           found: Sequence[str]) -> None:  # fmt: skip
    """Append a finding to CHATMESH_FUZZ_REPORT (JSON lines) when it is set."""
    if not REPORT:
        return
    line = {
        "kind": kind, "service": rpc.service, "method": rpc.path, "input": label, "body_hex": body[:256].hex(),
        "status": status, "message": message[:500], "seconds": round(seconds, 3), "problems": list(found),
    }  # fmt: skip
    with Path(REPORT).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
