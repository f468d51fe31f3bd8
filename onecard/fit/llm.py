"""LLM/VLM memory: which estimator sizes a job (inference, fine-tuning, or tinylm's from-scratch training)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from onecard.fit import llm_infer, llm_train, tinylm
from onecard.fit.catalog import LlmArch
from onecard.fit.estimate import Estimate
from onecard.fit.job import FitJob

if TYPE_CHECKING:
    from onecard.core.gpus import GpuSpec

__all__ = ["estimate"]


def estimate(arch: LlmArch, job: FitJob, card: GpuSpec | None) -> Estimate:
    """Peak GPU memory of an LLM/VLM job: inference on transformers, llama.cpp, vLLM or Ollama, or training.

    Raises:
        ConfigError: a combination the runtime does not offer (e.g. full fine-tuning of 4-bit weights).
    """
    if job.job == "train" and arch.family == "tinylm":
        return tinylm.estimate(arch, job, card)
    if job.job == "train":
        return llm_train.estimate(arch, job, card)
    return llm_infer.estimate(arch, job, card)
