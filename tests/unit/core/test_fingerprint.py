"""Content fingerprints change with content, not with file order or timestamps."""

from __future__ import annotations

import os
from pathlib import Path

from onecard.core.fingerprint import fingerprint


def test_folder_fingerprint_follows_content(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("two")
    first = fingerprint(tmp_path)
    assert first["files"] == 2 and first["bytes"] == 6
    os.utime(tmp_path / "a.txt", (0, 0))
    assert fingerprint(tmp_path)["sha256"] == first["sha256"]  # timestamps do not matter
    (tmp_path / "sub" / "b.txt").write_text("too")
    assert fingerprint(tmp_path)["sha256"] != first["sha256"]  # content does


def test_renaming_a_file_changes_the_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one")
    before = fingerprint(tmp_path)["sha256"]
    (tmp_path / "a.txt").rename(tmp_path / "c.txt")
    assert fingerprint(tmp_path)["sha256"] != before


def test_missing_path(tmp_path: Path) -> None:
    assert fingerprint(tmp_path / "nope")["kind"] == "missing"
