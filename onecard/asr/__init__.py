"""asr: transcripts of your recordings with Whisper (faster-whisper), voice activity detection, speaker labels, an
LLM post-edit that is checked not to rewrite them, WER/CER/DER against your references, and a Whisper fine-tune.

    config.py      TranscribeConfig, EvalConfig, FinetuneConfig
    audio.py       any file PyAV decodes -> 16 kHz mono float32, in chunks (bounded memory); bad files named
    model.py       model references -> CTranslate2 folders (tiny.en shipped, sizes from the HF cache); device,
                   compute type and batch from `onecard.fit` for the card (int8 on a CPU)
    transcribe.py  chunks -> segments with word timestamps, seams between chunks handled; VAD, glossary hotwords
    formats.py     Transcript, Segment, Word; TXT, SRT, WebVTT, JSON written atomically
    metrics.py     WER and CER (jiwer) after Whisper's English or basic text normaliser
    postedit.py    the LLM post-editor (`onecard.llm`) and its guard: an edit changing too many words is rejected
    data.py        evaluation manifests (TSV) and folders of audio + transcript pairs
    speakers.py    speaker labels per segment (resemblyzer's voice encoder, clustering), DER against RTTM
    diarize.py     which diarizer runs: pyannote.audio's pipeline where it imports and is cached, else speakers.py
    run.py         the entry points: transcribe, evaluate
    finetune.py    the parts of a Whisper LoRA fine-tune: fit's plan, batches, dev WER, checkpoints, CTranslate2 export
    train.py       the entry point: finetune
    tiny.py        a Whisper with random weights (tests, benchmarks)

Modules below audio.py import faster-whisper, PyAV and jiwer when called: install them with
`pip install 'onecard[asr]'`.
"""
