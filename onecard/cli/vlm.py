"""`onecard vlm data check / data synth / tune / chat / eval / export`: image-text data, a LoRA / QLoRA of a
LLaVA-style model, chat about images, base against tuned, and the merged model.

Each action is a row of ACTIONS: (help, add its flags, run it). A new action (chat, eval, export) is one more row.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from onecard.cli.common import (
    config_flag,
    emit,
    job_flags,
    json_flag,
    recorded,
    resolve_config,
    runs_dir_flag,
    trackers,
)

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
    synth.add_argument("--shapes", type=int, default=2, choices=(1, 2, 3), help="shapes per image")
    synth.add_argument("--seed", type=int, default=0, help="random seed (the dev set uses seed + 10000)")
    json_flag(synth)


def _data(args: argparse.Namespace) -> int:
    if args.data_action == "synth":
        from onecard.core.extras import require

        require("PIL", "vlm", package="pillow")
        from onecard.vlm.synthetic import write_splits

        written = write_splits(args.out, args.train_images, args.dev_images, args.seed, args.shapes)
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


# -- chat / eval / export -----------------------------------------------------------------------------------------


def _chat_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.vlm.config import VlmChatConfig

    add_config_flags(p, VlmChatConfig)
    config_flag(p)
    runs_dir_flag(p, writes=True)
    json_flag(p, "print each reply as JSON (text, tokens, timings, settings)")


def _chat(args: argparse.Namespace) -> int:
    import sys

    from onecard.core.progress import stderr_console
    from onecard.llm.chat import read_lines
    from onecard.vlm.chat import chat
    from onecard.vlm.config import VlmChatConfig

    config = resolve_config(args, VlmChatConfig)
    console = stderr_console()

    def status(line: str) -> None:
        console.print(line, markup=False, highlight=False, style="dim", soft_wrap=True)

    piped = sys.stdin is not None and not sys.stdin.isatty()
    stdin_text = sys.stdin.read().strip() if piped and config.prompt is not None else None
    summary = chat(config, read_lines(sys.stdin), sys.stdout, status, args.json, stdin_text, args.runs_dir)
    status(f"recorded as run {summary['run_id']}")
    return 0


def _eval_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.vlm.config import EvalConfig

    add_config_flags(p, EvalConfig, positional=("target",))
    config_flag(p)
    runs_dir_flag(p, writes=True)
    json_flag(p)


def _eval(args: argparse.Namespace) -> int:
    from onecard.vlm.config import EvalConfig
    from onecard.vlm.evaluate import evaluate

    _require()
    result = evaluate(resolve_config(args, EvalConfig), args.runs_dir)
    emit(args, result, _render_eval)
    return 0


def _render_eval(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    names = [n for n in ("base", "tuned", "model") if n in result]
    table = Table(title=f"{result['rows']} rows of {result['data']}")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for key, label, fmt in (("exact_match", "exact match", "{:.1%}"), ("token_f1", "token F1", "{:.3f}"),
                            ("loss", "answer loss", "{:.4f}"), ("perplexity", "answer perplexity", "{:.2f}")):
        table.add_row(label, *(fmt.format(result[n][key]) for n in names))
    console.print(table)
    console.print(f"report: {result['report']}\nrecorded as run {result['run_id']}")


def _export_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.vlm.config import ExportConfig

    add_config_flags(p, ExportConfig, positional=("run",))
    config_flag(p)
    runs_dir_flag(p)
    json_flag(p)


def _export(args: argparse.Namespace) -> int:
    from onecard.vlm.config import ExportConfig
    from onecard.vlm.export import export

    _require()
    written = export(resolve_config(args, ExportConfig), args.runs_dir)
    emit(args, written, lambda w, _: print("\n".join(f"{k}: {v}" for k, v in w.items())))
    return 0


Action = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

ACTIONS: dict[str, Action] = {
    "data": ("check a JSONL file of image-text rows, or write the synthetic shapes set", _data_args, _data),
    "tune": ("LoRA / QLoRA of the language model (vision tower frozen) on image-text rows (a recorded run)",
             _tune_args, _tune),
    "chat": ("one streamed answer about images, or a REPL (/image PATH), with a vision model fitted to the card",
             _chat_args, _chat),
    "eval": ("exact match, token F1 and answer loss, base against tuned, with an HTML report of the answers",
             _eval_args, _eval),
    "export": ("a tune run's merged weights (--merge) and GGUF + mmproj (--gguf, llama.cpp's converter)",
               _export_args, _export),
}


def vlm_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, (help_text, add_args, _) in ACTIONS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))


def vlm(args: argparse.Namespace) -> int:
    return ACTIONS[args.action][2](args)
