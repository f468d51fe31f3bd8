"""`onecard recipe`: every printed onecard command parses with onecard's own parser, every printed YAML loads through
its capability's config (unknown keys are errors there), and the configs' numbers are fit's for the card."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from onecard.cli import build_parser, main
from onecard.core.config import explicit_fields, load_config
from onecard.core.errors import ConfigError, OnecardError
from onecard.core.gpus import lookup
from onecard.recipes import PATHS, Recipe, build, render, write
from onecard.recipes.install import OSES

FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def onecard_lines(markdown: str) -> list[str]:
    """Every `onecard ...` command in the Markdown: lines of bash blocks, and inline code spans."""
    found = [line for lang, body in FENCE.findall(markdown) if lang == "bash"
             for line in body.splitlines() if line.startswith("onecard ")]
    prose = FENCE.sub("", markdown)
    return found + [span for span in re.findall(r"`([^`]+)`", prose) if span.startswith("onecard ")]


def parse(command: str):
    argv = shlex.split(command)[1:]
    return build_parser(argv[0]).parse_args(argv)


@pytest.mark.parametrize("os", OSES)
@pytest.mark.parametrize("path", PATHS)
def test_runs_as_printed(path: str, os: str, tmp_path: Path) -> None:
    recipe = build(path, "4070ti", os)
    markdown = render(recipe)
    written = write(recipe, tmp_path / "recipe.md")
    assert written[0].read_text(encoding="utf-8") == markdown
    models = {c.file: c.model for c in recipe.configs}
    commands = onecard_lines(markdown)
    assert sum(c.startswith("onecard ") for c, _ in recipe.commands) == len(recipe.commands) >= 4
    for command in commands:
        args = parse(command)  # argparse exits on an unknown flag or a bad choice
        config = getattr(args, "config", None)
        if config is not None:
            model = models[config]  # a command names only a config the recipe prints
            load_config(model, tmp_path / config, explicit_fields(model, args))
    used = {getattr(parse(c), "config", None) for c in commands}
    assert set(models) <= used, "every config is run by a printed command"
    shown = [yaml.safe_load(body) for lang, body in FENCE.findall(markdown) if lang == "yaml"]
    assert shown == [c.values for c in recipe.configs]
    for config in recipe.configs:
        assert (tmp_path / config.file).read_text(encoding="utf-8").startswith(f"# {config.command}\n")


def test_qlora_4070ti_linux_resolves_and_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.fit.plan import plan
    from onecard.tune.config import TuneConfig
    from onecard.tune.plan import choose

    assert main(["recipe", "qlora", "--gpu", "4070ti", "--os", "linux", "--out", str(tmp_path / "recipe.md")]) == 0
    markdown = (tmp_path / "recipe.md").read_text(encoding="utf-8")
    assert "pip install 'onecard[tune]'" in markdown
    train = next(c for c in onecard_lines(markdown) if c.startswith("onecard tune train --config"))
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # where --out put the recipe and its config, as a user runs it
    with pytest.raises(SystemExit) as done:
        main([*shlex.split(train)[1:], "--print-config"])
    assert done.value.code == 0
    resolved = TuneConfig.model_validate(json.loads(capsys.readouterr().out))
    assert (resolved.method, resolved.max_seq_length) == ("qlora", 2048)
    assert resolved.micro_batch_size != "auto" and resolved.gradient_checkpointing != "auto"
    # fit, asked about the printed config on the 4070 Ti, keeps its numbers and says they fit
    on_card = resolved.model_copy(update={"gpu": "4070ti"})
    settings, job = choose(on_card, resolved.model, 2048, 131072, four_bit=True, on_gpu=False)
    assert (settings.micro_batch_size, settings.gradient_checkpointing, settings.optimizer) == (
        resolved.micro_batch_size, resolved.gradient_checkpointing, resolved.optimizer)
    planned = plan(job)
    assert planned.card is not None and planned.card.key == "rtx-4070-ti"
    assert planned.fits and planned.peak_upper_gib is not None and planned.budget_gib is not None
    assert f"safe bound {planned.peak_upper_gib:.1f} GiB against a budget of {planned.budget_gib:.1f} GiB" in markdown
    assert "s per micro-batch" in markdown  # fit has a speed model for LLM training
    assert "1. sequence 2048 -> 1024" in markdown  # the ladder, in tune's order


def test_no_speed_model_is_said_not_invented() -> None:
    expect = build("yolo", "4070ti", "linux").planned.expect
    assert any("fit has no speed model" in line for line in expect)
    assert not any("s per micro-batch" in line for line in expect)


def test_auto_without_a_card_falls_back_to_the_guide_card(monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.core import device

    monkeypatch.setattr(device, "local_gpu", lambda: None)
    monkeypatch.setattr(device, "gpus", lambda: ([], "no NVIDIA GPU found (NVML: test)"))
    recipe = build("tinylm", "auto", "linux")
    assert recipe.card.key == "rtx-4070-ti"
    assert recipe.card_note is not None and "found no card here (no NVIDIA GPU found (NVML: test))" in \
        recipe.card_note
    assert f"Note: {recipe.card_note}." in render(recipe)


def test_auto_uses_the_detected_card(monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.core import device

    monkeypatch.setattr(device, "local_gpu", lambda: lookup("rtx-3060"))
    recipe = build("yolo", "auto", "windows")
    assert recipe.card.key == "rtx-3060" and "--gpu rtx-3060" in render(recipe)


def test_a_card_too_small_for_sequence_2048_gets_the_longest_that_fits(set_margins: Callable[[float], None]) -> None:
    set_margins(0.2)  # which sequence fits turns on the bound: fixed here, not bounds.json's of the day
    recipe = build("qlora", os="linux", vram=9)  # an unlisted 9 GiB card
    assert recipe.configs[0].values["max_seq_length"] == 1024
    assert "at sequence 2048: no setting" in recipe.planned.expect[0]
    assert "sequence 1024 is the longest that fits" in recipe.planned.expect[0]
    commands = [c for c, _ in recipe.commands]
    micro = recipe.configs[0].values["micro_batch_size"]
    assert f"onecard fit meta-llama/Llama-3.1-8B-Instruct --job train --method qlora --seq 1024 --batch {micro} " \
           f"--grad-accum {16 // micro} --stack onecard --vram 9 --solve" in commands
    assert "`onecard recipe qlora --vram 9 --os linux`" in render(recipe)


@pytest.mark.parametrize(("path", "card", "words"), [("qlora", {"gpu": "rtx-4060"}, "Llama-3.1-8B QLoRA does not fit"),
                                                     ("diffusion", {"vram": 4.0}, "SD 1.5 LoRA training does not fit")])
def test_a_card_too_small_is_refused_with_no_config_that_would_not_run(path: str, card: dict[str, Any],
                                                                       words: str) -> None:
    # as the YOLO, Whisper and tinylm recipes: a printed config and commands that would not run help no one
    with pytest.raises(OnecardError, match=words) as refused:
        build(path, card.get("gpu", "auto"), "linux", card.get("vram"))
    assert refused.value.fix and "onecard fit" in refused.value.fix


def test_gpu_and_vram_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="--gpu 4070ti and --vram 6 both name the card"):
        build("qlora", "4070ti", "linux", 6.0)


@pytest.mark.parametrize(("path", "gpu", "os"), [("qlora", "gtx-9999", "linux"), ("chess", "4070ti", "linux"),
                                                  ("rag", "4070ti", "beos")])
def test_bad_requests_name_the_fix(path: str, gpu: str, os: str) -> None:
    with pytest.raises(ConfigError) as e:
        build(path, gpu, os)
    assert e.value.fix


def test_json_holds_the_markdown_and_the_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "whisper", "--gpu", "rtx-3060", "--os", "macos", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["card"]["key"] == "rtx-3060" and data["os"] == "macos"
    assert [c["file"] for c in data["configs"]] == ["whisper.yaml", "whisper-finetune.yaml"]
    assert data["markdown"].startswith("# onecard recipe: ")
    assert "CTranslate2 has no Metal backend" in data["markdown"]


def test_vlm_tune_config_comes_from_the_vlm_planner() -> None:
    from onecard.vlm.config import TuneConfig

    recipe = build("vlm", "4070ti", "linux")
    assert isinstance(recipe, Recipe)
    assert [(c.file, c.model.__name__) for c in recipe.configs] == [("vlm.yaml", "TuneConfig"),
                                                                  ("vlm-chat.yaml", "VlmChatConfig")]
    assert recipe.configs[0].model is TuneConfig
    assert "onecard.vlm.plan.choose, fit: fastest plan that fits" in recipe.configs[0].source


def test_vlm_chat_is_the_vlm_chat_command_with_the_weights_it_would_pick(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.llm.fitting import fit_transformers
    from onecard.vlm.config import VlmChatConfig

    assert main(["recipe", "vlm", "--gpu", "4070ti", "--os", "linux", "--out", str(tmp_path / "recipe.md")]) == 0
    markdown = (tmp_path / "recipe.md").read_text(encoding="utf-8")
    chat = next(c for c in onecard_lines(markdown) if c.startswith("onecard vlm chat --config vlm-chat.yaml"))
    assert "onecard fit --config" not in markdown
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main([*shlex.split(chat)[1:], "--print-config"])
    assert done.value.code == 0
    resolved = VlmChatConfig.model_validate(json.loads(capsys.readouterr().out))
    assert (resolved.model, resolved.backend, resolved.gpu) == ("llava-hf/llava-1.5-7b-hf", "transformers",
                                                                "rtx-4070-ti")
    assert resolved.quant == fit_transformers(resolved.model, gpu="4070ti").quant == "nf4"  # bf16 needs ~14 GiB
    assert build("vlm", "rtx-4090", "linux").configs[1].values["quant"] == "bf16"  # 24 GiB: bf16 fits


@pytest.mark.parametrize(("path", "not_offered"), [("rag", ("attention", "KV cache")),
                                                   ("diffusion", ("optimizer", "VAE", "offload")),
                                                   ("whisper", ("paged_adamw8bit",))])
def test_ladders_hold_only_steps_the_capability_offers(path: str, not_offered: tuple[str, ...]) -> None:
    steps = [step for _, steps in build(path, "4070ti", "linux").planned.ladders for step in steps]
    assert steps
    assert not [step for step in steps if any(word in step for word in not_offered)]


@pytest.mark.parametrize("gpu", ["rtx-4060", "4070ti"])
def test_diffusion_recipe_holds_diffuses_own_plan(gpu: str) -> None:
    # diffusion.yaml carries what `onecard diffuse train` plans for the card (onecard.diffuse.plan.plan_train), so
    # the command run from it keeps those settings
    from onecard.diffuse.config import DiffuseConfig
    from onecard.diffuse.plan import plan_train

    recipe = build("diffusion", gpu, "linux")
    values = recipe.configs[0].values
    config = DiffuseConfig.model_validate(values)
    assert "onecard.diffuse.plan.plan_train" in recipe.configs[0].source
    assert config.gpu == lookup(gpu).key
    _, job = plan_train("sd15", rank=config.rank, resolution=config.resolution, batch_size=config.batch_size,
                        gradient_checkpointing="auto", optimizer="auto", gpu=config.gpu, on_cuda=False,
                        eight_bit=True)
    assert (config.micro_batch_size, config.gradient_checkpointing, config.optimizer) == (
        job.batch, job.grad_ckpt, job.optimizer)
    assert recipe.planned.fills["batch"] == config.micro_batch_size  # the recipe's `onecard fit` checks it
