"""The run sequence `tune train` and `vlm tune` share around TRL's trainer: the train/dev rows, the resume point, the
tries on fit's out-of-memory ladder, and the end of a run (Ctrl-C, dev loss, saves); and the length stats of rows.

A run's directory holds what the other commands need: `train.jsonl` / `dev.jsonl` (the rows it trained and held
out), `adapter/` (safetensors that peft loads, with the tokenizer or processor), `checkpoints/` (resumable), and
`loss.png`. fit's retry loop stays with the capability (core imports no fit): `Tries.step_down` is what it calls on
each step down, and `Tries.last` is what the next try trains.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from onecard.core.checkpoints import latest_checkpoint
from onecard.core.errors import DataError, OnecardError
from onecard.core.peft_config import AdapterTuneConfig
from onecard.core.progress import stderr_console
from onecard.core.records import Run, StopFlag
from onecard.core.trainer import logged_losses, stop_on_signal

__all__ = ["ADAPTER", "CHECKPOINTS", "LOSS_PLOT", "TRAIN_SPLIT", "DEV_SPLIT", "train_dev_examples",
           "dedupe_rows", "split_rows", "resume_point", "length_stats", "ran_fields", "lora_modules", "LORA_ALIASES",
           "RungSettings", "Tries"]

ADAPTER, CHECKPOINTS, LOSS_PLOT = "adapter", "checkpoints", "loss.png"
TRAIN_SPLIT, DEV_SPLIT = "train.jsonl", "dev.jsonl"

E = TypeVar("E")


class Row(Protocol):
    """A row of a data file: where it came from."""

    @property
    def line(self) -> int: ...


R = TypeVar("R", bound=Row)


def dedupe_rows(rows: list[R], key: Callable[[R], Hashable]) -> tuple[list[R], list[tuple[int, int]]]:
    """The rows without repeats (same `key`), the first kept; and (line, line of the first) for each dropped."""
    first: dict[Hashable, int] = {}
    kept, dropped = [], []
    for row in rows:
        k = key(row)
        if k in first:
            dropped.append((row.line, first[k]))
        else:
            first[k] = row.line
            kept.append(row)
    return kept, dropped


def split_rows(rows: list[E], dev_fraction: float, seed: int) -> tuple[list[E], list[E]]:
    """A seeded shuffle split: (train, dev), at least one row in each, each in file order."""
    if len(rows) < 2:
        raise DataError(f"{len(rows)} row(s) cannot be split into train and dev", "give more rows, or --dev-data")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_dev = min(len(rows) - 1, max(1, round(len(rows) * dev_fraction)))
    return [rows[i] for i in sorted(order[n_dev:])], [rows[i] for i in sorted(order[:n_dev])]


def train_dev_examples(
        config: AdapterTuneConfig, previous: dict[str, Any] | None, *, load: Callable[[str | Path], list[E]],
        dedupe: Callable[[list[E]], tuple[list[E], list[tuple[int, int]]]],
        split: Callable[[list[E], float, int], tuple[list[E], list[E]]],
) -> tuple[list[E], list[E], list[tuple[int, int]]]:
    """The train rows, the dev rows, and the duplicates dropped (line, same as line); a resumed run (`previous`, its
    record) keeps its split. `load`, `dedupe` and `split` are the capability's own (its rows differ)."""
    if previous:
        folder = Path(previous["dir"])
        return load(folder / TRAIN_SPLIT), load(folder / DEV_SPLIT), []
    examples = load(config.data)
    duplicates: list[tuple[int, int]] = []
    if config.dedupe:
        examples, duplicates = dedupe(examples)
    if config.dev_data:
        return examples, load(config.dev_data), duplicates
    train_ex, dev_ex = split(examples, config.dev_fraction, config.seed)
    return train_ex, dev_ex, duplicates


def resume_point(previous: dict[str, Any], command: str) -> tuple[Path, list[dict[str, str]]]:
    """The newest complete checkpoint of run `previous` (its record), and the newer ones skipped (cut short while
    saved), each named on stderr. `command` (e.g. `onecard tune train`) is how to start over when there is none."""
    checkpoint, skipped = latest_checkpoint(Path(previous["dir"]) / CHECKPOINTS)
    if checkpoint is None:
        why = "; ".join(f"{s['checkpoint']} lacks {s['missing']}" for s in skipped) or "no checkpoint-N folder"
        config = previous["config"]
        raise OnecardError(f"nothing to resume: run {previous['id']} has no complete checkpoint ({why})",
                           f"start over without --resume, e.g. `{command} --model {config['model']} "
                           f"--data {config['data']}` with the run's other flags")
    console = stderr_console()
    for cut in skipped:
        console.print(f"resuming from {checkpoint.name}: {cut['checkpoint']} of run {previous['id']} lacks "
                      f"{cut['missing']} (its save was cut short)")
    return checkpoint, skipped


def length_stats(lengths: list[int], max_length: int | None = None) -> dict[str, Any]:
    """rows / min / mean / median / p95 / max / total of row lengths, and how many rows exceed `max_length`.

    p95 is the value at index int(0.95 * n) of the sorted lengths (of 1..100: 96), the median the upper middle.
    """
    if not lengths:
        return {}
    ordered = sorted(lengths)
    stats: dict[str, Any] = {
        "rows": len(ordered), "min": ordered[0], "mean": round(statistics.fmean(ordered), 1),
        "median": ordered[len(ordered) // 2], "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1], "total": sum(ordered),
    }
    if max_length is not None:
        stats["over_max"] = sum(1 for n in ordered if n > max_length)
        stats["max_length"] = max_length
    return stats


# --lora-targets' short names (fit counts the same linears, onecard.fit.llm_train._TARGETS): the module names PEFT
# matches; qkv_proj for the models that fuse q, k and v (Phi-3). PEFT wants at least one of a list to match.
LORA_ALIASES = {"attn": ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj"), "qv": ("q_proj", "v_proj", "qkv_proj")}


def lora_modules(targets: str) -> tuple[str, ...] | None:
    """The module names `--lora-targets` stands for (None: all-linear, PEFT's own choice of every linear)."""
    key = targets.strip().lower()
    if key == "all-linear":
        return None
    return LORA_ALIASES.get(key) or tuple(t.strip() for t in targets.split(",") if t.strip())


def ran_fields(seq: int, longest_row: int, packing: bool = False) -> dict[str, int] | None:
    """The fit job fields a run trained differently from its plan of `seq` tokens per row, for the observation of
    its peak (`onecard.fit.observations.observe_run`): each batch is padded to its longest row, so the step that
    peaked held the longest row trained, `longest_row` (packing fills rows to `seq`)."""
    return {"seq": longest_row} if not packing and longest_row < seq else None


class RungSettings(Protocol):
    """What the tries need of a try's settings (`onecard.fit.choose.Settings`)."""

    @property
    def optimizer(self) -> str: ...
    def to_json(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=RungSettings)


class Tries(Generic[S]):
    """The tries of one training run, each with its settings and the checkpoint it starts from (a rung).

    fit's retry loop trains the last rung; on an out-of-memory error it steps down its ladder and calls `step_down`,
    which adds a rung and records it in the run (`oom_steps`). One callback and one loss history serve every try, so
    the curve goes on across tries, and from a resumed run's checkpoint.
    """

    def __init__(self, run: Run, settings: S, checkpoint: Path | None, *, command: str, plot_title: str,
                 loss_label: str) -> None:
        """`command` continues the run after a Ctrl-C (with `--resume`); `plot_title` and `loss_label` (the y axis)
        label its loss curve."""
        from onecard.core import trainer

        self.run, self.command, self.plot_title, self.loss_label = run, command, plot_title, loss_label
        self.history: dict[str, list[list[float]]] = {"train": logged_losses(checkpoint) if checkpoint else [],
                                                      "dev": []}
        self.stop = StopFlag()
        self.callback = trainer.RecordCallback(run, self.history, self.stop)
        self.rungs: list[tuple[S, Path | None]] = [(settings, checkpoint)]
        self.oom_steps: list[dict[str, Any]] = []
        self.console = stderr_console()

    @property
    def last(self) -> tuple[S, Path | None]:
        """The settings the next try trains with, and the checkpoint it continues from (None: from the start)."""
        return self.rungs[-1]

    def train(self, make_trainer: Callable[[list[Any]], Any], resume_from: Path | None) -> tuple[Any, float]:
        """Build a trainer (`make_trainer` gets the callbacks) and train it from `resume_from`; the trainer and its
        seconds per optimizer step. Ctrl-C while it steps saves a checkpoint and stops (`stop_on_signal`)."""
        with stop_on_signal(self.stop):
            trainer = make_trainer([self.callback])
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        start = int(resume_from.name.split("-")[-1]) if resume_from else 0
        return trainer, output.metrics["train_runtime"] / max(1, trainer.state.global_step - start)

    def step_down(self, change: str, after: S) -> None:
        """Record a step down fit's ladder (`change`) to the settings `after`; the next try continues from the latest
        checkpoint it can load."""
        before, resume_from = self.rungs[-1]
        saved, _ = latest_checkpoint(self.run.dir / CHECKPOINTS)
        if saved is not None and after.optimizer == before.optimizer:
            resume_from = saved  # an optimizer change cannot load the old optimizer state
        self.rungs.append((after, resume_from))
        self.oom_steps.append({"at_step": self.callback.step, "change": change,
                               "resume_from": str(resume_from) if resume_from else None,
                               "settings": after.to_json()})
        self.run.set("oom_steps", self.oom_steps)
        self.console.print(f"out of memory at step {self.callback.step}: {change}; continuing")

    def evaluate(self, trainer: Any, dev_rows: int) -> dict[str, float | None]:
        """After the last try: on a Ctrl-C, say how to continue, plot the curve so far and raise KeyboardInterrupt;
        else the first and final train loss and the dev loss (None without dev rows)."""
        if self.stop.requested:
            self.console.print(f"interrupted at step {trainer.state.global_step}: checkpoint saved; continue with "
                               f"`{self.command} --resume {self.run.id}`")
            self.plot()
            raise KeyboardInterrupt
        dev = trainer.evaluate() if dev_rows else {}
        if "eval_loss" in dev:
            self.history["dev"].append([trainer.state.global_step, dev["eval_loss"]])
        train = self.history["train"]
        return {"first_loss": train[0][1] if train else None, "final_loss": train[-1][1] if train else None,
                "dev_loss": dev.get("eval_loss")}

    def save(self, trainer: Any, processor: Any) -> None:
        """The adapter with the tokenizer or processor (and so the chat template), the loss curve, and the run's
        artifacts."""
        trainer.save_model(str(self.run.dir / ADAPTER))
        processor.save_pretrained(self.run.dir / ADAPTER)
        self.plot()
        for name in (ADAPTER, LOSS_PLOT, TRAIN_SPLIT, DEV_SPLIT):
            self.run.add_artifact(self.run.dir / name)

    def plot(self) -> None:
        """The loss curve, `loss.png`, against the optimizer step."""
        from onecard.core.plots import plot_losses

        plot_losses(self.history, self.run.dir / LOSS_PLOT, self.plot_title, xlabel="optimizer step",
                    ylabel=self.loss_label)
