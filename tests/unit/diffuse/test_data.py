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


def test_near_duplicates_by_perceptual_hash_and_a_contact_sheet(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256))
    photo.save(data / "a.png")
    photo.resize((200, 200)).save(data / "a-small.jpg", quality=80)  # the same picture, resized and recompressed
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).resize((256, 256)).save(data / "b.png")
    for name in ("a", "a-small", "b"):
        (data / f"{name}.txt").write_text("a photo")
    report = check_images(data, resolution=64)
    assert _kinds(report, "near-duplicate") == {"a.png": "looks like a-small.jpg (perceptual hash): a near copy "
                                                         "weighs that picture twice"}
    sheet = tmp_path / "sheet.png"
    assert main(["diffuse", "data", "check", str(data), "--resolution", "64", "--sheet", str(sheet), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sheet"] == str(sheet)
    with Image.open(sheet) as im:
        assert im.size == (8 * 128, 128 + 14)  # one row of 8 thumbnails, each with its name under it


def test_caption_writes_the_template_where_no_caption_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _image(tmp_path / "a.png", caption=None)
    _image(tmp_path / "b.png", caption="a dog on a sofa")
    _image(tmp_path / "c.png", caption="  ")
    assert main(["diffuse", "caption", str(tmp_path), "--token", "zwx", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "template" and len(out["written"]) == 2 and len(out["kept"]) == 1
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "c.txt").read_text() == "a photo of zwx\n"
    assert (tmp_path / "b.txt").read_text() == "a dog on a sofa"
    assert check_images(tmp_path, resolution=64)["errors"] == 0


def test_caption_with_a_vlm_puts_the_token_before_its_description(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import onecard.llm
    from onecard.diffuse.config import CaptionConfig
    from onecard.diffuse.run import caption

    asked: list[list[dict]] = []

    class Reply:
        text = " a red square on white \n"

    class Backend:  # what onecard.llm.load returns, as far as captioning uses it
        def chat(self, messages: list[dict]) -> Reply:
            asked.append(messages)
            return Reply()

        def close(self) -> None:
            pass

    monkeypatch.setattr(onecard.llm, "load", lambda config: Backend())
    _image(tmp_path / "a.png", caption=None)
    out = caption(CaptionConfig(data=str(tmp_path), token="sks", vlm="llava.gguf", mmproj="mmproj.gguf"))
    assert out["source"] == "vlm llava.gguf" and (tmp_path / "a.txt").read_text() == "sks a red square on white\n"
    (part, _) = asked[0][0]["content"]
    assert part == {"type": "image_url", "image_url": {"url": str(tmp_path / "a.png")}}
