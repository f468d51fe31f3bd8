"""transformers: a model folder, a cached hub id or a .gguf file (dequantized), with the weight format from `fit`.

A folder whose config has a vision tower (LLaVA, Qwen2-VL, SmolVLM) loads as an image-text model with its processor
(AutoModelForImageTextToText + AutoProcessor) and reads image parts.

On CUDA a model that does not fit in bf16 loads in 4-bit NF4 through bitsandbytes; on CPU the weights are fp32.
No grammar engine is built in, so tools and JSON schemas are refused up front (llamacpp, ollama or openai do both).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from onecard.llm.base import Backend, Capabilities, Clock, ContextOverflowError, LLMError, Message, Reply, Request
from onecard.llm.images import load_image

__all__ = ["TransformersBackend", "VISION_SKIP_4BIT"]

VISION_SKIP_4BIT = ("vision_tower", "multi_modal_projector", "lm_head")  # LLaVA-family module names


class TransformersBackend(Backend):
    """A causal LM, or an image-text model with its processor, loaded with transformers in this process."""

    name = "transformers"
    capabilities = Capabilities(streaming=True, tools=False, json_schema=False,
                                notes=("no constrained decoding in transformers' generate",))

    def __init__(self, model: str, path: Path, *, quant: str, ctx: int | None = None, seed: int = 0) -> None:
        from onecard.core import device
        from onecard.core.extras import require

        super().__init__(model)
        require("torch", "llm")
        transformers = require("transformers", "llm")
        import torch

        dev = device.select_device()
        kwargs: dict[str, Any] = {"dtype": {"bf16": torch.bfloat16, "fp16": torch.float16}.get(quant, torch.float32)}
        if quant == "nf4":
            if not device.supports_4bit():
                raise LLMError("4-bit (nf4) weights need an NVIDIA GPU and bitsandbytes",
                               "on this machine pass --quant fp32 (CPU) or use the llamacpp backend with a GGUF file;"
                               " on a CUDA machine `pip install bitsandbytes`")
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True)
            kwargs["dtype"] = torch.bfloat16
        folder, gguf = (path.parent, path.name) if path.suffix == ".gguf" else (path, None)
        if gguf:
            kwargs["gguf_file"] = gguf
        self.processor: Any = None  # a vision model's processor (image preprocessing, tokenizer, chat template)
        try:
            if gguf is None and _is_vision(folder):
                if quant == "nf4":  # the language model in 4-bit; the small vision tower and projector in bf16,
                    # as `onecard fit` counts a VLM (bitsandbytes skips the output head unless told a list)
                    kwargs["quantization_config"].llm_int8_skip_modules = list(VISION_SKIP_4BIT)
                self.processor = transformers.AutoProcessor.from_pretrained(folder)
                self.tokenizer = self.processor.tokenizer
                self.lm = transformers.AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
                self.capabilities = Capabilities(streaming=True, tools=False, json_schema=False, vision=True,
                                                 notes=(*TransformersBackend.capabilities.notes,
                                                        "images: the model's processor"))
            else:
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
                self.lm = transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        except (OSError, ValueError) as e:
            raise LLMError(f"transformers could not load {path}: {e}",
                           "pass a model folder with config.json and weights, a cached hub id, or a .gguf file"
                           ) from None
        if dev != "cpu" and quant != "nf4":
            self.lm.to(dev)
        self.lm.eval()
        torch.manual_seed(seed)
        if (self.processor or self.tokenizer).chat_template is None:
            raise LLMError(f"{path} has no chat template (a base model, not an instruction-tuned one)",
                           "pass an instruction-tuned model (its tokenizer_config.json or chat_template.json has a "
                           "chat_template)")
        # A vision model's language model holds the length (LLaVA: text_config.max_position_embeddings).
        self.max_ctx = int(getattr(self.lm.config.get_text_config(), "max_position_embeddings", 4096))
        self.ctx = ctx or self.max_ctx
        self.settings = {"model": str(path), "quant": quant, "device": dev, "ctx": self.ctx}

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        import torch
        from transformers import TextIteratorStreamer

        clock = Clock()
        if self.processor is not None:
            inputs = self.processor.apply_chat_template(
                _with_images(request.messages), add_generation_prompt=True, tokenize=True, return_dict=True,
                return_tensors="pt").to(self.lm.device, dtype=self.lm.dtype)  # the dtype casts pixel_values only
        else:
            inputs = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                        return_tensors="pt", return_dict=True).to(self.lm.device)
        n_prompt = int(inputs["input_ids"].shape[1])
        if n_prompt >= self.ctx:
            raise ContextOverflowError(f"the conversation is {n_prompt} tokens, the context is {self.ctx}",
                                       f"pass a longer --ctx (up to the model's {self.max_ctx}), shorten the input, "
                                       "or /reset the chat")
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        greedy = request.temperature == 0
        options: dict[str, Any] = {"max_new_tokens": min(request.max_tokens, self.ctx - n_prompt),
                                   "do_sample": not greedy, "streamer": streamer,
                                   "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if not greedy:
            options["temperature"] = request.temperature
        if request.seed is not None:
            torch.manual_seed(request.seed)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    result["ids"] = self.lm.generate(**inputs, **options)
            except Exception as e:  # re-raised in the caller's thread
                result["error"] = e
                streamer.end()  # type: ignore[no-untyped-call]

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text: list[str] = []
        for piece in streamer:
            if piece:
                clock.tick()
                text.append(piece)
                yield piece
        thread.join()
        if "error" in result:
            raise LLMError(f"transformers generate failed: {result['error']}") from result["error"]
        n_new = int(result["ids"].shape[1]) - n_prompt
        finish = "length" if n_new >= options["max_new_tokens"] else "stop"
        return clock.done(Reply("".join(text), [], n_prompt, n_new, finish_reason=finish))


def _is_vision(folder: Path) -> bool:
    """Whether the model folder holds an image-text model (LLaVA, Qwen2-VL, SmolVLM...): its config has a vision
    tower."""
    import transformers

    return hasattr(transformers.AutoConfig.from_pretrained(folder), "vision_config")


def _with_images(messages: list[Message]) -> list[Message]:
    """Messages as processors' chat templates read them: every content a list of parts, each image decoded
    ({"type": "image", "image": PIL image})."""
    out: list[Message] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = [{"type": "image", "image": load_image(p["image_url"]["url"])} if p["type"] == "image_url"
                     else p for p in content]
        else:
            parts = [{"type": "text", "text": content or ""}]
        out.append({**m, "content": parts})
    return out
