"""The capability pages in Chromium: ASR transcribes an uploaded recording into timed rows; Detect draws boxes or,
without its extra, says how to install it; VLM answers about an uploaded image or says it is not built here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot

SPEECH = Path(__file__).parents[2] / ".." / "shared" / "data" / "speech"


@pytest.mark.skipif(not (SPEECH / "LDC93S1.wav").is_file(), reason="../shared/data/speech is not here")
def test_asr_page_transcribes_an_upload(page: Any, server: str) -> None:
    pytest.importorskip("faster_whisper", reason="the asr extra is not installed: pip install 'onecard[asr]'")
    page.goto(server + "/asr")
    page.locator("#form [name=audio]").set_input_files(str(SPEECH / "LDC93S1.wav"))
    page.locator("#form [name=language]").fill("en")
    page.locator("#go").click()
    page.locator("#segments tbody tr").first.wait_for(timeout=120_000)
    assert "wash water all year" in page.locator("#segments").inner_text().lower()
    assert page.locator("#job .job-status").get_attribute("data-status") == "succeeded"
    assert page.locator("#job .job-status a[href^='/runs?id=asr-']").count() == 1
    screenshot(page, "asr-transcript")


def test_detect_page_draws_boxes_or_names_its_extra(page: Any, server: str) -> None:
    page.goto(server + "/detect")
    if importlib.util.find_spec("ultralytics") is None:
        page.locator("#missing").wait_for()
        assert "pip install 'onecard[detect]'" in page.locator("#missing").inner_text()
        assert page.locator("#ask").is_hidden()
    else:
        page.locator("#form [name=image]").wait_for()
        assert page.locator("#missing").is_hidden()
    screenshot(page, "detect-page")


def test_detect_page_draws_the_boxes_of_its_job(page: Any, serve: Any, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """The drawing, with the job's result stood in for (ultralytics need not be installed): a queue whose jobs end at
    once with two boxes, as `onecard detect predict --json` prints them."""
    from PIL import Image

    from onecard.web import jobs as jobs_module
    from onecard.web.routes import jobs as jobs_routes

    class Boxes(jobs_module.JobQueue):
        def _run(self, job: jobs_module.Job) -> None:
            job.status, job.run_id = "succeeded", None
            job.result = {"images": [{"image": job.config["source"][0], "detections": [
                {"class": 0, "name": "cat", "confidence": 0.91, "box_xyxy": [4.0, 6.0, 40.0, 50.0]},
                {"class": 1, "name": "dog", "confidence": 0.55, "box_xyxy": [50.0, 10.0, 90.0, 60.0]}]}]}

    real = jobs_module.available
    monkeypatch.setattr(jobs_module, "available", lambda m: m == "ultralytics" or real(m))
    monkeypatch.setattr(jobs_routes, "JobQueue", Boxes)
    image = tmp_path / "pets.png"
    Image.new("RGB", (100, 80), (240, 240, 240)).save(image)
    page.goto(serve() + "/detect")
    page.locator("#form [name=image]").set_input_files(str(image))
    page.locator("#go").click()
    page.locator("#canvas[data-boxes='2']").wait_for()
    assert page.locator("#boxes tbody tr").count() == 2 and "cat" in page.locator("#boxes").inner_text()
    red, green, blue, _ = page.evaluate("document.querySelector('#canvas').getContext('2d')"
                                        ".getImageData(4, 30, 1, 1).data")  # on the cat box's left edge
    assert (red, green, blue) != (240, 240, 240)
    screenshot(page, "detect-boxes")


def test_vlm_page_answers_about_an_image_or_says_it_is_not_built(page: Any, server: str, tmp_path: Path) -> None:
    from onecard.web.routes.vlm import status

    page.goto(server + "/vlm")
    state = status()
    if not state["installed"]:
        page.locator("#missing").wait_for()
        assert state["message"] in page.locator("#missing").inner_text()
        return
    from PIL import Image

    image = tmp_path / "square.png"
    Image.new("RGB", (32, 32), (200, 20, 20)).save(image)
    page.locator("#form [name=image]").set_input_files(str(image))
    page.locator("#form [name=question]").fill("What colour is the square?")
    page.locator("#form [name=max_tokens]").fill("8")
    page.locator("#go").click()
    # attached, not visible: the tiny random model's 8 tokens may decode to no text (special tokens), which leaves the
    # answer's paragraph empty, and Playwright counts an empty element as hidden
    page.locator("#answer[data-done]").wait_for(state="attached", timeout=120_000)
    assert "tokens" in page.locator("#speed").inner_text()
    screenshot(page, "vlm-answer")
