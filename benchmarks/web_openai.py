"""The OpenAI-compatible endpoint's overhead (issue 20): tokens/s through `/v1/chat/completions` against `onecard.llm`.

    python benchmarks/web_openai.py [--model smollm2-135m-instruct] [--repeats 10] [--max-tokens 128] [--out FILE]

Each side runs in its own process, and both are timed the same way, in this process, from the call to each text chunk's
arrival: the server (`onecard web`'s app under uvicorn) answers the `openai` client's streamed request (`stream: true`,
usage in the last chunk); the direct side is a worker process that loads the same model with the same settings
through `onecard.llm.load` and streams the same chat's chunks over a pipe, one JSON line each. (With the direct side in
this process instead, the two sides ran in different process set-ups, and on this shared 2-core machine that alone
moved the figures by tens of percent either way.) Both at temperature 0 and seed 0, so they produce the same tokens.
One warm-up each, then `--repeats` rounds whose order flips each round; each round starts the system prompt with a
new session number so neither side reuses the KV cache of the round before.

generate   (completion tokens - 1) / (last chunk - first chunk): the generation speed the issue's target is about
end2end    completion tokens / (last chunk - call): with the request, the prompt and the first token
overhead   median over rounds of (direct - web) / direct, in percent (both sides of a round ran back to back)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from onecard.llm import LLMConfig, load

NOTES = ("Large language models run on a single consumer GPU when the weights are quantized to four bits. "
         "The KV cache grows with the context length, and the runtime needs a compute buffer on top. ") * 2
QUESTION = f"Here are my notes:\n\n{NOTES}\n\nWrite a detailed, step by step explanation of these notes."
SERVER = ("import sys, uvicorn; from onecard.web.app import create_app; "
          "uvicorn.run(create_app(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')")


def messages(session: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Session {session}. You are a helpful assistant."},
            {"role": "user", "content": QUESTION}]


def worker(model: str) -> int:
    """The direct side: read "SESSION MAX_TOKENS" lines, stream each chat's chunks as JSON lines, then the count."""
    backend = load(LLMConfig(model=model))
    for line in sys.stdin:
        session, max_tokens = map(int, line.split())
        stream = backend.stream(messages(session), temperature=0.0, max_tokens=max_tokens, seed=0)
        for piece in stream:
            print(json.dumps(piece), flush=True)
        print(json.dumps({"completion_tokens": stream.reply.completion_tokens}), flush=True)
    backend.close()
    return 0


def direct(proc: subprocess.Popen[str], session: int, max_tokens: int) -> dict[str, Any]:
    start = time.perf_counter()
    first = None
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{session} {max_tokens}\n")
    proc.stdin.flush()
    text = []
    while True:
        item = json.loads(proc.stdout.readline())
        if isinstance(item, dict):
            break
        first = first or time.perf_counter()
        text.append(item)
    end = time.perf_counter()
    return timing("".join(text), start, first or end, end, item["completion_tokens"])


def web(client: Any, model: str, session: int, max_tokens: int) -> dict[str, Any]:
    start = time.perf_counter()
    first = None
    text = []
    tokens = 0
    for chunk in client.chat.completions.create(model=model, messages=messages(session), max_tokens=max_tokens,
                                                temperature=0, seed=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece:
            first = first or time.perf_counter()
            text.append(piece)
    end = time.perf_counter()
    return timing("".join(text), start, first or end, end, tokens)


def timing(text: str, start: float, first: float, end: float, tokens: int) -> dict[str, Any]:
    return {"text": text, "tokens": tokens, "ttft_s": first - start,
            "generate": (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0,
            "end2end": tokens / (end - start)}


def start_server(home: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ONECARD_HOME": home, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the web server did not start") from None
            time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--out", type=Path, help="also write the table to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        # In a thread, as the server generates (in its worker thread): on this machine llama.cpp evaluated the same
        # prompt 2-5x slower when called from a process's main thread than from another thread.
        import threading

        thread = threading.Thread(target=worker, args=(args.model,))
        thread.start()
        thread.join()
        return 0
    import openai

    with tempfile.TemporaryDirectory(prefix="onecard-web-bench-") as home:
        proc, url = start_server(home)
        try:
            client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
            backend = subprocess.Popen([sys.executable, __file__, "--worker", "--model", args.model], text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
            web(client, args.model, 0, args.max_tokens)  # warm-up: the server loads its model here
            direct(backend, 0, args.max_tokens)
            rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
            for r in range(1, args.repeats + 1):
                if r % 2:
                    w, d = web(client, args.model, r, args.max_tokens), direct(backend, r, args.max_tokens)
                else:
                    d, w = direct(backend, r, args.max_tokens), web(client, args.model, r, args.max_tokens)
                rows.append((w, d))
            assert backend.stdin is not None
            backend.stdin.close()
            backend.wait(timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def med(side: int, key: str) -> float:
        return statistics.median(row[side][key] for row in rows)

    def overhead(key: str) -> float:
        return statistics.median((d[key] - w[key]) / d[key] * 100 for w, d in rows if d[key] > 0)

    same = sum(w["text"] == d["text"] for w, d in rows)
    lines = [f"model {args.model}, {args.max_tokens} max tokens, {args.repeats} rounds (alternating), "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
             f"completion tokens: median {med(1, 'tokens'):.0f}; identical text in {same}/{len(rows)} rounds",
             "", "| figure | onecard.llm direct | /v1 (openai client, stream) | overhead |", "|---|---|---|---|",
             f"| generate tokens/s | {med(1, 'generate'):.1f} | {med(0, 'generate'):.1f} | "
             f"{overhead('generate'):+.1f}% |",
             f"| end-to-end tokens/s | {med(1, 'end2end'):.1f} | {med(0, 'end2end'):.1f} | "
             f"{overhead('end2end'):+.1f}% |",
             f"| time to first token | {med(1, 'ttft_s') * 1000:.0f} ms | {med(0, 'ttft_s') * 1000:.0f} ms | "
             f"{med(0, 'ttft_s') * 1000 - med(1, 'ttft_s') * 1000:+.0f} ms |"]
    lines.append("")
    lines.append("per round, generate tokens/s (web / direct): " + ", ".join(
        f"{w['generate']:.1f}/{d['generate']:.1f}" for w, d in rows))
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
