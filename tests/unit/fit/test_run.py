"""What `onecard doctor` ends with: the planner's few lines on a card, fast, and plain words without a GPU."""

from __future__ import annotations

import time
from collections.abc import Callable

from onecard.core import gpus
from onecard.fit.run import can_run, card_summary


def test_summary_of_a_12gb_card(set_margins: Callable[[float], None]) -> None:
    set_margins(0.1)
    lines = card_summary(gpus.lookup("4070ti"))
    text = "\n".join(lines)
    assert lines[0].startswith("NVIDIA GeForce RTX 4070 Ti: 12.0 GiB (11.70 usable), planning on the safe upper bound")
    # planned as `onecard tune` runs it (the onecard stack): on a 10 % bound micro-batch 2 fits 12 GiB, 4 does not
    assert "QLoRA Llama 3.1 8B at 2048 tokens: fits with micro-batch 2" in text and "as `onecard tune` runs it" in text
    assert "LLM inference at 4-bit (nf4), 8k context: up to" in text
    assert "SDXL 1024 px" in text and "YOLOv8 training" in text and "Whisper large-v3" in text


def test_a_small_card_needs_flags_and_says_what_does_not_fit(set_margins: Callable[[float], None]) -> None:
    set_margins(0.1)
    text = "\n".join(card_summary(gpus.lookup("rtx-4060-ti-8gb")))
    assert "QLoRA Llama 3.1 8B at 2048 tokens: does not fit" in text
    assert "SDXL 1024 px, 1 image: with VAE slicing" in text


def test_summary_is_fast() -> None:
    card = gpus.lookup("rtx-3060")
    card_summary(card)  # imports
    start = time.perf_counter()
    card_summary(card)
    assert time.perf_counter() - start < 0.1


def test_can_run_names_the_card_or_says_there_is_none() -> None:
    none = can_run([])
    assert none["card"] is None and "no NVIDIA GPU here" in none["lines"][0] and "--gpu 4070ti" in none["lines"][1]
    detected = [{"catalog_key": "rtx-3060", "vram_total_gib": 12.0}]
    assert can_run(detected)["card"] == "rtx-3060"
    assert can_run(detected, gpu="4090")["card"] == gpus.lookup("4090").key
    unlisted = can_run([{"catalog_key": None, "vram_total_gib": 20.0}])
    assert "20.0 GiB" in unlisted["lines"][0]
