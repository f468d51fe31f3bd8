"""Damaged model files and odd references: a named error (file, what is wrong, the fix), never a traceback or a plan
of a model that cannot load. The fuzz tests assert one thing: success or an OnecardError."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onecard.core.errors import ConfigError, ModelNotFoundError, OnecardError
from onecard.fit import readers
from onecard.fit.job import FitJob
from onecard.fit.plan import plan, resolve_arch
from tests.unit.fit.test_readers import TINY, _tiny_tensors, write_tiny_gguf

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    return path.read_bytes()


def test_gguf_cut_in_its_data_is_named_truncated(tmp_path: Path, tiny_gguf: bytes) -> None:
    """The header is whole, so without the size check the planner would size a model llama.cpp cannot load."""
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_gguf[: len(tiny_gguf) - 1000])
    with pytest.raises(ConfigError, match=r"cut\.gguf: truncated: its tensor table needs [\d,]+ bytes") as err:
        readers.read_gguf(path)
    assert "download the file again" in str(err.value)
    path.write_bytes(tiny_gguf)
    assert readers.read_gguf(path).n_layers == 2


@pytest.mark.parametrize("keep", [5, 12, 30, 200, 700])
def test_gguf_cut_in_its_header_is_named(tmp_path: Path, tiny_gguf: bytes, keep: int) -> None:
    path = tmp_path / "head.gguf"
    path.write_bytes(tiny_gguf[:keep])
    with pytest.raises(ConfigError, match=r"head\.gguf: truncated"):
        readers.read_gguf(path)


def test_config_json_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_type": "llama",\n  "hidden_size": 4096,\n}\n')
    with pytest.raises(ConfigError, match=r"config\.json:4:1: not valid JSON"):
        resolve_arch(str(path))
    path.write_bytes(b'{"model_type": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        resolve_arch(str(path))


@pytest.mark.parametrize(("key", "value"), [("hidden_size", "4096"), ("num_hidden_layers", -2),
                                            ("num_attention_heads", 0), ("vocab_size", 1.5), ("hidden_size", True)])
def test_config_json_with_a_bad_dimension_names_the_key(tmp_path: Path, key: str, value: object) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY | {key: value}))
    with pytest.raises(ConfigError, match=f"{key} must be a positive integer"):
        resolve_arch(str(path))


def test_config_json_with_an_impossible_size_is_refused_before_it_is_counted(tmp_path: Path) -> None:
    """2^40 layers would build a 2^40-entry table (MemoryError) before any answer."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY | {"num_hidden_layers": 2**40}))
    with pytest.raises(ConfigError, match="num_hidden_layers 1,099,511,627,776 is larger than any model's"):
        resolve_arch(str(path))


def test_safetensors_shorter_than_its_table_is_named_truncated(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    (tmp_path / "config.json").write_text(json.dumps(TINY))
    save_file(_tiny_tensors(), str(tmp_path / "model.safetensors"))
    whole = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(whole[:-4096])
    with pytest.raises(ConfigError, match=r"model\.safetensors: truncated: tensor"):
        resolve_arch(str(tmp_path))


def test_a_sharded_model_with_a_missing_shard_says_which(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    index = {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match="model-00001-of-00002.safetensors named in .* missing"):
        resolve_arch(str(tmp_path))


def test_a_model_name_longer_than_any_path_is_an_unknown_model() -> None:
    with pytest.raises(ModelNotFoundError, match=r"\(5,000 characters\)': not a catalog name") as err:
        resolve_arch("a" * 5000)
    assert len(str(err.value)) < 600


@pytest.mark.parametrize(("flags", "named"), [
    (dict(model="sdxl", job="train", method="full"), "--method full"),  # would plan the LoRA it always plans
    (dict(model="yolov8s", quant="bf16"), "--quant bf16"),  # was planned as fp32, twice the bytes
    (dict(model="yolov8s", job="train", quant="int8"), "--quant int8"),
    (dict(model="whisper-large-v3", quant="nf4"), "--quant nf4"),
    (dict(model="whisper-large-v3", runtime="openai-whisper", quant="int8"), "--quant int8"),
    (dict(model="whisper-large-v3", runtime="llama.cpp"), "--runtime llama.cpp"),
    (dict(model="sdxl", quant="nf4"), "--quant nf4"),
    (dict(model="sdxl", runtime="vllm"), "--runtime vllm"),
    (dict(model="llama-3.1-8b", job="train", runtime="llama.cpp"), "--runtime llama.cpp"),
])
def test_a_flag_the_family_would_ignore_is_refused_by_name(flags: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        plan(FitJob(**flags, gpu="4090"))  # type: ignore[arg-type]
    assert info.value.fix is not None and info.value.fix.startswith(("use --", "leave --"))


@pytest.mark.parametrize("vram", [float("inf"), float("nan")])
def test_vram_must_be_finite(vram: float) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finite"):
        FitJob(model="llama-3.1-8b", vram=vram)


# --- fuzz: every reader either succeeds or raises an OnecardError ---------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_damaged_gguf(tmp_path: Path, tiny_gguf: bytes, data: st.DataObject) -> None:
    raw = bytearray(tiny_gguf[: data.draw(st.integers(4, len(tiny_gguf)), label="keep")])
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        at = data.draw(st.integers(0, min(len(raw) - 1, 2048)))  # the header is the first ~1.5 KB
        raw[at] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(bytes(raw))
    try:
        arch = readers.read_gguf(path)
    except OnecardError:
        return
    assert arch.n_layers > 0 and arch.hidden > 0 and arch.weights_file is not None


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=12)
_keys = st.sampled_from(["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                         "num_key_value_heads", "intermediate_size", "vocab_size", "head_dim", "text_config",
                         "vision_config", "quantization_config", "n_positions", "max_position_embeddings"])


@FUZZ
@given(config=st.one_of(_json, st.dictionaries(_keys, _json, max_size=8).map(lambda d: TINY | d)))
def test_fuzz_config_json(tmp_path: Path, config: object) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with contextlib.suppress(OnecardError):
        plan(FitJob(model=str(path), gpu="4070ti"))
        plan(FitJob(model=str(path), job="train", method="lora", gpu="4070ti"))


@FUZZ
@given(header=st.one_of(st.binary(max_size=64), _json.map(lambda v: json.dumps(v).encode())),
       size=st.integers(0, 2**64 - 1))
def test_fuzz_safetensors_header(tmp_path: Path, header: bytes, size: int) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", size if size % 2 else len(header)) + header)
    with contextlib.suppress(OnecardError):
        readers.read_safetensors_header(path)


def test_new_tokens_that_leave_no_prompt_room_are_refused() -> None:
    with pytest.raises(ConfigError, match="--new-tokens 256 leaves no room for a prompt in --ctx 100"):
        plan(FitJob(model="llama-3.1-8b", ctx=100, gpu="4090"))


def test_a_context_past_the_models_positions_is_planned_and_said() -> None:
    notes = plan(FitJob(model="llama-2-7b", ctx=8192, gpu="a100-80gb")).estimate.assumptions
    assert any("--ctx 8192 is past the 4096 positions" in note for note in notes)


def test_a_safetensors_file_without_tensors_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    header = b"{}"
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(OnecardError, match="model.safetensors: holds no tensors"):
        resolve_arch(str(tmp_path))


@pytest.mark.parametrize(("config", "named"), [({}, "no model_type"),
                                               ({"_class_name": "UNet2DConditionModel"}, "a diffusers UNet2D")])
def test_a_config_that_names_no_model_type_is_not_planned_as_a_llama(tmp_path: Path, config: dict[str, object],
                                                                     named: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=named):
        resolve_arch(str(tmp_path))


def test_trace_of_a_model_type_transformers_lacks_is_an_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from onecard.fit.trace import hf_config

    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "no_such_arch"}))
    with pytest.raises(ConfigError, match="cannot build model_type 'no_such_arch'"):
        hf_config(FitJob(model=str(tmp_path)))


def test_a_margin_larger_than_the_card_and_two_cards_are_refused() -> None:
    with pytest.raises(ConfigError, match="a margin of 100 GiB leaves no memory"):
        plan(FitJob(model="llama-3.1-8b", gpu="4070ti", margin_gib=100))
    with pytest.raises(ConfigError, match="--gpu 4070ti and --vram 80 both name the card"):
        plan(FitJob(model="llama-3.1-8b", gpu="4070ti", vram=80))


@pytest.mark.parametrize("ref", ["/nonexistent/model", "~/no-such-model", "./missing.gguf", "no-such-config.json"])
def test_a_path_that_does_not_exist_is_named_as_a_path(ref: str) -> None:
    with pytest.raises(ModelNotFoundError, match="no file or folder at") as info:
        resolve_arch(ref)
    assert info.value.fix is not None and "did you mean" not in info.value.fix


def test_lora_targets_that_name_nothing_are_refused() -> None:
    for empty in ("", ",,,"):
        with pytest.raises(ConfigError, match="names no module"):
            plan(FitJob(model="llama-3.1-8b", job="train", gpu="4070ti", lora_targets=empty))


@pytest.mark.parametrize(("spelling", "name"), [("fp16", "f16"), ("F16", "f16"), ("float32", "f32"),
                                                ("bfloat16", "bf16"), ("Q8_0", "q8_0")])
def test_kv_cache_types_have_one_spelling(spelling: str, name: str) -> None:
    assert FitJob(model="llama-3.1-8b", kv_dtype=spelling).kv_dtype == name


@pytest.mark.parametrize(("runtime", "kv"), [("llama.cpp", "fp8"), ("vllm", "q8_0"), ("transformers", "q4_0")])
def test_a_kv_cache_type_the_runtime_lacks_is_refused(runtime: str, kv: str) -> None:
    with pytest.raises(ConfigError, match=f"--kv-dtype {kv} is not a KV cache type {runtime} has"):
        plan(FitJob(model="llama-3.1-8b", runtime=runtime, kv_dtype=kv, quant="q4_k_m" if runtime == "llama.cpp"
                    else "auto", gpu="4090"))  # type: ignore[arg-type]
