"""What `onecard detect` shows: the data check's tables, the evaluation's per-class table, and the histograms."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["render_check", "render_eval", "render_export", "render_bench", "plot_histograms"]

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
    if "fit_labels" in report:  # crowded images make the loss's largest tensors: fit plans with them
        labels = report["fit_labels"]
        console.print(f"memory: {labels['labels_per_image']:g} labels per labelled training image, "
                      f"{labels['max_labels']} in its four most-labelled (a mosaic's most); `onecard detect train` "
                      "plans with them, and with other tools: `onecard fit MODEL --job train "
                      f"--labels-per-image {labels['labels_per_image']:g} --max-labels {labels['max_labels']} ...`",
                      highlight=False)
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

    table = Table("format", "median ms", "p90 ms",
                  title=f"batch 1, imgsz {result['imgsz']}, {result['device']}, {result['threads']} threads")
    for fmt, t in result["latency"].items():
        table.add_row(fmt, f"{t['median_ms']:.1f}", f"{t['p90_ms']:.1f}")
    console.print(table)
    console.print(f"{result['format']} / pytorch: {result['vs_pytorch']:.2f}")
    check = result["check"]
    if check["passed"] is None:
        console.print(f"box check skipped: {check['skipped']}")
    else:
        verdict = "[green]passed[/]" if check["passed"] else "[red]FAILED[/]"
        console.print(f"box check {verdict}: {check['matched']} of {check['boxes']} PyTorch boxes on {check['images']} "
                      f"val images matched (IoU >= {check['iou_needed']}, mean {check['mean_iou'] or 0:.4f}), "
                      f"{check['missing']} missing, {check['extra']} extra"
                      + ("" if check["boxes"] else f" (no box above confidence {check['conf']}: nothing to compare)"))
    for fmt, m in result.get("map", {}).items():
        console.print(f"{fmt}: mAP50 {m.get('map50', 0):.4f}, mAP50-95 {m.get('map50_95', 0):.4f} (val, batch 1)")
    console.print(f"exported {result['exported']}")


def render_bench(result: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table("format", "batch", "ms/image (median)", "p90", "images/s", "x pytorch", "mAP50", "mAP50-95",
                  title=f"imgsz {result['imgsz']}, {result['device']}, {result['threads']} threads")
    for r in result["rows"]:
        ratio = f"{r['vs_pytorch']:.2f}" if r["vs_pytorch"] is not None else "-"
        table.add_row(r["format"], str(r["batch"]), f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
                      f"{r['images_per_s']:.1f}", ratio, *(f"{r[k]:.4f}" if k in r else "-"
                                                          for k in ("map_map50", "map_map50_95")))
    console.print(table)
    for s in result["skipped"]:
        console.print(f"skipped {s['format']}: {s['reason']}")
    if result["map_note"]:
        console.print(result["map_note"])


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
