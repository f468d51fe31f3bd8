"""`onecard vlm data check / data synth / tune`: image-text data and a LoRA / QLoRA of a LLaVA-style model.

Each action is a row of ACTIONS: (help, add its flags, run it). A new action (chat, eval, export) is one more row.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from onecard.cli.common import emit, job_flags, json_flag, recorded, resolve_config, trackers

__all__ = ["vlm_args", "vlm", "ACTIONS"]


def _require() -> None:
    from onecard.core.extras import require

    for module in ("torch", "transformers", "peft", "trl", "datasets", "PIL"):
        require(module, "vlm", package="pillow" if module == "PIL" else None)


# -- data check / data synth -------------------------------------------------------------------------------------


def _data_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.vlm.config import CheckConfig

    sub = p.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="missing or undecodable images, bad rows by line, token lengths (image "
                                         "tokens counted), duplicates")
    add_config_flags(check, CheckConfig, positional=("data",))
    json_flag(check)
    synth = sub.add_parser("synth", help="write the synthetic shapes set (train.jsonl, dev.jsonl, images/) to try "
                                         "the flow")
    synth.add_argument("out", metavar="OUT", help="folder to write into")
    synth.add_argument("--train-images", type=int, default=200, help="train images (3 questions each)")
    synth.add_argument("--dev-images", type=int, default=50, help="dev images (3 questions each)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (the dev set uses seed + 10000)")
    json_flag(synth)


def _data(args: argparse.Namespace) -> int:
    if args.data_action == "synth":
        from onecard.core.extras import require

        require("PIL", "vlm", package="pillow")
        from onecard.vlm.synthetic import write_splits

        written = write_splits(args.out, args.train_images, args.dev_images, args.seed)
        emit(args, {k: str(v) for k, v in written.items()},
             lambda w, _: print(f"train: {w['train']}\ndev: {w['dev']}\nnext: onecard vlm tune --model tiny "
                                f"--data {w['train']} --dev-data {w['dev']}"))
        return 0
    from onecard.vlm import run
    from onecard.vlm.config import CheckConfig

    _require()
    result = run.check(resolve_config(args, CheckConfig))
    emit(args, result, _render_check)
    return 0 if not result["bad"] else 1


def _render_check(result: dict[str, Any], console: Any) -> None:
    console.print(f"{result['file']}: {result['valid']} of {result['rows']} rows valid, {result['images']} images "
                  f"({', '.join(f'{n} {k}' for k, n in result['formats'].items()) or 'no valid rows'})")
    for bad in result["bad"]:
        console.print(f"  line {bad['line']}: {bad['reason']}")
    for dup in result["duplicates"]:
        console.print(f"  line {dup['line']}: duplicate of line {dup['same_as_line']}")
    for key in ("tokens", "image_tokens", "answer_tokens", "characters"):
        if result.get(key):
            console.print(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in result[key].items()))
    if result.get("note"):
        console.print(f"  ({result['note']})")


# -- tune ----------------------------------------------------------------------------------------------------------


def _tune_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.vlm.config import TuneConfig

    add_config_flags(p, TuneConfig)
    job_flags(p, resume="--max-steps")


def _tune(args: argparse.Namespace) -> int:
    from onecard.vlm import run
    from onecard.vlm.config import TuneConfig

    _require()
    config = resolve_config(args, TuneConfig, resume=run.resume_config)
    trained = run.tune(config, args.runs_dir, trackers(args), resume=args.resume)
    emit(args, recorded(trained), lambda *_: print(f"recorded as run {trained.id}; adapter in {trained.dir}/adapter"))
    return 0


Action = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

ACTIONS: dict[str, Action] = {
    "data": ("check a JSONL file of image-text rows, or write the synthetic shapes set", _data_args, _data),
    "tune": ("LoRA / QLoRA of the language model (vision tower frozen) on image-text rows (a recorded run)",
             _tune_args, _tune),
}


def vlm_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, (help_text, add_args, _) in ACTIONS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))


def vlm(args: argparse.Namespace) -> int:
    return ACTIONS[args.action][2](args)
