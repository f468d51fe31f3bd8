"""Training stacks: the chunked/fused loss, 16-bit adapters, optimizer-in-backward, activation offload, and presets."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from onecard.core.errors import ConfigError
from onecard.core.gpus import lookup
from onecard.fit import llm_train, stacks
from onecard.fit.catalog import find
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.knobs import space, steps
from onecard.fit.ladder import oom_ladder
from onecard.fit.plan import estimate

T, V, H, L = 2 * 2048, 128256, 4096, 32  # llama-3.1-8b at batch 2 x 2048
LORA = dict(model="llama-3.1-8b", job="train", method="lora", quant="bf16", batch=2, seq=2048, optimizer="adamw")


def _est(**job: Any) -> Any:
    return estimate(FitJob(**{**LORA, **job}), lookup("rtx-4090"))


def test_chunked_loss_keeps_16_bit_logits_and_one_fp32_chunk() -> None:
    # standard: 12 B per logit (fp32 log-softmax, its grad, the input grad); chunked: 2 B + one of 8 chunks at 4 B
    assert llm_train.loss_bytes("standard", T, V, H, 2) == T * V * 12
    assert llm_train.loss_bytes("standard", T, V, H, 2) - llm_train.loss_bytes("chunked", T, V, H, 2) == T * V * 9.5
    standard, chunked = _est(), _est(loss="chunked")
    assert standard.parts["logits"] == pytest.approx(T * V * 12 / GIB)
    assert standard.peak_allocated_gib - chunked.peak_allocated_gib > 4  # the loss no longer sets the peak


def test_fused_loss_holds_the_input_gradient_and_one_liger_chunk() -> None:
    # Liger: inc_factor = ceil(V / H) = 32, chunk = next_pow2(ceil(4096 / 32)) = 128 tokens of logits
    assert llm_train.loss_bytes("fused", T, V, H, 2) == 2 * T * H + 2 * 128 * V


def test_bf16_adapters_halve_adapters_and_their_states() -> None:
    fp32, bf16 = _est(), _est(adapter_dtype="bf16")
    assert bf16.parts["adapters"] == pytest.approx(fp32.parts["adapters"] / 2)
    assert bf16.parts["optimizer"] == pytest.approx(fp32.parts["optimizer"] / 2)  # AdamW moments in the param dtype


def test_optimizer_in_backward_removes_the_full_gradient_buffer() -> None:
    job = dict(method="full", optimizer="paged_adamw8bit", loss="chunked")  # so that backward sets the peak
    plain, in_bwd = _est(**job), _est(**job, optimizer_in_backward=True)
    assert plain.parts["gradients"] == pytest.approx(8.03e9 * 2 / GIB, rel=0.01)  # every bf16 gradient at once
    assert in_bwd.parts["gradients"] == pytest.approx(V * H * 2 / GIB)  # the largest one: the output projection
    with pytest.raises(ConfigError, match="grad-accum"):
        _est(**job, optimizer_in_backward=True, grad_accum=2)


def test_activation_offload_moves_the_checkpointed_inputs_to_host_ram() -> None:
    on, off = _est(activation_offload=True), _est()
    block = 2 * H * T  # one checkpointed block input, bf16
    assert off.parts["activations"] - on.parts["activations"] == pytest.approx((L - 2) * block / GIB)
    assert on.cpu_gib == pytest.approx((L - 2) * block / GIB)


def test_unsloth_offloads_only_checkpointed_inputs() -> None:
    assert not stacks.resolve(FitJob(model="m", job="train", stack="unsloth", grad_ckpt=False)).activation_offload
    with pytest.raises(ConfigError, match="checkpointed"):
        stacks.resolve(FitJob(model="m", job="train", stack="unsloth", grad_ckpt=False, activation_offload=True))


def test_defaults_are_the_transformers_stack() -> None:
    explicit = _est(stack="transformers", loss="standard", adapter_dtype="fp32", optimizer_in_backward=False,
                    activation_offload=False)
    assert _est().parts == explicit.parts


@pytest.mark.parametrize(("stack", "method", "expected"), [
    ("transformers", "lora", ("standard", 4, False, False, True)),
    ("axolotl", "lora", ("standard", 4, False, False, True)),
    ("torchtune", "lora", ("chunked", 2, False, False, False)),
    ("torchtune", "full", ("chunked", 2, True, False, False)),
    ("unsloth", "qlora", ("fused", 4, False, True, True)),
    ("litgpt", "lora", ("chunked", 2, False, False, True)),
    ("trl", "qlora", ("tiled", 4, False, False, True)),
    ("onecard", "qlora", ("tiled", 4, False, False, True)),
])
def test_stack_presets_set_the_documented_knobs(stack: str, method: str, expected: tuple[Any, ...]) -> None:
    r = stacks.resolve(FitJob(model="m", job="train", stack=stack, method=method))
    assert (r.loss, r.adapter_bytes, r.optimizer_in_backward, r.activation_offload, r.quant_saves_input) == expected


def test_lora_dropout_is_the_stacks_unless_given() -> None:
    """PEFT's LoraConfig default is 0.0; `onecard tune` sets 0.05 (TuneConfig.lora_dropout)."""
    from onecard.tune.config import TuneConfig

    tune_default = TuneConfig.model_fields["lora_dropout"].default
    assert stacks.resolve(FitJob(model="m", job="train", stack="onecard")).lora_dropout == tune_default == 0.05
    for stack in ("transformers", "trl", "torchtune", "unsloth", "axolotl"):
        assert stacks.resolve(FitJob(model="m", job="train", stack=stack)).lora_dropout == 0.0  # type: ignore[arg-type]
    # LitGPT's finetune/lora.py: `lora_dropout = 0.05` (@8641822), `lora_dropout: float = 0.05` (today)
    assert stacks.resolve(FitJob(model="m", job="train", stack="litgpt")).lora_dropout == 0.05
    assert stacks.resolve(FitJob(model="m", job="train", stack="onecard", lora_dropout=0.0)).lora_dropout == 0.0
    # the mask costs the same for any p > 0: 1 byte per adapter input element, in the one block backward recomputes
    with_mask, without = _est(stack="onecard", grad_ckpt=False), _est(stack="onecard", grad_ckpt=False,
                                                                      lora_dropout=0.0)
    adapted = llm_train.lora_targets(find("llama-3.1-8b"), "all-linear")  # type: ignore[arg-type]
    mask = L * T * sum(lin.d_in for lin in adapted)  # every block keeps its activations without checkpointing
    assert with_mask.peak_allocated_gib - without.peak_allocated_gib == pytest.approx(mask / GIB)


def test_tiled_loss_holds_one_trl_tile_and_the_input_gradients() -> None:
    """TRL's fused LM head: a 4096 x 32768 16-bit tile (fewer rows for fewer tokens) + the gathered 16-bit input,
    its fp32 gradient and 16-bit cast; the guide's 8B QLoRA at 2048 tokens holds 0.19 GiB there, not 2.94."""
    assert llm_train.loss_bytes("tiled", 2048, V, H, 2) == 2 * 2048 * 32768 + (2 * 2 + 4) * 2048 * H
    assert llm_train.loss_bytes("tiled", 2048, V, H, 2) / GIB == pytest.approx(0.1875)
    assert llm_train.loss_bytes("tiled", 8192, V, H, 2) == 2 * 4096 * 32768 + 8 * 8192 * H  # the tile stops at 4096
    assert llm_train.loss_bytes("tiled", 1024, 49152, 576, 2) == 2 * 1024 * 32768 + 8 * 1024 * 576  # full width
    qlora = dict(method="qlora", quant="auto", batch=1, optimizer="auto")
    plain, trl = _est(**qlora), _est(**qlora, stack="trl")
    assert plain.parts["logits"] == pytest.approx(2048 * V * 12 / GIB)  # the transformers stack, fp32 logits
    assert plain.process_gib - trl.process_gib > 2  # the loss no longer sets the peak
    assert any("TRL's fused LM head" in a for a in trl.assumptions)


class _LiveBytes:
    """A dispatch mode that counts the bytes of live tensor storages and their peak (as `fit --trace` does)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.weak import WeakIdKeyDictionary

        self.live = self.peak = 0
        self.paused = False
        seen: Any = WeakIdKeyDictionary()
        counter = self

        class Mode(TorchDispatchMode):  # type: ignore[misc]
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                import torch

                out = func(*args, **(kwargs or {}))
                if not counter.paused:
                    for t in torch.utils._pytree.tree_leaves(out):
                        if isinstance(t, torch.Tensor):
                            counter.add(t)
                    counter.peak = max(counter.peak, counter.live)
                return out

        self.seen, self.mode = seen, Mode()

    def add(self, t: Any) -> None:
        import weakref

        st = t.untyped_storage()
        if st not in self.seen:
            self.seen[st] = st.nbytes()
            self.live += st.nbytes()
            weakref.finalize(st, self._free, st.nbytes())

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes


@pytest.mark.slow
def test_tiled_loss_matches_trls_fused_lm_head_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL's own fused LM head (trl.trainer.utils.add_fused_lm_head, as SFTTrainer patches the model) on a CPU, bf16:
    the bytes the head and the loss add, forward and backward, against `loss_bytes("tiled")` for the scored tokens.

    On CUDA the tiles are folded by Triton kernels, and the fp32 gradient accumulates through
    `torch.addmm(..., out_dtype=torch.float32, out=acc)`, none of which allocates; their CPU stand-ins
    (`_forward_tile`, `_backward_tile`, `_addmm_fp32` upcast whole tiles to fp32) run uncounted here. The rest is
    TRL's code as it runs on a GPU: the gathered labelled tokens, the tile buffer, the saved input, the gradients.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("trl")
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils
    from transformers.modeling_outputs import BaseModelOutputWithPast

    if not hasattr(trl_utils, "add_fused_lm_head"):
        pytest.skip("this TRL has no fused LM head")
    B, T, h, vocab = 2, 256, 256, 34_000  # two vocabulary tiles; half of each row is prompt (label -100)
    cfg = transformers.LlamaConfig(hidden_size=h, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=4, vocab_size=vocab, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).requires_grad_(False)
    hidden = torch.randn(B, T, h, dtype=torch.bfloat16, requires_grad=True)  # the backbone's output
    model.model.forward = lambda *a, **k: BaseModelOutputWithPast(last_hidden_state=hidden)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer calls it
    counter = _LiveBytes()

    def uncounted(fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            counter.paused = True
            try:
                return fn(*args, **kwargs)
            finally:
                counter.paused = False
        return run

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: True)  # labelled tokens only, as on CUDA
    for name in ("_forward_tile", "_backward_tile", "_addmm_fp32"):
        monkeypatch.setattr(kernels, name, uncounted(getattr(kernels, name)))
    ids = torch.randint(0, vocab, (B, T))
    labels = ids.clone()
    labels[:, : T // 2] = -100
    for t in [*model.parameters(), hidden, ids, labels]:
        counter.add(t)
    before = counter.live
    with counter.mode:
        model(input_ids=ids, labels=labels, use_cache=False, fused_lm_head=True).loss.backward()
    measured = counter.peak - before
    scored = int((labels[:, 1:] != -100).sum())
    formula = llm_train.loss_bytes("tiled", scored, vocab, h, 2)
    assert 0 <= measured - formula <= 64 * scored  # + TRL's per-token statistics (log-sum-exp, targets...)
    assert llm_train.loss_bytes("tiled", B * T, vocab, h, 2) >= measured  # the planner counts every token


def test_explicit_knobs_win_over_the_stack() -> None:
    r = stacks.resolve(FitJob(model="m", job="train", stack="torchtune", method="full", loss="standard",
                              adapter_dtype="fp32", optimizer_in_backward=False, activation_offload=True))
    assert (r.loss, r.adapter_bytes, r.optimizer_in_backward, r.activation_offload) == ("standard", 4, False, True)
    # torchtune's optimizer_in_bwd needs gradient_accumulation_steps=1: with accumulation the preset leaves it off
    assert not stacks.resolve(FitJob(model="m", job="train", stack="torchtune", method="full", grad_accum=4)
                              ).optimizer_in_backward


def test_cli_flags_come_from_the_model() -> None:
    from onecard.core.config import add_config_flags, config_from_args

    parser = argparse.ArgumentParser()
    add_config_flags(parser, FitJob, positional=("model",))
    args = parser.parse_args(["llama-3.1-8b", "--stack", "torchtune", "--loss", "fused", "--adapter-dtype", "fp32",
                              "--no-optimizer-in-backward", "--activation-offload"])
    job = config_from_args(FitJob, args)
    assert (job.stack, job.loss, job.adapter_dtype, job.optimizer_in_backward, job.activation_offload) == \
        ("torchtune", "fused", "fp32", False, True)


def test_solve_tries_the_savers_only_where_the_stack_offers_them() -> None:
    base = dict(model="llama-3.1-8b", job="train", method="qlora")
    assert not {"loss", "activation_offload"} & set(space(FitJob(**base)))
    assert space(FitJob(**base, stack="axolotl"))["loss"] == ["auto", "fused"]
    assert space(FitJob(**base, stack="axolotl"))["activation_offload"] == [None, True]
    tune = space(FitJob(**base, stack="torchtune"))
    assert "loss" not in tune and tune["activation_offload"] == [None, True]  # chunked already; fused not offered


def test_ladder_offloads_first_where_the_stack_can() -> None:
    job = FitJob(model="llama-3.1-8b", job="train", method="lora", quant="bf16", batch=4, seq=4096, stack="torchtune")
    first, reason = next(oom_ladder(job))
    assert first.activation_offload is True and reason == "activation offloading on"
    plain = job.model_copy(update={"stack": "transformers"})
    assert all(s.apply(plain) is None for s in steps(plain) if s.name in ("loss", "activation_offload"))
    axolotl = plain.model_copy(update={"stack": "axolotl"})
    assert next(oom_ladder(axolotl))[0].loss == "fused"


def test_trace_and_measure_say_what_they_do_not_reproduce() -> None:
    assert stacks.untraced_note(FitJob(model="m", job="train")) is None
    note = stacks.untraced_note(FitJob(model="m", job="train", stack="torchtune"))
    assert note is not None and "loss" in note and "adapter_dtype" in note
    note = stacks.untraced_note(FitJob(model="m", job="train", stack="onecard"))
    assert note is not None and "loss" in note and "lora_dropout" in note


def _saved_by_one_block(n: int, bf16_adapters: bool, dropout: float) -> int:
    """Bytes autograd saves for backward in one Llama block (SmolLM2-135M's shape) with PEFT LoRA on all linears:
    bf16 adapters without autocast (torchtune, litgpt), or PEFT's fp32 adapters under bf16 autocast (Trainer)."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    arch = find("smollm2-135m")
    assert arch is not None
    cfg = transformers.LlamaConfig(vocab_size=1000, hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                                   num_hidden_layers=2, num_attention_heads=arch.n_heads,
                                   num_key_value_heads=arch.n_kv_heads, head_dim=arch.head_dim,
                                   attn_implementation="sdpa")
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", lora_dropout=dropout),
                           autocast_adapter_dtype=not bf16_adapters)  # False: adapters stay bf16, as torchtune's
    model.train()
    layer = [m for m in model.modules() if isinstance(m, LlamaDecoderLayer)][1]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    inside = [False]

    def pack(t: Any) -> Any:
        if inside[0] and t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    layer.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True))
    layer.register_forward_hook(lambda *_: inside.__setitem__(0, False))
    ids = torch.randint(0, 1000, (1, n))
    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
          torch.autocast("cpu", dtype=torch.bfloat16, enabled=not bf16_adapters)):
        model(input_ids=ids, labels=ids)
    return sum(saved.values())


def test_bf16_adapter_layer_formula_matches_autograd() -> None:
    """16-bit adapters without autocast (torchtune, litgpt): saved bytes of one Llama block, to the formula."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    arch = find("smollm2-135m")
    assert arch is not None
    n = 128
    adapted = llm_train.lora_targets(arch, "all-linear")
    formula = llm_train.layer_saved_bytes(arch, 2, False, False, adapted, "sdpa", n, rank=8, adapter_bytes=2) * n
    formula += 2 * 2 * n * arch.head_dim  # RoPE cos/sin: made once per model, seen here by this layer
    assert formula == pytest.approx(_saved_by_one_block(n, bf16_adapters=True, dropout=0.0), rel=0.01)


@pytest.mark.parametrize("bf16_adapters", [True, False])
def test_lora_dropout_formula_matches_autograd(bf16_adapters: bool) -> None:
    """lora_dropout 0.05 (`onecard tune`) against 0, one block: each adapter saves its dropped input and a 1-byte
    mask; with fp32 adapters under autocast the dropped input is the 16-bit copy they keep anyway, so only the masks
    are new. (The dropout-free figures are checked above for bf16 adapters; fp32 adapters also save autocast's 16-bit
    copies of their weights, the estimate's separate `casts` term.)"""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    arch = find("smollm2-135m")
    assert arch is not None
    n = 128
    adapted = llm_train.lora_targets(arch, "all-linear")
    width = 2 if bf16_adapters else 4
    with_mask, plain = (llm_train.layer_saved_bytes(arch, 2, False, False, adapted, "sdpa", n, rank=8,
                                                    adapter_bytes=width, dropout=d) * n for d in (True, False))
    inputs = sum(lin.d_in for lin in adapted)
    if not bf16_adapters:
        assert with_mask - plain == inputs * n  # only the masks are new
    # On CUDA dropout runs fused (ATen Dropout.cpp is_fused_kernel_acceptable: native_dropout keeps a bool mask); on
    # a CPU it multiplies by a noise tensor in the input's dtype (bf16, or fp32 after PEFT's cast), which it keeps
    cpu_mask = 2 if bf16_adapters else 4
    measured = _saved_by_one_block(n, bf16_adapters, 0.05) - _saved_by_one_block(n, bf16_adapters, 0.0)
    assert measured == with_mask - plain + (cpu_mask - 1) * inputs * n


def test_litgpt_drops_one_copy_for_its_fused_qkv_adapter() -> None:
    """LitGPT's LoRAQKVLinear runs one lora_A on one `lora_dropout(x)` for q and v together (litgpt/lora.py): one
    16-bit copy and one 1-byte mask of the block's attention input, where separate PEFT-style q and v adapters with
    16-bit weights (torchtune) keep one each. Setting: the LitGPT 13B table's LoRA r=8 on q and v, 1,304 tokens."""
    arch = find("llama-2-13b")
    assert arch is not None
    adapted = llm_train.lora_targets(arch, "qv")
    one = llm_train.layer_saved_bytes(arch, 2, False, False, adapted, "sdpa", 1304, 8, 2, True, qkv_one_adapter=True)
    two = llm_train.layer_saved_bytes(arch, 2, False, False, adapted, "sdpa", 1304, 8, 2, True)
    assert two - one == (2 + 1) * arch.hidden  # the second copy and mask, per token
    job = {"model": "llama-2-13b", "method": "lora", "quant": "bf16", "batch": 1, "seq": 1304, "lora_rank": 8,
           "lora_targets": "qv", "grad_ckpt": False, "optimizer": "adamw"}
    litgpt, no_dropout = _est(stack="litgpt", **job), _est(stack="litgpt", lora_dropout=0.0, **job)
    # with dropout the adapter no longer reads the saved input itself: its copy replaces it, the mask comes on top
    assert (litgpt.parts["activations"] - no_dropout.parts["activations"]) * GIB == pytest.approx(40 * 1304 * 5120)


def test_litgpt_zero_pad_keeps_the_qv_update() -> None:
    """LitGPT's LoRAQKVLinear with q and v adapted, k not (finetune/lora.py @8641822: lora_query, lora_value):
    zero_pad scatters the (T, q + v) update into the qkv width with index_copy, whose backward keeps that source,
    16-bit: 2 x (4096 + 4096) B per token and block for Llama 2 7B. With q, k and v all adapted zero_pad returns the
    update as is (nothing kept); PEFT-style separate adapters have no zero_pad."""
    arch = find("llama-2-7b")
    assert arch is not None
    qv, qkv = llm_train.lora_targets(arch, "qv"), llm_train.lora_targets(arch, "q,k,v")

    def saved(adapted: list[Any], pad: bool) -> float:
        return llm_train.layer_saved_bytes(arch, 2, False, False, adapted, "sdpa", 1304, 8, 2, True, True, pad)

    assert saved(qv, True) - saved(qv, False) == 2 * (arch.q_dim + arch.kv_dim) == 4 * 4096
    assert saved(qkv, True) == saved(qkv, False)


def test_index_copy_keeps_its_source_for_backward() -> None:
    """The autograd fact the zero_pad term rests on, on the op LitGPT calls (out-of-place index_copy @8641822)."""
    torch = pytest.importorskip("torch")
    T, q, v = 64, 32, 32
    after_b = torch.randn(T, q + v, dtype=torch.bfloat16, requires_grad=True) * 1.0  # non-leaf, as LoRA's output
    lora_ind = torch.tensor(list(range(q)) + list(range(2 * q, 2 * q + v)))
    saved: list[Any] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        after_b.new_zeros(T, 3 * q).index_copy(1, lora_ind, after_b)
    assert any(t.untyped_storage().data_ptr() == after_b.untyped_storage().data_ptr() for t in saved)


def test_litgpt_loss_holds_fabric_fp32_logits() -> None:
    """Under Fabric (bf16-true or bnb), LitGPT's chunked logits come back cast to fp32 (convert_output), the loop
    keeps the list through backward, and each chunk's cross-entropy saves its fp32 log-softmax: 8 B per logit, where
    16-bit chunks would keep 2 B + one chunk upcast. B27's step: 1,304 tokens x 32,000 vocabulary."""
    tokens, vocab = 1304, 32000
    assert llm_train.loss_bytes("chunked", tokens, vocab, 4096, 2, fp32_output=True) == tokens * vocab * 8
    assert stacks.resolve(FitJob(model="llama-2-7b", job="train", stack="litgpt")).fp32_output
    assert not stacks.resolve(FitJob(model="llama-2-7b", job="train", stack="torchtune")).fp32_output
    torch = pytest.importorskip("torch")
    logits = torch.randn(128, 512, dtype=torch.bfloat16, requires_grad=True).float()  # the plugin's cast
    saved: list[Any] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch.nn.functional.cross_entropy(logits, torch.zeros(128, dtype=torch.long), reduction="none")
    assert max(t.nbytes for t in saved if t.dtype == torch.float32) == 128 * 512 * 4  # the fp32 log-softmax


@pytest.mark.parametrize("n_head, n_kv", [(8, 2), (8, 8)])
def test_litgpt_sdpa_keeps_expanded_kv_or_the_fused_qkv(n_head: int, n_kv: int) -> None:
    """LitGPT's attention (litgpt/model.py @5895df10:229-259) with its own tensor steps: with grouped heads k and v
    are expanded to every query head and reshaped into new tensors, 2 x (q - kv) more than their own width; with one KV
    head per query head v stays a view of the permuted fused qkv output, which SDPA's saved v keeps alive whole. The
    storages SDPA saves, counted with saved_tensors_hooks, against `layer_saved_bytes(kv_expanded)`."""
    torch = pytest.importorskip("torch")
    B, T, hs = 1, 16, 8
    q_per_kv = n_head // n_kv
    qkv = torch.randn(B, T, (n_head + 2 * n_kv) * hs, requires_grad=True) * 1.0  # the fused linear's output
    q, k, v = qkv.view(B, T, n_kv, q_per_kv + 2, hs).permute(0, 2, 3, 1, 4).split((q_per_kv, 1, 1), dim=2)
    if n_kv != n_head:
        k, v = k.expand(B, n_kv, q_per_kv, T, hs), v.expand(B, n_kv, q_per_kv, T, hs)
    q, k, v = (t.reshape(B, -1, T, hs) for t in (q, k, v))
    q, k = q * 1.0, k * 1.0  # apply_rope's new tensors
    saved: dict[int, int] = {}
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) and t,
            lambda t: t):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    inputs = {t.untyped_storage().data_ptr() for t in (q, k, v)}
    kept = sum(n for ptr, n in saved.items() if ptr in inputs) // 4 // T  # fp32 elements per token
    q_dim, kv_dim = n_head * hs, n_kv * hs
    assert kept - (q_dim + 2 * kv_dim) == (2 * (q_dim - kv_dim) if n_kv != n_head else q_dim + kv_dim)

    arch = find("mistral-7b-v0.1" if n_kv != n_head else "llama-2-7b")
    assert arch is not None
    more = [llm_train.layer_saved_bytes(arch, 2, False, False, [], "sdpa", 512, kv_expanded=e) for e in (True, False)]
    assert more[0] - more[1] == 2 * (2 * (arch.q_dim - arch.kv_dim) if n_kv != n_head else arch.q_dim + arch.kv_dim)


def test_litgpt_quantizes_its_untied_head_from_fp16() -> None:
    """LitGPT generate of Falcon-7B (tutorials/quantize.md @982abcbc, A100 40GB, max_memory_allocated): its head is
    its own tensor (the catalog's Falcon ties it), Lightning quantizes it with the blocks, and bitsandbytes
    dequantizes it to fp16 then bf16 in the prefill (4 B per weight of the head, the largest 4-bit weight); the int8
    load holds an fp16 copy and two int8 outputs beside the old weight. Published (GB = 1e9 B): nf4 5.72, int8 8.70."""
    job = dict(model="falcon-7b", job="infer", batch=1, ctx=261, new_tokens=256)
    arch = find("falcon-7b")
    assert arch is not None
    head = arch.vocab * arch.hidden
    a100 = lookup("a100-40gb")
    plain, lit = (estimate(FitJob(**job, quant="nf4", stack=s), a100) for s in ("transformers", "litgpt"))
    assert (lit.parts["runtime"] - plain.parts["runtime"]) * GIB == pytest.approx(
        4 * head - 2 * max(lin.d_in * lin.d_out for lin in llm_train.linears(arch)))
    assert (lit.parts["weights"] - plain.parts["weights"]) * GIB == pytest.approx(head * (0.5 + 4 / 64))
    for quant, published_gb in (("nf4", 5.72), ("nf4-dq", 5.38), ("int8", 8.70), ("bf16", 14.50)):
        est = estimate(FitJob(**job, quant=quant, stack="litgpt"), a100)
        assert est.peak_allocated_gib == pytest.approx(published_gb * 1e9 / GIB, rel=0.03), quant


def test_old_bitsandbytes_keeps_the_previous_micro_batch_inputs_under_litgpt() -> None:
    """bitsandbytes before 0.43.2 keeps MatMul4Bit's input in ctx.tensors (fixed by PR #1270), and LitGPT's loop holds
    the previous graph until the next forward returns: every 4-bit linear's distinct input (Llama: attention input,
    attention output, MLP input, MLP product) and the final norm's output, 16-bit, for the micro-batch. Only then."""
    job = dict(model="llama-2-7b", method="qlora", quant="nf4", batch=2, seq=512, lora_rank=32, lora_targets="qv",
               optimizer="paged_adamw", grad_ckpt=False)
    old, new = (_est(stack="litgpt", bitsandbytes_version=v, **job) for v in ("0.42.0", None))
    arch = find("llama-2-7b")
    assert arch is not None
    tokens, h = 2 * 512, arch.hidden
    per_token = arch.n_layers * (3 * h + arch.intermediate) + h  # attn_in, attn_out (q = h), mlp_in, mlp_act; ln_f
    assert (old.parts["activations"] - new.parts["activations"]) * GIB == pytest.approx(2 * tokens * per_token)
    assert _est(bitsandbytes_version="0.42.0", **job).parts == _est(**job).parts  # a Trainer frees the old graph
    # litgpt config_hub/finetune/README.md @5895df10, A10G: 12.74 GiB allocated (13.68 GB)
    assert old.peak_allocated_gib == pytest.approx(13.68e9 / GIB, rel=0.03)


def test_one_reader_of_release_fields() -> None:
    from onecard.fit.job import release

    assert release("0.42", (0, 43, 2)) == (0, 42, 0) < (0, 43, 2)
    assert release(None, (0, 43, 2)) == (0, 43, 2)
    assert release("4.38.2", (5, 0, 0)) == (4, 38, 2)


def test_kbit_prep_runs_the_residual_stream_in_fp32() -> None:
    """PEFT's prepare_model_for_kbit_training (the classic QLoRA recipe; axolotl, TRL 0.13's SFTTrainer) casts every
    16-bit parameter outside the quantized linears to fp32; from the embedding on, the hidden states every block
    hands the next (what gradient checkpointing keeps) are fp32. The planner: 4 B per checkpointed element, and the
    embeddings, head and norms at 4 B."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    assert model.model.embed_tokens.weight.dtype == torch.float32
    out = model(torch.zeros(1, 8, dtype=torch.long), output_hidden_states=True)
    assert all(h.dtype == torch.float32 for h in out.hidden_states)

    job = dict(model="mistral-7b-v0.1", method="qlora", quant="nf4-dq", batch=4, seq=4096, lora_targets="attn",
               optimizer="adamw", grad_ckpt=True)
    prep, plain = _est(kbit_prep=True, **job), _est(kbit_prep=False, **job)
    arch = find("mistral-7b-v0.1")
    assert arch is not None
    head_embed = 2 * arch.vocab * arch.hidden * 2  # untied: both at 2 B more
    assert (prep.parts["weights"] - plain.parts["weights"]) * GIB == pytest.approx(
        head_embed + 2 * arch.hidden * (1 + arch.n_layers * arch.norms_per_layer), rel=1e-6)
    assert (prep.parts["activations"] - plain.parts["activations"]) * GIB == pytest.approx(
        2 * arch.hidden * 4 * 4096 * arch.n_layers, rel=0.01)  # every checkpointed block input at 4 B
    assert stacks.resolve(FitJob(model="x", job="train", stack="axolotl")).kbit_prep
    assert not stacks.resolve(FitJob(model="x", job="train", stack="trl")).kbit_prep  # TRL 1.16 leaves it to you
    # fms-acceleration's a100_80gb.csv: the stock path (TRL 0.13) 19.25 GiB allocated at batch 4, fms's own
    # preparation without the cast 15.25
    assert _est(kbit_prep=True, **job).peak_allocated_gib == pytest.approx(19.25, rel=0.05)


def test_a_loop_that_keeps_the_output_holds_its_logits_through_backward() -> None:
    """`out = model(...); out.loss.backward()` keeps the logits alive (measured on CPU: +2 B per logit with a bf16
    head, +4 B with the fp32 head of a kbit-prepared model); the Trainer drops them; no full logits, nothing held."""
    dropped, held = _est(), _est(holds_output=True)
    assert (held.peak_allocated_gib - dropped.peak_allocated_gib) * GIB == pytest.approx(T * V * 2, rel=1e-6)
    assert any("holds_output" in a for a in held.assumptions)
    qlora = dict(method="qlora", quant="nf4-dq", kbit_prep=True)
    gap = _est(holds_output=True, **qlora).peak_allocated_gib - _est(**qlora).peak_allocated_gib
    assert gap * GIB == pytest.approx(T * V * 4, rel=1e-6)  # the fp32 head's logits
    assert _est(holds_output=True, loss="tiled").peak_allocated_gib == _est(loss="tiled").peak_allocated_gib


def test_kbit_prep_without_checkpointing_keeps_each_block_in_fp32() -> None:
    """Without checkpointing every block keeps its fp32 tensors (the 4-bit linears cast their output back to fp32):
    what the blocks keep doubles against a 16-bit model's count, within the norms' fp32 upcast the count has anyway."""
    job = dict(method="qlora", quant="nf4-dq", batch=1, seq=1024, lora_targets="attn", grad_ckpt=False)
    arch = find("llama-3.1-8b")
    assert arch is not None
    adapted = llm_train.lora_targets(arch, "attn")
    kn = stacks.resolve(FitJob(**{**LORA, **job}))
    per_token = [llm_train.layer_saved_bytes(arch, a, False, kn.quant_saves_input, adapted, "sdpa", 1024,
                                             dropout=kn.lora_dropout > 0) for a in (2, 4)]
    grown = _est(kbit_prep=True, **job).parts["activations"] - _est(kbit_prep=False, **job).parts["activations"]
    assert grown * GIB == pytest.approx((per_token[1] - per_token[0]) * 1024 * arch.n_layers, rel=0.02)


def test_a_grouped_kv_model_trained_on_a_card_without_flash_holds_sdpas_scores_in_each_blocks_backward() -> None:
    """The math kernel (transformers >= 4.54 hands SDPA grouped heads, which only flash takes) in training: the
    recomputed block's backward holds 13 B per (head, query, key) score and the mask; without checkpointing every
    block also keeps its fp32 softmax output (4 B per score). Not for a stack with its own attention, nor for a
    memory-efficient kernel with k and v expanded first (`--attention xformers`: the expanded copies instead)."""
    from onecard.fit import llm_infer

    job = dict(model="mistral-7b-v0.1", method="qlora", quant="nf4", batch=1, seq=2048, lora_targets="attn")
    t4 = estimate(FitJob(**{**LORA, **job}), lookup("t4"))
    ada = estimate(FitJob(**{**LORA, **job}), lookup("rtx-4090"))
    scores = 32 * 2048 * 2048
    held = scores * llm_infer.MATH_SDPA_BYTES_PER_SCORE + 2048 * 2048 * llm_infer.MATH_SDPA_MASK_BYTES
    assert t4.parts["activations"] * GIB > held > ada.parts["activations"] * GIB  # the backward peaks on the T4
    assert any("math kernel" in a for a in t4.assumptions) and not any("math kernel" in a for a in ada.assumptions)
    nockpt = {**LORA, **job, "grad_ckpt": False}
    kept = estimate(FitJob(**nockpt), lookup("t4")).parts["activations"] \
        - estimate(FitJob(**nockpt), lookup("rtx-4090")).parts["activations"]
    assert kept * GIB >= 4 * scores * 32  # every block's softmax output
    tt = {**LORA, **job, "stack": "torchtune"}
    assert estimate(FitJob(**tt), lookup("t4")).peak_allocated_gib == estimate(FitJob(**tt), lookup("rtx-4090")) \
        .peak_allocated_gib
    xf = {**LORA, **job, "attention": "xformers"}
    assert estimate(FitJob(**xf), lookup("t4")).peak_allocated_gib == estimate(FitJob(**xf), lookup("rtx-4090")) \
        .peak_allocated_gib


def test_trls_loss_follows_its_release() -> None:
    """SFTTrainer's loss by TRL release: the model's own before 1.4, chunked_nll 1.4-1.14 (through an fp32 copy of
    the head before 1.13), the fused LM head from 1.15 (measured on CPU with the wheels' own functions:
    benchmarks/fit_logits_trace.py --trl)."""
    tokens, chunk = 2048, llm_train.TRL_NLL_CHUNK * V
    assert llm_train.loss_bytes("tiled", tokens, V, H, 2, trl=(1, 7, 1)) == pytest.approx(
        V * H * 4 + 12 * chunk + 8 * tokens * H, rel=1e-9)
    assert llm_train.loss_bytes("tiled", tokens, V, H, 2, trl=(1, 13, 0)) == pytest.approx(
        16 * chunk + 8 * tokens * H, rel=1e-9)
    job = {**LORA, "stack": "trl", "method": "qlora", "quant": "nf4", "batch": 1, "seq": 2048}
    assert stacks.resolve(FitJob(**job, trl_version="1.2.0")).loss == "standard"
    assert stacks.resolve(FitJob(**job, trl_version="1.7.1")).loss == "tiled"

    def peak(version: str | None) -> float:
        return float(_est(**job, trl_version=version).peak_allocated_gib)

    assert peak("1.15.0") == peak(None) <= peak("1.13.0") < peak("1.7.1")
    # the loss phase now peaks the step: TRL 1.7's fp32 copy of the head alone is 1.96 GiB
    assert peak("1.7.1") - peak(None) > 1.5
    assert any("chunked_nll" in a for a in _est(**job, trl_version="1.7.1").assumptions)


def test_tune_plans_the_installed_trl() -> None:
    """`onecard tune` plans with the TRL it runs (the loss differs by release)."""
    from onecard.core.extras import release
    from onecard.fit.choose import request
    from onecard.tune.config import TuneConfig

    job, _ = request(TuneConfig(model="llama-3.1-8b", data="x.jsonl", vram=12), "llama-3.1-8b", 1024, True)
    assert job.trl_version == release("trl") and job.stack == "onecard"


def test_the_onecard_stack_plans_the_installed_trl(monkeypatch: pytest.MonkeyPatch) -> None:
    """--stack onecard is what `onecard tune` runs here, so with no --trl-version it takes the installed TRL's loss;
    --stack trl without one plans the current release."""
    job = {**LORA, "method": "qlora", "quant": "nf4", "batch": 1, "seq": 2048}
    monkeypatch.setattr(stacks, "installed_trl", lambda: "1.7.1")
    assert stacks.trl_release(FitJob(**job, stack="onecard")) == (1, 7, 1)
    assert stacks.trl_release(FitJob(**job, stack="trl")) == stacks.CURRENT_TRL
    assert stacks.trl_release(FitJob(**job, stack="onecard", trl_version="1.16.0")) == (1, 16, 0)
    assert _est(**job, stack="onecard").peak_allocated_gib > _est(**job, stack="onecard", trl_version="1.16.0") \
        .peak_allocated_gib


def test_torchtune_qlora_on_torchao_0_1_holds_its_load_cache_in_reserved_readings() -> None:
    from onecard.fit.llm_train import NF4_LOAD_CACHE_PER_WEIGHT_BYTE
    from onecard.fit.plan import estimate

    job = FitJob(model="llama-2-7b", job="train", stack="torchtune", method="qlora", quant="nf4-dq", batch=2, seq=512,
                 gpu="a100-80gb")
    chunked = estimate(job.model_copy(update={"torchao_version": "0.2.0"}))
    whole = estimate(job.model_copy(update={"torchao_version": "0.1"}))
    assert chunked.cache_gib == 0 and whole.parts == chunked.parts  # the step's tensors are the same
    # the load: the weights plus 51 x the 4096 x 11008 bf16 weight in cache (benchmarks/fit_nf4_load_replay.py)
    cache = NF4_LOAD_CACHE_PER_WEIGHT_BYTE["llama-2-7b"] * 4096 * 11008 * 2 / 2**30
    assert whole.peak_reserved_gib + whole.cache_gib == pytest.approx(
        whole.parts["weights"] + whole.parts.get("adapters", 0.0) + cache, rel=1e-6)
    for other in ({"stack": "transformers"}, {"method": "lora", "quant": "bf16"}):
        assert estimate(job.model_copy(update={"torchao_version": "0.1", **other})).cache_gib == 0
