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
])
def test_stack_presets_set_the_documented_knobs(stack: str, method: str, expected: tuple[Any, ...]) -> None:
    r = stacks.resolve(FitJob(model="m", job="train", stack=stack, method=method))
    assert (r.loss, r.adapter_bytes, r.optimizer_in_backward, r.activation_offload, r.quant_saves_input) == expected


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


def test_bf16_adapter_layer_formula_matches_autograd() -> None:
    """16-bit adapters without autocast (torchtune, litgpt): saved bytes of one Llama block, to the formula."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    arch = find("smollm2-135m")
    assert arch is not None
    n = 128
    cfg = transformers.LlamaConfig(vocab_size=1000, hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                                   num_hidden_layers=2, num_attention_heads=arch.n_heads,
                                   num_key_value_heads=arch.n_kv_heads, head_dim=arch.head_dim,
                                   attn_implementation="sdpa")
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules="all-linear"),
                                autocast_adapter_dtype=False)  # adapters stay bf16, as torchtune builds them
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
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    adapted = llm_train.lora_targets(arch, "all-linear")
    formula = llm_train.layer_saved_bytes(arch, 2, False, False, adapted, "sdpa", n, rank=8, adapter_bytes=2) * n
    formula += 2 * 2 * n * arch.head_dim  # RoPE cos/sin: made once per model, seen here by this layer
    assert formula == pytest.approx(sum(saved.values()), rel=0.01)
