"""What `onecard diffuse` prints for a person (the CLI's renderers); `--json` prints the same dicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["render_check", "render_eval"]

SHOWN = 50  # problems printed; --json lists them all


def render_check(report: dict[str, Any], console: Console) -> None:
    """The counts, then a table of the problems by file, then the verdict."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"{report['data']}: {report['images']} images, {report['decoded']} decode, "
                  f"{report['captioned']} captioned (training resolution {report['resolution']})")
    if report["problems"]:
        table = Table("severity", "kind", "file", "problem", title=f"in {report['data']}")
        for p in report["problems"][:SHOWN]:
            style = "red" if p["severity"] == "error" else "yellow"
            where = _relative(Path(p["file"]), Path(report["data"]))
            table.add_row(f"[{style}]{p['severity']}[/]", p["kind"], escape(where), escape(p["message"]))
        console.print(table)
        if len(report["problems"]) > SHOWN:
            console.print(f"... and {len(report['problems']) - SHOWN} more (--json lists them all)")
    verdict = "errors: fix them before training" if report["errors"] else "no errors: ready to train"
    console.print(f"{report['errors']} errors, {report['warnings']} warnings; {verdict}")
    if report.get("sheet"):
        console.print(f"contact sheet: {report['sheet']}")


def render_eval(result: dict[str, Any], console: Console) -> None:
    """Tuned against base, one row per measure, then what the class prompt's drift means."""
    from rich.table import Table

    table = Table("measure", "LoRA", "base", title=f"run {result['run']}: {len(result['seeds'])} images per prompt, "
                  f"CLIP {result['clip']}")
    for key in result["tuned"]:
        table.add_row(key.replace("_", " "), f"{result['tuned'][key]:g}", f"{result['base'][key]:g}")
    console.print(table)
    if "class_drift_similarity" in result:
        console.print(f"class prompt drawn with vs without the LoRA, same seeds: similarity "
                      f"{result['class_drift_similarity']:.3f} (1.0: the class is left alone)")


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
