"""`onecard asr transcribe / eval / finetune`: transcripts with Whisper, VAD and an LLM post-edit; WER against
references; a LoRA fine-tune exported to CTranslate2."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from onecard.cli.common import emit, job_flags, resolve_config, trackers

if TYPE_CHECKING:
    from rich.console import Console


def asr_args(p: argparse.ArgumentParser) -> None:
    from onecard.asr.config import EvalConfig, FinetuneConfig, TranscribeConfig
    from onecard.core.config import add_config_flags

    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    transcribe = sub.add_parser("transcribe", help="transcripts (TXT, SRT, VTT, JSON) of audio or video files")
    transcribe.add_argument("audio", nargs="*", default=argparse.SUPPRESS, metavar="AUDIO",
                            help="audio or video files (or --audio, or audio: in --config)")
    add_config_flags(transcribe, TranscribeConfig)
    job_flags(transcribe)
    evaluate = sub.add_parser("eval", help="WER and CER per file and overall against reference transcripts, and RTF")
    add_config_flags(evaluate, EvalConfig)
    job_flags(evaluate)
    finetune = sub.add_parser("finetune", help="LoRA on your clips, dev WER before and after, exported to CTranslate2")
    add_config_flags(finetune, FinetuneConfig)
    job_flags(finetune, resume="--max-steps")


def asr(args: argparse.Namespace) -> int:
    from onecard.asr.config import EvalConfig, FinetuneConfig, TranscribeConfig
    from onecard.core.extras import require

    require("faster_whisper", "asr", "faster-whisper")
    require("jiwer", "asr")
    from onecard.asr import run

    if args.action == "finetune":
        for module, package in (("torch", "torch"), ("peft", "peft"), ("ctranslate2", "ctranslate2")):
            require(module, "asr", package)
        from onecard.asr.train import finetune, resume_config

        config = resolve_config(args, FinetuneConfig, resume=resume_config)
        emit(args, finetune(config, args.runs_dir, trackers(args), resume=args.resume), _tuned)
    elif args.action == "transcribe":
        emit(args, run.transcribe(resolve_config(args, TranscribeConfig), args.runs_dir, trackers(args)), _files)
    else:
        emit(args, run.evaluate(resolve_config(args, EvalConfig), args.runs_dir, trackers(args)), _scores)
    return 0


def _files(result: dict[str, Any], console: Console) -> None:
    for f in result["files"]:
        console.print(f"{f['audio']}: {f['duration_s']:.1f} s of {f['language'] or '?'} audio, RTF {f['rtf']:.3f}")
        console.print("  " + "\n  ".join(f["files"]))
    edits = result.get("post_edit")
    if edits:
        console.print(f"post-edit: {edits['accepted']} accepted, {edits['rejected']} rejected (too many words "
                      f"changed), {edits['unchanged']} unchanged")
    if "diarizer" in result:
        console.print(f"speakers: {result['diarizer']['name']} ({result['diarizer']['reason']})")
    console.print(f"recorded as run {result['run_id']} ({result['settings']['device']}, "
                  f"{result['settings']['compute_type']})")


def _tuned(result: dict[str, Any], console: Console) -> None:
    console.print(f"dev WER {_pct(result['wer_before'], result['cer_before'])} -> "
                  f"{_pct(result['wer_after'], result['cer_after'])} (CER) after {result['steps']} steps")
    console.print(f"model: {result['model_dir']}\n  transcribe with `onecard asr transcribe AUDIO --model "
                  f"{result['run_id']}`")


def _scores(result: dict[str, Any], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("file", *[v["variant"] for v in result["variants"]], title="WER (CER)")
    for i, f in enumerate(result["variants"][0]["files"]):
        cells = [_pct(v["files"][i]["wer"], v["files"][i]["cer"]) for v in result["variants"]]
        table.add_row(escape(f["file"]), *cells)
    table.add_row("overall", *[_pct(v["wer"], v["cer_mean"]) for v in result["variants"]])
    table.add_row("RTF", *[f"{v['rtf']:.3f}" for v in result["variants"]])
    if any("post_edit" in v for v in result["variants"]):
        table.add_row("post-edits kept/rejected", *[f"{v['post_edit']['accepted']}/{v['post_edit']['rejected']}"
                                                    if "post_edit" in v else "-" for v in result["variants"]])
    if any("der" in v for v in result["variants"]):
        table.add_row("DER", *[f"{100 * v['der']:.1f}%" if "der" in v else "-" for v in result["variants"]])
    console.print(table)
    if "diarizer" in result:
        console.print(f"speakers: {result['diarizer']['name']} ({result['diarizer']['reason']})")
    console.print(f"recorded as run {result['run_id']}")


def _pct(wer: float | None, cer: float | None) -> str:
    return "-" if wer is None else f"{100 * wer:.1f}% ({100 * (cer or 0):.1f}%)"
