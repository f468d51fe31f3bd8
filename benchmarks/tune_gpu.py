"""Llama-3.1-8B-class QLoRA on a GPU with the planner's settings: the measured peak against `onecard fit`'s prediction.

The tune issue's GPU target: at sequence 2048, `onecard tune train` on an 8B Llama with QLoRA and every memory knob
left to the planner stays under 10 GiB, and the plan's predicted peak (`plan.predicted_gib` in the run record: what
nvidia-smi shows for the process, reserved memory plus the CUDA context) is within 10% of the measured one. The GPU
machine has no network, and memory does not depend on the weights' values, so the model is Llama-3.1-8B's shape
with random weights, built once in bf16 (16 GB on disk), with onecard's byte-level tokenizer (its ids are the first
rows of the 128,256-row vocabulary: the embedding and the LM head keep their real size). The Dolly training rows are
packed into full 2048-token sequences, so every micro-batch is as large as the plan assumed.

The measured peak is the training process's GPU memory as NVML reports it (polled every 0.1 s, so it matches what
fit predicts), next to torch's own peak reserved and allocated memory from the run record.

    python benchmarks/tune_gpu.py [--gpu 4070ti] [--steps 6] [--out tune_gpu.json]   # CUDA + bitsandbytes, ~10 min
    python benchmarks/tune_gpu.py --tiny --method lora --device cpu                     # the same pipeline, tiny model
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instruct" / "dolly_hhrlhf_train_small.jsonl"
LLAMA_31_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
                   rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = {**LLAMA_31_8B, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}


def build_model(out: Path, shape: dict[str, Any]) -> None:
    """A random-weight Llama of `shape` in bf16 with the byte-level tokenizer, written to `out` once."""
    import torch

    from onecard.tune.model import _atomic_dir, build_random_llama

    if not out.exists():
        _atomic_dir(out, lambda tmp: build_random_llama(tmp, shape, dtype=torch.bfloat16))


class GpuPeak:
    """The largest GPU memory NVML reports for process `pid`, polled in a thread (None without NVML or a GPU)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_bytes, self._stop = pid, None, threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no NVML library or no NVIDIA GPU: nothing to poll
            self._nvml = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self._nvml is not None and not self._stop.is_set():
            for handle in self._handles:
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if proc.pid == self.pid and proc.usedGpuMemory:
                        self.peak_bytes = max(self.peak_bytes or 0, proc.usedGpuMemory)
            time.sleep(0.1)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return None if self.peak_bytes is None else round(self.peak_bytes / 2**30, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model of the same vocabulary (smoke test)")
    parser.add_argument("--method", default="qlora", choices=["qlora", "lora"])
    parser.add_argument("--device", default="auto")
    # The guide's card, not the one lent: on an 80-141 GB data-centre GPU fit's fastest plan would use far more.
    parser.add_argument("--gpu", default="4070ti", help="card to plan for (default: 4070ti, the guide's 12 GB card)")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model-dir", type=Path, help="where the random model is built once and reused")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="onecard-tune-gpu-"))
    model = args.model_dir or work / ("llama-tiny-random" if args.tiny else "llama-3.1-8b-random")
    start = time.perf_counter()
    build_model(model, TINY if args.tiny else LLAMA_31_8B)
    print(f"model folder {model} ready in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    command = [sys.executable, "-m", "onecard.cli", "tune", "train", "--model", str(model), "--data", str(DATA),
               "--method", args.method, "--max-seq-length", str(args.seq), "--packing", "--max-steps",
               str(args.steps), "--device", args.device, "--runs-dir", str(work / "runs"), "--report-to", "none",
               "--json", "--gpu", args.gpu]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    poll = GpuPeak(child.pid)
    stdout, _ = child.communicate()
    nvml_peak = poll.stop()
    if child.returncode != 0:
        sys.exit(f"onecard tune train failed (exit {child.returncode}); its messages are above")
    summary = json.loads(stdout)
    record = json.loads((work / "runs" / summary["run_id"] / "run.json").read_text())
    plan, peak = record["plan"], record["peak_memory"]
    predicted = plan.get("predicted_gib")
    out = {"model": "tiny" if args.tiny else "llama-3.1-8b (random weights)", "plan": plan,
           "measured_process_gib (nvml)": nvml_peak, "torch_reserved_gib": peak.get("gpu_reserved_gib"),
           "torch_allocated_gib": peak.get("gpu_allocated_gib"), "rss_gib": peak.get("rss_gib"),
           "s_per_step": summary.get("s_per_step"), "first_loss": summary.get("first_loss"),
           "final_loss": summary.get("final_loss")}
    if nvml_peak and predicted:
        out["predicted_over_measured"] = round(predicted / nvml_peak, 3)
        out["under_10_gib"] = nvml_peak < 10
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
