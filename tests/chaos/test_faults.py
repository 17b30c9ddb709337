"""SIGKILL, in turn, every process of a running mesh under load, and its dependencies.

Each fault: kill the process; the supervisor restarts it; the clients keep sending (a failed
send is retried with its client_message_id, a broken Connect stream is reopened from the last
sequence) until sends are acknowledged again. At the end, every acknowledged message must be
stored once and delivered once to every device, every acknowledged submission stored once,
and every failure a client saw must have been UNAVAILABLE.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from tests.chaos.conftest import start_mesh, stop_mesh
from tests.chaos.faults import assert_books_balance, kill_and_recover, settle_and_report
from tests.chaos.load import CHANNEL_OPTIONS, Load

#: Processes killed, in this order: every service and worker, the catalog, the static server and the xDS
#: control plane, then the dependencies and the gateway.
FAULTS = [
    "history",
    "session",
    "presence",
    "forms",
    "forms-worker-1",
    "inference",
    "ingest",
    "ingest-worker-1",
    "catalog",
    "web",
    "xds",
    "nats",
    "cassandra",
    "envoy",
    # Two at once: each restarted on its own (inference's model load does not hold up history).
    "inference+history",
]


async def test_killing_each_process_under_load_loses_nothing_acknowledged(chaos_state: Path) -> None:
    mesh = start_mesh(chaos_state, {"CHATMESH_MESH_INGEST_WORKERS": "1"})
    try:
        async with grpc.aio.insecure_channel(mesh.gateway_target, options=CHANNEL_OPTIONS) as channel:
            load = Load(channel)
            await load.setup()
            try:
                only = os.environ.get("CHATMESH_CHAOS_FAULTS")  # e.g. "cassandra,nats" to run a few
                for name in only.split(",") if only else FAULTS:
                    await kill_and_recover(load, mesh, name)
                load.begin("after")
                await load.wait_progress(20, 120)
                rows = await settle_and_report(load, "faults")
            finally:
                await load.stop()
        assert_books_balance(load, rows)
    finally:
        stop_mesh(mesh)
