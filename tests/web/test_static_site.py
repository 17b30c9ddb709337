"""mesh/static_site.py: what the gateway's catch-all route serves (the built browser client)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.static_site import make_server


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A static site over a small dist/ (index, a hashed asset), with a secret next to it."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>chatmesh</title>")
    (root / "assets" / "index-abc123.js").write_text("console.log(1)")
    (root / "assets" / "index-abc123.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("do not serve")
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], root
    finally:
        server.shutdown()
        server.server_close()


def get(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def body(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    data = conn.getresponse().read()
    conn.close()
    return data


def test_index_is_html_and_revalidated(site: tuple[int, Path]) -> None:
    port, _ = site
    answer = get(port, "/")
    assert answer.status == 200
    assert answer.getheader("Content-Type") == "text/html; charset=utf-8"
    assert answer.getheader("Cache-Control") == "no-cache"
    assert answer.getheader("ETag")


def test_hashed_assets_are_cached_for_good_with_their_content_type(site: tuple[int, Path]) -> None:
    port, _ = site
    js = get(port, "/assets/index-abc123.js")
    assert js.status == 200
    assert js.getheader("Content-Type") == "text/javascript; charset=utf-8"
    assert js.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    assert get(port, "/assets/index-abc123.css").getheader("Content-Type") == "text/css; charset=utf-8"


def test_an_unchanged_file_costs_a_304(site: tuple[int, Path]) -> None:
    port, _ = site
    etag = get(port, "/").getheader("ETag")
    assert etag
    assert get(port, "/", headers={"If-None-Match": etag}).status == 304


def test_client_routes_get_the_index_and_missing_files_a_404(site: tuple[int, Path]) -> None:
    port, root = site
    assert body(port, "/chats/42") == (root / "index.html").read_bytes()
    assert get(port, "/assets/missing.js").status == 404


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd.txt"],
)
def test_no_path_leaves_the_root(site: tuple[int, Path], path: str) -> None:
    port, _ = site
    answer = get(port, path)
    assert answer.status == 404
    assert b"do not serve" not in body(port, path)


def test_only_get_and_head_are_served(site: tuple[int, Path]) -> None:
    port, _ = site
    assert get(port, "/", method="HEAD").status == 200
    refused = get(port, "/", method="POST")
    assert refused.status == 405
    assert refused.getheader("Allow") == "GET, HEAD"


def test_health_answers_ok(site: tuple[int, Path]) -> None:
    port, _ = site
    assert body(port, "/healthz") == b"ok\n"


def test_an_unbuilt_client_says_how_to_build_it(tmp_path: Path) -> None:
    server = make_server(tmp_path, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert get(port, "/").status == 503
        assert b"make web" in body(port, "/")
    finally:
        server.shutdown()
        server.server_close()
