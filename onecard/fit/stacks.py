"""Training stacks: what each library does by default with the memory knobs the transformers stack does not have.

A job's `stack` fills the knobs left at "auto" (`loss`, `adapter_dtype`) or unset (`lora_dropout`,
`optimizer_in_backward`, `activation_offload`); an explicit value always wins. `transformers` is the planner's reference
stack, so its preset is what `fit` predicted before these knobs existed. Each preset cites where the tool sets it:

- transformers (Trainer + PEFT; LLaMA-Factory trains on it too): transformers' `ForCausalLMLoss` upcasts the full
  logits to fp32 (`logits.float()`); PEFT keeps adapters in fp32 (`autocast_adapter_dtype=True`) with `lora_dropout`
  0.0 (peft/tuners/lora/config.py); no optimizer-in-backward, no activation offloading. The loss of older releases
  (4.39.3, which LLaMA-Factory 0.6 ran: `logits.float()` in LlamaForCausalLM.forward, then the shifted logits into
  CrossEntropyLoss) peaks at the same 12 B per logit in backward (benchmarks/fit_logits_trace.py), so one preset
  serves both.
- trl (SFTTrainer, TRL 1.16 as `onecard[tune]` installs it): `SFTTrainer.__init__` patches the model with
  `add_fused_lm_head` (trl/trainer/sft_trainer.py:1144) and `compute_loss` calls `model(**inputs, fused_lm_head=True)`
  (:1611), so the loss never holds the full logits: `ChunkedLogProbFunction` (trl/kernels/chunked_logprob.py) projects
  the labelled tokens only (trl/trainer/utils.py:1642-1645, on CUDA) through one 16-bit tile of 4096 tokens x 32768
  vocabulary entries at a time (`mm_buf`, :347 and :413) -> `--loss tiled` (`llm_train.loss_bytes`); adapters and
  dropout are PEFT's (fp32, 0.0). TRL's `use_liger_kernel` no longer swaps in Liger's fused loss (it would replace the
  patched forward), so TRL offers no lighter loss.
- onecard (what `onecard tune` runs: onecard/tune/train.py builds TRL's SFTTrainer, onecard/tune/model.py PEFT's
  LoraConfig with `TuneConfig.lora_dropout`, 0.05 by default): the trl preset with lora_dropout 0.05. `tune` plans
  with it and passes its own lora_dropout.
- torchtune (2024 single-device recipes, recipes/configs/llama3_1/*_single_device.yaml): `loss:
  CEWithChunkedOutputLoss` (8 chunks) -> chunked; the model and its LoRA adapters are built under
  `set_default_dtype(bf16)` -> bf16 adapters; full fine-tuning sets `optimizer_in_bwd: True` ("Requires
  gradient_accumulation_steps=1"); `enable_activation_offloading: False`. QLoRA runs on torchao's NF4Tensor, whose
  `LinearNF4` saves only the weight for backward (bitsandbytes' MatMul4Bit also keeps the input).
- unsloth (FastLanguageModel.get_peft_model, the notebooks' defaults): `use_gradient_checkpointing="unsloth"`, whose
  `Unsloth_Offloaded_Gradient_Checkpointer` copies each checkpointed block input to host RAM
  (`hidden_states.to("cpu", non_blocking=True)`) -> activation offload with checkpointing; the loss is fused
  (unsloth_zoo's fused linear cross-entropy; versions before 2025 ran `fast_cross_entropy_loss` on 16-bit logits,
  writing the gradient in place, which is `--loss chunked` in memory); adapters come from PEFT (fp32).
- litgpt (finetune/lora.py, --precision bf16-true): `model(..., lm_head_chunk_size=128)` + `chunked_cross_entropy`
  on 16-bit logits -> chunked; bf16-true puts the adapters in bf16; `lora_dropout = 0.05` (finetune/lora.py
  @8641822, Oct 2023; `lora_dropout: float = 0.05` in litgpt/finetune/lora.py today). Its attention is one fused qkv
  linear whose LoRA (LoRAQKVLinear) runs one `lora_A` on one dropped copy of the input for q, k and v together
  (`F.linear(self.lora_dropout(x), self.lora_A)`, litgpt/lora.py), so the q/k/v adapters keep one copy and mask;
  with only some of q, k, v adapted its zero_pad's index_copy keeps their 16-bit update for backward
  (`llm_train.layer_saved_bytes(qkv_zero_pad)`). Fabric's precision plugin hands the chunked logits back in fp32,
  held by the loop through backward with each chunk's fp32 log-softmax (`llm_train.loss_bytes(fp32_output)`).
- axolotl: the transformers stack (PEFT, TRL), so the same defaults, and for QLoRA and 8-bit LoRA it calls PEFT's
  `prepare_model_for_kbit_training` (src/axolotl/utils/models.py @dc71d887 l.325-332; loaders/model.py
  `_prepare_model_for_quantization` today), which casts the 16-bit parameters outside the quantized linears to fp32
  (peft/utils/other.py) -> `kbit_prep`; its plugins offer a fused loss
  (`liger_fused_linear_cross_entropy`, `cut_cross_entropy`) and `gradient_checkpointing: offload` (the unsloth
  checkpointer), which `solve` and the OOM ladder may propose.
The presets other than trl, onecard and litgpt keep lora_dropout 0 (PEFT's and torchtune's default); pass
--lora-dropout for a run that sets it, and 0.05 for torchtune before 0.3.0, whose Llama 2 / Llama 3 LoRA builders set
it (torchtune/models/llama3/_model_builders.py `lora_dropout=0.05` through v0.2.1, a parameter defaulting to 0.0 from
v0.3.0; without activation checkpointing each adapter then keeps its input's dropout output and mask).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from onecard.core import extras
from onecard.core.errors import ConfigError
from onecard.fit.job import FitJob, release

__all__ = ["Resolved", "resolve", "offers", "untraced_note", "trl_release", "installed_trl", "LOSS_CHUNKS", "LOSSES",
           "CURRENT_TRL", "TRL_CHUNKED_NLL_SINCE", "TRL_HEAD_IN_COMPUTE_DTYPE_SINCE", "TRL_FUSED_HEAD_SINCE"]

LOSS_CHUNKS = 8  # torchtune CEWithChunkedOutputLoss(num_output_chunks=8); litgpt's 128-token chunks are smaller
LOSSES = ("standard", "chunked", "tiled", "fused")  # heaviest first (llm_train.loss_bytes)
# TRL's SFTTrainer loss by release (read in the PyPI wheels 1.0.0-1.16.0, trl/trainer/sft_trainer.py): before 1.4 the
# model's own loss (`loss_type` "nll"); 1.4-1.14 `chunked_nll` by default (`_chunked_cross_entropy_loss`: the labelled
# tokens' hidden states through the LM head 256 at a time, each chunk under non-reentrant checkpointing), before 1.13
# projecting through an fp32 copy of the head (`h.float() @ w.float().t()` in `_chunk`); from 1.15 the fused LM head
# (`add_fused_lm_head`). llm_train.loss_bytes counts each.
TRL_CHUNKED_NLL_SINCE, TRL_HEAD_IN_COMPUTE_DTYPE_SINCE, TRL_FUSED_HEAD_SINCE = (1, 4, 0), (1, 13, 0), (1, 15, 0)
CURRENT_TRL = (1, 16, 0)

# stack -> (loss, adapter dtype, optimizer in backward for full fine-tuning, activation offload with checkpointing,
#           quantized base linears keep their input for backward, lora_dropout)
_PRESETS: dict[str, tuple[str, str, bool, bool, bool, float]] = {
    "transformers": ("standard", "fp32", False, False, True, 0.0),
    "trl": ("tiled", "fp32", False, False, True, 0.0),
    "onecard": ("tiled", "fp32", False, False, True, 0.05),
    "axolotl": ("standard", "fp32", False, False, True, 0.0),
    "torchtune": ("chunked", "bf16", True, False, False, 0.0),
    "unsloth": ("fused", "fp32", False, True, True, 0.0),
    "litgpt": ("chunked", "bf16", False, False, True, 0.05),
}
_KBIT_PREP = frozenset({"axolotl"})  # calls PEFT's prepare_model_for_kbit_training on a quantized base
_ONE_QKV_ADAPTER = frozenset({"litgpt"})  # q, k and v adapters share one dropped input (a fused qkv LoRA)
# Lightning Fabric's HalfPrecision and BitsandbytesPrecision (lightning 2.1, which LitGPT @8641822 pins) cast the
# model's output to the default dtype: `convert_output` -> `_convert_fp_tensor(..., torch.get_default_dtype())`, fp32
_FP32_OUTPUT = frozenset({"litgpt"})
# The memory savers a stack can switch on, which solve and the OOM ladder may propose. The transformers stack
# offers none: Liger (TRL use_liger_kernel) is an extra install the user asks for with --loss fused.
# unsloth's and axolotl's offload is their checkpointer's: it offloads the checkpointed block inputs only.
_OFFLOAD_NEEDS_CKPT = frozenset({"unsloth", "axolotl"})
# optimizer_in_backward is left out of the search: it needs grad_accum 1, which the micro-batch search moves, and
# torchtune's full fine-tuning preset has it on already.
_OFFERS: dict[str, frozenset[str]] = {
    "transformers": frozenset(),
    "trl": frozenset(),
    "onecard": frozenset(),  # tune's settings have none of these knobs
    "axolotl": frozenset({"fused", "activation_offload"}),
    "torchtune": frozenset({"chunked", "activation_offload"}),
    "unsloth": frozenset({"fused", "activation_offload"}),
    "litgpt": frozenset({"chunked"}),
}


@dataclass(frozen=True)
class Resolved:
    """The stack knobs of a job with its stack's defaults filled in."""

    loss: Literal["standard", "chunked", "tiled", "fused"]
    adapter_bytes: int  # 4 for fp32 adapters, 2 for 16-bit ones
    optimizer_in_backward: bool
    activation_offload: bool
    quant_saves_input: bool  # bitsandbytes 4/8-bit linears save their input; torchao's NF4 linear does not
    lora_dropout: float  # p > 0: each adapter keeps a dropout mask (and its own dropped input)
    qkv_one_adapter: bool  # the q, k, v adapters share one dropped input (LitGPT's fused qkv LoRA)
    fp32_output: bool  # the logits come back cast to fp32 and are held through backward (LitGPT under Fabric)
    kbit_prep: bool  # PEFT's prepare_model_for_kbit_training: 16-bit non-quantized parameters cast to fp32


@functools.cache
def installed_trl() -> str | None:
    """The installed TRL release ("1.16.0"), read once without importing it; None when it is not installed."""
    return extras.release("trl")


def trl_release(job: FitJob) -> tuple[int, int, int]:
    """The TRL release the job's SFTTrainer runs: the job's `trl_version`; for `--stack onecard` unset, the installed
    TRL (what `onecard tune` would run here); else the current one (CURRENT_TRL)."""
    version = job.trl_version or (installed_trl() if job.stack == "onecard" else None)
    return release(version, CURRENT_TRL)


def resolve(job: FitJob) -> Resolved:
    """The job's loss, adapter width, LoRA dropout, optimizer-in-backward and activation offload once its stack fills
    the gaps.

    Raises:
        ConfigError: optimizer-in-backward asked together with gradient accumulation (each gradient is freed as
            soon as it is made, so there is nothing to accumulate); activation offload without checkpointing on a
            stack that offloads only checkpointed inputs (unsloth, axolotl).
    """
    loss, adapter, in_bwd, offload, saves, dropout = _PRESETS[job.stack]
    if loss == "tiled" and trl_release(job) < TRL_CHUNKED_NLL_SINCE:
        loss = "standard"  # TRL before 1.4: SFTTrainer's loss is the model's own, on the full logits
    if job.optimizer_in_backward and job.grad_accum > 1:
        raise ConfigError(f"--optimizer-in-backward frees each gradient right after its step, so --grad-accum "
                          f"{job.grad_accum} has nothing to accumulate",
                          "use --grad-accum 1, or --no-optimizer-in-backward")
    if job.activation_offload and not job.grad_ckpt and job.stack in _OFFLOAD_NEEDS_CKPT:
        raise ConfigError(f"{job.stack} offloads the inputs of checkpointed blocks; with --no-grad-ckpt there are none",
                          "use --grad-ckpt with --activation-offload, or --stack torchtune (it offloads any)")
    return Resolved(
        loss=job.loss if job.loss != "auto" else loss,  # type: ignore[arg-type]
        adapter_bytes=2 if (job.adapter_dtype if job.adapter_dtype != "auto" else adapter) == "bf16" else 4,
        optimizer_in_backward=job.optimizer_in_backward if job.optimizer_in_backward is not None else
        in_bwd and job.method == "full" and job.grad_accum == 1,
        activation_offload=job.activation_offload if job.activation_offload is not None else offload and job.grad_ckpt,
        quant_saves_input=saves,
        lora_dropout=job.lora_dropout if job.lora_dropout is not None else dropout,
        qkv_one_adapter=job.stack in _ONE_QKV_ADAPTER,
        fp32_output=job.stack in _FP32_OUTPUT,
        kbit_prep=job.kbit_prep if job.kbit_prep is not None else job.stack in _KBIT_PREP,
    )


def offers(job: FitJob) -> frozenset[str]:
    """The savers the job's stack can switch on, for solve and the OOM ladder: chunked, fused, activation_offload.

    The trl and onecard stacks offer none: TRL 1.16 refuses Liger's fused loss next to its own head, and `tune`'s
    settings (the micro-batch, checkpointing, optimizer, sequence) have no switch for activation offloading."""
    return _OFFERS[job.stack]


def untraced_note(job: FitJob) -> str | None:
    """A note for --trace and --measure, which run transformers + PEFT: the stack knobs they do not reproduce."""
    knobs = resolve(job)
    differ = [name for name, value, reference in (
        ("loss", knobs.loss, "standard"), ("adapter_dtype", knobs.adapter_bytes, 4),
        ("lora_dropout", knobs.lora_dropout if job.method != "full" else 0.0, 0.0),
        ("optimizer_in_backward", knobs.optimizer_in_backward, False),
        ("activation_offload", knobs.activation_offload, False)) if value != reference]
    if not differ:
        return None
    return (f"run on the transformers + PEFT stack: {', '.join(differ)} of --stack {job.stack} (or the flags) are in "
            "the analytic estimate only")
