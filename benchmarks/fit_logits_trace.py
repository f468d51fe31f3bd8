"""How many bytes per logit the causal-LM loss of the installed transformers holds, forward and backward (CPU).

    python benchmarks/fit_logits_trace.py [--seqs 256 512 1024] [--vocab 32000]
    python benchmarks/fit_logits_trace.py --allocator [--seqs 1024 4096 32768] [--reentrant]
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


def measure(model: Any, seq: int, vocab: int) -> tuple[float, float]:
    """Live bytes above the weights and inputs at the forward's and the backward's peak, per logit."""
    torch = require("torch", "fit")
    ids = torch.randint(0, vocab, (1, seq))
    counter = _LiveBytes()
    with _dispatch_mode(counter):
        base = sum(counter.live.values())
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss  # the model's output (logits) is dropped here
        forward, counter.peak = counter.peak, 0
        loss.backward()
        backward = counter.peak
    logits = seq * vocab
    return (forward - base) / logits, (backward - base) / logits


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


def main() -> None:
    transformers = require("transformers", "fit")
    torch = require("torch", "fit")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--allocator", action="store_true", help="replay Llama-2-7B QLoRA through the CUDA allocator")
    ap.add_argument("--reentrant", action="store_true", help="reentrant checkpointing (LLaMA-Factory 0.6)")
    args = ap.parse_args()
    if args.allocator:
        main_allocator(args.seqs, args.reentrant)
        return
    model = _model(args.vocab)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, vocab {args.vocab}, bf16, CPU")
    print(f"{'seq':>6} {'forward B/logit':>16} {'backward B/logit':>17}")
    rows = []
    for seq in args.seqs:
        fwd, bwd = measure(model, seq, args.vocab)
        rows.append((seq, fwd, bwd))
        print(f"{seq:>6} {fwd:>16.2f} {bwd:>17.2f}")
    (s0, f0, b0), (s1, f1, b1) = rows[0], rows[-1]
    n0, n1 = s0 * args.vocab, s1 * args.vocab
    slope_f, slope_b = (f1 * n1 - f0 * n0) / (n1 - n0), (b1 * n1 - b0 * n0) / (n1 - n0)
    fit = loss_bytes("standard", 1, args.vocab, 64, 2) / args.vocab
    print(f"slope {s0}->{s1}: forward {slope_f:.2f}, backward {slope_b:.2f} B per logit; "
          f"onecard.fit's standard loss: {fit:.2f} B per logit")


if __name__ == "__main__":
    main()
