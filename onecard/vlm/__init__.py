"""vlm: chat about images with a LLaVA-class model (bf16 or 4-bit, fitted to the card), and a light LoRA / QLoRA of
its language model on your image-text pairs.

    config.py      CheckConfig, TuneConfig, VlmChatConfig, EvalConfig, ExportConfig
    synthetic.py   coloured shapes on a grid with short questions: a set whose answers are fixed by the pixels
    tiny.py        a random-weight LLaVA and its processor, saved as a model folder (tests, benchmarks)
    model.py       model references -> folders; load in bf16/fp32 or NF4; the chat prompt; greedy answers
    data.py        JSONL rows (image paths + prompt/response or messages) -> examples; bad lines by number; duplicates
    plan.py        "auto" knobs from `onecard.fit` (a VLM train job); its out-of-memory ladder
    train.py       token ids and answer-only labels, the vision collator, TRL's SFTTrainer, the run-record callback
    run.py         the entry points: check, tune
    chat.py        vlm chat: a vision model behind `onecard.llm` (transformers, llama.cpp + mmproj, Ollama), recorded
    evaluate.py    vlm eval: exact match, token F1 and answer loss, base against tuned
    report.py      the eval's self-contained HTML report (images inlined)
    export.py      vlm export: merged weights; GGUF + mmproj through llama.cpp's converter where it knows the model

Modules below synthetic.py import torch, transformers and pillow: `pip install 'onecard[vlm]'`.
"""
