"""The index: incremental by content, deletes and renames reflected, and a failed build leaves the last one usable."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.rag.index import build_index, open_index
from onecard.rag.search import Searcher

pytest.importorskip("faiss")
pytest.importorskip("bm25s")


def _notes(root: Path, n: int = 5) -> None:
    for i in range(n):
        (root / f"note{i}.md").write_text(f"# Note {i}\n\nTopic number {i}: apples {i} and pears.\n\n"
                                          f"## Details\n\nMore about topic {i}.\n")


def test_reindex_embeds_only_the_changed_file(tmp_path: Path, embedder) -> None:
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    _notes(docs)
    first = build_index(index, [docs], embedder)
    assert first.files == 5 and first.embedded == first.chunks == 10
    again = build_index(index, [docs], embedder)
    assert again.embedded == 0 and again.unchanged_files == 5  # nothing changed, nothing embedded
    embedder.calls.clear()
    edited = "# Note 2\n\nTopic number 2: now about cherries.\n\n## Details\n\nMore about topic 2.\n"
    (docs / "note2.md").write_text(edited)
    changed = build_index(index, [docs], embedder)
    assert changed.changed_files == 1 and changed.embedded == 1  # only the edited section's chunk is new
    assert embedder.embedded == ["Note 2\n# Note 2\n\nTopic number 2: now about cherries."]
    searcher = Searcher(open_index(index), embedder)
    assert searcher.search("cherries", k=1, mode="bm25")[0].chunk["rel"] == "note2.md"


def test_searching_leaves_the_processs_openmp_threads_alone(tmp_path: Path, embedder) -> None:
    # FAISS and torch share one OpenMP runtime when torch loads first (as in `onecard rag`): a search pinned to
    # one thread must not leave the next build's embedding on one thread too (it halved every re-index's speed).
    import faiss

    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    _notes(docs)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        build_index(index, [docs], embedder)
        assert Searcher(open_index(index), embedder).search("apples", k=3, mode="hybrid")
        (docs / "note0.md").write_text("# Note 0\n\nNow about plums.\n")
        build_index(index, [docs], embedder)
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


def test_deleted_and_renamed_files_leave_the_index(tmp_path: Path, embedder) -> None:
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    _notes(docs)
    build_index(index, [docs], embedder)
    (docs / "note0.md").unlink()
    (docs / "note1.md").rename(docs / "renamed.md")
    embedder.calls.clear()
    stats = build_index(index, [docs], embedder)
    assert stats.removed_files == 2 and stats.added_files == 1
    assert stats.embedded == 0  # a renamed file's chunks keep their vectors
    idx = open_index(index)
    assert sorted(set(idx.rels)) == ["note2.md", "note3.md", "note4.md", "renamed.md"]
    hit = Searcher(idx, embedder).search("topic number 1 apples", k=1, mode="hybrid")[0]
    assert hit.chunk["rel"] == "renamed.md" and hit.chunk["start_line"] == 1
    assert len(list(index.glob("v-*"))) == 1  # older versions are deleted after the swap


def test_an_interrupted_build_leaves_the_previous_index_usable(tmp_path: Path, embedder, monkeypatch) -> None:
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    _notes(docs)
    build_index(index, [docs], embedder)
    before = (index / "CURRENT").read_text()
    (docs / "note9.md").write_text("# Note 9\n\nBananas.\n")

    def boom(texts: list[str], progress: bool = False):
        raise KeyboardInterrupt  # Ctrl-C while embedding

    monkeypatch.setattr(embedder, "embed", boom)
    with pytest.raises(KeyboardInterrupt):
        build_index(index, [docs], embedder)
    monkeypatch.undo()
    import faiss

    def fail_write(*args, **kwargs):
        raise OSError("disk full")  # fails while writing the new version, after its SQLite file

    monkeypatch.setattr(faiss, "write_index", fail_write)
    with pytest.raises(OSError, match="disk full"):
        build_index(index, [docs], embedder)
    monkeypatch.undo()
    assert (index / "CURRENT").read_text() == before
    assert len(list(index.glob("v-*"))) == 1  # the half-written version is gone
    idx = open_index(index)
    assert idx.size == 10 and "note9.md" not in idx.rels
    assert Searcher(idx, embedder).search("apples 3", k=1)[0].chunk["rel"] == "note3.md"


def test_filters_by_path_glob_and_language(tmp_path: Path, embedder) -> None:
    docs, index = tmp_path / "docs", tmp_path / "index"
    (docs / "src").mkdir(parents=True)
    _notes(docs, 2)
    (docs / "src" / "apples.py").write_text("def apples():\n    return 'apples and pears'\n")
    build_index(index, [docs], embedder)
    searcher = Searcher(open_index(index), embedder)
    assert {h.chunk["language"] for h in searcher.search("apples", k=10, language="python")} == {"python"}
    assert {h.chunk["rel"] for h in searcher.search("apples", k=10, path_glob="*.md")} == {"note0.md", "note1.md"}
    assert {h.chunk["rel"] for h in searcher.search("apples", k=10, path_glob="src/*")} == {"src/apples.py"}
    assert searcher.search("apples", k=10, language="rust") == []


def test_qdrant_local_store_searches_and_reindexes_like_faiss(tmp_path: Path, embedder) -> None:
    pytest.importorskip("qdrant_client")
    docs = tmp_path / "docs"
    docs.mkdir()
    _notes(docs)
    build_index(tmp_path / "faiss", [docs], embedder)
    build_index(tmp_path / "qdrant", [docs], embedder, store="qdrant")
    (docs / "note4.md").write_text("# Note 4\n\nKiwis now.\n")
    embedder.calls.clear()
    stats = build_index(tmp_path / "qdrant", [docs], embedder, store="qdrant")
    assert stats.embedded == 1 and stats.reused == 8  # vectors read back from Qdrant
    build_index(tmp_path / "faiss", [docs], embedder)
    for query in ("apples 3", "kiwis", "topic details"):
        scores = {}
        for store in ("faiss", "qdrant"):
            idx = open_index(tmp_path / store)
            assert idx.meta["store"] == store
            hits = Searcher(idx, embedder).search(query, k=3, mode="dense")
            scores[store] = [round(h.score, 5) for h in hits]
            top = hits[0].chunk["rel"]
            idx.close()
        assert scores["faiss"] == scores["qdrant"]  # the same vectors, the same inner products (ties may swap)
        assert top == {"apples 3": "note3.md", "kiwis": "note4.md"}.get(query, top)


class _Server:
    """A Qdrant server stand-in: one in-memory qdrant-client shared by every connection, as a server's collections
    are; `close()` ends a connection, not the server. (The wire protocol is qdrant-client's; this checks ours.)"""

    def __init__(self) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(":memory:")
        self.urls: list[str] = []

    def connect(self, folder, url):
        assert url is not None, "server mode must not fall back to a local folder"
        self.urls.append(url)
        server = self

        class Connection:
            def __getattr__(self, name):
                return getattr(server.client, name)

            def close(self) -> None:
                pass

        return Connection()

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)


def test_qdrant_server_mode_keeps_one_collection_per_index_and_survives_a_failed_build(
        tmp_path: Path, embedder, monkeypatch) -> None:
    pytest.importorskip("qdrant_client")
    from onecard.rag import vectors

    server = _Server()
    monkeypatch.setattr(vectors, "_qdrant", server.connect)
    url = "http://qdrant.example:6333"
    docs = tmp_path / "docs"
    docs.mkdir()
    _notes(docs)
    build_index(tmp_path / "mine", [docs], embedder, store="qdrant", qdrant_url=url)
    build_index(tmp_path / "other", [docs], embedder, store="qdrant", qdrant_url=url)
    first = open_index(tmp_path / "mine")
    assert first.meta["qdrant_url"] == url and not (first.dir / "qdrant").exists()  # nothing local in server mode
    before = server.collections()
    assert len(before) == 2 and first.meta["collection"] in before
    first.close()

    (docs / "note4.md").write_text("# Note 4\n\nKiwis now.\n")
    stats = build_index(tmp_path / "mine", [docs], embedder, store="qdrant", qdrant_url=url)
    assert stats.embedded == 1 and stats.reused == 8  # the unchanged vectors come back from the server
    now = open_index(tmp_path / "mine")
    after = server.collections()
    assert now.meta["collection"] in after and first.meta["collection"] not in after  # the old version's is dropped
    assert [c for c in after if c.startswith("other-")] == [c for c in before if c.startswith("other-")]
    assert Searcher(now, embedder).search("kiwis", k=1, mode="dense")[0].chunk["rel"] == "note4.md"
    now.close()

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    (docs / "note3.md").write_text("# Note 3\n\nFigs.\n")
    monkeypatch.setattr("onecard.rag.index.write_json_atomic", disk_full)
    with pytest.raises(OSError, match="disk full"):
        build_index(tmp_path / "mine", [docs], embedder, store="qdrant", qdrant_url=url)
    monkeypatch.undo()
    monkeypatch.setattr(vectors, "_qdrant", server.connect)
    still = open_index(tmp_path / "mine")
    assert still.meta["collection"] == now.meta["collection"]  # the pointer never moved
    assert server.collections() == after  # and the failed version's collection is gone from the server
    assert Searcher(still, embedder).search("kiwis", k=1, mode="dense")[0].chunk["rel"] == "note4.md"
    still.close()
