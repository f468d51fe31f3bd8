"""Benchmark `onecard rag`: retrieval quality on SQuAD, and speed on a 10,000-chunk, 1,000-file corpus.

    python benchmarks/rag.py [--out FILE.json]

1. Retrieval on ../shared/data/rag/beir/squad2_dev_small: nDCG@10, recall@5, MRR@10 of bm25, dense, hybrid, and
   rerank when a real cross-encoder is in the local hub cache (a random-weight one would only measure noise).
2. A corpus of 1,000 files from public text: TinyShakespeare cut into files, the SQuAD paragraphs, and this
   repository's code and docs (nothing from the held-out acceptance set). Indexed with 64-token prose chunks to
   reach about 10,000 chunks; then: embedding chunks/s, hybrid search p50 (query embedding included),
   rerank-top-20 p50 with a cross-encoder of ms-marco-MiniLM-L-6-v2's shape (all-MiniLM-L6-v2's encoder and an
   untrained head: its latency, not its quality), re-index after editing one file (warm embedder: what a watcher
   or second run in one process pays; the cold command adds start-up), and index bytes per chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SQUAD = SHARED / "rag" / "beir" / "squad2_dev_small"
SHAKESPEARE = SHARED / "tinyshakespeare" / "input.txt"


def p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def timed(fn, inputs: list) -> tuple[float, float]:
    """p50 wall and p50 CPU milliseconds of fn(x) over inputs. This process's CPU time bounds from above the wall
    time it would take with the machine to itself (its threads run in parallel or not, but never wait for CPU)."""
    walls, cpus = [], []
    for x in inputs:
        w, c = time.perf_counter(), time.process_time()
        fn(x)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return p50_ms(walls), p50_ms(cpus)


def retrieval_quality() -> dict:
    from onecard.rag.evaluate import beir_chunks, load_beir, retrieval_eval
    from onecard.rag.index import open_index, write_index
    from onecard.rag.models import SentenceEmbedder, load_reranker
    from onecard.rag.search import Searcher

    evalset = load_beir(SQUAD)
    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu")
    chunks = beir_chunks(evalset.corpus, 200, 32)
    reranker, note = load_reranker("auto", "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        write_index(Path(tmp), chunks, embedder.embed([c.embed_text for c in chunks]), {"embed_model": embedder.name})
        idx = open_index(Path(tmp))
        modes = ("bm25", "dense", "hybrid") + (("rerank",) if reranker else ())
        result = retrieval_eval(Searcher(idx, embedder, reranker), evalset, idx.rels.__getitem__, modes)
        rankings = result.pop("_rankings")
        misses = {m: sum(1 for q, r in rankings[m].items() if not set(r[:10]) & set(evalset.qrels[q])) for m in modes}
    return {"metrics": result, "reranker": reranker.name if reranker else None, "note": note, "misses@10": misses,
            "judged": len(evalset.qrels), "chunks": len(chunks)}


def make_corpus(root: Path, files: int = 1000) -> dict[str, int]:
    """1,000 files: this repository's code and docs, the SQuAD paragraphs, and TinyShakespeare cut to fill the rest."""
    counts = {"code": 0, "squad": 0, "shakespeare": 0}
    for src in sorted(REPO.glob("onecard/**/*.py")) + sorted(REPO.glob("tests/**/*.py")) + sorted(REPO.glob("*.md")):
        dest = root / "repo" / src.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        counts["code"] += 1
    (root / "squad").mkdir()
    for line in (SQUAD / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        (root / "squad" / f"{doc['_id']}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n")
        counts["squad"] += 1
    lines = SHAKESPEARE.read_text().splitlines()
    n = files - counts["code"] - counts["squad"]
    per = len(lines) // n + 1
    (root / "shakespeare").mkdir()
    for i in range(n):
        (root / "shakespeare" / f"part{i:04d}.txt").write_text("\n".join(lines[i * per:(i + 1) * per]) + "\n")
        counts["shakespeare"] += 1
    return counts


def minilm_shaped_cross_encoder(out: Path) -> Path:
    """all-MiniLM-L6-v2's BERT encoder under a fresh 1-logit head: the shape (6 layers, 384 wide) of
    cross-encoder/ms-marco-MiniLM-L-6-v2, so its latency is that model's; its scores mean nothing."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from onecard.core.sources import resolve_model

    src = str(resolve_model("all-minilm-l6-v2").path)
    torch.manual_seed(0)
    BertForSequenceClassification.from_pretrained(src, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def speed(workdir: Path) -> dict:
    from onecard.rag.evaluate import load_beir
    from onecard.rag.index import build_index, open_index
    from onecard.rag.models import Reranker, SentenceEmbedder
    from onecard.rag.search import Searcher

    corpus, index = workdir / "corpus", workdir / "index"
    counts = make_corpus(corpus)
    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu", batch_size=32)
    _ = embedder.dim  # load the model outside the timings
    cpu = os.times()
    stats = build_index(index, [corpus], embedder, chunk_tokens=64, overlap_tokens=16)
    cpu_s = (os.times().user - cpu.user) + (os.times().system - cpu.system)
    out: dict = {"files": stats.files, "corpus": counts, "chunks": stats.chunks, "embedded": stats.embedded,
                 "build_s": round(stats.seconds, 1), "embed_s": round(stats.embed_seconds, 1),
                 "chunks_per_s": round(stats.embedded / stats.embed_seconds, 1),
                 # The CPU was shared: what this process got, and the rate per CPU-second it used (times the
                 # machine's cores, the rate it would reach with the machine to itself).
                 "build_cpu_s": round(cpu_s, 1), "cpu_share": round(cpu_s / stats.seconds / (os.cpu_count() or 1), 2),
                 "chunks_per_cpu_s": round(stats.embedded / cpu_s, 1)}
    version = open_index(index).dir
    out["index_bytes"] = sum(p.stat().st_size for p in version.rglob("*") if p.is_file())
    out["bytes_per_chunk"] = round(out["index_bytes"] / stats.chunks)

    # Search latency: 100 SQuAD questions, hybrid (the query's embedding included), best of the same process.
    questions = list(load_beir(SQUAD).queries.values())[:100]
    searcher = Searcher(open_index(index), embedder)
    searcher.search(questions[0], k=10)
    out["hybrid_p50_ms"], out["hybrid_p50_cpu_ms"] = timed(lambda q: searcher.search(q, k=10, mode="hybrid"),
                                                           questions)
    out["query_embed_p50_ms"], out["query_embed_p50_cpu_ms"] = timed(lambda q: embedder.embed([q]), questions)
    qvecs = {q: embedder.embed([q])[0] for q in questions}
    out["hybrid_rank_only_p50_ms"], _ = timed(lambda q: searcher.rank(q, qvecs[q], 10, "hybrid"), questions)

    ce = minilm_shaped_cross_encoder(workdir / "ce")
    searcher.reranker, searcher.rerank_top = Reranker("minilm-l6-shaped", str(ce), "cpu"), 20
    searcher.search(questions[0], k=10, mode="rerank")
    out["rerank20_p50_ms"], out["rerank20_p50_cpu_ms"] = timed(lambda q: searcher.search(q, k=10, mode="rerank"),
                                                               questions[:30])

    # Re-index after one file of 1,000 changes: warm (same process), then the cold command.
    target = corpus / "shakespeare" / "part0100.txt"
    target.write_text(target.read_text() + "\nA line that was not there before, about a benchmark.\n")
    cpu = time.process_time()
    stats = build_index(index, [corpus], embedder, chunk_tokens=64, overlap_tokens=16)
    out["reindex_s"], out["reindex_embedded"] = round(stats.seconds, 2), stats.embedded
    out["reindex_cpu_s"] = round(time.process_time() - cpu, 2)
    out["reindex_changed_files"] = stats.changed_files
    file_chunks = sum(1 for p in open_index(index).paths if p == str(target))
    out["reindex_file_chunks"] = file_chunks
    target.write_text(target.read_text() + "Another new line.\n")
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "onecard.cli", "-q", "rag", "index", "--index-dir", str(index), "--chunk-tokens",
           "64", "--overlap-tokens", "16", "--report-to", "none", "--runs-dir", str(workdir / "runs"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ONECARD_HOME": str(workdir)})
    out["reindex_cold_cli_s"] = round(time.perf_counter() - t, 2)
    out["reindex_cold_cli"] = json.loads(done.stdout) if done.returncode == 0 else done.stderr[-500:]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    import torch

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "load_avg_before": os.getloadavg()}
    quality = retrieval_quality()
    print(json.dumps(quality, indent=2))
    with tempfile.TemporaryDirectory(prefix="onecard-rag-bench-") as tmp:
        fast = speed(Path(tmp))
    machine["load_avg_after"] = os.getloadavg()
    print(json.dumps(fast, indent=2, default=str))
    print(json.dumps(machine))
    if args.out:
        Path(args.out).write_text(json.dumps({"quality": quality, "speed": fast, "machine": machine}, indent=2,
                                             default=str))


if __name__ == "__main__":
    main()
