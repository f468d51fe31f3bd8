"""`onecard recipe PATH --gpu CARD --os OS`: install, commands, a fitted config, what to expect, troubleshooting."""

from __future__ import annotations

import argparse


def recipe_args(p: argparse.ArgumentParser) -> None:
    from onecard.cli.common import json_flag
    from onecard.recipes.install import OSES
    from onecard.recipes.paths import PATHS
    from onecard.recipes.recipe import this_os

    p.add_argument("path", choices=PATHS, metavar="PATH", help=f"the project: {', '.join(PATHS)}")
    p.add_argument("--gpu", default="auto", metavar="CARD",
                   help="card to plan for: a catalog name (4070ti, rtx-3060...) or auto (the detected card; the "
                        "guide's 4070 Ti when there is none) (default: auto)")
    p.add_argument("--vram", type=float, metavar="GIB", help="plan for a card the catalog does not list, by its "
                   "memory in GiB (instead of --gpu)")
    p.add_argument("--os", default=this_os(), choices=OSES, help="the OS to install on (default: this one)")
    p.add_argument("--out", metavar="FILE.md", help="write the recipe here, and its YAML configs beside it")
    json_flag(p, "print the recipe as one JSON object (its Markdown under 'markdown')")


def recipe(args: argparse.Namespace) -> int:
    from onecard.cli.common import emit
    from onecard.recipes import build, render, write

    built = build(args.path, args.gpu, args.os, args.vram)
    markdown = render(built)
    if args.out:
        written = write(built, args.out)
        emit(args, {"written": [str(w) for w in written]},
             lambda data, _: print("\n".join(f"wrote {w}" for w in data["written"])))
        return 0
    emit(args, {**built.to_json(), "markdown": markdown}, lambda *_: print(markdown))
    return 0
