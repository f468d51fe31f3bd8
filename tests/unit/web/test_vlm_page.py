"""The VLM page's API: a question about an uploaded image is a `vlm chat` job of the queue (it waits behind a running
GPU job, visibly) that leaves the run record `onecard vlm chat` leaves; a missing extra is a 501 naming the pip line."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'onecard[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from onecard.web import jobs as jobs_module  # noqa: E402
from onecard.web.app import create_app  # noqa: E402
from onecard.web.routes import vlm as vlm_routes  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402


class Busy(jobs_module.JobQueue):
    """A queue whose non-chat jobs stand for a GPU job: one runs until the `release` event (no subprocess)."""

    def __init__(self, data_dir: Path) -> None:
        self.release = threading.Event()
        super().__init__(data_dir)

    def _run(self, job: jobs_module.Job) -> None:
        if job.kind is vlm_routes.CHAT:
            super()._run(job)
            return
        self.release.wait(timeout=60)
        job.status = "succeeded"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "media"
    data.mkdir()
    return data


@pytest.fixture
def square(folder: Path) -> Path:
    from PIL import Image

    image = folder / "square.png"
    Image.new("RGB", (32, 32), (200, 20, 20)).save(image)
    return image


def events_of(client: TestClient, image: Path, **data: str) -> list[dict[str, Any]]:
    with open(image, "rb") as f, client.stream("POST", "/api/vlm/chat", files={"image": (image.name, f, "image/png")},
                                               data=data) as answer:
        assert answer.status_code == 200, answer.read()
        return [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]


def test_a_question_waits_behind_a_running_job_and_leaves_the_run_record_of_vlm_chat(
        onecard_home: Path, folder: Path, square: Path) -> None:
    if not vlm_routes.status()["installed"]:
        pytest.skip("onecard.vlm is not built or its extra is not installed")
    app = create_app(WebSettings(data_dir=onecard_home, folders=(folder,)))
    app.state.jobs = queue = Busy(onecard_home)
    client = TestClient(app)
    gpu_job = client.post("/api/jobs", json={"kind": "tinylm train", "config": {"data": str(folder)}})
    assert gpu_job.status_code == 201, gpu_job.text
    while client.get(f"/api/jobs/{gpu_job.json()['id']}").json()["status"] != "running":
        time.sleep(0.02)
    # the GPU job ends a second after the question was queued: the stream shows the question waiting meanwhile
    threading.Timer(1.0, queue.release.set).start()
    events = events_of(client, square, question="What colour is the square?", max_tokens="8")

    states = [(e["status"], e["position"]) for e in events if e["type"] == "status"]
    assert states[0] == ("queued", 1), states
    assert [s for s, _ in states].index("running") > 0 and states[-1][0] == "succeeded", states
    done = events[-1]
    assert done["type"] == "done", events
    assert 1 <= done["reply"]["completion_tokens"] <= 8 and done["backend"] == "transformers"
    assert [e for e in events if e["type"] == "text"] or done["reply"]["text"] == ""

    # the job is on the Jobs page's list, and its run is the one `onecard vlm chat` records
    listed = {j["id"]: j for j in client.get("/api/jobs").json()}
    assert listed[done["job"]]["kind"] == "vlm chat" and listed[done["job"]]["run_id"] == done["run_id"]
    assert "--prompt" not in listed[done["job"]]["argv"] and listed[done["job"]]["argv"][3:5] == ["vlm", "chat"]
    run_dir = onecard_home / "runs" / done["run_id"]
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["capability"] == "vlm" and record["status"] == "succeeded"
    assert record["config"]["prompt"] == "What colour is the square?" and record["config"]["max_tokens"] == 8
    assert record["metrics"]["turns"] == 1 and record["metrics"]["completion_tokens"] == done["reply"][
        "completion_tokens"]
    conversation = json.loads((run_dir / "chat.json").read_text(encoding="utf-8"))
    assert any(m["role"] == "assistant" for m in (conversation["messages"] if isinstance(conversation, dict)
                                                  else conversation))
    # the run lists the image it was asked about: the upload, under its generated name
    assert Path(record["config"]["image"][0]).parent == (onecard_home / "uploads").resolve()


def test_a_question_cancelled_on_the_jobs_page_ends_with_that(onecard_home: Path, folder: Path, square: Path) -> None:
    if not vlm_routes.status()["installed"]:
        pytest.skip("onecard.vlm is not built or its extra is not installed")
    app = create_app(WebSettings(data_dir=onecard_home, folders=(folder,)))
    app.state.jobs = queue = Busy(onecard_home)
    client = TestClient(app)
    client.post("/api/jobs", json={"kind": "tinylm train", "config": {"data": str(folder)}})

    def cancel_the_question() -> None:  # as the Jobs page's Cancel button, while the question waits
        while not (chats := [j for j in queue.jobs.values() if j.kind is vlm_routes.CHAT]):
            time.sleep(0.02)
        client.post(f"/api/jobs/{chats[0].id}/cancel")

    threading.Thread(target=cancel_the_question, daemon=True).start()
    events = events_of(client, square, question="hi")
    queue.release.set()
    assert events[-2]["type"] == "status" and events[-2]["status"] == "cancelled", events
    assert events[-1]["type"] == "error" and events[-1]["error"].endswith("ended cancelled"), events


def test_a_question_whose_job_fails_ends_with_the_error(onecard_home: Path, folder: Path, square: Path) -> None:
    if not vlm_routes.status()["installed"]:
        pytest.skip("onecard.vlm is not built or its extra is not installed")
    client = TestClient(create_app(WebSettings(data_dir=onecard_home, folders=(folder,))))
    events = events_of(client, square, question="hi", model=str(folder / "no-such-model"))
    assert events[-1]["type"] == "error" and "failed" in events[-1]["error"], events
    assert "no-such-model" in events[-1]["error"] and "/jobs#" in events[-1]["fix"]


def test_a_refused_question_keeps_no_upload_and_queues_nothing(onecard_home: Path, folder: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(create_app(WebSettings(data_dir=onecard_home, folders=(folder,))))
    if vlm_routes.status()["installed"]:
        outside = client.post("/api/vlm/chat", files={"image": ("a.png", b"x", "image/png")},
                              data={"question": "hi", "model": "/etc/models"})
        assert outside.status_code == 403
        empty = client.post("/api/vlm/chat", files={"image": ("a.png", b"x", "image/png")}, data={"question": ""})
        assert empty.status_code == 422 and "question" in [f["field"] for f in empty.json()["fields"]]
    monkeypatch.setattr(vlm_routes, "available", lambda m: m != "transformers")
    missing = client.post("/api/vlm/chat", files={"image": ("a.png", b"x", "image/png")}, data={"question": "hi"})
    # 501 Not Implemented: this install lacks what the request needs (RFC 9110 15.6.2); the fix is the pip line
    assert missing.status_code == 501 and "not installed" in missing.json()["error"]
    assert missing.json()["fix"] == "install it with `pip install 'onecard[vlm]'`"
    assert not any((onecard_home / "uploads").glob("*")) and client.get("/api/jobs").json() == []


def test_a_missing_extra_is_the_same_501_with_its_pip_line_wherever_it_is_found(onecard_home: Path) -> None:
    """`core.extras.require` inside any route (a library found missing as a request runs) answers as the pages'
    own install check does."""
    from onecard.core.extras import require

    app = create_app(WebSettings(data_dir=onecard_home))

    @app.get("/api/needs-faiss")
    def needs_faiss() -> None:
        require("onecard_no_such_module", "rag", "faiss-cpu")

    answer = TestClient(app).get("/api/needs-faiss")
    assert answer.status_code == 501 and answer.json()["error"].startswith("faiss-cpu is not installed")
    assert answer.json()["fix"] == "install it with `pip install 'onecard[rag]'`"
