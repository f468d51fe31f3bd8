"""The safety rules: the token on every page and API request, paths kept inside the registered folders, uploads
bounded and renamed, CORS off unless asked."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import UploadFile
from fastapi.testclient import TestClient

from onecard.web.errors import RequestError
from onecard.web.security import TOKEN_COOKIE, safe_path, save_upload
from onecard.web.server import prepare
from onecard.web.settings import WebSettings


def _run(coroutine: Any) -> Any:
    """asyncio.run in a thread of its own: in the whole suite the browser tests' Playwright loop runs in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.mark.parametrize("url", ["/", "/fit", "/runs", "/api/fit/cards", "/api/runs", "/openapi.json", "/docs",
                                 "/static/shell.js"])
def test_token_is_checked_on_every_request(make_client: Callable[..., TestClient], url: str) -> None:
    client = make_client(token="s3cret")
    refused = client.get(url)
    assert refused.status_code == 401
    if url.startswith("/api"):
        assert refused.json()["error"] == "this onecard server needs its token" and "Bearer" in refused.json()["fix"]
    assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_token_in_the_link_sets_a_cookie_for_the_pages_own_requests(make_client: Callable[..., TestClient]) -> None:
    client = make_client(token="s3cret")
    page = client.get("/fit?token=s3cret")
    assert page.status_code == 200 and TOKEN_COOKIE in page.headers["set-cookie"]
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
    assert client.get("/api/fit/cards").status_code == 200  # the cookie now carries it
    client.cookies.clear()
    assert client.get("/api/fit/cards").status_code == 401


def test_no_token_set_means_no_check(client: TestClient) -> None:
    assert client.get("/api/fit/cards").status_code == 200


def test_a_host_beyond_localhost_gets_a_generated_token(tmp_path: Path) -> None:
    assert prepare(WebSettings(host="127.0.0.1", data_dir=tmp_path)).token is None
    served = prepare(WebSettings(host="0.0.0.0", data_dir=tmp_path))
    assert served.token and len(served.token) >= 24
    assert prepare(WebSettings(host="0.0.0.0", token="mine", data_dir=tmp_path)).token == "mine"


def test_a_folder_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="is not a directory"):
        prepare(WebSettings(folders=(tmp_path / "nope",), data_dir=tmp_path))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A registered folder with a file, a symlink out of it, a symlink within it; and an outside folder."""
    inside, outside = tmp_path / "notes", tmp_path / "secret"
    (inside / "sub").mkdir(parents=True)
    outside.mkdir()
    (inside / "sub" / "a.md").write_text("a")
    (outside / "key.txt").write_text("k")
    (inside / "out").symlink_to(outside)
    (inside / "leak.txt").symlink_to(outside / "key.txt")
    (inside / "alias.md").symlink_to(inside / "sub" / "a.md")
    return inside.resolve(), outside.resolve()


def test_safe_path_keeps_requests_inside_the_folders(folders: tuple[Path, Path]) -> None:
    inside, outside = folders
    assert safe_path("sub/a.md", [inside]) == inside / "sub" / "a.md"
    assert safe_path(str(inside / "sub" / "a.md"), [inside]) == inside / "sub" / "a.md"
    assert safe_path("alias.md", [inside]) == inside / "sub" / "a.md"  # a symlink that stays inside is fine
    assert safe_path("new.md", [inside]) == inside / "new.md"  # not there yet: still inside


@pytest.mark.parametrize(("requested", "status", "message"), [
    ("../secret/key.txt", 400, "contains '..'"),
    ("sub/../../secret/key.txt", 400, "contains '..'"),
    ("SECRET", 403, "is outside the registered folders"),  # replaced by the absolute path below
    ("/etc/passwd", 403, "is outside the registered folders"),
    ("leak.txt", 403, "symlink that leads out"),
    ("out/key.txt", 403, "symlink that leads out"),
    ("", 400, "empty"),
    ("a\x00b", 400, "NUL"),
])
def test_safe_path_refuses_what_leaves_them(folders: tuple[Path, Path], requested: str, status: int,
                                            message: str) -> None:
    inside, outside = folders
    requested = str(outside / "key.txt") if requested == "SECRET" else requested
    with pytest.raises(RequestError, match=message) as refused:
        safe_path(requested, [inside])
    assert refused.value.status_code == status and refused.value.fix


def test_safe_path_with_no_folder_registered_says_how_to_register_one(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="no folder is registered") as refused:
        safe_path(str(tmp_path), [])
    assert refused.value.status_code == 403 and "--folder" in (refused.value.fix or "")


def test_a_model_path_in_a_fit_request_stays_inside_the_folders(make_client: Callable[..., TestClient],
                                                                folders: tuple[Path, Path]) -> None:
    inside, outside = folders
    (outside / "config.json").write_text("{}")
    client = make_client(folders=(inside,))
    for model in ("../secret/config.json", str(outside / "config.json"), "out/config.json"):
        answer = client.post("/api/fit", json={"model": model})
        assert answer.status_code in (400, 403), (model, answer.json())
        assert "config.json" in answer.json()["error"] and answer.json()["fix"]


TINY_LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 1000, "max_position_embeddings": 2048}


@pytest.mark.parametrize("shard", ["/etc/passwd", "/etc/no-such-file", "../secret/model.safetensors"])
def test_a_model_index_cannot_name_files_outside_its_folder(make_client: Callable[..., TestClient],
                                                            folders: tuple[Path, Path], shard: str) -> None:
    # a downloaded model repo may hold any index: one naming other files must not make the server open them, nor
    # answer differently for a file that exists and one that does not
    inside, _ = folders
    model = inside / "planted"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY_LLAMA))
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))
    answer = make_client(folders=(inside,)).post("/api/fit", json={"model": str(model), "vram": 8})
    assert answer.status_code == 400 and "outside its own folder" in answer.json()["error"]


def test_a_relative_name_is_never_looked_up_where_the_server_runs(make_client: Callable[..., TestClient],
                                                                  folders: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    inside, _ = folders
    workdir = tmp_path / "server-cwd"
    (workdir / "Documents").mkdir(parents=True)
    (workdir / "Documents" / "tax.json").write_text(json.dumps(TINY_LLAMA))
    (workdir / "secret_plans").mkdir()
    (workdir / "secret_plans" / "config.json").write_text(json.dumps(TINY_LLAMA))
    (workdir / "secret_asr").mkdir()  # a Whisper config is looked up by the Whisper catalog's own reader
    (workdir / "secret_asr" / "config.json").write_text(json.dumps({
        "model_type": "whisper", "d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "vocab_size": 51865,
        "num_mel_bins": 80, "encoder_attention_heads": 6, "decoder_attention_heads": 6}))
    monkeypatch.chdir(workdir)
    client = make_client(folders=(inside,))
    answers = {m: client.post("/api/fit", json={"model": m, "vram": 8}) for m in (
        "secret_plans", "no_such_plans", "secret_asr", "Documents/tax", "Documents/none")}
    assert {a.status_code for a in answers.values()} == {404}
    found, missing = answers["secret_plans"].json(), answers["no_such_plans"].json()
    assert found["error"].replace("secret", "no_such") == missing["error"]
    (inside / "mymodel").mkdir()  # a model folder in a registered folder, named relatively, is found there
    (inside / "mymodel" / "config.json").write_text(json.dumps(TINY_LLAMA))
    assert client.post("/api/fit", json={"model": "mymodel", "vram": 8}).status_code == 200


def upload(data: bytes, name: str) -> UploadFile:
    return UploadFile(file=io.BytesIO(data), filename=name)


def test_uploads_go_to_the_data_dir_under_generated_names(tmp_path: Path) -> None:
    settings = WebSettings(data_dir=tmp_path, upload_limit_mib=1)
    saved = _run(save_upload(upload(b"hello", "../../etc/evil name.WAV"), settings))
    assert saved.parent == tmp_path / "uploads" and saved.suffix == ".wav" and "evil" not in saved.name
    assert saved.read_bytes() == b"hello"
    odd = _run(save_upload(upload(b"x", "x.tar.gz;rm -rf"), settings))
    assert odd.suffix == "" and odd.parent == tmp_path / "uploads"


def test_an_upload_over_the_limit_is_a_413_and_leaves_nothing(tmp_path: Path) -> None:
    settings = WebSettings(data_dir=tmp_path, upload_limit_mib=1)
    with pytest.raises(RequestError, match="over the 1 MiB limit") as refused:
        _run(save_upload(upload(b"x" * (2**20 + 1), "big.bin"), settings))
    assert refused.value.status_code == 413 and list((tmp_path / "uploads").iterdir()) == []


def test_cors_is_off_unless_asked(make_client: Callable[..., TestClient]) -> None:
    origin = {"Origin": "http://elsewhere.example"}
    assert "access-control-allow-origin" not in make_client().get("/api/fit/cards", headers=origin).headers
    allowed = make_client(allow_cors=("http://elsewhere.example",)).get("/api/fit/cards", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "http://elsewhere.example"


def test_cors_with_a_token_answers_the_preflight_and_still_needs_the_token(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(token="T", allow_cors=("http://elsewhere.example",))
    origin = {"Origin": "http://elsewhere.example"}
    preflight = client.options("/api/jobs", headers={**origin, "Access-Control-Request-Method": "GET",
                                                     "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://elsewhere.example"
    refused = client.get("/api/jobs", headers=origin)
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "http://elsewhere.example"
    assert client.get("/api/jobs", headers={**origin, "Authorization": "Bearer T"}).status_code == 200
    other = client.options("/api/jobs", headers={"Origin": "http://other.example",
                                                 "Access-Control-Request-Method": "GET"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
