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
    page.locator("#answer[data-done]").wait_for(timeout=120_000)
    assert "tokens" in page.locator("#speed").inner_text()
    screenshot(page, "vlm-answer")
