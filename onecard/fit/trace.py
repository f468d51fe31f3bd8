"""`--trace`: count the peak memory of a real transformers model without a GPU, on fake tensors.

The model is built from its config on the meta device (no weights, no time), its parameters are turned into
`FakeTensor`s, and one training step (two, so the optimizer states exist during the second forward) or one prefill
forward runs under a `TorchDispatchMode` that counts the bytes of every live tensor storage. The result is an
`Estimate` (tensor parts only: no allocator slack, no CUDA context) to set beside the analytic one.

PyTorch's own `torch.distributed._tools.mem_tracker.MemTracker` does the same, but (torch 2.13) it registers a grad
hook on every parameter and fails on frozen ones, i.e. on any LoRA model; hence this small counter.
"""

from __future__ import annotations

import bisect
import json
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onecard.core.errors import ConfigError
from onecard.core.extras import require
from onecard.fit import catalog, stacks
from onecard.fit.estimate import GIB, Estimate
from onecard.fit.job import FitJob
from onecard.fit.knobs import effective_quant, is_gguf
from onecard.fit.overheads import SMALL_SIZE, segment_bytes
from onecard.fit.plan import resolve_arch

__all__ = ["trace", "training_log", "hf_config", "torch_dtype", "prepare_training", "replay_caching_allocator",
           "ReplayOutOfMemory"]

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(job: FitJob) -> Any:
    """The torch dtype the 16/32-bit parts of the job run in; 4/8-bit formats trace as bf16 (see assumptions)."""
    torch = require("torch", "fit")
    return getattr(torch, _DTYPES.get(effective_quant(job), "bfloat16"))


def hf_config(job: FitJob) -> Any:
    """A transformers config for the job's model: a local config.json (or a folder holding one) as written, else
    the planner's architecture for it (catalog name, hub id in the local cache) through `catalog.hf_config`.

    Raises:
        ConfigError: the model is a GGUF file, or not a causal LM (diffusion, YOLO, Whisper).
        ModelNotFoundError: the planner does not know the model.
    """
    transformers = require("transformers", "fit")
    if job.job == "infer" and job.runtime in ("vllm", "ollama", "llama.cpp"):
        raise ConfigError(f"--trace runs a transformers prefill; {job.runtime} plans its own memory (vLLM's KV pool, "
                          "llama.cpp's buffers), which a trace would not show", "drop --trace, or trace the job with "
                          "--runtime transformers")
    if is_gguf(job):
        raise ConfigError(f"--trace builds transformers models; {job.model} is a GGUF model (llama.cpp)",
                          "trace the same model's config.json, or drop --trace")
    path = Path(job.model).expanduser()
    config_file = path / "config.json" if path.is_dir() else path
    if config_file.suffix == ".json" and config_file.is_file():
        resolve_arch(job.model)  # the planner's own checks first: a config it cannot read is named the same way
        data = json.loads(config_file.read_text(encoding="utf-8"))
        model_type = data.pop("model_type")
        try:
            return transformers.AutoConfig.for_model(model_type, **data)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{config_file}: the installed transformers cannot build model_type {model_type!r} "
                              f"({str(e).splitlines()[0][:80]})",
                              "drop --trace (the analytic estimate reads the config's sizes), or upgrade "
                              "transformers to a release that has the model") from e
    resolved = resolve_arch(job.model)
    if resolved.family != "llm" or resolved.arch.family == "tinylm":
        what = "onecard's own tinylm" if resolved.family == "llm" else f"a {resolved.family} model"
        raise ConfigError(f"--trace builds transformers causal LMs; {job.model} is {what}",
                          "drop --trace: the analytic estimate is what the planner has for it")
    return catalog.hf_config(resolved.arch)


class _LiveBytes:
    """Counts the bytes of live tensor storages per part, and the parts at the moment their total peaked.

    A storage is counted once (views share it), under the part that is current when an op first returns it
    (`part`), and uncounted when it is freed. Parameters are registered up front; gradients move to "gradients"
    when autograd accumulates them.
    """

    def __init__(self) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        self.part = "activations"
        self.live: dict[str, int] = {}
        self.peak = 0
        self.at_peak: dict[str, int] = {}
        self._seen: Any = WeakIdKeyDictionary()  # storage -> [part, bytes]

    def add(self, t: Any, part: str | None = None) -> None:
        st = t.untyped_storage()
        entry = self._seen.get(st)
        if entry is not None:
            if part is not None and entry[0] != part:  # reclassify (a gradient produced by backward)
                self.live[entry[0]] -= entry[1]
                entry[0] = part
                self.live[part] = self.live.get(part, 0) + entry[1]
            return
        entry = [part or self.part, st.nbytes()]
        self._seen[st] = entry
        self.live[entry[0]] = self.live.get(entry[0], 0) + entry[1]
        weakref.finalize(st, self._free, entry)

    def _free(self, entry: list[Any]) -> None:
        self.live[entry[0]] -= entry[1]

    def update_peak(self) -> None:
        total = sum(self.live.values())
        if total > self.peak:
            self.peak, self.at_peak = total, dict(self.live)


class _Events(_LiveBytes):
    """A `_LiveBytes` that also logs every storage's allocation and free, in order: (allocated?, key, bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[bool, int, int]] = []

    def add(self, t: Any, part: str | None = None) -> None:
        st = t.untyped_storage()
        new = st not in self._seen
        super().add(t, part)
        if new:
            key = len(self.events)
            self.events.append((True, key, st.nbytes()))
            weakref.finalize(st, self.events.append, (False, key, st.nbytes()))


class _Block:
    __slots__ = ("addr", "size", "small", "free", "prev", "next")

    def __init__(self, addr: int, size: int, small: bool) -> None:
        self.addr, self.size, self.small, self.free = addr, size, small, False
        self.prev: _Block | None = None
        self.next: _Block | None = None


class ReplayOutOfMemory(Exception):
    """A replayed request that no cached block holds and no segment fits under the capacity, after the allocator
    gave back every wholly free segment."""


def replay_caching_allocator(events: list[tuple[bool, int, int]], capacity: int | None = None) -> tuple[int, int]:
    """Peak allocated and peak reserved bytes of an allocation log replayed through the CUDA caching allocator's
    rules (default settings: no expandable segments, no max_split_size).

    A request takes the smallest cached free block of its pool that holds it (BlockComparator: size, then address),
    split when more than 1 MiB (large pool) or 512 B (small pool) is left; else a new segment is reserved. A freed
    block merges with its free neighbours of the same segment only: segments never merge, so a request larger than
    every cached block reserves new memory however much is cached. With a `capacity` (bytes the card lets the process
    reserve) a segment that would pass it first makes the allocator give back every wholly free cached segment and try
    again (CUDACachingAllocator.cpp malloc: release_cached_blocks, then alloc_block); nothing is given back without
    one, as on a card with room to spare.

    Raises:
        ReplayOutOfMemory: with a capacity, a request that does not fit even then.
    """
    pools: dict[bool, list[tuple[int, int, _Block]]] = {True: [], False: []}
    live: dict[int, tuple[_Block, int]] = {}
    allocated = reserved = peak_allocated = peak_reserved = next_addr = 0

    def cache(b: _Block) -> None:
        b.free = True
        bisect.insort(pools[b.small], (b.size, b.addr, b))

    def uncache(b: _Block) -> None:
        pools[b.small].remove((b.size, b.addr, b))

    for is_alloc, key, nbytes in events:
        if not is_alloc:
            if key not in live:
                continue
            b, n = live.pop(key)
            allocated -= n
            for side in (b.prev, b.next):
                if side is not None and side.free:
                    uncache(side)
                    first, second = (side, b) if side is b.prev else (b, side)
                    first.size += second.size
                    first.next = second.next
                    if second.next is not None:
                        second.next.prev = first
                    b = first
            cache(b)
            continue
        size = max(512, -(-nbytes // 512) * 512)
        small = size <= SMALL_SIZE
        pool = pools[small]
        i = bisect.bisect_left(pool, (size, -1))
        if i < len(pool):
            b = pool.pop(i)[2]
        else:
            segment = segment_bytes(size)
            if capacity is not None and reserved + segment > capacity:
                for pool_ in pools.values():  # give back the wholly free segments, then try again
                    whole = [entry for entry in pool_ if entry[2].prev is None and entry[2].next is None]
                    for entry in whole:
                        pool_.remove(entry)
                        reserved -= entry[2].size
                if reserved + segment > capacity:
                    raise ReplayOutOfMemory(f"{size} B requested with {allocated} B allocated and {reserved} B "
                                            f"reserved under a capacity of {capacity} B")
            b = _Block(next_addr, segment, small)
            next_addr += segment
            reserved += b.size
        b.free = False
        rest = b.size - size
        if rest >= 512 if small else rest > SMALL_SIZE:
            r = _Block(b.addr + size, rest, small)
            r.prev, r.next = b, b.next
            if b.next is not None:
                b.next.prev = r
            b.next, b.size = r, size
            cache(r)
        live[key] = (b, nbytes)
        allocated += nbytes
        peak_allocated, peak_reserved = max(peak_allocated, allocated), max(peak_reserved, reserved)
    return peak_allocated, peak_reserved


def _dispatch_mode(counter: _LiveBytes) -> Any:
    torch = require("torch", "fit")
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Counting(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    counter.add(t)
            counter.update_peak()
            return out

    return Counting()  # type: ignore[no-untyped-call]


def _fake_params(model: Any, fake_mode: Any) -> None:
    """Turn a meta-device model's parameters and buffers into fake CPU tensors in place (tied weights stay tied)."""
    torch = require("torch", "fit")
    memo: dict[int, Any] = {}

    def fake(t: Any) -> Any:
        if id(t) not in memo:
            f = fake_mode.fake_tensor_converter.from_meta_and_device(fake_mode, t, torch.device("cpu"))
            is_param = isinstance(t, torch.nn.Parameter)
            memo[id(t)] = torch.nn.Parameter(f, requires_grad=t.requires_grad) if is_param else f
        return memo[id(t)]

    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, t in store.items():
                if t is not None:
                    store[name] = fake(t)


def _build(job: FitJob, config: Any) -> tuple[Any, list[str]]:
    """The job's model on the meta device (LoRA adapters added with peft for lora/qlora), with assumptions."""
    torch = require("torch", "fit")
    transformers = require("transformers", "fit")
    notes = []
    attn = "eager" if job.attention == "eager" else "sdpa"
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch_dtype(job), attn_implementation=attn)
    if effective_quant(job) not in _DTYPES:
        notes.append(f"weights traced in bf16: {effective_quant(job)} kernels need CUDA, so the traced weights are "
                     "16-bit; compare activations, gradients and optimizer states")
    if job.job == "train" and job.method == "full" and torch_dtype(job) != torch.float32:
        notes.append(f"full fine-tune traced with {torch_dtype(job)} weights and optimizer states; the plan counts "
                     "fp32 master weights and states under mixed precision, so compare activations")
    if job.job == "train":
        model = prepare_training(model, job)
    return model, notes


def prepare_training(model: Any, job: FitJob) -> Any:
    """Gradient checkpointing (non-reentrant) and, for lora/qlora, peft LoRA adapters, as the job asks."""
    if job.grad_ckpt:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 renamed it
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if job.method == "full":
        return model
    peft = require("peft", "tune")
    targets = {"all-linear": "all-linear", "attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
               "qv": ["q_proj", "v_proj"]}.get(job.lora_targets, job.lora_targets.split(","))
    return peft.get_peft_model(model, peft.LoraConfig(r=job.lora_rank, lora_alpha=2 * job.lora_rank,
                                                      target_modules=targets))


def _train_steps(model: Any, job: FitJob, vocab: int, counter: _LiveBytes, lengths: list[int]) -> None:
    """Training steps of `job.batch` rows, one per length, each counted: forward with labels, backward, AdamW. Run
    inside the model's fake mode."""
    model.train()
    step = _train_step(model, job, vocab, counter)
    with _dispatch_mode(counter):
        for seq in lengths:
            step(seq)


def _train_step(model: Any, job: FitJob, vocab: int, counter: _LiveBytes) -> Callable[[int], None]:
    """One training step of `job.batch` rows of the given length: forward with labels, backward, AdamW."""
    torch = require("torch", "fit")
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.register_post_accumulate_grad_hook(lambda p: counter.add(p.grad, "gradients"))
    optimizer = torch.optim.AdamW(params, foreach=False)

    def step(seq: int) -> None:
        ids = torch.randint(0, vocab, (job.batch, seq))
        out = model(input_ids=ids, labels=ids, use_cache=False)
        loss = out.loss
        if not job.holds_output:  # the Trainer drops the output (its logits) before backward
            del out
        loss.backward()
        counter.part = "optimizer"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        counter.part = "activations"

    return step


def _traced_model(job: FitJob, config: Any) -> tuple[Any, Any, _Events, int, list[str]]:
    """The job's model built from `config` on fake tensors, its parameters and buffers counted: (model, fake mode,
    counter, vocabulary, notes)."""
    require("torch", "fit")
    from torch._subclasses.fake_tensor import FakeTensorMode

    model, notes = _build(job, config)
    fake_mode = FakeTensorMode()
    _fake_params(model, fake_mode)
    counter = _Events()
    for p in model.parameters():
        counter.add(p, "adapters" if p.requires_grad and job.method != "full" and job.job == "train" else "weights")
    for b in model.buffers():
        counter.add(b, "weights")
    return model, fake_mode, counter, config.get_text_config().vocab_size, notes


def _config(job: FitJob, config: Any) -> Any:
    if config is None:
        return hf_config(job)
    if isinstance(config, dict):
        return require("transformers", "fit").AutoConfig.for_model(**config)
    return config


def training_log(job: FitJob, lengths: list[int], config: Any = None) -> list[tuple[bool, int, int]]:
    """Every allocation and free, in order, of training steps on fake tensors, one step of `job.batch` rows per
    length in `lengths` (a run whose rows differ in length: `replay_caching_allocator` reads the log), the model's
    weights and adapters first. `config`: as `trace`'s."""
    model, fake_mode, counter, vocab, _ = _traced_model(job, _config(job, config))
    with fake_mode:
        _train_steps(model, job, vocab, counter, lengths)
    return counter.events


def _cache_tensors(cache: Any) -> list[Any]:
    """The key and value tensors of a transformers KV cache (`layers` since 4.56, `key_cache` lists before)."""
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [*cache.key_cache, *cache.value_cache]


def trace(job: FitJob, config: Any = None) -> Estimate:
    """Trace the peak of one training step (forward, backward, AdamW step) or one prefill forward on fake tensors.

    Args:
        job: the job (LLM training or transformers inference): batch, seq or ctx, dtype, method, rank, checkpointing.
        config: a transformers config (or a dict with "model_type") instead of the job's model.

    Returns:
        An Estimate whose parts are the traced bytes at the peak (weights, adapters, gradients, optimizer states,
        activations, and KV cache for inference); its slack is what replaying every traced allocation and free
        through the CUDA caching allocator's rules (`replay_caching_allocator`) reserves above the allocated peak
        (cuDNN's and cuBLAS's workspaces are not in the trace), its CUDA context 0.
    """
    torch = require("torch", "fit")
    named = config is None
    config = _config(job, config)
    vision = named and getattr(resolve_arch(job.model).arch, "vision", None) is not None
    model, fake_mode, counter, vocab, notes = _traced_model(job, config)
    if vision or getattr(config, "vision_config", None) is not None:
        notes.append("traced the language model alone: the vision tower and the image tokens are not in the trace")
    kv_bytes = 0
    with fake_mode:
        if job.job == "train":
            # the second step runs with the optimizer states the first one created
            _train_steps(model, job, vocab, counter, [job.seq, job.seq])
            optim = "" if job.optimizer in ("auto", "adamw") else f" ({job.optimizer} would hold less)"
            notes.append(f"traced two training steps of batch {job.batch} x {job.seq} tokens with torch AdamW, "
                         f"states in each trainable parameter's dtype{optim}")
            if (untraced := stacks.untraced_note(job)) is not None:
                notes.append(untraced)
        else:
            model.eval()
            with _dispatch_mode(counter), torch.inference_mode():
                ids = torch.randint(0, vocab, (job.batch, job.ctx))
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                cache = out.cache if "cache" in out else out.past_key_values  # renamed in transformers 5
                kv_bytes = sum(t.untyped_storage().nbytes() for t in _cache_tensors(cache))
                del out, cache
            notes.append(f"traced one prefill forward of {job.batch} x {job.ctx} tokens with the KV cache, "
                         "logits for the last token only (as generate() does)")
    parts = dict(counter.at_peak)
    if kv_bytes:  # the cache is built during the forward: at the peak it holds at most all of it
        parts["kv_cache"] = min(kv_bytes, parts.get("activations", 0))
        parts["activations"] = parts.get("activations", 0) - parts["kv_cache"]
    allocated, reserved = replay_caching_allocator(counter.events)
    notes.append("traced on fake tensors: exact tensor bytes; reserved: every traced allocation and free replayed "
                 "through the CUDA caching allocator's rules (no cuDNN/cuBLAS workspaces); no CUDA context")
    return Estimate(parts={k: v / GIB for k, v in parts.items() if v}, slack_gib=(reserved - allocated) / GIB,
                    context_gib=0.0, assumptions=notes)
