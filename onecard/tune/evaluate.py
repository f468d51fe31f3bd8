"""Evaluation on a fixed dev set, for the base model and the tuned one on the same prompts.

Loss and perplexity are over the response tokens only (as trained). Generation is greedy, from the same chat-template
prompt as training, and scored against the reference answer by `onecard.core.answers` (SQuAD's normalisation):
exact match, token F1, and ROUGE-L (the F-measure of the longest common token subsequence, Lin 2004).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from onecard.core.answers import answer_metrics
from onecard.tune.data import Example

__all__ = ["compare", "render", "render_check"]


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def response_loss(model: Any, rows: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int) -> float:
    """Mean cross-entropy (nats/token) over the labelled (response) tokens of `rows`."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    for batch in _batches(rows, batch_size):
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad_id] * (width - len(i)) for i, _ in batch], device=device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        # token t predicts token t + 1
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                                 ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((labels[:, 1:] != -100).sum())
    return total / max(1, count)


def generate(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of token prompts (left-padded in batches), decoded without special tokens."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    eos = list({tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)} - {None})
    out = []
    for batch in _batches(prompts, batch_size):
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            new = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad, eos_token_id=eos)[:, width:]
        out += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def compare(adapter: Path, examples: list[Example], device: str, max_new_tokens: int = 128, batch_size: int = 8,
            show: int = 3, max_length: int | None = None, four_bit: bool = False) -> dict[str, Any]:
    """Metrics of the base model (adapter disabled) and the tuned one on the same rows, and a few samples."""
    from peft import PeftModel

    from onecard.tune.formatting import encode_chat, prompt_ids
    from onecard.tune.model import load_model, load_tokenizer
    from onecard.tune.train import precision

    tokenizer = load_tokenizer(adapter)
    base_dir = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(load_model(base_dir, precision("auto", device), device, four_bit), adapter)
    model.eval()
    rows = []
    for ex in examples:
        ids, labels = encode_chat(tokenizer, ex.messages)
        rows.append((ids[:max_length], labels[:max_length]) if max_length else (ids, labels))
    prompts = [prompt_ids(tokenizer, ex.messages) for ex in examples]
    references = [ex.messages[-1]["content"] for ex in examples]
    outputs: dict[str, list[str]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for name in ("base", "tuned"):
        with model.disable_adapter() if name == "base" else contextlib.nullcontext():
            loss = response_loss(model, rows, tokenizer.pad_token_id, batch_size)
            outputs[name] = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
        metrics[name] = {"loss": loss, "perplexity": math.exp(loss), **answer_metrics(outputs[name], references)}
    rows_out = zip(examples, references, outputs["base"], outputs["tuned"], strict=True)
    samples = [{"line": ex.line, "prompt": ex.messages[-2]["content"] if len(ex.messages) > 1 else "",
                "reference": ref, "base": b, "tuned": t} for ex, ref, b, t in list(rows_out)[:show]]
    return {"rows": len(examples), "max_new_tokens": max_new_tokens, "base": metrics["base"],
            "tuned": metrics["tuned"], "samples": samples}


def render(result: dict[str, Any], console: Any) -> None:
    """Base vs tuned as a table, then the side-by-side samples."""
    from rich.table import Table

    table = Table(title=f"run {result['run']} on {result['rows']} rows of {result['data']}")
    table.add_column("metric")
    for name in ("base", "tuned"):
        table.add_column(name, justify="right")
    for key in ("loss", "perplexity", "exact_match", "token_f1", "rouge_l"):
        table.add_row(key, *(f"{result[name][key]:.4g}" for name in ("base", "tuned")))
    console.print(table)
    for s in result["samples"]:
        console.print(f"\n[bold]line {s['line']}[/]: {s['prompt'][:300]}")
        for name in ("reference", "base", "tuned"):
            console.print(f"  [dim]{name}:[/] {s[name][:300]}")


def render_check(result: dict[str, Any], console: Any) -> None:
    """The data check as lines: counts, each bad line with its reason, duplicates, lengths."""
    formats = ", ".join(f"{n} {k}" for k, n in result["formats"].items()) or "none"
    console.print(f"{result['file']}: {result['rows']} rows, {result['valid']} valid ({formats}), "
                  f"{len(result['bad'])} bad, {len(result['duplicates'])} duplicates", soft_wrap=True)
    for b in result["bad"]:
        console.print(f"  line {b['line']}: {b['reason']}", markup=False, soft_wrap=True)
    for d in result["duplicates"]:
        console.print(f"  line {d['line']}: duplicate of line {d['same_as_line']}", soft_wrap=True)
    for key in ("tokens", "response_tokens", "characters"):
        if result.get(key):
            stats = result[key]
            line = ", ".join(f"{k} {stats[k]}" for k in ("min", "median", "mean", "p95", "max"))
            over = f"; {stats['over_max']} rows over {stats['max_length']}" if "over_max" in stats else ""
            console.print(f"  {key.replace('_', ' ')} per row: {line}{over}", soft_wrap=True)
    if result.get("note"):
        console.print(f"  ({result['note']})", soft_wrap=True)
