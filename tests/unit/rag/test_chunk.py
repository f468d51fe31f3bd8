"""Chunks keep their heading paths, symbols and line numbers exactly: the text is found at the lines they name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onecard.rag.chunk import chunk_code, chunk_markdown, chunk_notebook, chunk_prose, count_tokens

pytest.importorskip("tree_sitter_python")

MARKDOWN = """# Networking

How the home network is set up.

## VPN

I configured the VPN with WireGuard on port 51820.

```bash
# not a heading: inside a fence

wg-quick up wg0
```

### Keys

The private key lives in /etc/wireguard.

## DNS

Pi-hole on 10.0.0.2.

# Groceries

Milk, eggs.
"""

PYTHON = '''"""Module docstring."""

import os

RETRIES = 3


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt`."""
    return 0.5 * 2**attempt


# A client that retries.
class Client:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str) -> str:
        for attempt in range(RETRIES):
            pass
        return os.path.join(self.url, path)
'''


def _lines_of(text: str, first: int, last: int) -> str:
    return "\n".join(text.splitlines()[first - 1:last])


def test_markdown_chunks_keep_heading_paths_and_exact_lines() -> None:
    chunks = chunk_markdown(MARKDOWN, "net.md")
    by_heading = {c.heading: c for c in chunks}
    assert set(by_heading) == {("Networking",), ("Networking", "VPN"), ("Networking", "VPN", "Keys"),
                               ("Networking", "DNS"), ("Groceries",)}
    for c in chunks:
        assert _lines_of(MARKDOWN, c.start_line, c.end_line) == c.text  # opens at the right lines
    vpn = by_heading[("Networking", "VPN")]
    assert "port 51820" in vpn.text and "# not a heading" in vpn.text  # the fenced block stays with its section
    assert MARKDOWN.splitlines()[vpn.start_line - 1] == "## VPN"
    assert by_heading[("Networking", "VPN", "Keys")].start_line == 15


def test_markdown_section_over_budget_splits_by_paragraph_with_the_same_heading() -> None:
    text = "# Big\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(6))
    chunks = chunk_markdown(text, "big.md", budget=100, overlap=0)
    assert len(chunks) > 1
    assert all(c.heading == ("Big",) and count_tokens(c.text) <= 100 for c in chunks)
    for c in chunks:
        assert _lines_of(text, c.start_line, c.end_line) == c.text


def test_code_is_chunked_by_function_and_class() -> None:
    chunks = chunk_code(PYTHON, "client.py", "python", budget=200)
    symbols = [c.symbol for c in chunks]
    assert symbols == [None, "backoff", "Client"]
    backoff = chunks[1]
    assert PYTHON.splitlines()[backoff.start_line - 1].startswith("def backoff")
    assert _lines_of(PYTHON, backoff.start_line, backoff.end_line) == backoff.text
    assert chunks[2].text.startswith("# A client that retries.")  # the comment above a definition belongs to it


def test_a_class_over_budget_splits_into_its_methods() -> None:
    chunks = chunk_code(PYTHON, "client.py", "python", budget=30)
    symbols = [c.symbol for c in chunks]
    assert "Client.__init__" in symbols and "Client.get" in symbols
    get = next(c for c in chunks if c.symbol == "Client.get")
    assert PYTHON.splitlines()[get.start_line - 1].strip().startswith("def get")
    for c in chunks:
        assert _lines_of(PYTHON, c.start_line, c.end_line) == c.text


@pytest.mark.parametrize(("language", "source", "names"), [
    ("javascript", "function add(a, b) {\n  return a + b;\n}\n\nclass Box {\n  open() { return 1; }\n}\n",
     ["add", "Box"]),
    ("go", "package main\n\nfunc Add(a int) int {\n\treturn a\n}\n\ntype T struct{}\n", [None, "Add", "T"]),
    ("rust", "fn add(a: i32) -> i32 {\n    a\n}\n\nstruct P { x: i32 }\n", ["add", "P"]),
])
def test_other_languages_chunk_by_definition(language: str, source: str, names: list[str | None]) -> None:
    pytest.importorskip(f"tree_sitter_{language}")
    assert [c.symbol for c in chunk_code(source, f"f.{language}", language)] == names


def test_prose_packs_paragraphs_to_the_budget_with_overlap() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 20 for i in range(8)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = chunk_prose(text, "p.txt", budget=70, overlap=25)
    assert len(chunks) > 2
    assert all(count_tokens(c.text) <= 70 for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start_line <= a.end_line  # each chunk starts with the previous one's last paragraph
    assert chunks[-1].text.endswith(paragraphs[-1].strip())
    for c in chunks:
        assert _lines_of(text, c.start_line, c.end_line) == c.text


def test_a_single_long_line_is_cut_by_sentence() -> None:
    line = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = chunk_prose(line, "l.txt", budget=50, overlap=0)
    assert len(chunks) > 3 and all(c.start_line == c.end_line == 1 for c in chunks)
    assert all(count_tokens(c.text) <= 50 for c in chunks)
    assert " ".join(c.text for c in chunks) == line


def test_notebook_cells_are_named(tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Setup\n", "\n", "Install it."]},
                    {"cell_type": "code", "source": "def f():\n    return 1\n"}],
          "metadata": {"kernelspec": {"language": "python"}}}
    chunks = chunk_notebook(json.dumps(nb), "nb.ipynb")
    assert [(c.part, c.heading, c.symbol) for c in chunks] == [("cell 1", ("Setup",), None), ("cell 2", (), "f")]


def test_chunk_ids_depend_on_text_not_path() -> None:
    a = chunk_prose("Same words here.", "a.txt")[0]
    b = chunk_prose("Same words here.", "b/renamed.txt")[0]
    assert a.id == b.id and a.path != b.path
