"""Fixtures the unit tests of several capabilities share."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def load_benchmark(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Imports a script of benchmarks/ by name ("fit_bounds") as a module, for this test only. The scripts import
    their neighbours (fit_bounds imports fit_accuracy, the backtest fit_bounds), so benchmarks/ goes on sys.path and
    each loaded script into sys.modules, both undone after the test."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def set_margins(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Sets every job kind's and mechanism group's bound margin (onecard/fit/bounds.json) to one value for the test.

    Tests whose outcome turns on which plans fit must not move each time benchmarks/fit_bounds.py rewrites
    bounds.json from the planner's errors of the day; they fix the margins instead.
    """
    from onecard.fit import bound

    real = bound.bounds()

    def set_all(margin: float) -> None:
        def fixed(entry: dict[str, Any]) -> dict[str, Any]:
            return entry | {"margin": margin, "abs_gib": 0.0}

        monkeypatch.setattr(bound, "bounds", lambda: real | {
            "kinds": {kind: fixed(entry) for kind, entry in real["kinds"].items()}, "default": fixed(real["default"]),
            "groups": {group: fixed(entry) for group, entry in real.get("groups", {}).items()}})

    return set_all


@pytest.fixture
def point_estimate(set_margins: Callable[[float], None]) -> None:
    """Bound margins at 0: a plan fits when its point estimate does, as before the safe bound. For tests of what the
    estimators and the search say (the guide's claims, the ranking, a stack's logits); the bound itself is tested in
    tests/unit/fit/test_bound.py."""
    set_margins(0.0)
