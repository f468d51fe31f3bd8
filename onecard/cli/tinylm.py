"""`onecard tinylm train / sample / eval / bench`: a small Transformer from scratch."""

from __future__ import annotations

import argparse
import json
from typing import Any

from onecard.cli.common import job_flags, make_console, print_json, run_flags, trackers


def tinylm_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.tinylm.config import BenchConfig, EvalConfig, SampleConfig, TinyLMConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train a model on a text file or folder (a recorded run)")
    add_config_flags(train, TinyLMConfig)
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its checkpoint, with its config "
                       "(flags given here override it, e.g. a larger --max-iters)")
    job_flags(train)
    for name, model, help_text in (
        ("sample", SampleConfig, "generate text from a trained run"),
        ("eval", EvalConfig, "loss, perplexity and bits per character on a file, or the run's validation split"),
        ("bench", BenchConfig, "tokens/s training and generating, MFU, and the KV cache's speedup"),
    ):
        s = sub.add_parser(name, help=help_text)
        add_config_flags(s, model, positional=("run",))
        run_flags(s)


def tinylm(args: argparse.Namespace) -> int:
    from onecard.core.config import config_from_args, dump_config, explicit_fields
    from onecard.core.extras import require

    require("torch", "tinylm")
    from onecard.tinylm import config as cfg
    from onecard.tinylm import run

    model: dict[str, Any] = {"train": cfg.TinyLMConfig, "sample": cfg.SampleConfig, "eval": cfg.EvalConfig,
                             "bench": cfg.BenchConfig}
    if args.action == "train" and args.resume:
        config: Any = run.resume_config(args.resume, explicit_fields(cfg.TinyLMConfig, args), args.runs_dir)
    else:
        config = config_from_args(model[args.action], args)
    if getattr(args, "print_config", False):
        print_json(dump_config(config))
        return 0
    if args.action == "train":
        trained = run.train(config, args.runs_dir, trackers(args), resume=args.resume)
        if args.json:
            print_json({"run_id": trained.id, "dir": str(trained.dir), **trained.record["metrics"]})
        return 0
    if args.action == "sample":
        on_text = None if args.json else (lambda text: print(text, end="", flush=True))
        samples = run.sample(config, args.runs_dir, on_text)
        print(json.dumps({"run": config.run, "samples": samples}, indent=2) if args.json else "")
        return 0
    result = run.evaluate(config, args.runs_dir) if args.action == "eval" else run.bench(config, args.runs_dir)
    if args.json:
        print_json(result)
    else:
        lines = (f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items())
        make_console().print("\n".join(lines))
    return 0
