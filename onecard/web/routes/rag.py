"""/api/rag: the indexes (with their evaluations), building one from a registered folder, search, streamed answers
with `[n]` citations, and the cited source at its line.

Indexes live in the data directory's rag/NAME (a request cannot point an index elsewhere). Every path a request
names goes through `safe_path` (inside the registered folders), and a source is read through the index's own
`read_file` tool, which refuses any file the index does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from onecard.core.errors import OnecardError
from onecard.llm.config import LLMConfig
from onecard.rag.config import AskConfig, IndexConfig, SearchConfig
from onecard.web.errors import RequestError
from onecard.web.routes.chat import (
    CTX_FIELD,
    THREADS_FIELD,
    Loaded,
    checked_model,
    events,
    llm_config,
    loaded,
    pushed,
)
from onecard.web.security import safe_path
from onecard.web.settings import WebSettings

__all__ = ["router", "AskRequest", "index_names", "rag_answer", "searcher_for"]

router = APIRouter(prefix="/api/rag", tags=["rag"])
SOURCE_LINES = 200  # lines of a source shown at once: read_file's own cap (rag.tools.MAX_READ_LINES)


class AskRequest(AskConfig):
    """`POST /api/rag/ask`: `onecard rag ask`'s settings, and the earlier turns of the conversation."""

    history: list[dict[str, str]] = Field(default_factory=list, description="earlier turns: {role, content}")
    ctx: int | None = CTX_FIELD
    threads: int | None = THREADS_FIELD


def _root(settings: WebSettings, name: str) -> Path:
    from onecard.rag.index import index_path

    return index_path(name, settings.data_dir / "rag" / name)


def index_names(settings: WebSettings) -> list[str]:
    """The indexes in the data directory."""
    base = settings.data_dir / "rag"
    return sorted(p.name for p in base.iterdir() if (p / "CURRENT").is_file()) if base.is_dir() else []


def _describe(settings: WebSettings, name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    from onecard.rag.versions import current_version

    root = _root(settings, name)
    version = current_version(root)
    meta = json.loads((root / version / "meta.json").read_text()) if version else {}
    evals = [{"run_id": r["id"], "started_at": r.get("started_at"), "status": r.get("status"), "eval": r["eval"]}
             for r in runs if r.get("capability") == "rag" and "eval" in r
             and (r.get("config") or {}).get("qa") and (r.get("config") or {}).get("name") == name]
    return {"name": name, "dir": str(root), "version": version, "roots": meta.get("roots", []),
            "embed_model": meta.get("embed_model"), "chunks": meta.get("chunks"),
            "created_at": meta.get("created_at"), "evaluations": evals}


def _no_index_dir(config: Any) -> None:
    if config.index_dir is not None:
        raise RequestError(400, "index_dir cannot be set from a request: the app's indexes live in its data "
                                "directory", "leave index_dir out and name the index with `name`")


def _checked_ref(value: str, folders: tuple[Path, ...]) -> str:
    """A model reference a request names (reranker, citation checker): a path only inside the registered folders."""
    if value.startswith(("/", "~", ".")) or Path(value).expanduser().exists():
        return str(safe_path(value, folders))
    return value


def _checked_ask(config: AskConfig, folders: tuple[Path, ...]) -> AskConfig:
    _no_index_dir(config)
    update: dict[str, Any] = {k: v for k, v in checked_model(llm_config(config), folders).model_dump().items()}
    kind, _, model = config.reranker.partition(":")
    if kind in ("llm", "llm-listwise"):
        update["reranker"] = config.reranker if not model else f"{kind}:{_checked_ref(model, folders)}"
    elif config.reranker not in ("auto", "none"):
        update["reranker"] = _checked_ref(config.reranker, folders)
    if config.citation_check not in ("embedding", "none"):
        update["citation_check"] = _checked_ref(config.citation_check, folders)
    return config.model_copy(update=update)


def searcher_for(state: Loaded, settings: WebSettings, config: Any, llm: LLMConfig | None = None) -> tuple[Any, Any]:
    """The open searcher of index `config.name` with `config`'s retrieval settings, and its mode; reopened when the
    index was rebuilt since. Call with `state.lock` held."""
    from onecard.rag.run import open_searcher
    from onecard.rag.versions import current_version

    root = _root(settings, config.name)
    key = json.dumps([config.name, config.device, config.retriever, config.reranker, config.rerank_top,
                      config.fusion, config.alpha])
    found = state.searchers.get(key)
    if found is not None and found[0].index.version == current_version(root):
        return found
    if found is not None:
        found[0].index.close()
    state.searchers[key] = open_searcher(config.name, str(root), config.device, config.retriever, config.reranker,
                                         config.rerank_top, lambda line: None, config.fusion, config.alpha, llm)
    return state.searchers[key]


def _citations(settings: WebSettings, name: str, result: Any) -> list[dict[str, Any]]:
    """Each cited source with the page link that opens it at its line, and the API link that reads it."""
    out = []
    for c in result.citations():
        chunk = result.sources[c["n"] - 1].chunk
        query = urlencode({"index": name, "path": chunk["path"], "line": chunk["start_line"]})
        out.append({**c, "path": chunk["path"], "line": chunk["start_line"], "href": f"/rag?{query}",
                    "api": f"/api/rag/source?{query}"})
    return out


def _ask_job(state: Loaded, settings: WebSettings, config: AskConfig,
             history: list[dict[str, Any]]) -> Callable[[Callable[[Any], None]], Any]:
    """The job that answers `config.question` under the model lock, streaming text and status lines to `emit`."""
    from onecard.rag.run import ask

    def job(emit: Callable[[Any], None]) -> Any:
        with state.lock:
            searcher, _ = searcher_for(state, settings, config, config)
            backend = state.get(llm_config(config))
            return ask(config, lambda text: emit(("text", text)), lambda line: emit(("status", line)), backend,
                       searcher, history)

    return job


def rag_answer(state: Loaded, settings: WebSettings, name: str, messages: list[dict[str, Any]],
               temperature: float, max_tokens: int | None) -> Callable[[Callable[[str], None]], Any]:
    """/v1's `rag:NAME` model: a job that answers the last user message from index `name` (earlier turns as history)
    with the default chat model, streams the text, then the cited sources, and returns (Reply, {"citations"})."""
    from onecard.llm.base import Reply

    if name not in index_names(settings):
        from onecard.core.errors import ModelNotFoundError

        raise ModelNotFoundError(f"the model `rag:{name}` does not exist here: no index {name!r}",
                                 "GET /v1/models lists the models this server has")
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users or not isinstance(messages[users[-1]].get("content"), str):
        raise OnecardError("a rag: model needs a last user message with text content", "send the question as text")
    history = [{"role": m["role"], "content": m.get("content") or ""} for m in messages[:users[-1]]
               if m["role"] in ("user", "assistant")]
    config = AskConfig(name=name, question=messages[users[-1]]["content"], temperature=temperature,
                       **({"max_tokens": max_tokens} if max_tokens else {}))
    job = _ask_job(state, settings, config, history)

    def answered(emit: Callable[[str], None]) -> tuple[Reply, dict[str, Any]]:
        result = job(lambda item: emit(item[1]) if item[0] == "text" else None)
        listing = "".join(f"\n[{c['n']}] {c['location']}" for c in result.citations())
        if listing:
            emit("\n\nSources:" + listing)
        usage = result.reply or {}
        reply = Reply(result.text + ("\n\nSources:" + listing if listing else ""),
                      prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
                      finish_reason=usage.get("finish_reason", "stop"))
        return reply, {"citations": _citations(settings, name, result)}

    return answered


# -- routes ------------------------------------------------------------------------------------------------------------


@router.get("/indexes")
def indexes(request: Request) -> dict[str, Any]:
    """Every index in the data directory: its folders, embedding model, size, and its evaluation runs (`onecard rag
    eval --qa FILE --name NAME`), newest first; and the registered folders an index may be built from."""
    from onecard.core.runs import load_runs

    settings = request.app.state.settings
    names = index_names(settings)
    runs = load_runs(settings.runs_dir) if names else []
    return {"indexes": [_describe(settings, n, runs) for n in names],
            "folders": [str(f) for f in settings.folders]}


@router.post("/index")
def build(body: IndexConfig, request: Request) -> StreamingResponse:
    """Build or update index `name` over `paths` (inside the registered folders; empty: its own folders again), as a
    recorded run: {"type": "progress", "line"} events, then {"type": "done", "run_id", the build's figures}."""
    from onecard.rag.run import index

    settings = request.app.state.settings
    _no_index_dir(body)
    paths = body.paths
    if not paths:
        from onecard.rag.index import open_index

        root = _root(settings, body.name)
        if not (root / "CURRENT").is_file():
            raise RequestError(404, f"index '{body.name}' does not exist yet and no folders were given",
                               "name a folder inside a registered folder in `paths`")
        idx = open_index(root)
        paths = list(idx.meta["roots"])
        idx.close()
    found = [safe_path(p, settings.folders) for p in paths]
    for path in found:
        if not path.exists():
            raise RequestError(404, f"{path} does not exist", "name a folder or file inside a registered folder")
    config = body.model_copy(update={"paths": [str(p) for p in found],
                                      "index_dir": str(_root(settings, body.name))})
    state = loaded(request)

    def job(emit: Callable[[Any], None]) -> Any:
        with state.lock:
            return index(config, str(settings.runs_dir), (), status=emit)

    def items() -> Iterator[dict[str, Any]]:
        for kind, value in pushed(job):
            if kind == "piece":
                yield {"type": "progress", "line": value}
            else:
                run, stats = value
                yield {"type": "done", "run_id": run.id, "name": body.name, **stats.to_json(), "notes": stats.notes}

    return events(items())


@router.post("/search")
def search(body: SearchConfig, request: Request) -> dict[str, Any]:
    """The best chunks for `query`, no LLM (search-only mode), each with the link that opens it at its line."""
    import time

    settings = request.app.state.settings
    _no_index_dir(body)
    _root(settings, body.name)  # checks the name
    if body.name not in index_names(settings):
        raise RequestError(404, f"no index named {body.name!r}", "build it first (POST /api/rag/index)")
    state = loaded(request)
    with state.lock:
        searcher, mode = searcher_for(state, settings, body)
        start = time.perf_counter()
        hits = searcher.search(body.query, body.k, mode, body.path_glob, body.language)
        seconds = time.perf_counter() - start
    return {"query": body.query, "retriever": mode, "seconds": round(seconds, 4),
            "hits": [{"location": h.location, **h.to_json(), "href": "/rag?" + urlencode(
                {"index": body.name, "path": h.chunk["path"], "line": h.chunk["start_line"]})} for h in hits]}


@router.post("/ask")
def ask(body: AskRequest, request: Request) -> StreamingResponse:
    """Answer `question` from the index as Server-Sent Events: {"type": "text"} pieces (citations checked as they
    stream), {"type": "status"} lines (tool calls), then {"type": "done", the answer, its sources, and "citations"
    with the links that open each source at its line}."""
    settings = request.app.state.settings
    if not body.question:
        raise RequestError(422, "question: the question is missing", "send the question in `question`")
    if body.name not in index_names(settings):
        raise RequestError(404, f"no index named {body.name!r}", "build it first (POST /api/rag/index)")
    config = _checked_ask(AskConfig(**body.model_dump(exclude={"history"})), settings.folders)
    job = _ask_job(loaded(request), settings, config, body.history)

    def items() -> Iterator[dict[str, Any]]:
        for kind, value in pushed(job):
            if kind == "piece":
                yield {"type": value[0], value[0] if value[0] == "text" else "line": value[1]}
            else:
                yield {"type": "done", **value.to_json(), "citations": _citations(settings, body.name, value)}

    return events(items())


@router.get("/source")
def source(request: Request, index: str = Query(description="the index"),
           path: str = Query(description="the file, as the index holds it"),
           line: int = Query(1, ge=1, description="the line to open at")) -> dict[str, Any]:
    """Lines of an indexed file around `line`: only a file inside the registered folders that the index holds."""
    from onecard.rag.tools import rag_tools

    settings = request.app.state.settings
    if index not in index_names(settings):
        raise RequestError(404, f"no index named {index!r}", "GET /api/rag/indexes lists them")
    real = safe_path(path, settings.folders)
    state = loaded(request)
    config = SearchConfig(name=index, query="-", retriever="bm25", reranker="none")
    with state.lock:
        searcher, _ = searcher_for(state, settings, config)
        read_file = next(t.fn for t in rag_tools(searcher, []) if t.name == "read_file")
        first = max(1, line - 30)
        try:
            text = read_file(str(real), first, first + SOURCE_LINES - 1)
        except PermissionError as e:
            raise RequestError(403, str(e), "open a file the index holds (its citations link to them)") from None
    rows = [(int(n), t) for n, _, t in (ln.partition(": ") for ln in text.splitlines()) if n.isdigit()]
    return {"index": index, "path": str(real), "line": line,
            "lines": [{"n": n, "text": t} for n, t in rows]}
