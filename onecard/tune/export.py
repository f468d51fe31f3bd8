"""Export a tuned adapter: the adapter folder, merged weights, a GGUF, and an Ollama Modelfile.

GGUF: the `gguf` package writes Llama-architecture models itself in the types it can quantize (f32, f16, bf16,
q8_0, q4_0, q4_1, q5_0), or llama.cpp's `convert_hf_to_gguf.py` does when a llama.cpp folder is found
(--llama-cpp, $LLAMA_CPP_DIR, or PATH; any architecture it knows). The k-quants (q4_k_m...) are quantized from an
f16 GGUF by llama.cpp itself through llama-cpp-python. The tokenizer metadata is copied from the GGUF the base model
came from when there is one (so llama.cpp keeps its pre-tokenizer), else built from tokenizer.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, get_args

from onecard.core.errors import ConfigError, MissingExtraError, OnecardError
from onecard.core.extras import available
from onecard.core.tools import llama_cpp_tool
from onecard.tune.config import GgufType
from onecard.tune.model import SOURCE_FILE

__all__ = ["export", "merge_adapter", "write_gguf", "quantize_gguf", "modelfile", "ollama_template",
           "write_accelerate_config", "GGUF_TYPES", "ONECARD_TYPES"]

GGUF_TYPES: tuple[str, ...] = get_args(GgufType)
ONECARD_TYPES = GGUF_TYPES[:7]  # f32 f16 bf16 q8_0 q4_0 q4_1 q5_0: what the gguf package quantizes (numpy)
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")  # convert_hf_to_gguf.py --outtype


def export(adapter: Path, out: Path, merge: bool = False, gguf: str | None = None, ollama: bool = False,
           llama_cpp: str | None = None) -> dict[str, str]:
    """Write `out/adapter`, and as asked `out/merged`, `out/model-TYPE.gguf`, `out/Modelfile`; returns the paths."""
    converter = llama_cpp_tool("convert_hf_to_gguf.py", llama_cpp) if gguf else None
    if gguf:  # before the merge, which takes minutes on a large model
        _check_gguf_type(gguf.lower(), converter is not None)
    out.mkdir(parents=True, exist_ok=True)
    written = {"adapter": str(_copy_dir(adapter, out / "adapter"))}
    if merge or gguf or ollama:
        written["merged"] = str(merge_adapter(adapter, out / "merged"))
    if gguf:
        written["gguf"] = str(_gguf(Path(written["merged"]), out, gguf.lower(), converter))
    if ollama:
        from onecard.tune.model import load_tokenizer

        source = Path(written.get("gguf", written["merged"]))
        (out / "Modelfile").write_text(modelfile(f"./{source.relative_to(out)}", load_tokenizer(adapter)))
        written["modelfile"] = str(out / "Modelfile")
        written["ollama"] = f"cd {out} && ollama create my-tuned-model -f Modelfile && ollama run my-tuned-model"
    return written


def _copy_dir(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def merge_adapter(adapter: Path, out: Path) -> Path:
    """The base model with the adapter folded into its weights (W + B A * alpha / r), saved with the tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from onecard.tune.model import load_tokenizer

    base_dir = Path(json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"])
    # 16-bit (or the file's own) base weights: a QLoRA adapter merges into the unquantized model, not the NF4 one.
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    shutil.rmtree(out, ignore_errors=True)
    merged.save_pretrained(out)
    load_tokenizer(adapter).save_pretrained(out)
    if (base_dir / SOURCE_FILE).is_file():
        shutil.copy(base_dir / SOURCE_FILE, out / SOURCE_FILE)
    return out


# -- GGUF -----------------------------------------------------------------------------------------------------------


def _check_gguf_type(qtype: str, converter: bool) -> None:
    if qtype not in GGUF_TYPES:
        raise ConfigError(f"unknown GGUF type {qtype!r}", f"use one of {', '.join(GGUF_TYPES)}")
    if qtype not in (CONVERTER_TYPES if converter else ONECARD_TYPES) and not available("llama_cpp"):
        raise MissingExtraError(
            f"GGUF type {qtype} is quantized by llama.cpp, and llama-cpp-python is not installed",
            "install it with `pip install llama-cpp-python` (or `pip install 'onecard[llm]'`), or use --gguf with "
            f"one of {', '.join(ONECARD_TYPES)}, which onecard writes without it")


def _gguf(merged: Path, out: Path, qtype: str, converter: Path | None) -> Path:
    """`out/model-TYPE.gguf`, written under a temporary name and renamed: a failed export leaves no partial file."""
    target = out / f"model-{qtype}.gguf"
    direct = qtype in (CONVERTER_TYPES if converter else ONECARD_TYPES)
    with tempfile.TemporaryDirectory(dir=out, prefix=".gguf-") as tmp:  # same folder: the rename is atomic
        first = Path(tmp) / ("model.gguf" if direct else "model-f16.gguf")
        if converter:
            subprocess.run([sys.executable, str(converter), str(merged), "--outfile", str(first), "--outtype",
                            qtype if direct else "f16"], check=True)
        else:
            write_gguf(merged, first, qtype if direct else "f16")
        final = first if direct else quantize_gguf(first, Path(tmp) / "model.gguf", qtype)
        os.replace(final, target)
    return target


def quantize_gguf(source: Path, path: Path, qtype: str) -> Path:
    """Quantize an f16/f32 GGUF to a llama.cpp type (q4_k_m...) with llama.cpp's own quantizer.

    Tensors whose rows are not a whole number of k-quant blocks (256 values) get the nearest type that fits
    (llama.cpp's fallback, e.g. q5_0 for q4_k), and norms stay f32, as llama-quantize does.
    """
    import ctypes
    import logging

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}")
    log = logging.getLogger("llama-cpp-python")  # llama.cpp logs a line per tensor: only its errors are shown
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        failed = llama_cpp.llama_model_quantize(str(source).encode(), str(path).encode(), ctypes.byref(params))
    finally:
        log.setLevel(level)
    if failed:
        raise OnecardError(f"llama.cpp could not quantize {source} to {qtype} (its log above says why)",
                           f"try --gguf with another type: {', '.join(GGUF_TYPES)}")
    return path


def _permute(w: Any, n_head: int) -> Any:
    """llama.cpp's rotary layout for q/k rows (convert_hf_to_gguf.py LlamaModel.permute): pairs interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model_dir: Path, path: Path, qtype: str = "f16") -> Path:
    """Write a Llama-architecture safetensors folder as GGUF with the `gguf` package (no llama.cpp needed)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") not in ("llama", "mistral"):
        raise OnecardError(f"onecard writes GGUF itself only for Llama-architecture models, not "
                           f"{config.get('model_type')!r}", "pass --llama-cpp PATH to a llama.cpp checkout")
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float((config.get("rope_parameters") or {}).get("rope_theta",
                                                                             config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
                          "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0}[qtype])
    _add_tokenizer(writer, model_dir)
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    want = getattr(gguf.GGMLQuantizationType, qtype.upper())
    block = gguf.GGML_QUANT_SIZES[want][0]
    tensors: dict[str, Any] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(file))
    for name, data in tensors.items():
        if name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue
        data = data.astype(np.float32)
        if name.endswith("q_proj.weight"):
            data = _permute(data, n_head)
        elif name.endswith("k_proj.weight"):
            data = _permute(data, n_kv)
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise OnecardError(f"no GGUF name for tensor {name}", "pass --llama-cpp PATH to a llama.cpp checkout")
        # Norms stay f32 (as llama.cpp's converter keeps 1-D tensors); rows not a whole number of blocks: f16.
        kind = want if data.ndim == 2 and data.shape[-1] % block == 0 else gguf.GGMLQuantizationType.F32 \
            if data.ndim == 1 or want == gguf.GGMLQuantizationType.F32 else gguf.GGMLQuantizationType.F16
        writer.add_tensor(new_name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer: Any, model_dir: Path) -> None:
    import gguf

    source = model_dir / SOURCE_FILE
    if source.is_file():  # the base came from a GGUF: keep its tokenizer exactly, pre-tokenizer included
        reader = gguf.GGUFReader(json.loads(source.read_text())["gguf"])
        for key, field in reader.fields.items():
            if key.startswith("tokenizer."):
                value = field.contents()
                vtype = field.types[0]
                if vtype == gguf.GGUFValueType.ARRAY:
                    writer.add_array(key, value)
                else:
                    writer.add_key_value(key, value, vtype)
        return
    vocab = gguf.vocab.BpeVocab(model_dir)
    tokens, scores, types = zip(*vocab.all_tokens(), strict=True)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(list(tokens))
    writer.add_token_types(list(types))
    gguf.SpecialVocab(model_dir, load_merges=True).add_to_gguf(writer)


# -- Ollama ---------------------------------------------------------------------------------------------------------

_MARK = {"system": "\x00SYSTEM\x00", "user": "\x00USER\x00", "assistant": "\x00ASSISTANT\x00"}


def ollama_template(tokenizer: Any) -> tuple[str, str | None, list[str]]:
    """The chat template as an Ollama (Go) template, the default system prompt it injects, and stop strings.

    Each role's text is what the template adds for one message of that role (rendered conversations grow by a
    prefix), so the Go template renders any conversation the way the Jinja one does.
    """
    def render(messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
        text: str = tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)
        return text

    system, user, assistant = ({"role": r, "content": _MARK[r]} for r in ("system", "user", "assistant"))
    parts = {"system": render([system])}
    parts["user"] = render([system, user])[len(parts["system"]):]
    with_user = render([system, user])
    parts["assistant"] = render([system, user, assistant])[len(with_user):]
    generation = render([system, user], generation_prompt=True)[len(with_user):]
    default_system = None
    injected = render([user])[: -len(parts["user"])] if render([user]).endswith(parts["user"]) else ""
    if injected:  # the template adds a system message when there is none: Ollama's SYSTEM does the same
        pre, _, post = parts["system"].partition(_MARK["system"])
        default_system = injected.removeprefix(pre).removesuffix(post)
    branches = []
    for role in ("system", "user", "assistant"):
        pre, _, post = parts[role].partition(_MARK[role])
        branches.append(f'{{{{- if eq .Role "{role}" }}}}{pre}{{{{ .Content }}}}{post}{{{{ end }}}}')
    go = "{{- range .Messages }}" + "".join(branches) + "{{ end }}" + generation
    stop = [s for s in (parts["assistant"].partition(_MARK["assistant"])[2].strip(), tokenizer.eos_token) if s]
    return go, default_system, list(dict.fromkeys(stop))


def modelfile(source: str, tokenizer: Any) -> str:
    """An Ollama Modelfile: the weights, the model's own chat template, its stop strings and default system."""
    template, system, stop = ollama_template(tokenizer)
    lines = [f"FROM {source}", f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stop]
    return "\n".join(lines) + "\n"


# -- multi-GPU ------------------------------------------------------------------------------------------------------


def write_accelerate_config(config: Any, folder: str | Path) -> dict[str, str]:
    """An accelerate config, a DeepSpeed ZeRO-2/3 JSON and this recipe's config; returns them and the launch command.

    The recipe's batch size is split over the processes, so the global batch per optimizer step stays as asked;
    "auto" DeepSpeed values are filled by the transformers Trainer from the recipe's arguments.
    """
    import yaml

    from onecard.core.errors import ConfigError

    if config.method == "qlora" and config.zero_stage == 3:
        raise ConfigError("QLoRA's 4-bit weights cannot be sharded by ZeRO-3 here",
                          "use --zero-stage 2 (each GPU holds the 4-bit model), or --method lora with ZeRO-3")
    if config.batch_size % config.num_gpus:
        shares = [n for n in range(config.num_gpus, config.batch_size * config.num_gpus + 1, config.num_gpus)][:3]
        raise ConfigError(f"--batch-size {config.batch_size} does not split over --num-gpus {config.num_gpus}: each "
                          "process takes an equal share of the rows of an optimizer step",
                          f"give a --batch-size that --num-gpus divides ({', '.join(map(str, shares))}...)")
    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = config.zero_stage
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes whole tensors
    ds = {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
          "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
          "gradient_clipping": "auto", "train_batch_size": "auto"}
    ds_file = out / f"ds_zero{stage}.json"
    ds_file.write_text(json.dumps(ds, indent=2) + "\n")
    acc = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "DEEPSPEED", "num_machines": 1,
           "machine_rank": 0, "num_processes": config.num_gpus, "use_cpu": False,
           "deepspeed_config": {"deepspeed_config_file": str(ds_file), "zero3_init_flag": stage == 3}}
    acc_file = out / "accelerate.yaml"
    acc_file.write_text(yaml.safe_dump(acc, sort_keys=False))
    recipe = config.model_dump(mode="json") | {
        "accelerate_config": None, "deepspeed": str(ds_file), "batch_size": config.batch_size // config.num_gpus}
    recipe_file = out / "tune.yaml"
    recipe_file.write_text(f"# accelerate launch --config_file {acc_file} -m onecard.cli tune train --config "
                           f"{recipe_file}\n" + yaml.safe_dump(recipe, sort_keys=False))
    command = f"accelerate launch --config_file {acc_file} -m onecard.cli tune train --config {recipe_file}"
    return {"accelerate_config": str(acc_file), "deepspeed_config": str(ds_file), "recipe": str(recipe_file),
            "command": command}
