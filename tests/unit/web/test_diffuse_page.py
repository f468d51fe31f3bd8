"""The Diffuse page's API: without its extra a sample is a 501 naming the pip line before anything is queued; images
are served only from a diffuse sample job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'onecard[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from onecard.web import jobs as jobs_module  # noqa: E402
from onecard.web.app import create_app  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402


def test_a_sample_without_the_diffuse_extra_is_a_501_with_its_pip_line(onecard_home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = jobs_module.available
    monkeypatch.setattr(jobs_module, "available", lambda m: m != "diffusers" and real(m))
    client = TestClient(create_app(WebSettings(data_dir=onecard_home)))
    answer = client.post("/api/diffuse/sample", json={"source": "last", "prompt": "a cat"})
    assert answer.status_code == 501 and "diffuse sample" in answer.json()["error"]
    assert answer.json()["fix"] == "install it with `pip install 'onecard[diffuse]'`"
    assert client.get("/api/jobs").json() == []


def test_images_come_only_from_a_sample_job_and_its_folder(onecard_home: Path, tmp_path: Path) -> None:
    """A job whose result names a file elsewhere (here /etc/passwd) never has it served."""

    class Done(jobs_module.JobQueue):
        def _run(self, job: jobs_module.Job) -> None:
            job.status, job.result = "succeeded", {"images": [{"file": "/etc/passwd", "seed": 0}]}

    app = create_app(WebSettings(data_dir=onecard_home, folders=(tmp_path,)))
    app.state.jobs = Done(onecard_home)
    client = TestClient(app)
    other = client.post("/api/jobs", json={"kind": "tinylm train", "config": {"data": str(tmp_path)}}).json()
    sample = client.post("/api/diffuse/sample", json={"source": "last", "prompt": "a cat"}).json()
    for job in (other, sample):
        while client.get(f"/api/jobs/{job['id']}").json()["ended_at"] is None:
            time.sleep(0.01)
    assert client.get(f"/api/diffuse/image/{other['id']}/0").status_code == 404  # not a sample job
    assert client.get(f"/api/diffuse/image/{sample['id']}/0").status_code == 403  # outside its folder
