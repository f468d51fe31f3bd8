"""Benchmark the LLM reranker on development sets: the default retriever (hybrid) with and without it (issue 15).

    python benchmarks/rag_rerank.py [--cisi DIR] [--model smollm2-135m-instruct] [--questions 20] [--top 10]
                                    [--threads N]
                                    [--methods pointwise listwise] [--out FILE.json]

Development sets only (never ../shared/data/heldout): the SQuAD 2.0 dev subset, and CISI with --cisi DIR (the same
files as benchmarks/rag_fusion.py, whose docstring says where they come from). Each set is chunked and embedded as
`onecard rag eval --beir` does; a subset of its judged questions is taken at an even stride (every len/N-th, in the
file's order, so that it spans the set's topics rather than its first article), and for each question the hybrid
list is ranked as shipped, then its top `--top` chunks are reranked by the chat model (`onecard.rag.rerank`), as
`--reranker llm[:MODEL]` / `llm-listwise[:MODEL]` do. nDCG@10 and recall@10 per document, as rag_fusion.py; latency
is the reranking's wall time per question (the hybrid search itself takes milliseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rag_fusion import HELDOUT, SQUAD, load_cisi, score  # noqa: E402


def subset(evalset, n: int) -> list[str]:
    """n judged questions at an even stride over the set's judged questions."""
    judged = [q for q in evalset.queries if q in evalset.qrels]
    step = max(1, len(judged) // n)
    return judged[::step][:n]


def run_set(evalset, qids: list[str], rerankers: dict, top: int, workdir: Path) -> tuple[dict, dict]:
    from onecard.rag.evaluate import beir_chunks
    from onecard.rag.index import open_index, write_index
    from onecard.rag.models import SentenceEmbedder
    from onecard.rag.search import Searcher

    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu")
    chunks = beir_chunks(evalset.corpus, 200, 32)
    write_index(workdir, chunks, embedder.embed([c.embed_text for c in chunks]), {"embed_model": embedder.name})
    idx = open_index(workdir)
    qvecs = dict(zip(qids, embedder.embed([evalset.queries[q] for q in qids]), strict=True))
    hybrid = Searcher(idx, embedder)
    ranked = {"hybrid": {q: hybrid.rank(evalset.queries[q], qvecs[q], 10, "hybrid") for q in qids}}
    seconds: dict[str, list[float]] = {}
    for name, reranker in rerankers.items():
        searcher = Searcher(idx, embedder, reranker, rerank_top=top)
        ranked[name], seconds[name] = {}, []
        for n, q in enumerate(qids, start=1):
            start = time.perf_counter()
            ranked[name][q] = searcher.rank(evalset.queries[q], qvecs[q], 10, "rerank")
            seconds[name].append(time.perf_counter() - start)
            if n % 4 == 0:
                print(f"  {name}: {n}/{len(qids)} ({sum(seconds[name]) / n:.2f} s/question)", flush=True)
    qrels = {q: evalset.qrels[q] for q in qids}
    metrics = {name: score(r, idx.rels.__getitem__, qrels) for name, r in ranked.items()}
    for name, reranker in rerankers.items():
        metrics[name] |= {"s_per_question": round(sum(seconds[name]) / len(qids), 3), "fallbacks": reranker.fallbacks}
        reranker.fallbacks = 0
    idx.close()
    return metrics, {"chunks": len(chunks), "questions": len(qids), "judged": sum(q in evalset.qrels
                                                                                   for q in evalset.queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cisi", help="a folder with CISI.ALL, CISI.QRY, CISI.REL (see benchmarks/rag_fusion.py)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the chat model (llama.cpp): a .gguf file "
                        "or a shipped name")
    parser.add_argument("--threads", type=int, help="llama.cpp CPU threads (1 is fastest on a loaded 2-core machine)")
    parser.add_argument("--questions", type=int, default=20, help="judged questions per set (an even stride)")
    parser.add_argument("--top", type=int, default=10, help="rerank this many hybrid hits")
    parser.add_argument("--methods", nargs="+", default=["pointwise", "listwise"], choices=["pointwise", "listwise"])
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    from onecard.llm import LLMConfig, load
    from onecard.rag.evaluate import load_beir
    from onecard.rag.rerank import LLMReranker

    backend = load(LLMConfig(model=args.model, threads=args.threads))
    print(f"{backend.model}: {backend.settings}", flush=True)
    rerankers = {f"hybrid + llm {m}": LLMReranker(backend, m) for m in args.methods}
    sets = {"squad": lambda: load_beir(SQUAD)}
    if args.cisi:
        if Path(args.cisi).resolve().is_relative_to(HELDOUT.resolve()):
            raise SystemExit("the held-out sets are for acceptance only")
        sets["cisi"] = lambda: load_cisi(Path(args.cisi))
    results, info = {}, {}
    for name, get in sets.items():
        evalset = get()
        qids = subset(evalset, args.questions)
        with tempfile.TemporaryDirectory(prefix="onecard-rerank-") as tmp:
            results[name], info[name] = run_set(evalset, qids, rerankers, args.top, Path(tmp))
        print(f"{name}: {info[name]}", flush=True)
    backend.close()
    sets_ = list(results)
    print("| retriever | " + " | ".join(f"{s} nDCG@10 | {s} R@10 | {s} s/question" for s in sets_) + " |")
    print("|---" * (3 * len(sets_) + 1) + "|")
    for m in results[sets_[0]]:
        cells = " | ".join(f"{results[s][m]['ndcg@10']:.4f} | {results[s][m]['recall@10']:.4f} | "
                           f"{results[s][m].get('s_per_question', 0):.2f}" for s in sets_)
        print(f"| {m} | {cells} |")
    for s in sets_:
        falls = {m: r["fallbacks"] for m, r in results[s].items() if "fallbacks" in r}
        print(f"{s}: replies that could not be read (retriever order kept): {falls}")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": backend.model, "top": args.top, "results": results,
                                              "info": info}, indent=2))


if __name__ == "__main__":
    main()
