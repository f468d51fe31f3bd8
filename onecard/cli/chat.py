"""`onecard chat` and `onecard llm list / pull`: local LLMs."""

from __future__ import annotations

import argparse
import sys

from onecard.cli.common import make_console, print_json


def chat_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.llm.config import ChatConfig

    add_config_flags(p, ChatConfig)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (flags override it)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--json", action="store_true", help="print each reply as JSON (text, tokens, timings, settings)")


def chat(args: argparse.Namespace) -> int:
    from onecard.core.config import config_from_args, dump_config
    from onecard.core.progress import stderr_console
    from onecard.llm import load
    from onecard.llm.chat import Chat, one_shot, read_lines, repl
    from onecard.llm.config import ChatConfig

    config = config_from_args(ChatConfig, args)
    if args.print_config:
        print_json(dump_config(config))
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


def llm_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="local models: shipped packages, GGUF files, the hub cache, a running Ollama")
    ls.add_argument("--ollama-url", metavar="URL", help="where Ollama runs (default: $OLLAMA_HOST or localhost:11434)")
    pull = sub.add_parser("pull", help="download a model from the Hugging Face hub into its cache (online only)")
    pull.add_argument("ref", help="org/name, or org/name/FILE.gguf for one file of a GGUF repo")
    pull.add_argument("--include", metavar="GLOB", help="only these files of the repo, e.g. '*Q4_K_M.gguf'")
    for s in (ls, pull):
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def llm(args: argparse.Namespace) -> int:
    from onecard.llm import catalog

    if args.action == "list":
        models = catalog.list_local(args.ollama_url)
        print_json({"models": models}) if args.json else catalog.render_list(models, make_console())
        return 0
    path = catalog.pull(args.ref, args.include)
    print_json({"ref": args.ref, "path": str(path)}) if args.json else print(
        f"{path}\nnext: onecard chat --model {path}")
    return 0
