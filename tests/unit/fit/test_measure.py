"""--measure: a clear error without a GPU, and real peaks on one."""

from __future__ import annotations

import pytest

from onecard.core.errors import OnecardError
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob

torch = pytest.importorskip("torch", reason="--measure needs torch (pip install 'onecard[tune]')")

from onecard.fit.measure import measure  # noqa: E402

CUDA = torch.cuda.is_available()


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU: the no-GPU error cannot happen here")
def test_without_a_gpu_it_says_so_and_points_to_trace() -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="llama-3.1-8b", job="train"))
    assert "NVIDIA GPU" in info.value.what
    assert info.value.fix is not None and "--trace" in info.value.fix


def _tiny() -> object:
    transformers = pytest.importorskip("transformers")
    return transformers.LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA")
def test_tiny_model_measures_on_the_gpu() -> None:
    weights = 2 * 1000 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64  # parameters, bf16 x2 B
    infer = measure(FitJob(model="tiny", job="infer", quant="bf16", ctx=256, new_tokens=16), _tiny())
    assert infer.peak_allocated_gib * GIB >= weights * 2
    assert infer.peak_reserved_gib >= infer.peak_allocated_gib
    assert infer.process_gib is None or infer.process_gib >= infer.peak_reserved_gib
    assert infer.tokens_per_s and infer.tokens_per_s > 0

    pytest.importorskip("peft", reason="LoRA measuring needs peft (pip install 'onecard[tune]')")
    train = measure(FitJob(model="tiny", job="train", method="lora", optimizer="adamw", seq=128, batch=2),
                    _tiny(), steps=2)
    assert train.peak_allocated_gib * GIB >= weights * 2
    assert train.step_s and train.step_s > 0
