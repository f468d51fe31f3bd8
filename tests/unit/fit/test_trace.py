"""--trace on fake tensors: exact bytes for what can be counted by hand, and a sane peak around them."""

from __future__ import annotations

from typing import Any

import pytest

from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob

pytest.importorskip("torch", reason="--trace needs torch (pip install 'onecard[fit]')")
transformers = pytest.importorskip("transformers", reason="--trace needs transformers (pip install 'onecard[fit]')")

from onecard.fit.trace import trace  # noqa: E402

# A tiny Llama: 2 layers, hidden 64, 4 query heads and 2 KV heads of 16, MLP 128, vocabulary 1000, untied head.
V, H, L, FF, NH, KVH = 1000, 64, 2, 128, 4, 2
HD = H // NH


def _tiny() -> Any:
    return transformers.LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=FF, num_hidden_layers=L,
                                    num_attention_heads=NH, num_key_value_heads=KVH, max_position_embeddings=512)


# Parameters by hand: embedding and head V x H; per layer q, o (H x H), k, v (H x KVH*HD), gate, up, down (H x FF),
# two RMSNorms (H); a final norm (H).
PARAMS = 2 * V * H + L * (2 * H * H + 2 * H * KVH * HD + 3 * H * FF + 2 * H) + H
ROPE_BUFFERS = 2 * (HD // 2) * 4  # inv_freq and original_inv_freq, fp32
# LoRA r on every linear of a layer: r x (in + out) fp32 each, A and B.
LORA_IO = [(H, H), (H, KVH * HD), (H, KVH * HD), (H, H), (H, FF), (H, FF), (FF, H)]


def _bytes(gib: float) -> int:
    return round(gib * GIB)


def test_full_training_weights_match_the_hand_count() -> None:
    est = trace(FitJob(model="tiny", job="train", method="full", quant="bf16", seq=128, batch=2, grad_ckpt=False),
                _tiny())
    assert _bytes(est.parts["weights"]) == PARAMS * 2 + ROPE_BUFFERS
    # AdamW holds two states per parameter, in the parameters' bf16, plus a step counter per tensor.
    assert _bytes(est.parts["optimizer"]) >= 2 * PARAMS * 2
    assert _bytes(est.peak_allocated_gib) >= 2 * PARAMS * 2 + ROPE_BUFFERS, "peak >= weights + gradients"
    # reserved: the trace's allocations replayed through the caching allocator, at least what was allocated
    assert est.slack_gib >= 0 and est.peak_reserved_gib >= est.peak_allocated_gib and est.context_gib == 0


def test_lora_adds_exactly_the_adapters() -> None:
    pytest.importorskip("peft", reason="LoRA tracing needs peft (pip install 'onecard[tune]')")
    r = 8
    est = trace(FitJob(model="tiny", job="train", method="lora", lora_rank=r, seq=128, batch=2), _tiny())
    assert _bytes(est.parts["weights"]) == PARAMS * 2 + ROPE_BUFFERS
    assert _bytes(est.parts["adapters"]) == L * sum(r * (i + o) for i, o in LORA_IO) * 4


def test_a_loop_holding_the_output_keeps_the_logits_in_the_trace_as_the_planner_counts() -> None:
    pytest.importorskip("peft", reason="LoRA tracing needs peft (pip install 'onecard[tune]')")
    job = dict(model="tiny", job="train", method="lora", lora_rank=8, seq=256, batch=2, grad_ckpt=True)
    dropped = trace(FitJob(**job), _tiny()).peak_allocated_gib
    held = trace(FitJob(**job, holds_output=True), _tiny()).peak_allocated_gib
    assert _bytes(held - dropped) == pytest.approx(2 * 256 * V * 2, rel=0.02)  # the bf16 logits


def test_checkpointing_lowers_the_traced_peak() -> None:
    job = FitJob(model="tiny", job="train", method="full", quant="bf16", seq=256, batch=2, grad_ckpt=False)
    without = trace(job, _tiny()).peak_allocated_gib
    with_ckpt = trace(job.model_copy(update={"grad_ckpt": True}), _tiny()).peak_allocated_gib
    assert with_ckpt < without


def test_inference_counts_the_kv_cache_exactly() -> None:
    B, T = 2, 128
    est = trace(FitJob(model="tiny", job="infer", quant="fp16", ctx=T, batch=B), _tiny())
    assert _bytes(est.parts["kv_cache"]) == 2 * L * B * KVH * T * HD * 2  # K and V, fp16
    assert _bytes(est.parts["weights"]) == PARAMS * 2 + ROPE_BUFFERS
    assert "gradients" not in est.parts and "optimizer" not in est.parts


def test_a_local_config_json_is_read(tmp_path: Any) -> None:
    (tmp_path / "config.json").write_text(_tiny().to_json_string(), encoding="utf-8")
    est = trace(FitJob(model=str(tmp_path), job="infer", quant="bf16", ctx=64))
    assert _bytes(est.parts["weights"]) == PARAMS * 2 + ROPE_BUFFERS


@pytest.mark.slow
def test_llama_3_8b_lora_step_on_fake_tensors() -> None:
    pytest.importorskip("peft", reason="LoRA tracing needs peft (pip install 'onecard[tune]')")
    cfg = transformers.LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192)
    est = trace(FitJob(model="llama-3.1-8b", job="train", method="lora", seq=1024, batch=1), cfg)
    params = 2 * 128256 * 4096 + 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096) + 4096
    assert params == 8_030_261_248  # Llama 3.1 8B, as published
    assert _bytes(est.parts["weights"]) == params * 2 + 2 * 64 * 4
    # fp32 logits of 1024 x 128256 alone are 0.49 GiB: activations must be at least that.
    assert est.parts["activations"] > 1024 * 128256 * 4 / GIB


def test_a_traced_lora_step_reserves_what_the_planner_says(tmp_path: Any) -> None:
    # The step's allocations replayed through the caching allocator's rules against the analytic reserved figure
    # (its loss segments, llm_train.loss_segments_bytes): a tiny Llama with Llama 2's vocabulary, where the loss's
    # (seq x vocab) tensors are most of the step and the allocator's fragmentation at the loss is most of the slack
    pytest.importorskip("peft", reason="LoRA tracing needs peft (pip install 'onecard[tune]')")
    from onecard.fit.plan import estimate

    config = _tiny()
    config.vocab_size = 32000
    (tmp_path / "config.json").write_text(config.to_json_string(), encoding="utf-8")
    job = FitJob(model=str(tmp_path), job="train", method="lora", lora_rank=8, lora_targets="all-linear",
                 quant="bf16", seq=2048, batch=1, grad_ckpt=True)
    analytic, traced = estimate(job), trace(job)
    assert traced.peak_allocated_gib == pytest.approx(analytic.peak_allocated_gib, rel=0.01)
    assert traced.slack_gib > 0.1  # the fp32 logit tensors take segments of their own
    assert traced.peak_reserved_gib == pytest.approx(analytic.peak_reserved_gib, rel=0.05)


@pytest.mark.parametrize(("flags", "named"), [(dict(model="smollm2-135m", runtime="vllm"), "vllm plans its own memory"),
                                              (dict(model="tinylm-tiny", job="train"), "onecard's own tinylm")])
def test_trace_refuses_a_job_it_would_not_trace_as_planned(flags: dict[str, object], named: str) -> None:
    from onecard.core.errors import ConfigError
    from onecard.fit.trace import hf_config

    with pytest.raises(ConfigError, match=named):
        hf_config(FitJob(**flags))  # type: ignore[arg-type]


def test_rows_that_grow_longer_leave_cache_not_a_bigger_need() -> None:
    # A run whose every step is longer than the last cannot reuse the shorter steps' freed segments: reserved memory
    # climbs far above what steps of one length reserve. What the card must hold does not: under a cap a little
    # above the allocated peak the caching allocator gives those segments back and the run completes.
    pytest.importorskip("peft", reason="LoRA tracing needs peft (pip install 'onecard[tune]')")
    from onecard.fit.trace import ReplayOutOfMemory, replay_caching_allocator, training_log

    config = _tiny()
    config.vocab_size = 32000  # the loss's (seq x vocab) tensors are most of each step
    job = FitJob(model="tiny", job="train", method="lora", lora_rank=8, quant="bf16", seq=2048, batch=1,
                 grad_ckpt=True)
    one_length = training_log(job, [2048] * 4, config)
    growing = training_log(job, [256, 512, 1024, 2048], config)
    (fixed_alloc, fixed_reserved), (grown_alloc, grown_reserved) = map(replay_caching_allocator, (one_length, growing))
    assert grown_alloc == pytest.approx(fixed_alloc, rel=0.01)  # the longest step sets the peak either way
    assert grown_reserved > fixed_reserved + 0.3 * grown_alloc
    replay_caching_allocator(growing, capacity=int(grown_alloc * 1.05))
    with pytest.raises(ReplayOutOfMemory):
        replay_caching_allocator(growing, capacity=int(grown_alloc * 0.95))
