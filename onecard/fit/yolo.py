"""YOLOv8 (ultralytics) detection, segmentation, pose and classification: catalog facts and the memory estimator.

The activation term is not a fitted number: the module walks the model graph of ultralytics'
`cfg/models/v8/yolov8.yaml` (and `yolov8-seg.yaml`, `yolov8-pose.yaml`, `yolov8-cls.yaml`) at the job's image size
and adds up the tensors that autograd keeps for the backward pass, block by block. The same walk counts the
parameters, and the test checks that count against the published table, so the graph the activations come from is
the real one. The training loss, which runs while those activations are alive, is a measured term on top
(`loss_bytes`: benchmarks/fit_yolo_loss.py runs ultralytics' own loss): it grows with the classes, and, by release,
with the labels per image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from onecard.core.gpus import GpuSpec
from onecard.fit.estimate import GIB, Estimate
from onecard.fit.job import FitJob, release
from onecard.fit.overheads import ALLOC_SLACK, CUDA_CONTEXT_GIB

__all__ = ["YoloArch", "find", "estimate", "val_bytes", "val_phases", "CATALOG"]

REG_MAX = 16  # Detect head: distribution focal loss bins per box side (ultralytics nn/modules/head.py)
NM = 32  # Segment head: mask prototypes (yolov8-seg.yaml `Segment, [nc, 32, 256]`)
KPT_SHAPE = (17, 3)  # Pose head: COCO keypoints x (x, y, visibility) (yolov8-pose.yaml kpt_shape)
CLS_HIDDEN = 1280  # Classify head: Conv(c1, 1280, 1) before the pool and the Linear (ultralytics nn/modules/head.py)
# Classes of the published models each task's table counts: COCO 80 (detect, seg), COCO person 1 (pose), ImageNet 1000.
DEFAULT_NC = {"detect": 80, "segment": 80, "pose": 1, "classify": 1000}

Task = Literal["detect", "segment", "pose", "classify"]
_SUFFIX: dict[Task, str] = {"detect": "", "segment": "-seg", "pose": "-pose", "classify": "-cls"}


@dataclass(frozen=True)
class YoloArch:
    """One YOLOv8 model: its yaml scale and the published size (ultralytics docs, COCO, 640 px)."""

    key: str
    depth: float  # depth_multiple of the yaml scale
    width: float  # width_multiple
    max_channels: int
    task: Task
    params_m: float  # published parameters, millions (nc as DEFAULT_NC)
    gflops: float  # published GFLOPs at 640
    source: str = "ultralytics docs.ultralytics.com/models/yolov8 (tables) and cfg/models/v8/yolov8*.yaml"

    @property
    def seg(self) -> bool:
        return self.task == "segment"


_SCALES = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.25, 512),
}
_CLS_MAX_CHANNELS = 1024  # yolov8-cls.yaml scales: [depth, width, 1024] for n to x
_PUBLISHED: dict[Task, dict[str, tuple[float, float]]] = {  # (params M, GFLOPs at 640), docs tables per task
    "detect": {"n": (3.2, 8.7), "s": (11.2, 28.6), "m": (25.9, 78.9), "l": (43.7, 165.2), "x": (68.2, 257.8)},
    "segment": {"n": (3.4, 12.6), "s": (11.8, 42.6), "m": (27.3, 110.2), "l": (46.0, 220.5), "x": (71.8, 344.1)},
    "pose": {"n": (3.3, 9.2), "s": (11.6, 30.2), "m": (26.4, 81.0), "l": (44.4, 168.6), "x": (69.4, 263.2)},
    "classify": {"n": (2.7, 4.3), "s": (6.4, 13.5), "m": (17.0, 42.7), "l": (37.5, 99.7), "x": (57.4, 154.8)},
}
CATALOG: dict[str, YoloArch] = {}
for _task, _table in _PUBLISHED.items():
    for _s, (_p, _g) in _table.items():
        _d, _w, _mc = _SCALES[_s]
        _key = f"yolov8{_s}{_SUFFIX[_task]}"
        CATALOG[_key] = YoloArch(_key, _d, _w, _CLS_MAX_CHANNELS if _task == "classify" else _mc, _task, _p, _g)


def find(name: str) -> YoloArch | None:
    """Catalog entry for `yolov8s`, `yolov8s.pt`, `YOLOv8s-seg`, `ultralytics/yolov8s`...; None if unknown."""
    key = name.strip().lower().rsplit("/", 1)[-1].removesuffix(".pt").removesuffix(".yaml")
    return CATALOG.get(key)


@dataclass
class _Tally:
    """Running totals of the walk: parameters, and per-image elements kept for backward (fp16 and 8-byte)."""

    params: int = 0
    saved: float = 0.0  # fp16 elements per image
    saved_i64: float = 0.0  # int64 elements per image (max-pool indices)
    out: float = 0.0  # elements of the head outputs (kept alive as `y`)
    live: float = 0.0  # no grad (predict, validation): most elements alive at once, in one block plus `held`
    held: float = 0.0  # no grad: outputs of the layers in model.save so far (BaseModel._predict_once keeps y[i])


def _div8(x: float) -> int:
    return int(-(-x // 8) * 8)  # ultralytics make_divisible(x, 8)


def _conv(t: _Tally, c1: int, c2: int, k: int, hw: float) -> None:
    # Conv = Conv2d(no bias) -> BatchNorm2d -> SiLU; autograd keeps the conv output (BN input), the BN output
    # (SiLU input) and the SiLU output (the next layer's input): 3 tensors of (c2, H, W).
    t.params += c1 * c2 * k * k + 2 * c2
    t.saved += 3 * c2 * hw
    t.live = max(t.live, (c1 + 2 * c2) * hw + t.held)  # no grad: input, conv output, BN output (SiLU not in place)


def _c2f(t: _Tally, c1: int, c2: int, n: int, shortcut: bool, hw: float) -> None:
    c = c2 // 2
    _conv(t, c1, 2 * c, 1, hw)  # cv1, then split into two views
    for _ in range(n):  # Bottleneck(c, c, e=1.0): two 3x3 Convs, plus the residual sum
        _conv(t, c, c, 3, hw)
        _conv(t, c, c, 3, hw)
        t.saved += c * hw if shortcut else 0
    t.saved += (2 + n) * c * hw  # torch.cat of the chunks, the input of cv2
    # no grad, at cv2's BN (traced, benchmarks/fit_yolo_val.py): the block's input, cv1's output and the n bottleneck
    # outputs (the list torch.cat reads), the concatenation, cv2's conv and BN outputs
    t.live = max(t.live, (c1 + 2 * (2 + n) * c + 2 * c2) * hw + t.held)
    _conv(t, (2 + n) * c, c2, 1, hw)


def _walk(arch: YoloArch, imgsz: int, nc: int) -> _Tally:
    """Walk yolov8(-seg, -pose, -cls).yaml (backbone + PAN head + Detect/Segment/Pose, or Classify) at `imgsz`."""
    t = _Tally()

    def ch(c: int) -> int:
        return _div8(min(c, arch.max_channels) * arch.width)

    def rep(n: int) -> int:
        return max(round(n * arch.depth), 1)

    def hw(stride: int) -> float:
        return (imgsz / stride) ** 2

    c64, c128, c256, c512, c1024 = ch(64), ch(128), ch(256), ch(512), ch(1024)
    _conv(t, 3, c64, 3, hw(2))  # 0 P1/2
    _conv(t, c64, c128, 3, hw(4))  # 1 P2/4
    _c2f(t, c128, c128, rep(3), True, hw(4))
    _conv(t, c128, c256, 3, hw(8))  # 3 P3/8
    _c2f(t, c256, c256, rep(6), True, hw(8))
    t.held += c256 * hw(8)  # y[4], y[6], y[9], y[12], y[15], y[18], y[21]: model.save (Concat and Detect inputs)
    _conv(t, c256, c512, 3, hw(16))  # 5 P4/16
    _c2f(t, c512, c512, rep(6), True, hw(16))
    t.held += c512 * hw(16)
    _conv(t, c512, c1024, 3, hw(32))  # 7 P5/32
    _c2f(t, c1024, c1024, rep(3), True, hw(32))
    if arch.task == "classify":  # yolov8-cls.yaml: Classify on layer 8 (no SPPF, no PAN head)
        _conv(t, c1024, CLS_HIDDEN, 1, hw(32))
        t.params += CLS_HIDDEN * nc + nc  # AdaptiveAvgPool2d(1) -> Dropout -> Linear(1280, nc)
        t.saved += CLS_HIDDEN  # the pooled vector, the Linear's input
        t.out += nc
        t.saved += t.out
        return t
    c_ = c1024 // 2  # 9 SPPF(k=5): cv1, three max-pools (each keeps int64 indices), cat, cv2
    _conv(t, c1024, c_, 1, hw(32))
    t.saved += 3 * c_ * hw(32) + 4 * c_ * hw(32)
    t.saved_i64 += 3 * c_ * hw(32)
    _conv(t, 4 * c_, c1024, 1, hw(32))
    t.held += c1024 * hw(32)
    # head: upsample (freed after the cat), cat (the next C2f's input: kept by its cv1), C2f
    t.saved += (c1024 + c512) * hw(16) + (c512 + c256) * hw(8) + (c256 + c512) * hw(16) + (c512 + c1024) * hw(32)
    _c2f(t, c1024 + c512, c512, rep(3), False, hw(16))  # 12
    t.held += c512 * hw(16)
    _c2f(t, c512 + c256, c256, rep(3), False, hw(8))  # 15 P3 out
    t.held += c256 * hw(8)
    _conv(t, c256, c256, 3, hw(16))
    _c2f(t, c256 + c512, c512, rep(3), False, hw(16))  # 18 P4 out
    t.held += c512 * hw(16)
    _conv(t, c512, c512, 3, hw(32))
    _c2f(t, c512 + c1024, c1024, rep(3), False, hw(32))  # 21 P5 out
    t.held += c1024 * hw(32)
    levels = ((c256, 8), (c512, 16), (c1024, 32))
    c2, c3 = max(16, c256 // 4, REG_MAX * 4), max(c256, min(nc, 100))
    for cx, s in levels:  # Detect: box branch (cv2) and class branch (cv3) per level
        for cb, co in ((c2, 4 * REG_MAX), (c3, nc)):
            _conv(t, cx, cb, 3, hw(s))
            _conv(t, cb, cb, 3, hw(s))
            t.params += cb * co + co  # final Conv2d with bias
            t.out += co * hw(s)
    t.params += REG_MAX  # DFL conv (frozen)
    if arch.seg:  # Segment: Proto at stride 4 and mask-coefficient branch (cv4) per level
        nm, npr = NM, _div8(min(256, arch.max_channels) * arch.width)
        _conv(t, c256, npr, 3, hw(8))
        t.params += npr * npr * 4 + npr  # ConvTranspose2d(npr, npr, 2, 2) with bias
        t.saved += npr * hw(4)
        _conv(t, npr, npr, 3, hw(4))
        _conv(t, npr, nm, 1, hw(4))
        c4 = max(c256 // 4, nm)
        for cx, s in levels:
            _conv(t, cx, c4, 3, hw(s))
            _conv(t, c4, c4, 3, hw(s))
            t.params += c4 * nm + nm
            t.out += nm * hw(s)
    if arch.task == "pose":  # Pose: keypoint branch (cv4) per level, nk = 17 x 3 channels
        nk = KPT_SHAPE[0] * KPT_SHAPE[1]
        c4 = max(c256 // 4, nk)
        for cx, s in levels:
            _conv(t, cx, c4, 3, hw(s))
            _conv(t, c4, c4, 3, hw(s))
            t.params += c4 * nk + nk
            t.out += nk * hw(s)
    t.saved += t.out
    return t


@dataclass(frozen=True)
class _LossMemory:
    """What ultralytics' v8 training loss adds to the step's peak, in bytes, for one range of releases.

    Measured with ultralytics' own loss on the CPU (benchmarks/fit_yolo_loss.py --step: a whole training step less
    AutoBatch's profile step, which runs no loss; bf16 autocast standing in for CUDA's fp16). The loss's peak is the
    largest of three lines, each per image: the score and box tensors over every anchor (`score`: floor, base, per
    class), the target assignment (utils/tal.py TaskAlignedAssigner.get_pos_mask), which pads every image to the
    batch's most labels (`assign`: per anchor, per anchor and class, per anchor and label), and, for segmentation,
    the masks the loss builds at H/4 x W/4 for each label's positive anchors and keeps for backward (`masks`: per
    anchor, per label and mask pixel; ultralytics utils/loss.py v8SegmentationLoss.single_mask_loss), and, for pose,
    the keypoint terms of v8PoseLoss, which grow with the batch's most labels (`pose`: per anchor, per anchor and
    label; measured on 8.4.190 only: older releases take the detection lines).
    """

    first: tuple[int, int, int]  # first ultralytics release with this loss code
    source: str
    score: tuple[float, float, float]
    assign: tuple[float, float, float]
    masks: tuple[float, float]
    pose: tuple[float, float] = (0, 0)


# Newest first; bytes per image and anchor (and per class, label or mask pixel), fitted to the script's table: yolov8n
# b8 704 nc 1/20/80 with 8-192 labels, yolov8s(-seg) b16 640 with 1-16 labels, on 8.0.35, 8.0.75, 8.0.114, 8.3.0 and
# 8.4.190;
# yolov8n/s-pose (nc 1) b8 704 and b16 640 with 8-128 labels on 8.4.190.
_LOSS = (
    _LossMemory((8, 4, 134), "8.4.134+: sparse (image, label, anchor) pairs (tal.py get_box_metrics nonzero)",
                score=(147, 74, 18.8), assign=(0, 0, 0), masks=(270, 78.7), pose=(122, 15.06)),
    _LossMemory((8, 0, 52), "8.0.52-8.4.133: CIoU on the pairs inside a box, dense (batch, labels, anchors) masks; "
                "select_candidates_in_gts' (batch x labels, anchors, 4) fp32 deltas peak at 32 B per pair",
                score=(247, 130, 22), assign=(87, 0.94, 32), masks=(1100, 91.4)),
    _LossMemory((0, 0, 0), "before 8.0.52: CIoU of every (label, anchor) pair and F.one_hot(topk, anchors) in int64 "
                "(tal.py get_box_metrics, select_topk_candidates): 104 B per pair",
                score=(247, 130, 22), assign=(87, 0.94, 104), masks=(1100, 91.4)),
)
# Before 8.4.134 the assigner's first (batch, labels, anchors) tensors are alive at the score line's peak: 12 B per
# anchor and label on top of it (under about 100 labels this, not the `assign` line, is the peak).
_SCORE_PER_LABEL_OLD = 12.0
CURRENT_ULTRALYTICS = (8, 4, 134)
# Cards on which fp16 training gives NaN losses or zero mAP: ultralytics' own list (utils/checks.py check_amp,
# #17812), Turing cards without tensor cores, which the compute capability (7.5) does not tell apart. Since 8.3.44
# (read in the 8.3.43 and 8.3.44 wheels) check_amp returns False on them whatever `amp=` asked, so the run trains in
# fp32; before, it ran its fp32-versus-AMP comparison, which such a card can pass (then trains fp16, with NaN losses).
AMP_BROKEN = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)",
                        re.IGNORECASE)
AMP_BROKEN_OFF_SINCE = (8, 3, 44)


def ultralytics_release(job: FitJob) -> tuple[int, int, int]:
    """The job's ultralytics release as (major, minor, patch); unset is the current loss code (8.4.134 or later)."""
    return release(job.ultralytics_version, CURRENT_ULTRALYTICS)


def amp_trains_correctly(compute_capability: tuple[int, int], name: str) -> bool:
    """Whether fp16 mixed precision trains correctly on a card: compute capability 7.0 or more, not in AMP_BROKEN."""
    return compute_capability >= (7, 0) and not AMP_BROKEN.search(name)


def amp_runs(job: FitJob, card: GpuSpec | None) -> bool:
    """Whether the training runs under AMP: as asked, unless the job's ultralytics turns it off on this card."""
    broken = card is not None and AMP_BROKEN.search(card.name) is not None
    return job.amp and not (broken and ultralytics_release(job) >= AMP_BROKEN_OFF_SINCE)


def anchors(imgsz: int) -> int:
    """Anchor points of the v8 heads at `imgsz`: one per cell of the stride 8, 16 and 32 grids."""
    return sum(math.ceil(imgsz / s) ** 2 for s in (8, 16, 32))


def loss_bytes(task: Task, job: FitJob, nc: int) -> tuple[float, str]:
    """Bytes the training loss adds to the step's peak (detect, segment, pose; 0 for classify), and which line."""
    if task == "classify":
        return 0.0, "classification loss: a (batch, classes) cross-entropy, nothing to count"
    release = ultralytics_release(job)
    m = next(m for m in _LOSS if release >= m.first)
    a, b = anchors(job.imgsz), job.batch
    n_mean = job.labels_per_image
    n_max = job.max_labels if job.max_labels is not None else math.ceil(4 * n_mean)
    old = m.first < CURRENT_ULTRALYTICS
    lines = {
        "score and box tensors": max(m.score[0], m.score[1] + m.score[2] * nc) + old * _SCORE_PER_LABEL_OLD * n_max,
        "target assignment": m.assign[0] + m.assign[1] * nc + m.assign[2] * n_max,
    }
    if task == "pose" and m.pose != (0, 0):
        lines["keypoint terms"] = m.pose[0] + m.pose[1] * n_max
    if task == "segment":
        lines["masks"] = m.masks[0] + m.masks[1] * n_mean * (job.imgsz / 4) ** 2 / a
    name = max(lines, key=lambda k: lines[k])
    return b * a * lines[name], f"where its {name} peak; ultralytics {m.source}"


# The validation pass (engine/validator.py BaseValidator.__call__, inference mode, after every epoch): the EMA model
# at twice the training batch (engine/trainer.py `get_dataloader(self.testset, batch_size * 2, mode="val")`, every
# release; 8.0.x's classify trainer doubled it once more, not modelled), 16-bit with AMP (`model.half()` of the EMA
# through 8.4.0, fp32 weights under autocast since), its loss (`model.loss(batch, preds)`, no grad), then NMS at
# conf 0.001, multi-label, on at most MAX_NMS boxes, keeping MAX_DET per image (utils/nms.py non_max_suppression,
# cfg/default.yaml max_det), and for segmentation each kept box's mask at the prototypes' H/4 resolution
# (ops.process_mask, upsample=False: save_json is off while training, every release).
MAX_DET = 300
MAX_NMS = 30000
# Release boundaries read from the PyPI wheels (8.3.153 / 8.3.154 and 8.3.216 / 8.3.217):
MASKS_BATCHWIDE = (8, 3, 154)  # SegmentationValidator.postprocess builds every image's masks before update_metrics
MASKS_UINT8 = (8, 3, 217)  # ops.process_mask returns masks.gt_(0.0).byte(), not the fp32 masks
_EXTRA = {"detect": 0, "segment": NM, "pose": KPT_SHAPE[0] * KPT_SHAPE[1], "classify": 0}


def val_phases(arch: YoloArch, job: FitJob, nc: int) -> dict[str, float]:
    """Bytes of one validation batch's transient tensors (the model's weights aside) at the peak of each phase."""
    v, release, hw4 = 2 * job.batch, ultralytics_release(job), (job.imgsz / 4) ** 2
    act_b = 2 if job.amp else 4  # without AMP, fp32 (8.0.x halves the EMA on any GPU: high there)
    walk = _walk(arch, job.imgsz, nc)
    # forward: the busiest block with the saved layer outputs, the head outputs and the fp16 image
    phases = {"forward": v * (walk.live + walk.out + 3 * job.imgsz**2) * act_b}
    if arch.task == "classify":
        return phases
    # held after the forward: the head's raw outputs and, in eval mode, their decoded copy (nn/modules/head.py
    # Detect.forward `return y if self.export else (y, x)`: boxes, class scores and the extra channels per anchor),
    # and the segmentation prototypes
    extra = _EXTRA[arch.task]
    preds = v * (walk.out + (4 + nc + extra) * anchors(job.imgsz) + (NM * hw4 if arch.seg else 0)) * act_b
    # the loss on the validation batch: single images, no mosaic, so a quarter of the training's most labels
    n_max = math.ceil(job.max_labels / 4) if job.max_labels is not None else math.ceil(job.labels_per_image)
    val_job = job.model_copy(update={"batch": v, "max_labels": n_max})
    phases["loss"] = preds + loss_bytes(arch.task, val_job, nc)[0]
    # NMS, one image at a time: every (anchor, class) pair above conf 0.001 (an early model's scores all are) as a
    # (4 + 1 + 1 + extra) row: the cat and its gathered inputs, and torch.where's two int64 indices; torchvision's
    # CUDA kernel then holds an n x n/64 int64 bitmask of the MAX_NMS boxes it takes (csrc/ops/cuda/nms_kernel.cu).
    n = anchors(job.imgsz) * (nc if nc > 1 else 1)
    nms = max(n * (2 * (6 + extra) * act_b + 16), min(n, MAX_NMS) ** 2 / 8)
    masks = 0.0
    if arch.seg:  # MAX_DET masks per image at H/4: the fp32 coefficient x prototype product, then the kept masks
        if release >= MASKS_BATCHWIDE:
            masks = v * MAX_DET * hw4 * (1 if release >= MASKS_UINT8 else 4) + MAX_DET * hw4 * 4
        else:  # one image at a time inside update_metrics: product, sigmoid, crop (8.0.x ops.process_mask)
            masks = 3 * MAX_DET * hw4 * 4
    phases["NMS and masks"] = preds + nms + masks
    return phases


def val_bytes(arch: YoloArch, job: FitJob, nc: int) -> tuple[float, str]:
    """Peak bytes of one validation batch's transient tensors (the model's weights aside), and which phase peaks."""
    phases = val_phases(arch, job, nc)
    name = max(phases, key=lambda k: phases[k])
    return phases[name], f"validation at batch {2 * job.batch}: its {name} peak"


def param_count(arch: YoloArch, nc: int | None = None) -> int:
    """Parameters of the model built from its yaml (nc classes; the published model's by default), from the walk."""
    return _walk(arch, 640, DEFAULT_NC[arch.task] if nc is None else nc).params


def estimate(arch: YoloArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Peak memory of `yolo train` (one forward + backward, AMP) or `yolo predict` for `arch`."""
    nc = DEFAULT_NC[arch.task]
    walk = _walk(arch, job.imgsz, nc)
    p = walk.params
    notes = [
        f"{arch.key}: {p / 1e6:.1f}M parameters from yolov8{_SUFFIX[arch.task]}.yaml "
        f"(published {arch.params_m}M), nc={nc}"
    ]
    val = 0.0
    if job.job == "train" and job.amp and not amp_runs(job, card):
        job = job.model_copy(update={"amp": False})
        notes.append(f"AMP off: ultralytics {'.'.join(map(str, ultralytics_release(job)))} turns it off on "
                     f"{card.name if card else 'this card'} whatever amp= asks (check_amp: fp16 gives NaN losses "
                     "there), so the step trains in fp32")
    if job.job == "train":
        act_b = 2 if job.amp else 4
        # Per image: kept tensors (fp16 under AMP), max-pool indices, the fp32 input image and its gradient.
        per_img = walk.saved * act_b + walk.saved_i64 * 8 + 3 * job.imgsz**2 * (4 + 4 + act_b)
        opt = job.optimizer if job.optimizer in ("sgd", "adamw") else "sgd"
        loss, peak_line = loss_bytes(arch.task, job, nc) if job.yolo_loss else (0, "not computed (yolo_loss off)")
        parts = {
            # fp32 weights, the fp32 EMA copy the trainer keeps (ModelEMA), autocast's cached fp16 copies
            "weights": p * 8 + (p * 2 if job.amp else 0),
            "activations": per_img * job.batch + loss,
            "gradients": p * 4,
            "optimizer": p * 4 * (1 if opt == "sgd" else 2),  # SGD momentum buffer, or AdamW exp_avg + exp_avg_sq
        }
        notes += [
            f"training at imgsz {job.imgsz}, batch {job.batch}, "
            f"{'AMP fp16' if job.amp else 'fp32'} activations, optimizer {opt}",
            f"activations: {per_img / 2**20:.0f} MiB per image, the tensors autograd keeps in one forward pass "
            "(3 per Conv-BN-SiLU block, the C2f concatenations, SPPF pool indices)",
            f"training loss: {loss / 2**20:.0f} MiB, {peak_line}; {job.labels_per_image:g} labels per "
            f"image, {job.max_labels if job.max_labels is not None else math.ceil(4 * job.labels_per_image)} at most "
            "(measured: benchmarks/fit_yolo_loss.py; AutoBatch's profile runs no loss)",
        ]
        if job.yolo_val:
            val, val_line = val_bytes(arch, job, nc)
            notes.append(
                f"validation pass: {val / 2**20:.0f} MiB, {val_line} (traced: benchmarks/fit_yolo_val.py); reserved on "
                "top of the training step on a card with room, as allocator cache: its tensors, twice the training's "
                "layer by layer, are assumed to find no freed block they fit in (segments never merge), and the cache "
                "keeps what it adds (replaying the traced allocations through the caching allocator's rules adds "
                "0-97% of it); not what has to fit: the training's freed segments are given back for it when memory "
                "runs short")
        else:
            notes.append("the validation pass is not counted (yolo_val off): the first epoch's readings before it")
    else:
        act_b = 2 if job.quant in ("auto", "fp16") else 4
        # Inference keeps nothing for backward: the busiest block's tensors, the skip outputs (P3, P4, layers 9
        # and 12, about one P3 map's worth) and the head outputs stay alive together.
        per_img = walk.live + walk.out + 3 * job.imgsz**2
        parts = {"weights": p * act_b, "activations": per_img * act_b * job.batch}
        notes.append(f"inference at imgsz {job.imgsz}, batch {job.batch}, {'fp16' if act_b == 2 else 'fp32'}")
    # The allocator's slack (the same share as the other estimators' transient tensors) is taken of every tensor
    # here: activations are most of a YOLO step, and cuDNN's convolution workspaces come and go with them. The
    # validation pass's segments stay reserved while the next epoch trains on a card with room: cache.
    allocated = sum(parts.values())
    return Estimate(
        parts={k: v / GIB for k, v in parts.items()},
        slack_gib=ALLOC_SLACK * allocated / GIB,
        context_gib=CUDA_CONTEXT_GIB,
        assumptions=notes,
        cache_gib=val / GIB,
    )
