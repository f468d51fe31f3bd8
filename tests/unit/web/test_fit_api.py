"""/api/fit answers what `onecard fit --json` prints, for the same FitJob; bad input is a 4xx naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from onecard.cli import main

SDXL = {"model": "sdxl", "gpu": "4070ti", "batch": 4, "resolution": 1024}


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["fit", *argv, "--json"]) == 0
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


def test_plan_is_the_clis(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    answer = client.post("/api/fit", json=SDXL)
    assert answer.status_code == 200
    assert answer.json() == cli_json(capsys, "sdxl", "--gpu", "4070ti", "--batch", "4", "--resolution", "1024")
    plan = answer.json()
    assert plan["fits"] is False and plan["verdict"].startswith("does not fit") and plan["fixes"]
    assert sum(plan["breakdown"].values()) == pytest.approx(plan["process_gib"], abs=0.01)


def test_solve_is_the_clis(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    answer = client.post("/api/fit/solve?top=3", json=SDXL)
    assert answer.status_code == 200
    cli = cli_json(capsys, "sdxl", "--gpu", "4070ti", "--batch", "4", "--resolution", "1024", "--solve", "--top", "3")
    assert answer.json()["solutions"] == cli["solutions"] and 0 < len(cli["solutions"]) <= 3
    assert all(s["fits"] for s in answer.json()["solutions"])


def test_vae_slicing_and_offload_turn_the_sdxl_job_into_one_that_fits(client: TestClient) -> None:
    sliced = client.post("/api/fit", json=SDXL | {"vae_slicing": True}).json()
    assert sliced["fits"] is False  # one image: slicing has nothing to split
    assert client.post("/api/fit", json=SDXL | {"vae_slicing": True, "offload": "model"}).json()["fits"] is True


def test_lists_for_the_form(client: TestClient) -> None:
    cards = client.get("/api/fit/cards").json()
    assert {"key": "rtx-4070-ti", "name": "NVIDIA GeForce RTX 4070 Ti", "vram_gib": 12.0} in [
        {k: c[k] for k in ("key", "name", "vram_gib")} for c in cards]
    models = client.get("/api/fit/models").json()
    assert "sdxl" in models["diffusion"] and "llama-3.1-8b" in models["llm"] and "yolov8s" in models["yolo"]
    assert "whisper-large-v3" in models["whisper"]
    schema = client.get("/api/fit/schema").json()
    assert schema["required"] == ["model"] and "vae_slicing" in schema["properties"]


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "sdxl", "batch": 0}, "batch"),
    ({"model": "sdxl", "batch": "four"}, "batch"),
    ({"model": "sdxl", "job": "dance"}, "job"),
    ({"model": "sdxl", "vae_slicing": "maybe"}, "vae_slicing"),
    ({"model": "sdxl", "vram": -1}, "vram"),
    ({"model": "sdxl", "turbo": True}, "turbo"),
    ({"batch": 4}, "model"),
])
def test_bad_input_is_a_422_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    answer = client.post("/api/fit", json=body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["error"].startswith(f"invalid request: {field}:") and error["fix"]
    assert [f["field"] for f in error["fields"]] == [field]


def test_not_json_is_a_422(client: TestClient) -> None:
    answer = client.post("/api/fit", content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"].startswith("invalid request")


@pytest.mark.parametrize(("body", "kind"), [(b"\xff\xfe{", "application/json"),
                                            (b"[" * 100_000 + b"]" * 100_000, "application/json"),
                                            (b'{"model": "sd15", "vram": 8}', "text/plain")])
def test_a_body_that_is_not_a_json_object_says_how_to_send_one(client: TestClient, body: bytes, kind: str) -> None:
    answer = client.post("/api/fit", content=body, headers={"Content-Type": kind})
    assert answer.status_code in (400, 422) and answer.json()["fix"] and "application/json" in answer.json()["fix"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "no-such-model"}, 404, "unknown model 'no-such-model'"),
    ({"model": "sdxl", "gpu": "rtx-9999"}, 400, "unknown GPU 'rtx-9999'"),
])
def test_onecard_errors_carry_their_fix(client: TestClient, body: dict[str, Any], status: int, words: str) -> None:
    answer = client.post("/api/fit", json=body)
    assert answer.status_code == status and words in answer.json()["error"] and answer.json()["fix"]


def test_top_is_bounded(client: TestClient) -> None:
    answer = client.post("/api/fit/solve?top=0", json=SDXL)
    assert answer.status_code == 422 and answer.json()["fields"][0]["field"] == "top (query)"
