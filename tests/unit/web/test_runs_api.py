"""/api/runs reads the records `onecard runs` reads: list with filters, one run with its loss history and files,
two compared as `onecard runs compare` compares them; files download from inside the run's directory only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from onecard.cli import main
from onecard.core.records import start_run


class Cfg(BaseModel):
    lr: float
    steps: int = 3


@pytest.fixture
def two_runs(onecard_home: Path) -> tuple[str, str]:
    ids = []
    for lr in (0.1, 0.2):
        with start_run("demo", Cfg(lr=lr), report_to=()) as run:
            for step in (1, 2, 3):
                run.log({"train/loss": 3 - step * lr, "lr": lr}, step=step)
            run.set_metrics({"loss": 3 - 3 * lr, "diverged": math.nan})
            (run.dir / "weights").mkdir()
            (run.dir / "weights" / "model.bin").write_bytes(b"\x00" * 8)
            ids.append(run.id)
    with pytest.raises(RuntimeError), start_run("other", Cfg(lr=1.0), report_to=()):
        raise RuntimeError("boom")
    return ids[0], ids[1]


def test_list_with_filters(client: TestClient, two_runs: tuple[str, str]) -> None:
    everything = client.get("/api/runs").json()
    assert [r["id"] for r in everything["runs"]][1:] == [two_runs[1], two_runs[0]]
    assert everything["capabilities"] == ["demo", "other"]
    demo = client.get("/api/runs?capability=demo").json()["runs"]
    assert [r["id"] for r in demo] == [two_runs[1], two_runs[0]] and demo[0]["metrics"]["diverged"] is None
    failed = client.get("/api/runs?status=failed").json()["runs"]
    assert [r["capability"] for r in failed] == ["other"]
    assert client.get("/api/runs?status=done").status_code == 422


def test_one_run_has_its_history_and_files(client: TestClient, two_runs: tuple[str, str]) -> None:
    shown = client.get(f"/api/runs/{two_runs[0]}").json()
    assert shown["record"]["config"] == {"lr": 0.1, "steps": 3}
    assert shown["history"]["train/loss"] == [[1, 2.9], [2, 2.8], [3, pytest.approx(2.7)]]
    assert {"path": "weights/model.bin", "bytes": 8} in shown["files"]
    assert {f["path"] for f in shown["files"]} >= {"run.json", "metrics.jsonl", "log.txt"}


def test_compare_is_the_clis(client: TestClient, two_runs: tuple[str, str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs
    answer = client.get(f"/api/runs/compare?a={a}&b={b}").json()
    assert main(["runs", "compare", a, b, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert {k: answer[k] for k in cli} == json.loads(json.dumps(cli).replace("NaN", "null"))
    assert answer["config"] == {"lr": [0.1, 0.2]}
    assert len(answer["history"]["a"]["train/loss"]) == len(answer["history"]["b"]["train/loss"]) == 3


def test_download_a_file_of_the_run(client: TestClient, two_runs: tuple[str, str]) -> None:
    got = client.get(f"/api/runs/{two_runs[0]}/files/weights/model.bin")
    assert got.status_code == 200 and got.content == b"\x00" * 8
    assert "model.bin" in got.headers["content-disposition"]


def test_download_stays_inside_the_run_dir(client: TestClient, two_runs: tuple[str, str],
                                           onecard_home: Path) -> None:
    a, b = two_runs
    (onecard_home / "secret.txt").write_text("k")
    run_dir = onecard_home / "runs" / a
    (run_dir / "leak").symlink_to(onecard_home / "secret.txt")
    # f"../{b}/run.json" in a URL is resolved by the client to another route (a 404): sent encoded here
    for path, status in ((f"..%2F{b}%2Frun.json", 400), ("..%2F..%2Fsecret.txt", 400), ("%2Fetc%2Fpasswd", 403),
                         ("leak", 403), ("nope.txt", 404), ("weights", 404)):
        got = client.get(f"/api/runs/{a}/files/{path}")
        assert got.status_code == status and got.json()["fix"], (path, got.json())
    assert "outside run " in client.get(f"/api/runs/{a}/files/%2Fetc%2Fpasswd").json()["error"]


@pytest.mark.parametrize("ref", ["no-such-run", "..", "%2Fetc", "a%2Fb"])
def test_unknown_or_path_like_run_refs(client: TestClient, two_runs: tuple[str, str], ref: str) -> None:
    got = client.get(f"/api/runs/{ref}")
    assert got.status_code in (404, 422) and got.json()["error"]


def test_a_run_json_outside_the_runs_dir_is_not_shown(client: TestClient, two_runs: tuple[str, str],
                                                       onecard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (onecard_home / "elsewhere").mkdir()
    (onecard_home / "elsewhere" / "run.json").write_text(json.dumps({"id": "elsewhere"}))
    monkeypatch.chdir(onecard_home)  # find_run takes a folder holding a run.json: not from a request
    got = client.get("/api/runs/elsewhere")
    assert got.status_code == 403 and "outside this server's runs directory" in got.json()["error"]
