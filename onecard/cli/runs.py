"""`onecard runs list / show / compare`: the recorded runs."""

from __future__ import annotations

import argparse

from onecard.cli.common import emit, json_flag, runs_dir_flag


def runs_args(p: argparse.ArgumentParser) -> None:
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
        runs_dir_flag(s)
        json_flag(s)


def runs(args: argparse.Namespace) -> int:
    from onecard.core.runs import compare, find_run, load_runs, render_compare, render_list, render_show

    if args.action == "list":
        found = [
            r for r in load_runs(args.runs_dir)
            if (args.capability is None or r.get("capability") == args.capability)
            and (args.status is None or r.get("status") == args.status)
        ][: args.limit]
        emit(args, {"runs": found}, lambda _, console: render_list(found, console))
    elif args.action == "show":
        emit(args, find_run(args.run, args.runs_dir), render_show)
    else:
        emit(args, compare(find_run(args.a, args.runs_dir), find_run(args.b, args.runs_dir)), render_compare)
    return 0
