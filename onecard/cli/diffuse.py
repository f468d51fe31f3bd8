"""`onecard diffuse data check / train`: a Stable Diffusion LoRA in your style or of your product."""

from __future__ import annotations

import argparse

from onecard.cli.common import emit, json_flag, resolve_config


def diffuse_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.diffuse.config import CheckConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    data = sub.add_parser("data", help="inspect a folder of training images and their .txt captions")
    check = data.add_subparsers(dest="data_action", required=True, metavar="ACTION").add_parser(
        "check", help="images that do not decode, small sizes, duplicates, missing captions, EXIF rotation")
    add_config_flags(check, CheckConfig, positional=("data",))
    json_flag(check)


def diffuse(args: argparse.Namespace) -> int:
    from onecard.diffuse import run
    from onecard.diffuse.config import CheckConfig
    from onecard.diffuse.report import render_check

    result = run.check(resolve_config(args, CheckConfig))
    emit(args, result, render_check)
    return 1 if result["errors"] else 0
