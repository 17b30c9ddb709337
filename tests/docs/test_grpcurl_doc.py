"""docs/grpcurl.md works: its ```sh blocks, run in order in one bash against a real mesh.

The doc's first block sets ``GW`` (the gateway), ``ANN`` and ``BOB`` (the usernames);
the test runs it, then points those at the test's mesh and at names no other test
uses, and runs every other block as written. Each block must finish with status 0
(bash runs with ``set -euo pipefail``, so any failing command fails its block), and
its output must show what the doc says it shows.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest_mesh import MESH_SERVICES as SERVICES
from tests.conftest_mesh import LiveMesh

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "grpcurl.md"
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARK = "::doc-block {}::"

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Block:
    """One ```sh block of the doc and what running it printed (stdout and stderr)."""

    code: str
    output: str


def sh_blocks() -> list[str]:
    """The doc's ```sh blocks, in order."""
    return BLOCK.findall(DOC.read_text())


@pytest.fixture(scope="module")
def ran(live_mesh: LiveMesh) -> list[Block]:
    """Every block run in order in one bash, against the test mesh, with fresh usernames."""
    blocks = sh_blocks()
    suffix = uuid.uuid4().hex[:10]
    overrides = f"GW={live_mesh.gateway_target} ANN=docann{suffix} BOB=docbob{suffix}\n"
    script = ["set -euo pipefail"]
    for i, code in enumerate(blocks):
        script.append(f"echo '{MARK.format(i)}'")
        script.append(code + (overrides if i == 0 else ""))
    script.append(f"echo '{MARK.format(len(blocks))}'")
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=90,
        check=False,
    )
    parts = re.split(r"::doc-block (\d+)::\n", result.stdout)
    outputs = {int(n): text for n, text in zip(parts[1::2], parts[2::2], strict=True)}
    last_started = max(outputs)
    assert result.returncode == 0 and last_started == len(blocks), (
        f"block {last_started} of docs/grpcurl.md failed (status {result.returncode}):\n"
        f"{blocks[min(last_started, len(blocks) - 1)]}\n--- output:\n{outputs[last_started]}"
    )
    return [Block(code, outputs[i]) for i, code in enumerate(blocks)]


def block(ran: list[Block], needle: str) -> Block:
    """The one block whose code contains ``needle``."""
    found = [b for b in ran if needle in b.code]
    assert len(found) == 1, f"{len(found)} blocks of docs/grpcurl.md contain {needle!r}"
    return found[0]


def test_the_doc_sets_the_default_gateway_in_its_first_block() -> None:
    first = sh_blocks()[0]
    assert re.search(r"^GW=127\.0\.0\.1:8080\b", first, re.MULTILINE)
    assert re.search(r"^ANN=\S+ BOB=\S+", first, re.MULTILINE)


def test_listing_shows_every_chatmesh_service_and_describe_shows_the_field_rules(ran: list[Block]) -> None:
    out = block(ran, "describe chatmesh").output
    assert [line for line in out.splitlines() if line in SERVICES] == SERVICES
    assert "chatmesh.history.v1.HistoryService.SendMessage" in out
    assert "rpc SendMessage ( .chatmesh.history.v1.SendMessageRequest )" in out
    assert "message SendMessageRequest {" in out and "max_len: 4000" in out


def test_register_and_login_answer_tokens_that_the_doc_keeps(ran: list[Block]) -> None:
    assert block(ran, "SessionService/Register").output.count('"accessToken": "ey') == 2
    login = block(ran, "SessionService/Login").output
    assert login.count('"accessToken": "ey') == 2
    assert re.search(r"^ann's access token: ey\S{22}\.\.\.$", login, re.MULTILINE)


def test_a_conversation_with_the_peer_found_by_username(ran: list[Block]) -> None:
    out = block(ran, "CONVERSATION_KIND_DIRECT").output
    assert re.search(r'"username": "docbob[0-9a-f]{10}"', out)
    assert '"kind": "CONVERSATION_KIND_DIRECT"' in out and '"created": true' in out


def test_the_sent_message_arrives_on_the_peers_connect_stream(ran: list[Block]) -> None:
    out = block(ran, "SessionService/Connect").output
    message_ids = re.findall(r'"messageId": "([0-9a-f-]{36})"', out)
    assert len(message_ids) == 2 and message_ids[0] == message_ids[1]  # SendMessage's answer, then Bob's event
    assert '"keepAlive"' in out and '"messageCreated"' in out
    assert out.count('"text": "Hi Bob, are you there?"') == 2


def test_history_lists_the_message_and_mark_read_moves_the_pointer(ran: list[Block]) -> None:
    out = block(ran, "HistoryService/MarkRead").output
    assert '"text": "Hi Bob, are you there?"' in out
    assert '"readSequence": "1"' in out
    assert '"lastMessage"' in out  # ListConversations


def test_presence_shows_the_user_online_after_a_heartbeat(ran: list[Block]) -> None:
    out = block(ran, "PresenceService/Heartbeat").output
    assert '"nextHeartbeatS"' in out
    assert '"state": "PRESENCE_STATE_ONLINE"' in out


def test_the_assistant_streams_tokens_and_stores_the_reply(ran: list[Block]) -> None:
    out = block(ran, "Name three colours.").output
    assert out.count('"started"') == 1 and out.count('"finished"') == 1
    assert out.count('"token"') >= 1
    assert re.search(r'"assistantMessageId": "[0-9a-f-]{36}"', out)
    generated = block(ran, "InferenceService/Generate").output
    assert generated.count('"token"') >= 1 and '"finished"' in generated
    assert '"canGenerate": true' in generated  # ListModels


def test_a_grounded_reply_streams_citations_of_the_passage_before_its_tokens_and_stores_them(
    ran: list[Block],
) -> None:
    out = block(ran, "question-cat").output
    assert '"kind": "CONVERSATION_KIND_ASSISTANT"' in out and '"handbook"' in out  # the conversation remembers it
    started, citations, first_token = (out.find(f'"{kind}": {{') for kind in ("started", "citations", "token"))
    assert -1 < started < citations < first_token, "one citations chunk after started, before the first token"
    assert out.count('"citations": {') == 1 and out.count('"finished"') == 1
    assert re.search(r'"assistantMessageId": "[0-9a-f-]{36}"', out)
    cited = out[citations:first_token]
    first = re.search(
        r'"number": 1,\s+"collection": "handbook",\s+"pointId": "[0-9a-f-]{36}",\s+"source": "(\S+)"', cited
    )
    assert first is not None and first.group(1) == "cat.md"  # the document that holds the answer
    assert '"passage": "The office cat is called Biscuit; she sleeps on the second-floor printer."' in cited
    stored = block(ran, "question-handbook").output  # ListMessages, then Bob's refused Reply
    assert re.search(r'"citations": \[\s+\{\s+"number": 1,', stored) and stored.count("\ncat.md\n") == 1
    assert "Code: NotFound" in stored and "collections[0]" in stored and "grpcurl exited 69" in stored


def test_errors_show_their_status_code(ran: list[Block]) -> None:
    unauthenticated = block(ran, "not-a-token").output
    assert "Code: Unauthenticated" in unauthenticated and "grpcurl exited 80" in unauthenticated
    too_long = block(ran, "too-long-1").output
    assert "Code: InvalidArgument" in too_long and "text" in too_long and "grpcurl exited 67" in too_long
