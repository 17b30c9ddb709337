"""A real Cassandra node: install, start two side by side, CQL against each, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mesh.deps.base import free_port
from mesh.deps.cassandra import CASSANDRA_VERSION, Cassandra, CassandraConfig, local_cluster
from mesh.deps.process import running

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Cassandra needs a Java 17 runtime")


def _exercise(node: Cassandra, room: str) -> dict[str, Any]:
    """Schema, a write, a read and a lightweight transaction on one node; what it saw."""
    cluster = local_cluster(node.config.host, node.config.native_port, timeout_s=30.0)
    try:
        session = cluster.connect()
        version = session.execute("SELECT release_version FROM system.local").one().release_version
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS chat WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            "CREATE TABLE IF NOT EXISTS chat.messages (room text, seq int, body text, PRIMARY KEY (room, seq))"
        )
        session.execute("INSERT INTO chat.messages (room, seq, body) VALUES (%s, 1, 'hello')", (room,))
        rooms = sorted(row.room for row in session.execute("SELECT room FROM chat.messages"))
        insert_once = "INSERT INTO chat.messages (room, seq, body) VALUES (%s, 2, %s) IF NOT EXISTS"
        first = session.execute(insert_once, (room, "first")).was_applied
        second = session.execute(insert_once, (room, "second")).was_applied
        body = session.execute("SELECT body FROM chat.messages WHERE room = %s AND seq = 2", (room,)).one().body
        return {"version": version, "rooms": rooms, "lwt": (first, second), "body": body}
    finally:
        cluster.shutdown()


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
    return pids


@pytest.mark.asyncio
async def test_cassandra_starts_answers_cql_and_stops_cleanly(tmp_path: Path) -> None:
    nodes = [
        Cassandra(
            CassandraConfig(
                home=tmp_path / f"node{i}",
                native_port=free_port(),
                storage_port=free_port(),
                heap_mb=512,
            )
        )
        for i in range(2)
    ]

    async with contextlib.AsyncExitStack() as stack:
        # Both start at once, the way parallel test sessions would; every node that did come
        # up is registered on the stack, so it is stopped even if the other one failed.
        started = await asyncio.gather(
            *(stack.enter_async_context(running(node, ready_timeout_s=180.0)) for node in nodes),
            return_exceptions=True,
        )
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        assert _processes_mentioning(str(tmp_path)), "no java process found for the running nodes"

        seen = await asyncio.gather(*(asyncio.to_thread(_exercise, node, f"room{i}") for i, node in enumerate(nodes)))

    for i, result in enumerate(seen):
        assert result["version"] == CASSANDRA_VERSION
        assert result["rooms"] == [f"room{i}"]  # Each node has its own data: nothing leaked across.
        assert result["lwt"] == (True, False)
        assert result["body"] == "first"
    assert _processes_mentioning(str(tmp_path)) == [], "a java process outlived the nodes"
    for node in nodes:
        assert "Startup complete" in node.log_path.read_text()
