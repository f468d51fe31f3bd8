"""Training components: learning-rate schedule, optimizer, one step, evaluation, checkpoints, FLOPs and MFU, plots.

Each is a small function of flat arguments; `run.py` puts them together.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onecard.core.plots import plot_losses
from onecard.tinylm.model import GPT, ModelConfig

__all__ = [
    "lr_at", "configure_optimizer", "autocast", "train_step", "eval_loss", "save_checkpoint", "load_checkpoint",
    "flops_per_token", "peak_tflops", "generation_speed", "plot_losses",
]


def lr_at(step: int, learning_rate: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    """Linear warm-up to `learning_rate` over `warmup_iters` steps, then cosine decay to `min_lr` at `max_iters`."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    progress = min(1.0, (step - warmup_iters) / max(1, max_iters - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def configure_optimizer(model: GPT, learning_rate: float, weight_decay: float, betas: tuple[float, float],
                        device: str) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (linear layers, embeddings) and none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused CUDA kernel updates every parameter in one launch.
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device.startswith("cuda"))


def autocast(device: str, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast (matmuls in bf16, reductions in fp32), or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], grad_accum: int, grad_clip: float,
               amp: Callable[[], contextlib.AbstractContextManager[Any]]) -> torch.Tensor:
    """One optimizer step over `grad_accum` micro-batches; returns the mean loss (a tensor: reading it syncs)."""
    losses = []
    for _ in range(grad_accum):
        x, y = next_batch()
        with amp():
            _, loss = model(x, y)
        loss = loss / grad_accum  # the gradients add up over micro-batches: scale each to get their mean
        loss.backward()
        losses.append(loss.detach())
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return torch.stack(losses).sum()


@torch.no_grad()
def eval_loss(model: torch.nn.Module, data: np.ndarray, starts: np.ndarray, block_size: int, batch_size: int,
             device: str, amp: Callable[[], contextlib.AbstractContextManager[Any]]) -> float:
    """Mean cross-entropy (nats per token) of predicting each next token of the windows starting at `starts`."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        rows = starts[i: i + batch_size]
        x = torch.from_numpy(np.stack([data[s: s + block_size] for s in rows]).astype(np.int64)).to(device)
        y = torch.from_numpy(np.stack([data[s + 1: s + 1 + block_size] for s in rows]).astype(np.int64)).to(device)
        with amp():
            _, loss = model(x, y)
        total += float(loss) * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


def save_checkpoint(path: Path, model: GPT, optimizer: torch.optim.Optimizer | None, step: int,
                    **extra: Any) -> None:
    """Write the model, optimizer and training state as one safetensors file, atomically: a crash or Ctrl-C mid-write
    leaves the old file. Tensors go in the file's tensors (`model.*`, `optim.<param>.<name>`, `extra.*`), everything
    else (config, step, history, optimizer hyper-parameters) in its JSON metadata: loading runs no pickle."""
    from safetensors.torch import save_file

    # clone: the tied embedding and head share storage, which safetensors refuses to write twice
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"model_config": vars(model.config), "step": step, "extra_tensors": []}
    for key, value in extra.items():
        if isinstance(value, torch.Tensor):
            tensors[f"extra.{key}"] = value.detach().cpu().contiguous()
            meta["extra_tensors"].append(key)
        else:
            meta[key] = value
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, param_state in sd["state"].items():
            for name, value in param_state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(index), {})[name] = value
        meta["optimizer"] = {"param_groups": sd["param_groups"], "scalars": scalars,
                             "params": [str(i) for i in sd["state"]]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"onecard": json.dumps(meta)})
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old checkpoint or the new one
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The model saved at `path` (on `device`) and the whole checkpoint as a dict (model and optimizer state dicts,
    step, history...), in the shapes `save_checkpoint` was given."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = json.loads((f.metadata() or {}).get("onecard", "{}"))
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    if "model_config" not in meta:
        raise ValueError(f"{path} is not a tinylm checkpoint (no onecard metadata)")
    state: dict[str, Any] = {k: v for k, v in meta.items() if k not in ("extra_tensors", "optimizer")}
    state["model"] = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    for key in meta["extra_tensors"]:
        state[key] = tensors[f"extra.{key}"]
    if "optimizer" in meta:
        opt = meta["optimizer"]
        per_param: dict[int, dict[str, Any]] = {int(i): dict(opt["scalars"].get(i, {})) for i in opt["params"]}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                per_param[int(index)][name] = value
        state["optimizer"] = {"state": per_param, "param_groups": opt["param_groups"]}
    model = GPT(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device), state


def flops_per_token(model: GPT) -> float:
    """Training FLOPs per token: 6 per parameter that multiplies (forward 2, backward 4; the learned position table
    is only looked up) plus attention's scores and weighted sum over the context (PaLM, appendix B; nanoGPT's
    estimate_mfu)."""
    c = model.config
    n_params = model.num_params() - (c.block_size * c.n_embd if c.pos == "learned" else 0)
    return 6 * n_params + 12 * c.n_layer * c.n_embd * c.block_size


def peak_tflops(device: str, dtype: torch.dtype) -> tuple[float, str]:
    """The device's peak matmul TFLOPS in `dtype`, and where the figure comes from.

    GPU: the catalog's tensor-core figure for bf16 (onecard.core.gpus). CPU, MPS and fp32 on a GPU: measured
    (onecard.core.doctor.bench), since there is no catalog figure for those.
    """
    from onecard.core.doctor import bench
    from onecard.core.gpus import match_detected

    label = "bf16" if dtype == torch.bfloat16 else "fp32"
    if device.startswith("cuda") and label == "bf16":
        props = torch.cuda.get_device_properties(torch.device(device))
        spec = match_detected(props.name, props.total_memory)
        if spec is not None:
            return spec.bf16_tflops, f"catalog: {spec.name} bf16"
    measured = bench(device, seconds=1.0)
    return float(measured["matmul_tflops"][label]), f"measured: {label} matmul {measured['matmul_n']}^3"


@torch.no_grad()
def generation_speed(model: GPT, new_tokens: int, use_cache: bool, device: str, repeats: int = 1) -> float:
    """Tokens per second generating `new_tokens` after a one-token prompt (best of `repeats`)."""
    best = float("inf")
    for _ in range(repeats):
        prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
        generator = torch.Generator(device=device).manual_seed(0)
        start = time.perf_counter()
        for _ in model.generate(prompt, new_tokens, use_cache=use_cache, generator=generator):
            pass
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return new_tokens / best
