"""Training memory of onecard.tinylm's from-scratch GPT (`tinylm-*` catalog entries): every weight trained.

tinylm keeps fp32 weights, fp32 gradients and fp32 AdamW moments (4 + 4 + 8 B per parameter), and runs the forward
under bf16 autocast where the card has bf16 (`dtype: auto`), else in fp32. Under autocast each linear casts its
weight to bf16 once per step and saves that copy for backward (2 B per linear weight); LayerNorm runs in fp32 and
the residual stream stays fp32 (the embedding lookup is fp32 and each add promotes).

Saved for backward, per token of one block (a: 2 under bf16 autocast, 4 in fp32; h wide, nh heads):
  LayerNorm x2: its fp32 input, mean and rstd          2 (4h + 8)
  c_attn: its input cast to `a`; its 3h output stays whole, since SDPA keeps v (a view of it)   a h + 3 a h
  RoPE'd q and k (new tensors); SDPA's output and its fp32 log-sum-exp   2 a h + a h + 4 nh
  c_proj: its input (the heads made contiguous again)    a h
  MLP: c_fc's input, GELU's input (4h), the second projection's input (4h)   a h + 8 a h
  = 8h + 16 + 17 a h + 4 nh bytes; dropout p > 0 adds a 1-byte mask after the embedding and twice per block
  (SDPA's fused CUDA kernels draw the attention dropout from a seed and keep no mask).
After the blocks: ln_f's fp32 input, lm_head's input, the fp32 log-softmax of the logits; per sequence the RoPE
cos/sin rows. This count equals torch.autograd.graph.saved_tensors_hooks on the real tinylm model to the byte
(tests/unit/fit/test_tinylm.py, CPU, fp32 and bf16 autocast, no dropout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onecard.core.errors import ConfigError
from onecard.fit.catalog import LlmArch, linears, n_params
from onecard.fit.estimate import Estimate, gib
from onecard.fit.job import FitJob
from onecard.fit.overheads import ALLOC_SLACK, CUDA_CONTEXT_GIB, context_note, slack_note

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec

__all__ = ["estimate", "saved_bytes", "compute_bytes", "MFU"]

# Model FLOPs utilisation of a ~10M-parameter GPT: nanoGPT's README trains the baby GPT (5000 iterations of 64 x 256
# tokens, 71 MFLOPs per token) in "about 3 minutes" on one A100: 0.46M tokens/s, 32 TFLOPS, 10% of its 312.
MFU = 0.1


def compute_bytes(job: FitJob, card: GpuSpec | None) -> int:
    """2 for bf16 autocast (tinylm's `dtype: auto` on a bf16 card, or --quant bf16), 4 for fp32.

    Raises:
        ConfigError: a weight format tinylm does not train in.
    """
    q = job.quant.lower()
    if q == "auto":
        return 2 if card is None or card.bf16 else 4
    if q in ("bf16", "bfloat16"):
        return 2
    if q in ("fp32", "f32", "float32"):
        return 4
    raise ConfigError(f"tinylm trains fp32 weights, with or without bf16 autocast; --quant {job.quant} is not offered",
                      "use --quant auto, bf16 (autocast) or fp32")


def saved_bytes(arch: LlmArch, a: int, batch: int, seq: int, dropout: bool = False) -> float:
    """Bytes autograd keeps for backward after the forward of one micro-batch (see the module docstring)."""
    h, L, V = arch.hidden, arch.n_layers, arch.vocab
    per_layer = 8 * h + 16 + 17 * a * h + 4 * arch.n_heads + (2 * h if dropout else 0)
    final = 4 * h + 8 + a * h + 4 * V + 8 + 8 + (h if dropout else 0)  # + token ids of the lookup and the loss
    rope = 2 * seq * (arch.head_dim // 2) * 4  # cos and sin rows of the positions, shared by the batch
    return batch * seq * (L * per_layer + final) + rope + 4  # + the loss's fp32 total weight


def estimate(arch: LlmArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Peak memory of one tinylm training step (forward, backward, AdamW step) at the job's batch and sequence.

    Raises:
        ConfigError: an optimizer or weight format tinylm does not offer.
    """
    if job.optimizer not in ("auto", "adamw"):
        raise ConfigError(f"tinylm trains with AdamW; --optimizer {job.optimizer} is not offered",
                          "use --optimizer auto or adamw")
    a = compute_bytes(job, card)
    N = n_params(arch)
    tokens = job.batch * job.seq
    h, L, V = arch.hidden, arch.n_layers, arch.vocab
    copies = 2.0 * (L * sum(lin.d_in * lin.d_out for lin in linears(arch)) + V * h) if a == 2 else 0.0
    stack = saved_bytes(arch, a, job.batch, job.seq)
    # backward: the incoming and outgoing fp32 residual gradients and two MLP-wide gradients in flight
    grad_tmp = tokens * (8 * h + 2 * a * 4 * h)
    logits = tokens * V * (a + 8)  # the logits, their fp32 copy and the log-softmax, in the loss
    phases = {
        "loss": {"activations": stack, "logits": logits, "runtime": copies},
        "backward": {"activations": stack + grad_tmp, "logits": tokens * V * 8.0, "runtime": copies,
                     "gradients": 4.0 * V * h},  # the first gradient made: the tied embedding's
        "optimizer step": {"gradients": 4.0 * N},
    }
    phase, work = max(phases.items(), key=lambda kv: sum(kv[1].values()))
    parts = {"weights": 4.0 * N, "optimizer": 8.0 * N, **work}
    transient = sum(v for k, v in parts.items() if k in ("activations", "logits", "runtime", "gradients"))
    notes = [f"{arch.name} trained from scratch: all {N:,} parameters, fp32 weights, gradients and AdamW moments "
             "(--method is not used)",
             f"forward {'under bf16 autocast (tinylm dtype auto on a bf16 card)' if a == 2 else 'in fp32'}"
             + (f": bf16 weight copies {gib(copies) * 1024:.1f} MiB" if copies else ""),
             f"micro-batch {job.batch} x context {job.seq} (tinylm's block_size; the preset's is {arch.max_ctx})",
             "no gradient checkpointing in tinylm (--grad-ckpt is not used); dropout 0 (baby's 0.2 adds "
             f"{gib(tokens * (2 * L + 1) * h) * 1024:.1f} MiB of masks)",
             f"attention SDPA (fused, no T x T scores); RoPE; vocabulary {V}", f"peak during the {phase}"]
    est = Estimate({k: gib(v) for k, v in parts.items()}, slack_gib=gib(ALLOC_SLACK * transient),
                   context_gib=CUDA_CONTEXT_GIB, assumptions=[*notes, slack_note(), context_note()])
    tflops = 0.0 if card is None else (card.bf16_tflops if a == 2 else card.fp16_tflops / 2)
    if tflops > 0:
        # tinylm's flops_per_token: 6 per parameter + attention's 12 L h T (PaLM appendix B, nanoGPT estimate_mfu)
        flops = 6 * N + 12 * L * h * job.seq
        est.step_s = flops * tokens / (tflops * 1e12 * MFU)
        est.throughput_note = f"{flops / 1e6:.0f} MFLOPs per token at {MFU:.0%} of {tflops:g} TFLOPS"
    return est
