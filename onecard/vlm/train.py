"""Training components for a VLM: answer-only token labels, the vision collator, TRL's SFTTrainer.

TRL's arguments, the trainer (checkpoints written whole), the run-record callback, Ctrl-C and dtype are
`onecard.core.trainer`'s, shared with `tune`; `run.py` puts them together with `onecard.core.peft_run`.

Rows are tokenized once (`encode`), with the image placeholders expanded by the processor, so the collator only
decodes the images of a batch and pads. Labels are -100 on everything but the assistant turns (and the end-of-text
token after the last one): the system and user text and every image token carry no loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from onecard.core.records import StopFlag
from onecard.core.trainer import RecordCallback, precision, sft_trainer, stop_on_signal
from onecard.vlm.model import load_images, prompt_text

__all__ = ["IGNORE_INDEX", "encode", "VisionCollator", "make_trainer", "RecordCallback", "StopFlag", "stop_on_signal",
           "precision"]

IGNORE_INDEX = -100  # the label the loss skips (torch cross_entropy's ignore_index)


def encode(processor: Any, images: Sequence[str], turns: Sequence[dict[str, str]]) -> dict[str, Any]:
    """One row as {"images", "input_ids", "labels"}: the chat template's text with its image tokens expanded, labels
    on the answers only.

    The images all open the first user turn, so every prefix that ends before an answer holds them all: its length
    is its text's token count plus what the images add (the same for each prefix, measured once on the whole row).
    """
    tokenizer = processor.tokenizer
    n = len(images)
    text = prompt_text(processor, turns, n)
    ids: list[int] = processor(text=text, images=load_images(images), return_tensors=None)["input_ids"][0]
    added = len(ids) - len(tokenizer(text)["input_ids"])  # image tokens (less the placeholders they replace)
    labels = [IGNORE_INDEX] * len(ids)
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        start = len(tokenizer(prompt_text(processor, turns[:i], n, add_generation_prompt=True))["input_ids"]) + added
        end = len(tokenizer(prompt_text(processor, turns[: i + 1], n))["input_ids"]) + added
        labels[start:end] = ids[start:end]
    if tokenizer.eos_token_id is not None and ids[-1] != tokenizer.eos_token_id:  # the model learns to stop
        ids, labels = [*ids, tokenizer.eos_token_id], [*labels, tokenizer.eos_token_id]
    return {"images": list(images), "input_ids": ids, "labels": labels}


class VisionCollator:
    """Rows from `encode` -> a padded batch with the images' pixel values (and whatever else the model's image
    processor gives, e.g. Qwen2-VL's image_grid_thw)."""

    def __init__(self, processor: Any) -> None:
        self.image_processor = processor.image_processor
        self.pad_id = processor.tokenizer.pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        T = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for b, r in enumerate(rows):  # right padding, as training wants
            n = len(r["input_ids"])
            ids[b, :n], labels[b, :n], mask[b, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        pixels = self.image_processor(load_images([p for r in rows for p in r["images"]]), return_tensors="pt")
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, **pixels}


def make_trainer(model: Any, processor: Any, args: Any, train_rows: list[dict[str, Any]],
                 dev_rows: list[dict[str, Any]], peft_config: Any, callbacks: list[Any]) -> Any:
    """An SFTTrainer over encoded rows with the vision collator (`onecard.core.trainer.sft_trainer`: checkpoints
    written whole or not at all, its console printers replaced by `callbacks`)."""
    return sft_trainer(model, processor, args, train_rows, dev_rows, peft_config, callbacks,
                       data_collator=VisionCollator(processor))
