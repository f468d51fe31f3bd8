"""Optional dependencies: the missing ones named with their extra, and installed releases read without importing."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from onecard.core.errors import MissingExtraError
from onecard.core.extras import available, release, require


def test_a_missing_module_names_the_extra_that_installs_it() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'onecard\[rag\]'"):
        require("no_such_module_onecard", "rag")
    assert not available("no_such_module_onecard") and available("json")


def test_release_reads_the_installed_version_without_importing() -> None:
    found = release("pydantic")
    assert found is not None and re.fullmatch(r"\d+\.\d+\.\d+", found)
    assert version("pydantic").startswith(found)
    assert release("no-such-distribution-onecard") is None
