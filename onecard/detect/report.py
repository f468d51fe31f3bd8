"""What `onecard detect` shows: the data check's tables, the evaluation's per-class table, and the histograms."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["render_check", "render_eval", "render_export", "plot_histograms"]

SHOWN = 50  # problems listed in the table; --json has them all


def render_check(report: dict[str, Any], console: Console) -> None:
    """Per-split counts, the class histogram, and each problem with its file and line."""
    from rich.markup import escape
    from rich.table import Table

    splits = Table("split", "images", "labelled", "backgrounds", "instances", "corrupt", title=report["data"])
    for name, s in report["splits"].items():
        splits.add_row(name, *(str(s[k]) for k in ("images", "labelled", "backgrounds", "instances", "corrupt")))
    console.print(splits)
    names = list(report["splits"])
    classes = Table("id", "class", *names, title="instances per class")
    shown = [c for c in report["classes"] if any(c.get(s, 0) for s in names)]
    for c in shown:
        classes.add_row(str(c["id"]), escape(c["name"]), *(str(c.get(s, 0)) for s in names))
    console.print(classes)
    if len(shown) < len(report["classes"]):
        console.print(f"({len(report['classes']) - len(shown)} classes with no instance in any split not shown)")
    if report["problems"]:
        console.print(f"problems: {report['errors']} errors, {report['warnings']} warnings")
    for p in report["problems"][:SHOWN]:  # one line each: the file and line stay whole, to copy into an editor
        where = f"{p['file']}:{p['line']}" if p["line"] else p["file"]
        style = "red" if p["severity"] == "error" else "yellow"
        console.print(f"[{style}]{p['severity']}[/] {p['kind']}: {escape(where)}: {escape(p['message'])}",
                      soft_wrap=True)
    if len(report["problems"]) > SHOWN:
        console.print(f"... and {len(report['problems']) - SHOWN} more (--json lists them all)")
    verdict = "errors: fix them before training" if report["errors"] else "no errors: ready to train"
    console.print(f"{report['errors']} errors, {report['warnings']} warnings; {verdict}")
    for plot in report.get("plots", []):
        console.print(f"wrote {plot}")


def render_eval(result: dict[str, Any], console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("class", "AP50", "AP50-95", title=f"{result['weights']} on {result['split']} of {result['data']}")
    for c in result["per_class"]:
        table.add_row(escape(c["name"]), f"{c['ap50']:.3f}", f"{c['ap50_95']:.3f}")
    table.add_row("all", f"{result.get('map50', 0):.3f}", f"{result.get('map50_95', 0):.3f}")
    console.print(table)
    console.print(f"precision {result.get('precision', 0):.3f}, recall {result.get('recall', 0):.3f}; plots "
                  f"(confusion matrix, PR curve) in {result['plots']}")


def render_export(result: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table("format", "median ms", "p90 ms", title=f"batch 1, imgsz {result['imgsz']}, {result['device']}")
    for fmt, t in result["latency"].items():
        table.add_row(fmt, f"{t['median_ms']:.1f}", f"{t['p90_ms']:.1f}")
    console.print(table)
    for fmt, m in result.get("map", {}).items():
        console.print(f"{fmt}: mAP50 {m.get('map50', 0):.4f}, mAP50-95 {m.get('map50_95', 0):.4f} (the run's val)")
    console.print(f"exported {result['exported']}")


def plot_histograms(report: dict[str, Any], sides: list[tuple[float, float]], out: Path) -> list[str]:
    """classes.png (instances per class and split) and box_sizes.png (box width and height, share of the image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(6, len(report["classes"]) * 0.3), 4))
    ids = [c["id"] for c in report["classes"]]
    for i, split in enumerate(report["splits"]):
        ax.bar([x + i * 0.4 for x in ids], [c.get(split, 0) for c in report["classes"]], width=0.4, label=split)
    ax.set(xlabel="class id", ylabel="instances", title="instances per class")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "classes.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist([[w for w, _ in sides], [h for _, h in sides]], bins=20, range=(0, 1), label=["width", "height"])
    ax.set(xlabel="box side / image side", ylabel="boxes", title="box sizes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "box_sizes.png", dpi=100)
    plt.close(fig)
    return [str(out / "classes.png"), str(out / "box_sizes.png")]
