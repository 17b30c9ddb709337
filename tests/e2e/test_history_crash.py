"""Killing the history service (SIGKILL) in the middle of a send loop loses no acknowledged message."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import grpc

from chatmesh.common.v1 import common_pb2
from chatmesh.history.v1 import history_pb2 as pb
from chatmesh.history.v1 import history_pb2_grpc
from mesh.deps.base import free_port
from mesh.deps.nats import Nats
from mesh.supervisor import wait_grpc_serving
from services.runtime.cql import CqlSettings
from services.runtime.server import ServiceServer
from services.runtime.tokens import Principal, TokenSigner, load_private_key
from tests.conftest import KeyPair
from tests.conftest_services import Accounts
from tests.e2e.conftest import gateway_for

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "chatmesh.history.v1.HistoryService"


class _Port:
    """What gateway_for needs of a service: its port."""

    def __init__(self, port: int) -> None:
        self.port = port


async def _start_history(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.history", env=env, stdout=out, stderr=out, cwd=ROOT
        )
    await wait_grpc_serving(f"127.0.0.1:{env['CHATMESH_HISTORY_PORT']}", SERVICE, 60)
    return proc


async def test_killing_history_mid_send_loop_loses_no_acknowledged_message(
    cql: CqlSettings,
    nats_server: Nats,
    token_keys: KeyPair,
    tmp_path: Path,
    session_service: ServiceServer,
    accounts: Accounts,
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
        "CHATMESH_HISTORY_PORT": str(port),
        "CHATMESH_HISTORY_CQL__HOSTS": f'["{cql.hosts[0]}"]',
        "CHATMESH_HISTORY_CQL__PORT": str(cql.port),
        "CHATMESH_HISTORY_CQL__KEYSPACE": cql.keyspace,
        "CHATMESH_HISTORY_NATS__URL": nats_server.url,
        "CHATMESH_HISTORY_TOKEN_PUBLIC_KEY_FILE": str(token_keys.public),
        "CHATMESH_HISTORY_SENDS_PER_SECOND": "10000",
        "CHATMESH_HISTORY_SEND_BURST": "10000",
        "CHATMESH_HISTORY_SHUTDOWN_DRAIN_S": "0",
        "CHATMESH_HISTORY_SESSION_TARGET": f"127.0.0.1:{session_service.port}",  # peers must be accounts
    }
    log = tmp_path / "history.log"
    proc = await _start_history(env, log)
    signer = TokenSigner(load_private_key(token_keys.private), "chatmesh", 3600)
    ann, bob = (Principal(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(2))
    await accounts.ensure(ann.user_id, bob.user_id)
    auth = (("authorization", f"Bearer {signer.sign(ann).token}"),)
    acked: dict[str, str] = {}  # client id -> message id
    try:
        async with (
            gateway_for({"history": _Port(port)}, tmp_path) as gw,  # type: ignore[dict-item]
            grpc.aio.insecure_channel(gw.target) as channel,
        ):
            stub = history_pb2_grpc.HistoryServiceStub(channel)
            created = await stub.CreateConversation(
                pb.CreateConversationRequest(kind=pb.CONVERSATION_KIND_DIRECT, peer_user_id=bob.user_id), metadata=auth
            )
            conversation = created.conversation.conversation_id

            async def send_loop(count: int) -> None:
                for i in range(count):
                    request = pb.SendMessageRequest(
                        conversation_id=conversation, client_message_id=f"k{i}", text=f"m{i}"
                    )
                    while True:  # what a client SDK does: retry the same client id until acknowledged
                        try:
                            reply = await stub.SendMessage(request, metadata=auth, timeout=5)
                            acked[request.client_message_id] = reply.message.message_id
                            break
                        except grpc.aio.AioRpcError:
                            await asyncio.sleep(0.2)

            loop = asyncio.create_task(send_loop(300))
            while len(acked) < 100:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)  # mid-loop, possibly mid-send
            await proc.wait()
            killed_after = len(acked)
            await asyncio.sleep(0.5)
            proc = await _start_history(env, log)
            await asyncio.wait_for(loop, 120)
            assert killed_after < 300

            stored: list[pb.Message] = []
            token = ""
            while True:
                page = await stub.ListMessages(
                    pb.ListMessagesRequest(
                        conversation_id=conversation,
                        direction=common_pb2.DIRECTION_FORWARD,
                        page=common_pb2.PageRequest(page_size=200, page_token=token),
                    ),
                    metadata=auth,
                )
                stored.extend(page.messages)
                token = page.page.next_page_token
                if not token:
                    break
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    by_client = {m.client_message_id: m for m in stored}
    assert len(stored) == len(by_client) == 300, "a message was lost or stored twice"
    assert all(by_client[k].message_id == v for k, v in acked.items())
    assert [m.sequence for m in stored] == list(range(1, 301))
