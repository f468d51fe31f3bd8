"""The HTML report of `onecard vlm eval`: the metrics of each model, then a few rows side by side (the image, the
question, the reference answer, each model's answer, marked right or wrong).

One self-contained file: the images are inlined as base64 JPEG thumbnails, so the report can be mailed or opened
after the data folder moves.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_report", "thumbnail", "THUMB_PX"]

THUMB_PX = 256  # the longest side of an inlined image: enough to see what was asked about, small enough to mail

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.4em .7em;vertical-align:top;text-align:left}th{background:#f3f3f3}
.right{background:#e6f4e6}.wrong{background:#fbe9e9}img{max-width:256px;image-rendering:pixelated}
.num{text-align:right;font-variant-numeric:tabular-nums}"""
_METRICS = (("exact_match", "exact match", "{:.1%}"), ("token_f1", "token F1", "{:.3f}"),
            ("loss", "answer loss (nats/token)", "{:.4f}"), ("perplexity", "answer perplexity", "{:.2f}"))


def thumbnail(path: str | Path, px: int = THUMB_PX) -> str:
    """The image at `path` as a data URL of a JPEG at most `px` on its longest side."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB")
        small.thumbnail((px, px))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_report(path: Path, title: str, metrics: Mapping[str, Mapping[str, float]], examples: Sequence[Any],
                 answers: Mapping[str, Sequence[str]]) -> Path:
    """Write the report to `path`: `metrics` per model name, and `examples` (rows with `.images`, `.prompt()`,
    `.response()`) with each model's `answers` in the same order."""
    from onecard.core.answers import exact_match
    from onecard.core.records import write_text_atomic

    names = list(metrics)
    e = html.escape
    head = "".join(f"<th>{e(n)}</th>" for n in names)
    rows = "".join(f"<tr><td>{label}</td>" + "".join(f'<td class="num">{fmt.format(metrics[n][key])}</td>'
                                                    for n in names) + "</tr>"
                   for key, label, fmt in _METRICS if all(key in metrics[n] for n in names))
    samples = []
    for i, ex in enumerate(examples):
        pictures = "".join(f'<img src="{thumbnail(p)}" alt="{e(Path(p).name)}"> ' for p in ex.images)
        cells = "".join(
            f'<td class="{"right" if exact_match(answers[n][i], ex.response()) else "wrong"}">{e(answers[n][i])}</td>'
            for n in names)
        samples.append(f"<tr><td>{pictures}</td><td>{e(ex.prompt())}</td><td>{e(ex.response())}</td>{cells}</tr>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{e(title)}</h1><table><tr><th>metric</th>{head}</tr>{rows}</table>"
            f"<h2>{len(examples)} rows side by side</h2><p>green: the answer matches the reference (exact match "
            f"after SQuAD's normalisation); red: it does not.</p><table><tr><th>image</th><th>question</th>"
            f"<th>reference</th>{head}</tr>{''.join(samples)}</table></body></html>\n")
    write_text_atomic(path, page)
    return path
