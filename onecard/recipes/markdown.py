"""A recipe as Markdown: headings, paragraphs, lists and fenced code only (the Start page renders that subset), and
`write`, which saves it with its YAML configs beside it."""

from __future__ import annotations

from pathlib import Path

from onecard.core.records import write_text_atomic
from onecard.recipes.install import torch_note
from onecard.recipes.plans import ConfigFile, card_flag
from onecard.recipes.recipe import Recipe

__all__ = ["render", "yaml_text", "write"]


def yaml_text(config: ConfigFile) -> str:
    """The config file's text: the command that runs it, where its numbers came from, then its keys."""
    import yaml

    body = yaml.safe_dump(config.values, sort_keys=False, allow_unicode=True)
    return f"# {config.command}\n# {config.source}\n{body}"


def render(recipe: Recipe) -> str:
    """The recipe as one Markdown document."""
    text, card = recipe.text, recipe.card
    out = [f"# onecard recipe: {text['title']}", "",
           f"For the **{card.name}** ({card.vram_gib:g} GiB) on **{recipe.os}**: `onecard recipe {recipe.path} "
           f"{card_flag(card)} --os {recipe.os}`.", ""]
    if recipe.card_note:
        out += [f"Note: {recipe.card_note}.", ""]
    out += [text["what"], "", "## 1. Install", "", "```bash", *recipe.install, "```", "",
            f"- {torch_note(recipe.os)}", f"- {text['os'][recipe.os]}", "",
            "## 2. The commands, in order", "", "```bash"]
    for command, comment in recipe.commands:
        out += [f"# {comment}", command]
    out += ["```", "", "## 3. Config", ""]
    again = f"onecard recipe {recipe.path} {card_flag(card)} --os {recipe.os}"
    for config in recipe.configs:
        out += [f"Save as `{config.file}` (`{again} --out recipe.md` writes it beside the recipe):", "", "```yaml",
                yaml_text(config).rstrip("\n"), "```", ""]
    out += ["## 4. What to expect", "", f"onecard fit's figures for the {card.name}:", "",
            *(f"- {line}" for line in recipe.planned.expect), "", "## 5. Troubleshooting", "",
            "### Out of memory: the ladder, in order", ""]
    for job, steps in recipe.planned.ladders:
        out += [f"{job[0].upper()}{job[1:]}:", ""]
        out += [f"{i}. {step}" for i, step in enumerate(steps, 1)] or ["- no cheaper step: the job is at its floor"]
        out.append("")
    out += ["### Driver, CUDA and libraries", "", *(f"- {check}" for check in recipe.checks()), ""]
    return "\n".join(out)


def write(recipe: Recipe, out: str | Path) -> list[Path]:
    """Write the recipe's Markdown to `out` and each of its configs beside it (each atomically); returns the files."""
    import yaml

    target = Path(out).expanduser()
    write_text_atomic(target, render(recipe))
    written = [target]
    for config in recipe.configs:
        file = target.parent / config.file
        write_text_atomic(file, yaml_text(config))
        assert yaml.safe_load(file.read_text(encoding="utf-8")) == config.values  # what the Markdown shows
        written.append(file)
    return written
