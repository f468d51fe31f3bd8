"""The Jobs page in Chromium: tinylm training jobs started from the form built from TinyLMConfig; a second waits in the
queue, visibly; Cancel interrupts the first; the second's progress and log stream, it ends, and its run id links to
the Runs page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.browser.conftest import screenshot


def test_tinylm_jobs_from_the_form_queue_cancel_finish_and_open_the_run(
        page: Any, serve: Callable[..., str], tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    line = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n"
    (texts / "corpus.txt").write_text(line * 140, encoding="utf-8")
    server = serve(folders=(texts,))
    page.goto(server + "/jobs")
    page.locator("#kind").select_option("tinylm train")
    form = page.locator("#job-form")
    form.locator("[name=data]").fill("corpus.txt")
    form.locator("[name=preset]").select_option("tiny")

    # A bad value comes back as an error naming the field, which is marked on the form.
    form.locator("[name=max_iters]").fill("0")
    page.locator("#start").click()
    page.locator("#start-error .error").wait_for()
    assert "max_iters" in page.locator("#start-error").inner_text()
    assert "invalid" in (form.locator("[name=max_iters]").get_attribute("class") or "")

    form.locator("[name=eval_interval]").fill("10")
    form.locator("[name=device]").fill("cpu")
    page.locator("#report-to").select_option("none")

    # A long job runs; a second one waits in the queue, visibly; Cancel interrupts the first and the second starts.
    form.locator("[name=max_iters]").fill("100000")
    page.locator("#start").click()
    page.wait_for_function("document.querySelector('#job-progress').textContent.includes('/100000')",
                           timeout=120_000)
    form.locator("[name=max_iters]").fill("20")
    page.locator("#start").click()
    page.locator("#jobs tr[data-status=queued] td.status:text('queued, position 1')").wait_for()
    screenshot(page, "jobs-tinylm-queued")
    page.locator("#jobs tr[data-status=running] button.cancel").click()
    page.locator("#jobs tr[data-status=interrupted]").wait_for(timeout=60_000)
    page.wait_for_function("document.querySelector('#job-log').textContent.includes('step 10')", timeout=120_000)
    screenshot(page, "jobs-tinylm-running")
    page.wait_for_function("document.querySelector('#job-status').textContent === 'succeeded'", timeout=120_000)
    assert "val loss" in page.locator("#job-log").inner_text()
    link = page.locator("#job-run a")
    run_id = link.inner_text()
    assert run_id.startswith("tinylm-") and link.get_attribute("href") == f"/runs?id={run_id}"
    page.locator(f"#jobs tr[data-status=succeeded] a.run-link:text('{run_id}')").wait_for()
    screenshot(page, "jobs-tinylm-done")
    link.click()
    page.wait_for_url(f"**/runs?id={run_id}")
