"""`onecard tune data check / train / eval / export`: LoRA / QLoRA fine-tuning."""

from __future__ import annotations

import argparse

from onecard.cli.common import emit, job_flags, json_flag, recorded, resolve_config, run_flags, trackers


def tune_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.tune.config import CheckConfig, EvalConfig, ExportConfig, TuneConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    data = sub.add_parser("data", help="inspect a JSONL file of instruction rows")
    check = data.add_subparsers(dest="data_action", required=True, metavar="ACTION").add_parser(
        "check", help="schema, every bad line by number with its reason, duplicates, and row lengths")
    add_config_flags(check, CheckConfig, positional=("data",))
    json_flag(check)
    train = sub.add_parser("train", help="fine-tune a LoRA / QLoRA adapter on instruction rows (a recorded run)")
    add_config_flags(train, TuneConfig)
    job_flags(train, resume="--max-steps")
    for name, model, help_text in (
        ("eval", EvalConfig, "dev loss, perplexity, exact match, token F1, ROUGE-L: base vs tuned, side by side"),
        ("export", ExportConfig, "the adapter, merged weights (--merge), a GGUF (--gguf TYPE), an Ollama Modelfile"),
    ):
        s = sub.add_parser(name, help=help_text)
        add_config_flags(s, model, positional=("run",))
        run_flags(s)


def tune(args: argparse.Namespace) -> int:
    from onecard.core.extras import require

    for module in ("torch", "transformers", "peft", "trl", "datasets"):
        require(module, "tune")
    from onecard.tune import run
    from onecard.tune.config import CheckConfig, EvalConfig, ExportConfig, TuneConfig
    from onecard.tune.evaluate import render, render_check
    from onecard.tune.export import write_accelerate_config

    if args.action == "data":
        result = run.check(resolve_config(args, CheckConfig))
        emit(args, result, render_check)
        return 0 if not result["bad"] else 1
    if args.action == "train":
        config = resolve_config(args, TuneConfig, resume=run.resume_config)
        if config.accelerate_config:
            emit(args, write_accelerate_config(config, config.accelerate_config),
                 lambda written, _: print(written["command"]))
            return 0
        trained = run.train(config, args.runs_dir, trackers(args), resume=args.resume)
        next_step = f"recorded as run {trained.id}; next: onecard tune eval {trained.id}"
        emit(args, recorded(trained), lambda *_: print(next_step))
    elif args.action == "eval":
        emit(args, run.evaluate(resolve_config(args, EvalConfig), args.runs_dir), render)
    else:
        emit(args, run.export(resolve_config(args, ExportConfig), args.runs_dir),
             lambda written, _: print("\n".join(f"{k}: {v}" for k, v in written.items())))
    return 0
