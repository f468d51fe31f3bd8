from __future__ import annotations

import json
import re
from pathlib import Path

from onecard.asr.formats import Segment, Transcript, Word, load_json, render, timestamp, write


def _transcript() -> Transcript:
    words = [Word(0.0, 0.4, " Hello", 0.9), Word(0.4, 0.9, " world.", 0.8)]
    return Transcript("a.wav", "en", 3725.5, [Segment(0.0, 0.9, " Hello world.", words),
                                                Segment(3600.25, 3725.5, " Bye.", speaker="S2")], 3000.0)


def test_timestamps() -> None:
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(3725.4567) == "01:02:05,457"
    assert timestamp(61.5, ".") == "00:01:01.500"


def test_srt_vtt_and_txt() -> None:
    t = _transcript()
    srt = render(t, "srt")
    cues = re.findall(r"(\d+)\n(\S+) --> (\S+)\n(.+)\n\n", srt)
    assert cues == [("1", "00:00:00,000", "00:00:00,900", "Hello world."),
                    ("2", "01:00:00,250", "01:02:05,500", "[S2] Bye.")]
    vtt = render(t, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nHello world.\n")
    assert render(t, "txt") == "Hello world.\n[S2] Bye.\n"


def test_write_then_load_back(tmp_path: Path) -> None:
    paths = write(_transcript(), tmp_path, "a", ["txt", "srt", "vtt", "json"])
    assert [p.name for p in paths] == ["a.txt", "a.srt", "a.vtt", "a.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.srt", "a.txt", "a.vtt"]  # no temp files left
    back = load_json(tmp_path / "a.json")
    assert back == _transcript()
    assert json.loads((tmp_path / "a.json").read_text())["text"] == "Hello world. Bye."
