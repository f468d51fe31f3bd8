"""`onecard detect data check / convert / train / eval / predict / export / bench`: a YOLO detector on your
labelled images."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from onecard.cli.common import emit, job_flags, json_flag, recorded, resolve_config, run_flags, trackers

if TYPE_CHECKING:
    from rich.console import Console


def detect_args(p: argparse.ArgumentParser) -> None:
    from onecard.core.config import add_config_flags
    from onecard.detect.config import BenchConfig, CheckConfig, DetectConfig, EvalConfig, ExportConfig, PredictConfig

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    data = sub.add_parser("data", help="inspect a YOLO data set")
    check = data.add_subparsers(dest="data_action", required=True, metavar="ACTION").add_parser(
        "check", help="every bad image and label line by file and line, duplicates and leaks, class balance")
    add_config_flags(check, CheckConfig, positional=("data",))
    json_flag(check)
    train = sub.add_parser("train", help="train a YOLO detector with ultralytics, fitted to the card (a recorded run)")
    add_config_flags(train, DetectConfig)
    job_flags(train, resume="--workers")  # ultralytics resumes with its checkpoint's epochs
    evaluate = sub.add_parser("eval", help="mAP50, mAP50-95, precision, recall and AP per class on a split")
    add_config_flags(evaluate, EvalConfig, positional=("run",))
    run_flags(evaluate)
    predict = sub.add_parser("predict", help="boxes drawn on images, and a JSON of the detections")
    add_config_flags(predict, PredictConfig, positional=("run",))
    predict.add_argument("source", nargs="*", default=argparse.SUPPRESS, metavar="IMAGE",
                         help="images or folders of images (or --source)")
    run_flags(predict)
    convert = sub.add_parser("convert", help="a COCO or Label Studio JSON and its images to a YOLO data set")
    convert.add_argument("src", metavar="SRC", help="a COCO JSON (instances_*.json) or a Label Studio JSON export")
    convert.add_argument("--from", dest="source_format", choices=["coco", "labelstudio"], required=True,
                         help="SRC's format")
    convert.add_argument("--out", required=True, metavar="DIR", help="the YOLO data set's folder (data.yaml in it)")
    convert.add_argument("--images", metavar="DIR", help="the folder the image paths are relative to (default: SRC's)")
    convert.add_argument("--val-fraction", type=float, default=0.2, help="share of images for val (seeded)")
    convert.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    convert.add_argument("--force", action="store_true", help="replace a non-empty --out")
    json_flag(convert)
    export = sub.add_parser("export", help="ONNX, TorchScript, OpenVINO or TensorRT, checked by running it, timed")
    add_config_flags(export, ExportConfig, positional=("run",))
    run_flags(export)
    bench = sub.add_parser("bench", help="ms per image and images/s per format and batch, and the mAP each keeps")
    add_config_flags(bench, BenchConfig, positional=("run",))
    run_flags(bench)


def detect(args: argparse.Namespace) -> int:
    from onecard.detect import deploy, run  # ultralytics is imported by each entry point, after its offline set-up
    from onecard.detect.config import BenchConfig, CheckConfig, DetectConfig, EvalConfig, ExportConfig, PredictConfig
    from onecard.detect.report import render_bench, render_check, render_eval, render_export

    if args.action == "convert":
        from onecard.detect.convert import coco_to_yolo, labelstudio_to_yolo

        convert = coco_to_yolo if args.source_format == "coco" else labelstudio_to_yolo
        converted = convert(args.src, args.out, args.images, args.val_fraction, args.seed, args.force)
        emit(args, converted, _converted)
        return 0
    if args.action == "data":
        result = run.check(resolve_config(args, CheckConfig))
        emit(args, result, render_check)
        return 1 if result["errors"] else 0
    if args.action == "train":
        config = resolve_config(args, DetectConfig, resume=run.resume_config)
        trained = run.train(config, args.runs_dir, trackers(args), resume=args.resume)
        next_step = f"recorded as run {trained.id}; next: onecard detect eval {trained.id}"
        emit(args, recorded(trained), lambda *_: print(next_step))
    elif args.action == "eval":
        emit(args, run.evaluate(resolve_config(args, EvalConfig), args.runs_dir), render_eval)
    elif args.action == "predict":
        emit(args, run.predict(resolve_config(args, PredictConfig), args.runs_dir), _predicted)
    elif args.action == "bench":
        emit(args, deploy.bench(resolve_config(args, BenchConfig), args.runs_dir), render_bench)
    else:
        exported = deploy.export(resolve_config(args, ExportConfig), args.runs_dir)
        emit(args, exported, render_export)
        return 1 if exported["check"]["passed"] is False else 0  # the file does not compute what the .pt does
    return 0


def _converted(result: dict[str, Any], console: Console) -> None:
    console.print(f"{result['images']} images ({result['train']} train, {result['val']} val), "
                  f"{result['annotations']} boxes in {result['classes']} classes, {result['backgrounds']} backgrounds")
    skipped = {"crowd_skipped": "crowd annotations skipped", "unlabelled_skipped": "unlabelled tasks skipped",
               "several_annotations": "tasks with several annotations (the latest used)",
               "rotated": "rotated boxes (the box around each used)"}
    notes = [f"{result[k]} {text}" for k, text in skipped.items() if result.get(k)]
    notes += [f"{n} {kind} results skipped" for kind, n in result.get("other_results_skipped", {}).items()]
    if notes:
        console.print("; ".join(notes))
    console.print(f"next: onecard detect data check {result['data']}")


def _predicted(result: dict[str, Any], console: Console) -> None:
    for image in result["images"]:
        found = ", ".join(f"{d['name']} {d['confidence']:.2f}" for d in image["detections"]) or "nothing"
        console.print(f"{image['image']}: {found}")
    console.print(f"drawn images and detections.json in {result['out']}")
