"""The browser client in real headless Chromium against a real mesh.

The scenarios are Node tests (``web/tests/*.test.mjs``, playwright-core driving Debian's
``/usr/bin/chromium``); each file runs here against the shared ``live_mesh``, whose gateway
serves the built client (``web/dist``) and gRPC-web on one origin. Screenshots of every
step go to ``build/test-output/web/``. ``make web setup-web`` (part of ``make test``)
builds the client and installs Chromium first.

Scenarios: chat (two people), assistant (streaming, Stop), documents (collections,
uploads with progress, search, cancel, snapshots), forms (builder, an anonymous visitor,
statuses, a real dead letter redriven), operations (live charts while a job runs). The
forms scenario gets the mesh's state folder and its consumer overrides (see conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest_mesh import LiveMesh

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("CHATMESH_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "build" / "test-output" / "web"
SCENARIOS = sorted(p.name for p in (WEB / "tests").glob("*.test.mjs"))

pytestmark = pytest.mark.e2e


def _prerequisites() -> None:
    """Fail with the command that fixes it when something the scenarios need is missing."""
    if shutil.which("node") is None:
        pytest.fail("the browser tests need Node.js on PATH")
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        pytest.fail("web/node_modules is missing: run `make web`")
    if not (WEB / "dist" / "index.html").is_file():
        pytest.fail("web/dist is not built: run `make web`")
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make setup-web` (installs Debian's chromium)")


def test_there_are_browser_scenarios() -> None:
    expected = {"chat", "assistant", "grounded", "documents", "forms", "operations"}
    assert {f"{name}.test.mjs" for name in expected} <= set(SCENARIOS), SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_browser_scenario_passes_in_chromium(live_mesh: LiveMesh, scenario: str) -> None:
    _prerequisites()
    env = {
        **os.environ,
        "CHATMESH_GATEWAY_URL": live_mesh.gateway_url,
        "CHATMESH_CHROMIUM": str(CHROMIUM),
        "CHATMESH_SCREENSHOTS": str(SCREENSHOTS),
        # The forms scenario breaks (and mends) one form's sheets folder in the mesh's state,
        # and needs to know how soon the sheets consumer gives up.
        "CHATMESH_MESH_STATE_DIR": str(live_mesh.state_dir),
        "CHATMESH_FORMS_CONSUMERS": live_mesh.env.get("CHATMESH_FORMS_CONSUMERS", ""),
    }
    result = subprocess.run(
        ["node", "--test", "--test-concurrency=1", "--test-reporter=spec", f"tests/{scenario}"],
        cwd=WEB,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{scenario} failed in Chromium (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    # node:test counts a skipped step as passed: say it here, where pytest shows it.
    skipped = [line for line in result.stdout.splitlines() if "# SKIP" in line or "﹣" in line]
    if skipped:
        print(f"{scenario}: skipped steps:\n" + "\n".join(skipped))


def test_the_gateway_serves_the_client_and_grpc_web_on_one_origin(live_mesh: LiveMesh) -> None:
    _prerequisites()
    with urllib.request.urlopen(f"{live_mesh.gateway_url}/", timeout=10) as page:  # noqa: S310 - loopback
        assert page.status == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        html = page.read().decode()
    asset = html.split('src="', 1)[1].split('"', 1)[0]
    assert asset.startswith("/assets/") and asset.endswith(".js"), asset
    with urllib.request.urlopen(f"{live_mesh.gateway_url}{asset}", timeout=10) as script:  # noqa: S310
        assert script.headers["content-type"].startswith("text/javascript")
        assert "immutable" in script.headers["cache-control"]
    # A client route (no file extension) gets the app, for reloads on a deep link.
    with urllib.request.urlopen(f"{live_mesh.gateway_url}/chats/some-id", timeout=10) as deep:  # noqa: S310
        assert deep.read().decode() == html
