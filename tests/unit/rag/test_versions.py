"""The index folder is the index's own: one build at a time, CURRENT always names a complete version, a dangling
CURRENT is repaired, and nothing the index did not create is ever deleted (issue 14)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from onecard.core.errors import OnecardError
from onecard.rag import index as index_module
from onecard.rag.config import IndexConfig
from onecard.rag.index import build_index, index_path, open_index
from onecard.rag.search import Searcher
from onecard.rag.versions import CURRENT, LOCK, MANIFEST, add_version

pytest.importorskip("faiss")
pytest.importorskip("bm25s")
filelock = pytest.importorskip("filelock")


def _notes(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"note{i}.md").write_text(f"# Note {i}\n\nTopic number {i}: apples {i} and pears.\n")
    return root


def _complete(index: Path) -> str:
    """The version CURRENT names, after checking that its folder is there and complete."""
    version = json.loads((index / "CURRENT").read_text())["version"]
    assert (index / version / "meta.json").is_file() and (index / version / "chunks.sqlite").is_file()
    return str(version)


def test_a_second_build_is_refused_while_the_lock_is_held(tmp_path: Path, embedder) -> None:
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    build_index(index, [docs], embedder)
    before = _complete(index)
    with filelock.FileLock(str(index / LOCK), timeout=0), \
            pytest.raises(OnecardError, match="another build of the index .* is running") as e:
        build_index(index, [docs], embedder)  # the same as another process holding it: flock is per open file
    assert "wait for it to finish" in str(e.value)
    assert _complete(index) == before


@pytest.mark.parametrize("hook", ["write_vectors", "set_current"])
def test_a_build_started_during_another_build_is_refused_and_the_index_survives(
        tmp_path: Path, embedder, monkeypatch, hook: str) -> None:
    # The second build starts while the first has written its SQLite file (write_vectors comes next) or just before
    # its swap. Before the lock, the second build's cleanup deleted the first's folder under its open SQLite file
    # ("disk I/O error"), or the first's cleanup deleted the second's current version (CURRENT dangling).
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    build_index(index, [docs], embedder)
    (docs / "note9.md").write_text("# Note 9\n\nBananas and kiwis.\n")
    real = getattr(index_module, hook)
    refused: list[str] = []

    def second_build_first(*args, **kwargs):
        _complete(index)  # the previous version is still current and whole
        with pytest.raises(OnecardError, match="another build") as e:
            build_index(index, [docs], embedder)
        refused.append(str(e.value))
        return real(*args, **kwargs)

    monkeypatch.setattr(index_module, hook, second_build_first)
    stats = build_index(index, [docs], embedder)
    monkeypatch.undo()
    assert refused and stats.files == 4
    assert _complete(index) == stats.version and [p.name for p in index.glob("v-*")] == [stats.version]
    hit = Searcher(open_index(index), embedder).search("bananas kiwis", k=1, mode="hybrid")[0]
    assert hit.chunk["rel"] == "note9.md"
    assert build_index(index, [docs], embedder).embedded == 0  # the lock is released: the next build runs


def test_a_dangling_current_falls_back_to_the_newest_complete_version_and_a_build_repairs_it(
        tmp_path: Path, embedder) -> None:
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    version = build_index(index, [docs], embedder).version
    (index / "CURRENT").write_text(json.dumps({"version": "v-20990101-000000-gone00"}))
    assert open_index(index).version == version  # readers open the newest complete version
    build_index(index, [docs], embedder)
    assert _complete(index) != "v-20990101-000000-gone00"


def test_an_index_with_no_version_left_says_to_rebuild_and_a_build_starts_over(tmp_path: Path, embedder) -> None:
    # The state two unlocked builds left behind: CURRENT names a deleted folder, no version is left.
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    version = build_index(index, [docs], embedder).version
    shutil.rmtree(index / version)
    with pytest.raises(OnecardError, match="is empty") as e:
        open_index(index)
    assert "onecard rag index PATH" in str(e.value)
    from onecard.rag.run import index as run_index

    with pytest.raises(OnecardError, match="is empty"):  # re-index without folders: it has none to read them from
        run_index(IndexConfig(index_dir=str(index)), runs_root=str(tmp_path / "runs"), report_to=(),
                  embedder=embedder)
    stats = build_index(index, [docs], embedder)
    assert stats.added_files == 3 and _complete(index) == stats.version


def test_an_index_built_before_manifests_is_adopted(tmp_path: Path, embedder) -> None:
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    old = build_index(index, [docs], embedder).version
    (index / MANIFEST).unlink()
    (index / LOCK).unlink()
    new = build_index(index, [docs], embedder).version
    assert new != old and [p.name for p in index.glob("v-*")] == [new]


def test_a_killed_builds_leftover_version_is_removed_by_the_next_build(tmp_path: Path, embedder) -> None:
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    build_index(index, [docs], embedder)
    add_version(index, "v-20240101-000000-abcdef", {"collection": None, "qdrant_url": None})
    (index / "v-20240101-000000-abcdef").mkdir()  # recorded, then the process was killed mid-write
    (index / "v-20240101-000000-abcdef" / "chunks.sqlite").write_bytes(b"half")
    assert open_index(index).version == _complete(index)  # never the incomplete one
    version = build_index(index, [docs], embedder).version
    assert [p.name for p in index.glob("v-*")] == [version]
    assert list(json.loads((index / MANIFEST).read_text())["versions"]) == [version]


def test_an_index_dir_holding_the_users_files_is_refused_and_nothing_is_touched(tmp_path: Path, embedder) -> None:
    notes = _notes(tmp_path / "notes")
    (notes / "v-2023-trip").mkdir()
    (notes / "v-2023-trip" / "trip.md").write_text("# Trip\n\nLisbon in May.\n")
    before = sorted(p.relative_to(notes).as_posix() for p in notes.rglob("*"))
    with pytest.raises(OnecardError, match="holds files that are not this index's") as e:
        build_index(notes, [notes], embedder)
    assert "note0.md" in str(e.value) and "--index-dir" in str(e.value)
    assert sorted(p.relative_to(notes).as_posix() for p in notes.rglob("*")) == before  # not even a lock file


def test_a_folder_dropped_into_an_index_is_never_deleted(tmp_path: Path, embedder) -> None:
    docs, index = _notes(tmp_path / "docs"), tmp_path / "index"
    build_index(index, [docs], embedder)
    (index / "v-2023-trip").mkdir()
    (index / "v-2023-trip" / "trip.md").write_text("mine")
    with pytest.raises(OnecardError, match="v-2023-trip"):
        build_index(index, [docs], embedder)
    assert (index / "v-2023-trip" / "trip.md").read_text() == "mine"
    assert open_index(index).size == 3


def test_an_index_dir_inside_an_indexed_folder_is_refused(tmp_path: Path, embedder) -> None:
    from onecard.rag.run import index as run_index

    notes = _notes(tmp_path / "notes")
    for inside in (notes / "my-index", notes):
        config = IndexConfig(paths=[str(notes)], index_dir=str(inside))
        with pytest.raises(OnecardError, match="lies inside the indexed folder") as e:
            run_index(config, runs_root=str(tmp_path / "runs"), report_to=(), embedder=embedder)
        assert "outside" in str(e.value)
    assert not (notes / "my-index").exists()
    _, stats = run_index(IndexConfig(paths=[str(notes)], index_dir=str(tmp_path / "elsewhere")),
                         runs_root=str(tmp_path / "runs"), report_to=(), embedder=embedder)
    assert stats.files == 3


@pytest.mark.parametrize("name", ["../../x", "..", ".", "", "a/b", "/tmp/x", "a\\b", "C:x"])
def test_an_index_name_that_is_a_path_is_refused(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ONECARD_HOME", str(tmp_path / "home"))
    with pytest.raises(OnecardError, match="not a plain name") as e:
        index_path(name)
    assert "--index-dir" in str(e.value)
    assert index_path("notes-2024.v2") == tmp_path / "home" / "rag" / "notes-2024.v2"


def test_a_reader_opening_the_version_a_build_just_deleted_opens_the_new_one(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`rag search` reads CURRENT, then a build swaps it and deletes that version before the files are opened."""
    root = tmp_path / "idx"
    (root / "v-old").mkdir(parents=True)
    (root / "v-new").mkdir()
    opened: list[str] = []

    class FakeIndex:
        def __init__(self, at: Path, version: str) -> None:
            if version == "v-old":
                (at / CURRENT).write_text(json.dumps({"version": "v-new"}))  # the build's swap, meanwhile
                raise FileNotFoundError(at / version / "meta.json")
            opened.append(version)

    (root / CURRENT).write_text(json.dumps({"version": "v-old"}))
    monkeypatch.setattr(index_module, "Index", FakeIndex)
    monkeypatch.setattr(index_module, "current_version",
                        lambda at: json.loads((at / CURRENT).read_text())["version"])
    index_module.open_index(root)
    assert opened == ["v-new"]
