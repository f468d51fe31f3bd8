"""What `onecard rag` prints without --json: tables with rich."""

from __future__ import annotations

from typing import Any

from onecard.rag.answer import Answer
from onecard.rag.evaluate import MODES
from onecard.rag.index import BuildStats

__all__ = ["index", "hits", "evaluation", "citations"]


def index(stats: BuildStats, run_id: str, console: Any) -> None:
    console.print(f"{stats.files} files, {stats.chunks} chunks: {stats.embedded} embedded, {stats.reused} reused "
                  f"({stats.added_files} added, {stats.changed_files} changed, {stats.removed_files} removed, "
                  f"{stats.unchanged_files} unchanged) in {stats.seconds:.1f} s")
    for note in stats.notes[:20]:
        console.print(f"  {note}", style="dim", markup=False)
    if len(stats.notes) > 20:
        console.print(f"  ... and {len(stats.notes) - 20} more skipped (see `onecard runs show {run_id}`)", style="dim")
    console.print(f"recorded as run [bold]{run_id}[/]")


def hits(found: dict[str, Any], console: Any) -> None:
    console.print(f"{found['retriever']}: {len(found['hits'])} hits in {found['seconds'] * 1000:.0f} ms", style="dim")
    for n, h in enumerate(found["hits"], start=1):
        context = " > ".join(h["heading"] + ([h["symbol"]] if h["symbol"] else []))
        console.print(f"[bold]{n}. {h['location']}[/] [dim]{context} score {h['score']:.4g}[/]", highlight=False)
        text = " ".join(h["text"].split())
        console.print(f"   {text[:240]}{'...' if len(text) > 240 else ''}", markup=False, highlight=False)


def evaluation(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"retrieval: {result['judged']} judged questions, {result['documents']} documents, "
                        f"{result['chunks']} chunks")
    table.add_column("retriever")
    names = ("ndcg@10", "recall@5", "recall@10", "mrr@10")
    for name in names:
        table.add_column(name, justify="right")
    for mode in MODES:
        row = result.get(mode)
        table.add_row(mode, *([f"{row[n]:.4f}" for n in names] if row else ["-"] * len(names)))
    console.print(table)
    if result.get("note"):
        console.print(result["note"], style="dim", markup=False)
    if result.get("answers"):
        console.print("answers: " + ", ".join(f"{k} {v}" for k, v in result["answers"].items()), markup=False)
    console.print(f"recorded as run [bold]{result['run_id']}[/]")


def citations(result: Answer, console: Any) -> None:
    console.print()
    for c in result.citations():
        console.print(f"  [{c['n']}] {c['location']}", markup=False, highlight=False)
    if not result.cited and result.sources and not result.abstained:
        console.print("no source cited; the answer was written from these:", style="dim")
        for n, hit in enumerate(result.sources, start=1):
            console.print(f"  [{n}] {hit.location}", markup=False, highlight=False, style="dim")
    if result.invalid_citations:
        console.print(f"dropped {result.invalid_citations} citation(s) naming no retrieved source", style="dim")
    for v in result.unsupported:
        console.print(f"[{v.n}?] source {v.n} does not support \"{v.sentence}\" (score {v.score:.2f})",
                      style="yellow", markup=False, highlight=False)
