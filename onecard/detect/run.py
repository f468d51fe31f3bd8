"""`onecard detect`: check a YOLO data set, train a detector as a recorded run, evaluate it, predict (export and
bench: deploy.py).

Training is ultralytics' own trainer (augmentations, EMA, early stopping, its checkpoints); onecard adds the data
check before it, the batch/imgsz/AMP fitted to the card, the out-of-memory ladder, and the run record. A run's
directory holds `data.yaml` (with the split lists it trained on) and `train/` (ultralytics' folder: `weights/last.pt`,
`weights/best.pt`, `results.csv`, the plots).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from unittest import mock

from onecard.core.config import load_config
from onecard.core.device import select_device
from onecard.core.errors import DataError, OnecardError
from onecard.core.progress import stderr_console
from onecard.core.records import Run, start_run
from onecard.core.runs import find_run
from onecard.detect.config import CheckConfig, DetectConfig, EvalConfig, PredictConfig
from onecard.detect.dataset import check_data, load_data, resolved_yaml
from onecard.detect.plan import Settings, amp_runs_correctly, choose, labels_of, ladder, settings_of
from onecard.detect.ultra import arch_of, box_metrics, quiet_stdout, resolve_model, setup, torch_device_arg, yolo
from onecard.fit.observations import observe_run
from onecard.fit.plan import plan
from onecard.fit.retry import OomStep, retry_on_oom

__all__ = ["check", "train", "resume_config", "evaluate", "predict", "find_detect_run", "weights_of"]

TRAIN_DIR, DATA_YAML = "train", "data.yaml"
LAST, BEST = f"{TRAIN_DIR}/weights/last.pt", f"{TRAIN_DIR}/weights/best.pt"


def check(config: CheckConfig) -> dict[str, Any]:
    """The data check's report: problems by file and line, per-split counts, the class histogram."""
    report = check_data(load_data(config.data))
    sides = report.pop("box_sides")  # one pair per box: for the histogram, not for the printed report
    train_split = report["splits"].get("train", {})
    if train_split.get("labelled"):  # what `onecard fit` needs to plan a training run on this data (mosaic on)
        report["fit_labels"] = labels_of(train_split, mosaic=1.0)
    if config.plots:
        from onecard.detect.report import plot_histograms

        report["plots"] = plot_histograms(report, sides, Path(config.out or "detect-check"))
    return report


def train(config: DetectConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
          resume: str | None = None) -> Run:
    """Train `config.model` on `config.data` as a recorded run; with `resume`, continue that run's last.pt."""
    setup()

    device = select_device(config.device)
    console = stderr_console()
    previous = find_detect_run(resume, runs_root, need=LAST) if resume else None
    ds = load_data(config.data)
    report = check_data(ds)
    if report["errors"]:
        shown = "; ".join(f"{p['file']}{':' + str(p['line']) if p['line'] else ''}: {p['message']}"
                          for p in report["problems"] if p["severity"] == "error")
        raise DataError(f"{ds.yaml}: {report['errors']} errors in the data set: {shown[:600]}",
                        f"see them all with `onecard detect data check {config.data}`, fix them, then train")
    weights = resolve_model(config.model)
    with start_run("detect", config, inputs={"data": ds.root}, seed=config.seed, runs_root=runs_root,
                   report_to=report_to) as run, quiet_stdout():
        # -- set up: the data as checked, the model, the previous run's curve
        data_yaml = resolved_yaml(ds, run.dir / DATA_YAML)
        save_dir = run.dir / TRAIN_DIR
        save_dir.mkdir()
        start = weights
        if previous:
            start = str(Path(previous["dir"]) / LAST)
            shutil.copyfile(Path(previous["dir"]) / TRAIN_DIR / "results.csv", save_dir / "results.csv")
            run.set("resumed_from", {"run": previous["id"], "checkpoint": start})
        arch = arch_of(yolo(start))
        run.set("data", {"splits": report["splits"], "classes": report["classes"], "warnings": report["warnings"]})

        # -- plan: fit turns batch, imgsz and AMP "auto" into numbers for the card
        settings, job = choose(config, arch, device, labels_of(report["splits"]["train"], config.mosaic))
        run.set("plan", settings.to_json())
        console.print(f"detect: {config.model} ({arch}) on {device}, {report['splits']['train']['images']} train / "
                      f"{report['splits']['val']['images']} val images, {len(ds.names)} classes; {settings.source}:"
                      f"\n  {settings.describe()}")

        # -- work: ultralytics' trainer; an out-of-memory error steps down fit's ladder and resumes from last.pt
        epochs: list[dict[str, float]] = []
        rungs: list[Settings] = [settings]
        oom_steps: list[dict[str, Any]] = []

        def on_epoch(trainer: Any) -> None:
            if trainer.epoch + 1 > trainer.epochs:
                return  # the final validation of best.pt calls this hook again: its metrics are the run's
            losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss else {}
            point = {"epoch": trainer.epoch + 1, **{k.removeprefix("train/"): float(v) for k, v in losses.items()},
                     **box_metrics(trainer.metrics)}
            epochs.append(point)
            run.log({k: v for k, v in point.items() if k != "epoch"}, step=point["epoch"])
            run.set("epochs", epochs)

        def attempt(s: Settings, after_oom: bool) -> Any:
            """Train with `s`: from this run's last.pt after an out-of-memory step, from the previous run's when
            resuming, else from `start`."""
            own = save_dir / "weights" / "last.pt"
            checkpoint = own if after_oom and own.is_file() else Path(start) if previous else None
            model = yolo(str(checkpoint) if checkpoint else start)
            model.add_callback("on_fit_epoch_end", on_epoch)
            args = dict(data=str(data_yaml), epochs=config.epochs, imgsz=s.imgsz, batch=s.batch, amp=s.amp,
                        device=torch_device_arg(device), workers=config.workers, patience=config.patience,
                        optimizer=config.optimizer, warmup_epochs=config.warmup_epochs, mosaic=config.mosaic,
                        close_mosaic=config.close_mosaic, plots=config.plots, seed=config.seed,
                        project=str(run.dir), name=TRAIN_DIR, exist_ok=True, verbose=False, val=True)
            if config.lr0 is not None:
                args["lr0"] = config.lr0
            if checkpoint:
                args.update(resume=True, save_dir=str(save_dir))  # the checkpoint's own folder is another run's
            # AMP is decided above (amp_runs_correctly); ultralytics' own check would download yolo26n.pt to test it
            with mock.patch("ultralytics.engine.trainer.check_amp", lambda model: s.amp):
                model.train(**args)
            return model.trainer

        def step_down(step: OomStep) -> None:
            after = settings_of(step.job, f"fit's out-of-memory ladder: {step.change}", plan(step.job))
            rungs.append(after)
            oom_steps.append({"at_epoch": len(epochs), "change": step.change, "error": step.error,
                              "settings": after.to_json()})
            run.set("oom_steps", oom_steps)
            console.print(f"out of memory in epoch {len(epochs) + 1}: {step.change}; continuing from last.pt")

        try:
            if job is None:
                trainer = attempt(settings, False)
            else:
                amp_ok = amp_runs_correctly(device)
                trainer = retry_on_oom(job, lambda _: attempt(rungs[-1], len(rungs) > 1),
                                       ladder=ladder(job, amp_ok), on_step=step_down)
        except KeyboardInterrupt:
            console.print(f"interrupted: {LAST} holds the last whole epoch; continue with "
                          f"`onecard detect train --resume {run.id}`")
            raise

        # -- evaluate: ultralytics validates best.pt on val after the last epoch
        final = box_metrics(trainer.metrics)
        metrics: dict[str, Any] = {
            **final, "epochs": epochs[-1]["epoch"] if epochs else 0,  # counted from the first run's start
            "best_epoch": max(epochs, key=_fitness)["epoch"] if epochs else None,
            "first_box_loss": epochs[0]["box_loss"] if epochs else None,
            "final_box_loss": epochs[-1]["box_loss"] if epochs else None,
            "s_per_epoch": _seconds_per_epoch(save_dir / "results.csv"),
            "batch": trainer.batch_size, "imgsz": trainer.args.imgsz, "amp": bool(trainer.amp),
            "oom_steps": len(oom_steps),
        }
        run.set_metrics(metrics)
        console.print(f"val: mAP50 {final.get('map50', 0):.4f}, mAP50-95 {final.get('map50_95', 0):.4f}, precision "
                      f"{final.get('precision', 0):.3f}, recall {final.get('recall', 0):.3f} (best.pt)")

        # -- save: ultralytics wrote the weights and plots; record them with their hashes
        for name in (BEST, LAST, f"{TRAIN_DIR}/results.csv", DATA_YAML):
            if (run.dir / name).exists():
                run.add_artifact(run.dir / name)
    observe_run(run.record)  # on a GPU: the measured peak beside the plan, for `onecard fit calibrate`
    return run


def _fitness(point: dict[str, float]) -> float:
    """ultralytics' choice of best.pt: 0.1 mAP50 + 0.9 mAP50-95 on val (utils/metrics.py DetMetrics.fitness)."""
    return 0.1 * point.get("map50", 0.0) + 0.9 * point.get("map50_95", 0.0)


def _seconds_per_epoch(results_csv: Path) -> float | None:
    """Mean wall time per epoch (train and val) from ultralytics' results.csv (its `time` column is cumulative)."""
    import csv

    if not results_csv.is_file():
        return None
    rows = list(csv.DictReader(results_csv.open()))
    times = [float(r["time"]) for r in rows if r.get("time")]
    return times[-1] / len(times) if times else None


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> DetectConfig:
    """The config of run `ref` with `overrides` (the flags given) on top."""
    saved = find_detect_run(ref, runs_root, need=LAST)["config"]
    return load_config(DetectConfig, None, {**saved, **overrides})


def evaluate(config: EvalConfig, runs_root: str | None = None) -> dict[str, Any]:
    """mAP50, mAP50-95, precision, recall and AP per class of a run's best weights (or a .pt) on a split."""
    setup()

    weights, record = weights_of(config.run, runs_root)
    if config.data is None and record is None:
        raise OnecardError("a weights file has no data set of its own", "pass --data DATA.yaml")
    data = config.data or str(Path(record["dir"]) / DATA_YAML)  # type: ignore[index]
    if config.data is not None:
        ds = load_data(config.data)
        data = str(resolved_yaml(ds, _scratch(record, "eval") / DATA_YAML))
    imgsz = config.imgsz or (record or {}).get("metrics", {}).get("imgsz") or 640
    out = _scratch(record, "eval")
    model = yolo(weights)
    with quiet_stdout():
        metrics = model.val(data=data, split=config.split, imgsz=imgsz, batch=config.batch,
                            device=torch_device_arg(select_device(config.device)), plots=True,
                            project=str(out.parent), name=out.name, exist_ok=True, verbose=False)
    names = model.names
    per_class = [{"id": int(c), "name": names[int(c)], "ap50_95": float(metrics.box.maps[int(c)]),
                  "ap50": float(metrics.box.ap50[i])} for i, c in enumerate(metrics.box.ap_class_index)]
    return {"run": record["id"] if record else None, "weights": weights, "data": data, "split": config.split,
            "imgsz": imgsz, **box_metrics(metrics.results_dict), "per_class": per_class, "plots": str(out)}


def predict(config: PredictConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Detect objects in images: each image drawn with its boxes into `out`, and `out/detections.json`."""
    import json

    setup()

    weights, record = weights_of(config.run, runs_root)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    imgsz = config.imgsz or (record or {}).get("metrics", {}).get("imgsz") or 640
    model = yolo(weights)
    images: list[dict[str, Any]] = []
    with quiet_stdout():
        for source in config.source:
            if not Path(source).exists():
                raise OnecardError(f"image or folder {source} does not exist", "pass image files or folders of images")
            for r in model.predict(source, imgsz=imgsz, conf=config.conf, iou=config.iou, stream=True, verbose=False,
                                   device=torch_device_arg(select_device(config.device))):
                drawn = out / Path(r.path).name
                r.save(filename=str(drawn))
                images.append({"image": r.path, "drawn": str(drawn), "detections": [
                    {"class": int(c), "name": r.names[int(c)], "confidence": round(float(p), 4),
                     "box_xyxy": [round(float(v), 1) for v in xyxy]}
                    for xyxy, p, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(),
                                          strict=True)]})
    (out / "detections.json").write_text(json.dumps({"weights": weights, "images": images}, indent=2))
    return {"weights": weights, "out": str(out), "images": images}


def _scratch(record: dict[str, Any] | None, name: str) -> Path:
    base = Path(record["dir"]) if record else Path.cwd() / "detect-eval"
    (base / name).mkdir(parents=True, exist_ok=True)
    return base / name


def weights_of(ref: str, runs_root: str | None) -> tuple[str, dict[str, Any] | None]:
    """A run's best weights (or its last.pt when best.pt is missing) and its record; a .pt path as it is."""
    if ref.endswith(".pt") and Path(ref).is_file():
        return str(Path(ref).resolve()), None
    record = find_detect_run(ref, runs_root, need=LAST)
    folder = Path(record["dir"])
    return str(folder / BEST if (folder / BEST).is_file() else folder / LAST), record


def find_detect_run(ref: str, runs_root: str | None, need: str = BEST) -> dict[str, Any]:
    """A detect run that has `need` (its weights), by id, prefix, directory, or 'last'."""
    example = "onecard detect train --data data.yaml --model yolov8n.yaml --epochs 10"
    return find_run(ref, runs_root, capability="detect", has=need, how_to_make=f"train one, e.g. `{example}`")
