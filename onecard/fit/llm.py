"""LLM/VLM memory: which estimator sizes a job (inference, fine-tuning, or tinylm's from-scratch training)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from onecard.core.errors import ConfigError
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
    if job.job == "infer" and job.new_tokens >= job.ctx:
        raise ConfigError(f"--new-tokens {job.new_tokens} leaves no room for a prompt in --ctx {job.ctx}: the context "
                          "holds the prompt and the tokens generated", "give a --ctx above --new-tokens, or fewer "
                          "--new-tokens")
    est = llm_train.estimate(arch, job, card) if job.job == "train" else llm_infer.estimate(arch, job, card)
    tokens, flag = (job.seq, "--seq") if job.job == "train" else (job.ctx, "--ctx")
    if tokens > arch.max_ctx:
        est.assumptions.append(f"{flag} {tokens} is past the {arch.max_ctx} positions {arch.key} was trained for: "
                               "memory is planned as asked, but quality past them needs RoPE scaling or a "
                               "long-context variant")
    return est
