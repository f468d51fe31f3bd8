"""Char and byte-level BPE tokenizers: round trips, saved and loaded back as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.tinylm.tokenizer import BpeTokenizer, CharTokenizer, UnknownCharacter, load_tokenizer, train_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


def test_char_tokenizer_round_trips_and_saves(tmp_path: Path) -> None:
    tok = train_tokenizer("char", [TEXT], 0)
    assert isinstance(tok, CharTokenizer)
    assert tok.vocab_size == len(set(TEXT)) and tok.chars == "".join(sorted(set(TEXT)))
    ids = tok.encode("Speak, all.")
    assert tok.decode(ids) == "Speak, all."
    tok.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json").encode("Speak, all.") == ids


def test_char_tokenizer_reports_an_unknown_character_and_where() -> None:
    tok = CharTokenizer.train([TEXT])
    with pytest.raises(UnknownCharacter) as e:
        tok.encode("speak, Zounds")
    assert e.value.char == "Z" and e.value.offset == 7


def test_bpe_tokenizer_trains_round_trips_any_text_and_saves(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    tok = train_tokenizer("bpe", [TEXT], 300)
    assert isinstance(tok, BpeTokenizer) and 256 < tok.vocab_size <= 300
    assert len(tok.encode(TEXT)) < len(TEXT) / 2  # merges learned from the corpus
    other = "Ünïcödé and emoji 🙂 it never saw\n"
    assert tok.decode(tok.encode(other)) == other  # byte-level: nothing is unknown
    tok.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json").encode(TEXT) == tok.encode(TEXT)
