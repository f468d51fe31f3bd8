"""Training parts on the tiny model: packed rows do not see each other, and a CUDA OOM steps down fit's ladder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from onecard.tune import run  # noqa: E402
from onecard.tune.config import TuneConfig  # noqa: E402
from onecard.tune.model import build_random_llama  # noqa: E402
from onecard.tune.train import make_trainer, score_responses_only  # noqa: E402


def test_packed_rows_attend_only_within_themselves(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    build_random_llama(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    a, b = list(range(40, 70)), list(range(100, 120))
    # the collator the trainer uses with packing (padding-free): one row, position ids restart per example
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": a, "labels": a}, {"input_ids": b, "labels": b}])
    assert batch["position_ids"][0, len(a)] == 0 and batch["labels"][0, len(a)] == -100  # no target across rows
    # Without a cache, transformers turns restarting position ids into a block-diagonal mask (SDPA, eager and flash
    # alike); SFTTrainer.compute_loss passes use_cache=False for this reason.
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([b])).logits[0]
    torch.testing.assert_close(packed[len(a):], alone, atol=1e-5, rtol=1e-4)


def test_only_response_tokens_are_scored_with_the_same_loss_and_gradients(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    build_random_llama(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    trl_utils.add_fused_lm_head(model)
    ids = torch.arange(40, 104).reshape(2, 32)
    labels = ids.clone()
    labels[0, :20] = -100  # prompt tokens
    labels[1, :10] = -100
    scored: list[int] = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden: Any, *args: Any) -> Any:
        scored.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)

    def loss_and_grads() -> tuple[Any, list[Any]]:
        model.zero_grad()
        loss = model(input_ids=ids, labels=labels, fused_lm_head=True).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    every_loss, every_grads = loss_and_grads()
    with score_responses_only():
        responses_loss, responses_grads = loss_and_grads()
    assert scored == [2 * 31, (32 - 20) + (32 - 10)]  # every shifted position, then only the labelled ones
    torch.testing.assert_close(responses_loss, every_loss)
    for a, b in zip(responses_grads, every_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert trl_utils._use_triton(torch.device("cpu")) is False  # put back after the block


@pytest.fixture
def pairs(shared_data: Path, tmp_path: Path) -> Path:
    lines = (shared_data / "instruct" / "dolly_hhrlhf_train_small.jsonl").read_text().splitlines()[:24]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_out_of_memory_error_steps_down_the_ladder_and_training_continues(
        pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[Any] = []

    def first_attempt_runs_out_of_memory(*args: Any, **kwargs: Any) -> Any:
        trainer = make_trainer(*args, **kwargs)
        attempts.append(trainer.args)
        if len(attempts) == 1:
            def oom(**_: Any) -> None:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            trainer.train = oom
        return trainer

    monkeypatch.setattr("onecard.tune.train.make_trainer", first_attempt_runs_out_of_memory)
    config = TuneConfig(model="tiny", data=str(pairs), max_steps=3, batch_size=4, max_seq_length=384,
                        learning_rate=5e-3, logging_steps=1, save_steps=100)
    trained = run.train(config, str(tmp_path / "runs"), ())
    record = trained.record
    assert record["status"] == "succeeded" and len(attempts) == 2
    assert record["oom_steps"][0]["change"] == "gradient checkpointing on"  # seq is at fit's floor; no 4-bit here
    assert record["oom_steps"][0]["at_step"] == 0 and record["oom_steps"][0]["resume_from"] is None
    assert record["oom_steps"][0]["settings"] == record["plan"]
    assert record["plan"]["gradient_checkpointing"] is True and attempts[1].gradient_checkpointing is True
    assert record["plan"]["source"].startswith("fit's out-of-memory ladder")
    assert record["metrics"]["oom_steps"] == 1 and record["metrics"]["steps"] == 3


def test_the_saved_adapter_gives_the_logits_of_the_trained_model(pairs: Path, tmp_path: Path) -> None:
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = TuneConfig(model="tiny", data=str(pairs), max_steps=4, batch_size=4, max_seq_length=384,
                        learning_rate=5e-3, logging_steps=1, save_steps=4)
    trained = run.train(config, str(tmp_path / "runs"), ())
    adapter, checkpoint = trained.dir / "adapter", trained.dir / "checkpoints" / "checkpoint-4"
    base_dir = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    ids = torch.tensor([[60, 61, 62, 70, 80, 90, 100, 110]])
    logits = []
    for folder in (adapter, checkpoint):  # the trainer's own checkpoint of the in-memory model, and the export
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), folder).eval()
        with torch.no_grad():
            logits.append(model(ids).logits)
            with model.disable_adapter():
                base = model(ids).logits
    assert torch.equal(logits[0], logits[1]) and not torch.allclose(logits[0], base)


def test_ctrl_c_before_the_trainer_steps_aborts_at_once_and_while_it_steps_asks_for_a_checkpoint() -> None:
    import signal

    from onecard.tune.train import RecordCallback, StopFlag, stop_on_signal

    flag = StopFlag()
    callback = RecordCallback(run=None, history={"train": [], "dev": []}, stop=flag)
    state = type("State", (), {"global_step": 0})()
    with pytest.raises(KeyboardInterrupt), stop_on_signal(flag):
        signal.raise_signal(signal.SIGINT)  # building the trainer: there is no step to finish and save
    assert not flag.requested
    with stop_on_signal(flag):
        callback.on_train_begin(None, state, None)
        signal.raise_signal(signal.SIGINT)
        assert flag.requested  # the callback saves and stops at the end of this step
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # a second Ctrl-C aborts
    assert not flag.stepping


@pytest.mark.parametrize(("targets", "modules"), [("attn", {"q_proj", "k_proj", "v_proj", "o_proj"}),
                                                  ("qv", {"q_proj", "v_proj"}),
                                                  ("q_proj, v_proj", {"q_proj", "v_proj"})])
def test_the_short_lora_target_names_are_the_modules_peft_adapts(tmp_path: Path, targets: str,
                                                                 modules: set[str]) -> None:
    import torch
    from peft import get_peft_model

    from onecard.tune.model import build_random_llama, load_model, lora_config

    build_random_llama(tmp_path / "tiny")
    model = get_peft_model(load_model(tmp_path / "tiny", torch.float32, "cpu"), lora_config(4, 8, 0.0, targets))
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if "lora_A" in n}
    assert adapted == modules
