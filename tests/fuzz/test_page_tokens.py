"""Crafted page tokens for every RPC that pages (a chatmesh.common.v1.PageRequest anywhere in its request).

Page tokens are opaque to clients, so a service must treat any string as a possibly forged
one: non-ASCII digits ("²", "١٢٣", which str.isdigit() accepts and int() may not), signs,
huge numbers, separators, another RPC's token shape. The answer is OK (an empty or a real
page) or INVALID_ARGUMENT, never INTERNAL/UNKNOWN, never internals in the message.
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from chatmesh.common.v1 import common_pb2
from tests.fuzz import checks
from tests.fuzz.conftest import FuzzMesh
from tests.fuzz.messages import Rpc, all_rpcs, seed_message

TOKENS = [
    "²", "١٢٣", "１２３", "߀", "𝟗𝟗", "Ⅻ", "-1", "+1", " 1", "1 ", "1e3", "0x10", "9" * 1024, "1" * 30,
    "m1:f:²", "m1:b:-1", "m1:f:", "m1:x:1", "::", "\x00", "\ufffd", "e30", "eyJhIjoxfQ", "%ZZ", "\u202e1",
]  # fmt: skip


def page_paths(
    descriptor: Descriptor, prefix: tuple[FieldDescriptor, ...] = (), depth: int = 0
) -> list[tuple[FieldDescriptor, ...]]:
    """The field paths from ``descriptor`` to every PageRequest in it."""
    paths = []
    for field in descriptor.fields:
        if field.message_type is None or field.is_repeated:
            continue
        if field.message_type.full_name == common_pb2.PageRequest.DESCRIPTOR.full_name:
            paths.append((*prefix, field))
        elif depth < 2:
            paths.extend(page_paths(field.message_type, (*prefix, field), depth + 1))
    return paths


def with_token(base: Message, path: tuple[FieldDescriptor, ...], token: str) -> bytes:
    message = type(base)()
    message.CopyFrom(base)
    target = message
    for field in path:
        target = getattr(target, field.name)
    target.page_token = token  # type: ignore[attr-defined]
    return message.SerializeToString()


PAGED = [(rpc, path) for rpc in all_rpcs() for path in page_paths(rpc.method.input_type)]


def test_some_rpcs_page() -> None:
    assert len(PAGED) >= 3, [str(rpc) for rpc, _ in PAGED]


@pytest.mark.parametrize(("rpc", "path"), PAGED, ids=[f"{r}:{'.'.join(f.name for f in p)}" for r, p in PAGED])
def test_crafted_page_tokens_are_invalid_argument_or_a_page(
    fuzz_mesh: FuzzMesh, rpc: Rpc, path: tuple[FieldDescriptor, ...]
) -> None:
    # An otherwise empty request (the caller's everything: the token is what is checked) and a plausible one.
    bases = [rpc.request(), seed_message(rpc.method.input_type, fuzz_mesh.known, fuzz_mesh.by_field)]
    failures = []
    for token, base in ((t, b) for t in TOKENS for b in bases):
        body = with_token(base, path, token)
        outcome = checks.call(fuzz_mesh.channel(rpc.service), rpc, [body, body], fuzz_mesh.metadata_for(rpc))
        found = checks.problems(rpc, outcome, body)
        if found:
            checks.record("page-token", rpc, f"page_token={token[:40]!r}", body, *checks.fields(outcome), found)
            failures.append(f"page_token={token[:40]!r}: {checks.describe(rpc, 'page token', body, outcome, found)}")
    assert not failures, f"{len(failures)} crafted page tokens:\n" + "\n".join(failures)
