"""`python -m mesh up [--detach] | down | status | restart --rolling | keys`: the commands behind `make up`..."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mesh.control import ask_supervisor
from mesh.settings import MeshSettings
from services.runtime.tokens import generate_key_pair

SUPERVISOR_PID = "supervisor.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _ports(settings: MeshSettings) -> list[int]:
    # Not the cluster ports (another machine's nodes may use them): the ones `down` must free.
    return [p for p in settings.configured_ports() if p not in (settings.nats_cluster_port, settings.cql_storage_port)]


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def cmd_up(settings: MeshSettings, detach: bool) -> int:
    """Run the mesh in the foreground, or start it in the background and return once green."""
    if not detach:
        from mesh.supervisor import Supervisor

        logging.basicConfig(level=logging.INFO, format="chatmesh: %(message)s")
        return asyncio.run(Supervisor(settings).run())
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    pid_path = settings.run_dir / SUPERVISOR_PID
    existing = _read_pid(pid_path)
    if existing and _alive(existing):
        print(f"chatmesh: already running (supervisor pid {existing}); `make down` stops it", file=sys.stderr)
        return 1
    ready = settings.run_dir / "ready"
    ready.unlink(missing_ok=True)
    log_path = settings.log_dir / "supervisor.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mesh", "up"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_path.write_text(str(proc.pid))
    deadline = time.monotonic() + settings.ready_timeout_s + 30
    while time.monotonic() < deadline:
        if ready.exists():
            print(f"chatmesh is up: gateway at {ready.read_text().strip()} (supervisor pid {proc.pid}; `make down`)")
            return 0
        if proc.poll() is not None:
            print(f"chatmesh: up failed (exit {proc.returncode}); last lines of {log_path}:", file=sys.stderr)
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
            pid_path.unlink(missing_ok=True)
            return 1
        time.sleep(0.25)
    print("chatmesh: timed out waiting for the mesh; stopping it", file=sys.stderr)
    cmd_down(settings)
    return 1


def cmd_down(settings: MeshSettings) -> int:
    """Stop a detached mesh and anything it left; fail if a port is still taken."""
    pid = _read_pid(settings.run_dir / SUPERVISOR_PID)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    # A supervisor killed hard leaves its children's pid files: stop those process groups too.
    for pid_file in settings.run_dir.glob("*.pid") if settings.run_dir.exists() else []:
        child = _read_pid(pid_file)
        if child and _alive(child):
            try:
                os.killpg(child, signal.SIGTERM)
                time.sleep(2)
                if _alive(child):
                    os.killpg(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pid_file.unlink(missing_ok=True)
    (settings.run_dir / "ready").unlink(missing_ok=True)
    busy = [p for p in _ports(settings) if _listening(settings.host, p)]
    if busy:
        print(f"chatmesh: stopped, but ports still in use: {busy}", file=sys.stderr)
        return 1
    print("chatmesh: stopped; no process or port left behind")
    return 0


def cmd_status(settings: MeshSettings) -> int:
    """Say whether a detached mesh runs."""
    pid = _read_pid(settings.run_dir / SUPERVISOR_PID)
    ready = settings.run_dir / "ready"
    if pid and _alive(pid) and ready.exists():
        print(f"chatmesh is up: gateway at {ready.read_text().strip()} (supervisor pid {pid})")
        return 0
    print("chatmesh is not running" if not (pid and _alive(pid)) else "chatmesh is starting")
    return 3


def _ask_supervisor(settings: MeshSettings, request: dict[str, str]) -> dict[str, object]:
    """Send one request to the running supervisor's control socket; its answer."""
    return ask_supervisor(settings.run_dir, request, settings.ready_timeout_s + 120)


def cmd_restart(settings: MeshSettings, services: list[str]) -> int:
    """Restart every replica of ``services`` (all, in contract order, if none), one replica at a time.

    Each replica drains (NOT_SERVING, DRAINING in the registry, so Envoy stops routing to it),
    finishes its calls in flight, tells its streams to reconnect, stops, starts, and is routed
    to again before the next one goes.
    """
    from mesh.contracts import load_all

    order = services or [c.name for c in load_all()]
    try:
        for service in order:
            reply = _ask_supervisor(settings, {"op": "replicas", "service": service})
            if not reply.get("ok"):
                print(f"chatmesh: {reply.get('error', 'no answer')}", file=sys.stderr)
                return 1
            listed = reply.get("replicas")
            names = [str(n) for n in listed] if isinstance(listed, list) else []
            if len(names) == 1:
                print(
                    f"chatmesh: {service} runs one replica: its calls fail while it restarts "
                    f"(CHATMESH_MESH_REPLICAS={service}=2 restarts it without a failed call)",
                    flush=True,
                )
            for name in names:
                started = time.monotonic()
                reply = _ask_supervisor(settings, {"op": "restart", "name": name})
                if not reply.get("ok"):
                    print(f"chatmesh: restart of {name} failed: {reply.get('error')}", file=sys.stderr)
                    return 1
                print(f"chatmesh: {name} restarted, routed to again in {time.monotonic() - started:.1f}s", flush=True)
                time.sleep(settings.rolling_settle_s)
    except (FileNotFoundError, ConnectionRefusedError):
        print("chatmesh is not running (`make up-detached` starts it)", file=sys.stderr)
        return 3
    return 0


def cmd_scale(settings: MeshSettings, wanted: list[str]) -> int:
    """Start or stop replicas until each named service runs the count asked (``presence=3``)."""
    try:
        for item in wanted:
            service, _, count_text = item.partition("=")
            if not count_text.isdigit() or not 1 <= int(count_text) <= 16:
                print(f"chatmesh: scale takes SERVICE=N with N from 1 to 16, not {item!r}", file=sys.stderr)
                return 2
            reply = _ask_supervisor(settings, {"op": "replicas", "service": service})
            listed = reply.get("replicas")
            if not reply.get("ok") or not isinstance(listed, list):
                print(f"chatmesh: {reply.get('error', 'no answer')}", file=sys.stderr)
                return 1
            for _ in range(abs(int(count_text) - len(listed))):
                op = "add" if int(count_text) > len(listed) else "remove"
                reply = _ask_supervisor(settings, {"op": op, "service": service})
                if not reply.get("ok"):
                    print(f"chatmesh: {op} {service}: {reply.get('error')}", file=sys.stderr)
                    return 1
                print(f"chatmesh: {'started' if op == 'add' else 'stopped'} {reply['name']} (port {reply['port']})")
    except (FileNotFoundError, ConnectionRefusedError):
        print("chatmesh is not running (`make up-detached` starts it)", file=sys.stderr)
        return 3
    return 0


def main() -> int:
    """Parse the command line and run a command."""
    parser = argparse.ArgumentParser(prog="python -m mesh", description="Run the chatmesh mesh on loopback.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything; Ctrl-C stops it")
    up.add_argument("--detach", action="store_true", help="return once green, keep running in the background")
    sub.add_parser("down", help="stop a detached mesh")
    sub.add_parser("status", help="is a detached mesh running?")
    restart = sub.add_parser("restart", help="restart services' replicas one at a time, without a failed call")
    restart.add_argument("--rolling", action="store_true", required=True, help="one replica at a time (required)")
    restart.add_argument("services", nargs="*", help="services to restart, in order (default: every one)")
    scale = sub.add_parser("scale", help="start or stop replicas of running services (`presence=3`)")
    scale.add_argument("counts", nargs="+", help="SERVICE=N, replicas wanted")
    keys = sub.add_parser("keys", help="write a new access-token key pair")
    keys.add_argument("--out", type=Path, default=None, help="directory (default: <state_dir>/keys)")
    args = parser.parse_args()
    settings = MeshSettings()
    if args.command == "up":
        return cmd_up(settings, args.detach)
    if args.command == "down":
        return cmd_down(settings)
    if args.command == "status":
        return cmd_status(settings)
    if args.command == "restart":
        return cmd_restart(settings, args.services)
    if args.command == "scale":
        return cmd_scale(settings, args.counts)
    out = args.out or settings.key_dir
    generate_key_pair(out / "access_token.pem", out / "access_token.pub.pem")
    print(f"wrote {out / 'access_token.pem'} and {out / 'access_token.pub.pem'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
