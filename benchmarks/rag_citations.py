"""Benchmark the citation checker (onecard.rag.citations) on SQuAD 2.0 dev, where the supporting passage is known.

    python benchmarks/rag_citations.py [--backend auto|torch|onnx-fp32|onnx-int8] [--out FILE.json]

Development data only (../shared/data/rag/squad2_dev_small/small.json; never ../shared/data/heldout). Each
paragraph is chunked as `onecard rag eval --beir` does (200 tokens, 32 overlap). For each answerable question:

- supported pairs: a claim cited against the chunk that holds the answer: "copied", the paragraph's sentence that
  holds the answer span (what an extractive answer says), and "q+a", the question followed by the answer ("In what
  country is Normandy located? France."), the crowd-worker's paraphrase of that fact;
- "unanswerable" (reported apart, not used to set anything): an unanswerable question with its plausible wrong
  answer ("When did the Normans ...? 1066."), cited against the paragraph that seems to hold it: a fluent claim
  about the right topic that its source does not state. Only the threshold can catch it;
- unsupported pairs ("a wrong [n]"): the same claim cited against another retrieved chunk, the best chunk for the
  question (embedding cosine) that is from another paragraph and does not contain the answer.

The sources given with each claim are 5, as `rag ask` gives: the right chunk, the wrong one, and the next best
chunks for the question (so the right one is always among them: this measures a wrong [n] among retrieved sources,
not retrieval). The checker's rule (`citations.supported`: a score at or above a threshold and no other source
better by more than a slack) is set on part A (the Normans article): the (threshold, slack) of highest recall whose
precision of "supported" is at least 0.95 there (a margin over the 0.9 target). Part B (Computational complexity
theory) reports it unseen, next to the cosine alone (slack inf) set the same way. Then one answer is checked end to
end: a right [n] passes, a wrong [n] comes out as [n?].
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SQUAD = REPO.parent / "shared" / "data" / "rag" / "squad2_dev_small" / "small.json"
TARGET = 0.9
MARGIN = 0.95  # precision asked of the threshold on part A
GRID = [round(0.3 + 0.05 * i, 2) for i in range(11)]  # threshold: 0.30 ... 0.80
SLACKS = [0.0, 0.02, 0.05, 0.1, 0.2, math.inf]  # inf: cosine alone
K = 5  # sources given, as `rag ask` gives


def sentence_of(context: str, start: int) -> str:
    """The sentence of `context` around character `start` (same splitter as the checker)."""
    from onecard.rag.citations import split_sentences

    at = 0
    for sentence in split_sentences(context):
        at = context.index(sentence, at)
        if at <= start < at + len(sentence):
            return sentence
        at += len(sentence)
    raise ValueError(f"no sentence at {start}")


def items(article: dict, embedder) -> list[dict]:
    """Per answerable question and claim kind: the claim, the right chunk, a wrong one, and the 5 sources given."""
    import numpy as np

    from onecard.core.answers import normalize_answer
    from onecard.rag.chunk import chunk_prose

    chunks = []  # (paragraph index, chunk dict)
    for p, para in enumerate(article["paragraphs"]):
        chunks += [(p, {"id": c.id, "text": c.text}) for c in chunk_prose(para["context"], f"p{p}", "text", 200, 32)]
    vectors = embedder.embed([c["text"] for _, c in chunks])
    asked = [(p, qa) for p, para in enumerate(article["paragraphs"]) for qa in para["qas"]
             if not qa.get("is_impossible") and qa["answers"]]
    rows = []
    plausible = [(p, qa) for p, para in enumerate(article["paragraphs"]) for qa in para["qas"]
                 if qa.get("is_impossible") and qa.get("plausible_answers")]
    for (p, qa), qvec in zip(plausible, embedder.embed([qa["question"] for _, qa in plausible]), strict=True):
        fake = qa["plausible_answers"][0]
        near = sentence_of(article["paragraphs"][p]["context"], fake["answer_start"])
        cited = next((c for q, c in chunks if q == p and near in c["text"]), None)
        if cited is not None:
            order = [int(i) for i in np.argsort(-(vectors @ qvec))]
            given = [cited] + [chunks[i][1] for i in order if chunks[i][1]["id"] != cited["id"]]
            rows.append({"kind": "unanswerable", "claim": f"{qa['question'].strip()} {fake['text'].strip()}.",
                         "right": None, "wrong": cited, "given": given[:K]})
    for (p, qa), qvec in zip(asked, embedder.embed([qa["question"] for _, qa in asked]), strict=True):
        context, gold = article["paragraphs"][p]["context"], qa["answers"][0]
        copied = sentence_of(context, gold["answer_start"])
        order = [int(i) for i in np.argsort(-(vectors @ qvec))]
        right = next((c for q, c in chunks if q == p and copied in c["text"]), None)
        wrong = next((chunks[i][1] for i in order if chunks[i][0] != p
                      and normalize_answer(gold["text"]) not in normalize_answer(chunks[i][1]["text"])), None)
        if right is None or wrong is None:  # the sentence straddles two chunks; every other chunk has the answer
            continue
        given = [right, wrong] + [chunks[i][1] for i in order if chunks[i][1]["id"] not in (right["id"], wrong["id"])]
        for kind, claim in (("copied", copied), ("q+a", f"{qa['question'].strip()} {gold['text'].strip()}.")):
            rows.append({"kind": kind, "claim": " ".join(claim.split()), "right": right, "wrong": wrong,
                         "given": given[:K]})
    return rows


def verdicts(rows: list[dict], scores: dict, threshold: float, slack: float) -> tuple[list[bool], list[bool]]:
    """(judged supported, truly supported) for each row's right and wrong citation."""
    from onecard.rag.citations import supported

    said, truth = [], []
    for r in rows:
        mine = {c["id"]: scores[(r["claim"], c["id"])] for c in r["given"]}
        for cited, label in ((r["right"], True), (r["wrong"], False))[r["right"] is None:]:
            other = max(s for cid, s in mine.items() if cid != cited["id"])
            said.append(supported(mine[cited["id"]], other, threshold, slack))
            truth.append(label)
    return said, truth


def rates(said: list[bool], truth: list[bool]) -> dict:
    tp = sum(s and y for s, y in zip(said, truth, strict=True))
    tn = sum(not s and not y for s, y in zip(said, truth, strict=True))
    return {"pairs": len(truth), "precision": round(tp / sum(said), 4) if any(said) else None,
            "recall": round(tp / sum(truth), 4) if any(truth) else None,
            "flagged_wrong": round(tn / truth.count(False), 4)}


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def choose(rows: list[dict], scores: dict, slacks: list[float]) -> tuple[float, float]:
    """The (threshold, slack) of highest recall with precision >= MARGIN; ties to the higher precision, then the
    stricter setting (higher threshold, smaller slack)."""
    best = None
    for t in GRID:
        for slack in slacks:
            got = rates(*verdicts(rows, scores, t, slack))
            if got["precision"] is not None and got["precision"] >= MARGIN:
                key = (got["recall"], got["precision"], t, -slack)
                if best is None or key > best[0]:
                    best = (key, t, slack)
    assert best is not None, f"no setting reaches precision {MARGIN} on part A"
    return best[1], best[2]


def end_to_end(embedder) -> dict:
    """One answer through the checker: the right source passes, a wrong one is marked."""
    from onecard.rag.citations import CitationChecker

    class H:  # a retrieved hit: only its chunk is read
        def __init__(self, cid: str, text: str) -> None:
            self.chunk = {"id": cid, "text": text}

    data = json.loads(SQUAD.read_text())["data"]
    normans, complexity = data[0]["paragraphs"][0]["context"], data[1]["paragraphs"][0]["context"]
    hits = [H("normans_p0", normans), H("complexity_p0", complexity)]
    text = ("The Normans gave their name to Normandy, a region in France [1]. "
            "They descended from Norse raiders from Denmark, Iceland and Norway [2].")
    marked, verdicts = CitationChecker(embedder).check(text, hits)
    return {"answer": text, "marked": marked, "verdicts": [v.to_json() for v in verdicts]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="auto", help="what runs the embedding model (default auto, as users get)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    from onecard.rag.citations import EMBEDDING_SLACK, EMBEDDING_THRESHOLD, CitationChecker
    from onecard.rag.models import SentenceEmbedder

    embedder = SentenceEmbedder("all-minilm-l6-v2", "cpu", backend=args.backend)
    checker = CitationChecker(embedder)
    articles = json.loads(SQUAD.read_text())["data"]
    parts = {"A": items(articles[0], embedder), "B": items(articles[1], embedder)}
    pairs = [(r["claim"], c) for rows in parts.values() for r in rows for c in r["given"]]
    scores = dict(zip([(s, c["id"]) for s, c in pairs], checker.scores(pairs), strict=True))
    answerable = {name: [r for r in rows if r["kind"] != "unanswerable"] for name, rows in parts.items()}
    threshold, slack = choose(answerable["A"], scores, SLACKS)
    alone, _ = choose(answerable["A"], scores, [math.inf])
    result = {"chosen_on_A": {"threshold": threshold, "slack": slack},
              "shipped": {"threshold": EMBEDDING_THRESHOLD, "slack": EMBEDDING_SLACK}, "backend": embedder.backend,
              "machine": platform.machine(),
              "cpu": platform.processor(), "parts": {}}
    print(f"all-MiniLM-L6-v2 on {embedder.backend}, {platform.machine()} {platform.processor()}")
    print(f"chosen on part A (highest recall with precision >= {MARGIN}): threshold {threshold}, slack {slack}; "
          f"shipped: threshold {EMBEDDING_THRESHOLD}, slack {EMBEDDING_SLACK}")
    print(f"{'part':<5}{'claims':<13}{'rule':<18}{'pairs':>6}{'precision':>11}{'recall':>8}{'wrong [n] flagged':>19}")
    for name, rows in parts.items():
        for kind in ("copied", "q+a", "all", "unanswerable"):
            sel = [r for r in rows if r["kind"] == kind or (kind == "all" and r["kind"] != "unanswerable")]
            for rule, (t, s) in (("shipped", (EMBEDDING_THRESHOLD, EMBEDDING_SLACK)), (f"cosine >= {alone}",
                                                                                     (alone, math.inf))):
                if kind != "all" and rule != "shipped":
                    continue
                got = rates(*verdicts(sel, scores, t, s))
                result["parts"][f"{name}/{kind}/{rule}"] = got
                print(f"{name:<5}{kind:<13}{rule:<18}{got['pairs']:>6}{_f(got['precision']):>11}{_f(got['recall']):>8}"
                      f"{_f(got['flagged_wrong']):>19}")
    demo = end_to_end(embedder)
    result["end_to_end"] = demo
    print(f"\n{demo['answer']}\n-> {demo['marked']}")
    for v in demo["verdicts"]:
        print(f"   [{v['n']}] score {v['score']:.3f} best other {v['best_other']:.3f} supported {v['supported']}")
    b = result["parts"]["B/all/shipped"]
    ok = b["precision"] is not None and b["precision"] >= TARGET and "[2?]" in demo["marked"]
    print(f"\npart B precision of 'supported' {b['precision']} (target >= {TARGET}); wrong [2] flagged: "
          f"{'[2?]' in demo['marked']} -> {'PASS' if ok else 'FAIL'}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
