"""The tools the assistant may call through `onecard.llm.run_tools`: search, read_file, list_files.

read_file and list_files see only the folders the index covers. Hits found by `search` join the numbered sources,
so the answer can cite them like the first ones.
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

    roots = [Path(r) for r in searcher.index.meta.get("roots", [])]
    files = sorted(set(searcher.index.paths))

    def search(query: str, k: int = k) -> str:
        hits = [h for h in searcher.search(query, k=min(int(k), 10)) if h.row not in {s.row for s in sources}]
        start = len(sources) + 1
        sources.extend(hits)
        return format_sources(hits, start) if hits else "no new results"

    def read_file(path: str, start_line: int = 1, end_line: int | None = None) -> str:
        file = _inside(path, roots)
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        first = max(1, int(start_line))
        last = min(len(lines), int(end_line) if end_line else first + MAX_READ_LINES - 1, first + MAX_READ_LINES - 1)
        return "\n".join(f"{n}: {lines[n - 1]}" for n in range(first, last + 1)) or "(no lines there)"

    def list_files(glob: str = "*") -> str:
        rels = [_rel(f, roots) for f in files]
        found = [r for r in rels if fnmatch.fnmatch(r, glob)]
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


def _inside(path: str, roots: list[Path]) -> Path:
    """`path` (absolute, or relative to an indexed folder) when it is a file inside an indexed folder."""
    candidates = [Path(path).expanduser()] if Path(path).is_absolute() else [r / path for r in roots if r.is_dir()]
    for c in candidates:
        resolved = c.resolve()
        if resolved.is_file() and any(resolved == r or r in resolved.parents for r in roots):
            return resolved
    raise PermissionError(f"{path} is not a file inside the indexed folders ({', '.join(map(str, roots))})")


def _rel(path: str, roots: list[Path]) -> str:
    p = Path(path)
    for r in roots:
        if r in p.parents:
            return p.relative_to(r).as_posix()
    return p.name
