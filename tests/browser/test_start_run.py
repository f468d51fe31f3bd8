"""The Start page runs a recipe: the tinylm path on a catalog card, a text file from a registered folder, a tiny config
in place of fit's; the train step's job finishes with a run record, linked from the page, and each step links to its
job on the Jobs page."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.browser.conftest import screenshot

TINY = "data: input.txt\npreset: tiny\nmax_iters: 20\neval_interval: 10\nlog_interval: 5\ndevice: cpu\n"


def test_the_start_page_runs_the_tinylm_recipe(page: Any, serve: Callable[..., str], tmp_path: Path,
                                               onecard_home: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "shakespeare.txt").write_text("ROMEO: But soft, what light through yonder window breaks?\n" * 200)
    server = serve(folders=(folder,))
    page.goto(server + "/")
    page.locator("#recipe-out h2").first.wait_for()
    page.select_option("#recipe-gpu", "rtx-4070-ti")
    page.select_option("#recipe-os", "linux")
    page.select_option("#recipe-path", "tinylm")
    page.get_by_text("Run this recipe here").click()
    plan = page.locator("#run-plan")
    plan.locator("#run-steps", has_text="onecard tinylm train --config tinylm.yaml").wait_for()
    assert "yes" in plan.locator("#run-install tr", has_text="pip install 'onecard[tinylm]'").inner_text()
    assert "not run here" in plan.locator("#run-install tr", has_text="curl").inner_text()  # a download: never run
    yaml_box = plan.locator("textarea[data-config='tinylm.yaml']")
    assert "preset: baby" in yaml_box.input_value()  # fit's config for the card, before the edit
    yaml_box.fill(TINY)
    plan.locator("input[data-input='input.txt']").fill("shakespeare.txt")
    page.click("#run-start")

    table = page.locator("#run-table")
    train = table.locator("tr[data-step='3']")
    train.locator(".status", has_text="succeeded").wait_for(timeout=120_000)
    run_link = train.locator("a.run")
    run_link.wait_for()
    run_id = run_link.inner_text().removeprefix("run ")
    assert run_link.get_attribute("href") == f"/runs?id={run_id}"
    record = json.loads((onecard_home / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "succeeded" and record["config"]["data"] == str(folder / "shakespeare.txt")
    job_id = train.get_attribute("data-job")
    assert train.locator("a", has_text="job").get_attribute("href") == f"/jobs#{job_id}"
    assert table.locator("tr[data-step='1'] .status").inner_text() == "answered here"  # doctor
    # the steps after it run on that run, in order, in the same queue
    table.locator("tr[data-step='4'] .status", has_text="succeeded").wait_for(timeout=120_000)
    # the recipe drawn is the last one picked, not an earlier pick's answer arriving late
    assert page.locator("#recipe-out h2").first.inner_text() == "onecard recipe: A small Transformer language model " \
                                                                 "trained from scratch"
    screenshot(page, "start_run")
    # each step links to its job on the Jobs page, where the recipe's jobs sit in the one queue
    sample_id = table.locator("tr[data-step='4']").get_attribute("data-job")
    table.locator("tr[data-step='4'] a", has_text="job").click()
    page.locator("#job-id", has_text=sample_id).wait_for()
    page.locator("#job-status", has_text="succeeded").wait_for()
    kinds = page.locator("#jobs tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(kinds) == ["tinylm bench", "tinylm eval", "tinylm sample", "tinylm train"]
