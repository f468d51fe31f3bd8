"""`onecard tinylm train / sample / eval / bench`: a small Transformer from scratch."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from onecard.cli.common import echo, emit, job_flags, recorded, resolve_config, run_flags, trackers

if TYPE_CHECKING:
    from rich.console import Console


def tinylm_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.tinylm.config import BenchConfig, EvalConfig, SampleConfig, TinyLMConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train a model on a text file or folder (a recorded run)")
    add_config_flags(train, TinyLMConfig)
    job_flags(train, resume="--max-iters")
    for name, model, help_text in (
        ("sample", SampleConfig, "generate text from a trained run"),
        ("eval", EvalConfig, "loss, perplexity and bits per character on a file, or the run's validation split"),
        ("bench", BenchConfig, "tokens/s training and generating, MFU, and the KV cache's speedup"),
    ):
        s = sub.add_parser(name, help=help_text)
        add_config_flags(s, model, positional=("run",))
        run_flags(s)


def tinylm(args: argparse.Namespace) -> int:
    from onecard.core.extras import require

    require("torch", "tinylm")
    from onecard.tinylm import run
    from onecard.tinylm.config import BenchConfig, EvalConfig, SampleConfig, TinyLMConfig

    if args.action == "train":
        config = resolve_config(args, TinyLMConfig, resume=run.resume_config)
        emit(args, recorded(run.train(config, args.runs_dir, trackers(args), resume=args.resume)))
    elif args.action == "sample":
        sampling = resolve_config(args, SampleConfig)
        samples = run.sample(sampling, args.runs_dir, None if args.json else echo)
        emit(args, {"run": sampling.run, "samples": samples}, lambda *_: print())  # ends the streamed text's line
    elif args.action == "eval":
        emit(args, run.evaluate(resolve_config(args, EvalConfig), args.runs_dir), _metrics)
    else:
        emit(args, run.bench(resolve_config(args, BenchConfig), args.runs_dir), _metrics)
    return 0


def _metrics(result: dict[str, Any], console: Console) -> None:
    console.print("\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
