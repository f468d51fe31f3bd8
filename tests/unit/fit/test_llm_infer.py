"""LLM inference mechanisms by runtime and release: what generate holds in older transformers, AutoAWQ's fused
modules, vLLM's profiling step. Expected figures are the public peaks of benchmarks/fit_cases/public/dev (source in
each case) or byte counts from the library's code."""

from __future__ import annotations

from typing import Any

import pytest

from onecard.core.errors import ConfigError
from onecard.core.gpus import custom, lookup
from onecard.fit import catalog, llm_infer
from onecard.fit.estimate import GIB
from onecard.fit.formats import GPTQ_AWQ_BYTES_PER_WEIGHT, kv_bytes_per_token
from onecard.fit.job import FitJob
from onecard.fit.plan import estimate, plan

QWEN = {"model": "qwen2.5-7b", "runtime": "transformers", "attention": "flash", "gpu": "a100-80gb"}
OPTIMUM = {"model": "llama-2-13b", "runtime": "transformers", "quant": "fp16", "gpu": "a100-80gb"}
AWQ = {"runtime": "autoawq", "quant": "awq", "new_tokens": 1, "transformers_version": "4.35",
       "autoawq_version": "0.1.6", "gpu": "rtx-4090"}


def _arch(key: str) -> catalog.LlmArch:
    arch = catalog.find(key)
    assert arch is not None
    return arch


def test_unset_release_is_the_current_behaviour() -> None:
    job = FitJob(**QWEN, quant="bf16", batch=2, ctx=32768, new_tokens=2048)
    assert estimate(job).parts == estimate(job.model_copy(update={"transformers_version": "5.0"})).parts
    assert estimate(job).parts == estimate(job.model_copy(update={"transformers_version": "4.46.0"})).parts
    assert llm_infer.transformers_release(FitJob(model="x", transformers_version="4.38.2")) == (4, 38)


def test_before_4_45_generate_holds_every_prompt_logit_in_fp32() -> None:
    # Qwen2-7B BF16 at 30720 input tokens: 42.62 GiB with transformers 4.38.2, 19.97 with 4.46 (Qwen speed benchmark,
    # cases P-qwen2-7b-bf16-in30720 / qwen25). The head's bf16 output and its `.float()` copy: 6 B per logit.
    job = FitJob(**QWEN, quant="bf16", ctx=32768, new_tokens=2048, transformers_version="4.38.2")
    est = estimate(job)
    assert est.parts["logits"] * GIB == pytest.approx(30720 * 152064 * 6)
    assert est.peak_allocated_gib == pytest.approx(42.62, rel=0.03)
    assert estimate(job.model_copy(update={"transformers_version": None})).parts["logits"] < 0.01


def test_before_4_46_only_llama_style_heads_upcast() -> None:
    # Falcon's head returns `lm_logits = self.lm_head(hidden_states)` in every release: 2 B per prompt logit
    job = FitJob(model="falcon-7b", quant="bf16", ctx=8192, new_tokens=1, transformers_version="4.40")
    assert estimate(job).parts["logits"] * GIB == pytest.approx(8191 * 65024 * 2)
    # Falcon's forward took num_logits_to_keep only in 4.47: generate on 4.46 still projects every prompt position
    assert estimate(job.model_copy(update={"transformers_version": "4.46.3"})).parts["logits"] * GIB == \
        pytest.approx(8191 * 65024 * 2)
    assert estimate(job.model_copy(update={"transformers_version": "4.47"})).parts["logits"] < 0.01
    # 4.45: the last position only, still upcast (its fp32 copy counted with the sampler's)
    late = FitJob(**QWEN, quant="bf16", ctx=8192, new_tokens=1, transformers_version="4.45.0")
    assert estimate(late).parts["logits"] * GIB == pytest.approx(152064 * 6)


def test_before_4_42_each_decode_step_copies_the_whole_tuple_cache() -> None:
    # optimum benchmark, transformers 4.32, Llama-2-13B fp16, batch 8, 512 + 512 tokens: 37.56 GiB (process).
    # The cache is 8 x 1024 x 800 KiB = 6.25 GiB; at the end of a step the old and the new one both exist.
    job = FitJob(**OPTIMUM, batch=8, ctx=1024, new_tokens=512, transformers_version="4.32")
    est = estimate(job)
    assert est.parts["kv_cache"] == pytest.approx(2 * 6.25)
    assert est.process_gib == pytest.approx(37.56, rel=0.03)
    # one new token: no decode step runs, so nothing is copied (the peak is the prompt's logits, 512 cached tokens)
    prefill = estimate(job.model_copy(update={"ctx": 513, "new_tokens": 1}))
    assert prefill.parts["kv_cache"] == pytest.approx(8 * 512 * 800 * 1024 / GIB)


def test_autoawq_fused_cache_is_allocated_for_batch_times_context() -> None:
    # AutoAWQ 0.1.6 WindowedCache: (batch, kv heads, max_seq_len, head_dim) K and V per layer, from load on, so a
    # 64-token prompt with a 2048 cache at batch 8 holds all 2 GiB (Mistral 7B: 128 KiB per position)
    arch = _arch("mistral-7b-v0.1")
    est = estimate(FitJob(model="mistral-7b-v0.1", batch=8, ctx=2048, **AWQ))
    assert est.parts["kv_cache"] == pytest.approx(8 * 2048 * kv_bytes_per_token(arch, "f16") / GIB) == 2.0
    # the 8 x 2048 prefill: 8 x 32 heads x 2047^2 scores at 10 B (fp16, fp32 copy, fp32 softmax) dominate;
    # AutoAWQ README @5c7e368 measures 16.82 GiB allocated (case P-awq-mistral7b-gemm-b8-2048)
    assert est.parts["activations"] * GIB > 8 * 32 * 2047**2 * 10
    assert est.peak_allocated_gib == pytest.approx(16.82, rel=0.03)


def test_autoawq_releases_after_0_2_6_hold_no_attention_scores() -> None:
    # 0.2.7 runs Llama-like blocks through SDPA with the (1, 1, T, T) mask; 0.2.7.post3 on, FlashAttention-2 without
    # one; a 4096-token prompt's eager scores (32 heads x 4096^2 at 10 B) are 5 GiB of the 0.2.6 peak (transformers
    # 4.46, so that the prefill, not every prompt position's logits, is the peak)
    job = FitJob(model="llama-3.1-8b", batch=1, ctx=8192,
                 **(AWQ | {"new_tokens": 4096, "transformers_version": "4.46"}))
    eager, sdpa = estimate(job.model_copy(update={"autoawq_version": "0.2.6"})), estimate(
        job.model_copy(update={"autoawq_version": "0.2.7.post2"}))
    flash = estimate(job.model_copy(update={"autoawq_version": "0.2.7.post3"}))
    assert eager.parts["activations"] - sdpa.parts["activations"] > 32 * 4096**2 * 10 / GIB * 0.9
    assert sdpa.parts["activations"] - flash.parts["activations"] == pytest.approx(4096**2 * 2 / GIB, rel=0.2)
    assert estimate(job.model_copy(update={"autoawq_version": None})).parts == flash.parts  # unset: the newest
    assert any("FlashAttention-2" in note for note in flash.assumptions)
    # Falcon's fused block kept the eager softmax in 0.2.7
    falcon = FitJob(model="falcon-7b", batch=1, ctx=4096, **(AWQ | {"new_tokens": 2048}))
    assert estimate(falcon.model_copy(update={"autoawq_version": "0.2.7"})).parts == \
        estimate(falcon.model_copy(update={"autoawq_version": "0.2.6"})).parts


def test_autoawq_fuser_holds_each_layers_qkv_twice() -> None:
    # LlamaFuser.fuse_transformer concatenates q, k, v into a new module per layer while the old model keeps the
    # originals until the loop ends: Llama-2-13B adds 40 x 3 x 5120^2 AWQ weights; 8.47 GiB measured at 64 tokens
    est = estimate(FitJob(model="llama-2-13b", batch=1, ctx=64, **AWQ))
    dup = 40 * 3 * 5120 * 5120 * GPTQ_AWQ_BYTES_PER_WEIGHT
    assert est.parts["runtime"] * GIB > dup
    assert est.peak_allocated_gib == pytest.approx(8.47, rel=0.03)
    # Falcon's fuser reuses its fused query_key_value: nothing twice; runtime is the prefill's dequantization buffer
    # (the 4544 x 18176 MLP weight at 16 bits) and the RoPE tables
    falcon = estimate(FitJob(model="falcon-7b", batch=1, ctx=64, **AWQ))
    assert falcon.parts["runtime"] * GIB == pytest.approx(4544 * 18176 * 2 + 32 * 2 * 64 * 32 * 8)


@pytest.mark.parametrize(("job", "match"), [
    ({"model": "mistral-7b-v0.1", "runtime": "autoawq", "quant": "nf4"}, "AWQ checkpoints"),
    ({"model": "llama-2-7b", "transformers_version": "four"}, "pattern"),
])
def test_what_autoawq_and_the_release_refuse(job: dict[str, Any], match: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=match):
        estimate(FitJob(**job))


def test_vllm_profiling_step_sizes_the_activations() -> None:
    # V0 (vLLM < 0.8) profiled max(max_model_len, 2048) tokens: where the forward outweighs the sampler's sort (Llama
    # 2's 32,000-token vocabulary at 8,192 and 32,768 batched tokens) the activation peak is the forward's, 4x for 4x
    job = FitJob(model="llama-2-7b", runtime="vllm", quant="bf16", ctx=8192, vram=79.22, max_num_batched_tokens=8192)
    short = estimate(job).parts["activations"]
    long = estimate(job.model_copy(update={"max_num_batched_tokens": 32768})).parts["activations"]
    mlp = 8192 * 2 * (2 * 4096 + 3 * 11008) / GIB  # residual + norm output, gate, up and their product, bf16
    assert short == pytest.approx(mlp)
    assert long == pytest.approx(4 * short, rel=0.01)


def test_vllm_profiling_peak_is_the_samplers_sort_of_every_sequences_logits() -> None:
    # vLLM PR #10511's profile of Llama-3-8B (V0, 8,192 batched tokens; benchmarks/fit_cases/public/dev/vllm.yaml):
    # "PyTorch activation peak memory 1.26GiB". Its 256 dummy sequences sample with top_k = vocab - 1 and top_p 0.99,
    # so the sampler sorts 256 x 128,256 fp32 logits after the forward: per logit the bf16 logits 2 B, the fp32 copy 4,
    # the sorted values 4, int64 indices 8, the sort's int64 reverse indices 8, CUB's spare keys 4 and values 8; with
    # the forward's 8,192 hidden states still held. The MLP (0.78 GiB) runs before it: the larger, not the sum.
    job = FitJob(model="llama-3-8b", runtime="vllm", quant="bf16", ctx=8192, vram=79.22, max_num_batched_tokens=8192)
    sort = 256 * 128256 * (2 + 4 + 4 + 8 + 8 + 4 + 8)
    hidden = 8192 * 4096 * 2
    act = estimate(job).parts["activations"]
    assert act * GIB == pytest.approx(sort + hidden)
    assert act == pytest.approx(1.26, rel=0.05)
    mlp = 8192 * 2 * (2 * 4096 + 3 * 14336) / GIB
    assert mlp < act < mlp + (sort + hidden) / GIB


def test_exllama_keeps_its_dequantization_buffer_while_decoding() -> None:
    # AutoGPTQ 0.4.2 allocates temp_dq (the largest weight at fp16) at load; the decode-bound peak of optimum's
    # GPTQ row (Llama-2-13B, batch 4, 512 + 512 tokens, transformers 4.32) still holds it: 5120 x 13824 x 2 B
    job = FitJob(**{**OPTIMUM, "quant": "gptq"}, batch=4, ctx=1024, new_tokens=512, transformers_version="4.32")
    est = estimate(job)
    rope = 40 * 2 * 4096 * 128 * 2  # and, in 4.32, each layer's cos/sin tables for Llama 2's 4096 positions
    assert est.parts["runtime"] * GIB == 5120 * 13824 * 2 + rope
    assert est.parts["kv_cache"] == pytest.approx(2 * 4 * 1024 * 800 * 1024 / GIB)  # a decode step: the tuple twice
    assert est.process_gib == pytest.approx(14.45, rel=0.07)  # measured; the rest is the A100's non-torch memory


def test_llm_int8_prefill_holds_the_int8_input_and_int32_product() -> None:
    # bitsandbytes 0.45 MatMul8bitLt.forward: int8_vectorwise_quant(A) (1 B per input element) and
    # int8_linear_matmul's int32 output (4 B per output element) beside the fp16 result; Mistral's largest is gate/up
    job = FitJob(model="mistral-7b-v0.3", quant="fp16", ctx=8192, new_tokens=1)
    fp16, int8 = estimate(job), estimate(job.model_copy(update={"quant": "int8"}))
    extra = (int8.parts["activations"] - fp16.parts["activations"]) * GIB
    assert extra == pytest.approx(8191 * (4096 + 4 * 14336))



def test_autoawq_weights_are_not_searched() -> None:
    # AutoAWQ loads an AWQ checkpoint: solve may move the context and batch, not the weight format
    from onecard.fit.knobs import space

    knobs = space(FitJob(model="mistral-7b-v0.1", runtime="autoawq", quant="awq"))
    assert "quant" not in knobs and {"ctx", "batch"} <= set(knobs)
    assert "quant" in space(FitJob(model="mistral-7b-v0.1", runtime="transformers", quant="awq"))


def test_older_releases_keep_a_rope_table_per_layer() -> None:
    # Qwen2 before transformers 4.45: every attention layer registers cos_cached and sin_cached for all
    # max_position_embeddings positions (Qwen2-7B-Instruct: 32768) at head_dim 128 in bf16: 28 x 2 x 32768 x 128 x 2 B.
    # The Qwen2 speed table at 4.38.2 (1 input + 2048 new tokens, case P-qwen2-7b-bf16-in1) measures 14.92 GiB.
    job = FitJob(**{**QWEN, "model": "Qwen/Qwen2-7B-Instruct"}, quant="bf16", ctx=2049, new_tokens=2048,
                 transformers_version="4.38.2")
    est = estimate(job)
    assert est.parts["runtime"] * GIB == 28 * 2 * 32768 * 128 * 2
    assert est.peak_allocated_gib == pytest.approx(14.92, rel=0.02)
    assert "runtime" not in estimate(job.model_copy(update={"transformers_version": "4.45.0"})).parts


def test_eager_attention_repeats_the_grouped_cache_to_every_query_head() -> None:
    """transformers' eager attention calls repeat_kv on the layer's whole cache at each decode step: k and v at every
    query head, new tensors (Mistral-7B: 8 KV heads for 32 query heads). SDPA runs are left as they were."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.llama.modeling_llama")
    kv = torch.zeros(2, 8, 100, 128, dtype=torch.float16)
    out = modeling.repeat_kv(kv, 4)
    assert out.untyped_storage().nbytes() == 4 * kv.untyped_storage().nbytes()  # a copy, not a view

    job = dict(model="mistral-7b-v0.1", runtime="transformers", quant="fp16", batch=16, ctx=1128, new_tokens=1000,
               transformers_version="4.35", gpu="a100-80gb")
    eager, sdpa = (estimate(FitJob(**job, attention=att), None) for att in ("eager", "sdpa"))
    arch = _arch("mistral-7b-v0.1")
    repeated = 2 * 16 * 1128 * 2 * arch.q_dim
    assert (eager.parts["activations"] - sdpa.parts["activations"]) * GIB == pytest.approx(repeated, rel=1e-6)


def test_a_grouped_kv_prompt_on_a_card_without_flash_materialises_sdpas_fp32_scores() -> None:
    # transformers >= 4.54 passes enable_gqa to SDPA, which only PyTorch's flash kernel (compute capability 8.0+)
    # takes with grouped KV heads: on a T4 the prefill runs the math kernel, 13 bytes per (head, query, key) score
    job = {"model": "llama-3.1-8b", "runtime": "transformers", "quant": "fp16", "ctx": 4096 + 16, "new_tokens": 16}
    t4 = estimate(FitJob(**job), lookup("t4"))
    ada = estimate(FitJob(**job), lookup("rtx-4090"))
    scores = 4096 * 4096 * (32 * llm_infer.MATH_SDPA_BYTES_PER_SCORE + llm_infer.MATH_SDPA_MASK_BYTES) / GIB
    assert t4.parts["activations"] - ada.parts["activations"] == pytest.approx(scores, rel=1e-6)
    assert scores > 6.0 and any("math kernel" in note for note in t4.assumptions)
    # not before transformers 4.54 (repeat_kv, then the memory-efficient kernel), not for a model without grouped KV
    # heads, not on a card known only by its size, and in fp32 on any card (flash takes fp16/bf16 only)
    older = estimate(FitJob(**job, transformers_version="4.53.3"), lookup("t4"))
    assert older.peak_allocated_gib == pytest.approx(ada.peak_allocated_gib)
    mha = {**job, "model": "llama-2-7b"}
    assert estimate(FitJob(**mha), lookup("t4")).peak_allocated_gib == pytest.approx(
        estimate(FitJob(**mha), lookup("rtx-4090")).peak_allocated_gib)
    assert estimate(FitJob(**job), custom(16)).peak_allocated_gib == pytest.approx(ada.peak_allocated_gib)
    fp32 = {**job, "quant": "fp32"}
    assert estimate(FitJob(**fp32), lookup("a100-80gb")).parts["activations"] > scores


def test_the_tuple_cache_leaves_a_trail_of_freed_segments_a_card_with_room_keeps() -> None:
    """transformers 4.35 grows each layer's K and V by torch.cat: every 2 MiB step above 10 MiB leaves a segment no
    later request fits. optimum-benchmark's Vicuna-7B generate at batch 16 (128 + 256 tokens) on an A100 held 28.8 GiB
    more than its forward pass; the trail is cache, so what has to fit does not move."""
    from onecard.fit.observations import predicted_figure

    vicuna = FitJob(model="llama-2-7b", runtime="transformers", quant="fp16", batch=16, ctx=384, new_tokens=256,
                    attention="eager", transformers_version="4.35.0", gpu="a100-80gb")
    per_token = 16 * 32 * 128 * 2  # one layer's K: batch x KV heads x head size x fp16
    assert llm_infer.stranded(per_token, 128, 256, 32) / GIB == pytest.approx(30.0)
    est = estimate(vicuna)
    assert est.cache_gib == pytest.approx(30.0)
    assert predicted_figure(est, "process") == pytest.approx(est.process_gib + 30.0)  # a card with room keeps it
    assert predicted_figure(est, "process", usable_gib=est.process_gib + 2.0) == pytest.approx(est.process_gib + 2.0)
    # tensors under 10 MiB share 20 MiB segments: batch 1 leaves nothing here
    assert estimate(vicuna.model_copy(update={"batch": 1})).cache_gib == 0.0
    # DynamicCache (4.42 on) frees each old tensor at once, grouped-KV models split their repeat_kv copies' segments,
    # bitsandbytes 4-bit at batch > 1 its dequantized weights': not counted
    for update in ({"transformers_version": "4.42.0"}, {"model": "mistral-7b-v0.1"}, {"quant": "nf4"}):
        assert estimate(vicuna.model_copy(update=update)).cache_gib == 0.0, update
    # AWQ's split-k outputs are too small at decode for a cache tensor to be cut from: the trail stays
    assert estimate(vicuna.model_copy(update={"quant": "awq"})).cache_gib == pytest.approx(30.0)


@pytest.mark.parametrize(("quant", "left"), [("awq", (0.9, 1.0)), ("bnb4", (0.0, 0.5))])
def test_which_quantized_linears_soak_the_trail(quant: str, left: tuple[float, float]) -> None:
    """The tuple cache replayed with each decode step's linear transients (4 Llama-7B layers, batch 16): bitsandbytes'
    fp16 copy of each weight (32 and 86 MiB, freed after its matmul) is a block the next cache tensors are cut from,
    so most of the trail goes; AutoAWQ 0.1.6's split-k output (8 x 16 tokens x out features, under 10 MiB) is not."""
    from onecard.fit.trace import replay_caching_allocator

    layers, batch, prompt, new, split_k = 4, 16, 128, 256, 8
    shapes = [(4096, 4096)] * 4 + [(4096, 11008)] * 2 + [(11008, 4096)]

    def replay(with_linears: bool) -> int:
        events: list[tuple[bool, int, int]] = []
        keys = iter(range(10**9))
        live = [next(keys) for _ in range(2 * layers)]
        events += [(True, key, batch * 32 * 128 * 2 * prompt) for key in live]
        for t in range(prompt + 1, prompt + new):
            grown = []
            for _ in range(layers):
                grown += [next(keys), next(keys)]
                events += [(True, key, batch * 32 * 128 * 2 * t) for key in grown[-2:]]
                for d_in, d_out in shapes if with_linears else []:
                    buffer, out = next(keys), next(keys)
                    size = d_in * d_out * 2 if quant == "bnb4" else split_k * batch * d_out * 2
                    events += [(True, buffer, size), (True, out, batch * d_out * 2), (False, buffer, 0),
                               (False, out, 0)]
            events += [(False, key, 0) for key in live]  # generate drops the old tuple after the step
            live = grown
        allocated, reserved = replay_caching_allocator(events)
        return reserved - allocated

    plain = replay(False)
    assert left[0] * plain <= replay(True) <= left[1] * plain + 64 * 2**20  # + one step's transient segments


@pytest.mark.parametrize("batch", [8, 16])
def test_the_trail_is_what_the_allocator_strands_of_a_cache_grown_alone(batch: int) -> None:
    """Replayed through the caching allocator's rules, K and V tensors growing a token a step (each new one allocated
    before its old one is freed, nothing else allocated) leave the closed form's segments within 10% where every
    tensor has a segment of its own (batch 16: 16.8 MiB and up); where they start in shared 20 MiB segments (batch 8:
    8.4 MiB) the closed form is the higher of the two."""
    from onecard.fit.trace import replay_caching_allocator

    per_token, prompt, new, layers = batch * 32 * 128 * 2, 128, 256, 32
    events: list[tuple[bool, int, int]] = []
    live = list(range(2 * layers))
    events += [(True, key, per_token * prompt) for key in live]
    next_key = len(live)
    for t in range(prompt + 1, prompt + new):
        for i, old in enumerate(live):
            events += [(True, next_key, per_token * t), (False, old, 0)]
            live[i], next_key = next_key, next_key + 1
    allocated, reserved = replay_caching_allocator(events)
    closed = llm_infer.stranded(per_token, prompt, new, layers)
    if batch == 16:
        assert reserved - allocated == pytest.approx(closed, rel=0.1)
    else:
        assert 0.5 * closed < reserved - allocated < closed


@pytest.mark.parametrize(("utilization", "fits"), [(0.01, False), (0.5, False), (0.9, True)])
def test_vllm_fits_only_within_the_share_of_the_card_it_takes(utilization: float, fits: bool) -> None:
    # vLLM takes gpu_memory_utilization of the card and refuses to start when the weights, its profiling run and one
    # context of KV cache do not fit there, however much of the card is left
    p = plan(FitJob(model="llama-3.1-8b", runtime="vllm", gpu="4090", gpu_memory_utilization=utilization))
    assert p.fits is fits and p.card is not None and p.budget_gib is not None
    assert p.budget_gib <= utilization * p.card.usable_gib + 1e-9
    assert fits or any("vLLM refuses to start" in note for note in p.estimate.assumptions)
