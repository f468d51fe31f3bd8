"""A small decoder-only Transformer language model, in one file.

Read it top to bottom: the three ways to tell the model where a token is (learned embeddings, RoPE, ALiBi), the KV
cache, causal self-attention, the MLP, a block, and the model with `generate`.

Shapes: B batch, T tokens, C = n_embd channels, nh = n_head heads, hs = C // nh channels per head.

Sources: nanoGPT's model.py (Karpathy, 2022) for the GPT-2 layout and initialisation; RoFormer (Su et al., 2021) for
rotary position embeddings; "Train Short, Test Long" (Press et al., 2022) for ALiBi.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn import functional as F

__all__ = ["ModelConfig", "GPT", "KVCache", "Positions"]

Positions = Literal["learned", "rope", "alibi"]


@dataclass
class ModelConfig:
    vocab_size: int
    block_size: int = 256  # context length in tokens
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2: True; a bit better and faster without)
    pos: Positions = "rope"
    rope_base: float = 10000.0  # RoFormer's theta


# -- positions ------------------------------------------------------------------------------------------------------
# learned: a trained vector per position is added to each token embedding (GPT-2).
# rope:    queries and keys are rotated by an angle proportional to their position, so that q.k depends only on the
#          distance between the two tokens.
# alibi:   no position signal in the embeddings; each head subtracts slope * distance from its attention scores.


def rope_angles(block_size: int, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angle of every (position, channel pair): (block_size, hs // 2) each."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (hs/2,): fast to slow rotations
    angles = torch.outer(torch.arange(block_size).float(), inv_freq)  # (block_size, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the channel pairs (x[..., i], x[..., i + hs/2]) of x (B, nh, T, hs) by the angles of their positions."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(n_head: int) -> Tensor:
    """ALiBi's per-head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power of two (Press et al.).

    For other head counts the paper takes the slopes of the power of two below, then every other slope of the power
    of two above.
    """

    def geometric(n: int) -> list[float]:
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]

    below = 2 ** math.floor(math.log2(n_head))
    return torch.tensor(geometric(below) + geometric(2 * below)[0::2][: n_head - below])


def attention_mask(q_pos: Tensor, k_pos: Tensor, slopes: Tensor | None) -> Tensor:
    """The additive attention mask (nh or 1, Tq, Tk): -inf where a key is in a query's future, else 0, or ALiBi's
    -slope * distance."""
    distance = (q_pos[:, None] - k_pos[None, :]).float()  # (Tq, Tk); negative for future keys
    bias = torch.zeros_like(distance)[None] if slopes is None else -slopes[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))


# -- the KV cache ---------------------------------------------------------------------------------------------------


class KVCache:
    """Keys and values of the tokens seen so far, for every layer, preallocated to the full context.

    Generating one token then costs one token's worth of compute (plus attention over the stored keys), instead of
    a forward pass over the whole context.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, block_size: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.k = torch.zeros(n_layer, batch, n_head, block_size, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0  # tokens stored, the same in every layer; GPT.forward advances it

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys and values (B, nh, T, hs) of `layer`; return all so far (B, nh, length + T, hs)."""
        end = self.length + k.size(2)
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


# -- the blocks -----------------------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, mask: Tensor | None,
                cache: KVCache | None, layer: int) -> Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, T_past + T, hs)
        dropout_p = self.dropout if self.training else 0.0
        if mask is None:  # queries and keys are the same T tokens: SDPA's fused causal kernels apply
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:  # the explicit path: ALiBi's biases, or new queries against cached keys
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x)); the residual stream itself is never normalised."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, mask: Tensor | None,
                cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


# -- the model ------------------------------------------------------------------------------------------------------


class GPT(nn.Module):
    # Buffers (set in __init__): they move with .to(device) but are not trained, and not saved (rebuilt from config).
    rope_cos: Tensor
    rope_sin: Tensor
    alibi_slopes: Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the input embedding and the output projection share one matrix (Press & Wolf, 2017).
        self.wte.weight = self.lm_head.weight
        cos, sin = rope_angles(config.block_size, config.n_embd // config.n_head, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)

        self.apply(self._init_weights)
        # GPT-2: scale the projections into the residual stream by 1/sqrt(number of residual additions).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, the shared embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                cache: KVCache | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, vocab) for token ids idx (B, T), and the mean cross-entropy when targets (B, T) are given.

        With a cache, idx holds only the new tokens: they follow the `cache.length` tokens already stored.
        """
        B, T = idx.size()
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} tokens do not fit the context of {self.config.block_size}")
        pos = torch.arange(start, start + T, device=idx.device)  # (T,) absolute positions

        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(pos)
        x = self.drop(x)
        rope = (self.rope_cos[pos], self.rope_sin[pos]) if self.config.pos == "rope" else None
        mask = None
        if self.config.pos == "alibi" or start > 0:
            slopes = self.alibi_slopes if self.config.pos == "alibi" else None
            mask = attention_mask(pos, torch.arange(start + T, device=idx.device), slopes)
        for layer, block in enumerate(self.h):
            x = block(x, rope, mask, cache, layer)
        x = self.ln_f(x)
        if cache is not None:
            cache.length += T

        logits = self.lm_head(x)  # (B, T, vocab)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def new_cache(self, batch: int) -> KVCache:
        """An empty KV cache for `batch` sequences, on the model's device and in its dtype."""
        c, p = self.config, self.lm_head.weight
        return KVCache(c.n_layer, batch, c.n_head, c.block_size, c.n_embd // c.n_head, p.device, p.dtype)

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Sample tokens after the prompt idx (B, T); yield each new token (B, 1) with the logits (B, vocab) behind it.

        Only the last block_size tokens condition the next one, so a longer prompt is cropped. With the cache, each
        step runs only the newest token. Once a full context has been seen, the window slides and each step re-reads
        the whole window: the keys and values of the tokens kept were computed with the dropped tokens in view, so
        they differ from what the model computes without them and cannot be reused. Cached and uncached generation
        therefore give the same logits. temperature 0 picks the most likely token.
        """
        block_size = self.config.block_size
        cache = self.new_cache(idx.size(0)) if use_cache else None
        for _ in range(max_new_tokens):
            if cache is not None and 0 < cache.length < block_size:
                logits, _ = self(idx[:, -1:], cache=cache)  # the newest token against the cached past
            else:
                if cache is not None:
                    cache.length = 0  # (re)fill the cache from the window
                logits, _ = self(idx[:, -block_size:], cache=cache)
            logits = logits[:, -1, :]  # (B, vocab)
            if temperature == 0:
                next_token = logits.argmax(dim=-1, keepdim=True)
            else:
                scaled = logits / temperature
                if top_k is not None:
                    kth = torch.topk(scaled, min(top_k, scaled.size(-1))).values[:, [-1]]
                    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
                next_token = torch.multinomial(F.softmax(scaled, dim=-1), num_samples=1, generator=generator)
            yield next_token, logits
            idx = torch.cat((idx, next_token), dim=1)
