"""The Start page's recipe panel: a path, card and OS picked in the page give the recipe, drawn from its Markdown."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import screenshot


def test_recipe_panel_draws_the_qlora_recipe_for_a_card(page: Any, server: str) -> None:
    page.goto(server + "/")
    out = page.locator("#recipe-out")
    out.locator("h2").first.wait_for()  # the default recipe (qlora, auto) is drawn
    page.select_option("#recipe-gpu", "rtx-4070-ti")
    page.select_option("#recipe-os", "linux")
    out.get_by_text("For the NVIDIA GeForce RTX 4070 Ti (12 GiB) on linux").wait_for()
    commands = out.locator("pre[data-lang=bash]").nth(1).inner_text()
    assert "onecard tune train --config qlora.yaml" in commands
    assert "micro_batch_size:" in out.locator("pre[data-lang=yaml]").first.inner_text()
    assert out.locator("h4", has_text="Out of memory").count() == 1
    assert out.locator("ol li").count() >= 1  # the ladder's steps, in order
    assert out.locator("a[download='qlora.yaml']").count() == 1
    page.select_option("#recipe-path", "yolo")
    out.locator("pre[data-lang=yaml]", has_text="onecard detect train --config yolo.yaml").wait_for()
    screenshot(page, "recipe")
