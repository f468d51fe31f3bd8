"""A sentence-transformers embedder in ONNX Runtime: exported once per model with torch's exporter, fp32 or int8.

    DATA_DIR/onnx/<key>/   key: sha256 of the model's files (first 16 hex), the export recipe, r7 without VNNI
        model.onnx         the model's whole sentence-transformers pipeline (encoder, pooling, normalisation), fp32
        model.int8.onnx    the same with every weight MatMul in int8, per output channel (dynamic quantization)
        meta.json          inputs, dimension, and the int8 vectors' cosine to fp32 on PROBES

The folder is built under a temporary name and renamed into place, so a reader never sees half of it; a second
process that loses the race drops its copy. Tokenization is the sentence-transformers model's own `preprocess`, and
the graph holds its own pooling and normalisation modules, so onnx-fp32 gives torch fp32's vectors (cosine 1.0000).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from onecard.core.device import cpu_has_vnni, select_device
from onecard.core.extras import available, require
from onecard.core.paths import data_dir
from onecard.rag.config import EmbedBackend

__all__ = ["OnnxEncoder", "choose_backend", "load_encoder", "onnx_folder", "INT8_MIN_COSINE",
           "PROBES"]

RECIPE = "st-onnx17-mm8pc-1"  # opset 17, MatMul weights int8 per channel; bump when the export or quantization changes
# auto takes int8 only when its vectors' mean cosine to fp32 on PROBES reaches this. all-MiniLM-L6-v2: 0.994 on
# them, 0.994 on SQuAD's paragraphs and questions, with recall@10 within 0.005 of fp32 (benchmarks/RESULTS.md).
INT8_MIN_COSINE = 0.99
log = logging.getLogger("onecard.rag")
PROBES = (
    "How do I reset the VPN on my laptop?",
    "The mitochondrion is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "def read_chunks(path, budget): return [c for c in split(path.read_text(), budget)]",
    "Normandy is a region in France; the Normans gave their name to it in the 10th and 11th centuries.",
    "Quarterly revenue rose 12% to $4.1 billion, driven by cloud subscriptions and lower hardware costs.",
    "what year did the treaty end the war",
    "Install the package with pip, then run the index command on your notes folder before asking questions.",
    "Rain is expected in the north by the evening, with temperatures falling to around five degrees overnight.",
)


def choose_backend(requested: EmbedBackend, device: str) -> Literal["torch", "onnx-fp32", "onnx-int8"]:
    """What embeds on `device`: `requested`, or for "auto" ONNX Runtime int8 on a CPU (`load_encoder` steps down
    when int8 is not close enough), torch on a GPU (fp16/bf16) or where onnxruntime is missing."""
    if requested != "auto":
        return requested  # onnx-* runs on the CPU whatever `device` says: an index's queries follow its backend
    if select_device(device) != "cpu" or not available("onnxruntime"):
        return "torch"
    return "onnx-int8"


def model_key(path: Path) -> str:
    """sha256 of the model folder's files (names and bytes), first 16 hex, with the recipe: a new model, new weights
    or a new recipe get a new export."""
    digest = hashlib.sha256(RECIPE.encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
    return f"{digest.hexdigest()[:16]}-{'vnni' if cpu_has_vnni() else 'r7'}"


def onnx_folder(st_model: Any, model_path: Path) -> Path:
    """The model's export folder (see the module docstring), built on first use: a few seconds, once per model."""
    root = data_dir() / "onnx"
    out = root / model_key(model_path)
    if (out / "meta.json").is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to ONNX (once per model) into %s", model_path, out)
    tmp = root / f".{out.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp"
    tmp.mkdir()
    try:
        _export(st_model, tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process put its copy there first
            if not (out / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class OnnxEncoder:
    """Unit vectors from an exported model in ONNX Runtime, batched by length as sentence-transformers batches."""

    def __init__(self, folder: Path, kind: Literal["onnx-fp32", "onnx-int8"], preprocess: Any) -> None:
        ort = require("onnxruntime", "rag")
        self.meta: dict[str, Any] = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.backend = kind
        self.preprocess = preprocess
        self.dim = int(self.meta["dim"])
        self.session = ort.InferenceSession(str(folder / ("model.int8.onnx" if kind == "onnx-int8" else "model.onnx")),
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """(N, dim) float32 unit vectors; longest texts first, so a batch pads little (sentence-transformers'
        order), then put back in the given order."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            features = self.preprocess([texts[i] for i in rows])
            out[rows] = self.session.run(None, {n: features[n].numpy() for n in self.inputs})[0]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # F.normalize's eps


def load_encoder(st_model: Any, model_path: Path, backend: Literal["onnx-fp32", "onnx-int8"],
                 auto: bool) -> OnnxEncoder:
    """`backend` for the sentence-transformers model `st_model` (fp32, on the CPU). Under `auto`, int8 whose
    vectors are not close enough to fp32 (INT8_MIN_COSINE on PROBES) steps down to onnx-fp32: the same vectors as
    torch fp32, and on the AVX512-BF16 CPU measured as fast as torch in bf16 or faster (ONNX Runtime has no bf16
    matrix product on CPUs)."""
    folder = onnx_folder(st_model, model_path)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    if auto and backend == "onnx-int8" and float(meta["int8_cosine_mean"]) < INT8_MIN_COSINE:
        backend = "onnx-fp32"
    return OnnxEncoder(folder, backend, st_model.preprocess)


def _export(st_model: Any, out: Path) -> None:
    """model.onnx (the fp32 pipeline), model.int8.onnx and meta.json into `out`."""
    import torch

    ort = require("onnxruntime", "rag")
    require("onnx", "rag")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sample = st_model.preprocess(["a short one", "and a somewhat longer sentence to trace with"])
    names = [k for k, v in sample.items() if isinstance(v, torch.Tensor)]

    class Pipeline(torch.nn.Module):  # tensors in, the sentence embedding out: what torch.onnx.export traces
        def __init__(self) -> None:
            super().__init__()
            self.st = st_model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            embedding: torch.Tensor = self.st(dict(zip(names, tensors, strict=True)))["sentence_embedding"]
            return embedding

    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the tracer's notes on shape checks that hold for every input
        # The TorchScript exporter (dynamo=False): the dynamo one needs onnxscript, and traces no better here.
        torch.onnx.export(Pipeline().eval(), tuple(sample[n] for n in names), str(out / "model.onnx"),
                          input_names=names, output_names=["sentence_embedding"], dynamic_axes=axes | {
                              "sentence_embedding": {0: "batch"}}, opset_version=17, dynamo=False)
        # Per channel: per-tensor int8 gives all-MiniLM-L6-v2 vectors a cosine of only 0.955 (worst 0.75) to fp32.
        # Without VNNI, 7-bit weights keep AVX2's 16-bit sums from saturating (ONNX Runtime's quantization guide).
        # It logs advice through the root logger, which without a handler would install a stderr one for good
        # (logging.basicConfig) and so print every library's debug lines from then on.
        quiet = logging.NullHandler()
        logging.root.addHandler(quiet)
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(out / "model.onnx", out / "model.int8.onnx", weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=not cpu_has_vnni(), op_types_to_quantize=["MatMul"])
        finally:
            logging.disable(logging.NOTSET)
            logging.root.removeHandler(quiet)
    vectors = {}
    for name in ("model.onnx", "model.int8.onnx"):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        features = st_model.preprocess(list(PROBES))
        v = session.run(None, {n: features[n].numpy() for n in names})[0]
        vectors[name] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    cosine = np.sum(vectors["model.onnx"] * vectors["model.int8.onnx"], axis=1)
    meta = {"recipe": RECIPE, "inputs": names, "dim": int(vectors["model.onnx"].shape[1]),
            "int8_cosine_mean": round(float(cosine.mean()), 4), "int8_cosine_min": round(float(cosine.min()), 4),
            "int8_reduce_range": not cpu_has_vnni(), "torch": torch.__version__, "onnxruntime": ort.__version__}
    (out / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
