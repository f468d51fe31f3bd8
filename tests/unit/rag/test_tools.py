"""read_file and list_files see only the files the index holds: nothing gitignored, under .git, or behind a symlink."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss")
pytest.importorskip("bm25s")


@pytest.fixture
def tools(tmp_path: Path, embedder: Any) -> dict[str, Any]:
    from onecard.rag.index import build_index, open_index
    from onecard.rag.search import Searcher
    from onecard.rag.tools import rag_tools

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text('[remote "origin"]\n\turl = https://user:ghp_TOKEN@github.com/me/x\n')
    (repo / ".gitignore").write_text(".env\nbuild/\n")
    (repo / ".env").write_text("API_KEY=sk-secret\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text("generated\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def main():\n    return 'hello'\n")
    (repo / "notes.md").write_text("# Notes\n\nThe app says hello.\n")
    (repo / "blob.bin").write_bytes(b"\0\1\2secret")
    (tmp_path / "outside.txt").write_text("outside the index\n")
    os.symlink(tmp_path / "outside.txt", repo / "link.md")  # a symlink inside the folder, to a file outside
    os.symlink(tmp_path, repo / "up")  # and one to a folder outside
    single = tmp_path / "single.txt"
    single.write_text("one file indexed on its own\n")
    build_index(tmp_path / "index", [repo, single], embedder)
    return {t.name: t.fn for t in rag_tools(Searcher(open_index(tmp_path / "index"), embedder), [])} | {
        "repo": repo, "tmp": tmp_path}


def test_indexed_files_read_by_relative_or_absolute_path(tools: dict[str, Any]) -> None:
    assert tools["read_file"]("src/app.py") == "1: def main():\n2:     return 'hello'"
    assert tools["read_file"](str(tools["repo"] / "notes.md"), 3) == "3: The app says hello."
    assert tools["read_file"]("single.txt") == "1: one file indexed on its own"


@pytest.mark.parametrize("path", [".env", ".git/config", "build/out.txt", "blob.bin", "link.md", "up/outside.txt",
                                  "../outside.txt", "src/../.env", "/etc/passwd", "{repo}/.env", "{repo}/.git/config",
                                  "{tmp}/outside.txt", "{repo}/link.md"])
def test_files_the_index_does_not_hold_are_refused(tools: dict[str, Any], path: str) -> None:
    path = path.format(repo=tools["repo"], tmp=tools["tmp"])
    with pytest.raises(PermissionError, match="not a file in the index"):
        tools["read_file"](path)


def test_list_files_lists_only_indexed_files(tools: dict[str, Any]) -> None:
    assert tools["list_files"]() == "notes.md\nsingle.txt\nsrc/app.py"
    assert tools["list_files"]("*env*") == "" and tools["list_files"](".git/*") == ""
