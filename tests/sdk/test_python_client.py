"""The Python SDK (`sdk/python`): its client against the live mesh, against servers of our
own that fail on purpose, and its wheel installed in a fresh virtual environment.

The scripted servers are real grpc.aio servers on free ports, serving the generated
servicers: they refuse the first calls with UNAVAILABLE, never answer, or reject a token,
and record what each attempt carried.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.client import Client, RetryPolicy, Tokens
from chatmesh.events.v1 import events_pb2
from chatmesh.history.v1 import history_pb2 as hpb
from chatmesh.history.v1 import history_pb2_grpc
from chatmesh.inference.v1 import inference_pb2 as ipb
from chatmesh.session.v1 import session_pb2 as spb
from chatmesh.session.v1 import session_pb2_grpc
from tests.conftest_mesh import LiveMesh

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
CONVERSATION = str(uuid.uuid4())
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def username() -> str:
    """A username no other test of this run (or an earlier run on the same mesh) has taken."""
    return f"sdk{uuid.uuid4().hex[:16]}"


# -- scripted servers ---------------------------------------------------------------------------


@dataclass
class Attempt:
    """One call as a scripted server saw it."""

    at: float
    authorization: str
    client_message_id: str = ""


def authorization(context: Context) -> str:
    """The call's ``authorization`` metadata ('' when absent)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return ""


@dataclass
class Script:
    """What the scripted servers do, and what they saw."""

    unavailable_first: int = 0
    never_answer: bool = False
    access_tokens: set[str] = field(default_factory=lambda: {"access-1"})
    refresh_token: str = "refresh-1"
    refreshes: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    # Connect: per connection, the (sequence, event kind) pairs to send, then the status to end with.
    connections: list[tuple[list[int], grpc.StatusCode | None]] = field(default_factory=list)
    connect_from: list[int] = field(default_factory=list)


class ScriptedHistory(history_pb2_grpc.HistoryServiceServicer):
    """HistoryService failing as the script says."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def _admit(self, context: Context, client_message_id: str = "") -> None:
        script = self.script
        script.attempts.append(Attempt(time.monotonic(), authorization(context), client_message_id))
        if script.never_answer:
            await asyncio.Event().wait()
        if authorization(context).removeprefix("Bearer ") not in script.access_tokens:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "access token expired")
        if len(script.attempts) <= script.unavailable_first:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "history is draining; retry")

    async def SendMessage(self, request: hpb.SendMessageRequest, context: Context) -> hpb.SendMessageResponse:
        await self._admit(context, request.client_message_id)
        message = hpb.Message(
            conversation_id=request.conversation_id,
            client_message_id=request.client_message_id,
            text=request.text,
            sequence=1,
        )
        return hpb.SendMessageResponse(message=message)

    async def CreateConversation(
        self, request: hpb.CreateConversationRequest, context: Context
    ) -> hpb.CreateConversationResponse:
        await self._admit(context)
        return hpb.CreateConversationResponse(conversation=hpb.Conversation(conversation_id=CONVERSATION))

    async def ListMessages(self, request: hpb.ListMessagesRequest, context: Context) -> hpb.ListMessagesResponse:
        await self._admit(context)
        return hpb.ListMessagesResponse()


class ScriptedSession(session_pb2_grpc.SessionServiceServicer):
    """SessionService: Refresh rotating access-N/refresh-N, Connect playing the scripted connections."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def Refresh(self, request: spb.RefreshRequest, context: Context) -> spb.RefreshResponse:
        script = self.script
        if request.refresh_token != script.refresh_token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token reused")
        script.refreshes += 1
        n = script.refreshes + 1
        script.refresh_token = f"refresh-{n}"
        script.access_tokens = {f"access-{n}"}
        return spb.RefreshResponse(tokens=proto_tokens(f"access-{n}", script.refresh_token))

    async def Connect(self, request: spb.ConnectRequest, context: Context) -> AsyncIterator[spb.ConnectResponse]:
        script = self.script
        script.connect_from.append(request.last_sequence)
        if not script.connections:
            await asyncio.Event().wait()
        sequences, ending = script.connections.pop(0)
        yield spb.ConnectResponse(event=events_pb2.Event(keep_alive=events_pb2.KeepAlive()))
        for sequence in sequences:
            message = hpb.Message(sequence=sequence, text=f"message {sequence}")
            event = events_pb2.Event(message_created=events_pb2.MessageCreated(message=message))
            yield spb.ConnectResponse(sequence=sequence, event=event)
        if ending is None:
            await asyncio.Event().wait()  # silent from here on
        else:
            await context.abort(ending, "session is restarting")


def proto_tokens(access: str, refresh: str, access_ttl_s: float = 900) -> spb.Tokens:
    """A Tokens message whose access token expires in ``access_ttl_s``."""
    now = datetime.now(UTC)
    access_at, refresh_at = Timestamp(), Timestamp()
    access_at.FromDatetime(now + timedelta(seconds=access_ttl_s))
    refresh_at.FromDatetime(now + timedelta(days=7))
    return spb.Tokens(
        access_token=access, access_expires_at=access_at, refresh_token=refresh, refresh_expires_at=refresh_at
    )


def saved_login(access_ttl_s: float = 900) -> Tokens:
    """The tokens a client resumes with: access-1 (expiring in ``access_ttl_s``), refresh-1."""
    return Tokens.from_proto(proto_tokens("access-1", "refresh-1", access_ttl_s))


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str]]:
    """Scripted session and history servers on one free port: (script, target)."""
    script = Script()
    server = grpc.aio.server()
    history_pb2_grpc.add_HistoryServiceServicer_to_server(ScriptedHistory(script), server)
    session_pb2_grpc.add_SessionServiceServicer_to_server(ScriptedSession(script), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield script, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.05, max_backoff_s=1.0, multiplier=2.0, jitter=0.2)


# -- retries, deadlines, refresh: against the scripted servers ----------------------------------


async def test_a_send_refused_with_unavailable_is_retried_with_growing_back_off_and_stored_once(
    scripted: tuple[Script, str],
) -> None:
    script, target = scripted
    script.unavailable_first = 3
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        message = await client.send_message(CONVERSATION, "hello")

    assert message.text == "hello"
    assert len(script.attempts) == 4
    # One client_message_id for every attempt: the server stores the message once.
    assert {a.client_message_id for a in script.attempts} == {message.client_message_id}
    assert {a.authorization for a in script.attempts} == {"Bearer access-1"}
    # The client waits after each refusal: 0.05 s, then 0.1 s, then 0.2 s, give or take the jitter.
    gaps = [b.at - a.at for a, b in zip(script.attempts, script.attempts[1:], strict=False)]
    for retry, gap in enumerate(gaps, start=1):
        assert gap >= 0.05 * 2 ** (retry - 1) * (1 - FAST.jitter) - 0.005, gaps


async def test_a_raw_stub_send_without_a_client_message_id_gets_one_that_all_its_retries_share(
    scripted: tuple[Script, str],
) -> None:
    script, target = scripted
    script.unavailable_first = 1
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        reply = await client.history.SendMessage(hpb.SendMessageRequest(conversation_id=CONVERSATION, text="hi"))

    ids = [a.client_message_id for a in script.attempts]
    assert len(ids) == 2 and ids[0] == ids[1] == reply.message.client_message_id != ""


async def test_a_call_still_unavailable_after_the_last_attempt_fails_with_the_servers_status(
    scripted: tuple[Script, str],
) -> None:
    script, target = scripted
    script.unavailable_first = 100
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await client.send_message(CONVERSATION, "hello")

    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert failed.value.details() == "history is draining; retry"
    assert len(script.attempts) == FAST.max_attempts


@pytest.mark.parametrize(
    ("kind", "attempts"),
    [(hpb.CONVERSATION_KIND_DIRECT, FAST.max_attempts), (hpb.CONVERSATION_KIND_ASSISTANT, 1)],
    ids=["direct-is-retried", "assistant-is-not"],
)
async def test_only_calls_safe_to_repeat_are_retried(
    scripted: tuple[Script, str], kind: hpb.ConversationKind, attempts: int
) -> None:
    script, target = scripted
    script.unavailable_first = 100
    request = hpb.CreateConversationRequest(kind=kind, peer_user_id=str(uuid.uuid4()))
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await client.history.CreateConversation(request)

    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(script.attempts) == attempts


async def test_a_call_to_a_server_that_never_answers_fails_with_deadline_exceeded_after_the_deadline(
    scripted: tuple[Script, str],
) -> None:
    script, target = scripted
    script.never_answer = True
    async with Client(target, deadline_s=0.5, retry=FAST, tokens=saved_login()) as client:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await client.history.ListMessages(hpb.ListMessagesRequest(conversation_id=CONVERSATION))
        default_s = time.monotonic() - started

        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as overridden:
            await client.history.ListMessages(hpb.ListMessagesRequest(conversation_id=CONVERSATION), timeout=0.2)
        override_s = time.monotonic() - started

    assert failed.value.code() == overridden.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.45 <= default_s < 3, default_s
    assert 0.15 <= override_s < 0.48, override_s
    assert len(script.attempts) == 2  # DEADLINE_EXCEEDED is not retried


async def test_a_call_refused_with_unauthenticated_refreshes_the_tokens_once_and_is_sent_again(
    scripted: tuple[Script, str], caplog: pytest.LogCaptureFixture
) -> None:
    script, target = scripted
    script.access_tokens = {"access-0"}  # the server no longer takes access-1
    script.unavailable_first = 2
    caplog.set_level(logging.DEBUG, logger="chatmesh.client")
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        await client.history.ListMessages(hpb.ListMessagesRequest(conversation_id=CONVERSATION))
        tokens = client.tokens

    assert [a.authorization for a in script.attempts] == ["Bearer access-1", "Bearer access-2", "Bearer access-2"]
    assert script.refreshes == 1
    assert tokens is not None and (tokens.access_token, tokens.refresh_token) == ("access-2", "refresh-2")
    # Retries and the refresh were logged, the tokens never.
    assert "UNAUTHENTICATED" in caplog.text and "UNAVAILABLE" in caplog.text
    for secret in ("access-1", "access-2", "refresh-1", "refresh-2"):
        assert secret not in caplog.text
        assert secret not in repr(tokens)


async def test_a_call_refused_when_the_login_was_revoked_fails_with_unauthenticated(
    scripted: tuple[Script, str],
) -> None:
    script, target = scripted
    script.access_tokens = set()
    script.refresh_token = "refresh-of-another-login"  # refresh-1 was revoked
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await client.history.ListMessages(hpb.ListMessagesRequest(conversation_id=CONVERSATION))

    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert failed.value.details() == "access token expired"  # the call's own status, not Refresh's
    assert len(script.attempts) == 1 and script.refreshes == 0


async def test_concurrent_calls_near_the_access_tokens_expiry_share_one_refresh_before_they_are_sent(
    scripted: tuple[Script, str],
) -> None:
    script, target = scripted
    script.access_tokens = {"access-1", "access-2"}
    async with Client(target, retry=FAST, refresh_margin_s=60, tokens=saved_login(access_ttl_s=30)) as client:
        request = hpb.ListMessagesRequest(conversation_id=CONVERSATION)
        await asyncio.gather(*(client.history.ListMessages(request) for _ in range(5)))

    # A refresh token is single use: a second Refresh with it would have been refused.
    assert script.refreshes == 1
    assert {a.authorization for a in script.attempts} == {"Bearer access-2"}


async def test_events_reconnect_after_a_drop_from_the_last_sequence_they_saw(scripted: tuple[Script, str]) -> None:
    script, target = scripted
    script.connections = [([1, 2], grpc.StatusCode.UNAVAILABLE), ([3], grpc.StatusCode.INTERNAL), ([4], None)]
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        async with client.events() as events:
            seen = []
            async for item in events:
                seen.append(item.sequence)
                if len(seen) == 4:
                    break

    assert seen == [1, 2, 3, 4]
    assert script.connect_from == [0, 2, 3]
    assert client.last_sequence == 4


async def test_events_reconnect_when_the_stream_goes_quiet(scripted: tuple[Script, str]) -> None:
    script, target = scripted
    script.connections = [([1], None), ([2], None)]
    async with Client(target, retry=FAST, tokens=saved_login()) as client:
        async with client.events(idle_timeout_s=0.3) as events:
            seen = [(await anext(events)).sequence, (await anext(events)).sequence]

    assert seen == [1, 2]
    assert script.connect_from == [0, 1]


# -- the live mesh, through the gateway ----------------------------------------------------------


async def test_two_users_register_log_in_and_chat_through_the_gateway(live_mesh: LiveMesh) -> None:
    target = live_mesh.gateway_target
    ann_name, bob_name = username(), username()
    async with Client(target) as ann, Client(target) as bob_laptop, Client(target) as bob_phone:
        ann_account = await ann.register(ann_name, PASSWORD, "laptop")
        bob_account = await bob_laptop.register(bob_name, PASSWORD, "laptop")
        phone = await bob_phone.login(bob_name, PASSWORD, "phone")
        assert phone.user_id == bob_account.user_id and phone.device_id != bob_account.device_id

        found = await ann.lookup_user(bob_name)
        assert found is not None and found.user_id == bob_account.user_id
        chat = await ann.direct_conversation(bob_account.user_id)
        assert {m.user_id for m in chat.members} == {ann_account.user_id, bob_account.user_id}

        async with asyncio.timeout(30):
            async with bob_phone.events() as events:
                sent = await ann.send_message(chat.conversation_id, "hello bob")
                received = await next_message(events)
            assert received.text == "hello bob"
            assert received.client_message_id == sent.client_message_id
            assert received.author_user_id == ann_account.user_id

            # While the phone is away, ann writes again; its next stream replays the gap.
            again = await ann.send_message(chat.conversation_id, "still there?")
            async with bob_phone.events() as events:
                replayed = await next_message(events)
            assert (replayed.text, replayed.sequence) == ("still there?", again.sequence)


async def next_message(events: AsyncIterator[spb.ConnectResponse]) -> hpb.Message:
    """The next MessageCreated event's message."""
    async for item in events:
        if item.event.HasField("message_created"):
            return item.event.message_created.message
    raise AssertionError("the event stream ended")


async def test_refresh_rotates_both_tokens_and_calls_keep_working(live_mesh: LiveMesh) -> None:
    async with Client(live_mesh.gateway_target) as client:
        await client.register(username(), PASSWORD, "laptop")
        before = client.tokens
        after = await client.refresh()
        devices: spb.ListDevicesResponse = await client.session.ListDevices(spb.ListDevicesRequest())

    assert before is not None and client.tokens == after
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    assert after.access_expires_at >= before.access_expires_at
    assert [d.name for d in devices.devices] == ["laptop"]


async def test_an_assistant_reply_streams_its_tokens_and_is_stored_in_the_conversation(live_mesh: LiveMesh) -> None:
    async with Client(live_mesh.gateway_target) as client:
        await client.register(username(), PASSWORD, "laptop")
        chat = await client.assistant_conversation()
        await client.send_message(chat.conversation_id, "Name a colour.")
        reply = client.reply(chat.conversation_id, sampling=ipb.SamplingParams(temperature=0, seed=1), max_tokens=8)
        texts = [text async for text in reply]
        page: hpb.ListMessagesResponse = await client.history.ListMessages(
            hpb.ListMessagesRequest(conversation_id=chat.conversation_id)
        )

    assert texts and reply.text == "".join(texts)
    assert reply.started is not None and reply.started.request_id == reply.request_id
    assert reply.finished is not None and reply.finished.usage.completion_tokens <= 8
    newest = page.messages[0]
    assert newest.message_id == reply.finished.assistant_message_id
    assert (newest.author_kind, newest.text) == (hpb.AUTHOR_KIND_ASSISTANT, reply.text)
    with pytest.raises(RuntimeError):
        [text async for text in reply]


# -- the wheel ----------------------------------------------------------------------------------


def readme_example() -> str:
    """The first ```python block of sdk/python/README.md."""
    readme = (ROOT / "sdk" / "python" / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert found is not None, "sdk/python/README.md has no python example"
    return found.group(1)


def test_the_readme_opens_with_a_ten_line_example() -> None:
    readme = (ROOT / "sdk" / "python" / "README.md").read_text()
    assert readme.split("```python", 1)[0].count("\n") <= 2, "the example is not the README's opening"
    assert len([line for line in readme_example().splitlines() if line.strip()]) <= 10


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test with its output when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_readme_example(live_mesh: LiveMesh, tmp_path: Path) -> None:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(ROOT / "sdk" / "python"), "-w", str(tmp_path)])
    (wheel,) = tmp_path.glob("chatmesh-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"chatmesh/client/__init__.py", "chatmesh/py.typed", "buf/validate/validate_pb2.py"} <= names
    assert {"chatmesh/session/v1/session_pb2.py", "chatmesh/session/v1/session_pb2.pyi"} <= names
    assert "chatmesh/__init__.py" not in names and not any("__pycache__" in n for n in names)

    # The same versions as the project's pins (pip's cache has them); extras are not allowed in constraints.
    pins = re.sub(r"\[[^\]]*\]", "", (ROOT / "requirements.txt").read_text())
    (tmp_path / "constraints.txt").write_text(pins)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "-c", str(tmp_path / "constraints.txt"), str(wheel)])

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"CHATMESH_TARGET": live_mesh.gateway_target, "CHATMESH_USERNAME": username()}
    where = run(
        [
            python,
            "-c",
            "import chatmesh.client, chatmesh.session.v1.session_pb2 as s; print(chatmesh.client.__file__, s.__file__)",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout
    (tmp_path / "example.py").write_text(readme_example())
    example = run([python, "example.py"], cwd=tmp_path, env=env, timeout=240)
    assert example.stdout.strip(), "the assistant's reply printed nothing"
