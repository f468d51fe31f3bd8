"""`onecard vlm export`: the merged folder loads back in transformers and answers as the base + adapter did; the GGUF
pair goes through llama.cpp's converter where it writes the projector, and is refused with the way out where not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")
pytest.importorskip("trl")
pytest.importorskip("PIL")

from onecard.core.errors import ConfigError, OnecardError  # noqa: E402
from onecard.vlm.config import ExportConfig  # noqa: E402
from onecard.vlm.export import export  # noqa: E402

# a stand-in for llama.cpp's convert_hf_to_gguf.py: records its arguments and writes a GGUF-headed file
FAKE_CONVERTER = """import json, sys
args = sys.argv[1:]
out = args[args.index("--outfile") + 1]
open(out, "wb").write(b"GGUF" + json.dumps(args).encode())
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """A 3-step tune of the tiny LLaVA at a high learning rate: an adapter that moves the outputs."""
    from onecard.vlm import run
    from onecard.vlm.config import TuneConfig
    from onecard.vlm.synthetic import write_splits

    root = tmp_path_factory.mktemp("export")
    splits = write_splits(root / "data", 8, 2, 0)
    config = TuneConfig(model="tiny", data=str(splits["train"]), dev_data=str(splits["dev"]), max_steps=3,
                        learning_rate=1e-2, batch_size=4, save_steps=100)
    done = run.tune(config, str(root / "runs"), ())
    return {**done.record, "dir": str(done.dir)}, root / "runs"


def test_merged_folder_loads_and_answers_as_base_plus_adapter(tuned: tuple[dict[str, Any], Path],
                                                              tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    from onecard.vlm.model import load_model, load_processor
    from onecard.vlm.train import VisionCollator, encode

    record, runs = tuned
    written = export(ExportConfig(run=record["id"], merge=True, out=str(tmp_path / "out")), str(runs))
    merged_dir = Path(written["merged"])
    assert json.loads((tmp_path / "out" / "export.json").read_text())["run"] == record["id"]
    processor = load_processor(merged_dir)
    merged = load_model(merged_dir, torch.float32, "cpu")
    base = load_model(record["model"]["dir"], torch.float32, "cpu")
    with_adapter = PeftModel.from_pretrained(load_model(record["model"]["dir"], torch.float32, "cpu"),
                                             Path(record["dir"]) / "adapter")
    from onecard.vlm.data import load_examples

    example = load_examples(Path(record["dir"]) / "dev.jsonl")[0]
    batch = VisionCollator(processor)([encode(processor, example.images, example.messages())])
    batch.pop("labels")
    with torch.no_grad():
        logits = {name: m(**batch).logits for name, m in (("merged", merged), ("adapter", with_adapter),
                                                            ("base", base))}
    assert torch.allclose(logits["merged"], logits["adapter"], atol=1e-4)  # W + BA * alpha/r, folded in
    assert not torch.allclose(logits["merged"], logits["base"], atol=1e-3)  # the tune moved the model
    from onecard.vlm.model import answer

    assert isinstance(answer(merged, processor, list(example.images), example.prompt(), max_new_tokens=3), str)


def test_gguf_of_llava_15_layout_is_refused_before_the_merge(tuned: tuple[dict[str, Any], Path],
                                                            tmp_path: Path) -> None:
    record, runs = tuned
    (tmp_path / "convert_hf_to_gguf.py").write_text(FAKE_CONVERTER)
    with pytest.raises(OnecardError, match="cannot write the projector .* clip_vision_model tower") as e:
        export(ExportConfig(run=record["id"], gguf="f16", llama_cpp=str(tmp_path), out=str(tmp_path / "out")),
               str(runs))
    assert "legacy-models" in (e.value.fix or "") and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="unknown GGUF type 'q4_k_m'"):
        export(ExportConfig(run=record["id"], gguf="q4_k_m"), str(runs))
    with pytest.raises(ConfigError, match="nothing to export"):
        export(ExportConfig(run=record["id"]), str(runs))


def test_gguf_and_mmproj_through_the_converter(tuned: tuple[dict[str, Any], Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.vlm import export as module

    record, runs = tuned
    monkeypatch.setattr(module, "check_gguf_support", lambda model: None)  # as for an architecture it knows
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    with pytest.raises(OnecardError, match="convert_hf_to_gguf.py was not found"):
        export(ExportConfig(run=record["id"], gguf="f16", llama_cpp=str(tmp_path)), str(runs))
    (tmp_path / "convert_hf_to_gguf.py").write_text(FAKE_CONVERTER)
    written = export(ExportConfig(run=record["id"], gguf="q8_0", llama_cpp=str(tmp_path), out=str(tmp_path / "o")),
                     str(runs))
    assert set(written) == {"gguf", "mmproj"}  # no --merge: the merged folder was only the converter's input
    args = {k: json.loads(Path(written[k]).read_bytes()[4:]) for k in ("gguf", "mmproj")}
    assert "--mmproj" in args["mmproj"] and "--mmproj" not in args["gguf"]
    assert args["gguf"][args["gguf"].index("--outtype") + 1] == "q8_0"
    assert Path(written["mmproj"]).name == "mmproj-q8_0.gguf" and not (tmp_path / "o" / "merged").exists()
