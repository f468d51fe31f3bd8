"""The `onecard` command: a table of commands. Each parses its flags and calls the library; no logic lives here.

One module per command (`onecard/cli/fit.py` for `onecard fit`...): its flags and one call into the library, with the
shared flags, config resolution (--config, --resume, --print-config) and --json output from `onecard/cli/common.py`.
Heavy modules are imported inside the command that needs them, so `onecard --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from onecard import __version__
from onecard.cli import asr, chat, detect, diffuse, doctor, fit, rag, recipe, runs, tinylm, tune, vlm, web

__all__ = ["main", "COMMANDS", "build_parser"]

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: dict[str, Command] = {
    "doctor": ("what this machine can do for AI work, and what is missing", doctor.doctor_args, doctor.doctor),
    "runs": ("list, show and compare recorded runs", runs.runs_args, runs.runs),
    "fit": ("predict peak GPU memory of a job on a card, and find the settings that fit", fit.fit_args, fit.fit),
    "tinylm": ("a small Transformer language model from scratch: train, sample, eval, bench", tinylm.tinylm_args,
               tinylm.tinylm),
    "chat": ("talk to a local LLM (llama.cpp, Ollama, vLLM, transformers), fitted to the card", chat.chat_args,
             chat.chat),
    "llm": ("the LLMs on this machine (list), and fetching one from the hub (pull)", chat.llm_args, chat.llm),
    "tune": ("LoRA / QLoRA fine-tune of a causal LM on your JSONL: data check, train, eval, export", tune.tune_args,
             tune.tune),
    "rag": ("an assistant over your notes and code: index, search, ask, chat with citations, eval", rag.rag_args,
            rag.rag),
    "asr": ("transcripts of your recordings with Whisper, VAD and an LLM post-edit; WER against references",
            asr.asr_args, asr.asr),
    "detect": ("a YOLO detector on your labelled images: data check, train, eval, predict", detect.detect_args,
               detect.detect),
    "diffuse": ("a Stable Diffusion LoRA on your images: data check, train, sample", diffuse.diffuse_args,
                diffuse.diffuse),
    "vlm": ("chat about images with a LLaVA-class model, and a LoRA / QLoRA on your image-text pairs", vlm.vlm_args,
            vlm.vlm),
    "recipe": ("a project's recipe for your card and OS: install, commands, a fitted config, troubleshooting",
               recipe.recipe_args, recipe.recipe),
    "web": ("the local web app: pages, JSON API and an OpenAI-compatible /v1 over every capability", web.web_args,
            web.web),
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
    except BrokenPipeError:  # the reader stopped early (`onecard fit ... --json | head`): end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141  # 128 + SIGPIPE
