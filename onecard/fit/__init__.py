"""fit: the memory planner. Predicts the peak GPU memory of a job on a card, says what it is made of, and finds the
settings that fit. Base install only: no torch, answers in milliseconds. Modules from the bottom up (each imports
only those above it in this list):

    job.py         FitJob: the knobs of a job (model, infer/train, method, quant, seq, batch...): CLI, YAML, web
    estimate.py    Estimate: a peak split into parts (weights, KV cache, activations...) with its assumptions
    overheads.py   what a process holds besides its tensors: CUDA context, allocator slack (defined once)
    catalog.py     LLM/VLM architecture facts; readers.py the same facts from config.json, safetensors, GGUF
    formats.py     weight formats (16-bit, bitsandbytes, GPTQ/AWQ, GGUF) and KV cache dtypes, and their bytes
    stacks.py      what each training stack (transformers, trl, onecard, torchtune, unsloth, litgpt, axolotl) does

  the estimators, one per family, each `estimate(arch, job, card) -> Estimate`:
    llm.py         LLM/VLM: sends a job to llm_infer.py (transformers, llama.cpp, Ollama, vLLM inference),
                   llm_train.py (full / LoRA / QLoRA fine-tuning) or tinylm.py (onecard tinylm's from-scratch GPT)
    diffusion.py   Stable Diffusion 1.5 / SDXL inference and LoRA training
    yolo.py        YOLOv8 detection, segmentation, pose and classification, training and inference
    whisper.py     Whisper transcription and fine-tuning (openai-whisper, faster-whisper, transformers)

  planning on top of them:
    bound.py       the safe bound (a margin per job kind, from bounds.json: benchmarks/fit_bounds.py) and this
                   machine's corrections (calibration.json)
    plan.py        the front door: resolve the card and the model (`resolve_arch`: family, architecture,
                   estimator), estimate, correct, bound, say whether the bound fits the budget (`judge`)
    knobs.py       the space of knobs per family: what "auto" stands for, the values a search tries, the steps
                   that lower the peak
    solve.py       walks the space: every setting that fits, ranked (`onecard fit --solve`)
    ladder.py      walks the steps: the out-of-memory ladder and the cheapest fixes
    retry.py       the retry-on-OOM loop a training capability wraps its work in (steps down the ladder)
    trace.py       the peak of a real transformers model on fake tensors (`--trace`, needs torch)
    measure.py     a few real steps on the GPU, NVML and allocator peaks (`--measure`)
    observations.py  measured peaks of real jobs on this machine (--measure, the capabilities' GPU runs)
    calibrate.py   `onecard fit calibrate`: per-card, per-kind corrections from them, checked leave-one-out
    report.py      the answer as JSON or rich text;  run.py  the entry points the CLI and web app call
"""
