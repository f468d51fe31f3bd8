"""`onecard chat` and `onecard llm list / pull`: local LLMs."""

from __future__ import annotations

import argparse
import sys

from onecard.cli.common import config_flag, emit, json_flag, resolve_config


def chat_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.llm.config import ChatConfig

    add_config_flags(p, ChatConfig)
    config_flag(p)
    json_flag(p, "print each reply as JSON (text, tokens, timings, settings)")


def chat(args: argparse.Namespace) -> int:
    from onecard.core.progress import stderr_console
    from onecard.llm import load
    from onecard.llm.chat import Chat, one_shot, read_lines, repl
    from onecard.llm.config import ChatConfig

    config = resolve_config(args, ChatConfig)
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


def llm_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="local models: shipped packages, GGUF files, the hub cache, a running Ollama")
    ls.add_argument("--ollama-url", metavar="URL", help="where Ollama runs (default: $OLLAMA_HOST or localhost:11434)")
    pull = sub.add_parser("pull", help="download a model from the Hugging Face hub into its cache (online only)")
    pull.add_argument("ref", help="org/name, or org/name/FILE.gguf for one file of a GGUF repo")
    pull.add_argument("--include", metavar="GLOB", help="only these files of the repo, e.g. '*Q4_K_M.gguf'")
    for s in (ls, pull):
        json_flag(s)


def llm(args: argparse.Namespace) -> int:
    from onecard.llm import catalog

    if args.action == "list":
        models = catalog.list_local(args.ollama_url)
        emit(args, {"models": models}, lambda _, console: catalog.render_list(models, console))
        return 0
    path = catalog.pull(args.ref, args.include)
    emit(args, {"ref": args.ref, "path": str(path)}, lambda *_: print(f"{path}\nnext: onecard chat --model {path}"))
    return 0
