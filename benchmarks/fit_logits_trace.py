"""How many bytes per logit the causal-LM loss of the installed transformers holds, forward and backward (CPU).

    python benchmarks/fit_logits_trace.py [--seqs 256 512 1024] [--vocab 32000]
    python benchmarks/fit_logits_trace.py --allocator [--seqs 1024 4096 32768] [--reentrant]
    python benchmarks/fit_logits_trace.py --hold [--seqs 256 1024]
    python benchmarks/fit_logits_trace.py --kbit
    python benchmarks/fit_logits_trace.py --trl SFT_TRAINER_PY --trl-version 1.7.1
      (SFT_TRAINER_PY: trl/trainer/sft_trainer.py of that release, e.g. `pip download trl==1.7.1 --no-deps` and
      `unzip -p trl-1.7.1-*.whl trl/trainer/sft_trainer.py > sft171.py`)
    PYTHONPATH=/path/to/transformers-4.39.3 python benchmarks/fit_logits_trace.py ...   # an older release
      (pip install --target DIR --no-deps transformers==4.39.3 tokenizers==0.15.2 huggingface-hub==0.22.2 peft==0.10.0)

The question (issue 13, LLaMA-Factory 0.6 QLoRA rows): does transformers' loss path of April 2024 (4.39:
`logits = logits.float()` in LlamaForCausalLM.forward, then `logits[..., :-1, :].contiguous()` into
CrossEntropyLoss) hold more (seq x vocab) buffers than today's `ForCausalLMLoss`, which `onecard.fit.llm_train`'s
standard loss models at 12 B per logit (`loss_bytes`)?

Builds a LlamaForCausalLM from a config with Llama 2's vocabulary and a tiny body (2 layers, hidden 64, so the
logits are nearly all of the activations), bf16 weights all frozen and the embedding output requiring grad (what
LoRA and `enable_input_require_grads` make: the frozen lm_head keeps no input for a weight gradient), and runs one
forward + `loss.backward()` on real CPU tensors under onecard.fit.trace's live-storage counter, one counter per
phase. Prints the live bytes above the weights at each phase's peak per logit (batch x seq x vocab), and the
slope between the sequence lengths (the per-logit figure without the body's own activations).

Measured (torch 2.13 CPU, vocab 32000, seq 256-1024):
  transformers 4.39.3: forward 12.0, backward 12.0 B per logit (slope)
  transformers 5.25:   forward 10.0, backward 12.0 B per logit (slope)
So the loss of April 2024 holds no more than fit's 12 B per logit (at batch 1 `logits[..., :-1, :]` is contiguous
already and `.contiguous()` copies nothing); the planner's allocated figure is right for both releases.

`--allocator`: what the CUDA caching allocator reserves for the same step. Llama-2-7B with LoRA r=8 on all linears
(fp32 adapters, the base in bf16 standing in for NF4: the kernels need CUDA), gradient checkpointing, causal
attention with no mask (the FlashAttention-2 path), bf16 autocast, batch 1, two training steps with AdamW, traced on
fake tensors with every storage's allocation and free logged in order, then replayed through the allocator's rules
(`onecard.fit.trace.replay_caching_allocator`). Prints the replayed allocated and reserved peaks (above the weights)
beside fit's allocated figure and its reserved excess at the loss (`llm_train.loss_segments_bytes`).

Measured (torch 2.13 CPU, fake tensors; reserved - allocated, GiB):
  transformers 4.39.3 + PEFT 0.10, reentrant (LLaMA-Factory 0.6): 0.36 (1,024), 0.70 (2,048), 1.04 (4,096),
      4.03 (16,384), 7.96 (32,768); allocated 0.780 / 1.412 / 2.676 / 10.258 / 20.368
  transformers 5.25 + PEFT 0.21, non-reentrant: 1.07 (4,096)

`--hold`: the same per-logit figures when the loop keeps the model's output through backward (`out = model(...);
out.loss.backward()`, as hand-written loops do; the Trainer drops it), for a 16-bit head and an fp32 one (PEFT's
prepare_model_for_kbit_training casts the head to fp32, so the logits come out fp32 and `.float()` copies nothing).
Measured (torch 2.13 CPU, transformers 5.25, vocab 32000, seq 256-1024, backward slope): bf16 12.13 dropped, 14.13
held; fp32 12.21 dropped, 16.21 held: holding adds the logits themselves (fit's `holds_output`).

`--kbit`: a QLoRA step of Qwen2.5-1.5B under PEFT's prepare_model_for_kbit_training, as can-i-finetune-this's bench
runs it (heldout7, development data since its scoring): embeddings, head and norms in fp32, every decoder linear a
bf16 stand-in for bitsandbytes' Linear4bit that casts its input to bf16 and its output back to the input's dtype
(bnb/nn/modules.py Linear4bit.forward: `.to(inp_dtype)`), LoRA r 16 on q, k, v, o, no autocast, batch 1, on fake
tensors, every allocation replayed through the allocator's rules. Prints what one block keeps for backward per token
(without checkpointing: the difference between 8 and 4 layers) beside fit's count at 2 and 4 B per element, and the
replayed allocated peak above the weights with the output dropped and held, beside fit's.
Measured (torch 2.13 CPU, transformers 5.25, PEFT 0.18): 154,936 B per token and layer kept (fit at 4 B: 159,024;
at 2 B: 85,680); the can-i-finetune-this readings' allocated peaks (2.79 / 6.53 / 11.51 GiB at 512 / 2048 / 4096
tokens, 6.53 at 2 x 1024) sit within 0.05 GiB of the replay with the output held plus fit's weights.

`--trl`: TRL 1.4-1.14's `chunked_nll` loss, its own `_chunk` and `_chunked_cross_entropy_loss` (read from the
release's sft_trainer.py, run on CPU tensors: a frozen bf16 head of vocab 32000 x hidden 1024, hidden states that
require grad, the returned metrics dropped before backward as the Trainer's compute_loss drops them) under the
live-storage counter: the backward's peak above the inputs at 256-2048 tokens, beside
`llm_train.loss_bytes("tiled", trl=...)`. Measured (torch 2.13 CPU, 256 -> 2048 tokens): 1.7.1 219.8 -> 229.8 MiB
= the fp32 head (125) + three fp32 chunks of logits (93.75) + the hidden states' copies; 1.13.0 188.5 -> 198.5 MiB =
four chunks (125) + a bf16 head-sized buffer (62.5) that CPU's bf16 matmul makes for `h @ w.t()` (a bare bf16
`h @ w.t()` on CPU shows the same 62.5 MiB with the weight in either layout; cuBLAS makes none, and fit leaves it
out). Kept alive past backward (the metrics held), each chunk's entropy graph would hold 8 B per token and
vocabulary entry more.
"""

from __future__ import annotations

import argparse
from typing import Any

from onecard.core.extras import require
from onecard.fit import catalog
from onecard.fit import plan as planning
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.llm_train import loss_bytes
from onecard.fit.trace import _dispatch_mode, _Events, _fake_params, _LiveBytes, replay_caching_allocator


def _model(vocab: int) -> Any:
    torch = require("torch", "fit")
    transformers = require("transformers", "fit")
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.requires_grad_(False)
    model.enable_input_require_grads()  # the embedding output requires grad, as under PEFT LoRA
    model.train()
    return model


def measure(model: Any, seq: int, vocab: int, hold: bool = False) -> tuple[float, float]:
    """Live bytes above the weights and inputs at the forward's and the backward's peak, per logit; `hold`: the
    model's output (its logits) kept until backward ends."""
    torch = require("torch", "fit")
    ids = torch.randint(0, vocab, (1, seq))
    counter = _LiveBytes()
    with _dispatch_mode(counter):
        base = sum(counter.live.values())
        out = model(input_ids=ids, labels=ids, use_cache=False)
        loss = out.loss
        if not hold:
            del out  # the model's output (logits) is dropped here, as the Trainer's compute_loss does
        forward, counter.peak = counter.peak, 0
        loss.backward()
        backward = counter.peak
    logits = seq * vocab
    return (forward - base) / logits, (backward - base) / logits


def slopes(rows: list[tuple[int, float, float]], vocab: int) -> tuple[float, float]:
    """Forward and backward bytes per logit between the first and the last measured (seq, forward, backward) row:
    the body's own activations cancel out."""
    (s0, f0, b0), (s1, f1, b1) = rows[0], rows[-1]
    n0, n1 = s0 * vocab, s1 * vocab
    return (f1 * n1 - f0 * n0) / (n1 - n0), (b1 * n1 - b0 * n0) / (n1 - n0)


def main_hold(seqs: list[int], vocab: int) -> None:
    torch = require("torch", "fit")
    print(f"bytes per logit, slope {seqs[0]}->{seqs[-1]}, vocab {vocab}: output dropped / held through backward")
    for dtype in (torch.bfloat16, torch.float32):
        model = _model(vocab).to(dtype)
        for hold in (False, True):
            fwd, bwd = slopes([(seq, *measure(model, seq, vocab, hold)) for seq in (seqs[0], seqs[-1])], vocab)
            print(f"  {str(dtype).split('.')[-1]:>8} head, output {'held' if hold else 'dropped':7}: "
                  f"forward {fwd:5.2f}, backward {bwd:5.2f}")


QWEN25_15B = "benchmarks/fit_cases/public/heldout7/configs/llm_train_qwen2.5-1.5b/config.json"
_DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def kbit_step(layers: int, seq: int, batch: int, hold: bool, ckpt: bool, steps: int) -> tuple[float, float]:
    """Replayed (allocated peak above the weights, weights) in bytes of can-i-finetune-this's QLoRA step with
    PEFT's kbit preparation emulated (see the docstring), on Qwen2.5-1.5B with `layers` layers."""
    import json
    from pathlib import Path

    torch = require("torch", "fit")
    transformers = require("transformers", "fit")
    peft = require("peft", "tune")
    from torch._subclasses.fake_tensor import FakeTensorMode

    values = json.loads(Path(QWEN25_15B).read_text(encoding="utf-8")) | {"num_hidden_layers": layers}
    config = transformers.AutoConfig.for_model(**values)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.requires_grad_(False)

    def to_bf16(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        module.in_dtype = args[0].dtype
        return (args[0].to(torch.bfloat16),)

    def back(module: Any, args: tuple[Any, ...], out: Any) -> Any:
        return out.to(module.in_dtype)

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in _DECODER_LINEARS:
            module.register_forward_pre_hook(to_bf16)
            module.register_forward_hook(back)
        else:  # prepare_model_for_kbit_training: every other 16-bit parameter to fp32
            for p in module.parameters(recurse=False):
                p.data = p.data.float()
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0,
                                                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    fake_mode = FakeTensorMode()
    _fake_params(model, fake_mode)
    counter = _Events()
    for t in [*model.parameters(), *model.buffers()]:
        counter.add(t, "weights")
    weights = sum(counter.live.values())
    counter.events.clear()
    # paged 8-bit AdamW keeps its states in CUDA unified memory, outside the allocator: a stateless SGD stands in
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    with fake_mode:
        model.train()
        with _dispatch_mode(counter):
            out = None
            for _ in range(steps):
                ids = torch.randint(0, config.vocab_size, (batch, seq))
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
                loss = out.loss
                if not hold:
                    out = None
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    allocated, _ = replay_caching_allocator(counter.events)
    return allocated, weights


def main_kbit() -> None:
    from onecard.fit.llm_train import layer_saved_bytes, lora_targets

    a8, _ = kbit_step(8, 1024, 1, hold=False, ckpt=False, steps=1)
    a4, _ = kbit_step(4, 1024, 1, hold=False, ckpt=False, steps=1)
    arch = planning.resolve_arch(QWEN25_15B).arch
    adapted = lora_targets(arch, "attn")
    fit2, fit4 = (layer_saved_bytes(arch, a, False, False, adapted, "sdpa", 1024) for a in (2, 4))
    print(f"kept per token and layer, no checkpointing: traced {(a8 - a4) / 4 / 1024:,.0f} B; "
          f"fit at 2 B {fit2:,.0f}, at 4 B {fit4:,.0f}")
    print("QLoRA steps of Qwen2.5-1.5B, GiB above the weights (replayed allocated peak), output dropped / held")
    for seq, batch, ckpt, steps in ((512, 1, True, 3), (2048, 1, True, 3), (4096, 1, True, 2), (1024, 2, True, 2),
                                    (1024, 1, False, 2)):
        dropped, _ = kbit_step(28, seq, batch, hold=False, ckpt=ckpt, steps=steps)
        held, _ = kbit_step(28, seq, batch, hold=True, ckpt=ckpt, steps=steps)
        job = FitJob(model=QWEN25_15B, job="train", method="qlora", quant="nf4-dq", batch=batch, seq=seq,
                     lora_rank=16, lora_targets="attn", lora_dropout=0.0, optimizer="paged_adamw8bit", grad_ckpt=ckpt,
                     kbit_prep=True, holds_output=True, attention="sdpa", gpu="rtx-4080", calibration=False)
        est = planning.plan(job).estimate
        fit_held = est.peak_allocated_gib - est.parts["weights"] - est.parts["adapters"] - est.parts["runtime"]
        print(f"  {batch} x {seq:>4}, checkpointing {'on ' if ckpt else 'off'}: dropped {dropped / GIB:6.2f}, "
              f"held {held / GIB:6.2f}; fit (holds_output) {fit_held:6.2f}; fit's weights {est.parts['weights']:.2f}")


def allocator(seq: int, reentrant: bool) -> tuple[float, float]:
    """Replayed (allocated, reserved) peaks in GiB above the weights of two QLoRA training steps of Llama-2-7B."""
    torch = require("torch", "fit")
    transformers = require("transformers", "fit")
    peft = require("peft", "tune")
    from torch._subclasses.fake_tensor import FakeTensorMode

    config = catalog.hf_config(planning.resolve_arch("llama-2-7b").arch)
    old = transformers.__version__.startswith("4.")
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation="sdpa", **{"torch_dtype" if old else "dtype": torch.bfloat16})
    if old:  # 4.39 builds no mask for flash_attention_2 without padding; the sdpa layers then run causal
        model.config._attn_implementation = "flash_attention_2"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.enable_input_require_grads()
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for p in model.parameters():
        if p.requires_grad:  # LLaMA-Factory casts the trainable parameters to fp32 (model/adapter.py)
            p.data = p.data.float()
    fake_mode = FakeTensorMode()
    _fake_params(model, fake_mode)
    counter = _Events()
    for t in [*model.parameters(), *model.buffers()]:
        counter.add(t, "weights")
    counter.events.clear()  # the weights are allocated at load time, in segments of their own
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, foreach=False)
    with fake_mode:
        model.train()
        with _dispatch_mode(counter):
            for _ in range(2):
                ids = torch.randint(0, config.vocab_size, (1, seq))
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                (loss / 4).backward()  # accelerate divides by the gradient accumulation steps
                del loss
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    allocated, reserved = replay_caching_allocator(counter.events)
    return allocated / GIB, reserved / GIB


def _fit_figures(seq: int) -> tuple[float, float]:
    """fit's allocated peak above the weights and adapters (without the NF4 dequantization buffer), and its
    reserved excess, for the LLaMA-Factory case at this length."""
    job = FitJob(model="llama-2-7b", job="train", stack="transformers", method="qlora", quant="nf4-dq", batch=1,
                 grad_accum=4, seq=seq, lora_rank=8, lora_targets="all-linear", lora_dropout=0.0, optimizer="adamw",
                 grad_ckpt=True, attention="flash", gpu="a100-40gb", calibration=False)
    est = planning.plan(job).estimate
    parts = est.parts
    above = est.peak_allocated_gib - parts["weights"] - parts["adapters"] - parts.get("runtime", 0.0)
    return above, est.slack_gib


def main_allocator(seqs: list[int], reentrant: bool) -> None:
    transformers = require("transformers", "fit")
    print(f"transformers {transformers.__version__}, {'reentrant' if reentrant else 'non-reentrant'} checkpointing; "
          "GiB above the weights")
    print(f"{'seq':>6} {'allocated':>10} {'reserved':>9} {'excess':>7} {'fit alloc':>10} {'fit excess':>11}")
    for seq in seqs:
        alloc, res = allocator(seq, reentrant)
        fit_alloc, fit_excess = _fit_figures(seq)
        print(f"{seq:>6} {alloc:>10.3f} {res:>9.3f} {res - alloc:>7.3f} {fit_alloc:>10.3f} {fit_excess:>11.3f}")


def trl_chunked_nll(source: str, seqs: list[int], vocab: int = 32000, hidden: int = 1024) -> list[tuple[int, float]]:
    """Backward peaks (bytes above the inputs) of a TRL release's chunked_nll loss at each sequence length."""
    import ast
    import contextlib
    from pathlib import Path

    torch = require("torch", "fit")
    ns: dict[str, Any] = {"torch": torch, "F": torch.nn.functional, "contextlib": contextlib}
    for node in ast.parse(Path(source).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name in ("_chunk", "_chunked_cross_entropy_loss"):
            exec(compile(ast.Module([node], []), source, "exec"), ns)  # noqa: S102 - the release's own functions
    for name in ("_maybe_gather_lm_head_ctx", "maybe_gather_lm_head_ctx"):  # ZeRO-3 gathering: a no-op here
        ns[name] = lambda w, b: contextlib.nullcontext()
    peaks = []
    for seq in seqs:
        torch.manual_seed(0)
        weight = torch.randn(vocab, hidden, dtype=torch.bfloat16)
        states = torch.randn(1, seq + 1, hidden, dtype=torch.bfloat16, requires_grad=True)
        labels = torch.randint(0, vocab, (1, seq + 1))
        counter = _LiveBytes()
        with _dispatch_mode(counter):
            base = sum(counter.live.values())
            loss = ns["_chunked_cross_entropy_loss"](states, weight, 256, labels=labels)[0]
            counter.peak = 0
            loss.backward()
        peaks.append((seq, counter.peak - base))
    return peaks


def main_trl(source: str, version: str, seqs: list[int]) -> None:
    from onecard.fit.job import release

    vocab, hidden = 32000, 1024
    peaks = trl_chunked_nll(source, seqs, vocab, hidden)
    (s0, p0), (s1, p1) = peaks[0], peaks[-1]
    slope = (p1 - p0) / (s1 - s0)
    print(f"TRL {version} chunked_nll, vocab {vocab}, hidden {hidden}: backward peak above the inputs")
    for seq, peak in peaks:
        fit = loss_bytes("tiled", seq, vocab, hidden, 2, trl=release(version, (0, 0, 0)))
        print(f"  {seq:>5} tokens: {peak / 2**20:7.1f} MiB   fit {fit / 2**20:7.1f} MiB")
    print(f"slope {slope / vocab:.2f} B per token and vocabulary entry, intercept {(p0 - slope * s0) / 2**20:.1f} MiB")


def main() -> None:
    transformers = require("transformers", "fit")
    torch = require("torch", "fit")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--allocator", action="store_true", help="replay Llama-2-7B QLoRA through the CUDA allocator")
    ap.add_argument("--reentrant", action="store_true", help="reentrant checkpointing (LLaMA-Factory 0.6)")
    ap.add_argument("--hold", action="store_true", help="bytes per logit with the output dropped and held")
    ap.add_argument("--kbit", action="store_true", help="replay can-i-finetune-this's kbit-prepared QLoRA steps")
    ap.add_argument("--trl", metavar="SFT_TRAINER_PY", help="measure this TRL release's chunked_nll loss")
    ap.add_argument("--trl-version", default="1.7.1", help="the release --trl's file comes from")
    args = ap.parse_args()
    if args.trl:
        main_trl(args.trl, args.trl_version, args.seqs if args.seqs != [256, 512, 1024] else [256, 512, 1024, 2048])
        return
    if args.allocator:
        main_allocator(args.seqs, args.reentrant)
        return
    if args.hold:
        main_hold(args.seqs, args.vocab)
        return
    if args.kbit:
        main_kbit()
        return
    model = _model(args.vocab)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, vocab {args.vocab}, bf16, CPU")
    print(f"{'seq':>6} {'forward B/logit':>16} {'backward B/logit':>17}")
    rows: list[tuple[int, float, float]] = []
    for seq in args.seqs:
        fwd, bwd = measure(model, seq, args.vocab)
        rows.append((seq, fwd, bwd))
        print(f"{seq:>6} {fwd:>16.2f} {bwd:>17.2f}")
    slope_f, slope_b = slopes(rows, args.vocab)
    fit = loss_bytes("standard", 1, args.vocab, 64, 2) / args.vocab
    print(f"slope {rows[0][0]}->{rows[-1][0]}: forward {slope_f:.2f}, backward {slope_b:.2f} B per logit; "
          f"onecard.fit's standard loss: {fit:.2f} B per logit")


if __name__ == "__main__":
    main()
