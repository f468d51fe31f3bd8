"""Which files an index covers, and their chunks: .gitignore respected, binaries and huge files skipped with a note."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onecard.core.errors import DataError
from onecard.rag.chunk import CODE_LANGUAGES, Chunk, chunk_notebook, chunk_pdf_pages, chunk_text

__all__ = ["SourceFile", "walk", "language_of", "read_chunks", "SKIP_DIRS"]

# Tool state, never notes or code a person wrote.
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", ".ipynb_checkpoints", ".mypy_cache",
             ".pytest_cache", ".ruff_cache", ".tox", ".idea", ".vscode"}
_MARKDOWN = {".md", ".markdown", ".mdx"}
_BINARY = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".pdf~", ".zip", ".gz", ".tgz", ".bz2", ".xz",
           ".7z", ".tar", ".so", ".dll", ".dylib", ".exe", ".o", ".a", ".pyc", ".whl", ".bin", ".pt", ".pth", ".onnx",
           ".gguf", ".safetensors", ".npy", ".npz", ".parquet", ".sqlite", ".db", ".mp3", ".wav", ".mp4", ".mov",
           ".woff", ".woff2", ".ttf", ".otf", ".jar", ".class", ".faiss"}
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class SourceFile:
    """A file to index: where it is, under which indexed root, its language, and its size and mtime."""

    path: Path
    root: Path
    language: str
    bytes: int
    mtime_ns: int

    @property
    def rel(self) -> str:
        """The path relative to its root (the root's own name when the root is the file)."""
        return self.path.name if self.path == self.root else self.path.relative_to(self.root).as_posix()


def language_of(path: Path) -> str:
    """markdown, a code language, pdf, notebook, or the extension itself ('text' with none)."""
    ext = path.suffix.lower()
    if ext in _MARKDOWN:
        return "markdown"
    if ext in CODE_LANGUAGES:
        return CODE_LANGUAGES[ext]
    if ext == ".ipynb":
        return "notebook"
    if ext in ("", ".txt", ".text"):
        return "text"
    return ext[1:]


def walk(roots: list[Path], max_file_bytes: int, exclude: tuple[Path, ...] = ()) -> tuple[list[SourceFile], list[str]]:
    """The files under `roots` to index, and a note for each one skipped (ignored files are skipped silently).

    Folders in `exclude` (the index itself, when it lives under an indexed folder) are left out.
    """
    excluded = {p.expanduser().resolve() for p in exclude}
    files: list[SourceFile] = []
    notes: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        root = root.expanduser().resolve()
        if not root.exists():
            raise DataError(f"{root} does not exist", "pass existing folders or files to index")
        for path in ([root] if root.is_file() else _tree(root, excluded)):
            if path in seen:
                continue
            seen.add(path)
            stat = path.stat()
            why = _skip_reason(path, stat.st_size, max_file_bytes)
            if why:
                notes.append(f"{path}: skipped ({why})")
                continue
            files.append(SourceFile(path, root, language_of(path), stat.st_size, stat.st_mtime_ns))
    return files, notes


def _tree(root: Path, excluded: set[Path]) -> Iterator[Path]:
    """Files under `root`, sorted, honouring every .gitignore from `root` down (git's rules, via pathspec)."""
    import pathspec

    specs: list[tuple[Path, pathspec.PathSpec]] = []
    for here, dirs, names in os.walk(root):
        base = Path(here)
        specs = [(d, s) for d, s in specs if base == d or d in base.parents]
        if ".gitignore" in names:
            lines = (base / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
            specs.append((base, pathspec.GitIgnoreSpec.from_lines(lines)))

        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and base / d not in excluded
                         and not _ignored(specs, base / d, True))
        for name in sorted(names):
            p = base / name
            if name != ".gitignore" and p.is_file() and not p.is_symlink() and not _ignored(specs, p, False):
                yield p


def _ignored(specs: list[tuple[Path, Any]], path: Path, is_dir: bool) -> bool:
    """Whether the .gitignore files at and above `path` ignore it: as in git, the deepest file with a rule that
    matches decides (so `!keep.log` in a subfolder re-includes what the root ignored)."""
    for d, spec in reversed(specs):
        decided = spec.check_file(path.relative_to(d).as_posix() + ("/" if is_dir else "")).include
        if decided is not None:
            return bool(decided)
    return False


def _skip_reason(path: Path, size: int, max_file_bytes: int) -> str | None:
    if size > max_file_bytes:
        return f"{size / 2**20:.1f} MB, over the --max-file-mb limit of {max_file_bytes / 2**20:g} MB"
    if path.suffix.lower() in _BINARY:
        return "binary"
    if path.suffix.lower() == ".pdf":
        return None
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\0" in head:
        return "binary"
    return None


def read_chunks(file: SourceFile, data: bytes, budget: int, overlap: int) -> list[Chunk]:
    """The chunks of one file, from its bytes. Raises DataError (naming the file) for text that is not UTF-8,
    an unreadable PDF or a notebook that is not JSON."""
    path = str(file.path)
    if file.language == "pdf":
        return chunk_pdf_pages(_pdf_pages(file.path, data), path, budget, overlap)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})",
                        "convert it to UTF-8 or add it to .gitignore") from None
    if file.language == "notebook":
        try:
            return chunk_notebook(text, path, budget, overlap)
        except ValueError as e:
            raise DataError(f"{path}: not a readable notebook ({e})") from None
    return chunk_text(text, path, file.language, budget, overlap)


def _pdf_pages(path: Path, data: bytes) -> list[str]:
    import io

    from onecard.core.extras import require

    pypdf = require("pypdf", "rag")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        return [page.extract_text() or "" for page in reader.pages]
    except Exception as e:  # pypdf raises many types for damaged or encrypted files
        raise DataError(f"{path}: PDF could not be read ({type(e).__name__}: {e})") from None
