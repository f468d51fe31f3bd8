"""The Runs page in Chromium compares two real tinylm runs: config diff, metrics side by side, loss curves overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot
from tests.unit.web.tinylm_runs import make_tinylm_runs

pytestmark = pytest.mark.slow  # two real tinylm trainings, about 20 s each on a busy 2-core CPU


def test_runs_page_compares_two_tinylm_runs(page: Any, server: str, onecard_home: Path) -> None:
    a, b = make_tinylm_runs(onecard_home)
    page.goto(server + "/runs")
    page.locator("#capability, [name=capability]").select_option("tinylm")
    page.locator(f"input[data-run='{a}']").check()
    page.locator(f"input[data-run='{b}']").check()
    page.locator("#compare").click()

    page.locator("#curves svg").wait_for()
    curves = page.locator("#curves polyline")
    labels = [curves.nth(i).get_attribute("data-series") for i in range(curves.count())]
    assert {"a train/loss", "b train/loss", "a val/loss", "b val/loss"} <= set(labels)
    diff = page.locator("#config-diff").inner_text()
    assert "learning_rate" in diff and "0.003" in diff and "0.01" in diff
    metrics = page.locator("#metrics").inner_text()
    assert "val_loss" in metrics
    screenshot(page, "runs-compare")

    page.locator(f"a:text-is('{a}')").click()
    page.locator("#view a[download='ckpt.safetensors']").wait_for()
    with page.expect_download() as download:
        page.locator("#view a[download='run.json']").click()
    assert a in Path(download.value.path()).read_text()
    screenshot(page, "runs-one")
