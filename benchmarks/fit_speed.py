"""How fast the planner answers (target: under 50 ms), for each job family, with and without --solve.

    python benchmarks/fit_speed.py [--repeats 20]

Times `onecard.fit.run.advise` in this process: the first call (cold: catalog and modules loaded) and the median of
the repeats after it. The `onecard fit` command adds the interpreter start and the CLI import (see startup.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

CASES = {
    "llm train qlora 8B": dict(model="llama-3.1-8b", job="train", method="qlora", gpu="4070ti"),
    "llm infer gguf 8B (llama.cpp)": dict(model="llama-3.1-8b", job="infer", quant="q4_k_m", runtime="llama.cpp",
                                          ctx=8192, gpu="3060"),
    "sdxl infer 1024 b4": dict(model="sdxl", job="infer", batch=4, resolution=1024, gpu="4070ti"),
    "yolov8s train b16": dict(model="yolov8s", job="train", batch=16, imgsz=640, gpu="4070ti"),
    "whisper large-v3 infer": dict(model="whisper-large-v3", job="infer", gpu="4070ti"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    t = time.perf_counter()
    from onecard.fit.job import FitJob
    from onecard.fit.run import advise

    print(f"import onecard.fit: {1000 * (time.perf_counter() - t):.1f} ms")
    print(f"{'case':34} {'solve':>6} {'first ms':>9} {'median ms':>10} {'plans':>6}")
    for name, fields in CASES.items():
        job = FitJob(**fields)  # type: ignore[arg-type]
        for solve in (False, True):
            t = time.perf_counter()
            result = advise(job, solutions=solve)
            first = time.perf_counter() - t
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                advise(job, solutions=solve)
                times.append(time.perf_counter() - t)
            plans = len(result.solutions) if result.solutions is not None else 1
            print(f"{name:34} {'yes' if solve else 'no':>6} {1000 * first:9.2f} {1000 * statistics.median(times):10.2f}"
                  f" {plans:6d}")


if __name__ == "__main__":
    main()
