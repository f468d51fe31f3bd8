"""The Diffuse page in Chromium, as a user draws there: a tiny random SD pipeline in a registered folder, the sample
form filled and sent while another GPU job runs; the page shows the job queued, then running, then finished, and the
images it drew; from 'last' with no train run, the error and its fix."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot, stand_in_gpu_jobs


def call(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
def test_the_diffuse_page_queues_a_sample_and_shows_its_images(page: Any, serve: Any, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    pytest.importorskip("diffusers", reason="the diffuse extra is not installed: pip install 'onecard[diffuse]'")
    from onecard.diffuse.tiny import make_tiny_pipeline

    # a tinylm job stands for a GPU job that runs until released (no subprocess); the sample runs for real
    release = stand_in_gpu_jobs(monkeypatch, lambda job: job.kind.capability == "diffuse")
    folder = tmp_path / "models"
    make_tiny_pipeline(folder / "tiny-sd")
    base = serve(folders=(folder,))
    gpu_job = call(base + "/api/jobs", {"kind": "tinylm train", "config": {"data": str(folder)}})
    deadline = time.monotonic() + 10
    while call(f"{base}/api/jobs/{gpu_job['id']}")["status"] != "running":
        assert time.monotonic() < deadline, "the stand-in GPU job did not start"
        time.sleep(0.02)

    page.goto(base + "/diffuse")
    form = page.locator("#form")
    form.locator("[name=source]").fill(str(folder / "tiny-sd"))
    form.locator("[name=prompt]").fill("a red square")
    form.locator("[name=steps]").fill("2")
    form.locator("[name=batch]").fill("2")
    form.locator("[name=seed]").fill("7")
    form.locator("[name=resolution]").fill("32")
    page.locator("#go").click()
    status = page.locator("#job .job-status")
    page.locator("#job .job-status[data-status=queued]").wait_for()
    assert "queued, position 1" in status.inner_text() and page.locator("#go").is_disabled()
    screenshot(page, "diffuse-queued")
    # every status the page shows from here on, in order
    page.evaluate("""() => { window.seen = [];
        new MutationObserver(() => { const s = document.querySelector('#job .job-status');
            if (s && s.dataset.status !== window.seen.at(-1)) window.seen.push(s.dataset.status); })
        .observe(document.getElementById('job'), {subtree: true, attributes: true, childList: true}); }""")
    release.set()
    page.locator("#images img").nth(1).wait_for(timeout=180_000)
    assert page.evaluate("window.seen") == ["running", "succeeded"]
    images = page.locator("#images img")
    assert images.count() == 2
    page.wait_for_function("[...document.querySelectorAll('#images img')].every(i => i.complete && i.naturalWidth)")
    assert page.evaluate("[...document.querySelectorAll('#images img')].map(i => i.naturalWidth)") == [32, 32]
    assert page.locator("#images figcaption").all_inner_texts() == ["seed 7", "seed 8"]
    assert images.first.get_attribute("alt") == "a red square"
    assert page.locator("#job .error").count() == 0 and page.locator("#go").is_enabled()
    screenshot(page, "diffuse-images")

    # from 'last' with no train run yet: the job fails, the page says why and how to fix it, and the images above
    # (another job's) are gone
    form.locator("[name=source]").fill("last")
    page.locator("#go").click()
    page.locator("#job .error").wait_for(timeout=120_000)
    assert status.get_attribute("data-status") == "failed"
    assert "no diffuse run" in page.locator("#job .error").inner_text()
    assert "onecard diffuse train" in page.locator("#job .error").inner_text()
    assert page.locator("#drawn").is_hidden() and page.locator("#go").is_enabled()
    screenshot(page, "diffuse-no-run")
