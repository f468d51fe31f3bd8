"""`onecard vlm tune` measured: (a) answer accuracy of the tiny LLaVA before and after a tune on the synthetic shapes
set, (b) its step time and peak RSS beside a plain TRL script on the same settings, (c) on a GPU, a LLaVA-1.5-7B-shaped
model (random weights from its real config) in NF4 inference and QLoRA at the planner's settings, peak against fit.

(a) The settings (lr 3e-3 constant, batch 16, LoRA r16 + projector, 150 steps; 300 steps for the two-shape set) were
chosen on the synthetic set's seed-0 train split and its seed-10000 dev split (the integration test's); the figures
reported here are on fresh splits (train seed 1, dev seed 20001) that played no part in choosing them. Chance is a
uniform guess among the answers of the question's kind (4 colours, 4 cells, 3 shapes: 0.28 on average); the base
model answers nothing of the kind (it scores 0).

(b) Both sides train the same rows with the same model, LoRA (r16 on the language model's linear layers + the
projector), batch, learning rate and fp32 precision, each in its own process; they alternate, first order reversed
on each repeat, and the step time is the median over 5-step windows after the first window (the warm-up). The plain
side is the script a user writes from TRL's VLM SFT docs: a dataset of PIL images with prompt/completion
conversations, SFTTrainer with the processor (TRL's vision collator tokenizes every batch again).

    python benchmarks/vlm_tune.py                 # (a) and (b) on the CPU, ~10 min on 2 cores
    python benchmarks/vlm_tune.py --gpu 4070ti    # (c) on a CUDA machine with bitsandbytes, ~10 min
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LR, BATCH, RANK = 3e-3, 16, 16
# llava-hf/llava-1.5-7b-hf config.json: Llama-2-7B text model, CLIP ViT-L/14 at 336 px, mlp2x_gelu projector
LLAVA_7B_TEXT = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5)
LLAVA_7B_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                       image_size=336, patch_size=14, projection_dim=768)


# -- (a) accuracy ---------------------------------------------------------------------------------------------------


def accuracy(adapter: Path | None, dev: Path) -> dict[str, float]:
    """Exact match of greedy answers on the dev file, per question kind and overall, to 3 places."""
    from onecard.vlm.evaluate import accuracy_by_kind

    return {kind: round(score, 3) for kind, score in accuracy_by_kind(dev, adapter).items()}


def tune_tiny(train: Path, dev: Path, steps: int, runs: Path, **knobs: Any) -> Any:
    from onecard.vlm import run
    from onecard.vlm.config import TuneConfig

    config = TuneConfig(model="tiny", data=str(train), dev_data=str(dev), max_steps=steps, batch_size=BATCH,
                        learning_rate=LR, lr_scheduler="constant", warmup_ratio=0.0, lora_rank=RANK,
                        lora_alpha=2 * RANK, lora_dropout=0.0, train_projector=True, precision="fp32",
                        logging_steps=5, save_steps=10_000, seed=1, **knobs)
    return run.tune(config, runs_root=str(runs), report_to=())


def part_a(work: Path) -> list[dict[str, Any]]:
    from onecard.vlm.synthetic import CHANCE, write_splits

    rows = []
    for shapes, steps in ((1, 150), (2, 300)):
        split = write_splits(work / f"shapes{shapes}", train_images=100, dev_images=30, seed=1, shapes=shapes)
        t0 = time.perf_counter()
        trained = tune_tiny(split["train"], split["dev"], steps, work / "runs")
        minutes = (time.perf_counter() - t0) / 60
        base, tuned = accuracy(None, split["dev"]), accuracy(trained.dir / "adapter", split["dev"])
        rows.append({"shapes": shapes, "steps": steps, "train_minutes": round(minutes, 2), "base": base,
                     "tuned": tuned, "chance": round(sum(CHANCE.values()) / 3, 3),
                     "first_loss": trained.record["metrics"]["first_loss"],
                     "final_loss": trained.record["metrics"]["final_loss"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -- (b) onecard against a plain TRL script ----------------------------------------------------------------------


def side_onecard(train: Path, steps: int, work: Path) -> list[float]:
    """Step times in 5-step windows, from the run's logged s_per_step (the first window dropped: warm-up).

    The micro-batch is the whole batch, as on the TRL side: without a card to plan for, `vlm tune` would otherwise
    take its CPU default (8 rows per pass, 2 passes per step), which is not the same setting."""
    trained = tune_tiny(train, train, steps, work, micro_batch_size=BATCH, gradient_checkpointing=False)
    logged = [json.loads(line) for line in (trained.dir / "metrics.jsonl").read_text().splitlines()]
    return [m["s_per_step"] for m in logged if "s_per_step" in m][1:]


def side_trl(train: Path, steps: int, work: Path) -> list[float]:
    """The plain script, as TRL's docs write a VLM SFT; a callback times 5-step windows after the first."""
    from datasets import Dataset
    from peft import LoraConfig
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from onecard.vlm.model import model_dir

    rows = [json.loads(line) for line in train.read_text().splitlines()]
    dataset = Dataset.from_list([{
        "images": [Image.open(train.parent / r["image"]).convert("RGB")],
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows])
    folder = model_dir("tiny")
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype="float32")
    processor = AutoProcessor.from_pretrained(folder)
    peft_config = LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
                             modules_to_save=["multi_modal_projector"])
    args = SFTConfig(output_dir=str(work / "trl"), per_device_train_batch_size=BATCH, learning_rate=LR,
                     lr_scheduler_type="constant", max_steps=steps, logging_steps=5, save_strategy="no",
                     report_to="none", use_cpu=True, gradient_checkpointing=False, max_length=None, seed=1,
                     disable_tqdm=True, bf16=False)  # fp32, as the onecard side (SFTConfig defaults bf16 on)
    ticks: list[float] = []

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % 5 == 0:
                ticks.append(time.perf_counter())

    SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor, peft_config=peft_config,
               callbacks=[Timer()]).train()
    return [(b - a) / 5 for a, b in zip(ticks, ticks[1:], strict=False)]


def child(side: str, train: Path, steps: int) -> None:
    """One side in this process: prints its step times and peak RSS as JSON.

    The libraries both sides use are imported first: importing them peaks at about 610 MiB, above what the tiny
    model's training adds, so the process's own peak (ru_maxrss) would be the same on both sides. The job's peak is
    sampled every 10 ms from the start of the side's work; `train_peak_rss_mib` is that peak as it stood at the last
    optimizer step (a callback every Trainer built in the process gets, on both sides alike), before what a side does
    after training (onecard: the resumable checkpoint of the last step, the dev loss, the adapter, the loss plot).
    """
    import threading

    import datasets  # noqa: F401
    import peft  # noqa: F401
    import psutil
    import trl  # noqa: F401

    import onecard.vlm.run  # noqa: F401

    process, peak, at_last_step, done = psutil.Process(), [0], [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    watch_last_step(peak, at_last_step)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        times = (side_onecard if side == "onecard" else side_trl)(train, steps, Path(tmp))
    done.set()
    sampler.join()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"side": side, "s_per_step": statistics.median(times), "peak_rss_mib": round(peak[0] / 2**20, 1),
                      "train_peak_rss_mib": round(at_last_step[0] / 2**20, 1),
                      "process_peak_rss_mib": round(rss_mib, 1)}))


def watch_last_step(peak: list[int], at_last_step: list[int]) -> None:
    """Give every transformers Trainer built in this process a callback that copies `peak` into `at_last_step` at
    the last optimizer step."""
    import transformers

    class LastStep(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= state.max_steps:
                at_last_step[0] = peak[0]

    init = transformers.Trainer.__init__

    def watched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.add_callback(LastStep())

    transformers.Trainer.__init__ = watched


def part_b(work: Path, steps: int, repeats: int) -> dict[str, Any]:
    from onecard.vlm.synthetic import write_set

    train = write_set(work / "speed", images=100, seed=1, shapes=2, name="train.jsonl")
    results: dict[str, list[dict[str, float]]] = {"onecard": [], "trl": []}
    for r in range(repeats):
        for side in (("onecard", "trl") if r % 2 == 0 else ("trl", "onecard")):
            out = subprocess.run([sys.executable, __file__, "--child", side, "--train", str(train), "--steps",
                                  str(steps)], capture_output=True, text=True, check=True)
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[side][-1]), flush=True)
    keys = ("s_per_step", "peak_rss_mib", "train_peak_rss_mib", "process_peak_rss_mib")
    med = {s: {k: statistics.median(x[k] for x in v) for k in keys} for s, v in results.items()}
    pairs = [round(a["s_per_step"] / b["s_per_step"], 3)
             for a, b in zip(results["onecard"], results["trl"], strict=True)]
    return {"steps": steps, "repeats": repeats, "median": med, "step_time_ratio_per_pair": pairs,
            "step_time_ratio": round(med["onecard"]["s_per_step"] / med["trl"]["s_per_step"], 3),
            "rss_ratio": round(med["onecard"]["peak_rss_mib"] / med["trl"]["peak_rss_mib"], 3),
            "train_rss_ratio": round(med["onecard"]["train_peak_rss_mib"] / med["trl"]["train_peak_rss_mib"], 3)}


# -- (c) the 7B-shaped LLaVA on a GPU ------------------------------------------------------------------------------


def build_llava_7b(out: Path) -> Path:
    """LLaVA-1.5-7B's shapes with random bf16 weights (14 GB on disk) and a 336 px processor, written once."""
    import torch

    from onecard.vlm.tiny import write_llava

    if (out / "config.json").is_file():
        return out
    return write_llava(out, LLAVA_7B_VISION, LLAVA_7B_TEXT, vision_feature_layer=-2, dtype=torch.bfloat16)


def part_c(work: Path, gpu: str, steps: int) -> dict[str, Any]:
    """NF4 inference (one image, a short answer) and a QLoRA tune at the planner's settings, each in its own process:
    the process's peak reserved + CUDA context against fit's prediction for the same job."""
    from onecard.vlm.synthetic import write_splits

    folder = build_llava_7b(work / "llava-1.5-7b-shaped")
    split = write_splits(work / "shapes336", train_images=40, dev_images=4, seed=1, size=336)
    results = {}
    for job in ("infer", "tune"):
        out = subprocess.run([sys.executable, __file__, "--gpu-child", job, "--model", str(folder), "--train",
                              str(split["train"]), "--gpu", gpu, "--steps", str(steps)],
                             capture_output=True, text=True, check=True)
        results[job] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[job]), flush=True)
    return results


def gpu_child(job: str, model: Path, train: Path, gpu: str, steps: int) -> None:
    import torch

    from onecard.core.device import local_gpu
    from onecard.fit.job import FitJob
    from onecard.fit.plan import plan

    context_gib = 0.45  # fit's CUDA context figure, added to torch's reserved peak (no NVML poll here)
    if job == "infer":
        from onecard.vlm.data import load_examples
        from onecard.vlm.model import answer, load_model, load_processor

        ex = load_examples(train)[0]
        processor, vlm = load_processor(model), load_model(model, torch.bfloat16, "cuda", four_bit=True)
        answer(vlm, processor, ex.images, ex.prompt(), max_new_tokens=32)
        predicted = plan(FitJob(model=str(model), job="infer", quant="nf4", ctx=640, new_tokens=32, gpu=gpu))
        measured = torch.cuda.max_memory_reserved() / 2**30 + context_gib
        print(json.dumps({"job": "nf4 inference", "measured_gib": round(measured, 2),
                          "predicted_gib": round(predicted.estimate.process_gib, 2), "card": str(local_gpu())}))
        return
    from onecard.vlm import run
    from onecard.vlm.config import TuneConfig

    with tempfile.TemporaryDirectory() as tmp:
        trained = run.tune(TuneConfig(model=str(model), data=str(train), dev_data=str(train), max_steps=steps,
                                      gpu=gpu, logging_steps=1, save_steps=10_000), runs_root=tmp, report_to=())
        record = trained.record
    measured = record["peak_memory"].get("gpu_reserved_gib", 0.0) + context_gib
    print(json.dumps({"job": "qlora tune", "plan": record["plan"], "measured_gib": round(measured, 2),
                      "predicted_gib": record["plan"]["predicted_gib"], "peak_memory": record["peak_memory"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", help="run (c) on this machine's CUDA GPU, planning for this card (4070ti...)")
    parser.add_argument("--steps", type=int, default=60, help="steps per side in (b), per tune in (c)")
    parser.add_argument("--repeats", type=int, default=2, help="(b): runs of each side")
    parser.add_argument("--only", choices=("a", "b"), help="only (a) or (b)")
    parser.add_argument("--child", choices=("onecard", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--gpu-child", choices=("infer", "tune"), help=argparse.SUPPRESS)
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.train, args.steps)
        return
    if args.gpu_child:
        gpu_child(args.gpu_child, args.model, args.train, args.gpu, args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.gpu:
            print(json.dumps(part_c(work, args.gpu, min(args.steps, 10)), indent=2))
            return
        if args.only != "b":
            part_a(work)
        if args.only != "a":
            print(json.dumps(part_b(work, args.steps, args.repeats), indent=2))


if __name__ == "__main__":
    main()
