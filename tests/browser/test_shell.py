"""The shell every page shares: the nav bar, and the token flow from the printed link."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import screenshot


def test_nav_bar_on_a_page(page: Any, server: str) -> None:
    page.goto(server + "/fit")
    nav = page.locator("nav.shell")
    nav.get_by_text("Runs").wait_for()
    assert nav.locator("a.here").inner_text() == "Fit"
    screenshot(page, "shell")


def test_token_link_opens_the_page_and_its_api_calls(page: Any, serve: Any) -> None:
    base = serve(token="s3cret")
    assert page.goto(base + "/fit").status == 401
    assert page.goto(base + "/fit?token=s3cret").status == 200
    answer = page.evaluate("() => api('/api/fit/cards')")  # the cookie (and header) carry the token
    assert isinstance(answer, list | dict)
