"""`onecard rag index / search / ask / chat / eval`: an assistant over your notes and code."""

from __future__ import annotations

import argparse
import sys

from onecard.cli.common import config_flag, echo, emit, job_flags, json_flag, resolve_config, trackers


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
    ask = sub.add_parser("ask", help="a streamed answer with [n] -> path:line citations, checked to be in range "
                                          "and judged against the cited text ([n?]: not supported)")
    add_config_flags(ask, AskConfig, positional=("question",))
    chat = sub.add_parser("chat", help="multi-turn questions over the index, same sources and checks")
    add_config_flags(chat, AskConfig)
    for s in (search, ask, chat):
        config_flag(s)
        json_flag(s)


def rag(args: argparse.Namespace) -> int:
    from onecard.core.extras import require

    needed = (("faiss", "faiss-cpu"), ("bm25s", None), ("sentence_transformers", "sentence-transformers"))
    for module, package in needed:
        require(module, "rag", package)
    from onecard.rag import render, run
    from onecard.rag.config import AskConfig, EvalConfig, IndexConfig, SearchConfig

    if args.action == "index":
        config = resolve_config(args, IndexConfig, {"paths": args.roots} if args.roots else {})
        done, stats = run.index(config, args.runs_dir, trackers(args))
        emit(args, {"run_id": done.id, **done.record["index"]},
             lambda _, console: render.index(stats, done.id, console))
    elif args.action == "search":
        emit(args, run.search(resolve_config(args, SearchConfig)), render.hits)
    elif args.action == "eval":
        emit(args, run.evaluate(resolve_config(args, EvalConfig), args.runs_dir, trackers(args)), render.evaluation)
    elif args.action == "ask":
        result = run.ask(resolve_config(args, AskConfig), None if args.json else echo)
        emit(args, result.to_json(), lambda _, console: render.citations(result, console))
    else:
        from onecard.llm.chat import read_lines

        return run.chat(resolve_config(args, AskConfig), read_lines(sys.stdin), echo)
    return 0
