"""Corpus reading, token arrays on disk, batches and evaluation windows; bad input names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from onecard.core.errors import DataError  # noqa: E402
from onecard.tinylm.data import (  # noqa: E402
    encode_texts,
    eval_windows,
    get_batch,
    load_split,
    read_texts,
    write_splits,
)
from onecard.tinylm.tokenizer import CharTokenizer  # noqa: E402


def test_reads_a_file_or_a_folder_with_a_glob(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print(1)\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.py").write_text("x = 2\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "site.py").write_text("# tool state, not the corpus\n")
    found = read_texts(tmp_path, "**/*.py")
    assert [(f.relative_to(tmp_path).as_posix(), t) for f, t in found] == [("a.py", "print(1)\n"),
                                                                          ("pkg/b.py", "x = 2\n")]
    assert read_texts(tmp_path / "notes.txt") == [(tmp_path / "notes.txt", "not code\n")]


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_texts(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=r"no files under .* match '\*\*/\*.md'"):
        read_texts(tmp_path, "**/*.md")
    (tmp_path / "latin1.txt").write_bytes(b"fine\nstill fine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1.txt:3: not UTF-8 text \(byte 0xe9\)"):
        read_texts(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="holds no text"):
        read_texts(tmp_path / "empty.txt")


def test_an_unknown_character_names_file_and_line(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train(["abc\n"])
    with pytest.raises(DataError, match=r"other.txt:2: character 'z' is not in this model's vocabulary"):
        encode_texts([(tmp_path / "other.txt", "abc\nazc\n")], tokenizer)


def test_splits_are_written_and_memory_mapped(tmp_path: Path) -> None:
    tokens = np.arange(100, dtype=np.uint16)
    sizes = write_splits(tokens, tmp_path, 0.1, block_size=8)
    assert sizes == {"train_tokens": 90, "val_tokens": 10}
    train, val = load_split(tmp_path / "train.bin"), load_split(tmp_path / "val.bin")
    assert isinstance(train, np.memmap) and list(val) == list(range(90, 100)) and train[-1] == 89
    with pytest.raises(DataError, match="the val split has 10 tokens, not more than the context"):
        write_splits(tokens, tmp_path, 0.1, block_size=10)


def test_batches_are_windows_with_targets_shifted_by_one() -> None:
    data = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(data, 16, 4, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    again = get_batch(data, 16, 4, torch.Generator().manual_seed(0), "cpu")[0]
    assert torch.equal(x, again)  # the batch order is the generator's: a resumed run continues it


def test_eval_windows_cover_the_split_once_or_a_fixed_subset() -> None:
    starts = eval_windows(101, 10)
    assert list(starts) == list(range(0, 100, 10))  # every target token 1..100 predicted exactly once
    subset = eval_windows(1001, 10, limit=5)
    assert list(subset) == [0, 240, 490, 740, 990]
    assert list(eval_windows(101, 10, limit=50)) == list(starts)
