"""tune: a LoRA / QLoRA fine-tune of a causal LM on your instruction data, fitted to the card, evaluated, exported.

    config.py      CheckConfig, TuneConfig (train), EvalConfig, ExportConfig
    data.py        JSONL rows (alpaca, prompt/response, chat) -> conversations; bad lines by number; dedupe; split
    formatting.py  conversations -> token ids and labels with the model's chat template (loss on responses only)
    model.py       model references -> local folders ("tiny", GGUF converted once); 16-bit or 4-bit loading; LoRA
    plan.py        "auto" knobs from `onecard.fit`; its out-of-memory ladder
    train.py       the SFTTrainer over tokenized rows (core.trainer's) and the response-only scoring
    evaluate.py    dev loss, perplexity, exact match, token F1, ROUGE-L: base vs tuned
    export.py      adapter, merged weights, GGUF, Ollama Modelfile, accelerate / DeepSpeed configs
    run.py         the entry points: check, train, evaluate, export

Modules below plan.py import torch and transformers: install them with `pip install 'onecard[tune]'`.
"""
