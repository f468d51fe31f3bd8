"""Chunking that follows structure: Markdown by heading, code by syntax unit (tree-sitter), prose by paragraph.

Every chunk keeps where it came from: the file, its first and last line (1-based, inclusive, in the file's text; in
the cell's or page's text for notebooks and PDFs, named by `part`), and its Markdown heading path or code symbol.
Budgets count "tokens" as words and punctuation marks, which is close to word pieces for English prose.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Chunk", "count_tokens", "chunk_text", "chunk_markdown", "chunk_code", "chunk_prose", "chunk_notebook",
           "chunk_pdf_pages", "CODE_LANGUAGES"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Chunk:
    """A piece of a file, with where it came from."""

    path: str
    start_line: int
    end_line: int
    text: str
    language: str
    heading: tuple[str, ...] = ()
    symbol: str | None = None
    part: str | None = None  # "cell 3" (notebooks), "page 2" (PDFs): the lines count within it
    _id: str = field(default="", compare=False, repr=False)

    @property
    def context(self) -> str:
        """The heading path or symbol, as one line."""
        bits = [self.part] if self.part else []
        bits += list(self.heading)
        if self.symbol:
            bits.append(self.symbol)
        return " > ".join(bits)

    @property
    def embed_text(self) -> str:
        """What is embedded and indexed: the context line, then the text (no path, so renames reuse vectors)."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def id(self) -> str:
        """Content hash of `embed_text`: equal text, equal id, one embedding."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()[:32]


def count_tokens(text: str) -> int:
    """Words and punctuation marks."""
    return len(_TOKEN.findall(text))


# -- what each kind of file becomes -----------------------------------------------------------------------------------

CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
}
# language -> (module, function returning the grammar): the individual tree-sitter grammar wheels (no downloads).
_GRAMMARS = {
    "python": ("tree_sitter_python", "language"), "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"), "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"), "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"), "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}
# Syntax units that become chunks of their own, across the languages above.
_DEFINITIONS = {
    "function_definition", "class_definition", "decorated_definition",  # python, c, cpp
    "function_declaration", "generator_function_declaration", "class_declaration", "abstract_class_declaration",
    "method_definition", "interface_declaration", "type_alias_declaration", "enum_declaration", "export_statement",
    "method_declaration", "type_declaration", "constructor_declaration", "record_declaration",  # go, java
    "function_item", "impl_item", "struct_item", "enum_item", "trait_item", "mod_item", "macro_definition",  # rust
    "class_specifier", "namespace_definition", "template_declaration",  # cpp
}
_COMMENTS = {"comment", "line_comment", "block_comment"}


def chunk_text(text: str, path: str, language: str, budget: int = 200, overlap: int = 32) -> list[Chunk]:
    """Chunk a text file by its language: markdown, code with a grammar, anything else as prose."""
    if language == "markdown":
        return chunk_markdown(text, path, budget, overlap)
    if language in _GRAMMARS:
        return chunk_code(text, path, language, budget, overlap)
    return chunk_prose(text, path, language, budget, overlap)


def chunk_markdown(text: str, path: str, budget: int = 200, overlap: int = 32, part: str | None = None) -> list[Chunk]:
    """One chunk per heading section (split further by paragraph when over budget), with its heading path."""
    lines = text.splitlines()
    sections: list[tuple[tuple[str, ...], int, int]] = []  # (heading path, first line index, end index)
    stack: list[tuple[int, str]] = []
    start, fenced = 0, False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m:
            sections.append((tuple(t for _, t in stack), start, i))
            level = len(m.group(1))
            stack = [(lv, t) for lv, t in stack if lv < level] + [(level, m.group(2))]
            start = i
    sections.append((tuple(t for _, t in stack), start, len(lines)))
    out: list[Chunk] = []
    for heading, lo, hi in sections:
        body = [i for i in range(lo, hi) if lines[i].strip() and not (i == lo and _HEADING.match(lines[i]) and heading)]
        if not body:
            continue  # a heading with nothing under it: its title lives on in its subsections' heading paths
        for first, last, piece in _pack(_pieces(lines, lo, hi), budget, overlap):
            out.append(Chunk(path, first + 1, last + 1, piece, "markdown", heading, part=part))
    return out


def chunk_prose(text: str, path: str, language: str = "text", budget: int = 200, overlap: int = 32,
                part: str | None = None) -> list[Chunk]:
    """Paragraphs packed to `budget` tokens, each chunk starting with up to `overlap` tokens of the previous one."""
    lines = text.splitlines()
    return [Chunk(path, first + 1, last + 1, piece, language, part=part)
            for first, last, piece in _pack(_pieces(lines, 0, len(lines)), budget, overlap)]


def chunk_code(text: str, path: str, language: str, budget: int = 200, overlap: int = 32,
               part: str | None = None) -> list[Chunk]:
    """One chunk per function, class or other definition (classes over budget split into their methods); the code
    between definitions (imports, constants) grouped. Without the grammar installed: line windows as prose."""
    parser = _parser(language)
    if parser is None:
        return chunk_prose(text, path, language, budget, overlap, part)
    data = text.encode("utf-8")
    lines = text.splitlines()
    tree = parser.parse(data)
    out: list[Chunk] = []
    for first, last, symbol in _units(tree.root_node.named_children, "", budget, lines):
        piece = "\n".join(lines[first:last + 1])
        if not piece.strip():
            continue
        windows = [(first, last, piece)] if count_tokens(piece) <= budget else _line_windows(lines, first, last, budget)
        for lo, hi, body in windows:
            out.append(Chunk(path, lo + 1, hi + 1, body, language, symbol=symbol or None, part=part))
    return out


def chunk_notebook(raw: str, path: str, budget: int = 200, overlap: int = 32) -> list[Chunk]:
    """A Jupyter notebook: markdown cells as Markdown, code cells as code in the kernel's language."""
    nb = json.loads(raw)
    language = (nb.get("metadata", {}).get("kernelspec", {}) or {}).get("language", "python")
    out: list[Chunk] = []
    for n, cell in enumerate(nb.get("cells", []), start=1):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if not source.strip():
            continue
        if cell.get("cell_type") == "markdown":
            out += chunk_markdown(source, path, budget, overlap, part=f"cell {n}")
        elif cell.get("cell_type") == "code":
            out += chunk_code(source, path, language, budget, overlap, part=f"cell {n}")
    return out


def chunk_pdf_pages(pages: list[str], path: str, budget: int = 200, overlap: int = 32) -> list[Chunk]:
    """A PDF's pages (their extracted text) as prose, each chunk naming its page."""
    out: list[Chunk] = []
    for n, page in enumerate(pages, start=1):
        out += chunk_prose(page, path, "pdf", budget, overlap, part=f"page {n}")
    return out


# -- prose: pieces (paragraphs; sentences or line windows of long ones) packed to a budget ---------------------------


def _pieces(lines: list[str], lo: int, hi: int) -> Iterator[tuple[int, int, str]]:
    """Paragraphs of lines[lo:hi] as (first index, last index, text); fenced code blocks stay whole."""
    start, fenced = None, False
    for i in range(lo, hi + 1):
        line = lines[i] if i < hi else ""
        if i < hi and _FENCE.match(line):
            fenced = not fenced
        if line.strip() or (fenced and i < hi):
            if start is None:
                start = i
            continue
        if start is not None:
            yield start, i - 1, "\n".join(lines[start:i])
            start = None


def _pack(pieces: Iterator[tuple[int, int, str]], budget: int, overlap: int) -> list[tuple[int, int, str]]:
    """Greedy packing of pieces into chunks of at most `budget` tokens; a piece over budget is cut first."""
    units: list[tuple[int, int, str, int]] = []
    for first, last, text in pieces:
        for lo, hi, t in _cut(text, first, last, budget):
            units.append((lo, hi, t, count_tokens(t)))
    out: list[tuple[int, int, str]] = []
    current: list[tuple[int, int, str, int]] = []
    fresh = 0  # units in `current` not repeated from the previous chunk
    for unit in units:
        if current and fresh and sum(u[3] for u in current) + unit[3] > budget:
            out.append(_join(current))
            kept: list[tuple[int, int, str, int]] = []
            for u in reversed(current):  # the overlap: whole trailing units, up to `overlap` tokens
                if sum(k[3] for k in kept) + u[3] > overlap or len(kept) + 1 == len(current):
                    break
                kept.insert(0, u)
            if sum(k[3] for k in kept) + unit[3] > budget:
                kept = []
            current, fresh = kept, 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        out.append(_join(current))
    return out


def _join(units: list[tuple[int, int, str, int]]) -> tuple[int, int, str]:
    parts: list[str] = []
    for i, (lo, _, text, _) in enumerate(units):
        if i and lo > units[i - 1][1]:
            parts.append("\n\n" + text)  # a new paragraph
        else:
            parts.append((" " if i else "") + text)  # the next sentence of the same line
    return units[0][0], max(u[1] for u in units), "".join(parts)


def _cut(text: str, first: int, last: int, budget: int) -> Iterator[tuple[int, int, str]]:
    """A paragraph within budget as is; else its lines, a long line by sentences, a long sentence by words."""
    if count_tokens(text) <= budget:
        yield first, last, text
        return
    for n, line in enumerate(text.split("\n")):
        line_no = first + n
        if count_tokens(line) <= budget:
            if line.strip():
                yield line_no, line_no, line
            continue
        for sentence in _SENTENCE_END.split(line.strip()):
            words = sentence.split(" ")
            while words:
                take, size = 0, 0
                while take < len(words) and (take == 0 or size + count_tokens(words[take]) <= budget):
                    size += count_tokens(words[take])
                    take += 1
                yield line_no, line_no, " ".join(words[:take])
                words = words[take:]


# -- code -------------------------------------------------------------------------------------------------------------


def _parser(language: str) -> object | None:
    import importlib

    if language not in _GRAMMARS:
        return None
    module, fn = _GRAMMARS[language]
    try:
        import tree_sitter

        grammar = getattr(importlib.import_module(module), fn)()
    except ImportError:
        return None
    return tree_sitter.Parser(tree_sitter.Language(grammar))


def _units(nodes: list, prefix: str, budget: int, lines: list[str]) -> Iterator[tuple[int, int, str]]:
    """(first line, last line, symbol) of each definition and of each run of other code between definitions."""
    pending: list = []  # non-definition nodes not yet emitted

    def flush(upto: list) -> Iterator[tuple[int, int, str]]:
        if upto:
            yield upto[0].start_point[0], upto[-1].end_point[0], prefix.rstrip(".")

    for node in nodes:
        if node.type not in _DEFINITIONS:
            pending.append(node)
            continue
        # Comments right above a definition (doc comments, JSDoc) belong to it.
        lead = []
        while pending and pending[-1].type in _COMMENTS and pending[-1].end_point[0] >= (
                (lead[0] if lead else node).start_point[0] - 1):
            lead.insert(0, pending.pop())
        yield from flush(pending)
        pending = []
        first = (lead[0] if lead else node).start_point[0]
        name = _name(node)
        symbol = f"{prefix}{name}" if name else prefix.rstrip(".")
        text = "\n".join(lines[first:node.end_point[0] + 1])
        body = _body(node)
        if count_tokens(text) > budget and body is not None and _has_definitions(body):
            inner = [c for c in body.named_children]
            head_end = next((c.start_point[0] for c in inner if c.type in _DEFINITIONS), node.end_point[0]) - 1
            if head_end >= first:
                yield first, head_end, symbol
            yield from _units([c for c in inner if c.start_point[0] > head_end], f"{symbol}.", budget, lines)
        else:
            yield first, node.end_point[0], symbol
    yield from flush(pending)


def _name(node: object) -> str | None:
    """The name a definition declares (through decorators, exports, C declarators, Go type specs)."""
    named = getattr(node, "child_by_field_name", None)
    if named is None:
        return None
    name = node.child_by_field_name("name")  # type: ignore[attr-defined]
    if name is not None and name.type not in ("parameter_list",):
        return name.text.decode("utf-8", "replace")
    for key in ("definition", "declaration", "declarator", "type"):
        child = node.child_by_field_name(key)  # type: ignore[attr-defined]
        if child is not None and child is not node:
            found = _name(child)
            if found:
                return found
    if node.type in ("identifier", "field_identifier", "type_identifier"):  # type: ignore[attr-defined]
        return node.text.decode("utf-8", "replace")  # type: ignore[attr-defined]
    for child in node.named_children:  # type: ignore[attr-defined]
        if child.type in ("type_spec", "identifier", "type_identifier"):
            return _name(child)
    return None


def _body(node: object) -> object | None:
    for key in ("definition", "declaration"):  # decorated_definition, export_statement: the wrapped definition
        inner = node.child_by_field_name(key)  # type: ignore[attr-defined]
        if inner is not None:
            return _body(inner)
    return node.child_by_field_name("body")  # type: ignore[attr-defined]


def _has_definitions(body: object) -> bool:
    return any(c.type in _DEFINITIONS for c in body.named_children)  # type: ignore[attr-defined]


def _line_windows(lines: list[str], first: int, last: int, budget: int) -> list[tuple[int, int, str]]:
    """A unit over budget, cut into consecutive line ranges of at most `budget` tokens (a longer line alone)."""
    out: list[tuple[int, int, str]] = []
    start, size = first, 0
    for i in range(first, last + 1):
        n = count_tokens(lines[i])
        if size and size + n > budget:
            out.append((start, i - 1, "\n".join(lines[start:i])))
            start, size = i, 0
        size += n
    out.append((start, last, "\n".join(lines[start:last + 1])))
    return [w for w in out if w[2].strip()]
