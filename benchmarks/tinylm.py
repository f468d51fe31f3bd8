"""tinylm's numbers (issue 6): quality at nanoGPT's CPU budget, training speed against a plain PyTorch loop, MFU, and
the KV cache's generation speedup.

    python benchmarks/tinylm.py [--data ../shared/data/tinyshakespeare/input.txt] [--only quality speed generate]
                                [--out FILE]

quality   nanoGPT's README CPU run (4 layers, 4 heads, 128 wide, context 64, batch 12, 2,000 steps, no dropout;
          nanoGPT reports val loss 1.88), trained with `onecard tinylm train` under each position scheme and learning
          rate. The variant is chosen on a selection split that is not the reported one: each variant trains on the
          first 80% of the text and is scored on the next 10%; the chosen one and nanoGPT's own configuration then
          train on the first 90% (nanoGPT's split) and are reported on the last 10%, which no choice has seen. Val
          loss is over the whole split (nanoGPT's figure: 20 random batches).
speed     tokens/s of `onecard.tinylm.run.train` (progress bar, logging, trackio, schedule and all) against a plain
          loop (batch, forward, backward, clip, step) of the same model, same batches, same precision; alternated,
          and which side goes first alternates from one repeat to the next.
generate  tokens/s generating 512 tokens after a 1-token prompt with a context of 512 (baby model size, fp32), with
          and without the KV cache: each side warmed up once, then the best of the same number of repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from onecard.core.config import load_config
from onecard.core.device import supports_bf16
from onecard.core.progress import set_quiet
from onecard.tinylm import run
from onecard.tinylm.config import TinyLMConfig
from onecard.tinylm.data import encode_texts, get_batch, read_texts
from onecard.tinylm.model import GPT, ModelConfig
from onecard.tinylm.tokenizer import CharTokenizer
from onecard.tinylm.train import autocast, configure_optimizer, generation_speed, lr_at

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
CPU_YAML = ROOT / "configs" / "tinylm" / "shakespeare-char-cpu.yaml"
NANOGPT_VAL_LOSS = 1.88  # nanoGPT README, "I only have a macbook" section


NANOGPT_NAME = "nanoGPT's config as documented (learned positions, lr 1e-3)"
VARIANTS: list[tuple[str, dict[str, Any] | None]] = [  # None: the shipped YAML
    (NANOGPT_NAME, {"preset": "nanogpt-cpu", "pos": "learned"}),
    ("+ ALiBi", {"preset": "nanogpt-cpu", "pos": "alibi"}),
    ("+ RoPE (preset nanogpt-cpu)", {"preset": "nanogpt-cpu", "pos": "rope"}),
    ("+ ALiBi, lr 3e-3", {"preset": "nanogpt-cpu", "pos": "alibi", "learning_rate": 3e-3, "min_lr": 3e-4}),
    (f"+ RoPE, lr 3e-3 ({CPU_YAML.relative_to(ROOT)})", None),
]
VAL_FRACTION = 0.1  # nanoGPT's split: the last 10% of the text
SELECT_FRACTION = 0.1  # of the text, just before the validation split: where the variant is chosen


def _train_variant(name: str, overrides: dict[str, Any] | None, data: Path, val_fraction: float,
                   runs: Path) -> dict[str, Any]:
    config = (load_config(TinyLMConfig, CPU_YAML, {"data": str(data), "device": "cpu", "val_fraction": val_fraction})
              if overrides is None else TinyLMConfig(data=str(data), device="cpu", val_fraction=val_fraction,
                                                     **overrides))
    start = time.perf_counter()
    trained = run.train(config, runs_root=str(runs), report_to=())
    m = trained.record["metrics"]
    return {"variant": name, "pos": config.pos, "lr": config.learning_rate, "steps": m["steps"],
            "val_loss": m["val_loss"], "bits_per_char": m["val_bits_per_char"], "tokens_per_s": m["tokens_per_s"],
            "mfu": m["mfu"], "minutes": (time.perf_counter() - start) / 60, "run": trained.id}


def quality(data: Path, runs: Path) -> dict[str, Any]:
    """Choose among the variants on the selection split, then report the choice and nanoGPT's own configuration on
    the validation split, both trained at nanoGPT's CPU budget (2,000 steps) on nanoGPT's training split."""
    text = data.read_text()
    # The text without its validation part: the variants never see the reported split, not even to be scored.
    selection_data = runs.parent / "selection.txt"
    selection_data.write_text(text[: len(text) - int(len(text) * VAL_FRACTION)])
    selection = []
    for name, overrides in VARIANTS:
        selection.append(_train_variant(name, overrides, selection_data, SELECT_FRACTION / (1 - VAL_FRACTION), runs))
        print(f"quality, selection split: {name}: loss {selection[-1]['val_loss']:.4f}", flush=True)
    chosen = min(selection, key=lambda r: r["val_loss"])["variant"]
    reported = []
    for name, overrides in VARIANTS:
        if name in (chosen, NANOGPT_NAME):
            reported.append(_train_variant(name, overrides, data, VAL_FRACTION, runs))
            print(f"quality, validation split: {name}: val loss {reported[-1]['val_loss']:.4f}", flush=True)
    return {"selection": selection, "chosen": chosen, "reported": reported}


def plain_loop(config: TinyLMConfig, data: Path, dtype: torch.dtype) -> float:
    """Tokens/s of the shortest honest training loop of the same model: what our abstractions must not slow down."""
    texts = read_texts(data)
    tokenizer = CharTokenizer.train([t for _, t in texts])
    tokens = encode_texts(texts, tokenizer)
    train_data = tokens[: int(len(tokens) * (1 - config.val_fraction))]
    torch.manual_seed(config.seed)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, block_size=config.block_size, n_layer=config.n_layer,
                            n_head=config.n_head, n_embd=config.n_embd, pos=config.pos))
    optimizer = configure_optimizer(model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2),
                                    "cpu")
    generator = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    for it in range(config.max_iters):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it, config.learning_rate, config.min_lr, config.warmup_iters, config.max_iters)
        x, y = get_batch(train_data, config.block_size, config.batch_size, generator, "cpu")
        with autocast("cpu", dtype):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return config.max_iters * config.batch_size * config.block_size / (time.perf_counter() - start)


def speed(data: Path, runs: Path, steps: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for dtype_name, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        config = load_config(TinyLMConfig, CPU_YAML, {"data": str(data), "max_iters": steps, "dtype": dtype_name,
                                                      "device": "cpu", "eval_interval": 10 * steps})  # no mid-run eval
        ours, plain, mfu = [], [], []
        set_quiet(False)  # as a user runs it: with the progress bar (on stderr)
        for i in range(repeats):  # alternate, so that drifts of the machine hit both alike; and who goes first
            for side in (("ours", "plain") if i % 2 == 0 else ("plain", "ours")):
                if side == "ours":
                    metrics = run.train(config, runs_root=str(runs), report_to=("trackio",)).record["metrics"]
                    ours.append(metrics["tokens_per_s"])
                    mfu.append(metrics["mfu"])
                else:
                    plain.append(plain_loop(config, data, dtype))
        rows.append({"dtype": dtype_name, "steps": steps, "ours": ours, "plain": plain,
                     "ratio": statistics.median(ours) / statistics.median(plain), "mfu": statistics.median(mfu)})
        print(f"speed {dtype_name}: ours {ours}, plain {plain}", flush=True)
    return rows


def generate(new_tokens: int = 512, block_size: int = 512, repeats: int = 3) -> dict[str, Any]:
    """Both sides timed alike: one untimed warm-up generation, then the best of `repeats`."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=65, block_size=block_size, n_layer=6, n_head=6, n_embd=384)).eval()
    speeds = {}
    for use_cache in (True, False):
        generation_speed(model, 32, use_cache, "cpu")  # warm-up: kernel selection, first allocations
        speeds[use_cache] = generation_speed(model, new_tokens, use_cache, "cpu", repeats=repeats)
    return {"params": model.num_params(), "block_size": block_size, "new_tokens": new_tokens, "repeats": repeats,
            "cached": speeds[True], "uncached": speeds[False], "speedup": speeds[True] / speeds[False]}


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    return (f"{cpu} ({'AVX512-BF16 or AMX' if supports_bf16('cpu') else 'no native bf16'}), "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{platform.system()}")


def report(results: dict[str, Any], command: str) -> str:
    lines = ["# tinylm benchmarks", "", f"Machine: {machine()}. No GPU.", "", f"Command: `{command}`", ""]
    if "quality" in results:
        q = results["quality"]
        precision = "bf16 autocast" if supports_bf16("cpu") else "fp32"
        lines += ["## Quality: nanoGPT's CPU budget on character-level TinyShakespeare", "",
                  "4 layers, 4 heads, 128 wide, context 64, batch 12, 2,000 steps, no dropout, precision auto "
                  f"({precision} on this CPU). nanoGPT reports val loss {NANOGPT_VAL_LOSS} for its configuration "
                  "(fp32 on a CPU, 20 random val batches); ours is over the whole split.", "",
                  "Choice, on the selection split: each variant trains on the first 80% of the text and is scored on "
                  "the next 10%.", "",
                  "| variant | selection-split loss | train tokens/s | minutes |", "|---|---|---|---|"]
        for r in q["selection"]:
            mark = " (chosen)" if r["variant"] == q["chosen"] else ""
            lines.append(f"| {r['variant']}{mark} | {r['val_loss']:.3f} | {r['tokens_per_s']:,.0f} | "
                         f"{r['minutes']:.1f} |")
        lines += ["", "Reported, on the validation split (the last 10%, nanoGPT's split, which the choice did not "
                  "see): the chosen variant and nanoGPT's own configuration, each trained on the first 90%.", "",
                  "| variant | val loss | bits/char | train tokens/s | MFU | minutes |", "|---|---|---|---|---|---|"]
        for r in q["reported"]:
            lines.append(f"| {r['variant']} | {r['val_loss']:.3f} | {r['bits_per_char']:.3f} | "
                         f"{r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | {r['minutes']:.1f} |")
        lines.append("")
    if "speed" in results:
        lines += ["## Speed: our training loop against a plain PyTorch loop", "",
                  "Same model (the CPU config above), same batches and precision; each side alternated "
                  f"{len(results['speed'][0]['ours'])} times, ours first in odd repeats and the plain loop first in "
                  "even ones; tokens/s medians (each run's figure in brackets, in run order). "
                  "Ours is `onecard.tinylm.run.train` with the progress bar, trackio logging every 10 steps and the "
                  "schedule, timed over its training steps (not setup or evaluation); the plain loop is timed over "
                  "its steps.", "",
                  "| precision | steps | ours tokens/s | plain loop tokens/s | ratio | MFU (ours) |",
                  "|---|---|---|---|---|---|"]
        for r in results["speed"]:
            lines.append(f"| {r['dtype']} | {r['steps']} | {statistics.median(r['ours']):,.0f} "
                         f"({', '.join(f'{v:,.0f}' for v in r['ours'])}) | {statistics.median(r['plain']):,.0f} "
                         f"({', '.join(f'{v:,.0f}' for v in r['plain'])}) | {r['ratio']:.2f} | {r['mfu']:.1%} |")
        spreads = ", ".join(f"{r['dtype']} {max(r['plain']) / min(r['plain']) - 1:.0%}" for r in results["speed"])
        lines += ["", f"Noise: the plain loop alone varies by {spreads} (slowest to fastest run) on this shared "
                  "machine, so a ratio within a few percent of 1.0 is a tie."]
        lines += ["", "MFU: model FLOPs (6 N + 12 L C T per token, nanoGPT's estimate) against this CPU's measured "
                  "1024^3 matmul peak in the same precision (`onecard doctor --bench`'s measurement)."
                  + (" This CPU's bf16 matmul peak (AVX512-BF16) is several times its fp32 peak, but a 128-wide model "
                     "gains little from it: hence the lower bf16 MFU at a higher tokens/s." if supports_bf16("cpu")
                     else ""), ""]
    if "generate" in results:
        g = results["generate"]
        lines += ["## Generation: KV cache", "",
                  f"{g['params'] / 1e6:.2f} M parameters (6 layers, 6 heads, 384 wide), context {g['block_size']}, "
                  f"{g['new_tokens']} new tokens after a 1-token prompt, fp32, batch 1.", "",
                  f"Each side: one untimed 32-token warm-up, then the best of {g['repeats']} runs.", "",
                  "| | tokens/s |", "|---|---|",
                  f"| with the KV cache | {g['cached']:,.1f} |", f"| without (re-reads the context each token) | "
                  f"{g['uncached']:,.1f} |", f"| speedup | {g['speedup']:.1f}x |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--only", nargs="+", choices=["quality", "speed", "generate"],
                        default=["quality", "speed", "generate"])
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the report (markdown) to FILE")
    args = parser.parse_args()
    set_quiet(True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ONECARD_HOME"] = tmp  # run records and the trackio database: not the user's
        os.environ["TRACKIO_DIR"] = str(Path(tmp) / "trackio")
        runs = Path(tmp) / "runs"
        if "quality" in args.only:
            results["quality"] = quality(args.data, runs)
        if "speed" in args.only:
            results["speed"] = speed(args.data, runs, args.speed_steps, args.repeats)
    if "generate" in args.only:
        results["generate"] = generate()
    command = "python benchmarks/tinylm.py " + " ".join(sys.argv[1:])
    text = report(results, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        print(f"wrote {args.out} (git {commit.stdout.strip()})")


if __name__ == "__main__":
    main()
