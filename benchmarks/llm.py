"""onecard.llm's overhead over llama-cpp-python (issue 4): time to first token, prompt and generation speed.

    python benchmarks/llm.py [--model smollm2-135m-instruct] [--repeats 15] [--max-tokens 128] [--ctx 2048]
                             [--threads 1] [--out FILE]

Both sides load the same GGUF with the same settings (n_ctx, n_gpu_layers 0 on a machine without a GPU, n_threads,
seed) and stream the same chat at temperature 0, so they produce the same tokens. Repeats are interleaved (the order
flips each round) after one warm-up each; every round starts the system prompt with a new session number so neither
side reuses the KV cache of the previous round. Reported: medians of each side, and onecard's overhead in percent as
the median over rounds of the paired difference (the two sides of a round ran back to back under the same load).

ttft       seconds from the call to the first text chunk
prompt     prompt tokens / ttft (the prompt's evaluation plus the first token)
generate   (completion tokens - 1) / (total - ttft)
total      wall time of a non-streaming call: `backend.chat` against `create_chat_completion(stream=False)`
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from onecard.core.sources import resolve_model
from onecard.llm import LLMConfig, load
from onecard.llm.llamacpp import LlamaCppBackend

NOTES = ("Large language models run on a single consumer GPU when the weights are quantized to four bits. "
         "The KV cache grows with the context length, and the runtime needs a compute buffer on top. ") * 6
QUESTION = f"Here are my notes:\n\n{NOTES}\n\nWrite a detailed, step by step explanation of these notes."


def _messages(session: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Session {session}. You are a helpful assistant."},
            {"role": "user", "content": QUESTION}]


def direct_stream(llm: Any, session: int, max_tokens: int) -> tuple[str, float, float]:
    """llama-cpp-python alone: (text, ttft_s, total_s)."""
    start = time.perf_counter()
    first = None
    text = []
    for chunk in llm.create_chat_completion(_messages(session), stream=True, temperature=0.0, max_tokens=max_tokens,
                                            seed=0):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            first = first or time.perf_counter()
            text.append(piece)
    end = time.perf_counter()
    return "".join(text), (first or end) - start, end - start


def onecard_stream(backend: LlamaCppBackend, session: int, max_tokens: int) -> tuple[str, float, float, int, int]:
    """onecard.llm: (text, ttft_s, total_s, prompt_tokens, completion_tokens)."""
    stream = backend.stream(_messages(session), temperature=0.0, max_tokens=max_tokens, seed=0)
    for _ in stream:
        pass
    reply = stream.reply
    assert reply is not None
    return reply.text, reply.ttft_s, reply.total_s, reply.prompt_tokens, reply.completion_tokens


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama

    backend = load(LLMConfig(model=args.model, ctx=args.ctx, threads=args.threads, seed=0))
    assert isinstance(backend, LlamaCppBackend)
    s = backend.settings
    llm = Llama(s["model"], n_ctx=s["ctx"], n_gpu_layers=s["gpu_layers"], n_threads=s["threads"], seed=0,
                verbose=False)
    rows: dict[str, dict[str, list[float]]] = {k: {"direct": [], "onecard": []}
                                               for k in ("ttft_s", "prompt_tokens_per_s", "tokens_per_s", "total_s")}
    counts = (0, 0)
    for r in range(args.repeats + 1):  # round 0 warms both up and is not counted
        session = 1000 + r
        for side in (("direct", "onecard") if r % 2 else ("onecard", "direct")):
            if side == "onecard":
                text_o, ttft, total, n_prompt, n_new = onecard_stream(backend, session, args.max_tokens)
                counts = (n_prompt, n_new)
            else:
                text_d, ttft, total = direct_stream(llm, session, args.max_tokens)
            if r:
                rows["ttft_s"][side].append(ttft)
                rows["prompt_tokens_per_s"][side].append(counts[0] / ttft)
                rows["tokens_per_s"][side].append((counts[1] - 1) / (total - ttft))
        assert text_o == text_d, f"round {r}: the two sides generated different text"
        for side in (("direct", "onecard") if r % 2 else ("onecard", "direct")):  # a new prompt again: no reuse
            start = time.perf_counter()
            if side == "onecard":
                backend.chat(_messages(session + 10_000), temperature=0.0, max_tokens=args.max_tokens, seed=0)
            else:
                llm.create_chat_completion(_messages(session + 10_000), temperature=0.0, max_tokens=args.max_tokens,
                                           seed=0)
            if r:
                rows["total_s"][side].append(time.perf_counter() - start)
    table = []
    for metric, sides in rows.items():
        d, o = statistics.median(sides["direct"]), statistics.median(sides["onecard"])
        # Overhead per round (the two sides ran back to back, so they saw the same machine load), then the median;
        # positive: onecard is slower.
        ratios = [(b - a) / a if metric in ("ttft_s", "total_s") else (a - b) / a
                  for a, b in zip(sides["direct"], sides["onecard"], strict=True)]
        table.append({"metric": metric, "direct": d, "onecard": o, "overhead_pct": 100 * statistics.median(ratios)})
    return {"rows": table, "prompt_tokens": counts[0], "completion_tokens": counts[1], "settings": s,
            "repeats": args.repeats, "machine": machine()}


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, no GPU"


def render(result: dict[str, Any]) -> str:
    names = {"ttft_s": "time to first token (s)", "prompt_tokens_per_s": "prompt (tokens/s)",
             "tokens_per_s": "generation (tokens/s)", "total_s": "non-streaming call, total (s)"}
    lines = ["| metric | llama-cpp-python | onecard.llm | onecard overhead (median of paired rounds) |",
             "|---|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {names[row['metric']]} | {row['direct']:.4g} | {row['onecard']:.4g} | "
                     f"{row['overhead_pct']:+.1f}% |")
    s = result["settings"]
    lines.append("")
    lines.append(f"{result['prompt_tokens']} prompt tokens, {result['completion_tokens']} generated; n_ctx {s['ctx']}, "
                 f"n_gpu_layers {s['gpu_layers']}, n_threads {s['threads']}; median of {result['repeats']} "
                 f"interleaved rounds. Machine: {result['machine']}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: llama-cpp-python's default "
                        "on 2 cores, and the least disturbed by other work on a shared machine)")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    resolve_model(args.model)  # a clear error before anything loads
    text = render(measure(args))
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
