"""Crashes: a worker SIGKILLed in the middle of a batch, and nats-server restarted under submit load.

After each, every acknowledged submission is processed, stored once and in the sheet once.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from chatmesh.common.v1 import common_pb2
from chatmesh.forms.v1 import forms_pb2 as fpb
from mesh.deps.base import ProcessSpec, free_port
from mesh.deps.nats import Nats, NatsConfig
from mesh.deps.process import launch, terminate
from services.runtime.cql import CqlSettings
from tests.conftest import KeyPair
from tests.conftest_forms import FormsEnv, forms_stack, wait_for
from tests.services.forms.helpers import field, submit_request, text

ROOT = Path(__file__).resolve().parents[3]
FIELDS = [field("name", fpb.FIELD_TYPE_TEXT, required=True), field("n", fpb.FIELD_TYPE_INTEGER)]
QUICK_REDELIVERY = {name: {"ack_wait_s": 2.0} for name in ("store", "sheets", "screen", "confirm")}


def _worker_env(env: FormsEnv, metrics_port: int) -> dict[str, str]:
    s = env.settings
    prefix = "CHATMESH_FORMS_"
    return {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
        f"{prefix}NATS__URL": s.nats.url,
        f"{prefix}CQL__HOSTS": json.dumps(s.cql.hosts),
        f"{prefix}CQL__PORT": str(s.cql.port),
        f"{prefix}CQL__KEYSPACE": s.cql.keyspace,
        f"{prefix}METRICS_PORT": str(metrics_port),
        f"{prefix}WORKER_NAME": "forms-worker-crash",
        f"{prefix}SHEETS__DIRECTORY": str(s.sheets.directory),
        f"{prefix}SHEETS__RENDER_INTERVAL_S": "0.2",
        f"{prefix}SHEETS__FLUSH_INTERVAL_S": "1.0",
        f"{prefix}SHEETS__FLUSH_ROWS": "1000",
        f"{prefix}CONSUMERS": json.dumps(QUICK_REDELIVERY),
    }


@asynccontextmanager
async def worker_process(env: FormsEnv, home: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m services.forms.worker`` for ``env``; yields once its /metrics answers."""
    port = free_port()
    spec = ProcessSpec(
        name="forms-worker",
        argv=[sys.executable, "-m", "services.forms.worker"],
        env=_worker_env(env, port),
        cwd=ROOT,
        log_path=home / "worker.log",
    )
    proc = await launch(spec)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(300):
            try:
                await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=1).read())
                break
            except OSError:
                assert proc.returncode is None, (home / "worker.log").read_text()[-2000:]
                await asyncio.sleep(0.1)
        yield proc
    finally:
        await terminate(proc, 15)


async def _stored_ids(env: FormsEnv, owner_auth: tuple[tuple[str, str]], form_id: str) -> list[str]:
    ids, token = [], ""
    while True:
        page = await env.stub.ListSubmissions(
            fpb.ListSubmissionsRequest(form_id=form_id, page=common_pb2.PageRequest(page_size=200, page_token=token)),
            metadata=owner_auth,
        )
        ids += [s.submission_id for s in page.submissions]
        token = page.page.next_page_token
        if not token:
            return ids


def _sheet_ids(env: FormsEnv, form_id: str) -> list[str]:
    path = env.settings.sheets.directory / form_id / "sheet.csv"
    if not path.exists():
        return []
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    return [r[0] for r in rows[1:]]


async def test_a_worker_killed_mid_batch_leaves_no_gap_and_no_duplicate(
    module_cql: CqlSettings, module_keys: KeyPair, tmp_path: Path
) -> None:
    async with forms_stack(tmp_path, module_cql, module_keys, workers=0, submit_burst=10_000) as env:
        owner = env.user()
        form = await env.form(owner, FIELDS)
        async with worker_process(env, tmp_path / "first") as proc:
            submitted = [
                (
                    await env.stub.Submit(
                        submit_request(form.form_id, name=text(f"n{i}"), n=fpb.FieldValue(integer_value=i)),
                        metadata=owner.auth,
                    )
                ).submission_id  # fmt: skip
                for i in range(200)
            ]
            # Kill while the sheets consumer holds a batch it has not committed (it gathers for 1 s).
            await wait_for(
                lambda: env.stub.ConsumerStats(fpb.ConsumerStatsRequest(consumer="sheets"), metadata=owner.auth),
                lambda r: r.consumers and r.consumers[0].ack_pending > 0,
                20,
            )
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        unprocessed = [
            sid for sid in submitted
            if not (await env.stub.GetSubmission(fpb.GetSubmissionRequest(submission_id=sid))).status.processed
        ]  # fmt: skip
        assert unprocessed, "the worker must have died with work in hand"
        async with worker_process(env, tmp_path / "second"):
            for sid in submitted:
                await env.wait_processed(sid, timeout_s=60)
            stored = await _stored_ids(env, owner.auth, form.form_id)
            assert sorted(stored) == sorted(submitted)  # once each, none missing
            in_sheet = await wait_for(lambda: asyncio.to_thread(_sheet_ids, env, form.form_id),
                                      lambda ids: len(ids) >= len(submitted), 20)  # fmt: skip
            assert in_sheet == sorted(submitted)  # once each, in submission order


class RestartableNats:
    """A nats-server this test stops and starts again on the same port and store."""

    def __init__(self, home: Path) -> None:
        self.dep = Nats(NatsConfig(home=home, port=free_port()))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.dep.prepare)
        self.proc = await launch(self.dep.spec())
        await self.dep.wait_ready(30)

    async def stop(self) -> None:
        if self.proc is not None:
            await terminate(self.proc, 15)
            self.proc = None


async def test_nats_restarted_under_load_loses_no_acknowledged_submission(
    module_cql: CqlSettings, module_keys: KeyPair, tmp_path: Path
) -> None:
    nats = RestartableNats(tmp_path / "nats")
    await nats.start()
    try:
        async with forms_stack(
            tmp_path, module_cql, module_keys, nats=nats.dep, submit_burst=10_000, consumers=QUICK_REDELIVERY
        ) as env:
            owner = env.user()
            form = await env.form(owner, FIELDS)
            accepted: list[str] = []
            refused: list[grpc.StatusCode] = []
            stop = asyncio.Event()

            async def client() -> None:
                while not stop.is_set():
                    try:
                        reply = await env.stub.Submit(
                            submit_request(form.form_id, name=text(uuid.uuid4().hex)), metadata=owner.auth, timeout=15
                        )
                        accepted.append(reply.submission_id)
                    except grpc.aio.AioRpcError as err:
                        refused.append(err.code())
                        await asyncio.sleep(0.05)

            clients = [asyncio.create_task(client()) for _ in range(8)]
            await asyncio.sleep(1.5)
            before = len(accepted)
            await nats.stop()  # SIGTERM while clients submit, then the same server again
            await asyncio.sleep(1.0)
            await nats.start()
            restarted = len(accepted)
            await wait_for(lambda: asyncio.sleep(0, len(accepted)), lambda n: n >= restarted + 100, 60)
            stop.set()
            await asyncio.gather(*clients)
            assert before > 0
            assert set(refused) <= {grpc.StatusCode.UNAVAILABLE}, refused  # never INTERNAL, UNKNOWN...
            for sid in accepted:
                await env.wait_processed(sid, timeout_s=60)
            stored = await _stored_ids(env, owner.auth, form.form_id)
            assert set(accepted) <= set(stored) and len(stored) == len(set(stored))
    finally:
        await nats.stop()
