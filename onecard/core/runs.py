"""Reading run records: list, show and compare the runs in a runs directory (`onecard.core.records` writes them)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from onecard.core.errors import OnecardError
from onecard.core.paths import runs_dir
from onecard.core.records import HISTORY_FILE, RUN_FILE, write_json_atomic

__all__ = ["load_runs", "find_run", "compare", "flatten", "history", "render_list", "render_show", "render_compare"]


def load_runs(root: str | Path | None = None) -> list[dict[str, Any]]:
    """All run records under `root`, newest first. A run whose process died without closing it is marked interrupted."""
    base = Path(root).expanduser() if root else runs_dir()
    runs = []
    for path in base.glob(f"*/{RUN_FILE}"):
        record = _read_record(path)
        if record is None:
            continue
        record["dir"] = str(path.parent)
        _close_if_dead(record, path)
        runs.append(record)
    return sorted(runs, key=lambda r: str(r.get("started_at", "")), reverse=True)


def _read_record(path: Path) -> dict[str, Any] | None:
    """A run.json as a dict; None (with a warning on stderr for a damaged one) when it cannot serve as a record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # removed while listing
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        _warn_skipped(path, str(e))
        return None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        _warn_skipped(path, "not a run record (no run id)")
        return None
    return record


def _warn_skipped(path: Path, why: str) -> None:
    print(f"warning: skipping {path}: {why}; move or delete that run folder to silence this", file=sys.stderr)


def _close_if_dead(record: dict[str, Any], path: Path) -> None:
    if record.get("status") != "running" or record.get("host") != socket.gethostname():
        return
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return  # no process to ask about
    try:
        os.kill(pid, 0)
        return  # still running
    except ProcessLookupError:
        pass
    except PermissionError:
        return  # alive, another user's
    record["status"] = "interrupted"
    record["error"] = {"type": "Killed", "message": f"process {pid} ended without closing the run (killed?)"}
    stored = {k: v for k, v in record.items() if k != "dir"}
    write_json_atomic(path, stored)


def find_run(ref: str, root: str | Path | None = None, capability: str | None = None, has: str | None = None,
             how_to_make: str | None = None) -> dict[str, Any]:
    """A run by id, unique id prefix, run directory path, or `last`.

    Args:
        ref: what the user typed.
        root: the runs directory (default: the data directory's).
        capability: only a run of this capability (`last`: the newest such run).
        has: only a run whose directory holds this file or folder (a checkpoint, an adapter).
        how_to_make: the fix to print when no such run exists yet (e.g. the command that trains one).
    """
    def usable(r: dict[str, Any]) -> bool:
        right_kind = capability is None or r.get("capability") == capability
        return right_kind and (has is None or Path(r["dir"], has).exists())

    what = " ".join(x for x in (capability, "run", f"with {has}" if has else "") if x)
    runs = load_runs(root)
    if ref == "last":
        found = [r for r in runs if usable(r)]
        if found:
            return found[0]
        raise OnecardError(f"no {what} yet", how_to_make or "list the runs with `onecard runs list`")
    if Path(ref, RUN_FILE).is_file():
        found_record = _read_record(Path(ref, RUN_FILE))
        if found_record is None:
            raise OnecardError(f"{Path(ref, RUN_FILE)} is damaged: it is not a run record that can be read",
                               "pick another run from `onecard runs list`")
        record = found_record
        record["dir"] = str(Path(ref))
    else:
        matches = [r for r in runs if r["id"] == ref] or [r for r in runs if str(r["id"]).startswith(ref)]
        if not matches:
            raise OnecardError(f"no run matches '{ref}'", "list the runs with `onecard runs list`")
        if len(matches) > 1:
            ids = ", ".join(r["id"] for r in matches[:5])
            raise OnecardError(f"'{ref}' matches {len(matches)} runs ({ids}...)", "give more of the run id")
        record = matches[0]
    if not usable(record):
        listing = f"onecard runs list --capability {capability}" if capability else "onecard runs list"
        raise OnecardError(f"run {record['id']} is not a {what}", f"pick one from `{listing}`")
    return record


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Config keys that differ, and every metric of either run with its difference (b - a)."""
    ca, cb = flatten(a.get("config", {})), flatten(b.get("config", {}))
    config = {k: [ca.get(k), cb.get(k)] for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)}
    ma, mb = flatten(a.get("metrics", {})), flatten(b.get("metrics", {}))
    metrics = {}
    for k in sorted(set(ma) | set(mb)):
        va, vb = ma.get(k), mb.get(k)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
        metrics[k] = {"a": va, "b": vb, "delta": (vb - va) if numeric else None}  # type: ignore[operator]
    facts = {}
    for key in ("capability", "status", "seed", "duration_s"):
        if a.get(key) != b.get(key):
            facts[key] = [a.get(key), b.get(key)]
    return {"a": a["id"], "b": b["id"], "config": config, "metrics": metrics, "run": facts}


def history(record: dict[str, Any]) -> dict[str, list[list[float]]]:
    """The metric history a run logged (`Run.log`, its metrics.jsonl): per metric, its [step, value] points.

    A damaged line (a run killed mid-write) is skipped; a run that logged nothing has an empty history.
    """
    points: dict[str, list[list[float]]] = {}
    try:
        lines = Path(record["dir"], HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return points
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int | float):
            continue
        for name, value in entry.items():
            if name != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                points.setdefault(name, []).append([entry["step"], value])
    return points


# -- rendering (rich) ---------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


_STATUS_STYLE = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}


def render_list(runs: list[dict[str, Any]], console: Any) -> None:
    """A table: id, capability, status, key metrics, start time, duration."""
    from rich.table import Table

    if not runs:
        console.print("No runs yet. Start one, e.g. `onecard doctor --bench`.")
        return
    table = Table(box=None, header_style="bold")
    for col in ("run", "capability", "status", "metrics", "started", "took"):
        table.add_column(col)
    for r in runs:
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in list(flatten(r.get("metrics", {})).items())[:3])
        status = str(r.get("status"))
        took = r.get("duration_s")
        table.add_row(
            r["id"], r.get("capability", "?"), f"[{_STATUS_STYLE.get(status, '')}]{status}[/]", metrics or "-",
            str(r.get("started_at", "")).replace("T", " ")[:19], f"{took:.1f}s" if took is not None else "-",
        )
    console.print(table)


def render_show(record: dict[str, Any], console: Any) -> None:
    """The whole record, grouped: run, config, metrics, inputs, artifacts, environment."""
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    for key in ("id", "capability", "status", "started_at", "ended_at", "duration_s", "seed", "dir"):
        head.add_row(f"[bold]{key}[/]", _fmt(record.get(key)))
    head.add_row("[bold]command[/]", " ".join(record.get("command", [])))
    git = record.get("git")
    if git:
        head.add_row("[bold]git[/]", f"{git['commit'][:12]}{' (dirty)' if git['dirty'] else ''} in {git['root']}")
    console.print(head)
    if record.get("error"):
        console.print(f"[red]error[/]: {record['error'].get('type')}: {record['error'].get('message')}")
    sections = [
        ("config", record.get("config", {})),
        ("metrics", record.get("metrics", {})),
        ("peak memory", record.get("peak_memory", {})),
        ("inputs", {k: f"{v.get('sha256', '')[:16]} {v.get('path')}" for k, v in record.get("inputs", {}).items()}),
        ("artifacts", {a["path"]: f"{a['sha256'][:16]} {a['bytes']} B" for a in record.get("artifacts", [])}),
        ("versions", record.get("versions", {})),
        ("hardware", record.get("hardware", {})),
    ]
    for title, data in sections:
        flat = flatten(data)
        if not flat:
            continue
        table = Table(title=title, title_justify="left", title_style="bold", box=None, show_header=False)
        table.add_column(style="dim")
        table.add_column()
        for k, v in flat.items():
            table.add_row(k, _fmt(v))
        console.print(table)


def render_compare(diff: dict[str, Any], console: Any) -> None:
    """Config differences and metrics side by side."""
    from rich.table import Table

    for title, rows in (("run", diff["run"]), ("config differences", diff["config"])):
        table = Table(title=title, title_justify="left", title_style="bold", box=None)
        table.add_column("key")
        table.add_column(diff["a"])
        table.add_column(diff["b"])
        for k, (va, vb) in rows.items():
            table.add_row(k, _fmt(va), _fmt(vb))
        console.print(table if rows else f"[bold]{title}[/]: none")
    table = Table(title="metrics", title_justify="left", title_style="bold", box=None)
    for col in ("metric", diff["a"], diff["b"], "b - a"):
        table.add_column(col)
    for k, m in diff["metrics"].items():
        table.add_row(k, _fmt(m["a"]), _fmt(m["b"]), _fmt(m["delta"]))
    console.print(table if diff["metrics"] else "[bold]metrics[/]: none")
