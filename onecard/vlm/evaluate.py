"""`onecard vlm eval RUN|MODEL --data dev.jsonl`: the base model against the tuned one on the same image-question rows.

Each model answers each row's last question about its images (greedy), scored by exact match and token F1 against
the row's answer (`onecard.core.answers`, SQuAD's normalisation), and its mean cross-entropy on the answer tokens is
measured with the whole conversation as context (the loss a tune lowers). A tune RUN is its base model with the
run's adapter; the base is the same weights with the adapter switched off, unless --base names another model.
The eval is a run of its own: metrics, every answer (answers.jsonl) and the HTML report (`report.py`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from onecard.core.errors import ModelNotFoundError, OnecardError
from onecard.vlm.config import EvalConfig

__all__ = ["EvalConfig", "evaluate", "answer_loss", "score", "accuracy_by_kind", "ANSWERS", "REPORT"]

ANSWERS, REPORT = "answers.jsonl", "report.html"


def evaluate(config: EvalConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Score the target (and the base) on the rows as a recorded run; returns its metrics and report path."""
    from onecard.core.device import select_device
    from onecard.core.records import start_run
    from onecard.vlm.data import load_examples
    from onecard.vlm.model import load_processor, model_dir
    from onecard.vlm.report import write_report
    from onecard.vlm.run import DEV_SPLIT

    device = select_device(config.device)
    tuned_run, folder = _target(config.target, runs_root)
    data = config.data or (str(Path(tuned_run["dir"]) / DEV_SPLIT) if tuned_run else None)
    if data is None:
        raise OnecardError(f"{config.target} is a model, not a tune run: there is no held-out set to default to",
                           "pass --data dev.jsonl")
    examples = load_examples(data)[:config.max_rows]
    base_ref = config.base or (tuned_run["config"]["model"] if tuned_run else None)
    with start_run("vlm", config, inputs={"data": data}, runs_root=runs_root, report_to=()) as run:
        processor = load_processor(folder)
        model = _load(folder, device, tuned_run)
        tuned_name = "tuned" if tuned_run else "model"
        results = {tuned_name: score(model, processor, examples, config.max_new_tokens, f"{tuned_name} answers")}
        if tuned_run and config.base is None:
            with model.disable_adapter():  # the same base weights, the adapter off
                results["base"] = score(model, processor, examples, config.max_new_tokens, "base answers")
        elif base_ref is not None:
            del model
            base_dir = model_dir(base_ref)
            results["base"] = score(_load(base_dir, device, None), load_processor(base_dir), examples,
                                    config.max_new_tokens, "base answers")
        order = [n for n in ("base", tuned_name) if n in results]
        metrics = {n: {k: v for k, v in results[n].items() if k != "answers"} for n in order}
        with (run.dir / ANSWERS).open("w", encoding="utf-8") as f:
            for i, ex in enumerate(examples):
                row = {"line": ex.line, "images": list(ex.images), "question": ex.prompt(),
                       "reference": ex.response(), **{n: results[n]["answers"][i] for n in order}}
                f.write(json.dumps(row) + "\n")
        title = f"vlm eval: {tuned_run['id'] if tuned_run else config.target} on {len(examples)} rows of {data}"
        write_report(run.dir / REPORT, title, metrics, examples[:config.show],
                     {n: results[n]["answers"][:config.show] for n in order})
        run.set("compared", {"target": config.target, "run": tuned_run["id"] if tuned_run else None,
                             "model": str(folder), "base": base_ref, "data": data, "rows": len(examples)})
        run.set_metrics({f"{n}_{k}": v for n in order for k, v in metrics[n].items()})
        for name in (ANSWERS, REPORT):
            run.add_artifact(run.dir / name)
    return {"run_id": run.id, "dir": str(run.dir), "data": data, "rows": len(examples), **metrics,
            "report": str(run.dir / REPORT)}


def _target(ref: str, runs_root: str | None) -> tuple[dict[str, Any] | None, Path]:
    """(the tune run, its base model folder) for a run; (None, the folder) for a model."""
    from onecard.vlm.config import TINY
    from onecard.vlm.model import model_dir
    from onecard.vlm.run import find_vlm_run

    if ref != TINY and not Path(ref, "config.json").is_file():
        try:
            record = find_vlm_run(ref, runs_root)
        except OnecardError as run_error:
            try:
                return None, model_dir(ref)
            except ModelNotFoundError:
                raise ModelNotFoundError(f"{ref} is neither a vlm tune run with an adapter ({run_error.what}) nor a "
                                         "model", "pass a run id from `onecard runs list`, 'tiny', a model folder, "
                                         "or a cached hub id") from None
        return record, Path(record["model"]["dir"]) if "model" in record else model_dir(record["config"]["model"])
    return None, model_dir(ref)


def _load(folder: Path, device: str, tuned_run: dict[str, Any] | None) -> Any:
    """The model as it trained (NF4 when the run was a QLoRA), with the run's adapter; a plain model in the weights
    `onecard fit` picks for the card."""
    from onecard.core.device import supports_4bit
    from onecard.llm.fitting import fit_transformers
    from onecard.vlm.model import load_model
    from onecard.vlm.run import ADAPTER
    from onecard.vlm.train import precision

    if tuned_run is not None:
        four_bit = (tuned_run.get("plan") or {}).get("method") == "qlora"
    else:
        four_bit = device.startswith("cuda") and fit_transformers(str(folder)).quant == "nf4"
    model = load_model(folder, precision("auto", device), device, four_bit=four_bit and supports_4bit())
    if tuned_run is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, Path(tuned_run["dir"]) / ADAPTER)
    model.eval()
    return model


def score(model: Any, processor: Any, examples: list[Any], max_new_tokens: int, what: str = "answers"
          ) -> dict[str, Any]:
    """Exact match, token F1, answer loss (and its perplexity) of `model` on `examples`, and its answers."""
    from onecard.core.answers import answer_metrics
    from onecard.core.progress import track
    from onecard.vlm.model import answer

    answers = [answer(model, processor, ex.images, ex.prompt(), max_new_tokens) for ex in track(examples, what)]
    metrics = answer_metrics(answers, [ex.response() for ex in examples])
    loss = answer_loss(model, processor, examples)
    return {"exact_match": metrics["exact_match"], "token_f1": metrics["token_f1"], "loss": loss,
            "perplexity": math.exp(loss), "answers": answers}


def answer_loss(model: Any, processor: Any, examples: list[Any]) -> float:
    """Mean cross-entropy (nats per token) over every answer token of `examples`, as `vlm tune` computes it."""
    import torch

    from onecard.vlm.train import IGNORE_INDEX, VisionCollator, encode

    collate = VisionCollator(processor)
    total, tokens = 0.0, 0
    for ex in examples:
        batch = collate([encode(processor, ex.images, ex.messages())])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the model shifts labels by one
        with torch.no_grad():
            total += float(model(**batch).loss) * n
        tokens += n
    return total / max(tokens, 1)


def accuracy_by_kind(dev: str | Path, adapter: str | Path | None = None) -> dict[str, float]:
    """Exact match of the tiny model's greedy answers (with `adapter`, a tune run's, when given) on a file of the
    synthetic shapes set (`synthetic.write_set`), per question kind and over all ("all"): what the learning test and
    the benchmark report."""
    import torch

    from onecard.core.answers import exact_match
    from onecard.vlm.data import load_examples
    from onecard.vlm.model import answer, load_model, load_processor, model_dir

    folder = model_dir("tiny")
    processor, model = load_processor(folder), load_model(folder, torch.float32, "cpu")
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    kinds = [json.loads(line)["kind"] for line in Path(dev).read_text().splitlines()]
    scores: dict[str, list[float]] = {}
    for kind, ex in zip(kinds, load_examples(dev), strict=True):
        scores.setdefault(kind, []).append(exact_match(answer(model, processor, ex.images, ex.prompt(), 4),
                                                       ex.response()))
    return {kind: sum(s) / len(s) for kind, s in scores.items()} | {"all": sum(map(sum, scores.values())) / len(kinds)}
