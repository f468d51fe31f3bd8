"""A recipe: the install, the onecard commands in order, the configs with fit's numbers for the card, what to expect,
and the troubleshooting steps, for one path, card and OS (`build`); written out as Markdown and YAML files (`write`).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from onecard.core.errors import ConfigError
from onecard.core.gpus import GpuSpec
from onecard.recipes.install import OSES, install_commands, torch_note
from onecard.recipes.paths import PATHS, path_text
from onecard.recipes.plans import ConfigFile, Planned, card_flag, plan_path

__all__ = ["Recipe", "build", "resolve_card", "this_os", "GUIDE_CARD"]

GUIDE_CARD = "4070ti"  # the guide's card: the recipe's card when --gpu auto finds none

# What `onecard doctor` checks, read for every path on a machine with an NVIDIA card.
DOCTOR_CHECKS = (
    "`onecard doctor` under GPU: your card, with its driver and CUDA version. `no NVIDIA GPU found (NVML: ...)`: the "
    "NVIDIA driver is missing or not loaded; install it, then `nvidia-smi` must list the card.",
    "`onecard doctor` under PyTorch: a `cuda 12.x build` with CUDA yes. A `cpu build` while a GPU is present: "
    "reinstall torch with the CUDA wheel (Install, above). CUDA no on a CUDA build: the driver is older than the "
    "build's CUDA, or CUDA_VISIBLE_DEVICES hides the card.",
)


@dataclass
class Recipe:
    """One path's recipe for a card and an OS; `markdown.render` writes it out."""

    path: str
    os: str
    card: GpuSpec
    card_note: str | None  # how the card was chosen, when --gpu auto had to fall back
    text: dict[str, Any]  # the path's entry of paths.yaml
    install: list[str]
    commands: list[tuple[str, str]]  # (command, comment)
    planned: Planned

    @property
    def configs(self) -> list[ConfigFile]:
        return self.planned.configs

    def checks(self) -> list[str]:
        own = list(self.text["checks"])
        return own if self.os == "macos" else [*DOCTOR_CHECKS, *own]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "title": self.text["title"], "what": self.text["what"], "os": self.os,
            "card": {"key": self.card.key, "name": self.card.name, "vram_gib": self.card.vram_gib},
            "card_note": self.card_note, "extra": self.text["extra"], "install": self.install,
            "install_notes": [torch_note(self.os), self.text["os"][self.os]],
            "commands": [{"command": c, "comment": note} for c, note in self.commands],
            "configs": [c.to_json() for c in self.configs], "expect": self.planned.expect,
            "oom_ladder": [{"job": job, "steps": steps} for job, steps in self.planned.ladders],
            "checks": self.checks(),
        }


def this_os() -> str:
    """linux, windows or macos: the OS this runs on (the recipe's default)."""
    return {"Windows": "windows", "Darwin": "macos"}.get(platform.system(), "linux")


def resolve_card(gpu: str, vram: float | None = None) -> tuple[GpuSpec, str | None]:
    """The card for `--gpu`: a catalog name, or auto (the detected card, else the guide's 4070 Ti, said so); a card
    the catalog does not list by its memory (`vram`, GiB)."""
    from onecard.core import device, gpus

    if vram is not None and gpu != "auto":
        raise ConfigError(f"--gpu {gpu} and --vram {vram:g} both name the card",
                          "give --gpu for a card in the catalog, or --vram for any other card's memory in GiB")
    if vram is not None:
        return gpus.custom(vram), None
    if gpu != "auto":
        return gpus.lookup(gpu), None
    found = device.local_gpu()
    if found is not None:
        return found, f"--gpu auto: the card detected here, {found.name}"
    _, why = device.gpus()
    card = gpus.lookup(GUIDE_CARD)
    return card, (f"--gpu auto found no card here ({why}), so this recipe is for the guide's card, the {card.name}; "
                  "pass --gpu NAME (4070ti, rtx-3060...) for yours")


def build(path: str, gpu: str = "auto", os: str | None = None, vram: float | None = None) -> Recipe:
    """The recipe of `path` (one of PATHS) for a card (`gpu`: a catalog name or auto; or `vram`: an unlisted card's
    memory in GiB) and an OS (None: this one).

    Raises:
        ConfigError: an unknown path, OS or card.
    """
    if path not in PATHS:
        raise ConfigError(f"unknown recipe path {path!r}", f"pick one of: {', '.join(PATHS)}")
    os = os or this_os()
    if os not in OSES:
        raise ConfigError(f"unknown OS {os!r}", f"pick one of: {', '.join(OSES)}")
    card, note = resolve_card(gpu, vram)
    planned = plan_path(path, card)
    text = path_text(path)
    fills = {"card": card_flag(card), **planned.fills}
    commands = [(c["run"].format(**fills), c["why"]) for c in text["commands"]]
    return Recipe(path, os, card, note, text, [*install_commands(text["extra"], os), *text["downloads"]],
                  commands, planned)

