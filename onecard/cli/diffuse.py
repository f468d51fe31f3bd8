"""`onecard diffuse data check / caption / train / sample / eval / export`: a Stable Diffusion LoRA in your style or of
your product."""

from __future__ import annotations

import argparse

from onecard.cli.common import emit, job_flags, json_flag, recorded, resolve_config, run_flags, trackers


def diffuse_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.diffuse.config import CaptionConfig, CheckConfig, DiffuseConfig, EvalConfig, ExportConfig, SampleConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    data = sub.add_parser("data", help="inspect a folder of training images and their .txt captions")
    check = data.add_subparsers(dest="data_action", required=True, metavar="ACTION").add_parser(
        "check", help="images that do not decode, small sizes, duplicates, missing captions, EXIF rotation")
    add_config_flags(check, CheckConfig, positional=("data",))
    json_flag(check)
    caption = sub.add_parser("caption", help="write a caption for each image without one: a template with the trigger "
                             "token, or a local VLM's description")
    add_config_flags(caption, CaptionConfig, positional=("data",))
    json_flag(caption)
    train = sub.add_parser("train", help="a LoRA on the UNet of a diffusers pipeline, on your images (a recorded run)")
    add_config_flags(train, DiffuseConfig)
    job_flags(train, resume="--max-steps")
    sample = sub.add_parser("sample", help="images from a trained run or a pipeline folder, with LoRAs at weights")
    add_config_flags(sample, SampleConfig, positional=("source",))
    run_flags(sample)
    evaluate = sub.add_parser("eval", help="CLIP score and similarity to the training images, LoRA on vs off, and the "
                              "class prompt's drift")
    add_config_flags(evaluate, EvalConfig, positional=("run",))
    run_flags(evaluate)
    export = sub.add_parser("export", help="the run's LoRA as one .safetensors: kohya (A1111/ComfyUI) or diffusers")
    add_config_flags(export, ExportConfig, positional=("run",))
    run_flags(export)


def diffuse(args: argparse.Namespace) -> int:
    from onecard.diffuse import run
    from onecard.diffuse.config import CaptionConfig, CheckConfig, DiffuseConfig, EvalConfig, ExportConfig, SampleConfig
    from onecard.diffuse.report import render_check, render_eval

    if args.action == "train":
        config = resolve_config(args, DiffuseConfig, resume=run.resume_config)
        trained = run.train(config, args.runs_dir, trackers(args), resume=args.resume)
        emit(args, recorded(trained), lambda *_: print(f"recorded as run {trained.id}"))
        return 0
    if args.action == "export":
        result = run.export(resolve_config(args, ExportConfig), args.runs_dir)
        emit(args, result, lambda r, console: console.print(f"wrote {r['file']} ({r['format']} layout)"))
        return 0
    if args.action == "sample":
        result = run.sample(resolve_config(args, SampleConfig), args.runs_dir)
        emit(args, result, lambda r, console: console.print("\n".join(i["file"] for i in r["images"])))
        return 0
    if args.action == "eval":
        result = run.evaluate(resolve_config(args, EvalConfig), args.runs_dir)
        emit(args, result, render_eval)
        return 0
    if args.action == "caption":
        result = run.caption(resolve_config(args, CaptionConfig))
        emit(args, result, lambda r, console: console.print(f"{len(r['written'])} captions written ({r['source']}), "
                                                            f"{len(r['kept'])} kept"))
        return 0
    result = run.check(resolve_config(args, CheckConfig))
    emit(args, result, render_check)
    return 1 if result["errors"] else 0
