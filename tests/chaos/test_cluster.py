"""The distributed engines on one machine: a 3-node Cassandra cluster (127.0.0.1-3, replication
3, QUORUM reads and writes) and a 3-node NATS cluster (JetStream streams R3), one node of each
SIGKILLed in turn under load: the mesh keeps acknowledging sends with the node down, and every
acknowledged message is stored once and delivered once to every device.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import nats

from mesh.deps.cassandra import local_cluster, query_release_version
from mesh.deps.nats import Nats, NatsConfig
from tests.chaos.conftest import start_mesh, stop_mesh
from tests.chaos.faults import RESTART_TIMEOUT_S, assert_books_balance, kill_and_recover, settle_and_report
from tests.chaos.load import CHANNEL_OPTIONS, Load

CLUSTER = {
    "CHATMESH_MESH_CASSANDRA_NODES": "3",
    "CHATMESH_MESH_NATS_NODES": "3",
    "CHATMESH_MESH_CASSANDRA_HEAP_MB": "512",
    "CHATMESH_MESH_INGEST_WORKERS": "0",
}

#: (process, its address): a non-seed node of each, then the first node of each.
NODES = [("cassandra-2", "127.0.0.2"), ("nats-2", "127.0.0.2"), ("cassandra", "127.0.0.1"), ("nats", "127.0.0.1")]


async def _node_ready(name: str, host: str, env: dict[str, str]) -> None:
    """The restarted node serves again (so that the next kill leaves a majority)."""
    if name.startswith("cassandra"):
        port = int(env["CHATMESH_MESH_CQL_PORT"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTART_TIMEOUT_S
        while True:
            try:
                await asyncio.to_thread(query_release_version, host, port, 5.0)
                return
            except Exception:  # noqa: BLE001 - not up yet
                assert loop.time() < deadline, f"{name} did not come back"
                await asyncio.sleep(1)
    node = Nats(NatsConfig(home=Path("/nonexistent"), host=host, port=int(env["CHATMESH_MESH_NATS_PORT"])))
    await node.wait_ready(RESTART_TIMEOUT_S)


def _replication_factor(env: dict[str, str]) -> str:
    cluster = local_cluster("127.0.0.2", int(env["CHATMESH_MESH_CQL_PORT"]))
    try:
        row = (
            cluster.connect()
            .execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'chatmesh'")
            .one()
        )
        return str(row.replication["replication_factor"])
    finally:
        cluster.shutdown()


async def _stream_replicas(env: dict[str, str]) -> dict[str, int]:
    nc = await nats.connect(f"nats://127.0.0.3:{env['CHATMESH_MESH_NATS_PORT']}")
    try:
        streams = await nc.jetstream().streams_info()
        return {str(info.config.name): int(info.config.num_replicas or 1) for info in streams}
    finally:
        await nc.close()


async def test_killing_one_node_of_each_cluster_under_load_loses_nothing_acknowledged(chaos_state: Path) -> None:
    mesh = start_mesh(chaos_state, CLUSTER)
    try:
        # Three copies of everything: the keyspace (read through node 2) and every stream (node 3).
        assert await asyncio.to_thread(_replication_factor, mesh.env) == "3"
        replicas = await _stream_replicas(mesh.env)
        assert replicas and set(replicas.values()) == {3}, replicas
        async with grpc.aio.insecure_channel(mesh.gateway_target, options=CHANNEL_OPTIONS) as channel:
            load = Load(channel)
            await load.setup()
            try:
                for name, host in NODES:
                    # Sends keep being acknowledged while the node is down or restarting...
                    await kill_and_recover(load, mesh, name, progress=40)
                    # ...and it rejoins before the next one is killed.
                    await _node_ready(name, host, mesh.env)
                load.begin("after")
                await load.wait_progress(20, 120)
                rows = await settle_and_report(load, "cluster")
            finally:
                await load.stop()
        assert_books_balance(load, rows)
    finally:
        stop_mesh(mesh)
