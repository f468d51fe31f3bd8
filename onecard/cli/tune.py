"""`onecard tune data check / train / eval / export`: LoRA / QLoRA fine-tuning."""

from __future__ import annotations

import argparse
from typing import Any

from onecard.cli.common import job_flags, make_console, print_json, run_flags, trackers


def tune_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.tune.config import CheckConfig, EvalConfig, ExportConfig, TuneConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    data = sub.add_parser("data", help="inspect a JSONL file of instruction rows")
    check = data.add_subparsers(dest="data_action", required=True, metavar="ACTION").add_parser(
        "check", help="schema, every bad line by number with its reason, duplicates, and row lengths")
    add_config_flags(check, CheckConfig, positional=("data",))
    check.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    train = sub.add_parser("train", help="fine-tune a LoRA / QLoRA adapter on instruction rows (a recorded run)")
    add_config_flags(train, TuneConfig)
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint, with its config "
                       "(flags given here override it, e.g. a larger --max-steps)")
    job_flags(train)
    for name, model, help_text in (
        ("eval", EvalConfig, "dev loss, perplexity, exact match, token F1, ROUGE-L: base vs tuned, side by side"),
        ("export", ExportConfig, "the adapter, merged weights (--merge), a GGUF (--gguf TYPE), an Ollama Modelfile"),
    ):
        s = sub.add_parser(name, help=help_text)
        add_config_flags(s, model, positional=("run",))
        run_flags(s)


def tune(args: argparse.Namespace) -> int:
    from onecard.core.config import config_from_args, dump_config, explicit_fields
    from onecard.core.extras import require

    for module, package in (("torch", None), ("transformers", None), ("peft", None), ("trl", None),
                            ("datasets", None)):
        require(module, "tune", package)
    from onecard.tune import config as cfg
    from onecard.tune import run

    if args.action == "data":
        result = run.check(config_from_args(cfg.CheckConfig, args))
        if args.json:
            print_json(result)
        else:
            from onecard.tune.evaluate import render_check

            render_check(result, make_console())
        return 0 if not result["bad"] else 1
    if args.action == "train" and args.resume:
        config: Any = run.resume_config(args.resume, explicit_fields(cfg.TuneConfig, args), args.runs_dir)
    else:
        model = {"train": cfg.TuneConfig, "eval": cfg.EvalConfig, "export": cfg.ExportConfig}[args.action]
        config = config_from_args(model, args)
    if getattr(args, "print_config", False):
        print_json(dump_config(config))
        return 0
    if args.action == "train" and config.accelerate_config:
        from onecard.tune.export import write_accelerate_config

        written = write_accelerate_config(config, config.accelerate_config)
        print_json(written) if args.json else print(written["command"])
        return 0
    if args.action == "train":
        trained = run.train(config, args.runs_dir, trackers(args), resume=args.resume)
        if args.json:
            print_json({"run_id": trained.id, "dir": str(trained.dir), **trained.record["metrics"]})
        else:
            print(f"recorded as run {trained.id}; next: onecard tune eval {trained.id}")
        return 0
    if args.action == "eval":
        result = run.evaluate(config, args.runs_dir)
        if args.json:
            print_json(result)
        else:
            from onecard.tune.evaluate import render

            render(result, make_console())
        return 0
    written = run.export(config, args.runs_dir)
    print_json(written) if args.json else print("\n".join(f"{k}: {v}" for k, v in written.items()))
    return 0
