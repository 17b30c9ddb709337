"""``python -m chatmesh``: load files into a chatmesh mesh's vector collections, and manage snapshots.

Commands::

    python -m chatmesh login [--username ann] [--register]
    python -m chatmesh ingest FILE --collection NAME [--create --vector-size N | --model M]
    python -m chatmesh snapshot create --collection NAME (--dir PATH | --bucket B [--prefix P])
    python -m chatmesh snapshot list [--collection NAME]
    python -m chatmesh snapshot restore SNAPSHOT_ID [--into NAME] [--replace]

``ingest`` uploads FILE (JSONL, CSV, Parquet, or text to be cut into passages), starts a job on
it and draws a live progress bar fed by WatchJob; Ctrl-C cancels the job. The gateway is
``--target`` (or ``CHATMESH_TARGET``, default 127.0.0.1:8080). ``login`` keeps the device's
tokens in ``$CHATMESH_HOME/credentials.json`` (default ``~/.config/chatmesh``, readable by you
only); with none saved, ``CHATMESH_USERNAME`` and ``CHATMESH_PASSWORD`` log in on the spot.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from tqdm import tqdm

from chatmesh.client import Client, Tokens
from chatmesh.common.v1 import common_pb2
from chatmesh.inference.v1 import inference_pb2
from chatmesh.ingest.v1 import ingest_pb2 as pb

CHUNK = 1024 * 1024
DISTANCES = {"cosine": pb.DISTANCE_COSINE, "dot": pb.DISTANCE_DOT, "euclid": pb.DISTANCE_EUCLID}
FORMATS = {
    "jsonl": pb.SOURCE_FORMAT_JSONL,
    "csv": pb.SOURCE_FORMAT_CSV,
    "parquet": pb.SOURCE_FORMAT_PARQUET,
    "text": pb.SOURCE_FORMAT_TEXT,
}
TEXT_SUFFIXES = (".txt", ".text", ".md")
STATE_NAMES = {
    pb.JOB_STATE_SUCCEEDED: "succeeded",
    pb.JOB_STATE_COMPLETED_WITH_ERRORS: "completed with errors",
    pb.JOB_STATE_FAILED: "failed",
    pb.JOB_STATE_CANCELLED: "cancelled",
}


class CliError(Exception):
    """A failure to show the user as one line (exit code 1)."""


# -- credentials ---------------------------------------------------------------------------


def _home() -> Path:
    return Path(os.environ.get("CHATMESH_HOME") or Path.home() / ".config" / "chatmesh")


def _load_tokens(target: str) -> Tokens | None:
    path = _home() / "credentials.json"
    try:
        saved = json.loads(path.read_text()).get(target)
    except (OSError, ValueError):
        return None
    if not saved:
        return None
    return Tokens(
        access_token=saved["access_token"],
        access_expires_at=datetime.fromisoformat(saved["access_expires_at"]),
        refresh_token=saved["refresh_token"],
        refresh_expires_at=datetime.fromisoformat(saved["refresh_expires_at"]),
    )


def _save_tokens(target: str, tokens: Tokens | None) -> None:
    if tokens is None:
        return
    home = _home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / "credentials.json"
    try:
        everything: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        everything = {}
    everything[target] = {
        "access_token": tokens.access_token,
        "access_expires_at": tokens.access_expires_at.isoformat(),
        "refresh_token": tokens.refresh_token,
        "refresh_expires_at": tokens.refresh_expires_at.isoformat(),
    }
    partial = path.with_suffix(".part")
    partial.touch(mode=0o600)
    partial.write_text(json.dumps(everything, indent=1))
    os.replace(partial, path)


def _password() -> str:
    return os.environ.get("CHATMESH_PASSWORD") or getpass.getpass("password: ")


async def _logged_in(client: Client, target: str) -> None:
    if client.tokens is not None:
        return
    username = os.environ.get("CHATMESH_USERNAME")
    if not username:
        raise CliError("not logged in: run `python -m chatmesh login` (or set CHATMESH_USERNAME and CHATMESH_PASSWORD)")
    await client.login(username, _password(), "chatmesh-cli")
    _save_tokens(target, client.tokens)


# -- commands ------------------------------------------------------------------------------


async def login(client: Client, args: argparse.Namespace) -> int:
    """Log in (or register) and keep the tokens."""
    username = args.username or os.environ.get("CHATMESH_USERNAME") or input("username: ")
    if args.register:
        account = await client.register(username, _password(), "chatmesh-cli")
    else:
        account = await client.login(username, _password(), "chatmesh-cli")
    _save_tokens(args.target, client.tokens)
    print(f"logged in as {username} (user {account.user_id})")
    return 0


async def _ensure_collection(client: Client, args: argparse.Namespace, text: bool) -> None:
    listed: pb.ListCollectionsResponse = await client.ingest.ListCollections(
        pb.ListCollectionsRequest(page=common_pb2.PageRequest(page_size=200))
    )
    if any(c.name == args.collection for c in listed.collections):
        return
    if not args.create:
        raise CliError(f"no collection {args.collection!r}: pass --create (with --vector-size, or --model for text)")
    model, size = args.model, args.vector_size
    if text or model:
        models: inference_pb2.ListModelsResponse = await client.inference.ListModels(inference_pb2.ListModelsRequest())
        chosen = next((m for m in models.models if (m.name == model if model else m.default_for_embed)), None)
        if chosen is None:
            raise CliError(f"inference has no embedding model {model or '(default)'}")
        model, size = chosen.name, chosen.embedding_dimensions
    if not size:
        raise CliError("--create needs --vector-size for a file of vectors")
    await client.ingest.CreateCollection(
        pb.CreateCollectionRequest(
            name=args.collection, vector_size=size, distance=DISTANCES[args.distance], embedding_model=model or ""
        )
    )
    print(f"created collection {args.collection} ({size} dimensions{', ' + model if model else ''})")


async def _upload(client: Client, path: Path) -> pb.UploadSourceResponse:
    size = path.stat().st_size
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="upload", leave=False, file=sys.stderr)

    async def parts() -> AsyncIterator[pb.UploadSourceRequest]:
        yield pb.UploadSourceRequest(file_name=path.name)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                bar.update(len(chunk))
                yield pb.UploadSourceRequest(chunk=chunk)

    try:
        answer: pb.UploadSourceResponse = await client.ingest.UploadSource(parts(), timeout=3600)
    finally:
        bar.close()
    return answer


async def ingest(client: Client, args: argparse.Namespace) -> int:
    """Upload FILE, run a job on it, show its progress; 0 when every point went in."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    text = path.suffix.lower() in TEXT_SUFFIXES or args.format == "text"
    await _ensure_collection(client, args, text)
    upload = await _upload(client, path)
    started: pb.StartJobResponse = await client.ingest.StartJob(
        pb.StartJobRequest(
            collection=args.collection,
            source=pb.JobSource(
                upload_id=upload.upload_id, format=FORMATS.get(args.format or "", pb.SOURCE_FORMAT_UNSPECIFIED)
            ),
            batch_size=args.batch_size,
            parallelism=args.parallelism,
        )
    )
    job_id = started.job.job_id
    began = time.monotonic()
    bar = tqdm(total=0, unit="pt", desc=args.collection, dynamic_ncols=True, file=sys.stderr, disable=args.quiet)
    last: pb.JobProgress = started.job.progress
    try:
        async for update in client.ingest.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=7 * 86_400):
            last = update.progress
            if last.points_total and bar.total != last.points_total:
                bar.total = last.points_total
            bar.n = last.points_done + last.points_failed
            bar.set_postfix(failed=last.points_failed, refresh=False)
            bar.refresh()
    except asyncio.CancelledError:
        bar.close()
        await client.ingest.CancelJob(pb.CancelJobRequest(job_id=job_id))
        print(f"cancelled job {job_id}", file=sys.stderr)
        return 130
    bar.close()
    job: pb.GetJobResponse = await client.ingest.GetJob(pb.GetJobRequest(job_id=job_id))
    state = STATE_NAMES.get(job.job.progress.state, "ended")
    seconds = time.monotonic() - began
    print(
        f"{state}: {last.points_done} points into {args.collection}"
        f"{f', {last.points_failed} failed' if last.points_failed else ''} in {seconds:.1f}s (job {job_id})"
    )
    for failure in job.job.failures[:10]:
        print(f"  {failure.reason}", file=sys.stderr)
    if job.job.error:
        print(f"  {job.job.error}", file=sys.stderr)
    return {pb.JOB_STATE_SUCCEEDED: 0, pb.JOB_STATE_COMPLETED_WITH_ERRORS: 2}.get(job.job.progress.state, 1)


def _target_text(target: pb.SnapshotTarget) -> str:
    if target.HasField("s3"):
        return f"s3://{target.s3.bucket}/{target.s3.prefix}"
    return f"dir:{target.local.path or '.'}"


async def snapshot(client: Client, args: argparse.Namespace) -> int:
    """snapshot create | list | restore."""
    if args.action == "create":
        if args.bucket:
            target = pb.SnapshotTarget(
                s3=pb.S3Bucket(endpoint=args.endpoint or "", bucket=args.bucket, prefix=args.prefix or "")
            )
        else:
            target = pb.SnapshotTarget(local=pb.LocalDirectory(path=args.dir or ""))
        made: pb.CreateSnapshotResponse = await client.ingest.CreateSnapshot(
            pb.CreateSnapshotRequest(collection=args.collection, target=target), timeout=3600
        )
        s = made.snapshot
        print(
            f"{s.snapshot_id}  {s.collection}  {s.points_count} points  {s.size_bytes} bytes  "
            f"{_target_text(s.target)}/{s.file_name}"
        )
        return 0
    if args.action == "list":
        listed: pb.ListSnapshotsResponse = await client.ingest.ListSnapshots(
            pb.ListSnapshotsRequest(collection=args.collection or "")
        )
        for s in listed.snapshots:
            when = s.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
            kind = "scheduled" if s.scheduled else "manual"
            print(f"{s.snapshot_id}  {when}  {s.collection}  {s.points_count} points  {kind}  {_target_text(s.target)}")
        return 0
    restored: pb.RestoreSnapshotResponse = await client.ingest.RestoreSnapshot(
        pb.RestoreSnapshotRequest(
            snapshot_id=args.snapshot_id, collection=args.into or "", replace_existing=args.replace
        ),
        timeout=3600,
    )
    print(f"restored {restored.collection.name}: {restored.collection.points_count} points")
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(
        prog="python -m chatmesh", description="Load files into chatmesh and manage snapshots."
    )
    top.add_argument("--target", default=os.environ.get("CHATMESH_TARGET", "127.0.0.1:8080"), help="gateway host:port")
    top.add_argument("--secure", action="store_true", help="TLS to the gateway")
    commands = top.add_subparsers(dest="command", required=True)
    log_in = commands.add_parser("login", help="log in (or --register) and keep the tokens")
    log_in.add_argument("--username")
    log_in.add_argument("--register", action="store_true", help="create the account first")
    load = commands.add_parser("ingest", help="load a file into a collection, with a live progress bar")
    load.add_argument("file")
    load.add_argument("--collection", required=True)
    load.add_argument("--create", action="store_true", help="create the collection if it does not exist")
    load.add_argument("--vector-size", type=int, default=0, help="with --create, for a file of vectors")
    load.add_argument("--model", default="", help="with --create: the embedding model (text files: the default one)")
    load.add_argument("--distance", choices=sorted(DISTANCES), default="cosine")
    load.add_argument("--format", choices=sorted(FORMATS), help="default: from the file name")
    load.add_argument("--batch-size", type=int, default=0, help="points per batch, 64 to 256")
    load.add_argument("--parallelism", type=int, default=0, help="batches at once, 1 to 8")
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    snap = commands.add_parser("snapshot", help="create, list or restore snapshots")
    actions = snap.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create")
    create.add_argument("--collection", required=True)
    create.add_argument("--dir", help="directory under the server's snapshot root")
    create.add_argument("--bucket", help="S3 bucket (credentials are the server's)")
    create.add_argument("--prefix", help="S3 key prefix")
    create.add_argument("--endpoint", help="S3 endpoint URL (default: the server's)")
    listing = actions.add_parser("list")
    listing.add_argument("--collection")
    restore = actions.add_parser("restore")
    restore.add_argument("snapshot_id")
    restore.add_argument("--into", help="collection to restore into (default: the snapshot's)")
    restore.add_argument("--replace", action="store_true", help="replace that collection if it exists")
    return top


async def run(args: argparse.Namespace) -> int:
    """Run one command against the gateway."""
    async with Client(args.target, secure=args.secure, tokens=_load_tokens(args.target)) as client:
        try:
            if args.command == "login":
                return await login(client, args)
            await _logged_in(client, args.target)
            if args.command == "ingest":
                return await ingest(client, args)
            return await snapshot(client, args)
        finally:
            _save_tokens(args.target, client.tokens)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        print(f"chatmesh: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(f"chatmesh: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
