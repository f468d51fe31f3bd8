"""Benchmark hybrid fusion on development sets: bm25, dense, RRF and convex fusion at each alpha (issue 15).

    python benchmarks/rag_fusion.py [--cisi DIR] [--fp32] [--out FILE.json]

Development sets only (never ../shared/data/heldout, which is for acceptance):
- SQuAD 2.0 dev subset, ../shared/data/rag/beir/squad2_dev_small (87 paragraphs, 293 judged questions).
- CISI (library and information science; 1,460 abstracts, 76 judged queries, 3,114 relevant pairs), the classic
  Glasgow IR collection in SMART format (CISI.ALL, CISI.QRY, CISI.REL), with --cisi DIR. From the public repository
  Shakiba-Alipour/Information-Retrieval-on-CISI at commit 7a23c34602e8949d795bb1835004546e00d1d1ba:
  `git show 7a23c34:CISI.ALL > DIR/CISI.ALL` (and CISI.QRY, CISI.REL).

Each set is chunked (200 tokens, 32 overlap) and embedded with the shipped all-MiniLM-L6-v2 as `onecard rag eval
--beir` does; each retriever hands its 100 best chunks to the fusion, as `Searcher` does, and chunks are ranked into
documents (a document takes its best chunk's rank). Convex fusion is swept over alpha = 0.0, 0.1, ... 1.0 (weight on
dense) with min-max ("mm") and theoretical min-max ("tmm": floors -1 for cosine, 0 for BM25) normalisation. The
chosen setting has the best mean nDCG@10 over the sets; ties go to the alpha nearer 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SQUAD = REPO.parent / "shared" / "data" / "rag" / "beir" / "squad2_dev_small"
HELDOUT = REPO.parent / "shared" / "data" / "heldout"
ALPHAS = [round(0.1 * i, 1) for i in range(11)]
NORMS = {"mm": (None, None), "tmm": (-1.0, 0.0)}  # floors of (dense cosine, BM25)


def smart(path: Path) -> dict[str, dict[str, str]]:
    """A SMART-format file (.I id, then .T/.A/.W/.B/.X fields) as id -> field -> text."""
    records: dict[str, dict[str, str]] = {}
    field = None
    for line in path.read_text(encoding="latin-1").splitlines():
        head = re.match(r"^\.I\s+(\d+)\s*$", line)
        if head:
            current = records.setdefault(head.group(1), {})
            field = None
        elif re.match(r"^\.[TAWBXN]\s*$", line):
            field = line[1]
        elif field is not None:
            current[field] = current.get(field, "") + line.strip() + " "
    return records


def load_cisi(folder: Path):
    """CISI as an EvalSet: documents are title + abstract, queries title + text, every listed pair relevant (1)."""
    from onecard.rag.evaluate import EvalSet

    docs = smart(folder / "CISI.ALL")
    queries = {q: " ".join((f.get("T", "") + f.get("W", "")).split()) for q, f in smart(folder / "CISI.QRY").items()}
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "CISI.REL").read_text().splitlines():
        if line.strip():
            q, d = line.split()[:2]
            qrels.setdefault(q, {})[d] = 1
    corpus = [{"_id": d, "title": " ".join(f.get("T", "").split()), "text": " ".join(f.get("W", "").split())}
              for d, f in docs.items()]
    return EvalSet(queries=queries, qrels=qrels, corpus=corpus)


def candidates(evalset, workdir: Path):
    """Index the set; per judged query, the dense and BM25 candidates (row, score) at the searcher's depth."""
    from onecard.rag.evaluate import beir_chunks
    from onecard.rag.index import open_index, write_index
    from onecard.rag.models import SentenceEmbedder
    from onecard.rag.search import DEPTH, Searcher

    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu")
    chunks = beir_chunks(evalset.corpus, 200, 32)
    start = time.perf_counter()
    write_index(workdir, chunks, embedder.embed([c.embed_text for c in chunks]), {"embed_model": embedder.name})
    embed_s = time.perf_counter() - start
    idx = open_index(workdir)
    searcher = Searcher(idx, embedder)
    qids = [q for q in evalset.queries if q in evalset.qrels]
    qvecs = embedder.embed([evalset.queries[q] for q in qids])
    cands = {q: (searcher.dense(v, DEPTH), searcher.bm25(evalset.queries[q], DEPTH))
             for q, v in zip(qids, qvecs, strict=True)}
    return searcher, cands, {"chunks": len(chunks), "judged": len(qids), "embed_s": round(embed_s, 1)}


def score(ranked: dict[str, list[tuple[int, float]]], doc_of, qrels) -> dict[str, float]:
    from onecard.rag.metrics import retrieval_metrics

    runs = {q: list(dict.fromkeys(doc_of(r) for r, _ in rows)) for q, rows in ranked.items()}
    return retrieval_metrics(runs, qrels)


def sweep(cands, doc_of, qrels) -> dict[str, dict[str, float]]:
    """Every retriever's metrics: bm25, dense, rrf, and convex-{norm}@{alpha}."""
    from onecard.rag.search import convex, rrf

    out = {"bm25": score({q: b for q, (_, b) in cands.items()}, doc_of, qrels),
           "dense": score({q: d for q, (d, _) in cands.items()}, doc_of, qrels),
           "rrf": score({q: rrf([[r for r, _ in d], [r for r, _ in b]]) for q, (d, b) in cands.items()}, doc_of,
                        qrels)}
    for norm, floors in NORMS.items():
        for alpha in ALPHAS:
            out[f"convex-{norm}@{alpha}"] = score({q: convex(d, b, alpha, floors) for q, (d, b) in cands.items()},
                                                 doc_of, qrels)
    return out


def choose(results: dict[str, dict[str, dict[str, float]]]) -> tuple[str, float]:
    """The convex setting with the best mean nDCG@10 over the sets; ties to the alpha nearer 0.5, then to mm."""
    names = [m for m in next(iter(results.values())) if m.startswith("convex-")]
    mean = {m: round(sum(r[m]["ndcg@10"] for r in results.values()) / len(results), 4) for m in names}
    best = min(names, key=lambda m: (-mean[m], abs(float(m.split("@")[1]) - 0.5),
                                     list(NORMS).index(m[len("convex-"):].split("@")[0])))
    return best, mean[best]


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    sets = list(results)
    head = "| retriever | " + " | ".join(f"{s} nDCG@10 | {s} R@10" for s in sets) + " | mean nDCG@10 |"
    lines = [head, "|---" * (2 * len(sets) + 2) + "|"]
    for m in next(iter(results.values())):
        cells = " | ".join(f"{results[s][m]['ndcg@10']:.4f} | {results[s][m]['recall@10']:.4f}" for s in sets)
        mean = sum(results[s][m]["ndcg@10"] for s in sets) / len(sets)
        lines.append(f"| {m} | {cells} | {mean:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cisi", help="a folder with CISI.ALL, CISI.QRY, CISI.REL (see the docstring for the source)")
    parser.add_argument("--fp32", action="store_true", help="fp32 weights even where the CPU has bf16 (what an "
                        "AVX2-only CPU runs)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.fp32:
        import onecard.rag.models

        onecard.rag.models._weights_dtype = lambda device: {}
    from onecard.rag.evaluate import load_beir
    from onecard.rag.search import CONVEX_ALPHA, FLOORS

    sets = {"squad": lambda: load_beir(SQUAD)}
    if args.cisi:
        if Path(args.cisi).resolve().is_relative_to(HELDOUT.resolve()):
            raise SystemExit("the held-out sets are for acceptance, never for choosing alpha")
        sets["cisi"] = lambda: load_cisi(Path(args.cisi))
    results, info, check = {}, {}, {}
    for name, load in sets.items():
        evalset = load()
        with tempfile.TemporaryDirectory(prefix="onecard-fusion-") as tmp:
            searcher, cands, info[name] = candidates(evalset, Path(tmp))
            results[name] = sweep(cands, searcher.index.rels.__getitem__, evalset.qrels)
            # the library's own hybrid, through Searcher.rank, with the shipped constants
            from onecard.rag.evaluate import retrieval_eval

            check[name] = retrieval_eval(searcher, evalset, searcher.index.rels.__getitem__, ("hybrid",))["hybrid"]
            searcher.index.close()
        print(f"{name}: {info[name]}", flush=True)
    best, mean = choose(results)
    print(table(results))
    print(f"\nchosen: {best} (mean nDCG@10 {mean}); shipped: alpha={CONVEX_ALPHA} floors={FLOORS}")
    for name, r in results.items():
        single = max(r["bm25"]["ndcg@10"], r["dense"]["ndcg@10"])
        print(f"{name}: chosen {r[best]['ndcg@10']:.4f} vs best single {single:.4f} "
              f"({'at or above' if r[best]['ndcg@10'] >= single else 'BELOW'}); "
              f"Searcher hybrid as shipped {check[name]['ndcg@10']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "info": info, "chosen": best, "mean": mean,
                                              "shipped_hybrid": check}, indent=2))


if __name__ == "__main__":
    main()
