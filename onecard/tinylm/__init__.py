"""tinylm: a small Transformer language model written from scratch, trained, sampled, evaluated and benchmarked.

    config.py     TinyLMConfig (train, with presets), SampleConfig, EvalConfig, BenchConfig
    model.py      the model, in one file: learned / RoPE / ALiBi positions, KV cache, generate
    tokenizer.py  characters, or byte-level BPE (the `tokenizers` library)
    data.py       corpus -> train.bin / val.bin token arrays -> batches
    train.py      lr schedule, optimizer, one step, evaluation, checkpoints, MFU, loss plot
    run.py        the entry points: train, sample, evaluate, bench

The modules below config.py import torch: import them after `onecard.core.extras.require("torch", "tinylm")`.
"""
