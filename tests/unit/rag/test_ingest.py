"""Which files are indexed: .gitignore (nested, git's rules) respected, binaries and huge files skipped with a note."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.core.errors import DataError
from onecard.rag.ingest import read_chunks, walk


def _tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_gitignore_is_respected_at_every_level(tmp_path: Path) -> None:
    _tree(tmp_path, {
        ".gitignore": "*.log\nbuild/\n!keep.log\n",
        "notes.md": "# A\n\ntext\n",
        "debug.log": "noise", "keep.log": "kept by negation",
        "build/out.txt": "generated",
        "src/.gitignore": "secret.py\n!debug2.log\n", "src/debug2.log": "re-included below",
        "src/app.py": "def f():\n    return 1\n", "src/secret.py": "KEY = 1\n",
        "node_modules/x.js": "var a;",
        ".git/config": "[core]",
    })
    files, notes = walk([tmp_path], 10**6)
    assert sorted(f.rel for f in files) == ["keep.log", "notes.md", "src/app.py", "src/debug2.log"]
    assert notes == []
    assert {f.rel: f.language for f in files}["src/app.py"] == "python"


def test_binaries_and_huge_files_are_skipped_with_a_note(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.txt": "hello", "img.png": b"\x89PNG\r\n", "blob.dat": b"abc\x00def", "big.txt": "x" * 5000})
    files, notes = walk([tmp_path], 1000)
    assert [f.rel for f in files] == ["a.txt"]
    assert len(notes) == 3
    assert any("big.txt" in n and "over the --max-file-mb limit" in n for n in notes)
    assert any("blob.dat" in n and "binary" in n for n in notes)


def test_a_file_root_and_the_excluded_index_folder(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.md": "# A\n\nx\n", "index/CURRENT": "{}", "index/v-1/meta.json": "{}"})
    files, _ = walk([tmp_path], 10**6, exclude=(tmp_path / "index",))
    assert [f.rel for f in files] == ["a.md"]
    files, _ = walk([tmp_path / "a.md"], 10**6)
    assert [f.rel for f in files] == ["a.md"]


def test_text_that_is_not_utf8_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    _tree(tmp_path, {"latin.txt": "caf\xe9".encode("latin-1")})
    files, _ = walk([tmp_path], 10**6)
    with pytest.raises(DataError, match="latin.txt: not UTF-8"):
        read_chunks(files[0], files[0].path.read_bytes(), 200, 32)


def test_pdf_pages_are_chunked_with_their_page(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(tmp_path / "blank.pdf", "wb") as f:
        writer.write(f)
    files, notes = walk([tmp_path], 10**6)
    assert [f.language for f in files] == ["pdf"] and notes == []
    assert read_chunks(files[0], files[0].path.read_bytes(), 200, 32) == []  # no text on the page, no chunks
