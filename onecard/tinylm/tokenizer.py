"""Tokenizers: one token per character, or byte-level BPE trained on the corpus with the `tokenizers` library.

Both are saved with the run as `tokenizer.json`: a model is only usable with the tokenizer it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from onecard.core.extras import require

__all__ = ["Tokenizer", "CharTokenizer", "BpeTokenizer", "train_tokenizer", "load_tokenizer", "UnknownCharacter"]


class UnknownCharacter(ValueError):
    """The text holds a character the char tokenizer never saw; `offset` is its index in the text."""

    def __init__(self, char: str, offset: int) -> None:
        super().__init__(f"character {char!r} is not in the vocabulary")
        self.char = char
        self.offset = offset


class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def save(self, path: Path) -> None: ...


class CharTokenizer:
    """One token per distinct character of the training text (nanoGPT's shakespeare_char: 65 tokens)."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        return cls("".join(sorted(set().union(*map(set, texts)))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise UnknownCharacter(e.args[0], text.index(e.args[0])) from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"kind": self.kind, "chars": self.chars}), encoding="utf-8")


class BpeTokenizer:
    """Byte-level BPE (GPT-2's scheme): any text encodes, and frequent byte sequences become single tokens."""

    kind = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BpeTokenizer:
        tk = require("tokenizers", "tinylm")
        tokenizer = tk.Tokenizer(tk.models.BPE())
        tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))


def train_tokenizer(kind: str, texts: list[str], vocab_size: int) -> Tokenizer:
    """A char tokenizer over the characters of `texts`, or a byte-level BPE of `vocab_size` tokens trained on them."""
    return CharTokenizer.train(texts) if kind == "char" else BpeTokenizer.train(texts, vocab_size)


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer saved at `path` by either class."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("kind") == "char":
        return CharTokenizer(data["chars"])
    tk = require("tokenizers", "tinylm")
    return BpeTokenizer(tk.Tokenizer.from_file(str(path)))
