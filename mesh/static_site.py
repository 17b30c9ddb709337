"""The browser client's static files (``web/dist``), served behind the gateway's catch-all route.

``python -m mesh.static_site --root web/dist --host 127.0.0.1 --port 8090``

- GET and HEAD only; ``/healthz`` answers ``ok`` for Envoy's health check.
- A path is resolved inside the root and refused (404) if it leaves it: ``..``, encoded
  ``%2e%2e``, absolute paths and symlinks out of the root never serve a file.
- A path without a file extension that names no file (``/chat/42``: a client route) gets
  ``index.html``; a missing file with an extension is a plain 404.
- Vite's content-hashed ``/assets/*`` are cached for a year (``immutable``); everything else,
  ``index.html`` above all, is revalidated (``no-cache`` with an ETag, so a rebuild is seen
  at the next load and an unchanged file costs a 304).
- Without an ``index.html`` (client not built) every page is a 503 that says how to build it.
"""

from __future__ import annotations

import argparse
import email.utils
import logging
import mimetypes
import posixpath
import sys
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("chatmesh.static_site")

HEALTH_PATH = "/healthz"
IMMUTABLE_PREFIX = "/assets/"
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"
NOT_BUILT = b"chatmesh: the web client is not built; run `make web` and reload.\n"

# Explicit types for what Vite emits: the platform's mimetypes table varies (and may lack some).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}


def content_type(path: Path) -> str:
    """The Content-Type header of a file, from its extension."""
    suffix = path.suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def resolve(root: Path, url_path: str) -> Path | None:
    """The file under ``root`` that ``url_path`` names, or None when it names none or leaves the root.

    Args:
        root: the served directory, already resolved.
        url_path: the request path without its query, still percent-encoded.
    """
    decoded = urllib.parse.unquote(url_path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    normal = posixpath.normpath("/" + decoded.lstrip("/"))
    candidate = (root / normal.lstrip("/")).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    return candidate if candidate.is_file() else None


def is_client_route(url_path: str) -> bool:
    """A path the single-page app handles itself: its last segment has no extension."""
    last = urllib.parse.unquote(url_path).rstrip("/").rsplit("/", 1)[-1]
    return "." not in last


class StaticHandler(BaseHTTPRequestHandler):
    """Serves one directory; see the module docstring for the rules."""

    server_version = "chatmesh-static"
    sys_version = ""
    root: Path = Path()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def _refuse_method(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _plain(self, status: HTTPStatus, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        url_path = urllib.parse.urlsplit(self.path).path or "/"
        if url_path == HEALTH_PATH:
            self._plain(HTTPStatus.OK, b"ok\n", head)
            return
        index = self.root / "index.html"
        file = resolve(self.root, url_path)
        if file is None and is_client_route(url_path):
            file = index if index.is_file() else None
            if file is None:
                self._plain(HTTPStatus.SERVICE_UNAVAILABLE, NOT_BUILT, head)
                return
        if file is None:
            self._plain(HTTPStatus.NOT_FOUND, b"not found\n", head)
            return
        self._send_file(file, immutable=url_path.startswith(IMMUTABLE_PREFIX) and file != index, head=head)

    def _send_file(self, file: Path, *, immutable: bool, head: bool) -> None:
        stat = file.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        cache = CACHE_IMMUTABLE if immutable else CACHE_REVALIDATE
        if etag in (self.headers.get("If-None-Match") or ""):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", cache)
            self.end_headers()
            return
        # Read before the headers: a rebuild between stat and read must not make Content-Length lie.
        body = b"" if head else file.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type(file))
        self.send_header("Content-Length", str(stat.st_size if head else len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        log.info("%s %s", self.address_string(), format % args)


def make_server(root: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A server of ``root`` bound to ``host:port`` (0: any free port), not yet serving."""
    handler = type("BoundStaticHandler", (StaticHandler,), {"root": root.resolve()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m mesh.static_site", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="directory to serve (web/dist)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, required=True, help="port to bind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(args.root, args.host, args.port)
    log.info("serving %s on http://%s:%d", args.root.resolve(), args.host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
