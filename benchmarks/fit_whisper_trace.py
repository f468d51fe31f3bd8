"""Where onecard/fit/whisper.py's activation figures come from: transformers' Whisper traced on fake tensors.

    python benchmarks/fit_whisper_trace.py [--models small large-v2] [--skip-train]

Builds WhisperForConditionalGeneration from each catalog entry's dimensions (meta device, then FakeTensors: no
weights, no GPU) and counts live tensor bytes with onecard.fit.trace's counter:

- encoder: one 30 s window (1500 frames) through the encoder, fp16, SDPA, inference mode: the working bytes above
  the weights, in units of frames x d_model x 2 bytes (whisper.ENCODER_WORKING_UNITS);
- training: one full fine-tuning forward + backward, fp16 weights, batch 1, labels of 448 tokens, without gradient
  checkpointing: the activation bytes at the peak beside whisper.py's `_train` term (34 s d per encoder layer and
  44 s d per decoder layer, Korthikanti et al. 2022, plus the logits).

Both print traced / estimated. Needs torch and transformers (`pip install 'onecard[asr]'` or `[tune]`).

It also applies PyTorch's caching-allocator segment rules to each model's fp16 weights (whisper.ROUNDING_SLACK's
question): 0.013 tiny, 0.122 small, 0.074 medium, 0.095 large-v2 / large-v3 (segments packed in allocation order, so
an upper bound).

transformers 5.25, torch 2.13: encoder 12.43 (tiny), 12.21 (small), 12.13 (large-v2) units; training activations +
logits traced / estimated 0.25 / 0.32 (tiny), 0.70 / 0.82 (small), 2.46 / 2.91 GiB (large-v2).
"""

from __future__ import annotations

import argparse
from typing import Any

from onecard.core.extras import require
from onecard.fit import whisper
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob
from onecard.fit.overheads import MIN_LARGE_ALLOC, SMALL_SIZE, segment_bytes
from onecard.fit.trace import _dispatch_mode, _fake_params, _LiveBytes


def _model(arch: whisper.WhisperArch) -> Any:
    torch = require("torch", "asr")
    transformers = require("transformers", "asr")
    d = arch.d
    config = transformers.WhisperConfig(
        vocab_size=arch.vocab, num_mel_bins=arch.n_mels, d_model=d, encoder_layers=arch.enc_layers,
        decoder_layers=arch.dec_layers, encoder_attention_heads=arch.heads, decoder_attention_heads=arch.heads,
        encoder_ffn_dim=4 * d, decoder_ffn_dim=4 * d, max_source_positions=whisper.N_AUDIO_CTX,
        max_target_positions=whisper.N_TEXT_CTX, attn_implementation="sdpa")
    with torch.device("meta"):
        return transformers.WhisperForConditionalGeneration(config).to(torch.float16)


def _traced(model: Any, run: Any, grad: bool) -> tuple[int, dict[str, int]]:
    torch = require("torch", "asr")
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake_mode = FakeTensorMode()
    _fake_params(model, fake_mode)
    counter = _LiveBytes()
    for t in [*model.parameters(), *model.buffers()]:
        counter.add(t, "weights")
    for p in (p for p in model.parameters() if grad and p.requires_grad):
        p.register_post_accumulate_grad_hook(lambda p: counter.add(p.grad, "gradients"))
    with fake_mode, _dispatch_mode(counter):
        if grad:
            run(model)
        else:
            with torch.inference_mode():
                run(model)
    return counter.peak, counter.at_peak


def encoder_units(arch: whisper.WhisperArch) -> float:
    """Encoder working bytes of one window, in frames x d_model x 2 bytes."""
    torch = require("torch", "asr")
    model = _model(arch).eval()

    def run(m: Any) -> None:
        m.model.encoder(torch.randn(1, arch.n_mels, 2 * whisper.N_AUDIO_CTX, dtype=torch.float16))

    peak, at_peak = _traced(model, run, grad=False)
    return (peak - at_peak.get("weights", 0)) / (whisper.N_AUDIO_CTX * arch.d * 2)


def train_activations_gib(arch: whisper.WhisperArch) -> float:
    """Activation bytes at the peak of a full fine-tuning step (batch 1, 448 label tokens, no checkpointing)."""
    torch = require("torch", "asr")
    model = _model(arch).train()

    def run(m: Any) -> None:
        labels = torch.randint(0, arch.vocab, (1, whisper.N_TEXT_CTX))
        features = torch.randn(1, arch.n_mels, 2 * whisper.N_AUDIO_CTX, dtype=torch.float16)
        m(input_features=features, labels=labels).loss.backward()

    _, at_peak = _traced(model, run, grad=True)
    return at_peak.get("activations", 0) / GIB


def weight_rounding(arch: whisper.WhisperArch, bytes_per_param: int = 2) -> float:
    """Reserved / allocated - 1 for the model's parameters, allocated one by one in order as from_pretrained does,
    by the caching allocator's segment sizes (onecard.fit.overheads: small requests share 2 MiB segments, mid-size ones
    20 MiB segments, larger ones get their own)."""
    sizes = [-(-p.numel() * bytes_per_param // 512) * 512 for p in _model(arch).parameters()]
    reserved, room = 0, 0  # room: free bytes left in the current 20 MiB segment
    for size in sizes:
        if size <= SMALL_SIZE:
            reserved += size  # packed into 2 MiB segments: the tail waste is below one segment
        elif size < MIN_LARGE_ALLOC:
            if size > room:
                room = segment_bytes(size)
                reserved += room
            room -= size
        else:
            reserved += segment_bytes(size)
    return reserved / sum(sizes) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["small", "large-v2"], choices=sorted(whisper.CATALOG))
    parser.add_argument("--skip-train", action="store_true", help="only the encoder figure (faster)")
    args = parser.parse_args()
    print(f"{'figure':40} {'traced':>8} {'whisper.py':>10}")
    for key in args.models:
        arch = whisper.CATALOG[key]
        print(f"{key + ' fp16 weights: allocator rounding':40} {weight_rounding(arch):8.3f} "
              f"{whisper.ROUNDING_SLACK:10}")
        print(f"{key + ' encoder (frames x d x 2 B)':40} {encoder_units(arch):8.2f} {whisper.ENCODER_WORKING_UNITS:10}")
        if not args.skip_train:
            est = whisper.estimate(arch, FitJob(model=key, job="train", method="full", batch=1, grad_ckpt=False), None)
            estimated = est.parts["activations"] + est.parts["logits"]
            print(f"{key + ' train activations + logits, GiB':40} {train_activations_gib(arch):8.2f} {estimated:10.2f}")


if __name__ == "__main__":
    main()
