"""recipes: `onecard recipe PATH --gpu CARD --os OS`, the guide's closing offer as software. For one of the guide's
paths, a card and an OS: the install command, the onecard commands in order, YAML configs whose numbers come from
`onecard fit` for that card (through each capability's own planner), what to expect (peak memory against the budget,
time per step where fit has a speed model), and the troubleshooting steps (the OOM ladder in order, the driver, CUDA
and library checks of `onecard doctor`).

This package composes the capabilities' configs and planners (it sits above them, beside `cli` and `web`, which call
it); no capability imports it. Modules:

    paths.yaml / paths.py   the text of each path: title, extra, commands, per-OS notes, checks (data)
    install.py              pip commands per OS, and the torch / CUDA note
    plans.py                fit's numbers per path: the configs, the expectations, the OOM ladders
    recipe.py               `build`: a Recipe
    markdown.py             the Recipe as Markdown, and `write` (the Markdown and the YAML files)
"""

from onecard.recipes.markdown import render, write
from onecard.recipes.paths import PATHS
from onecard.recipes.recipe import Recipe, build

__all__ = ["PATHS", "Recipe", "build", "render", "write"]
