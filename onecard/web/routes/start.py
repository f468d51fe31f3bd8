"""/ (Start) and /api/start: this machine (`onecard doctor`), what its card runs (`onecard fit`), the guide's paths
(onecard.recipes' paths: their titles, extras, pages and the import that tells an extra is installed), and
/api/start/run: a path's recipe run from the page.

The recipe part of the page (`onecard recipe`) is filled from /api/recipe. A run takes the recipe's commands in order:
- `doctor` and `fit` are reports, answered here: the machine probe above and fit's figures for the card (the recipe's
  "What to expect"); nothing is queued for them.
- a command the Jobs queue runs (a `JobKind`: `onecard CAP ACTION --config FILE --json`) has its flags read onto its
  config by core.config's own flag builder, over the recipe's YAML where it names one (defaults < file < flags, as the
  CLI resolves them). Its steps are queued in order, each starting only once the one before succeeded; a `last` run in
  a step is the run the nearest earlier training step of the same capability opened.
- anything else (a data check, an interactive chat, a `--resume` after Ctrl-C) is listed, not run.
The path fields of the queued steps hold the recipe's placeholders (`input.txt`, `my_pairs.jsonl`): they are the run
form's inputs, kept inside the registered folders. Install lines are never run (nothing from a request reaches a
shell, and nothing is downloaded): each says whether this machine already has what it installs.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from onecard.core.errors import MissingExtraError
from onecard.web.errors import RequestError
from onecard.web.jobs import KINDS, TRAINING_ACTIONS, Job, JobKind
from onecard.web.routes.jobs import Tracker, checked_config, queue_of
from onecard.web.routes.recipe import Os, RecipePath
from onecard.web.security import safe_path
from onecard.web.settings import WebSettings

if TYPE_CHECKING:
    from onecard.recipes import Recipe

router = APIRouter(prefix="/api/start", tags=["start"])

PROBE_TTL_S = 60.0  # the machine probe imports torch and asks NVML: seconds, not milliseconds; kept a minute
_probe: dict[str, Any] = {}


def machine() -> dict[str, Any]:
    """`onecard doctor`'s report, probed at most once a minute."""
    from onecard.core.doctor import report

    if not _probe or time.monotonic() - _probe["at"] > PROBE_TTL_S:
        _probe.update(at=time.monotonic(), report=report())
    data: dict[str, Any] = _probe["report"]
    return data


@router.get("", summary="This machine, what its card (or the named one) runs, and the guide's paths")
def start(gpu: str | None = Query(None, max_length=64, description="a catalog card instead of the detected one")
          ) -> dict[str, Any]:
    from onecard.core.extras import available
    from onecard.fit.run import can_run
    from onecard.recipes.paths import PATHS, path_text

    data = machine()
    texts = {key: path_text(key) for key in PATHS}
    return {"machine": data, "can_run": can_run(data["gpus"], gpu),
            "paths": [{"key": key, "title": text["title"], "page": text["page"], "extra": text["extra"],
                       "installed": available(text["module"])} for key, text in texts.items()]}


# -- a recipe's steps ------------------------------------------------------------------------------------------------


def _beside(name: str, config: str, **fields: tuple[str, ...]) -> JobKind:
    """A command of a capability the Jobs page trains: its extra and imports are that capability's."""
    capability, action = name.split()
    first = next(k for k in KINDS if k.capability == capability)
    return JobKind(capability, action, config, first.extra, first.needs, **fields)


# The Jobs page's kinds, and the commands that read the run a recipe trained (all take --config FILE and --json).
RECIPE_KINDS: tuple[JobKind, ...] = (
    *KINDS,
    _beside("tinylm sample", "onecard.tinylm.config:SampleConfig", refs=("run",)),
    _beside("tinylm eval", "onecard.tinylm.config:EvalConfig", paths=("data",), refs=("run",), globs=("glob",)),
    _beside("tinylm bench", "onecard.tinylm.config:BenchConfig", refs=("run",)),
    _beside("tune eval", "onecard.tune.config:EvalConfig", paths=("data",), refs=("run",)),
    _beside("tune export", "onecard.tune.config:ExportConfig", refs=("run",), outputs=("out",)),
    _beside("detect eval", "onecard.detect.config:EvalConfig", paths=("data",), refs=("run",)),
    _beside("detect export", "onecard.detect.config:ExportConfig", paths=("data",), refs=("run",)),
    _beside("diffuse export", "onecard.diffuse.config:ExportConfig", refs=("run",), outputs=("out",)),
    _beside("asr eval", "onecard.asr.config:EvalConfig", paths=("data",), refs=("model",)),
    _beside("vlm eval", "onecard.vlm.config:EvalConfig", paths=("data",), refs=("target",)),
    _beside("vlm export", "onecard.vlm.config:ExportConfig", refs=("run",), outputs=("out",)),
)
REPORTS = ("doctor", "fit")


@dataclass
class Step:
    """One command of a recipe, and how a run from the page takes it.

    Attributes:
        how: "here" (a report, answered on this page), "job" (queued in the Jobs queue) or "skip" (listed, not run).
        values: a job's config keys: the recipe's YAML it names, then its flags.
        inputs: a job's path fields and the placeholders they hold (the run form's inputs).
        last: a job's fields that name the `last` run, and the index of the step whose run that is.
    """

    command: str
    why: str
    how: Literal["here", "job", "skip"]
    note: str = ""
    kind: JobKind | None = None
    values: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)

    def to_json(self, index: int) -> dict[str, Any]:
        return {"index": index, "command": self.command, "why": self.why, "how": self.how, "note": self.note,
                "kind": self.kind.name if self.kind else None,
                "uses_run_of": sorted({j + 1 for j in self.last.values()})}  # step numbers, from 1


def recipe_steps(commands: list[tuple[str, str]], files: dict[str, dict[str, Any]]) -> list[Step]:
    """The recipe's commands as steps; `files` are its YAML configs' keys by file name."""
    kinds = {k.name: k for k in RECIPE_KINDS}
    steps: list[Step] = []
    for command, why in commands:
        argv = shlex.split(command)[1:]  # without `onecard`
        kind = kinds.get(" ".join(argv[:2]))
        if argv[0] in REPORTS:
            steps.append(Step(command, why, "here", "answered on this page: " + (
                "This machine, above" if argv[0] == "doctor" else "fit's figures for the card, What to expect")))
            continue
        if kind is None:
            steps.append(Step(command, why, "skip", "not run from this page: run it in a terminal (the page queues "
                                                    "the commands that take a --config file)"))
            continue
        values, resume = _parse(kind, argv[2:], files)
        if resume:
            steps.append(Step(command, why, "skip", "continues an interrupted run: run it in a terminal when needed"))
            continue
        step = Step(command, why, "job", f"queued as a {kind.name} job", kind, values)
        for name in kind.paths:
            value = values.get(name)
            if value is not None:
                step.inputs[name] = [value] if isinstance(value, str) else list(value)
        for name in kind.refs:
            trained = [i for i, s in enumerate(steps) if s.kind and s.kind.capability == kind.capability
                       and s.kind.action in TRAINING_ACTIONS]
            if values.get(name) == "last" and trained:
                step.last[name] = trained[-1]
        steps.append(step)
    return steps


def _parse(kind: JobKind, argv: list[str], files: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """A command line's config keys as the CLI resolves them (onecard's own parser): the --config file's keys, then
    the flags; and whether it resumes a run."""
    from onecard.cli import build_parser
    from onecard.core.config import explicit_fields

    args = build_parser(kind.capability).parse_args([kind.capability, kind.action, *argv])
    config = getattr(args, "config", None) or ""
    return {**files.get(config, {}), **explicit_fields(kind.model(), args)}, bool(getattr(args, "resume", None))


# -- the run: what it will do, and starting it -----------------------------------------------------------------------


def _placeholders(steps: list[Step]) -> dict[str, list[str]]:
    """Each input the recipe's steps read (`input.txt`), with the steps and fields that read it."""
    found: dict[str, list[str]] = {}
    for i, step in enumerate(steps):
        for name, items in step.inputs.items():
            for item in items:
                found.setdefault(item, []).append(f"step {i + 1} ({step.kind.name if step.kind else ''}: {name})")
    return found


def _refusal(recipe: Recipe, steps: list[Step]) -> MissingExtraError | RequestError | None:
    """Why this machine cannot run the recipe from the page: a missing extra (named, with its pip line), or no step
    the queue runs."""
    from onecard.core.extras import available

    extra = recipe.text["extra"]
    if not available(recipe.text["module"]):
        return MissingExtraError(f"the {recipe.path} recipe needs the '{extra}' extra, which is not installed",
                                 f"install it with `pip install 'onecard[{extra}]'`, then start the run again")
    for step in steps:
        if step.kind is not None and not step.kind.installed():
            return MissingExtraError(f"{step.kind.name} needs the '{step.kind.extra}' extra, which is not installed",
                                     f"install it with `{step.kind.install}`, then start the run again")
    if not any(s.how == "job" for s in steps):
        return RequestError(400, f"the {recipe.path} recipe has no step this page runs",
                            f"use its page, {recipe.text['page']}, or run its commands in a terminal")
    return None


def _install_status(recipe: Recipe, ready: bool) -> list[dict[str, Any]]:
    """Each install line, and whether this machine already has what it installs (doctor's probe, onecard's extras)."""
    torch = machine()["torch"]
    out = []
    for line in recipe.install:
        extra = re.search(r"onecard\[(\w+)\]", line)
        if line.startswith("pip install") and extra:
            done: bool | None = ready
            note = (f"the '{extra[1]}' extra is installed" if ready
                    else f"the '{extra[1]}' extra is not installed here: the run is refused until it is")
        elif line.startswith("pip install torch"):
            done = torch["installed"]
            note = f"torch {torch['version']} ({torch['build']} build)" if done else "torch is not installed"
        else:
            done, note = None, "a download: not run from this page (nothing here is downloaded); the run form asks " \
                               "for the files the steps read"
        out.append({"line": line, "satisfied": done, "note": note})
    return out


@router.get("/run", summary="What running a path's recipe from the page does: install status, inputs, steps")
def run_plan(path: Annotated[RecipePath, Query(description="the project")],
             gpu: Annotated[str, Query(max_length=64, description="a catalog card (4070ti...) or auto")] = "auto",
             os: Annotated[Os | None, Query(description="the OS of the install lines; None: the server's")] = None,
             vram: Annotated[float | None, Query(gt=0, le=1024, description="an unlisted card's memory in GiB")] = None
             ) -> dict[str, Any]:
    from onecard.recipes import build
    from onecard.recipes.markdown import yaml_text
    from onecard.recipes.recipe import this_os

    recipe = build(path, gpu, os, vram)
    steps = recipe_steps(recipe.commands, {c.file: c.values for c in recipe.configs})
    refusal = _refusal(recipe, steps)
    return {
        "path": recipe.path, "extra": recipe.text["extra"], "page": recipe.text["page"],
        "refusal": {"error": refusal.what, "fix": refusal.fix} if refusal else None,
        "os_note": None if recipe.os == this_os() else f"the install lines are for {recipe.os}; the steps run on "
                                                        f"this server ({this_os()})",
        "install": _install_status(recipe, not isinstance(refusal, MissingExtraError)),
        "inputs": [{"name": name, "type": "folder" if name.endswith("/") else "file", "used_by": used}
                   for name, used in _placeholders(steps).items()],
        "configs": [{"file": c.file, "yaml": yaml_text(c)} for c in recipe.configs],
        "steps": [s.to_json(i + 1) for i, s in enumerate(steps)],
    }


class RunRequest(BaseModel):
    """A recipe to run from the Start page: the path, card and OS of /api/recipe, the inputs, the configs' YAML."""

    model_config = ConfigDict(extra="forbid")

    path: RecipePath = Field(description="the project")
    gpu: str = Field("auto", max_length=64, description="a catalog card (4070ti...) or auto")
    os: Os | None = Field(None, description="the OS of the install lines; None: the server's")
    vram: float | None = Field(None, gt=0, le=1024, description="an unlisted card's memory in GiB, instead of gpu")
    inputs: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, description="each input the steps read (see GET .../run: inputs), as a file or folder "
                                          "in a registered folder")
    configs: dict[str, Annotated[str, Field(max_length=100_000)]] = Field(
        default_factory=dict, description="a config file's YAML in place of the recipe's (by file name)")
    report_to: list[Tracker] = Field(["trackio"], description="metric trackers of the training steps")


@router.post("/run", status_code=201, summary="Run a path's recipe: its steps queued in order in the Jobs queue")
def run(request: Request, body: RunRequest) -> dict[str, Any]:
    from onecard.recipes import build, write

    recipe = build(body.path, body.gpu, body.os, body.vram)
    settings: WebSettings = request.app.state.settings
    steps = _filled_steps(body, recipe, (*settings.folders, settings.uploads_dir.resolve()))
    refusal = _refusal(recipe, steps)
    if refusal is not None:
        raise refusal
    # every step checked before the first is queued: a bad one queues nothing
    checked = {i: checked_config(request, s.kind, s.values, ("body", "steps", str(i + 1)))
               for i, s in enumerate(steps) if s.kind is not None and s.how == "job"}
    folder = settings.data_dir / "recipes" / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{recipe.path}-" \
                                             f"{secrets.token_hex(3)}"
    written = write(recipe, folder / "recipe.md")
    queue, before = queue_of(request), None
    jobs: dict[int, Job] = {}
    for i, config in checked.items():
        kind = steps[i].kind
        assert kind is not None
        before = jobs[i] = queue.submit(kind, config, body.report_to, after=before,
                                        run_refs={name: jobs[j] for name, j in steps[i].last.items()})
    shown = []
    for i, step in enumerate(steps):
        job = jobs.get(i)
        shown.append({**step.to_json(i + 1), "result": _report(step, recipe) if step.how == "here" else None,
                      "job": job.summary(queue.position(job)) if job else None,
                      "job_url": f"/jobs#{job.id}" if job else None})
    return {"path": recipe.path, "folder": str(folder), "files": [str(f) for f in written], "steps": shown}


def _filled_steps(body: RunRequest, recipe: Recipe, folders: tuple[Path, ...]) -> list[Step]:
    """The recipe's steps with the request's configs and inputs (its configs too, for the YAML written out); a
    missing input is a 422 naming it and the step that reads it."""
    placeholders = _placeholders(recipe_steps(recipe.commands, {c.file: c.values for c in recipe.configs}))
    unknown = set(body.configs) - {c.file for c in recipe.configs}
    if unknown:
        raise _invalid(("configs", min(unknown)), f"not a config of this recipe; its configs: "
                       f"{', '.join(c.file for c in recipe.configs)}")
    given = {name: str(_input_path(name, value, folders)) for name, value in body.inputs.items() if value}
    for c in recipe.configs:
        c.values = {k: _filled(v, placeholders, given) for k, v in _config_values(body, c.file, c.values).items()}
    steps = recipe_steps(recipe.commands, {c.file: c.values for c in recipe.configs})
    for i, step in enumerate(steps):
        for name, items in step.inputs.items():
            missing = [item for item in items if item in placeholders and item not in given]
            if missing:
                raise _invalid(("inputs", missing[0]), f"step {i + 1} (`{step.command}`) reads its {name} from "
                               f"{missing[0]!r}: give that {'folder' if missing[0].endswith('/') else 'file'} "
                               "(inside a registered folder)")
        step.values = {k: _filled(v, placeholders, given) for k, v in step.values.items()}
    return steps


def _config_values(body: RunRequest, file: str, values: dict[str, Any]) -> dict[str, Any]:
    """The recipe's keys for `file`, or the YAML the request sent in their place."""
    import yaml

    if file not in body.configs:
        return values
    text = body.configs[file]
    try:
        # an alias repeats a node by reference: a few nested ones make a YAML of 1 kB expand past any memory
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
            raise _invalid(("configs", file), "YAML aliases (*name) are not taken here: write the values out")
        sent = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _invalid(("configs", file), f"not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(sent, dict):
        raise _invalid(("configs", file), "must be a mapping of config keys (key: value lines)")
    return {str(k): v for k, v in sent.items()}


def _input_path(name: str, value: str, folders: tuple[Path, ...]) -> Path:
    """The input's real path inside the registered folders; a refusal names the input."""
    try:
        found = safe_path(value, folders)
    except RequestError as e:
        raise RequestError(e.status_code, f"inputs.{name}: {e.what}", e.fix) from None
    if not found.exists():
        raise RequestError(400, f"inputs.{name}: {value!r} is in none of the registered folders "
                                f"({', '.join(str(f) for f in folders)})", "name a file or folder inside one of them")
    return found


def _filled(value: Any, placeholders: dict[str, list[str]], given: dict[str, str]) -> Any:
    """A config value with each placeholder the user gave replaced by the user's path."""
    if isinstance(value, str):
        return given.get(value, value) if value in placeholders else value
    if isinstance(value, list):
        return [_filled(v, placeholders, given) for v in value]
    return value


def _report(step: Step, recipe: Recipe) -> dict[str, Any]:
    """doctor's and fit's answers, from this page's machine probe and the recipe's fit figures."""
    if step.command.split()[1] == "doctor":
        data = machine()
        return {"gpus": [g["name"] for g in data["gpus"]] or [data["gpu_note"]],
                "missing": [f"{m['what']}: {m['install']}" for m in data["missing"]]}
    return {"expect": recipe.planned.expect}


def _invalid(loc: tuple[str, ...], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": message, "type": "value_error"}])
