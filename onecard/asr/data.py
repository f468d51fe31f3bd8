"""Evaluation data: audio files with their reference transcripts, from a TSV manifest or a folder.

A manifest is a tab-separated file with a header row naming at least a `file` (or `audio`, `path`) column and a
`reference_text` (or `text`, `transcript`) column; a `lang` (or `language`) column is optional. Paths are relative to
the manifest. A file name followed by ` [left channel]` or ` [right channel]` is that channel of a two-channel file
alone (the shared speech data's REFERENCES.tsv has such rows). A folder is read through its REFERENCES.tsv or
manifest.tsv if it has one, else as pairs of an audio file and a text file of the same stem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from onecard.asr.audio import CHANNELS
from onecard.core.errors import DataError

__all__ = ["Item", "load_items", "AUDIO_SUFFIXES"]

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".aac")
_FILE_COLUMNS = ("file", "audio", "path")
_TEXT_COLUMNS = ("reference_text", "text", "transcript")
_LANG_COLUMNS = ("lang", "language")
_CHANNEL = re.compile(r"^(?P<file>.+?)\s*\[(?P<side>left|right) channel\]$")


@dataclass(frozen=True)
class Item:
    audio: Path
    reference: str
    language: str | None = None
    channel: int | None = None  # None: all channels mixed to mono

    @property
    def name(self) -> str:
        side = {0: " [left channel]", 1: " [right channel]"}.get(self.channel, "") if self.channel is not None else ""
        return self.audio.name + side


def load_items(data: str | Path, language: str | None = None) -> list[Item]:
    """The items of a manifest or folder; with `language`, only the rows of that language."""
    path = Path(data).expanduser()
    if path.is_dir():
        manifest = next((path / n for n in ("REFERENCES.tsv", "manifest.tsv") if (path / n).is_file()), None)
        items = _read_manifest(manifest) if manifest else _pairs(path)
    elif path.is_file():
        items = _read_manifest(path)
    else:
        raise DataError(f"{path}: no such manifest or folder", "pass a .tsv manifest or a folder of audio + .txt")
    if language is not None:
        items = [i for i in items if i.language in (None, language)]
    if not items:
        raise DataError(f"{path}: no audio with a reference transcript found",
                        "a manifest needs file and reference_text columns; a folder, AUDIO + AUDIO-stem.txt pairs")
    return items


def _read_manifest(path: Path) -> list[Item]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise DataError(f"{path}: empty manifest", "its first line names the columns: file<TAB>reference_text")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    file_col = next((header.index(c) for c in _FILE_COLUMNS if c in header), None)
    text_col = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
    lang_col = next((header.index(c) for c in _LANG_COLUMNS if c in header), None)
    if file_col is None or text_col is None:
        raise DataError(f"{path}:1: the header {lines[0]!r} has no file and reference_text columns",
                        "name the columns on the first line, tab-separated: file<TAB>reference_text")
    items = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) <= max(file_col, text_col):
            raise DataError(f"{path}:{number}: expected {len(header)} tab-separated cells, got {len(cells)}",
                            "separate the columns with tabs")
        name, channel = cells[file_col].strip(), None
        tagged = _CHANNEL.match(name)
        if tagged:
            name, channel = tagged["file"], CHANNELS[tagged["side"]]
        audio = (path.parent / name).resolve()
        if not audio.is_file():
            raise DataError(f"{path}:{number}: audio file {name!r} not found next to the manifest",
                            "paths in a manifest are relative to the manifest's folder")
        lang = cells[lang_col].strip() or None if lang_col is not None and lang_col < len(cells) else None
        items.append(Item(audio, cells[text_col].strip(), lang, channel))
    return items


def _pairs(folder: Path) -> list[Item]:
    return [Item(audio.resolve(), audio.with_suffix(".txt").read_text(encoding="utf-8").strip())
            for audio in sorted(folder.iterdir())
            if audio.suffix.lower() in AUDIO_SUFFIXES and audio.with_suffix(".txt").is_file()]
