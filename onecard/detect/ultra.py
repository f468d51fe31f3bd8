"""ultralytics, set up to run offline and quietly on stdout, and the facts onecard reads from it.

`setup()` must run before anything imports ultralytics: its settings (sync and telemetry off) and fonts live under
onecard's data directory (`$YOLO_CONFIG_DIR`), and YOLO_OFFLINE stops its online checks. Without a font there, its
plots download Arial.ttf; matplotlib's DejaVu Sans stands in for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from onecard.core.errors import ModelNotFoundError
from onecard.core.extras import require
from onecard.core.paths import data_dir
from onecard.core.progress import is_quiet

__all__ = ["setup", "quiet_stdout", "yolo", "resolve_model", "arch_of", "box_metrics", "torch_device_arg"]

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")  # the names ultralytics' plotting asks check_font for


def setup() -> ModuleType:
    """Import ultralytics offline, with its settings and fonts under onecard's data directory; its log on stderr."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(data_dir() / "ultralytics"))
    os.environ["YOLO_OFFLINE"] = "1"  # weights come from the user's disk; nothing is fetched at run time
    require("torchvision", "detect")
    with quiet_stdout():  # its first import prints where it wrote its settings file
        ultralytics = require("ultralytics", "detect")
    from ultralytics.utils import LOGGER, SETTINGS, USER_CONFIG_DIR  # where it looks is fixed at its first import

    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)  # type: ignore[no-untyped-call]  # no telemetry
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in FONTS:
        if not (Path(USER_CONFIG_DIR) / name).exists():
            Path(USER_CONFIG_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(font, Path(USER_CONFIG_DIR) / name)
    for handler in LOGGER.handlers:  # its progress and tables go to stderr: stdout stays for --json
        if type(handler) is logging.StreamHandler:  # its own, not a log-capturing subclass (pytest's)
            handler.setStream(_Stderr())
    LOGGER.setLevel(logging.WARNING if is_quiet() else logging.INFO)
    return ultralytics


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what ultralytics prints to stdout (progress bars, its first-run notes) to stderr: stdout is for --json."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def yolo(model: str) -> Any:
    """`ultralytics.YOLO(model)` (after `setup()`): a yaml builds a new model, a .pt loads one."""
    from ultralytics import YOLO  # type: ignore[attr-defined]

    return YOLO(model)


class _Stderr:
    """Whatever sys.stderr is at the time of writing (a test's capture, a redirect), not the one at set-up."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def resolve_model(ref: str) -> str:
    """What to hand `YOLO()`: a model yaml as given (built from ultralytics' cfg, random weights), or the path of a
    weights file found on this machine: `ref` as a path, else in ultralytics' weights folder or the working folder.

    Raises:
        ModelNotFoundError: pretrained weights that are not on this machine (nothing is downloaded).
    """
    if ref.endswith((".yaml", ".yml")) or Path(ref).expanduser().is_file():
        return str(Path(ref).expanduser().resolve()) if Path(ref).expanduser().is_file() else ref
    from ultralytics.utils import SETTINGS

    name = ref if ref.endswith(".pt") else f"{ref}.pt"
    places = [Path(SETTINGS["weights_dir"]), Path.cwd()]
    for place in places:
        if (place / name).is_file():
            return str((place / name).resolve())
    stem = Path(name).stem
    raise ModelNotFoundError(
        f"pretrained weights {name} are not on this machine (looked for {ref} and in {', '.join(map(str, places))})",
        f"where there is a network, `yolo predict model={name}` downloads them into {places[0]} (or get them from "
        f"https://github.com/ultralytics/assets/releases) and pass the file's path; or train from scratch with "
        f"--model {stem}.yaml")


def arch_of(model: Any) -> str | None:
    """The yaml a YOLO model was built from (`yolov8n.yaml`): the name fit's catalog knows it by."""
    cfg = getattr(getattr(model, "model", None), "yaml", None) or {}
    return cfg.get("yaml_file") if isinstance(cfg, dict) else None


def box_metrics(results: dict[str, float]) -> dict[str, float]:
    """ultralytics' `results_dict` under onecard's keys."""
    keys = {"precision": "metrics/precision(B)", "recall": "metrics/recall(B)", "map50": "metrics/mAP50(B)",
            "map50_95": "metrics/mAP50-95(B)"}
    return {k: float(results[v]) for k, v in keys.items() if v in results}


def torch_device_arg(device: str) -> str:
    """onecard's device ("cuda", "cuda:1", "cpu", "mps") as ultralytics' `device=` takes it ("0", "1", "cpu")."""
    if device == "cuda":
        return "0"
    return device.removeprefix("cuda:")
