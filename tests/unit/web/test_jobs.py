"""The Jobs API and its queue: kinds and forms from the configs, bad input named, paths kept in the registered folders,
and real `onecard tinylm train` jobs: the second waits, cancel leaves the run interrupted, a failure is shown and the
server goes on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'onecard[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from onecard.web import jobs as jobs_module  # noqa: E402
from onecard.web.app import create_app  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402
from tests.unit.web.waiting import wait_for  # noqa: E402


@pytest.fixture
def client(onecard_home: Path, folder: Path) -> TestClient:
    return TestClient(create_app(WebSettings(data_dir=onecard_home, folders=(folder,))))


def tiny(**extra: Any) -> dict[str, Any]:
    return {"kind": "tinylm train", "report_to": ["none"],
            "config": {"preset": "tiny", "data": "corpus.txt", "max_iters": 20, "eval_interval": 10,
                       "log_interval": 5, "device": "cpu", **extra}}


def test_kinds_give_forms_from_the_configs_and_name_missing_extras(client: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = jobs_module.available
    monkeypatch.setattr(jobs_module, "available", lambda m: m != "ultralytics" and real(m))
    kinds = {k["kind"]: k for k in client.get("/api/jobs/kinds").json()}
    fields = {f["name"]: f for f in kinds["tinylm train"]["form"]["fields"]}
    assert kinds["tinylm train"]["installed"] is True
    assert fields["data"]["required"] is True and fields["data"]["type"] == "string"
    assert fields["preset"]["type"] == "choice" and fields["preset"]["choices"] == ["tiny", "nanogpt-cpu", "baby"]
    assert fields["preset"]["nullable"] is True
    assert fields["max_iters"] == {"name": "max_iters", "type": "integer", "choices": [], "nullable": False,
                                   "required": False, "default": 2000, "description": "optimizer steps in total"}
    assert fields["bias"]["type"] == "boolean"
    detect = kinds["detect train"]
    assert detect["installed"] is False and detect["form"] is None
    assert detect["install"] == "not installed: pip install 'onecard[detect]'"
    # Starting a kind that is not installed says how to install it.
    answer = client.post("/api/jobs", json={"kind": "detect train", "config": {"data": "x", "model": "y.pt"}})
    assert answer.status_code == 501 and "pip install 'onecard[detect]'" in answer.json()["fix"]


@pytest.mark.parametrize(("body", "field"), [
    (tiny(max_iters="many"), "config.max_iters"),
    ({"kind": "tinylm train", "config": {"preset": "tiny"}}, "config.data"),
    (tiny(lr=0.1), "config.lr"),
    (tiny(tokenizer="words"), "config.tokenizer"),
    ({"kind": "tinylm fly", "config": {}}, "kind"),
    ({**tiny(), "report_to": ["tensorboard"]}, "report_to.0"),
])
def test_bad_input_is_a_422_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    answer = client.post("/api/jobs", json=body)
    assert answer.status_code == 422, answer.text
    assert field in [f["field"] for f in answer.json()["fields"]]
    assert client.get("/api/jobs").json() == []  # nothing was queued


@pytest.mark.parametrize(("values", "status"), [({"data": "/etc/passwd"}, 403), ({"data": "../texts/corpus.txt"}, 400),
                                                ({"data": "sub/../../x.txt"}, 400), ({"glob": "../../**/*.txt"}, 400),
                                                ({"glob": "/etc/*"}, 400)])
def test_a_path_outside_the_registered_folders_is_refused(client: TestClient, values: dict[str, str],
                                                          status: int) -> None:
    answer = client.post("/api/jobs", json=tiny(**values))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] and client.get("/api/jobs").json() == []


def test_a_run_ref_that_is_a_path_is_checked_but_a_run_id_is_not(client: TestClient, folder: Path) -> None:
    kind = jobs_module.find_kind("tinylm train")
    assert kind is not None
    from onecard.web.routes.jobs import is_path

    assert is_path("/abs/run") and is_path("~/run") and is_path("./run") and is_path("a/../../b")
    assert not is_path("last") and not is_path("tinylm-20240101-000000-abcd") and not is_path("org/model")


def test_the_queue_runs_one_job_at_a_time_cancel_interrupts_and_a_failure_leaves_the_server_up(
        client: TestClient, onecard_home: Path, folder: Path) -> None:
    long = client.post("/api/jobs", json=tiny(max_iters=100_000, eval_interval=100_000))
    assert long.status_code == 201, long.text
    long_id = long.json()["id"]
    assert long.json()["config"]["data"] == str(folder / "corpus.txt")  # the resolved path, inside the folder

    # The first job runs, its run record opens, it shows progress; the jobs sent meanwhile wait, visibly.
    running = wait_for(client, long_id, lambda j: j["run_id"] and (j["progress"] or {}).get("done"))
    assert running["status"] == "running" and running["progress"]["total"] == 100_000
    assert running["run_url"] == f"/runs?id={running['run_id']}"
    failing = client.post("/api/jobs", json=tiny(data="short.txt"))
    short = client.post("/api/jobs", json=tiny())
    assert [a.status_code for a in (failing, short)] == [201, 201], failing.text
    failing_id, short_id = failing.json()["id"], short.json()["id"]
    assert failing.json()["position"] == 1 and short.json()["position"] == 2
    queued = client.get(f"/api/jobs/{failing_id}").json()
    assert queued["status"] == "queued" and queued["position"] == 1
    assert client.get("/api/jobs/" + long_id).json()["status"] == "running"

    # Cancel: SIGINT, as Ctrl-C; the run record ends interrupted, with a checkpoint to resume from.
    assert client.post(f"/api/jobs/{long_id}/cancel").status_code == 200
    cancelled = wait_for(client, long_id, lambda j: j["ended_at"])
    assert cancelled["status"] == "interrupted", cancelled
    run_dir = onecard_home / "runs" / cancelled["run_id"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and (run_dir / "ckpt.safetensors").is_file()

    # The failing job's error is on the job and in its record; the next job still runs, and succeeds.
    failed = wait_for(client, failing_id, lambda j: j["ended_at"])
    assert failed["status"] == "failed" and "the train split has 3 tokens" in failed["error"], failed
    if failed["run_id"]:
        record = json.loads((onecard_home / "runs" / failed["run_id"] / "run.json").read_text())
        assert record["status"] == "failed" and record["error"]["message"] in failed["error"]
    done = wait_for(client, short_id, lambda j: j["ended_at"])
    assert done["status"] == "succeeded", done
    assert done["result"]["run_id"] == done["run_id"] and done["result"]["steps"] == 20
    record = json.loads((onecard_home / "runs" / done["run_id"] / "run.json").read_text())
    assert record["status"] == "succeeded" and record["command"][1:4] == ["tinylm", "train", "--config"]
    assert client.get("/api/runs").status_code != 500  # the server is up

    # The log stream replays the job's lines and ends with its final status.
    with client.stream("GET", f"/api/jobs/{short_id}/log") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert any(e["type"] == "line" and "step 10" in e["text"] for e in events)
    assert events[-1]["type"] == "status" and events[-1]["status"] == "succeeded"


def test_cancel_of_a_queued_job_takes_it_off_the_queue(onecard_home: Path) -> None:
    queue = jobs_module.JobQueue(onecard_home)
    kind = jobs_module.find_kind("tinylm train")
    assert kind is not None
    from onecard.tinylm.config import TinyLMConfig

    with queue._lock:  # hold the worker: both jobs stay queued
        first = queue.submit(kind, TinyLMConfig(data="x.txt"), ())
        second = queue.submit(kind, TinyLMConfig(data="y.txt"), ())
        queue.cancel(second)
        assert second.status == "cancelled" and second.ended_at and queue.position(first) == 1
        assert queue.position(second) is None
        assert (first.dir / "config.yaml").read_text().startswith("# onecard tinylm train --config ")
        assert "--report-to" in first.argv and first.argv[first.argv.index("--report-to") + 1] == "none"


def test_unknown_job_is_a_404(client: TestClient) -> None:
    answers = client.get("/api/jobs/nope"), client.post("/api/jobs/nope/cancel"), client.get("/api/jobs/nope/log")
    for answer in answers:
        assert answer.status_code == 404 and "no job 'nope'" in answer.json()["error"]


def test_stderr_becomes_progress_and_log_lines(onecard_home: Path, tmp_path: Path) -> None:
    """Rich's bar frames (a line printed meanwhile rides on a frame) and tqdm's carriage-return redraws are
    progress; the rest are log lines, and an `error:` line with its fix is the job's error."""
    import os

    queue = jobs_module.JobQueue(onecard_home)
    kind = jobs_module.find_kind("tinylm train")
    assert kind is not None
    job = jobs_module.Job("j", kind, {}, [], tmp_path)
    stream = ("tinylm: \x1b[1m0.03\x1b[0m M parameters\n\x1b[?25l\n"
              "\r\x1b[2Ktraining \x1b[91m━━╸\x1b[0m        3/20 0:00:01 0:00:04"
              "\r\x1b[2Ktraining ━━━━━━━━━━   10/20 0:00:02 0:00:02step \x1b[1m10\x1b[0m: train loss 2.7\n"
              "Epoch 1:  50%|█████     | 5/10 [00:01<00:01]\r"
              "error: the train split has 3 tokens\n  fix: use more text\ninterrupted\n")
    read, write = os.pipe()
    os.write(write, stream.encode())
    os.close(write)
    queue._read(job, read)
    os.close(read)
    assert job.lines == ["tinylm: 0.03 M parameters", "step 10: train loss 2.7",
                         "error: the train split has 3 tokens", "  fix: use more text", "interrupted"]
    assert job.progress == {"text": "Epoch 1: 50%|█████ | 5/10 [00:01<00:01]", "done": 5, "total": 10}
    assert (tmp_path / "stderr.txt").read_text().splitlines() == job.lines
    assert jobs_module._error_lines(job.lines) == "the train split has 3 tokens\n  fix: use more text"


def test_stopping_the_server_interrupts_its_running_job(onecard_home: Path, folder: Path) -> None:
    with TestClient(create_app(WebSettings(data_dir=onecard_home, folders=(folder,)))) as client:
        job_id = client.post("/api/jobs", json=tiny(max_iters=100_000, eval_interval=100_000)).json()["id"]
        running = wait_for(client, job_id, lambda j: j["run_id"] and (j["progress"] or {}).get("done"))
    record = json.loads((onecard_home / "runs" / running["run_id"] / "run.json").read_text())
    assert record["status"] == "interrupted", record["error"]
