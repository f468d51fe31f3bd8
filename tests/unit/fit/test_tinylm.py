"""fit knows onecard.tinylm's model: catalog dims and parameter counts equal the real model's, and the saved-tensor
count of the training memory model equals what autograd keeps on the real model (the reference implementation)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from onecard.fit import catalog
from onecard.fit.job import FitJob
from onecard.fit.plan import plan
from onecard.fit.tinylm import saved_bytes

PRESETS = ("tiny", "nanogpt-cpu", "baby")


def _model(preset: str, **over: object) -> object:
    pytest.importorskip("torch", reason="the reference is the real tinylm model (onecard[tinylm])")
    from onecard.tinylm.config import PRESETS as TINYLM_PRESETS
    from onecard.tinylm.model import GPT, ModelConfig

    p = TINYLM_PRESETS[preset]
    config = ModelConfig(vocab_size=65, block_size=p["block_size"], n_layer=p["n_layer"], n_head=p["n_head"],
                         n_embd=p["n_embd"], dropout=0.0, **over)  # type: ignore[arg-type]
    return GPT(config)


@pytest.mark.parametrize("preset", PRESETS)
def test_parameters_equal_the_tinylm_model(preset: str) -> None:
    arch = catalog.find(f"tinylm-{preset}")
    assert arch is not None and arch.family == "tinylm"
    model = _model(preset)
    assert catalog.n_params(arch) == sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    assert (arch.n_layers, arch.n_heads, arch.hidden, arch.max_ctx) == (
        model.config.n_layer, model.config.n_head, model.config.n_embd, model.config.block_size)  # type: ignore[attr-defined]


def test_baby_is_nanogpts_10_65m() -> None:
    assert catalog.n_params(catalog.find("tinylm-baby")) == 10_646_784  # type: ignore[arg-type]


def _autograd_saved_bytes(model: object, batch: int, seq: int, bf16: bool) -> int:
    """Bytes of the distinct storages autograd saves in one forward (parameters excluded), on CPU."""
    import torch

    params = {p.data_ptr() for p in model.parameters()}  # type: ignore[attr-defined]
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    torch.manual_seed(0)
    x, y = torch.randint(0, 65, (batch, seq)), torch.randint(0, 65, (batch, seq))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x, y)  # type: ignore[operator]
    return sum(seen.values())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_saved_tensors_equal_autograds_count(preset: str, bf16: bool) -> None:
    arch = catalog.find(f"tinylm-{preset}")
    assert arch is not None
    model = _model(preset)
    batch = 2
    measured = _autograd_saved_bytes(model, batch, arch.max_ctx, bf16)
    # under autocast the saved tensors also hold the bf16 copy of every linear weight (counted apart by the model)
    copies = 2 * (sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2)) if bf16 else 0  # type: ignore[attr-defined]
    assert saved_bytes(arch, 2 if bf16 else 4, batch, arch.max_ctx) + copies == measured


def test_baby_at_its_training_batch_fits_a_4070ti() -> None:
    p = plan(FitJob(model="tinylm-baby", job="train", batch=64, seq=256, gpu="4070ti"))
    n = catalog.n_params(catalog.find("tinylm-baby"))  # type: ignore[arg-type]
    assert p.fits and 1.0 < p.estimate.process_gib < 4.0
    assert p.estimate.parts["weights"] * 2**30 == pytest.approx(4 * n)
    assert p.estimate.parts["optimizer"] * 2**30 == pytest.approx(8 * n)
    assert any("from scratch" in a for a in p.estimate.assumptions)


def test_fit_does_not_import_tinylm() -> None:
    """Floors: fit imports only core (ARCHITECTURE.md)."""
    for path in (Path(__file__).parents[3] / "onecard" / "fit").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("onecard.tinylm") for n in names), path
