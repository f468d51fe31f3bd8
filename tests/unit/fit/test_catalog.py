"""The LLM catalog: parameter counts derived from the dimensions match the published ones; names resolve."""

from __future__ import annotations

import pytest

from onecard.fit import catalog

# Published counts, as rounded by their source: the Hugging Face "Model size" of each repo's safetensors (Llama,
# Mistral, Gemma 2, LLaVA, SmolLM2) or the model card (Qwen2.5: "Number of Parameters: 7.61B, Non-Embedding: 6.53B";
# Phi-3-mini: "3.8B"; StarCoder: "15.5B"; Gemma 3 270M: "170 million embedding + 100 million transformer").
PUBLISHED = {
    "llama-2-7b": "6.74B",
    "llama-2-13b": "13.0B",
    "llama-3-8b": "8.03B",
    "llama-3.1-8b": "8.03B",
    "mistral-7b-v0.1": "7.24B",
    "mistral-7b-v0.3": "7.25B",
    "qwen2.5-7b": "7.61B",
    "qwen2.5-coder-7b": "7.61B",
    "phi-3-mini-4k": "3.8B",
    "phi-3-mini-128k": "3.8B",
    "gemma-2-9b": "9.24B",
    "starcoder": "15.5B",
    "octocoder": "15.5B",
    "llava-1.5-7b": "7.06B",
    "smollm2-135m": "135M",
    "gemma-3-270m": "270M",
}


def _bounds(published: str) -> tuple[float, float]:
    """The interval a printed figure stands for, rounded or truncated: "6.74B" is 6.735e9 to 6.75e9."""
    number, unit = published[:-1], {"B": 1e9, "M": 1e6}[published[-1]]
    decimals = len(number.partition(".")[2])
    step = 10.0**-decimals if decimals else 10.0 if number.endswith("0") else 1.0  # "270M": tens of millions
    return (float(number) - step / 2) * unit, (float(number) + step) * unit


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_one(key: str) -> None:
    arch = catalog.find(key)
    assert arch is not None
    low, high = _bounds(PUBLISHED[key])
    assert low <= catalog.n_params(arch) <= high, catalog.n_params(arch)


def test_the_counts_the_brief_quotes() -> None:
    # Llama-3.1-8B 8.03B, Mistral 7B 7.24B, Llama-2-7B 6.74B (HF safetensors "Model size").
    counts = {k: catalog.n_params(catalog.find(k)) / 1e9 for k in ("llama-3.1-8b", "mistral-7b", "llama-2-7b")}
    assert {k: round(v, 2) for k, v in counts.items()} == {"llama-3.1-8b": 8.03, "mistral-7b": 7.24, "llama-2-7b": 6.74}


def test_falcon_counts_its_tied_head_once() -> None:
    # tiiuae/falcon-7b safetensors (9.95 GB + 4.48 GB bf16) store the tied head twice: HF shows 7.22B params.
    arch = catalog.find("falcon-7b")
    assert arch is not None and arch.tied_embeddings
    assert round((catalog.n_params(arch) + arch.vocab * arch.hidden) / 1e9, 2) == 7.22


def test_qwen_non_embedding_count() -> None:
    # Qwen2.5-7B model card: "Number of Paramaters (Non-Embedding): 6.53B" (embeddings and the untied head out).
    arch = catalog.find("qwen2.5-7b")
    assert arch is not None
    assert round((catalog.n_params(arch) - 2 * arch.vocab * arch.hidden) / 1e9, 2) == 6.53


def test_gemma3_270m_split() -> None:
    # Gemma 3 270M model card: 170M embedding parameters, 100M in the transformer blocks.
    arch = catalog.find("gemma-3-270m")
    assert arch is not None
    embed = arch.vocab * arch.hidden
    assert round(embed / 1e6) == 168 and round((catalog.n_params(arch) - embed) / 1e6) == 100


@pytest.mark.parametrize("name", ["llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "Meta-Llama-3.1-8B-Instruct",
                                  "llama3.1:8b", "LLAMA-3.1-8B", "meta-llama/Meta-Llama-3.1-8B"])
def test_aliases_resolve(name: str) -> None:
    arch = catalog.find(name)
    assert arch is not None and arch.key == "llama-3.1-8b"


def test_unknown_name_is_none() -> None:
    assert catalog.find("llama-9-400b") is None


def test_every_entry_cites_its_config() -> None:
    for arch in catalog.CATALOG:
        if arch.family == "tinylm":  # onecard's own model: its preset is the config
            assert arch.source.startswith("onecard/tinylm/config.py preset"), arch.key
            continue
        assert arch.source.startswith("https://huggingface.co/") and arch.source.endswith("config.json"), arch.key


def test_gqa_and_head_dims() -> None:
    # config.json: Llama 3 8 KV heads of 128; Gemma 2 9B 16 heads of 256 (q 4096 > hidden 3584); StarCoder MQA.
    assert catalog.find("llama-3-8b").kv_dim == 1024  # type: ignore[union-attr]
    assert catalog.find("gemma-2-9b").q_dim == 4096  # type: ignore[union-attr]
    assert catalog.find("starcoder").n_kv_heads == 1  # type: ignore[union-attr]


def test_linears_of_fused_models() -> None:
    phi = catalog.find("phi-3-mini")
    assert phi is not None
    assert [lin.name for lin in catalog.linears(phi)] == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]


def test_hf_config_has_the_dimensions() -> None:
    pytest.importorskip("transformers", reason="hf_config needs transformers")
    cfg = catalog.hf_config(catalog.find("llama-3.1-8b"))  # type: ignore[arg-type]
    assert (cfg.hidden_size, cfg.num_key_value_heads, cfg.vocab_size) == (4096, 8, 128256)
