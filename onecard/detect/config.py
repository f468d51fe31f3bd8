"""Configs of `onecard detect`: data check, train, eval, predict, export (with its latency measurement)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CheckConfig", "DetectConfig", "EvalConfig", "PredictConfig", "ExportConfig", "BenchConfig"]

Format = Literal["pytorch", "torchscript", "onnx", "openvino", "engine"]


class CheckConfig(BaseModel):
    """`onecard detect data check DATA`: every problem of a YOLO data set, named by file and line, before training."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="data.yaml of a YOLO data set, or the folder that holds it")
    plots: bool = Field(False, description="also write class and box-size histograms (PNG) next to the report, in --out")
    out: str | None = Field(None, description="folder for the histograms (default: ./detect-check)")


class DetectConfig(BaseModel):
    """`onecard detect train`: a YOLO detector trained by ultralytics' trainer, with batch, image size and AMP fitted
    to the card by `onecard fit`, evaluated (mAP50, mAP50-95) on the val split and recorded."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="data.yaml of a YOLO data set, or the folder that holds it (checked before training)")
    model: str = Field(description="yolov8n.yaml (from scratch), yolov8n / yolov8s.pt (pretrained, from a local file or ultralytics' weights folder), or PATH.pt")
    epochs: int = Field(100, ge=1, description="passes over the training images")
    imgsz: int | Literal["auto"] = Field(640, description="training image side in pixels (a multiple of 32); auto: the largest of 640, 480, 320 that fits the card")
    batch: int | Literal["auto"] = Field("auto", description="images per step; auto: the largest that fits the card by fit's prediction (16 on a CPU)")
    amp: bool | Literal["auto"] = Field("auto", description="mixed precision; auto: on a CUDA card that runs fp16 correctly (not GTX 16xx: NaN losses, ultralytics #17812), off on CPU")
    patience: int = Field(50, ge=0, description="stop early after N epochs without a better val fitness (0: never)")
    optimizer: Literal["auto", "SGD", "AdamW", "Adam"] = Field("auto", description="ultralytics' optimizer; auto: AdamW for short runs, SGD for long ones (its rule)")
    lr0: float | None = Field(None, gt=0, description="initial learning rate (None: ultralytics' default for the optimizer)")
    warmup_epochs: float = Field(3.0, ge=0, description="epochs of learning-rate warm-up")
    mosaic: float = Field(1.0, ge=0, le=1, description="probability of mosaic augmentation")
    close_mosaic: int = Field(10, ge=0, description="turn mosaic off for the last N epochs")
    workers: int = Field(2, ge=0, description="dataloader worker processes (0: load in the main process)")
    plots: bool = Field(True, description="loss curves, PR curve and confusion matrix PNGs in the run folder")
    gpu: str | None = Field(None, description="card to plan for (4070ti, rtx-3060...); None: the detected card")
    vram: float | None = Field(None, gt=0, description="card memory in GiB to plan for, instead of --gpu")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, cuda:1, cpu")
    seed: int = Field(0, description="random seed (weights of a from-scratch model, augmentations, batch order)")

    @field_validator("imgsz")
    @classmethod
    def _stride(cls, value: int | str) -> int | str:
        """A side ultralytics trains as given: a multiple of 32, the model's largest stride (it rounds any other up,
        so the planned size would not be the trained one)."""
        if value != "auto" and (int(value) < 32 or int(value) % 32):
            side = max(32, -(-int(value) // 32) * 32)
            raise ValueError(f"{value} is not a multiple of 32 (ultralytics would train at {side}); give "
                             f"{max(32, side - 32)} or {side}, or auto")
        return value


class EvalConfig(BaseModel):
    """`onecard detect eval RUN`: mAP50, mAP50-95, precision, recall and per-class AP of a trained model."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory or 'last'; or a weights file (.pt)")
    data: str | None = Field(None, description="data.yaml to evaluate on (None: the run's data set)")
    split: Literal["val", "test", "train"] = Field("val", description="split of the data set")
    imgsz: int | None = Field(None, ge=32, description="image side (None: the run's)")
    batch: int = Field(16, ge=1, description="images per forward pass")
    device: str = Field("auto", description="auto, cuda, cpu")


class PredictConfig(BaseModel):
    """`onecard detect predict RUN SOURCE...`: boxes drawn on the images, and a JSON of the detections."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory or 'last'; or a weights file (.pt)")
    source: list[str] = Field(description="images or folders of images")
    out: str = Field("detections", description="folder for the drawn images and detections.json")
    conf: float = Field(0.25, ge=0, le=1, description="keep boxes with at least this confidence")
    iou: float = Field(0.7, gt=0, le=1, description="non-maximum suppression IoU threshold")
    imgsz: int | None = Field(None, ge=32, description="image side (None: the run's)")
    device: str = Field("auto", description="auto, cuda, cpu")


class ExportConfig(BaseModel):
    """`onecard detect export RUN --format onnx`: the model in a deployment format, checked by running it (its boxes
    against PyTorch's on the val images), its mAP re-measured, and its latency at batch 1 beside PyTorch's."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory or 'last'; or a weights file (.pt)")
    format: Literal["onnx", "torchscript", "openvino", "engine"] = Field(
        "onnx", description="export format (engine: TensorRT, on a CUDA GPU)")
    data: str | None = Field(None, description="data.yaml whose val images check the export (None: the run's)")
    imgsz: int | None = Field(None, ge=32, description="image side (None: the run's)")
    warmup: int = Field(5, ge=0, description="untimed runs before timing")
    repeats: int = Field(30, ge=1, description="timed runs at batch 1; the median and p90 are reported")
    device: str = Field("cpu", description="device for the check and the latency (cpu, cuda)")
    threads: int | None = Field(None, ge=1, description="CPU threads for every runtime alike (None: the physical cores)")
    check_map: bool = Field(True, description="re-measure mAP on the val split with the exported file, beside PyTorch's")


class BenchConfig(BaseModel):
    """`onecard detect bench RUN`: ms per image and images/s per format and batch size, and the mAP each format keeps."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="run id, unique prefix, run directory or 'last'; or a weights file (.pt)")
    formats: list[Format] = Field(["pytorch", "torchscript", "onnx", "openvino", "engine"],
                                  description="formats to time (comma-separated or several); those whose runtime is "
                                              "missing here are listed as skipped, with the reason")
    batch: list[int] = Field([1, 8], description="batch sizes (comma-separated or several); one export per batch")
    data: str | None = Field(None, description="data.yaml whose val split the mAP is measured on (None: the run's)")
    imgsz: int | None = Field(None, ge=32, description="image side (None: the run's)")
    warmup: int = Field(3, ge=0, description="untimed runs before timing")
    repeats: int = Field(20, ge=1, description="timed runs per format and batch; the median and p90 are reported")
    device: str = Field("cpu", description="device to time on (cpu, cuda)")
    threads: int | None = Field(None, ge=1, description="CPU threads for every runtime alike (None: the physical cores)")
    check_map: bool = Field(True, description="measure each format's mAP on the val split (batch-1 export)")

    @field_validator("formats", "batch", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """`--formats pytorch,onnx` as well as `--formats pytorch onnx`."""
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list):
            return [p.strip() for v in items for p in v.split(",") if p.strip()] if all(
                isinstance(v, str) for v in items) else items
        return value

    @field_validator("batch")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError(f"batch sizes must be 1 or more, got {value}")
        return value
