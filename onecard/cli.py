"""The `onecard` command: a table of commands. Each parses its flags and calls the library; no logic lives here.

Heavy modules are imported inside the command that needs them, so `onecard --help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from onecard import __version__

__all__ = ["main", "COMMANDS"]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _job_flags(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """Flags every job command shares."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--runs-dir", metavar="DIR", help="where run records go (default: the data directory)")
    parser.add_argument(
        "--report-to", nargs="+", default=["trackio"], choices=["trackio", "wandb", "none"],
        help="metric trackers: trackio (local, default), wandb, none",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _trackers(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(t for t in args.report_to if t != "none")


# -- doctor ---------------------------------------------------------------------------------------------------------


def _doctor_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.core.doctor import BenchConfig

    p.add_argument("--bench", action="store_true", help="also measure matmul TFLOPS and memory bandwidth (a run)")
    p.add_argument("--gpu", metavar="CARD", help="say what this card from the catalog can run (4070ti, rtx-3060...) "
                   "instead of the detected one")
    add_config_flags(p, BenchConfig)
    _job_flags(p)


def _doctor(args: argparse.Namespace) -> int:
    from onecard.core import doctor
    from onecard.core.config import config_from_args, dump_config

    config = config_from_args(doctor.BenchConfig, args)
    if args.print_config:
        _print_json(dump_config(config))
        return 0
    data = doctor.report()
    if args.bench:
        run = doctor.run_bench(config, args.runs_dir, _trackers(args))
        data["bench"] = run.record["bench"]
        data["run_id"] = run.id
    from onecard.fit.run import can_run

    data["can_run"] = can_run(data["gpus"], args.gpu)
    if args.json:
        _print_json(data)
        return 0
    console = _console()
    doctor.render(data, console)
    if args.bench:
        doctor.render_bench(data["bench"], console)
        console.print(f"recorded as run [bold]{data['run_id']}[/] (see `onecard runs show {data['run_id']}`)")
    doctor.render_lines("What this card can run (onecard fit)", data["can_run"]["lines"], console)
    return 0


# -- runs -----------------------------------------------------------------------------------------------------------


def _runs_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="every run so far: capability, status, key metrics, when")
    ls.add_argument("--capability", help="only runs of this capability (tune, rag, doctor...)")
    ls.add_argument("--status", choices=["running", "succeeded", "failed", "interrupted"])
    ls.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default: 50)")
    show = sub.add_parser("show", help="the full record of one run")
    show.add_argument("run", help="run id, unique prefix, run directory, or 'last'")
    cmp = sub.add_parser("compare", help="config and metric differences of two runs side by side")
    cmp.add_argument("a", help="first run")
    cmp.add_argument("b", help="second run")
    for s in (ls, show, cmp):
        s.add_argument("--runs-dir", metavar="DIR", help="where run records are (default: the data directory)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _runs(args: argparse.Namespace) -> int:
    from onecard.core import runs

    console = _console()
    if args.action == "list":
        found = [
            r for r in runs.load_runs(args.runs_dir)
            if (args.capability is None or r.get("capability") == args.capability)
            and (args.status is None or r.get("status") == args.status)
        ][: args.limit]
        if args.json:
            _print_json({"runs": found})
        else:
            runs.render_list(found, console)
    elif args.action == "show":
        record = runs.find_run(args.run, args.runs_dir)
        if args.json:
            _print_json(record)
        else:
            runs.render_show(record, console)
    else:
        diff = runs.compare(runs.find_run(args.a, args.runs_dir), runs.find_run(args.b, args.runs_dir))
        if args.json:
            _print_json(diff)
        else:
            runs.render_compare(diff, console)
    return 0


# -- fit ------------------------------------------------------------------------------------------------------------


def _fit_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.fit.job import FitJob

    add_config_flags(p, FitJob, positional=("model",))
    p.add_argument("--solve", action="store_true", help="search the settings that fit the card, ranked")
    p.add_argument("--top", type=int, default=10, help="with --solve: how many plans to list (default: 10)")
    p.add_argument("--trace", action="store_true",
                   help="also count the peak on fake tensors, no GPU needed (pip install 'onecard[fit]')")
    p.add_argument("--measure", action="store_true",
                   help="run the job for a few steps on this machine's GPU and print predicted vs measured (a run)")
    _job_flags(p)


def _fit(args: argparse.Namespace) -> int:
    from onecard.core.config import config_from_args, dump_config
    from onecard.fit import report
    from onecard.fit.job import FitJob
    from onecard.fit.run import answer, measure_run

    job = config_from_args(FitJob, args)
    if args.print_config:
        _print_json(dump_config(job))
        return 0
    if args.measure:
        predicted, measured, run_id = measure_run(job, runs_root=args.runs_dir, report_to=_trackers(args))
        rows = [(name, round(p, 3), None if m is None else round(m, 3)) for name, p, m in measured.versus(
            predicted.estimate)]
        if args.json:
            _print_json({"run_id": run_id, "device": measured.device, "predicted_vs_measured": rows,
                         "notes": measured.notes})
        else:
            report.render_measured(predicted, measured, _console())
            _console().print(f"recorded as run [bold]{run_id}[/]")
        return 0
    result = answer(job, fixed=job.model_fields_set, solve=args.solve, top=args.top, trace=args.trace)
    if args.json:
        _print_json(result.to_json())
        return 0
    console = _console()
    report.render(result.plan, console, result.fixes)
    if result.traced is not None:
        report.render_trace(result.plan.estimate, result.traced, console)
    if result.solutions is not None:
        report.render_solutions(result.solutions, console, job)
    return 0


# -- tinylm ---------------------------------------------------------------------------------------------------------


def _tinylm_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.tinylm.config import BenchConfig, EvalConfig, SampleConfig, TinyLMConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train a model on a text file or folder (a recorded run)")
    add_config_flags(train, TinyLMConfig)
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its checkpoint, with its config "
                       "(flags given here override it, e.g. a larger --max-iters)")
    _job_flags(train)
    for name, model, help_text in (
        ("sample", SampleConfig, "generate text from a trained run"),
        ("eval", EvalConfig, "loss, perplexity and bits per character on a file, or the run's validation split"),
        ("bench", BenchConfig, "tokens/s training and generating, MFU, and the KV cache's speedup"),
    ):
        s = sub.add_parser(name, help=help_text)
        add_config_flags(s, model, positional=("run",))
        s.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
        s.add_argument("--runs-dir", metavar="DIR", help="where run records are (default: the data directory)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _tinylm(args: argparse.Namespace) -> int:
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
        _print_json(dump_config(config))
        return 0
    if args.action == "train":
        trained = run.train(config, args.runs_dir, _trackers(args), resume=args.resume)
        if args.json:
            _print_json({"run_id": trained.id, "dir": str(trained.dir), **trained.record["metrics"]})
        return 0
    if args.action == "sample":
        on_text = None if args.json else (lambda text: print(text, end="", flush=True))
        samples = run.sample(config, args.runs_dir, on_text)
        print(json.dumps({"run": config.run, "samples": samples}, indent=2) if args.json else "")
        return 0
    result = run.evaluate(config, args.runs_dir) if args.action == "eval" else run.bench(config, args.runs_dir)
    if args.json:
        _print_json(result)
    else:
        _console().print("\n".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
    return 0


# -- tune -----------------------------------------------------------------------------------------------------------


def _tune_args(p: argparse.ArgumentParser) -> None:
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
    _job_flags(train)
    for name, model, help_text in (
        ("eval", EvalConfig, "dev loss, perplexity, exact match, token F1, ROUGE-L: base vs tuned, side by side"),
        ("export", ExportConfig, "the adapter, merged weights (--merge), a GGUF (--gguf TYPE), an Ollama Modelfile"),
    ):
        s = sub.add_parser(name, help=help_text)
        add_config_flags(s, model, positional=("run",))
        s.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
        s.add_argument("--runs-dir", metavar="DIR", help="where run records are (default: the data directory)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _tune(args: argparse.Namespace) -> int:
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
            _print_json(result)
        else:
            from onecard.tune.evaluate import render_check

            render_check(result, _console())
        return 0 if not result["bad"] else 1
    if args.action == "train" and args.resume:
        config: Any = run.resume_config(args.resume, explicit_fields(cfg.TuneConfig, args), args.runs_dir)
    else:
        model = {"train": cfg.TuneConfig, "eval": cfg.EvalConfig, "export": cfg.ExportConfig}[args.action]
        config = config_from_args(model, args)
    if getattr(args, "print_config", False):
        _print_json(dump_config(config))
        return 0
    if args.action == "train" and config.accelerate_config:
        from onecard.tune.export import write_accelerate_config

        written = write_accelerate_config(config, config.accelerate_config)
        _print_json(written) if args.json else print(written["command"])
        return 0
    if args.action == "train":
        trained = run.train(config, args.runs_dir, _trackers(args), resume=args.resume)
        if args.json:
            _print_json({"run_id": trained.id, "dir": str(trained.dir), **trained.record["metrics"]})
        else:
            print(f"recorded as run {trained.id}; next: onecard tune eval {trained.id}")
        return 0
    if args.action == "eval":
        result = run.evaluate(config, args.runs_dir)
        if args.json:
            _print_json(result)
        else:
            from onecard.tune.evaluate import render

            render(result, _console())
        return 0
    written = run.export(config, args.runs_dir)
    _print_json(written) if args.json else print("\n".join(f"{k}: {v}" for k, v in written.items()))
    return 0


# -- chat / llm ----------------------------------------------------------------------------------------------------


def _chat_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.llm.config import ChatConfig

    add_config_flags(p, ChatConfig)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--json", action="store_true", help="print each reply as JSON (text, tokens, timings, settings)")


def _chat(args: argparse.Namespace) -> int:
    from onecard.core.config import config_from_args, dump_config
    from onecard.core.progress import stderr_console
    from onecard.llm import load
    from onecard.llm.chat import Chat, one_shot, read_lines, repl
    from onecard.llm.config import ChatConfig

    config = config_from_args(ChatConfig, args)
    if args.print_config:
        _print_json(dump_config(config))
        return 0
    console = stderr_console()

    def status(line: str) -> None:
        console.print(line, markup=False, highlight=False, style="dim", soft_wrap=True)

    backend = load(config)
    for note in backend.notes:
        status(note)
    status(" ".join(f"{k}={v}" for k, v in backend.settings.items()))
    chat = Chat(backend, config)
    piped = sys.stdin is not None and not sys.stdin.isatty()
    if config.prompt is not None:
        one_shot(chat, config.prompt, sys.stdin.read().strip() if piped else None, sys.stdout, status, args.json)
        return 0
    return repl(chat, read_lines(sys.stdin), sys.stdout, status, args.json)


def _llm_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="local models: shipped packages, GGUF files, the hub cache, a running Ollama")
    ls.add_argument("--ollama-url", metavar="URL", help="where Ollama runs (default: $OLLAMA_HOST or localhost:11434)")
    pull = sub.add_parser("pull", help="download a model from the Hugging Face hub into its cache (online only)")
    pull.add_argument("ref", help="org/name, or org/name/FILE.gguf for one file of a GGUF repo")
    pull.add_argument("--include", metavar="GLOB", help="only these files of the repo, e.g. '*Q4_K_M.gguf'")
    for s in (ls, pull):
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _llm(args: argparse.Namespace) -> int:
    from onecard.llm import catalog

    if args.action == "list":
        models = catalog.list_local(args.ollama_url)
        _print_json({"models": models}) if args.json else catalog.render_list(models, _console())
        return 0
    path = catalog.pull(args.ref, args.include)
    _print_json({"ref": args.ref, "path": str(path)}) if args.json else print(
        f"{path}\nnext: onecard chat --model {path}")
    return 0


# -- rag ------------------------------------------------------------------------------------------------------------


def _rag_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.rag.config import AskConfig, EvalConfig, IndexConfig, SearchConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    index = sub.add_parser("index", help="index folders and files (incremental: re-run after edits, deletes, renames)")
    index.add_argument("roots", nargs="*", metavar="PATH", help="folders and files (default: the index's own)")
    add_config_flags(index, IndexConfig)
    _job_flags(index)
    search = sub.add_parser("search", help="the best chunks for a query, no LLM")
    add_config_flags(search, SearchConfig, positional=("query",))
    ev = sub.add_parser("eval", help="bm25, dense, hybrid, rerank side by side on --beir DIR or --qa FILE (a run)")
    add_config_flags(ev, EvalConfig)
    _job_flags(ev)
    ask = sub.add_parser("ask", help="a streamed answer with [n] -> path:line citations, checked")
    add_config_flags(ask, AskConfig, positional=("question",))
    chat = sub.add_parser("chat", help="multi-turn questions over the index, same sources and checks")
    add_config_flags(chat, AskConfig)
    for s in (search, ask, chat):
        s.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
        s.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _rag(args: argparse.Namespace) -> int:
    from onecard.core.config import dump_config, explicit_fields, load_config
    from onecard.core.extras import require

    needed = (("faiss", "faiss-cpu"), ("bm25s", None), ("sentence_transformers", "sentence-transformers"))
    for module, package in needed:
        require(module, "rag", package)
    from onecard.rag import config as cfg
    from onecard.rag import render, run

    model: Any = {"index": cfg.IndexConfig, "search": cfg.SearchConfig, "eval": cfg.EvalConfig, "ask": cfg.AskConfig,
                  "chat": cfg.AskConfig}[args.action]
    flags = explicit_fields(model, args) | ({"paths": args.roots} if getattr(args, "roots", None) else {})
    config = load_config(model, args.config, flags)
    if args.print_config:
        _print_json(dump_config(config))
        return 0
    if args.action == "index":
        done, stats = run.index(config, args.runs_dir, _trackers(args))
        _print_json({"run_id": done.id, **done.record["index"]}) if args.json else render.index(stats, done.id,
                                                                                                   _console())
    elif args.action == "search":
        found = run.search(config)
        _print_json(found) if args.json else render.hits(found, _console())
    elif args.action == "eval":
        result = run.evaluate(config, args.runs_dir, _trackers(args))
        _print_json(result) if args.json else render.evaluation(result, _console())
    elif args.action == "ask":
        stream = None if args.json else (lambda text: print(text, end="", flush=True))
        result = run.ask(config, stream)
        _print_json(result.to_json()) if args.json else render.citations(result, _console())
    else:
        from onecard.llm.chat import read_lines

        return run.chat(config, read_lines(sys.stdin), lambda text: print(text, end="", flush=True))
    return 0


# -- the table ------------------------------------------------------------------------------------------------------

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: dict[str, Command] = {
    "doctor": ("what this machine can do for AI work, and what is missing", _doctor_args, _doctor),
    "runs": ("list, show and compare recorded runs", _runs_args, _runs),
    "fit": ("predict peak GPU memory of a job on a card, and find the settings that fit", _fit_args, _fit),
    "tinylm": ("a small Transformer language model from scratch: train, sample, eval, bench", _tinylm_args, _tinylm),
    "chat": ("talk to a local LLM (llama.cpp, Ollama, vLLM, transformers), fitted to the card", _chat_args, _chat),
    "llm": ("the LLMs on this machine (list), and fetching one from the hub (pull)", _llm_args, _llm),
    "tune": ("LoRA / QLoRA fine-tune of a causal LM on your JSONL: data check, train, eval, export", _tune_args,
             _tune),
    "rag": ("an assistant over your notes and code: index, search, ask, chat with citations, eval", _rag_args, _rag),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the named command's flags are built (they may import its config module)."""
    parser = argparse.ArgumentParser(
        prog="onecard",
        description="Real AI projects on one consumer GPU: plan memory, run, evaluate, and record every run.",
    )
    parser.add_argument("--version", action="version", version=f"onecard {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `onecard` console script."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from onecard.core.errors import OnecardError
    from onecard.core.progress import set_quiet

    set_quiet(args.quiet)
    try:
        return COMMANDS[args.command][2](args)
    except OnecardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
