"""Training components: the schedule's shape, one step lowers the loss, evaluation, atomic checkpoints, FLOPs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

import safetensors.torch  # noqa: E402

from onecard.tinylm import train as T  # noqa: E402
from onecard.tinylm.model import GPT, ModelConfig  # noqa: E402


def _model(pos: str = "rope") -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16, pos=pos))  # type: ignore[arg-type]


def test_lr_warms_up_then_decays_to_min_lr() -> None:
    lrs = [T.lr_at(s, 1e-3, 1e-4, 10, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[10] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # rising during warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then never rising
    assert lrs[55] == pytest.approx((1e-3 + 1e-4) / 2)  # half-way through the cosine
    assert lrs[100] == pytest.approx(1e-4) and T.lr_at(500, 1e-3, 1e-4, 10, 100) == pytest.approx(1e-4)


def test_weight_decay_only_on_matrices() -> None:
    model = _model()
    optimizer = T.configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu")
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_train_steps_lower_the_loss_and_move_the_weights(grad_accum: int) -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randint(0, 20, (4, 8))
    y = torch.roll(x, -1, dims=1)
    optimizer = T.configure_optimizer(model, 3e-3, 0.0, (0.9, 0.99), "cpu")
    fp32 = lambda: T.autocast("cpu", torch.float32)  # noqa: E731
    losses = [float(T.train_step(model, optimizer, lambda: (x, y), grad_accum, 1.0, fp32)) for _ in range(30)]
    assert losses[-1] < losses[0] - 0.5
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_eval_loss_is_the_mean_over_every_window_token() -> None:
    model = _model().eval()
    data = np.random.default_rng(0).integers(0, 20, 50).astype(np.uint16)
    starts = np.array([0, 8, 16])
    loss = T.eval_loss(model, data, starts, 8, 2, "cpu", lambda: T.autocast("cpu", torch.float32))
    x = torch.from_numpy(data[:24].astype(np.int64)).view(3, 8)
    y = torch.from_numpy(data[1:25].astype(np.int64)).view(3, 8)
    with torch.no_grad():
        assert loss == pytest.approx(float(model(x, y)[1]), rel=1e-5)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model("alibi")
    optimizer = T.configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), "cpu")
    x = torch.randint(0, 20, (2, 8))
    T.train_step(model, optimizer, lambda: (x, x), 1, 1.0, lambda: T.autocast("cpu", torch.float32))
    path = tmp_path / "ckpt.safetensors"
    T.save_checkpoint(path, model, optimizer, 7, history={"train": [[7, 2.5]], "val": []})
    loaded, state = T.load_checkpoint(path)
    assert state["step"] == 7 and state["history"]["train"] == [[7, 2.5]]
    assert loaded.config == model.config and loaded.wte.weight is loaded.lm_head.weight
    torch.testing.assert_close(loaded.eval()(x)[0], model.eval()(x)[0], atol=0, rtol=0)
    fresh = T.configure_optimizer(loaded, 1e-3, 0.1, (0.9, 0.99), "cpu")
    fresh.load_state_dict(state["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temporary file left behind


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    path = tmp_path / "ckpt.safetensors"
    T.save_checkpoint(path, model, None, 1)

    def crash(tensors: object, f: str, metadata: object = None) -> None:
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        T.save_checkpoint(path, model, None, 2)
    monkeypatch.undo()
    assert T.load_checkpoint(path)[1]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_flops_per_token_follows_palm() -> None:
    model = _model("learned")
    c = model.config
    matmul_params = model.num_params() - c.block_size * c.n_embd  # the position table is only looked up
    assert T.flops_per_token(model) == 6 * matmul_params + 12 * c.n_layer * c.n_embd * c.block_size


def test_peak_on_cpu_is_measured() -> None:
    peak, source = T.peak_tflops("cpu", torch.float32)
    assert peak > 0 and source.startswith("measured: fp32")


def test_generation_speed_counts_tokens() -> None:
    model = _model().eval()
    assert T.generation_speed(model, 5, True, "cpu") > 0
    assert math.isfinite(T.generation_speed(model, 5, False, "cpu"))


def test_loss_plot_is_written(tmp_path: Path) -> None:
    T.plot_losses({"train": [[1, 3.0], [2, 2.5]], "val": [[2, 2.7]]}, tmp_path / "loss.png", "test")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
