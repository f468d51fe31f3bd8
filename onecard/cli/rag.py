"""`onecard rag index / search / ask / chat / eval`: an assistant over your notes and code."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from onecard.cli.common import job_flags, make_console, print_json, trackers


def rag_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.rag.config import AskConfig, EvalConfig, IndexConfig, SearchConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    index = sub.add_parser("index", help="index folders and files (incremental: re-run after edits, deletes, renames)")
    index.add_argument("roots", nargs="*", metavar="PATH", help="folders and files (default: the index's own)")
    add_config_flags(index, IndexConfig)
    job_flags(index)
    search = sub.add_parser("search", help="the best chunks for a query, no LLM")
    add_config_flags(search, SearchConfig, positional=("query",))
    ev = sub.add_parser("eval", help="bm25, dense, hybrid, rerank side by side on --beir DIR or --qa FILE (a run)")
    add_config_flags(ev, EvalConfig)
    job_flags(ev)
    ask = sub.add_parser("ask", help="a streamed answer with [n] -> path:line citations, checked to be in range")
    add_config_flags(ask, AskConfig, positional=("question",))
    chat = sub.add_parser("chat", help="multi-turn questions over the index, same sources and checks")
    add_config_flags(chat, AskConfig)
    for s in (search, ask, chat):
        s.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
        s.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def rag(args: argparse.Namespace) -> int:
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
        print_json(dump_config(config))
        return 0
    if args.action == "index":
        done, stats = run.index(config, args.runs_dir, trackers(args))
        print_json({"run_id": done.id, **done.record["index"]}) if args.json else render.index(stats, done.id,
                                                                                                   make_console())
    elif args.action == "search":
        found = run.search(config)
        print_json(found) if args.json else render.hits(found, make_console())
    elif args.action == "eval":
        result = run.evaluate(config, args.runs_dir, trackers(args))
        print_json(result) if args.json else render.evaluation(result, make_console())
    elif args.action == "ask":
        stream = None if args.json else (lambda text: print(text, end="", flush=True))
        result = run.ask(config, stream)
        print_json(result.to_json()) if args.json else render.citations(result, make_console())
    else:
        from onecard.llm.chat import read_lines

        return run.chat(config, read_lines(sys.stdin), lambda text: print(text, end="", flush=True))
    return 0
