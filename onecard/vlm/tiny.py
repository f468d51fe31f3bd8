"""A tiny LLaVA with random weights, saved as a transformers model folder: what the tests, the learning test and the
CPU benchmark run on (no vision-language weights are on PyPI, and nothing downloads in tests).

The layout is LLaVA-1.5's (`LlavaForConditionalGeneration`: a CLIP vision tower, a two-layer GELU projector, a Llama
language model), scaled down: a 2-layer CLIP ViT of width 32 on 64 px images in 16 px patches (16 image tokens, CLS
dropped as LLaVA's "default" feature strategy does), a 2-layer Llama of width 64 (with `learnable`, its weights drawn
wider than transformers' default: `TEXT_INIT_STD`). The processor is a `LlavaProcessor` with a `CLIPImageProcessor`
(its PIL backend: no torchvision needed), a word-level tokenizer built here from the synthetic set's words
(lower-cased, unknown words become <unk>), and LLaVA-1.5's own chat template ("USER: <image>\\n... ASSISTANT:"), so
`model.py` loads the folder as it loads llava-hf/llava-1.5-7b-hf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onecard.vlm.synthetic import CELLS, COLOURS, QUESTION_WORDS, SHAPES

__all__ = ["make_tiny_llava", "write_llava", "word_tokenizer", "LLAVA_CHAT_TEMPLATE"]

# llava-hf/llava-1.5-7b-hf's chat_template.json: images first in a turn, then its text; "ASSISTANT:" opens an answer.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', "
    "'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
# Weights are drawn wider than transformers' default std of 0.02, so that the frozen random model behaves enough like
# a trained one for a LoRA to teach it: at 0.02 the queries and keys are so small that attention stays uniform (the
# answer sees the image only as the mean of every token), and the output head's logits against RMS-normed hidden
# states of norm sqrt(64) = 8 cannot exceed about 0.02 * 8 * 8 = 1.3, so no answer can become likely. Measured on the
# one-shape synthetic set (LoRA r16 + projector, lr 3e-3, 150 steps of 16 rows), first answer token right on the dev
# set: 0.87 at std 0.1 (head 0.2) against 0.38 (the answer prior) at 0.02 with the head at 0.2; with everything at
# 0.02 the loss stalled at 2.9.
TEXT_INIT_STD = 0.1
OUTPUT_HEAD_STD = 0.2


def _words() -> list[str]:
    words = ["user", "assistant", "system", ":", ".", ",", "!", "yes", "no", "a", "of", "in", "and", "which", "colour",
             "color", "how", "many", "shapes", "there", "are", "image", "picture"]
    words += list(QUESTION_WORDS) + list(COLOURS) + list(SHAPES) + [w for cell in CELLS for w in cell.split()]
    return list(dict.fromkeys(words))


def word_tokenizer() -> Any:
    """A word-level fast tokenizer over the synthetic set's words (lower-cased; others become <unk>)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIALS, *_words()])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>"},
                                   model_max_length=512)


def make_tiny_llava(out: str | Path, seed: int = 0, image_size: int = 64, patch_size: int = 16,
                    vision_hidden: int = 32, vision_layers: int = 2, text_hidden: int = 64,
                    text_layers: int = 2, learnable: bool = False) -> Path:
    """Write a random-weight LLaVA of these dimensions and its processor to `out` (safetensors); returns `out`.

    `learnable`: the language model's weights drawn at `TEXT_INIT_STD` and its head at `OUTPUT_HEAD_STD`, so that a
    LoRA can teach it (the "tiny" model of `onecard vlm`); False: transformers' default init (std 0.02), a model that
    reads nothing and writes near-uniform tokens (what the chat backends' tests stream).
    """
    vision = dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_hidden_layers=vision_layers,
                  num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=vision_hidden)
    text = dict(hidden_size=text_hidden, intermediate_size=2 * text_hidden, num_hidden_layers=text_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                initializer_range=TEXT_INIT_STD if learnable else 0.02)
    return write_llava(out, vision, text, vision_feature_layer=-1, seed=seed,
                       head_std=OUTPUT_HEAD_STD if learnable else None)


def write_llava(out: str | Path, vision: dict[str, Any], text: dict[str, Any], *, vision_feature_layer: int,
                seed: int = 0, head_std: float | None = None, dtype: Any = None) -> Path:
    """Write a random-weight LLaVA-1.5-layout model (`vision`: CLIPVisionConfig fields, `text`: LlamaConfig fields,
    the vocabulary excepted) with this module's word-level processor to `out`; returns `out`.

    The tokenizer's ids are the first rows of the text model's vocabulary (`text["vocab_size"]`, by default just the
    tokenizer's), so a real model's sizes stay real. `head_std` redraws the output head; `dtype` (e.g. bfloat16)
    builds the weights in that dtype, for models too large to build in fp32 first.
    """
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(out)
    tokenizer = word_tokenizer()
    image_size, patch_size = vision["image_size"], vision["patch_size"]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**{"vocab_size": len(tokenizer), **text}, pad_token_id=tokenizer.pad_token_id,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=vision_feature_layer,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype or default)
    try:
        model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    if head_std is not None:
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, head_std)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    return out
