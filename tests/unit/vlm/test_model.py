"""The tiny LLaVA, the synthetic set, and model.py's loading, prompt and answer on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("PIL")

from onecard.core.errors import ModelNotFoundError  # noqa: E402
from onecard.vlm import synthetic  # noqa: E402
from onecard.vlm.model import answer, chat_messages, load_model, load_processor, lora_config, model_dir, prompt_text  # noqa: E402
from onecard.vlm.tiny import make_tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llava(tmp_path_factory.mktemp("tiny") / "model")


def test_tiny_folder_loads_as_llava_with_its_template(tiny: Path) -> None:
    import torch

    processor = load_processor(tiny)
    model = load_model(tiny, torch.float32, "cpu")
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert (tiny / "model.safetensors").is_file()
    text = prompt_text(processor, [{"role": "user", "content": "what colour is the square?"}], 1,
                       add_generation_prompt=True)
    assert text == "USER: <image>\nwhat colour is the square? ASSISTANT:"  # LLaVA-1.5's prompt
    image = synthetic.make_image([("red", "square", "top left")])
    ids = processor(text=text, images=[image], return_tensors="pt")["input_ids"][0].tolist()
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ids.count(image_id) == 16  # (64 px / 16 px patches)^2, CLS dropped
    assert "<unk>" not in processor.tokenizer.convert_ids_to_tokens(ids)
    reply = answer(model, processor, [image], "what colour is the square?", max_new_tokens=3)
    assert isinstance(reply, str) and reply


def test_chat_messages_put_images_in_the_first_user_turn() -> None:
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    messages = chat_messages(turns, 2)
    assert [c["type"] for c in messages[0]["content"]] == ["image", "image", "text"]
    assert [c["type"] for c in messages[2]["content"]] == ["text"]


def test_lora_targets_the_language_model_only(tiny: Path) -> None:
    import torch
    from peft import get_peft_model

    model = get_peft_model(load_model(tiny, torch.float32, "cpu"), lora_config(4, 8, 0.0, "all-linear", True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    assert any("multi_modal_projector" in n for n in trainable)
    assert not any("vision_tower" in n for n in trainable)
    plain = get_peft_model(load_model(tiny, torch.float32, "cpu"), lora_config(4, 8, 0.0, "q_proj,v_proj"))
    names = [n for n, p in plain.named_parameters() if p.requires_grad]
    assert names and all("language_model" in n and ("q_proj" in n or "v_proj" in n) for n in names)


def test_missing_model_says_how_to_get_llava() -> None:
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download llava-hf/llava-1.5-7b-hf"):
        model_dir("no-such-model")


def test_synthetic_set_is_seeded_and_answers_follow_the_pixels(tmp_path: Path) -> None:
    first = synthetic.write_set(tmp_path / "a", images=6, seed=3)
    second = synthetic.write_set(tmp_path / "b", images=6, seed=3)
    assert first.read_text() == second.read_text()
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(rows) == 18 and {r["kind"] for r in rows} == {"colour", "where", "shape"}
    for (objects, questions) in synthetic.make_rows(6, seed=3):
        by_shape = {shape: (colour, cell) for colour, shape, cell in objects}
        by_colour = {colour: shape for colour, shape, _ in objects}
        colour_q, where_q, shape_q = questions
        assert by_shape[colour_q["prompt"].split()[-1].rstrip("?")][0] == colour_q["response"]
        assert by_shape[where_q["prompt"].split()[-1].rstrip("?")][1] == where_q["response"]
        assert by_colour[shape_q["prompt"].split()[-1].rstrip("?")] == shape_q["response"]
    from PIL import Image

    image = Image.open(first.parent / rows[0]["image"])
    assert image.size == (64, 64)


@pytest.mark.parametrize(("targets", "modules"), [("attn", {"q_proj", "k_proj", "v_proj", "o_proj"}),
                                                  ("qv", {"q_proj", "v_proj"})])
def test_the_short_lora_target_names_fit_plans_are_the_modules_peft_adapts(tiny: Path, targets: str,
                                                                           modules: set[str]) -> None:
    # `--lora-targets attn` was planned by fit and then refused by PEFT ("Target modules {'attn'} not found")
    import torch
    from peft import get_peft_model

    model = get_peft_model(load_model(tiny, torch.float32, "cpu"), lora_config(4, 8, 0.0, targets))
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if "lora_A" in n}
    assert adapted == modules
