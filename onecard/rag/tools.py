"""The tools the assistant may call through `onecard.llm.run_tools`: search, read_file, list_files.

read_file and list_files see only the files the index holds (its file table: the same .gitignore rules, binary and
size limits as indexing), never another file under an indexed folder (a gitignored `.env`, `.git/config`) nor one a
symlink points to. Hits found by `search` join the numbered sources, so the answer can cite them like the first ones.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from onecard.rag.answer import format_sources
from onecard.rag.search import Hit, Searcher

__all__ = ["rag_tools", "MAX_READ_LINES"]

MAX_READ_LINES = 200


def rag_tools(searcher: Searcher, sources: list[Hit], k: int = 5) -> list[Any]:
    """The three tools over `searcher`'s index; `sources` is the numbered list that `search` appends to."""
    from onecard.llm import Tool

    indexed = searcher.index.files()  # absolute path (symlinks resolved) -> its row
    roots = sorted({Path(row["root"]) for row in indexed.values()})

    def search(query: str, k: int = k) -> str:
        hits = [h for h in searcher.search(query, k=min(int(k), 10)) if h.row not in {s.row for s in sources}]
        start = len(sources) + 1
        sources.extend(hits)
        return format_sources(hits, start) if hits else "no new results"

    def read_file(path: str, start_line: int = 1, end_line: int | None = None) -> str:
        file = _indexed(path, roots, indexed)
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        first = max(1, int(start_line))
        last = min(len(lines), int(end_line) if end_line else first + MAX_READ_LINES - 1, first + MAX_READ_LINES - 1)
        return "\n".join(f"{n}: {lines[n - 1]}" for n in range(first, last + 1)) or "(no lines there)"

    def list_files(glob: str = "*") -> str:
        found = sorted(row["rel"] for row in indexed.values() if fnmatch.fnmatch(row["rel"], glob))
        return "\n".join(found[:200]) + (f"\n... and {len(found) - 200} more" if len(found) > 200 else "")

    return [
        Tool("search", "Search the indexed notes and code; returns numbered sources to cite.",
             {"type": "object", "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
              "required": ["query"]}, search),
        Tool("read_file", f"Read lines of an indexed file (at most {MAX_READ_LINES} lines).",
             {"type": "object", "properties": {"path": {"type": "string"}, "start_line": {"type": "integer"},
                                               "end_line": {"type": "integer"}}, "required": ["path"]}, read_file),
        Tool("list_files", "List indexed files whose path matches a glob such as '*.md' or 'src/*'.",
             {"type": "object", "properties": {"glob": {"type": "string"}}}, list_files),
    ]


def _indexed(path: str, roots: list[Path], indexed: dict[str, Any]) -> Path:
    """`path` (absolute, or relative to an indexed folder) when it resolves to a file the index holds."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [r / given for r in roots if r.is_dir()] + [
        Path(p) for p, row in indexed.items() if row["rel"] == given.as_posix()]  # an indexed file's own name
    for c in candidates:
        resolved = c.resolve()  # a symlink counts as what it points to: outside the index, refused
        if str(resolved) in indexed and resolved.is_file():
            return resolved
    raise PermissionError(f"{path} is not a file in the index: only indexed files can be read (list_files shows them)")
