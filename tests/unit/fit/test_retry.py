"""The retry-on-OOM loop: it steps down fit's ladder until the work fits, records each step, and gives up by name."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from onecard.core.errors import OnecardError
from onecard.fit.job import FitJob
from onecard.fit.ladder import oom_ladder
from onecard.fit.retry import OomStep, is_oom, retry_on_oom

LLM = FitJob(model="llama-3.1-8b", job="train", method="lora", seq=4096, batch=8, grad_ckpt=False, gpu="4070ti")
YOLO = FitJob(model="yolov8s", job="train", batch=16, amp=False, gpu="4070ti")
OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 11.99 GiB total capacity)\nmore detail"


class FakeOutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError, whose message need not say "CUDA out of memory"."""


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A loaded `torch` with its OutOfMemoryError and an empty_cache that counts its calls."""
    emptied: list[str] = []
    cuda = SimpleNamespace(empty_cache=lambda: emptied.append("empty_cache"))
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(OutOfMemoryError=FakeOutOfMemoryError, cuda=cuda))
    return emptied


def test_the_loop_steps_down_the_ladder_until_the_work_fits_and_records_each_step(fake_torch: list[str]) -> None:
    tried: list[FitJob] = []
    taken: list[OomStep] = []

    def work(job: FitJob) -> str:  # fits once the sequence is 1024 tokens or fewer
        tried.append(job)
        if job.seq > 1024:
            raise FakeOutOfMemoryError("allocation failed")
        return f"trained at {job.seq}"

    assert retry_on_oom(LLM, work, on_step=taken.append) == "trained at 1024"
    expected = list(oom_ladder(LLM))[:2]  # the ladder halves the sequence first: 4096 -> 2048 -> 1024
    assert [(s.job, s.change) for s in taken] == expected
    assert [s.change for s in taken] == ["sequence 4096 -> 2048", "sequence 2048 -> 1024"]
    assert [s.error for s in taken] == ["allocation failed"] * 2
    assert tried == [LLM, *(job for job, _ in expected)]
    assert fake_torch == ["empty_cache"] * 2  # the failed attempt's memory is given back before each retry


def test_a_capability_can_pass_the_ladder_its_machine_allows() -> None:
    smaller = YOLO.model_copy(update={"batch": 4})
    taken: list[OomStep] = []

    def work(job: FitJob) -> int:
        if job.batch > 4:
            raise RuntimeError(OOM_MESSAGE)
        return job.batch

    assert retry_on_oom(YOLO, work, ladder=[(smaller, "batch 16 -> 4")], on_step=taken.append) == 4
    assert taken == [OomStep(job=smaller, change="batch 16 -> 4", error=OOM_MESSAGE.splitlines()[0])]


def test_when_the_ladder_runs_out_the_error_names_every_step_taken() -> None:
    calls: list[FitJob] = []

    def work(job: FitJob) -> None:
        calls.append(job)
        raise RuntimeError(OOM_MESSAGE)

    ladder = list(oom_ladder(YOLO))
    assert ladder, "a yolo job with AMP off and batch 16 has steps to take"
    with pytest.raises(OnecardError) as raised:
        retry_on_oom(YOLO, work)
    what = raised.value.what
    assert what.startswith("out of GPU memory running yolov8s (train) as planned; then with ")
    assert what.endswith("fit's out-of-memory ladder has no further step")
    assert all(f"then with {change}" in what for _, change in ladder)
    assert len(calls) == len(ladder) + 1 and calls[-1] == ladder[-1][0]
    assert isinstance(raised.value.__cause__, RuntimeError) and "onecard fit yolov8s" in (raised.value.fix or "")


def test_an_error_other_than_out_of_memory_passes_through_untouched(fake_torch: list[str]) -> None:
    bad_data = ValueError("pairs.jsonl:3: 'response' is missing")
    taken: list[OomStep] = []

    def work(job: FitJob) -> None:
        raise bad_data

    with pytest.raises(ValueError) as raised:
        retry_on_oom(LLM, work, on_step=taken.append)
    assert raised.value is bad_data and raised.value.__cause__ is None
    assert taken == [] and fake_torch == []


def test_is_oom_knows_torch_errors_only_when_torch_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert is_oom(RuntimeError(OOM_MESSAGE)) and not is_oom(FakeOutOfMemoryError("allocation failed"))
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(OutOfMemoryError=FakeOutOfMemoryError))
    assert is_oom(FakeOutOfMemoryError("allocation failed")) and not is_oom(RuntimeError("shape mismatch"))
