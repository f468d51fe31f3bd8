"""Corpus -> token arrays on disk -> batches.

A text file, or the files of a folder matching a glob, are read, tokenized, split into train (first part) and
validation (last part), and written as flat arrays of token ids (`train.bin`, `val.bin`, like nanoGPT's prepare.py)
that training reads memory-mapped: the corpus never has to fit in memory twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from onecard.core.errors import DataError
from onecard.tinylm.tokenizer import Tokenizer, UnknownCharacter

__all__ = ["read_texts", "encode_texts", "write_splits", "load_split", "get_batch", "eval_windows"]


def read_texts(path: str | Path, glob: str = "**/*.txt") -> list[tuple[Path, str]]:
    """(file, text) for a text file, or for each file under a folder matching `glob`, in sorted order."""
    root = Path(path).expanduser()
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(f for f in root.glob(glob) if f.is_file() and not _tool_state(f.relative_to(root)))
        if not files:
            raise DataError(f"no files under {root} match {glob!r}",
                            "pass the pattern of your files, e.g. --glob '**/*.py'")
    else:
        raise DataError(f"{root} does not exist", "pass a text file or a folder to --data")
    texts = []
    for f in files:
        raw = f.read_bytes()
        try:
            texts.append((f, raw.decode("utf-8")))
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise DataError(f"{f}:{line}: not UTF-8 text (byte {raw[e.start]:#04x})",
                            "convert the file to UTF-8, or leave it out with --glob") from None
    if not any(text.strip() for _, text in texts):
        raise DataError(f"{root} holds no text ({len(files)} file(s), all empty)", "point --data at your text")
    return texts


def _tool_state(relative: Path) -> bool:
    """Whether a file sits in a folder of tool state (.git, .venv, __pycache__, node_modules), not in the corpus."""
    return any(part.startswith(".") or part in ("__pycache__", "node_modules") for part in relative.parts[:-1])


def encode_texts(texts: list[tuple[Path, str]], tokenizer: Tokenizer) -> np.ndarray:
    """The token ids of all texts, one after the other, as uint16 (vocabularies up to 65,536 tokens)."""
    parts = []
    for f, text in texts:
        try:
            parts.append(np.array(tokenizer.encode(text), dtype=np.uint16))
        except UnknownCharacter as e:
            line = text.count("\n", 0, e.offset) + 1
            raise DataError(f"{f}:{line}: character {e.char!r} is not in this model's vocabulary "
                            f"({tokenizer.vocab_size} characters of its training text)",
                            "evaluate on text with the same characters, or train with --tokenizer bpe") from None
    return np.concatenate(parts)


def write_splits(tokens: np.ndarray, out_dir: Path, val_fraction: float, block_size: int) -> dict[str, int]:
    """Write the first (1 - val_fraction) of the tokens to train.bin and the rest to val.bin; return their sizes."""
    n_val = int(len(tokens) * val_fraction)
    splits = {"train": tokens[: len(tokens) - n_val], "val": tokens[len(tokens) - n_val:]}
    for name, ids in splits.items():
        if len(ids) <= block_size:
            raise DataError(f"the {name} split has {len(ids)} tokens, not more than the context ({block_size})",
                            "use more text, a shorter --block-size, or a different --val-fraction")
        ids.tofile(out_dir / f"{name}.bin")
    return {f"{name}_tokens": len(ids) for name, ids in splits.items()}


def load_split(path: Path) -> np.ndarray:
    """A split written by `write_splits`, memory-mapped read-only."""
    return np.memmap(path, dtype=np.uint16, mode="r")


def get_batch(data: np.ndarray, block_size: int, batch_size: int, generator: torch.Generator,
              device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs x (B, T) and targets y (B, T), y being x shifted left by one token."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator).tolist()
    x = torch.from_numpy(np.stack([data[i: i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1: i + 1 + block_size] for i in ix]).astype(np.int64))
    if device.startswith("cuda"):  # pinned memory lets the copy overlap with the GPU's work
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def eval_windows(n_tokens: int, block_size: int, limit: int | None = None) -> np.ndarray:
    """Start offsets of non-overlapping windows covering a split (each target token predicted once); with
    `limit`, that many windows evenly spaced over it (a fixed subset, so that evaluations compare)."""
    starts = np.arange((n_tokens - 1) // block_size) * block_size
    if limit is not None and len(starts) > limit:
        starts = starts[np.linspace(0, len(starts) - 1, limit).astype(np.int64)]
    return starts
