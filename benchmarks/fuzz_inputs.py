"""Damaged and random inputs against fit's model readers and the --config loader: how many end in a named error.

    python benchmarks/fuzz_inputs.py [--cases 500] [--seed 0]

Every case must end in success or an OnecardError naming the input; anything else is a failure, counted by its
exception type. The inputs are seeded, so a run is repeatable and the same cases can be fed to an older checkout
(`PYTHONPATH=/path/to/old/checkout python benchmarks/fuzz_inputs.py`) to count what a fix fixed. The hypothesis tests
in tests/unit/fit/test_bad_input.py and tests/unit/core/test_config.py search the same spaces on every CI run.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onecard.core.config import load_config
from onecard.core.errors import OnecardError
from onecard.fit import readers
from onecard.fit.job import FitJob
from onecard.fit.plan import plan

KEYS = ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "vocab_size", "head_dim", "text_config", "vision_config", "quantization_config"]
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}


def json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 6)
    if kind == 6:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if kind == 7:
        return {rng.choice(KEYS): json_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return [None, rng.random() < 0.5, rng.randint(-2**40, 2**40), rng.choice([0.5, -1.0, float("nan"), 1e308, 64.0]),
            "".join(rng.choice("ab\u00e9\U0001f600 ") for _ in range(rng.randrange(6))),
            rng.choice([0, 1, -3, 2**70])][kind]


def gguf_case(rng: random.Random, whole: bytes, path: Path) -> Callable[[], object]:
    raw = bytearray(whole[: rng.randrange(4, len(whole) + 1)])
    for _ in range(rng.randrange(9)):
        raw[rng.randrange(min(len(raw), 2048))] = rng.randrange(256)
    path.write_bytes(bytes(raw))
    return lambda: readers.read_gguf(path)


def config_json_case(rng: random.Random, path: Path) -> Callable[[], object]:
    config = json_value(rng) if rng.random() < 0.3 else TINY | {rng.choice(KEYS): json_value(rng) for _ in range(3)}
    text = json.dumps(config)
    if rng.random() < 0.2:
        text = text[: rng.randrange(len(text) + 1)]
    path.write_bytes(text.encode() if rng.random() < 0.9 else text.encode() + b"\xff")
    return lambda: plan(FitJob(model=str(path), gpu="4070ti"))


def safetensors_case(rng: random.Random, path: Path) -> Callable[[], object]:
    header = json.dumps(json_value(rng)).encode() if rng.random() < 0.7 else rng.randbytes(rng.randrange(64))
    size = len(header) if rng.random() < 0.5 else rng.randrange(2**64)
    path.write_bytes(struct.pack("<Q", size) + header)
    return lambda: readers.read_safetensors_header(path)


def yaml_case(rng: random.Random, path: Path) -> Callable[[], object]:
    lines = [f"{rng.choice(['model', 'gpu', 'vram', 'seq', 'job', 'other', '- x', '? [a]'])}: "
             f"{rng.choice(['llama-3.1-8b', '4070ti', 'inf', '-1', '[1, 2]', '{a: 1}', '!!binary AAAA', 'x'])}"
             for _ in range(rng.randrange(5))]
    data = "\n".join(lines).encode()
    if rng.random() < 0.3:
        data = rng.randbytes(rng.randrange(40))
    path.write_bytes(data)
    return lambda: load_config(FitJob, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=500, help="cases per input kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tiny = Path(__file__).resolve().parents[1] / "tests" / "unit" / "fit"
    import sys

    sys.path.insert(0, str(tiny.parents[2]))
    from tests.unit.fit.test_readers import write_tiny_gguf

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_tiny_gguf(folder / "whole.gguf")
        whole = (folder / "whole.gguf").read_bytes()
        kinds: dict[str, Callable[[random.Random], Callable[[], object]]] = {
            "GGUF header (cut, bytes changed)": lambda r: gguf_case(r, whole, folder / "case.gguf"),
            "config.json (random values)": lambda r: config_json_case(r, folder / "config.json"),
            "safetensors header": lambda r: safetensors_case(r, folder / "model.safetensors"),
            "--config YAML": lambda r: yaml_case(r, folder / "job.yaml"),
        }
        print(f"{'input':36} {'cases':>6} {'loaded':>7} {'named error':>12} {'other exception':>16}  by type")
        for name, make in kinds.items():
            rng = random.Random(f"{args.seed}-{name}")
            outcome: collections.Counter[str] = collections.Counter()
            for _ in range(args.cases):
                try:
                    make(rng)()
                    outcome["loaded"] += 1
                except OnecardError:
                    outcome["named"] += 1
                except Exception as e:  # noqa: BLE001  what the benchmark counts
                    outcome[type(e).__name__] += 1
            other = {k: v for k, v in outcome.items() if k not in ("loaded", "named")}
            print(f"{name:36} {args.cases:6} {outcome['loaded']:7} {outcome['named']:12} {sum(other.values()):16}  "
                  f"{', '.join(f'{k} {v}' for k, v in sorted(other.items(), key=lambda kv: -kv[1])) or '-'}")


if __name__ == "__main__":
    main()
