"""`onecard rag`: index, search, eval, ask and chat. Each entry point reads top to bottom.

index and eval are recorded runs (config, versions, the build's or the evaluation's figures); search, ask and chat
answer at once and record nothing.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from onecard.core.errors import ConfigError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, start_run
from onecard.llm.config import LLMConfig
from onecard.rag.answer import Answer, answer, build_messages, checked
from onecard.rag.citations import CitationChecker, load_checker
from onecard.rag.config import AskConfig, EvalConfig, Fusion, IndexConfig, Retriever, SearchConfig
from onecard.rag.evaluate import (
    MODES,
    answer_eval,
    beir_chunks,
    generate_questions,
    load_beir,
    load_qa,
    retrieval_eval,
)
from onecard.rag.index import BuildStats, Index, build_index, index_path, open_index, write_index
from onecard.rag.models import Embedder, SentenceEmbedder, query_backend
from onecard.rag.rerank import LLM_PREFIXES, LLMReranker, load_reranker
from onecard.rag.search import Hit, Mode, Searcher
from onecard.rag.versions import CURRENT, check_outside

__all__ = ["index", "open_searcher", "search", "evaluate", "ask", "chat"]

Status = Callable[[str], None]


def _status(line: str) -> None:
    stderr_console().print(line, markup=False, highlight=False, style="dim", soft_wrap=True)


def index(config: IndexConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
          embedder: Embedder | None = None, status: Status = _status) -> tuple[Run, BuildStats]:
    """Build or update the index `config.name` as a recorded run; re-run it after edits, deletes and renames.
    `status` gets the build's progress lines (the web app streams them)."""
    root = index_path(config.name, config.index_dir)
    roots = [Path(p) for p in config.paths]
    if not roots:
        if not (root / CURRENT).is_file():
            raise ConfigError(f"index '{config.name}' does not exist yet and no folders were given",
                              f"name the folders and files to index: `onecard rag index PATH... --name {config.name}`")
        roots = [Path(p) for p in open_index(root).meta["roots"]]
    if config.index_dir:
        check_outside(root, roots)
    with start_run("rag", config, runs_root=runs_root, report_to=report_to) as run:
        embedder = embedder or SentenceEmbedder(config.embed_model, config.device, config.batch_size,
                                                config.embed_backend)
        stats = build_index(root, roots, embedder, chunk_tokens=config.chunk_tokens,
                            overlap_tokens=config.overlap_tokens, max_file_bytes=int(config.max_file_mb * 2**20),
                            store=config.store, qdrant_url=config.qdrant_url, progress=status)
        run.set("index", {"dir": str(root), "roots": [str(r) for r in roots], **stats.to_json()})
        run.set("skipped", stats.notes)
        run.set_metrics({"files": stats.files, "chunks": stats.chunks, "embedded": stats.embedded,
                         "seconds": round(stats.seconds, 3),
                         "chunks_per_s": round(stats.embedded / stats.embed_seconds, 1) if stats.embedded else None})
        run.set("embed_backend", getattr(embedder, "backend", None))
    return run, stats


def open_searcher(name: str, index_dir: str | None, device: str, retriever: Retriever, reranker: str,
                  rerank_top: int, status: Status = _status, fusion: Fusion = "convex",
                  alpha: float | Literal["auto"] = "auto", llm: LLMConfig | None = None) -> tuple[Searcher, Mode]:
    """The index's searcher with its own embedding model, and the mode `retriever` comes to (auto: rerank when a
    cross-encoder is found or `reranker` names a chat model, else hybrid, with a note saying how to get one); `llm`:
    the chat model `--reranker llm` reranks with."""
    idx = open_index(index_path(name, index_dir))
    embedder = SentenceEmbedder(idx.meta["embed_model"], device, backend=query_backend(idx.meta))
    model, note = load_reranker("none" if retriever in ("dense", "bm25", "hybrid") else reranker, device, llm)
    if retriever == "rerank" and model is None:
        raise ConfigError("--retriever rerank needs a reranker", note or "pass --reranker PATH, or --reranker llm")
    if note:
        status(note)
    mode: Mode = "rerank" if model is not None else ("hybrid" if retriever == "auto" else retriever)  # type: ignore
    return Searcher(idx, embedder, model, rerank_top, fusion, alpha), mode


def search(config: SearchConfig, status: Status = _status) -> dict[str, Any]:
    """The best chunks for `config.query`, as JSON-able dicts with their `path:line`."""
    searcher, mode = open_searcher(config.name, config.index_dir, config.device, config.retriever, config.reranker,
                                   config.rerank_top, status, config.fusion, config.alpha)
    _ = searcher.embedder.dim  # loads the model, so that the time below is the search's
    start = time.perf_counter()
    hits = searcher.search(config.query, config.k, mode, config.path_glob, config.language)
    return {"query": config.query, "retriever": mode, "seconds": round(time.perf_counter() - start, 4),
            "hits": [{"location": h.location, **h.to_json()} for h in hits]}


def evaluate(config: EvalConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
             status: Status = _status) -> dict[str, Any]:
    """bm25, dense, hybrid and rerank side by side on a BEIR folder or a JSONL of questions (a recorded run)."""
    if (config.beir is None) == (config.qa is None):
        raise ConfigError("pass exactly one of --beir DIR and --qa FILE.jsonl")
    inputs = {"beir": config.beir} if config.beir else {"qa": str(config.qa)}
    with start_run("rag", config, inputs=inputs, runs_root=runs_root, report_to=report_to) as run, \
            tempfile.TemporaryDirectory(prefix="onecard-rag-eval-") as tmp:
        # -- set up: the index (a BEIR corpus is chunked and embedded here), the reranker
        if config.beir:
            evalset = load_beir(config.beir).limited(config.limit)
            embedder = SentenceEmbedder(config.embed_model, config.device, backend=config.embed_backend)
            chunks = beir_chunks(evalset.corpus, config.chunk_tokens, config.overlap_tokens)
            status(f"{len(evalset.corpus)} documents -> {len(chunks)} chunks; embedding with {config.embed_model}")
            start = time.perf_counter()
            vectors = embedder.embed([c.embed_text for c in chunks], progress=True)
            run.set("embedding", {"chunks": len(chunks), "seconds": round(time.perf_counter() - start, 3)})
            write_index(Path(tmp), chunks, vectors, {"embed_model": config.embed_model, "dim": int(vectors.shape[1]),
                                                    "roots": [], "embed_backend": embedder.backend})
            idx = open_index(Path(tmp))
        else:
            idx = open_index(index_path(config.name, config.index_dir))
            embedder = SentenceEmbedder(idx.meta["embed_model"], config.device, backend=query_backend(idx.meta))
            if config.generate:
                _draft_questions(config, idx, status)
            evalset = load_qa(str(config.qa), idx.rels, idx.paths).limited(config.limit)
        reranker, note = load_reranker(config.reranker, config.device, config)
        if note:
            status(note)
        searcher = Searcher(idx, embedder, reranker, config.rerank_top, config.fusion, config.alpha)
        doc_of = idx.rels.__getitem__

        # -- work: every retriever on every judged question
        modes = MODES if reranker is not None else tuple(m for m in MODES if m != "rerank")
        scored = retrieval_eval(searcher, evalset, doc_of, modes)
        scored.pop("_rankings")
        result: dict[str, Any] = {m: scored.get(m) for m in MODES}
        result.update({"questions": len(evalset.queries), "judged": sum(q in evalset.qrels for q in evalset.queries),
                       "documents": len(set(idx.rels)), "chunks": idx.size, "embed_model": embedder.name,
                       "embed_backend": embedder.backend,
                       "reranker": reranker.name if reranker else None,
                       "fusion": config.fusion, "alpha": searcher.alpha if config.fusion == "convex" else None})
        if note:
            result["note"] = note
        if config.answer:
            from onecard.llm import load

            backend = load(config)
            mode: Mode = "rerank" if reranker else "hybrid"
            checker = load_checker(config.citation_check, embedder, config.citation_threshold, config.device)

            def ask_one(question: str) -> Answer:
                hits = searcher.search(question, config.k, mode)
                return answer(backend, question, hits, min_score=-1.0, max_tokens=config.max_tokens, checker=checker)

            answered = answer_eval(ask_one, evalset, config.answer, lambda h: h.chunk["rel"])
            result["answers"] = answered["metrics"] | {"llm": backend.model, "backend": config.backend}
            backend.close()
            run.set("answers", answered["answers"])
        run.set_metrics({f"{m}/{k}": v for m in MODES if result[m] for k, v in result[m].items()}
                        | {f"answer/{k}": v for k, v in result.get("answers", {}).items() if isinstance(v, float)})
        run.set("eval", result)
        idx.close()
    result["run_id"] = run.id
    return result


def _draft_questions(config: EvalConfig, idx: Index, status: Status) -> None:
    """--generate N: write N drafted questions (with answers and gold files) to the --qa file, which must be new."""
    import json

    from onecard.llm import load

    out = Path(str(config.qa)).expanduser()
    if out.exists():
        raise ConfigError(f"{out} exists; --generate writes a new question file",
                          "pass a new path to --qa, or drop --generate to evaluate on this one")
    backend = load(config)
    rows = generate_questions(backend, idx.rows(list(range(idx.size))), config.generate, config.seed)
    backend.close()
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    status(f"drafted {len(rows)} questions (of {config.generate} asked) into {out}: read them before trusting scores")


def ask(config: AskConfig, on_text: Callable[[str], None] | None = None, status: Status = _status,
        backend: Any = None, searcher: Searcher | None = None, history: list[dict[str, Any]] | None = None) -> Answer:
    """Answer `config.question` from the index: streamed, with checked citations; "I don't know" without evidence."""
    if not config.question:
        raise ConfigError("no question", "pass the question: `onecard rag ask \"...\" --name NAME`")
    if searcher is None:
        searcher, mode = open_searcher(config.name, config.index_dir, config.device, config.retriever,
                                       config.reranker, config.rerank_top, status, config.fusion, config.alpha,
                                       config)
    else:
        mode = "rerank" if searcher.reranker else ("hybrid" if config.retriever == "auto" else config.retriever)
    hits = searcher.search(config.question, config.k, mode, config.path_glob, config.language)
    checker = load_checker(config.citation_check, searcher.embedder, config.citation_threshold, config.device)
    own = backend is None
    if backend is None:
        backend, own = _answering_backend(config, searcher)
    try:
        if not config.tools:
            return answer(backend, config.question, hits, min_score=config.min_score, on_text=on_text,
                          history=history, temperature=config.temperature, max_tokens=config.max_tokens,
                          checker=checker)
        return _ask_with_tools(backend, searcher, config, hits, on_text, status, history, checker)
    finally:
        if own:
            backend.close()


def _answering_backend(config: AskConfig, searcher: Searcher) -> tuple[Any, bool]:
    """The chat model that answers, and whether the caller owns it (closes it): `--reranker llm` / `llm-listwise`
    rerank with the answering model itself, so its backend is shared, not loaded a second time (an 8B GGUF twice would
    double the memory)."""
    if isinstance(searcher.reranker, LLMReranker) and config.reranker in LLM_PREFIXES:
        return searcher.reranker.backend, False
    from onecard.llm import load

    return load(config), True


def _ask_with_tools(backend: Any, searcher: Searcher, config: AskConfig, hits: list[Hit],
                    on_text: Callable[[str], None] | None, status: Status,
                    history: list[dict[str, Any]] | None, checker: CitationChecker | None) -> Answer:
    from onecard.llm import run_tools
    from onecard.rag.tools import rag_tools

    sources = list(hits)  # the search tool appends what it finds, numbered after these
    tools = rag_tools(searcher, sources, config.k)
    done = run_tools(backend, build_messages(str(config.question), hits, history), tools,
                     max_steps=config.max_steps, temperature=config.temperature, max_tokens=config.max_tokens)
    calls = [{"step": c.step, "name": c.name, "arguments": c.arguments, "result": c.result[:500], "error": c.error}
             for c in done.calls]
    for c in calls:
        status(f"tool {c['step']}: {c['name']}({c['arguments']}){' error: ' + c['error'] if c['error'] else ''}")
    result = checked(Answer(str(config.question), done.reply.text, sources, reply=done.reply.to_json(),
                            tool_calls=calls), checker)
    if on_text:
        on_text(result.text)
    return result


def chat(config: AskConfig, lines: Iterable[str], write: Callable[[str], None], status: Status = _status) -> int:
    """A multi-turn conversation over the index: each question retrieves its own sources; earlier turns stay."""
    searcher, _ = open_searcher(config.name, config.index_dir, config.device, config.retriever, config.reranker,
                                config.rerank_top, status, config.fusion, config.alpha, config)
    backend, _ = _answering_backend(config, searcher)
    history: list[dict[str, Any]] = []
    for line in lines:
        question = line.strip()
        if question in ("/exit", "/quit"):
            break
        if not question:
            continue
        result = ask(config.model_copy(update={"question": question}), write, status, backend, searcher, history)
        write("\n" + "".join(f"  [{c['n']}] {c['location']}\n" for c in result.citations()))
        if result.invalid_citations:
            status(f"dropped {result.invalid_citations} citation(s) naming no retrieved source")
        for v in result.unsupported:
            status(f"[{v.n}?] source {v.n} does not support \"{v.sentence}\" (score {v.score:.2f})")
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": result.text}]
    backend.close()
    return 0
