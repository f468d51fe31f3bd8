"""The index on disk: FAISS (vectors) + SQLite (chunk metadata) + bm25s (persisted), one version folder at a time.

    rag/NAME/CURRENT          {"version": "v-..."}: written atomically; readers open the version it names
    rag/NAME/MANIFEST.json    the version folders the index created (see rag.versions)
    rag/NAME/v-.../           chunks.sqlite  vectors.faiss (or qdrant/)  bm25/  meta.json

A build holds the folder's lock (a second build is refused), writes a new version folder, swaps CURRENT (an atomic
rename), then deletes the older versions it created. A build that stops part-way leaves CURRENT, and so the previous
index, untouched. Incremental by content: a file whose bytes did not change keeps its chunks; a chunk whose text did
not change (same file or not: renames) keeps its vector; only the rest is embedded. Files gone from the folders leave
the index.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onecard.core.errors import DataError, OnecardError
from onecard.core.extras import require
from onecard.core.paths import data_dir
from onecard.core.records import write_json_atomic
from onecard.rag.chunk import Chunk
from onecard.rag.ingest import SourceFile, read_chunks, walk
from onecard.rag.models import Embedder, backend_family, query_backend
from onecard.rag.vectors import open_vectors, write_vectors
from onecard.rag.versions import (
    CURRENT,
    add_version,
    building,
    check_name,
    current_version,
    remove_versions,
    set_current,
)

__all__ = ["Index", "BuildStats", "build_index", "write_index", "index_path", "open_index", "bm25_tokens",
           "STOPWORDS"]

STOPWORDS = "en"  # bm25s's English stop words


def index_path(name: str, index_dir: str | Path | None = None) -> Path:
    """Where index `name` lives: `index_dir` when given, else the data directory's rag/NAME (`name` must be a plain
    folder name: `../x` or `/x` are refused)."""
    check_name(name)
    return Path(index_dir).expanduser() if index_dir else data_dir() / "rag" / name


def bm25_tokens(texts: list[str]) -> Any:
    """bm25s tokens with English stop words; the same function tokenizes chunks and queries."""
    bm25s = require("bm25s", "rag")
    return bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False, return_ids=False)


@dataclass
class BuildStats:
    """What a build did."""

    files: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks whose text was new: embedded in this build
    reused: int = 0  # chunks whose vector came from the previous index
    added_files: int = 0
    changed_files: int = 0
    removed_files: int = 0
    unchanged_files: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "notes"} | {"skipped": len(self.notes)}


class Index:
    """An open index version: chunk rows by position (the FAISS id and the BM25 document number)."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = root
        self.version = version
        self.dir = root / version
        bm25s = require("bm25s", "rag")
        self.meta: dict[str, Any] = json.loads((self.dir / "meta.json").read_text())
        self.db = sqlite3.connect(f"file:{self.dir / 'chunks.sqlite'}?mode=ro", uri=True, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.vectors = open_vectors(self.dir, self.meta)
        self.bm25 = bm25s.BM25.load(str(self.dir / "bm25"), show_progress=False) if self.size else None
        cols = self.db.execute("SELECT path, rel, language FROM chunks ORDER BY row").fetchall()
        self.paths = [c["path"] for c in cols]
        self.rels = [c["rel"] for c in cols]
        self.languages = [c["language"] for c in cols]

    @property
    def size(self) -> int:
        return int(self.meta["chunks"])

    def rows(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Chunk rows by position, in the order given."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        found = {r["row"]: dict(r) for r in self.db.execute(f"SELECT * FROM chunks WHERE row IN ({marks})", list(ids))}
        for r in found.values():
            r["heading"] = tuple(json.loads(r["heading"]))
        return [found[i] for i in ids]

    def files(self) -> dict[str, dict[str, Any]]:
        """Indexed files by absolute path: sha256, bytes, mtime_ns, root."""
        return {r["path"]: dict(r) for r in self.db.execute("SELECT * FROM files")}

    def close(self) -> None:
        self.db.close()
        self.vectors.close()


def open_index(root: Path) -> Index:
    """The current version of the index at `root` (the newest complete one when CURRENT names a deleted one); a
    clear error when there is none."""
    if not (root / CURRENT).is_file():
        raise OnecardError(f"no index at {root}", "build one with `onecard rag index PATH... --name NAME`")
    version = current_version(root)
    if version is None:
        raise OnecardError(f"the index at {root} is empty: its CURRENT names a version folder that is gone, and no "
                           "complete version is left", "rebuild it: `onecard rag index PATH... --name NAME` "
                           "(with the same --index-dir, if you used one)")
    try:
        return Index(root, version)
    except (OSError, sqlite3.Error):
        # A build swapped CURRENT and deleted this version while it was being opened: open the one CURRENT names
        # now. (Once open, the files stay readable even if deleted: the index holds them open or in memory.)
        newer = current_version(root)
        if newer is None or newer == version:
            raise
        return Index(root, newer)


def build_index(
    root: Path,
    roots: list[Path],
    embedder: Embedder,
    *,
    chunk_tokens: int = 200,
    overlap_tokens: int = 32,
    max_file_bytes: int = 5 * 2**20,
    store: str = "faiss",
    qdrant_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildStats:
    """Build or update the index at `root` over the files under `roots` (see the module docstring).

    Raises OnecardError when another build of `root` is running, or `root` holds files that are not the index's.
    """
    with building(root):
        return _build(root, roots, embedder, chunk_tokens, overlap_tokens, max_file_bytes, store, qdrant_url,
                      progress)


def _build(root: Path, roots: list[Path], embedder: Embedder, chunk_tokens: int, overlap_tokens: int,
           max_file_bytes: int, store: str, qdrant_url: str | None,
           progress: Callable[[str], None] | None) -> BuildStats:
    start = time.perf_counter()
    say = progress or (lambda line: None)
    stats = BuildStats()
    previous = open_index(root) if (root / CURRENT).is_file() else None
    settings = {"embed_model": embedder.name, "chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens}
    backend = str(getattr(embedder, "backend", "torch"))  # a test's fake embedder names none
    same_vectors = previous is not None and previous.meta.get("embed_model") == embedder.name \
        and query_backend(previous.meta) == backend_family(backend)
    same_chunking = previous is not None and all(previous.meta.get(k) == v for k, v in settings.items())
    old_files = previous.files() if previous else {}
    old_chunks: dict[str, list[dict[str, Any]]] = {}
    old_vectors: dict[str, int] = {}  # chunk id -> row in the previous index, when its model is this one
    if previous is not None:
        for r in previous.db.execute("SELECT * FROM chunks ORDER BY row"):
            row = dict(r)
            old_chunks.setdefault(row["path"], []).append(row)
            if same_vectors:
                old_vectors.setdefault(row["id"], row["row"])

    files, notes = walk(roots, max_file_bytes, exclude=(root,))
    stats.notes = notes
    kept: list[tuple[SourceFile, str, list[Chunk]]] = []
    for f in files:
        key = str(f.path)
        old = old_files.get(key)
        if same_chunking and old and old["bytes"] == f.bytes and old["mtime_ns"] == f.mtime_ns:
            kept.append((f, old["sha256"], [_chunk_of(r) for r in old_chunks.get(key, [])]))
            stats.unchanged_files += 1
            continue
        data = f.path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if same_chunking and old and old["sha256"] == sha:
            kept.append((f, sha, [_chunk_of(r) for r in old_chunks.get(key, [])]))
            stats.unchanged_files += 1
            continue
        try:
            chunks = read_chunks(f, data, chunk_tokens, overlap_tokens)
        except DataError as e:
            stats.notes.append(f"{e.what}: skipped")
            continue
        kept.append((f, sha, chunks))
        stats.added_files += old is None
        stats.changed_files += old is not None
    stats.removed_files = len(set(old_files) - {str(f.path) for f, _, _ in kept})

    chunks = [c for _, _, cs in kept for c in cs]
    ids = [c.id for c in chunks]
    new_ids = list(dict.fromkeys(i for i in ids if i not in old_vectors))
    texts = {c.id: c.embed_text for c in chunks}
    say(f"{len(files)} files, {len(chunks)} chunks: embedding {len(new_ids)} new, reusing {len(ids) - len(new_ids)}")
    t0 = time.perf_counter()
    fresh = embedder.embed([texts[i] for i in new_ids], progress=True) if new_ids else None
    stats.embed_seconds = time.perf_counter() - t0
    dim = fresh.shape[1] if fresh is not None else (previous.vectors.dim if previous else embedder.dim)
    vectors = np.zeros((len(chunks), dim), dtype=np.float32)
    if previous is not None and len(new_ids) < len(set(ids)):
        old_matrix = previous.vectors.all()
        for n, i in enumerate(ids):
            if i in old_vectors:
                vectors[n] = old_matrix[old_vectors[i]]
    if fresh is not None:
        where = {i: n for n, i in enumerate(new_ids)}
        for n, i in enumerate(ids):
            if i in where:
                vectors[n] = fresh[where[i]]
    stats.files, stats.chunks = len(kept), len(chunks)
    fresh_ids = set(new_ids)
    stats.embedded, stats.reused = len(new_ids), sum(i not in fresh_ids for i in ids)
    file_rows = [(str(f.path), str(f.root), f.rel, sha, f.bytes, f.mtime_ns, f.language, len(cs))
                 for f, sha, cs in kept]
    rels = {str(f.path): f.rel for f, _, _ in kept}
    meta = {**settings, "embed_backend": backend, "roots": sorted(str(r.expanduser().resolve()) for r in roots),
            "dim": dim, "files": len(kept), "skipped": stats.notes[:200], "store": store, "qdrant_url": qdrant_url}
    if previous is not None:
        previous.close()
    stats.version = _write_version(root, chunks, vectors, meta, file_rows, rels)
    stats.seconds = time.perf_counter() - start
    return stats


def write_index(root: Path, chunks: list[Chunk], vectors: np.ndarray, meta: dict[str, Any],
                file_rows: list[tuple[Any, ...]] | None = None, rels: dict[str, str] | None = None) -> str:
    """Write a new version folder and make it current (atomically); delete the versions before it. Returns its name."""
    with building(root):
        return _write_version(root, chunks, vectors, meta, file_rows, rels)


def _write_version(root: Path, chunks: list[Chunk], vectors: np.ndarray, meta: dict[str, Any],
                   file_rows: list[tuple[Any, ...]] | None, rels: dict[str, str] | None) -> str:
    bm25s = require("bm25s", "rag")
    version = f"v-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    store, url = meta.get("store", "faiss"), meta.get("qdrant_url")
    meta = {**meta, "store": store, "collection": f"{root.name}-{version}", "dim": int(vectors.shape[1])}
    out = root / version
    add_version(root, version, {"collection": meta["collection"], "qdrant_url": url})
    out.mkdir()
    try:
        rels = rels or {}
        db = sqlite3.connect(out / "chunks.sqlite")
        db.executescript("""
            CREATE TABLE files (path TEXT PRIMARY KEY, root TEXT, rel TEXT, sha256 TEXT, bytes INTEGER,
                                mtime_ns INTEGER, language TEXT, chunks INTEGER);
            CREATE TABLE chunks (row INTEGER PRIMARY KEY, id TEXT, path TEXT, rel TEXT, part TEXT, start_line INTEGER,
                                 end_line INTEGER, heading TEXT, symbol TEXT, language TEXT, text TEXT);
            CREATE INDEX chunks_path ON chunks(path);
        """)
        db.executemany("INSERT INTO files VALUES (?,?,?,?,?,?,?,?)", file_rows or [])
        db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
            (n, c.id, c.path, rels.get(c.path, c.path), c.part, c.start_line, c.end_line, json.dumps(c.heading),
             c.symbol, c.language, c.text) for n, c in enumerate(chunks)])
        db.commit()
        db.close()
        write_vectors(out, vectors, store, url, meta["collection"])
        if chunks:
            bm25 = bm25s.BM25()
            bm25.index(bm25s.tokenize([c.embed_text for c in chunks], stopwords=STOPWORDS, show_progress=False),
                       show_progress=False)
            bm25.save(str(out / "bm25"), show_progress=False)
        write_json_atomic(out / "meta.json", {**meta, "chunks": len(chunks), "version": version,
                                              "created_at": dt.datetime.now(dt.UTC).isoformat()})
        set_current(root, version)  # the swap
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        with contextlib.suppress(Exception):  # the disk may be what failed: the next build removes the rest
            remove_versions(root, keep=set())  # the failed version's collection and manifest entry; CURRENT's stays
        raise
    remove_versions(root, keep={version})
    return version


def _chunk_of(row: dict[str, Any]) -> Chunk:
    return Chunk(row["path"], row["start_line"], row["end_line"], row["text"], row["language"],
                 tuple(json.loads(row["heading"])), row["symbol"], row["part"])
