"""The VLM page in Chromium: a question asked while a GPU job runs waits in the queue, visibly, then is answered by a
`vlm chat` job whose run record the page links to."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot, stand_in_gpu_jobs


def busy_server(serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, threading.Event]:
    """A server whose queue runs a stand-in GPU job (no subprocess) until the event is set; chats run for real."""
    from onecard.web.routes import vlm as vlm_routes

    if not vlm_routes.status()["installed"]:
        pytest.skip("onecard.vlm is not built or its extra is not installed")
    release = stand_in_gpu_jobs(monkeypatch, lambda job: job.kind is vlm_routes.CHAT)
    data = tmp_path / "data"
    data.mkdir()
    base: str = serve(folders=(data,))
    job = post(base + "/api/jobs", {"kind": "tinylm train", "config": {"data": str(data)}})
    deadline = time.monotonic() + 10
    while get(f"{base}/api/jobs/{job['id']}")["status"] != "running":
        assert time.monotonic() < deadline, "the stand-in GPU job did not start"
        time.sleep(0.02)
    return base, release


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps(body).encode())
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def get(url: str) -> Any:
    with urllib.request.urlopen(url) as answer:
        return json.loads(answer.read())


def square(tmp_path: Path) -> Path:
    from PIL import Image

    image = tmp_path / "square.png"
    Image.new("RGB", (32, 32), (200, 20, 20)).save(image)
    return image


def ask(page: Any, base: str, image: Path) -> None:
    page.goto(base + "/vlm")
    page.locator("#form [name=image]").set_input_files(str(image))
    page.locator("#form [name=question]").fill("What colour is the square?")
    page.locator("#form [name=max_tokens]").fill("8")
    page.locator("#go").click()


def test_a_question_waits_behind_a_running_job_then_links_its_run(page: Any, serve: Any, onecard_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    base, release = busy_server(serve, monkeypatch, tmp_path)
    image = square(tmp_path)

    ask(page, base, image)
    waiting = page.locator("#job .job-status[data-status=queued]")
    waiting.wait_for()
    assert "queued, position 1" in waiting.inner_text() and page.locator("#go").is_disabled()
    screenshot(page, "vlm-queued")
    release.set()
    page.locator("#answer[data-done]").wait_for(state="attached", timeout=120_000)  # may be empty: random weights
    assert page.locator("#job .job-status").get_attribute("data-status") == "succeeded"
    run_link = page.locator("#speed a[href^='/runs?id=vlm-']")
    assert run_link.count() == 1 and "tokens" in page.locator("#speed").inner_text()
    assert (onecard_home / "runs" / run_link.inner_text() / "chat.json").is_file()
    assert page.locator("#error").inner_text() == "" and page.locator("#go").is_enabled()
    screenshot(page, "vlm-answered")


def test_a_question_left_while_it_waits_leaves_the_queue(page: Any, serve: Any, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    base, release = busy_server(serve, monkeypatch, tmp_path)
    ask(page, base, square(tmp_path))
    page.locator("#job .job-status[data-status=queued]").wait_for()
    page.goto(base + "/jobs")  # the user goes elsewhere: nobody waits for this answer any more
    chat = page.locator("#jobs tr", has_text="vlm chat")
    chat.locator(".status", has_text="cancelled").wait_for()
    screenshot(page, "vlm-question-left")
    release.set()
