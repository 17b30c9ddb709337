"""The supervisor's control socket: one JSON request per connection, one JSON answer.

`python -m mesh restart --rolling` and `python -m mesh scale` talk to a running supervisor
through it (``<state_dir>/run/control.sock``, reachable only by who may read the state
directory); so does `make bench-scale`. Requests: ``{"op": "replicas", "service": ...}``,
``{"op": "restart", "name": ...}``, ``{"op": "add" | "remove", "service": ...}``; answers
carry ``"ok"`` and either the result or ``"error"``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

CONTROL_SOCKET = "control.sock"


def ask_supervisor(run_dir: Path, request: dict[str, str], timeout_s: float) -> dict[str, object]:
    """Send ``request`` to the supervisor whose run directory is ``run_dir``; its answer.

    Raises:
        FileNotFoundError, ConnectionRefusedError: no supervisor runs there.
    """
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(run_dir / CONTROL_SOCKET))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65_536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data or b"{}")
    return answer if isinstance(answer, dict) else {}
