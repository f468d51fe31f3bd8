"""`onecard vlm export RUN --merge`: a tune run's adapter folded into its base model's weights, saved as a transformers
folder with the processor; and, with --gguf, the GGUF + mmproj pair llama.cpp (and `onecard vlm chat`) runs.

The GGUF pair comes from llama.cpp's own `convert_hf_to_gguf.py` (the text model, then `--mmproj` for the vision
tower and projector), found with --llama-cpp, $LLAMA_CPP_DIR or PATH (`onecard.core.tools`). Its `--mmproj` path
knows the projectors of Qwen2-VL / Qwen2.5-VL, Gemma 3, SmolVLM / Idefics3, Pixtral / Mistral 3 and others, but not
LLaVA-1.5's CLIP tower in transformers' layout (its LlavaVisionModel raises "Unsupported model type" for any vision
tower but Pixtral's): such a model is refused before the merge, with the way that does work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from onecard.core.errors import ConfigError, OnecardError
from onecard.vlm.config import GGUF_TYPES, ExportConfig

__all__ = ["ExportConfig", "export", "merge", "check_gguf_support", "GGUF_TYPES"]

# LlavaForConditionalGeneration's mmproj conversion (convert_hf_to_gguf.py, LlavaVisionModel) takes these towers only
_LLAVA_TOWERS = ("pixtral",)


def export(config: ExportConfig, runs_root: str | None = None) -> dict[str, str]:
    """Write the merged folder (and the GGUF pair) of a tune run; returns what was written, by kind."""
    from onecard.core.records import write_json_atomic
    from onecard.core.tools import llama_cpp_tool
    from onecard.vlm.run import ADAPTER, find_vlm_run

    record = find_vlm_run(config.run, runs_root)
    adapter = Path(record["dir"]) / ADAPTER
    base = Path(record["model"]["dir"])
    out = Path(config.out).expanduser() if config.out else Path(record["dir"]) / "export"
    converter = None
    if config.gguf is not None:  # every refusal before the merge, which takes minutes on a 7B model
        if config.gguf not in GGUF_TYPES:
            raise ConfigError(f"unknown GGUF type {config.gguf!r}", f"use one of {', '.join(GGUF_TYPES)}")
        check_gguf_support(base)
        converter = llama_cpp_tool("convert_hf_to_gguf.py", config.llama_cpp)
        if converter is None:
            raise OnecardError("llama.cpp's convert_hf_to_gguf.py was not found (--llama-cpp, $LLAMA_CPP_DIR, PATH)",
                               "clone llama.cpp (git clone https://github.com/ggml-org/llama.cpp), "
                               "`pip install -r llama.cpp/requirements.txt`, and pass --llama-cpp llama.cpp")
    if not config.merge and converter is None:
        raise ConfigError("nothing to export: neither --merge nor --gguf", "pass --merge, and/or --gguf f16")
    out.mkdir(parents=True, exist_ok=True)
    written = {"merged": str(merge(base, adapter, out / "merged"))}
    if converter is not None and config.gguf is not None:
        written.update(_gguf(Path(written["merged"]), out, config.gguf, converter))
    if not config.merge:
        shutil.rmtree(written.pop("merged"))
    write_json_atomic(out / "export.json", {"run": record["id"], "base": str(base), **written})
    return written


def merge(base: Path, adapter: Path, out: Path) -> Path:
    """The base model with the adapter folded into its weights (W + B A * alpha / r), and the processor, in `out`.

    The base loads in its own 16-bit weights: a QLoRA adapter merges into the unquantized model, not the NF4 one.
    Written beside `out` and renamed into place, so a failed merge leaves no half folder.
    """
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from onecard.vlm.model import load_processor

    model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        merged.save_pretrained(tmp)
        saved = any((adapter / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
        load_processor(adapter if saved else base).save_pretrained(tmp)  # the tune saves it with the adapter
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def check_gguf_support(model: Path) -> None:
    """Refuse a model whose projector llama.cpp's converter cannot write, with what to do instead."""
    config = json.loads((model / "config.json").read_text())
    arch = (config.get("architectures") or ["?"])[0]
    tower = (config.get("vision_config") or {}).get("model_type", "?")
    if arch == "LlavaForConditionalGeneration" and tower not in _LLAVA_TOWERS:
        raise OnecardError(
            f"llama.cpp's convert_hf_to_gguf.py cannot write the projector of {model.name} ({arch} with a {tower} "
            "tower, as LLaVA-1.5 in transformers' layout): its --mmproj takes Pixtral's tower only for this "
            "architecture",
            "use the merged folder with transformers (`onecard vlm chat --model OUT/merged`), or convert the "
            "original-layout LLaVA-1.5 with llama.cpp's tools/mtmd/legacy-models scripts (llava_surgery_v2.py, "
            "convert_image_encoder_to_gguf.py)")


def _gguf(merged: Path, out: Path, qtype: str, converter: Path) -> dict[str, str]:
    """model-TYPE.gguf and mmproj-TYPE.gguf from the merged folder, each written aside and renamed."""
    written: dict[str, str] = {}
    for kind, extra in (("gguf", []), ("mmproj", ["--mmproj"])):
        target = out / f"{'model' if kind == 'gguf' else 'mmproj'}-{qtype}.gguf"
        with tempfile.TemporaryDirectory(dir=out, prefix=".gguf-") as tmp:
            part = Path(tmp) / target.name  # "mmproj" in the name: the converter keeps it as given
            done = subprocess.run([sys.executable, str(converter), str(merged), *extra, "--outfile", str(part),
                                   "--outtype", qtype], capture_output=True, text=True)
            if done.returncode != 0 or not part.is_file():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise OnecardError(f"llama.cpp's converter failed on the {kind} of {merged} ({last})",
                                   "use the merged folder with transformers, or a llama.cpp checkout that knows this "
                                   "architecture (git pull)")
            os.replace(part, target)
        written[kind] = str(target)
    return written
