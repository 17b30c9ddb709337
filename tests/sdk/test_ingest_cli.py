"""`python -m chatmesh` against a live mesh (`mesh up`: the gateway, ingest with its two workers,
the embedded store), run in a pseudo-terminal as a person would: the README's commands, a
progress bar that moves, the count at the end, then snapshot create, list and restore."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import random
import re
import shlex
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from chatmesh.client import Client
from chatmesh.ingest.v1 import ingest_pb2 as pb
from tests.conftest_mesh import LiveMesh

ROOT = Path(__file__).resolve().parents[2]
POINTS = 20_000


def run_in_terminal(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 300) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal (100 columns) as its stdin, stdout and stderr; its exit code and output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=timeout_s)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, b"".join(chunks).decode(errors="replace")


def cli(live_mesh: LiveMesh, home: Path) -> tuple[list[str], dict[str, str]]:
    env = {
        **live_mesh.env,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "gen" / "python"), str(ROOT / "sdk" / "python" / "src")]),
        "CHATMESH_TARGET": live_mesh.gateway_target,
        "CHATMESH_HOME": str(home),
        "CHATMESH_PASSWORD": "correct horse battery",  # as the README's example exports it
        "TERM": "xterm",
    }
    return [sys.executable, "-m", "chatmesh"], env


def readme_commands() -> list[list[str]]:
    """The commands of the opening example of sdk/python/README.md's command-line section, in order."""
    readme = (ROOT / "sdk" / "python" / "README.md").read_text()
    section = readme[readme.index("## Command line") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block, "the command-line section opens with no sh example"
    lines = [line for line in block.group(1).splitlines() if line.startswith("python -m chatmesh")]
    return [shlex.split(line, comments=True) for line in lines]


async def test_the_readmes_cli_example_ingests_with_a_moving_progress_bar_and_manages_snapshots(
    live_mesh: LiveMesh, tmp_path: Path
) -> None:
    command, env = cli(live_mesh, tmp_path / "home")
    rng = random.Random(3)
    with open(tmp_path / "movies.jsonl", "w") as f:
        for i in range(POINTS):
            vector = [round(rng.uniform(-1, 1), 4) for _ in range(8)]
            f.write(json.dumps({"vector": vector, "payload": {"title": f"Movie {i}", "year": 1950 + i % 70}}) + "\n")
    user = f"cli{uuid.uuid4().hex[:12]}"  # the README's "ann" may be taken on a shared mesh
    outputs: dict[str, str] = {}
    snapshot_id = ""
    for words in readme_commands():
        args = [user if w == "ann" else snapshot_id if w == "<snapshot-id>" else w for w in words[3:]]
        code, out = await asyncio.to_thread(run_in_terminal, [*command, *args], env, tmp_path)
        assert code == 0, (args, out)
        key = " ".join(args[:2])
        outputs[key] = out
        if key == "snapshot create":
            snapshot_id = out.split()[0]
    assert f"logged in as {user}" in outputs["login --register"]
    assert (tmp_path / "home" / "credentials.json").stat().st_mode & 0o077 == 0  # tokens readable by the user only
    out = outputs["ingest movies.jsonl"]
    # tqdm redraws its line with carriage returns: every frame shows "<done>/<total>".
    frames = [int(n) for n in re.findall(r"\| *(\d+)/20000 ", out)]
    moving = sorted(set(frames))
    assert len(moving) >= 3, out  # the bar moved: several counts between the start and the end
    assert frames == sorted(frames)  # and never went back
    assert moving[-1] == POINTS
    assert any(0 < n < POINTS for n in moving)
    assert re.search(r"succeeded: 20000 points into movies in [0-9.]+s", out), out
    assert "20000 points" in outputs["snapshot create"]
    assert snapshot_id in outputs["snapshot list"] and "manual" in outputs["snapshot list"]
    assert "restored movies-copy: 20000 points" in outputs["snapshot restore"]
    code, out = await asyncio.to_thread(
        run_in_terminal, [*command, "ingest", "missing.jsonl", "--collection", "movies"], env, tmp_path
    )
    assert code == 1 and "missing.jsonl: no such file" in out


async def test_batches_of_256_points_of_1536_floats_pass_the_gateway_and_larger_ones_are_refused(
    live_mesh: LiveMesh,
) -> None:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with Client(live_mesh.gateway_target, options=options) as client:
        await client.register(f"big{uuid.uuid4().hex[:12]}", "correct horse battery", "laptop")
        await client.ingest.CreateCollection(
            pb.CreateCollectionRequest(name="wide", vector_size=1536, distance=pb.DISTANCE_COSINE)
        )
        rng = random.Random(1)

        def batch(start: int, count: int = 256) -> list[pb.Point]:
            return [
                pb.Point(id=pb.PointId(num=i), vector=[rng.random() for _ in range(1536)])
                for i in range(start, start + count)
            ]

        request = pb.UpsertRequest(collection="wide", points=batch(0))
        assert request.ByteSize() > 1_500_000  # over the gateway's default 1 MiB
        assert (await client.ingest.Upsert(request)).points_upserted == 256

        async def stream() -> AsyncIterator[pb.StreamUpsertRequest]:
            for start in (256, 512, 768):
                yield pb.StreamUpsertRequest(collection="wide", points=batch(start))

        totals = await client.ingest.StreamUpsert(stream())
        assert (totals.batches, totals.points_upserted) == (3, 768)
        listed = await client.ingest.ListCollections(pb.ListCollectionsRequest())
        assert listed.collections[0].points_count == 1024
        huge = pb.UpsertRequest(collection="wide", points=batch(2000, 256))
        for point in huge.points:
            point.payload.update({"blob": "x" * 30_000})
        assert huge.ByteSize() > 8 * 1024 * 1024
        try:
            await client.ingest.Upsert(huge)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        else:
            raise AssertionError("a batch over 8 MiB was taken")
