"""Structured (JSON lines) logging for every service.

Secrets never reach a log line: callers log ids, never tokens or passwords, and the
formatter drops any extra field whose name marks it as a secret, as a second guard.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)
_SECRET_MARKERS = ("password", "token", "secret", "authorization", "private_key")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, service, logger, msg, and the extra fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if any(marker in key.lower() for marker in _SECRET_MARKERS):
                value = "[redacted]"
            entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str) -> None:
    """Send every logger's records to stderr as JSON lines, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The CQL driver and grpc are chatty at INFO about things the operator can't act on.
    logging.getLogger("cassandra").setLevel(max(root.level, logging.WARNING))
    # Cassandra 5 warns on every prepared statement whose tables are not keyspace-qualified,
    # even when the statement carries its keyspace (protocol v5), as ours do.
    logging.getLogger("cassandra.protocol").setLevel(logging.ERROR)
