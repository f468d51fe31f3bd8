"""The model: the KV cache gives the uncached logits for every position scheme, the window crops and slides, the
positions behave as their papers say, and the sizes match nanoGPT's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from onecard.tinylm.config import PRESETS  # noqa: E402
from onecard.tinylm.model import GPT, ModelConfig, alibi_slopes, apply_rope, rope_angles  # noqa: E402

SCHEMES = ["learned", "rope", "alibi"]
ATOL = 1e-5  # fp32; the cached and uncached paths differ only in the order of float operations


def _model(pos: str, block_size: int = 16, n_head: int = 3) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=50, block_size=block_size, n_layer=2, n_head=n_head, n_embd=24, pos=pos)).eval()


@pytest.mark.parametrize("pos", SCHEMES)
def test_cached_forward_gives_the_uncached_logits(pos: str) -> None:
    model = _model(pos)
    idx = torch.randint(0, 50, (2, 14))
    full, _ = model(idx)
    cache = model.new_cache(2)
    pieces = [model(idx[:, :5], cache=cache)[0], model(idx[:, 5:9], cache=cache)[0]]  # prefill, then a chunk
    pieces += [model(idx[:, t: t + 1], cache=cache)[0] for t in range(9, 14)]  # then one token at a time
    assert cache.length == 14
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("pos", SCHEMES)
def test_generation_with_and_without_cache_agree_past_the_context(pos: str) -> None:
    model = _model(pos, block_size=16)
    prompt = torch.randint(0, 50, (2, 5))
    runs = []
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(7)
        runs.append(list(model.generate(prompt, 40, temperature=1.0, top_k=20, use_cache=use_cache,
                                        generator=generator)))  # 45 tokens: the window slides 29 times
    for (tok_c, logits_c), (tok_u, logits_u) in zip(*runs, strict=True):
        torch.testing.assert_close(logits_c, logits_u, atol=ATOL, rtol=0)
        assert torch.equal(tok_c, tok_u)


@pytest.mark.parametrize("pos", SCHEMES)
def test_a_prompt_longer_than_the_context_is_cropped(pos: str) -> None:
    model = _model(pos, block_size=16)
    long_prompt = torch.randint(0, 50, (1, 30))
    outs = []
    for prompt in (long_prompt, long_prompt[:, -16:]):
        generator = torch.Generator().manual_seed(3)
        outs.append([t for t, _ in model.generate(prompt, 10, generator=generator)])
    assert all(torch.equal(a, b) for a, b in zip(*outs, strict=True))


@pytest.mark.parametrize("pos", SCHEMES)
def test_sliding_uses_exactly_the_last_block_of_tokens(pos: str) -> None:
    model = _model(pos, block_size=8)
    prompt = torch.randint(0, 50, (1, 3))
    tokens, logits = zip(*model.generate(prompt, 12, temperature=0), strict=True)
    seq = torch.cat([prompt, *tokens], dim=1)
    for i, step_logits in enumerate(logits):  # step i predicts token 3 + i from (at most) the 8 before it
        window = seq[:, max(0, 3 + i - 8): 3 + i]
        torch.testing.assert_close(step_logits, model(window)[0][:, -1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("pos", SCHEMES)
def test_attention_is_causal(pos: str) -> None:
    model = _model(pos)
    idx = torch.randint(0, 50, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 50
    torch.testing.assert_close(model(idx)[0][:, :8], model(changed)[0][:, :8], atol=0, rtol=0)
    assert not torch.allclose(model(idx)[0][:, 8:], model(changed)[0][:, 8:])


def test_the_context_is_enforced() -> None:
    model = _model("rope", block_size=8)
    with pytest.raises(ValueError, match="do not fit the context of 8"):
        model(torch.zeros((1, 9), dtype=torch.long))


def test_rope_scores_depend_only_on_the_distance() -> None:
    cos, sin = rope_angles(64, 8, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> torch.Tensor:
        return (apply_rope(q, cos[i: i + 1], sin[i: i + 1]) * apply_rope(k, cos[j: j + 1], sin[j: j + 1])).sum()

    torch.testing.assert_close(score(10, 3), score(50, 43))
    torch.testing.assert_close(score(0, 0), (q * k).sum())  # position 0 is not rotated


def test_alibi_slopes_follow_the_paper() -> None:
    # Press et al.: 8 heads -> 1/2, 1/4, ..., 1/256; 6 heads -> the 4-head slopes, then every other 8-head slope.
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -i for i in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]))


def test_weights_are_tied() -> None:
    model = _model("rope")
    assert model.wte.weight is model.lm_head.weight


@pytest.mark.parametrize(("preset", "pos", "millions"), [("baby", "rope", 10.65), ("baby", "learned", 10.75),
                                                          ("nanogpt-cpu", "learned", 0.80)])
def test_preset_sizes_match_nanogpt(preset: str, pos: str, millions: float) -> None:
    # nanoGPT prints 10.65 M for its baby GPT (not counting the 0.1 M position table, which RoPE has no need of)
    # and 0.80 M for its CPU run.
    p = PRESETS[preset]
    config = ModelConfig(vocab_size=65, block_size=p["block_size"], n_layer=p["n_layer"], n_head=p["n_head"],
                         n_embd=p["n_embd"], pos=pos)  # type: ignore[arg-type]
    n = GPT(config).num_params()
    assert round(n / 1e6, 2) == millions
