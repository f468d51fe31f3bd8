"""`onecard doctor`: what this machine can do, what is missing and how to install it, and `--bench` measurements."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table
from rich.text import Text

from onecard.core.device import probe, select_device, supports_bf16
from onecard.core.extras import require
from onecard.core.gpus import match_detected
from onecard.core.records import Run, start_run

__all__ = ["report", "missing", "render", "render_lines", "bench", "render_bench"]

# import name -> (how to install it, what onecard uses it for)
_INSTALL = {
    "bitsandbytes": ("pip install 'onecard[tune]'", "4-bit QLoRA in tune and vlm (NVIDIA GPU only)"),
    "flash_attn": ("pip install flash-attn --no-build-isolation",
                   "faster attention on Ampere+ GPUs (optional: torch SDPA is used otherwise)"),
    "xformers": ("pip install xformers", "memory-efficient attention in diffuse (optional)"),
    "triton": ("comes with the CUDA build of torch on Linux", "torch.compile GPU kernels"),
    "onnxruntime": ("pip install 'onecard[detect]'", "ONNX export check and CPU latency in detect"),
    "tensorrt": ("pip install tensorrt", "TensorRT export and latency in detect (NVIDIA GPU only)"),
}


def report() -> dict[str, Any]:
    """The machine probe (`onecard.core.device.probe`) with the list of what is missing added under "missing"."""
    data = probe()
    data["missing"] = missing(data)
    return data


def missing(data: dict[str, Any]) -> list[dict[str, str]]:
    """What to install, and what for, as dicts with keys "what", "install" and "for"."""
    items = []
    torch = data["torch"]
    if not data["gpus"] and not torch["mps_available"]:
        items.append({"what": "NVIDIA GPU", "install": "an NVIDIA card with its driver (nvidia-smi must work)",
                      "for": "anything beyond the tiny CPU configs; 4-bit, flash-attn and TensorRT need one"})
    if not torch["installed"]:
        items.append({"what": "torch", "install": "pip install 'onecard[tinylm]'",
                      "for": "every project but rag (and the --bench measurement)"})
    elif torch["build"] == "cpu" and data["gpus"]:
        items.append({"what": "CUDA build of torch", "install": "the CUDA wheel from https://pytorch.org/get-started/locally/",
                      "for": "running on your GPU (this torch is CPU-only)"})
    for module, state in data["accelerators"].items():
        install, use = _INSTALL[module]
        if not state["installed"]:
            items.append({"what": module, "install": install, "for": use})
        elif state["note"].startswith("import failed"):
            items.append({"what": module, "install": f"reinstall it ({state['note']})", "for": use})
    return items


def render(data: dict[str, Any], console: Console) -> None:
    """Print the report in four short sections (System, GPU, PyTorch, Accelerators) and the Missing list."""
    os_, cpu, ram, disk = data["os"], data["cpu"], data["ram"], data["disk"]
    _section(console, "System", [
        ("OS", f"{os_['system']} {os_['release']}"),
        ("Python", f"{data['python']['version']} ({data['python']['executable']})"),
        ("CPU", f"{cpu['model']}, {cpu['physical_cores']} cores / {cpu['logical_cores']} threads"),
        ("RAM", f"{ram['total_gib']} GiB total, {ram['available_gib']} GiB available"),
        ("Disk", f"{disk['free_gib']} GiB free at {disk['path']}"),
    ])
    gpu_rows = [
        (f"GPU {g['index']}", f"{g['name']}: {g['vram_total_gib']:.1f} GiB ({g['vram_free_gib']:.1f} free), "
                              f"compute {g['compute_capability']}, bf16 {_yes(g['bf16'])}, "
                              f"driver {g['driver'] or '?'} (CUDA {g['cuda_driver'] or '?'}), "
                              f"catalog {g['catalog_key'] or 'not listed'}")
        for g in data["gpus"]
    ]
    _section(console, "GPU", gpu_rows or [("none", data["gpu_note"])])
    torch = data["torch"]
    torch_rows = [("installed", _yes(torch["installed"]))]
    if torch["installed"]:
        torch_rows += [("version", f"{torch['version']} ({torch['build']} build)"),
                       ("CUDA", _yes(torch["cuda_available"])), ("MPS", _yes(torch["mps_available"]))]
    if torch["note"]:
        torch_rows.append(("note", torch["note"]))
    _section(console, "PyTorch", torch_rows)
    _section(console, "Accelerators", [
        (name, "not installed" if not s["installed"] else
         f"{'usable' if s['usable'] else 'not usable'}, {s['version'] or '?'}{': ' + s['note'] if s['note'] else ''}")
        for name, s in data["accelerators"].items()
    ])
    items = missing(data)
    _section(console, "Missing", [(i["what"], f"{i['install']}  ->  {i['for']}") for i in items]
             or [("nothing", "every optional piece is installed")])


def render_lines(title: str, lines: list[str], console: Console) -> None:
    """Print a titled section of plain lines (the CLI adds the planner's summary of the card this way)."""
    console.print(Text(title, style="bold"))
    for line in lines:
        console.print(Text("  " + line))


def bench(device: str, seconds: float = 2.0) -> dict[str, Any]:
    """Measure matmul throughput (TFLOPS) per dtype and memory bandwidth (GB/s, copy: read + write) on `device`.

    Each figure is the median over repeated timed blocks after a warm-up, with the device synchronized before the
    clock is read. On a GPU listed in the catalog the result also holds the catalog's peak figures and the
    fraction achieved. The whole run takes about `seconds`.
    """
    torch = require("torch", "tinylm")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    on_cpu = dev.type == "cpu"
    # CPU: 2.1 GFLOP per 1024^3 matmul, tens of ms on 2 cores. GPU: 8192^3 is large enough to fill every SM.
    n = 1024 if on_cpu else 8192
    # Far past the last-level cache (96 MB L2 on an RTX 5090, tens of MB of L3 on a desktop CPU).
    nbytes = (64 if on_cpu else 512) * 2**20
    dtypes = {"fp32": torch.float32}
    if not on_cpu:
        dtypes["fp16"] = torch.float16
    if on_cpu or supports_bf16(str(dev)):
        dtypes["bf16"] = torch.bfloat16
    budget = seconds / (len(dtypes) + 1)
    sync = _synchronizer(torch, dev)

    tflops = {}
    for label, dtype in dtypes.items():
        t = _time_matmul(torch, dev, n, dtype, sync, budget)
        tflops[label] = round(2 * n**3 / t / 1e12, 3)
    t = _time_copy(torch, dev, nbytes, sync, budget)

    result: dict[str, Any] = {
        "device": str(dev),
        "torch": torch.__version__,
        "matmul_n": n,
        "matmul_tflops": tflops,
        "bandwidth_gbs": round(2 * nbytes / t / 1e9, 1),  # a copy reads and writes every byte
        "bandwidth_bytes": nbytes,
    }
    if on_cpu:
        result["threads"] = torch.get_num_threads()
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        result["device_name"] = props.name
        spec = match_detected(props.name, props.total_memory)
        if spec is not None:
            result["catalog_key"] = spec.key
            result["peak"] = {"fp16_tflops": spec.fp16_tflops, "bf16_tflops": spec.bf16_tflops,
                              "bandwidth_gbs": spec.bandwidth_gbs}
            fraction = {k: round(tflops[k] / spec.fp16_tflops, 3) for k in ("fp16",) if k in tflops}
            if "bf16" in tflops and spec.bf16_tflops:
                fraction["bf16"] = round(tflops["bf16"] / spec.bf16_tflops, 3)
            fraction["bandwidth"] = round(result["bandwidth_gbs"] / spec.bandwidth_gbs, 3)
            result["fraction_of_peak"] = fraction
    return result


class BenchConfig(BaseModel):
    """`onecard doctor --bench`: a short measured job, recorded as a run."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field("auto", description="device to measure: auto (the GPU if there is one), cuda, cuda:1, mps, cpu")
    seconds: float = Field(2.0, gt=0, le=600, description="time budget for the whole measurement, in seconds")


def run_bench(config: BenchConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",)) -> Run:
    """Measure this machine's device as a recorded run; the figures are its metrics."""
    device = select_device(config.device)
    with start_run("doctor", config, runs_root=runs_root, report_to=report_to) as run:
        result = bench(device, config.seconds)
        run.set("bench", result)
        metrics: dict[str, Any] = {f"matmul_{k}_tflops": v for k, v in result["matmul_tflops"].items()}
        metrics["bandwidth_gbs"] = result["bandwidth_gbs"]
        run.log(metrics)
        run.set_metrics(metrics)
    return run


def render_bench(result: dict[str, Any], console: Console) -> None:
    """Print a `bench` result as a table: measured, catalog peak and fraction achieved per row."""
    peak, fraction = result.get("peak", {}), result.get("fraction_of_peak", {})
    name = result.get("device_name") or result["device"]
    table = Table(title=f"Measured on {name} (torch {result['torch']})", title_justify="left")
    for column in ("", "measured", "peak (catalog)", "achieved"):
        table.add_column(column, justify="left" if not column else "right")
    n = result["matmul_n"]
    for dtype, value in result["matmul_tflops"].items():
        # fp32 runs on the SIMT cores (TF32 off); the catalog lists tensor-core peaks only.
        peak_value = peak.get(f"{dtype}_tflops")
        table.add_row(f"matmul {dtype} {n}x{n}", f"{value:.2f} TFLOPS",
                      f"{peak_value:g} TFLOPS" if peak_value else "-", _pct(fraction.get(dtype)))
    table.add_row(f"copy {result['bandwidth_bytes'] // 2**20} MiB", f"{result['bandwidth_gbs']:.0f} GB/s",
                  f"{peak['bandwidth_gbs']:g} GB/s" if peak else "-", _pct(fraction.get("bandwidth")))
    console.print(table)


# --- helpers -----------------------------------------------------------------------------------------------------


def _section(console: Console, title: str, rows: list[tuple[str, str]]) -> None:
    console.print(Text(title, style="bold"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for key, value in rows:
        grid.add_row(Text("  " + key), Text(value))  # Text: values such as 'onecard[tune]' are not markup
    console.print(grid)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def _time_matmul(torch: Any, dev: Any, n: int, dtype: Any, sync: Callable[[], None], budget: float) -> float:
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    return _median_seconds(lambda: torch.mm(a, b), sync, budget)


def _time_copy(torch: Any, dev: Any, nbytes: int, sync: Callable[[], None], budget: float) -> float:
    src = torch.ones(nbytes // 4, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    return _median_seconds(lambda: dst.copy_(src), sync, budget)


def _synchronizer(torch: Any, dev: Any) -> Callable[[], None]:
    # GPU work is queued asynchronously: without a synchronize the clock would time the launch, not the kernel.
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    if dev.type == "mps":
        return lambda: torch.mps.synchronize()
    return lambda: None


def _median_seconds(fn: Callable[[], Any], sync: Callable[[], None], budget: float) -> float:
    """Median seconds per call of `fn` over timed blocks filling about `budget` seconds."""
    fn()  # warm-up: the first call pays for allocation, kernel selection and thread-pool start
    sync()
    start = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - start
    # Blocks of ~1/10 of the budget keep per-block launch and sync overhead small against the work.
    reps = max(1, int(budget / 10 / max(once, 1e-6)))
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        samples.append((time.perf_counter() - start) / reps)
    return statistics.median(samples)
