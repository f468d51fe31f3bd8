from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onecard.asr.data import load_items
from onecard.core.errors import DataError
from tests.unit.asr.conftest import SPEECH, write_wav


def test_manifest_with_channel_rows_and_languages(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", np.zeros(160))
    write_wav(tmp_path / "b.wav", np.zeros((160, 2)))
    (tmp_path / "m.tsv").write_text("file\tlang\treference_text\na.wav\ten\thello there\n\n"
                                    "b.wav [right channel]\tfr\tbonjour\n")
    items = load_items(tmp_path / "m.tsv")
    assert [(i.name, i.reference, i.language, i.channel) for i in items] == [
        ("a.wav", "hello there", "en", None), ("b.wav [right channel]", "bonjour", "fr", 1)]
    assert [i.name for i in load_items(tmp_path / "m.tsv", "en")] == ["a.wav"]


def test_folder_of_pairs(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", np.zeros(160))
    write_wav(tmp_path / "lonely.wav", np.zeros(160))
    (tmp_path / "a.txt").write_text("hello there\n")
    assert [(i.name, i.reference) for i in load_items(tmp_path)] == [("a.wav", "hello there")]


def test_bad_rows_are_named_by_line(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text("file\ttext\nmissing.wav\thi\n")
    with pytest.raises(DataError, match=r"m\.tsv:2: audio file 'missing.wav' not found"):
        load_items(tmp_path / "m.tsv")
    (tmp_path / "m.tsv").write_text("audio\twords\n")
    with pytest.raises(DataError, match=r"m\.tsv:1: the header"):
        load_items(tmp_path / "m.tsv")
    (tmp_path / "m.tsv").write_text("file\ttext\nonly-one-cell\n")
    with pytest.raises(DataError, match=r"m\.tsv:2: expected 2 tab-separated cells"):
        load_items(tmp_path / "m.tsv")


def test_the_shared_references_load() -> None:
    if not (SPEECH / "REFERENCES.tsv").is_file():
        pytest.skip(f"{SPEECH} is absent")
    items = load_items(SPEECH, "en")
    assert {i.name for i in items} >= {"jfk.flac", "stereo_diarization.wav [left channel]", "LDC93S1.wav"}
