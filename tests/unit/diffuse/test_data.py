"""The data check: each problem named by file (undecodable, missing/empty caption, small, duplicate, EXIF); the CLI
exits non-zero on errors and prints the same report as one JSON object under --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PIL", reason="needs Pillow")

from PIL import Image  # noqa: E402

from onecard.cli import main  # noqa: E402
from onecard.diffuse.data import check_images, load_images  # noqa: E402


def _image(path: Path, size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 30, 30),
           caption: str | None = "a red square", orientation: int | None = None) -> Path:
    im = Image.new("RGB", size, color)
    if orientation is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(path, exif=exif)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption)
    return path


def _kinds(report: dict, kind: str) -> dict[str, str]:
    return {Path(p["file"]).name: p["message"] for p in report["problems"] if p["kind"] == kind}


def test_a_clean_folder_has_no_problems(tmp_path: Path) -> None:
    for i in range(3):
        _image(tmp_path / f"{i}.png", color=(i * 60, 0, 0))
    report = check_images(tmp_path, resolution=64)
    assert report["problems"] == []
    assert (report["images"], report["decoded"], report["captioned"], report["errors"]) == (3, 3, 3, 0)


def test_each_problem_is_named_by_file(tmp_path: Path) -> None:
    _image(tmp_path / "ok.png")
    truncated = _image(tmp_path / "truncated.jpg", size=(128, 128))
    truncated.write_bytes(truncated.read_bytes()[:200])
    _image(tmp_path / "nocaption.png", color=(0, 90, 0), caption=None)
    _image(tmp_path / "emptycaption.png", color=(0, 0, 90), caption="  \n")
    _image(tmp_path / "small.png", size=(64, 32), color=(9, 9, 9))
    (tmp_path / "zcopy.png").write_bytes((tmp_path / "ok.png").read_bytes())
    (tmp_path / "zcopy.txt").write_text("a copy")
    _image(tmp_path / "rotated.jpg", size=(80, 64), color=(50, 50, 50), orientation=6)
    (tmp_path / "notes.md").write_text("not an image")

    report = check_images(tmp_path, resolution=64)

    assert report["images"] == 7 and report["decoded"] == 6
    assert set(_kinds(report, "decode")) == {"truncated.jpg"}
    assert set(_kinds(report, "caption")) == {"nocaption.png", "emptycaption.txt"}
    assert "nocaption.txt" in _kinds(report, "caption")["nocaption.png"]
    assert set(_kinds(report, "small")) == {"small.png"}  # 64x32 under 64; rotated 80x64 -> 64x80 is not
    assert "ok.png" in _kinds(report, "duplicate")["zcopy.png"]
    assert "orientation 6" in _kinds(report, "exif")["rotated.jpg"]
    assert report["errors"] == 3 and report["warnings"] == 3


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    report = check_images(tmp_path, resolution=64)
    assert report["errors"] == 1 and report["problems"][0]["kind"] == "empty"


def test_the_cli_exits_nonzero_on_errors_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _image(tmp_path / "a.png")
    assert main(["diffuse", "data", "check", str(tmp_path), "--resolution", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == 0
    _image(tmp_path / "b.png", color=(1, 2, 3), caption=None)
    assert main(["diffuse", "data", "check", str(tmp_path), "--resolution", "64"]) == 1
    out = capsys.readouterr().out
    assert "b.png" in out and "1 errors" in out


def test_images_load_rotated_cropped_and_captioned(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="needs torch")
    _image(tmp_path / "wide.png", size=(96, 64), color=(255, 0, 0))
    _image(tmp_path / "rotated.jpg", size=(80, 64), color=(0, 0, 255), orientation=6, caption="blue")
    pixels, captions = load_images(tmp_path, resolution=32, token="sks")
    assert pixels.shape == (2, 3, 32, 32)
    assert float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0
    assert captions == ["sks blue", "sks a red square"]  # rotated.jpg sorts first
