"""Browser tests: the real server (uvicorn in a thread, a free port, the test's own ONECARD_HOME) driven by Debian's
Chromium through Playwright. Skipped, with the reason, when Chromium or Playwright is missing, except where
ONECARD_REQUIRE_BROWSER=1 (CI sets it): there a missing browser fails the tests rather than skipping them. Screenshots
go to tests/browser/artifacts/ (git-ignored).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve(onecard_home: Path) -> Iterator[Callable[..., str]]:
    """serve(**settings) starts a server over the test's data directory and returns its base URL."""
    pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install 'onecard[web]'")
    import uvicorn

    from onecard.web.app import create_app
    from onecard.web.settings import WebSettings

    servers: list[tuple[Any, threading.Thread]] = []

    def start(**settings: Any) -> str:
        port = free_port()
        app = create_app(WebSettings(port=port, data_dir=onecard_home, **settings))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the test server did not start on port {port}")
            time.sleep(0.02)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(serve: Callable[..., str]) -> str:
    """The base URL of a server with default settings (localhost, no token, no folder)."""
    return serve()


def _missing(reason: str) -> None:
    """Skip for want of a browser, or fail where CI asked for the browser tests to run."""
    if os.environ.get("ONECARD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"ONECARD_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (/usr/bin/chromium) under Playwright, one per test session."""
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright is not installed: pip install playwright (the test extra)")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        _missing(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which(
            "chromium"), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (its own context: no cookies shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as tests/browser/artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def stand_in_gpu_jobs(monkeypatch: pytest.MonkeyPatch, for_real: Callable[[Any], bool]) -> threading.Event:
    """Make the servers started after this call run every job for which `for_real(job)` is false as a stand-in GPU
    job: no subprocess, running until the returned event is set, then succeeded. The others run for real."""
    from onecard.web import jobs as jobs_module
    from onecard.web.routes import jobs as jobs_routes

    release = threading.Event()

    class Busy(jobs_module.JobQueue):
        def _run(self, job: jobs_module.Job) -> None:
            if for_real(job):
                super()._run(job)
                return
            release.wait(timeout=120)
            job.status = "succeeded"

    monkeypatch.setattr(jobs_routes, "JobQueue", Busy)
    return release
