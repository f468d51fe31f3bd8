"""`onecard tinylm`: train, sample, evaluate and benchmark a small Transformer language model.

Each entry point reads top to bottom: set up -> plan -> work -> evaluate -> save. A training run's directory holds
everything the other commands need: `ckpt.safetensors` (weights, optimizer, step), `tokenizer.json`, the token
arrays, and `loss.png`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onecard.core.config import load_config
from onecard.core.device import select_device, select_dtype
from onecard.core.errors import ConfigError, DataError, OnecardError
from onecard.core.progress import stderr_console, track
from onecard.core.records import Run, start_run, uninterrupted
from onecard.core.runs import find_run
from onecard.tinylm.config import MODEL_KEYS, BenchConfig, EvalConfig, SampleConfig, TinyLMConfig
from onecard.tinylm.data import encode_texts, eval_windows, get_batch, load_split, read_texts, write_splits
from onecard.tinylm.model import GPT, ModelConfig
from onecard.tinylm.tokenizer import Tokenizer, UnknownCharacter, load_tokenizer, train_tokenizer
from onecard.tinylm.train import (
    autocast,
    configure_optimizer,
    eval_loss,
    flops_per_token,
    generation_speed,
    load_checkpoint,
    lr_at,
    peak_tflops,
    plot_losses,
    save_checkpoint,
    train_step,
)

__all__ = ["train", "resume_config", "sample", "evaluate", "bench"]

CHECKPOINT, TOKENIZER, LOSS_PLOT = "ckpt.safetensors", "tokenizer.json", "loss.png"


def train(config: TinyLMConfig, runs_root: str | None = None, report_to: tuple[str, ...] = ("trackio",),
          resume: str | None = None) -> Run:
    """Train a model as a recorded run; with `resume`, continue run `resume` from its checkpoint's step."""
    device = select_device(config.device)
    dtype = _dtype(config.dtype, device)
    previous = _find_run(resume, runs_root) if resume else None
    console = stderr_console()
    with start_run("tinylm", config, inputs={"data": config.data}, seed=config.seed, runs_root=runs_root,
                   report_to=report_to) as run:
        # -- set up: the tokenizer and the token arrays, the model, the optimizer, the batch order
        torch.manual_seed(config.seed)
        texts = read_texts(config.data, config.glob)
        if previous:
            tokenizer = load_tokenizer(Path(previous["dir"]) / TOKENIZER)  # the model's vocabulary must not change
        else:
            tokenizer = train_tokenizer(config.tokenizer, [text for _, text in texts], config.vocab_size)
        tokenizer.save(run.dir / TOKENIZER)
        sizes = write_splits(encode_texts(texts, tokenizer), run.dir, config.val_fraction, config.block_size)
        train_data, val_data = load_split(run.dir / "train.bin"), load_split(run.dir / "val.bin")
        model = GPT(ModelConfig(
            vocab_size=tokenizer.vocab_size, block_size=config.block_size, n_layer=config.n_layer,
            n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout, bias=config.bias, pos=config.pos,
        )).to(device)
        optimizer = configure_optimizer(model, config.learning_rate, config.weight_decay,
                                        (config.beta1, config.beta2), device)
        batch_order = torch.Generator().manual_seed(config.seed)
        step = 0
        history: dict[str, list[list[float]]] = {"train": [], "val": []}  # [step, loss] points, for the plot
        if previous:
            _, state = load_checkpoint(Path(previous["dir"]) / CHECKPOINT, device)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            batch_order.set_state(state["batch_order"])
            step, history = state["step"], state["history"]
            run.set("resumed_from", {"run": previous["id"], "step": step})

        # -- plan: precision, throughput accounting
        net: Any = torch.compile(model) if config.compile else model  # `model` keeps the weights' names for saving

        def amp() -> Any:
            return autocast(device, dtype)

        tokens_per_step = config.batch_size * config.block_size * config.grad_accum
        flops = flops_per_token(model)
        peak, peak_source = peak_tflops(device, dtype)
        plan: dict[str, Any] = {
            "params": model.num_params(), "device": device, "dtype": str(dtype).removeprefix("torch."),
            "vocab_size": tokenizer.vocab_size, **sizes, "tokens_per_step": tokens_per_step,
            "flops_per_token": flops, "peak_tflops": peak, "peak_source": peak_source, "start_step": step,
        }
        run.set("plan", plan)
        console.print(f"tinylm: {plan['params'] / 1e6:.2f} M parameters ({config.pos} positions), "
                      f"{sizes['train_tokens']:,} train / {sizes['val_tokens']:,} val tokens, {device} {plan['dtype']}"
                      f", steps {step} -> {config.max_iters}")

        # -- work
        def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
            return get_batch(train_data, config.block_size, config.batch_size, batch_order, device)

        def save() -> None:
            with uninterrupted():  # Ctrl-C waits for it: the save that Ctrl-C makes needs this one whole
                save_checkpoint(run.dir / CHECKPOINT, model, optimizer, step, history=history,
                                batch_order=batch_order.get_state())
                plot_losses(history, run.dir / LOSS_PLOT, f"tinylm {run.id}")

        probe = eval_windows(len(val_data), config.block_size, config.eval_windows)
        seconds, trained_tokens, since, tick = 0.0, 0, step, time.perf_counter()
        try:
            for it in track(range(step, config.max_iters), "training", total=config.max_iters - step):
                lr = lr_at(it, config.learning_rate, config.min_lr, config.warmup_iters, config.max_iters)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = train_step(net, optimizer, next_batch, config.grad_accum, config.grad_clip, amp)
                step = it + 1
                if step % config.log_interval == 0 or step == config.max_iters:
                    train_loss = loss.item()  # waits for the device: only every log_interval steps
                    elapsed = time.perf_counter() - tick
                    seconds, trained_tokens = seconds + elapsed, trained_tokens + (step - since) * tokens_per_step
                    tokens_per_s = (step - since) * tokens_per_step / elapsed
                    history["train"].append([step, train_loss])
                    run.log({"train/loss": train_loss, "lr": lr, "tokens_per_s": tokens_per_s,
                             "mfu": flops * tokens_per_s / (peak * 1e12)}, step=step)
                    since, tick = step, time.perf_counter()
                if step % config.eval_interval == 0 and step < config.max_iters:
                    val_loss = eval_loss(net, val_data, probe, config.block_size, config.batch_size, device, amp)
                    history["val"].append([step, val_loss])
                    run.log({"val/loss": val_loss, "val/perplexity": math.exp(val_loss)}, step=step)
                    console.print(f"step {step}: train loss {history['train'][-1][1]:.4f}, val loss {val_loss:.4f}")
                    save()
                    tick = time.perf_counter()  # evaluation and checkpoint time is not training time
        except KeyboardInterrupt:
            save()  # Ctrl-C: keep the steps done; `--resume` continues from here
            console.print(f"interrupted at step {step}: checkpoint saved; continue with --resume {run.id}")
            raise

        # -- evaluate: the whole validation split
        final = _text_metrics(net, val_data, tokenizer, config.block_size, config.batch_size, device, amp)
        history["val"].append([step, final["loss"]])
        mean_tokens_per_s = trained_tokens / seconds if seconds else None  # None: no step ran (resumed at the end)
        metrics = {"val_loss": final["loss"], "val_perplexity": final["perplexity"],
                   "val_bits_per_char": final["bits_per_char"], "train_loss": history["train"][-1][1],
                   "steps": step, "tokens_per_s": mean_tokens_per_s,
                   "mfu": flops * mean_tokens_per_s / (peak * 1e12) if mean_tokens_per_s else None}
        run.set_metrics(metrics)
        console.print(f"step {step}: val loss {final['loss']:.4f}, perplexity {final['perplexity']:.2f}, "
                      f"{final['bits_per_char']:.3f} bits/char (whole validation split)")

        # -- save
        save()
        for name in (CHECKPOINT, TOKENIZER, LOSS_PLOT):
            run.add_artifact(run.dir / name)
    return run


def resume_config(ref: str, overrides: dict[str, Any], runs_root: str | None = None) -> TinyLMConfig:
    """The config of run `ref` with `overrides` (the flags given) on top, e.g. a larger max_iters."""
    saved = _find_run(ref, runs_root)["config"]
    config = load_config(TinyLMConfig, None, {**saved, **overrides})
    changed = [k for k in MODEL_KEYS if getattr(config, k) != saved[k]]
    if changed:
        raise ConfigError(f"a resumed run keeps the model's shape, but {', '.join(changed)} changed",
                          "drop those flags, or train a new run")
    return config


def sample(config: SampleConfig, runs_root: str | None = None,
           on_text: Callable[[str], None] | None = None) -> list[str]:
    """Generate `num_samples` texts; `on_text` receives each piece of text as it is generated."""
    device = select_device(config.device)
    model, tokenizer, _ = _load(config.run, runs_root, device)
    try:
        prompt = tokenizer.encode(config.prompt)
    except UnknownCharacter as e:
        raise OnecardError(f"the prompt's {e}", "use characters of the training text") from None
    if not prompt:
        raise ConfigError("the prompt is empty", "give some text to continue, e.g. --prompt 'ROMEO:'")
    generator = torch.Generator(device=device).manual_seed(config.seed)
    texts = []
    for i in range(config.num_samples):
        ids, shown = list(prompt), config.prompt
        if on_text:
            on_text(("\n---------------\n" if i else "") + shown)
        for token, _ in model.generate(torch.tensor([prompt], device=device), config.max_new_tokens,
                                       config.temperature, config.top_k, config.cache, generator):
            ids.append(int(token))
            text = tokenizer.decode(ids)
            if on_text and not text.endswith("\ufffd"):  # byte-level BPE: wait for a character's last byte
                on_text(text[len(shown):])
                shown = text
        texts.append(tokenizer.decode(ids))
    return texts


def evaluate(config: EvalConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per character of the model on text: `data`, or its validation split."""
    device = select_device(config.device)
    model, tokenizer, record = _load(config.run, runs_root, device)
    block_size = model.config.block_size
    if config.data is None:
        tokens, source = load_split(Path(record["dir"]) / "val.bin"), "validation split"
    else:
        tokens, source = encode_texts(read_texts(config.data, config.glob), tokenizer), config.data
        if len(tokens) <= block_size:
            raise DataError(f"{config.data} has {len(tokens)} tokens, not more than the context ({block_size})",
                            "evaluate on more text")
    run_config = TinyLMConfig.model_validate(record["config"])
    dtype = _dtype(run_config.dtype, device)
    result = _text_metrics(model, tokens, tokenizer, block_size, run_config.batch_size, device,
                           lambda: autocast(device, dtype))
    return {"run": record["id"], "data": source, **result}


def bench(config: BenchConfig, runs_root: str | None = None) -> dict[str, Any]:
    """Training tokens/s and MFU at the run's batch and context; generation tokens/s with and without the KV cache."""
    device = select_device(config.device)
    model, _, record = _load(config.run, runs_root, device)
    run_config = TinyLMConfig.model_validate(record["config"])
    dtype = _dtype(run_config.dtype, device)
    train_data = load_split(Path(record["dir"]) / "train.bin")
    optimizer = configure_optimizer(model, run_config.learning_rate, run_config.weight_decay,
                                    (run_config.beta1, run_config.beta2), device)
    order = torch.Generator().manual_seed(0)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        return get_batch(train_data, run_config.block_size, run_config.batch_size, order, device)

    def steps(n: int) -> None:
        for _ in range(n):
            loss = train_step(model, optimizer, next_batch, run_config.grad_accum, run_config.grad_clip,
                              lambda: autocast(device, dtype))
        loss.item()  # wait for the device

    model.train()
    steps(3)  # warm-up: allocation, kernel choice, thread pool
    start = time.perf_counter()
    steps(config.train_steps)
    tokens_per_step = run_config.batch_size * run_config.block_size * run_config.grad_accum
    tokens_per_s = config.train_steps * tokens_per_step / (time.perf_counter() - start)
    peak, peak_source = peak_tflops(device, dtype)

    model.eval()
    # both sides timed alike: a short warm-up (kernel choice, first allocations), then the best of the same repeats
    speeds: dict[bool, float] = {}
    for use_cache in (True, False):
        generation_speed(model, 32, use_cache, device)
        speeds[use_cache] = generation_speed(model, config.new_tokens, use_cache, device, repeats=2)
    cached, uncached = speeds[True], speeds[False]
    return {
        "run": record["id"], "device": device, "dtype": str(dtype).removeprefix("torch."), "params": model.num_params(),
        "train_tokens_per_s": tokens_per_s, "mfu": flops_per_token(model) * tokens_per_s / (peak * 1e12),
        "peak_tflops": peak, "peak_source": peak_source, "new_tokens": config.new_tokens,
        "block_size": model.config.block_size, "generate_tokens_per_s": cached,
        "generate_uncached_tokens_per_s": uncached, "kv_cache_speedup": cached / uncached,
    }


# -- helpers --------------------------------------------------------------------------------------------------------


def _dtype(name: str, device: str) -> torch.dtype:
    # fp16=False: the training step has no loss scaler, so a GPU without native bf16 trains in fp32
    return getattr(torch, select_dtype(name, device, fp16=False))


def _find_run(ref: str, runs_root: str | None) -> dict[str, Any]:
    """A tinylm training run with a checkpoint, by id, prefix, directory, or 'last' (the newest such run)."""
    return find_run(ref, runs_root, capability="tinylm", has=CHECKPOINT,
                    how_to_make="train one, e.g. `onecard tinylm train --data input.txt --preset tiny`")


def _load(ref: str, runs_root: str | None, device: str) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    record = _find_run(ref, runs_root)
    model, _ = load_checkpoint(Path(record["dir"]) / CHECKPOINT, device)
    return model.eval(), load_tokenizer(Path(record["dir"]) / TOKENIZER), record


def _text_metrics(model: torch.nn.Module, tokens: np.ndarray, tokenizer: Tokenizer, block_size: int,
                  batch_size: int, device: str, amp: Callable[[], Any]) -> dict[str, float]:
    """Loss over every token of `tokens` (in non-overlapping windows), perplexity, and bits per character."""
    starts = eval_windows(len(tokens), block_size)
    loss = eval_loss(model, tokens, starts, block_size, batch_size, device, amp)
    targets = tokens[1: 1 + len(starts) * block_size]  # the tokens the windows predict
    chars = len(tokenizer.decode(targets.tolist()))
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_char": loss * len(targets) / chars / math.log(2),
            "tokens": len(targets), "chars": chars}
