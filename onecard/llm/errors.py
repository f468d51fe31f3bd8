"""The errors of `onecard.llm`, below every other module of it (`base` and `schema` both raise them)."""

from __future__ import annotations

from onecard.core.errors import OnecardError

__all__ = ["LLMError", "BackendUnavailableError", "ContextOverflowError", "UnsupportedError", "InvalidOutputError"]


class LLMError(OnecardError):
    """A model could not be loaded or did not answer."""


class BackendUnavailableError(LLMError):
    """The server (Ollama, vLLM, llama-server) does not answer at its URL."""


class ContextOverflowError(LLMError):
    """The conversation is longer than the model's context window."""


class UnsupportedError(LLMError):
    """The backend cannot do what was asked (tools, JSON schema, streaming)."""


class InvalidOutputError(LLMError):
    """The reply does not parse or validate against the requested JSON schema, or was cut off before it was whole."""
