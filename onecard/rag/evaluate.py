"""Evaluation sets and harness: a BEIR folder or a JSONL of questions; the four retrievers side by side; answers.

A BEIR folder holds corpus.jsonl ({_id, title, text}), queries.jsonl ({_id, text}, optionally answers), and qrels
(qrels.tsv or qrels/test.tsv: query-id, corpus-id, score). Metrics are per document: chunks are ranked, then each
document takes the rank of its best chunk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onecard.core.answers import answer_metrics, normalize_answer
from onecard.core.errors import DataError
from onecard.rag.chunk import Chunk, chunk_prose
from onecard.rag.metrics import retrieval_metrics
from onecard.rag.search import Searcher

__all__ = ["EvalSet", "load_beir", "load_qa", "beir_chunks", "retrieval_eval", "answer_eval", "checker_metrics",
           "generate_questions", "MODES"]

MODES = ("bm25", "dense", "hybrid", "rerank")
DEPTH = 100  # chunks ranked per query before documents are deduplicated


@dataclass
class EvalSet:
    """Questions (id -> text), graded relevance per question (id -> doc -> grade), and gold answers when known."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] = field(default_factory=dict)
    corpus: list[dict[str, str]] = field(default_factory=list)

    def limited(self, n: int | None) -> EvalSet:
        if n is None:
            return self
        keep = list(self.queries)[:n]
        return dataclasses.replace(self, queries={q: self.queries[q] for q in keep},
                                   qrels={q: self.qrels[q] for q in keep if q in self.qrels})


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a text file with their numbers; a line that is not UTF-8 is named by file and line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                yield n, raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not UTF-8 text (byte {e.start} of the line)",
                                "save the file as UTF-8") from None


def _jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of a JSONL file, each with its `file:line` for errors; blank lines are skipped."""
    rows = []
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, a 5,000-digit number, [[[[... nested too deep
            raise DataError(f"{path}:{n}: not JSON ({getattr(e, 'msg', None) or type(e).__name__})",
                            "each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: a JSON {type(row).__name__}, not an object",
                            "each line must be one JSON object") from None
        rows.append((f"{path}:{n}", row))
    return rows


def _text(row: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    """row[key] as a string (an id may be a number); a missing or wrong value is named by file and line."""
    value = row.get(key, default)
    if key.endswith("id") and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None and default is not None:
        value = default
    if not isinstance(value, str):
        what = f"no {key!r} key" if key not in row else f"{key!r} is {json.dumps(value)[:40]}, not a string"
        raise DataError(f"{where}: {what}", f"each line needs {key!r} as a string")
    return value


def _strings(row: dict[str, Any], key: str, where: str, of: type | tuple[type, ...] = str) -> list[Any]:
    value = row.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, of) for v in value):
        raise DataError(f"{where}: {key!r} is {json.dumps(value)[:40]}, not a list of strings",
                        f"write {key!r} as a list of strings, e.g. [\"51820\"]")
    return value


def load_beir(folder: str | Path) -> EvalSet:
    """A BEIR-style folder; questions without relevance judgements are kept (for answers) but not scored."""
    root = Path(folder).expanduser()
    qrels_file = next((p for p in (root / "qrels.tsv", root / "qrels" / "test.tsv") if p.is_file()), None)
    if not (root / "corpus.jsonl").is_file() or not (root / "queries.jsonl").is_file() or qrels_file is None:
        raise DataError(f"{root} is not a BEIR folder", "it needs corpus.jsonl, queries.jsonl and qrels.tsv "
                        "(or qrels/test.tsv)")
    corpus = [{"_id": _text(d, "_id", at), "title": _text(d, "title", at, ""), "text": _text(d, "text", at)}
              for at, d in _jsonl(root / "corpus.jsonl")]
    queries, answers = {}, {}
    for at, q in _jsonl(root / "queries.jsonl"):
        qid = _text(q, "_id", at)
        queries[qid], answers[qid] = _text(q, "text", at), _strings(q, "answers", at)
    qrels: dict[str, dict[str, int]] = {}
    for n, line in _lines(qrels_file):
        parts = line.rstrip("\r\n").split("\t")
        if not line.strip() or (n == 1 and parts[0] in ("query-id", "query_id", "qid")):
            continue
        if len(parts) < 3:
            raise DataError(f"{qrels_file}:{n}: expected query-id, corpus-id, score separated by tabs")
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
        except (ValueError, OverflowError):
            raise DataError(f"{qrels_file}:{n}: the score {parts[2][:40]!r} is not a finite number",
                            "the third column is the relevance grade: 0, 1, 2...") from None
    return EvalSet(queries=queries, qrels=qrels, answers=answers, corpus=corpus)


def load_qa(path: str | Path, rels: list[str], paths: list[str]) -> EvalSet:
    """Questions against an index: {question, answers?, gold_files?} per line; files match by path relative to
    their indexed folder, by absolute path, or by a path ending."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{file} does not exist", "pass a JSONL file of {question, answers, gold_files}")
    known = sorted(set(zip(rels, paths, strict=True)))
    queries, qrels, answers = {}, {}, {}
    for n, (at, row) in enumerate(_jsonl(file), start=1):
        if "question" not in row:
            raise DataError(f"{at}: no 'question' key", "each line needs question (and answers, gold_files)")
        qid = str(row.get("id", n))
        queries[qid] = _text(row, "question", at)
        answers[qid] = _strings(row, "answers", at)
        gold = [str(g) for g in _strings(row, "gold_files", at, of=(str, int))]
        qrels[qid] = {rel: 1 for rel, p in known for g in gold
                      if rel == g or p == _absolute(g) or rel.endswith("/" + g)}
    return EvalSet(queries, qrels, answers)


def _absolute(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (ValueError, OSError, RuntimeError):  # a NUL byte, a name too long, a symlink loop: matches no file
        return ""


def beir_chunks(corpus: list[dict[str, str]], budget: int, overlap: int) -> list[Chunk]:
    """Each document's text as prose chunks whose path is the document id and whose heading is its title."""
    out = []
    for doc in corpus:
        heading = (doc["title"],) if doc.get("title") else ()
        out += [dataclasses.replace(c, heading=heading) for c in chunk_prose(doc["text"], doc["_id"], "text", budget,
                                                                              overlap)]
    return out


def retrieval_eval(searcher: Searcher, evalset: EvalSet, doc_of: Callable[[int], str],
                   modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """Per mode: nDCG@10, recall@5, recall@10, MRR@10 over the judged questions, and the per-question rankings."""
    qids = [q for q in evalset.queries if q in evalset.qrels]
    qvecs = searcher.embedder.embed([evalset.queries[q] for q in qids]) if qids else np.zeros((0, 1))
    out: dict[str, Any] = {}
    rankings: dict[str, dict[str, list[str]]] = {}
    for mode in modes:
        runs = {}
        for q, qvec in zip(qids, qvecs, strict=True):
            ranked = searcher.rank(evalset.queries[q], qvec, DEPTH, mode)  # type: ignore[arg-type]
            runs[q] = list(dict.fromkeys(doc_of(r) for r, _ in ranked))[:DEPTH]
        out[mode] = retrieval_metrics(runs, evalset.qrels)
        rankings[mode] = runs
    out["_rankings"] = rankings
    return out


def answer_eval(ask: Callable[[str], Any], evalset: EvalSet, n: int,
                doc_of_hit: Callable[[Any], str]) -> dict[str, Any]:
    """Answer the first `n` questions with `ask` (question -> rag.answer.Answer) and score them.

    citation_precision: of the valid citations, the share whose source is a gold document, or (no gold documents
    known) contains a gold answer. abstain_rate: of the questions with no gold answer (unanswerable), the share
    answered "I don't know". When the answers carry citation checks (`rag.citations`): supported_citations, the
    share the checker judged supported, and checker_precision / checker_recall, its verdicts against that gold
    (a citation is truly supported when its source is gold, as for citation_precision).
    """
    qids = list(evalset.queries)[:n]
    predictions, golds, rows = [], [], []
    correct = total = invalid = abstain_ok = unanswerable = 0
    judged: list[tuple[bool, bool | None]] = []  # (checker's verdict, gold) per checked citation
    for q in qids:
        result = ask(evalset.queries[q])
        gold = evalset.answers.get(q, [])
        predictions.append(result.text)
        golds.append(gold)
        invalid += result.invalid_citations
        relevant = {d for d, g in evalset.qrels.get(q, {}).items() if g > 0}
        for c in result.cited:
            total += 1
            correct += bool(_is_gold(result.sources[c - 1], relevant, gold, doc_of_hit))
        judged += [(v.supported, _is_gold(result.sources[v.n - 1], relevant, gold, doc_of_hit)) for v in result.checks]
        if not gold:
            unanswerable += 1
            abstain_ok += result.abstained or "dont know" in normalize_answer(result.text).replace("don t", "dont")
        rows.append({"id": q, "question": evalset.queries[q], "answer": result.text, "gold": gold,
                     "citations": result.citations(), "invalid_citations": result.invalid_citations,
                     "citation_checks": [v.to_json() for v in result.checks]})
    metrics: dict[str, Any] = {k: round(v, 4) for k, v in answer_metrics(predictions, golds).items()}
    metrics.update({"answered": len(qids), "citations": total, "invalid_citations": invalid,
                    "citation_precision": round(correct / total, 4) if total else None})
    if unanswerable:
        metrics["abstain_rate"] = round(abstain_ok / unanswerable, 4)
    if judged:
        metrics.update(checker_metrics(judged))
    return {"metrics": metrics, "answers": rows}


def _is_gold(hit: Any, relevant: set[str], gold: list[str], doc_of_hit: Callable[[Any], str]) -> bool | None:
    """The source is a gold document, or (none known) holds a gold answer; None when nothing gold is known."""
    if relevant:
        return doc_of_hit(hit) in relevant
    return any(normalize_answer(a) in normalize_answer(hit.chunk["text"]) for a in gold) if gold else None


def checker_metrics(judged: list[tuple[bool, bool | None]]) -> dict[str, float | None]:
    """supported_citations (the share judged supported), and where gold is known the checker's precision (of its
    "supported", the share truly supported) and recall (of the truly supported, the share it judged so)."""
    known = [(said, truth) for said, truth in judged if truth is not None]
    said_yes = [truth for said, truth in known if said]
    truly = [said for said, truth in known if truth]
    return {"supported_citations": round(sum(s for s, _ in judged) / len(judged), 4),
            "checker_precision": round(sum(said_yes) / len(said_yes), 4) if said_yes else None,
            "checker_recall": round(sum(truly) / len(truly), 4) if truly else None}


QUESTION_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
                   "required": ["question", "answer"]}
_DRAFT = ("Write one question that the passage below answers, and its answer: a short phrase copied from the "
          "passage. Reply as JSON with keys question and answer.\n\nPassage ({where}):\n{text}")


def generate_questions(backend: Any, chunks: list[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Draft `n` questions from chunks drawn at random (seeded), each with its answer and gold file, by the LLM.

    Drafts whose answer does not occur in their passage are dropped: the model made it up. Read the file before
    trusting the numbers: a small model writes vague questions.
    """
    import random

    from onecard.llm import InvalidOutputError

    rng = random.Random(seed)
    pool = [c for c in chunks if len(c["text"].split()) >= 20]
    rows = []
    for chunk in rng.sample(pool, min(len(pool), n)):
        try:
            reply = backend.chat([{"role": "user", "content": _DRAFT.format(where=chunk["rel"], text=chunk["text"])}],
                                 json_schema=QUESTION_SCHEMA, temperature=0.0, max_tokens=128)
            draft = json.loads(reply.text)
        except (InvalidOutputError, json.JSONDecodeError):  # cut off at max_tokens: no draft
            continue
        question, answer = str(draft.get("question", "")).strip(), str(draft.get("answer", "")).strip()
        if question and answer and normalize_answer(answer) in normalize_answer(chunk["text"]):
            rows.append({"question": question, "answers": [answer], "gold_files": [chunk["rel"]],
                         "gold_chunk": chunk["id"], "lines": [chunk["start_line"], chunk["end_line"]]})
    return rows
