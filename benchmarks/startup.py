"""How fast `import onecard` and `onecard --help` answer (target: under 0.5 s on a 2-core machine).

    python benchmarks/startup.py [--repeats 10]

Prints the median and best wall time of each, measured in fresh processes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    script = shutil.which("onecard") or "onecard"
    cases = {
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
        "python -c 'import onecard'": [sys.executable, "-c", "import onecard"],
        "onecard --help": [script, "--help"],
        "onecard fit --help": [script, "fit", "--help"],
    }
    print(f"{'case':40s} {'median s':>9s} {'best s':>9s}")
    for name, cmd in cases.items():
        times = timed(cmd, args.repeats)
        print(f"{name:40s} {statistics.median(times):9.3f} {min(times):9.3f}")


if __name__ == "__main__":
    main()
