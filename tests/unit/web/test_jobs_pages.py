"""The capability pages' API (detect, asr, diffuse, vlm): uploads under the size limit and generated names, jobs of the
queue, a missing extra or an unbuilt capability named, bad input a 422 naming the field."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'onecard[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from onecard.web import jobs as jobs_module  # noqa: E402
from onecard.web.app import create_app  # noqa: E402
from onecard.web.routes import vlm as vlm_routes  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402
from tests.unit.web.waiting import wait_for  # noqa: E402

SPEECH = Path(__file__).parents[3] / ".." / "shared" / "data" / "speech"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "media"
    data.mkdir()
    return data


def client_for(home: Path, folder: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(WebSettings(data_dir=home, folders=(folder,), **settings)))



def test_an_upload_over_the_limit_is_a_413_and_nothing_is_kept_or_queued(onecard_home: Path, folder: Path) -> None:
    client = client_for(onecard_home, folder, upload_limit_mib=1 / 1024)  # 1 KiB
    answer = client.post("/api/asr/transcribe", files={"audio": ("talk.wav", b"\0" * 4096, "audio/wav")})
    assert answer.status_code == 413 and "1 MiB" not in answer.json()["error"] and "limit" in answer.json()["error"]
    assert not any((onecard_home / "uploads").glob("*")) and client.get("/api/jobs").json() == []


def test_detect_without_its_extra_says_how_to_install_it_before_storing_the_image(
        onecard_home: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = jobs_module.available
    monkeypatch.setattr(jobs_module, "available", lambda m: m != "ultralytics" and real(m))
    client = client_for(onecard_home, folder)
    answer = client.post("/api/detect/predict", files={"image": ("cat.png", b"\x89PNG", "image/png")},
                         data={"run": "last"})
    assert answer.status_code == 501 and "pip install 'onecard[detect]'" in answer.json()["fix"]
    assert not (onecard_home / "uploads").exists()


def test_detect_conf_out_of_range_is_a_422_naming_it(onecard_home: Path, folder: Path) -> None:
    answer = client_for(onecard_home, folder).post("/api/detect/predict", data={"conf": "2"},
                                                   files={"image": ("cat.png", b"\x89PNG", "image/png")})
    assert answer.status_code == 422 and "conf" in [f["field"] for f in answer.json()["fields"]]


@pytest.mark.skipif(not (SPEECH / "LDC93S1.wav").is_file(), reason="../shared/data/speech is not here")
def test_asr_transcribes_an_upload_saved_under_a_generated_name(onecard_home: Path, folder: Path) -> None:
    pytest.importorskip("faster_whisper", reason="the asr extra is not installed: pip install 'onecard[asr]'")
    client = client_for(onecard_home, folder)
    with open(SPEECH / "LDC93S1.wav", "rb") as f:
        answer = client.post("/api/asr/transcribe", files={"audio": ("my talk (final).WAV", f, "audio/wav")},
                             data={"language": "en"})
    assert answer.status_code == 201, answer.text
    saved = Path(answer.json()["config"]["audio"][0])
    assert saved.parent == onecard_home / "uploads" and saved.suffix == ".wav" and len(saved.stem) == 32
    assert "my talk" not in saved.name
    early = client.get(f"/api/asr/transcript/{answer.json()['id']}")
    assert early.status_code in (409, 200)
    job = wait_for(client, answer.json()["id"])
    assert job["status"] == "succeeded", job
    transcript = client.get(f"/api/asr/transcript/{job['id']}").json()
    # LDC93S1: "She had your dark suit in greasy wash water all year." (tiny.en hears "dog suit and")
    assert "greasy wash water all year" in transcript["text"].lower() and transcript["run_id"] == job["run_id"]
    first = transcript["segments"][0]
    assert 0 <= first["start"] < first["end"] <= transcript["duration_s"] + 0.5 and "speaker" in first


def test_asr_diarizer_path_stays_inside_the_folders(onecard_home: Path, folder: Path) -> None:
    pytest.importorskip("faster_whisper", reason="the asr extra is not installed: pip install 'onecard[asr]'")
    client = client_for(onecard_home, folder)
    outside = client.post("/api/asr/transcribe", files={"audio": ("talk.wav", b"RIFF", "audio/wav")},
                          data={"speakers": "2", "diarizer": "/etc/pipeline"})
    assert outside.status_code == 403 and "outside" in outside.json()["error"]
    assert client.get("/api/jobs").json() == [] and not any((onecard_home / "uploads").glob("*"))


@pytest.mark.skipif(not (SPEECH / "LDC93S1.wav").is_file(), reason="../shared/data/speech is not here")
def test_asr_labels_speakers_with_the_diarizer_asked_for(onecard_home: Path, folder: Path) -> None:
    pytest.importorskip("faster_whisper", reason="the asr extra is not installed: pip install 'onecard[asr]'")
    if importlib.util.find_spec("resemblyzer") is None:  # its weights only: importing it needs webrtcvad
        pytest.skip("resemblyzer's voice encoder is not installed (pip install --no-deps resemblyzer)")
    client = client_for(onecard_home, folder)
    with open(SPEECH / "LDC93S1.wav", "rb") as f:
        answer = client.post("/api/asr/transcribe", files={"audio": ("talk.wav", f, "audio/wav")},
                             data={"language": "en", "speakers": "1", "diarizer": "resemblyzer"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["config"]["diarizer"] == "resemblyzer"
    job = wait_for(client, answer.json()["id"])
    assert job["status"] == "succeeded", job
    transcript = client.get(f"/api/asr/transcript/{job['id']}").json()
    assert transcript["diarizer"]["name"] == "resemblyzer" and "--diarizer resemblyzer" in \
        transcript["diarizer"]["reason"]
    assert {s["speaker"] for s in transcript["segments"]} == {"SPEAKER_1"}


def test_diffuse_sample_needs_a_prompt_and_keeps_its_source_inside_the_folders(onecard_home: Path,
                                                                               folder: Path) -> None:
    client = client_for(onecard_home, folder)
    missing = client.post("/api/diffuse/sample", json={"source": "last"})
    assert missing.status_code == 422 and "prompt" in [f["field"] for f in missing.json()["fields"]]
    outside = client.post("/api/diffuse/sample", json={"source": "/etc", "prompt": "a cat"})
    assert outside.status_code == 403
    assert client.get("/api/diffuse/image/nope/0").status_code == 404


@pytest.mark.slow
def test_diffuse_samples_from_a_pipeline_folder_and_serves_the_image(onecard_home: Path, folder: Path) -> None:
    pytest.importorskip("diffusers", reason="the diffuse extra is not installed: pip install 'onecard[diffuse]'")
    from onecard.diffuse.tiny import make_tiny_pipeline

    make_tiny_pipeline(folder / "tiny-sd")
    client = client_for(onecard_home, folder)
    answer = client.post("/api/diffuse/sample", json={"source": str(folder / "tiny-sd"), "prompt": "a red square",
                                                      "steps": 2, "resolution": 32, "device": "cpu"})
    assert answer.status_code == 201, answer.text
    job = wait_for(client, answer.json()["id"])
    assert job["status"] == "succeeded", job
    image = client.get(f"/api/diffuse/image/{job['id']}/0")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert client.get(f"/api/diffuse/image/{job['id']}/1").status_code == 404
    shutil.rmtree(folder / "tiny-sd")


def test_vlm_status_says_whether_it_is_built(onecard_home: Path, folder: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(onecard_home, folder)
    monkeypatch.setattr(vlm_routes, "available", lambda m: False)
    assert client.get("/api/vlm/status").json() == {"built": False, "installed": False,
                                                    "message": "not built yet in this install"}
    monkeypatch.setattr(vlm_routes, "available", lambda m: m != "PIL")
    assert client.get("/api/vlm/status").json()["message"] == "not installed: pip install 'onecard[vlm]'"


def test_every_capability_page_is_served(onecard_home: Path, folder: Path) -> None:
    client = client_for(onecard_home, folder)
    for page in ("jobs", "detect", "asr", "diffuse", "vlm"):
        answer = client.get(f"/{page}")
        assert answer.status_code == 200 and f'src="/static/{page}.js"' in answer.text, page


def test_vlm_chat_answers_about_an_uploaded_image_as_a_stream(onecard_home: Path, folder: Path) -> None:
    if not vlm_routes.status()["installed"]:
        pytest.skip("onecard.vlm is not built or its extra is not installed")
    from PIL import Image

    image = folder / "square.png"
    Image.new("RGB", (32, 32), (200, 20, 20)).save(image)
    client = client_for(onecard_home, folder)
    with open(image, "rb") as f, client.stream("POST", "/api/vlm/chat", files={"image": ("square.png", f, "image/png")},
                                               data={"question": "What colour is the square?", "max_tokens": "8"}
                                               ) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "done", events
    assert 1 <= events[-1]["reply"]["completion_tokens"] <= 8  # tiny's random weights: any text, but it streams
    assert [e for e in events if e["type"] == "text"] or events[-1]["reply"]["text"] == ""
    outside = client.post("/api/vlm/chat", files={"image": ("a.png", b"x", "image/png")},
                          data={"question": "hi", "model": "/etc/models"})
    assert outside.status_code == 403
