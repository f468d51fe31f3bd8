"""How many bytes per logit the causal-LM loss of the installed transformers holds, forward and backward (CPU).

    python benchmarks/fit_logits_trace.py [--seqs 256 512 1024] [--vocab 32000]
    PYTHONPATH=/path/to/transformers-4.39.3 python benchmarks/fit_logits_trace.py   # an older release

The question (issue 13, LLaMA-Factory 0.6 QLoRA rows): does transformers' loss path of April 2024 (4.39:
`logits = logits.float()` in LlamaForCausalLM.forward, then `logits[..., :-1, :].contiguous()` into
CrossEntropyLoss) hold more (seq x vocab) buffers than today's `ForCausalLMLoss`, which `onecard.fit.llm_train`'s
standard loss models at 12 B per logit (`loss_bytes`)?

Builds a LlamaForCausalLM from a config with Llama 2's vocabulary and a tiny body (2 layers, hidden 64, so the
logits are nearly all of the activations), bf16 weights all frozen and the embedding output requiring grad (what
LoRA and `enable_input_require_grads` make: the frozen lm_head keeps no input for a weight gradient), and runs one
forward + `loss.backward()` on real CPU tensors under onecard.fit.trace's live-storage counter, one counter per
phase. Prints the live bytes above the weights at each phase's peak per logit (batch x seq x vocab), and the
slope between the sequence lengths (the per-logit figure without the body's own activations).

Measured (torch 2.13 CPU, vocab 32000, seq 256-1024):
  transformers 4.39.3: forward 12.0, backward 12.0 B per logit (slope)
  transformers 5.25:   forward 10.0, backward 12.0 B per logit (slope)
(see the printout for the exact figures; benchmarks/RESULTS.md's planner section quotes them).
"""

from __future__ import annotations

import argparse
from typing import Any

from onecard.core.extras import require
from onecard.fit.llm_train import loss_bytes
from onecard.fit.trace import _dispatch_mode, _LiveBytes


def _model(vocab: int) -> Any:
    torch = require("torch", "fit")
    transformers = require("transformers", "fit")
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.requires_grad_(False)
    model.enable_input_require_grads()  # the embedding output requires grad, as under PEFT LoRA
    model.train()
    return model


def measure(model: Any, seq: int, vocab: int) -> tuple[float, float]:
    """Live bytes above the weights and inputs at the forward's and the backward's peak, per logit."""
    torch = require("torch", "fit")
    ids = torch.randint(0, vocab, (1, seq))
    counter = _LiveBytes()
    with _dispatch_mode(counter):
        base = sum(counter.live.values())
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss  # the model's output (logits) is dropped here
        forward, counter.peak = counter.peak, 0
        loss.backward()
        backward = counter.peak
    logits = seq * vocab
    return (forward - base) / logits, (backward - base) / logits


def main() -> None:
    transformers = require("transformers", "fit")
    torch = require("torch", "fit")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seqs", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--vocab", type=int, default=32000)
    args = ap.parse_args()
    model = _model(args.vocab)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, vocab {args.vocab}, bf16, CPU")
    print(f"{'seq':>6} {'forward B/logit':>16} {'backward B/logit':>17}")
    rows = []
    for seq in args.seqs:
        fwd, bwd = measure(model, seq, args.vocab)
        rows.append((seq, fwd, bwd))
        print(f"{seq:>6} {fwd:>16.2f} {bwd:>17.2f}")
    (s0, f0, b0), (s1, f1, b1) = rows[0], rows[-1]
    n0, n1 = s0 * args.vocab, s1 * args.vocab
    slope_f, slope_b = (f1 * n1 - f0 * n0) / (n1 - n0), (b1 * n1 - b0 * n0) / (n1 - n0)
    fit = loss_bytes("standard", 1, args.vocab, 64, 2) / args.vocab
    print(f"slope {s0}->{s1}: forward {slope_f:.2f}, backward {slope_b:.2f} B per logit; "
          f"onecard.fit's standard loss: {fit:.2f} B per logit")


if __name__ == "__main__":
    main()
