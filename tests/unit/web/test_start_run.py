"""/api/start/run: a path's recipe run from the Start page. The plan (install lines checked, inputs, steps), bad input
named by its field, paths kept in the registered folders, a missing extra refused with its pip line, every queued step
read as the CLI reads its command, and real tinylm recipes: the steps queued in order, `last` the run the train step
opened, and a failed step stopping the ones after it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'onecard[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from onecard.recipes import PATHS, build  # noqa: E402
from onecard.web.app import create_app  # noqa: E402
from onecard.web.routes.start import recipe_steps  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402
from tests.unit.web.waiting import wait_for  # noqa: E402

# The tinylm recipe's config made tiny: seconds on a CPU (tests/unit/web/test_jobs.py's tiny job).
TINY = "data: input.txt\npreset: tiny\nmax_iters: 20\neval_interval: 10\nlog_interval: 5\ndevice: cpu\n"


@pytest.fixture
def client(onecard_home: Path, folder: Path) -> TestClient:
    return TestClient(create_app(WebSettings(data_dir=onecard_home, folders=(folder,))))


def tinylm(**extra: Any) -> dict[str, Any]:
    return {"path": "tinylm", "gpu": "4070ti", "os": "linux", "report_to": ["none"],
            "inputs": {"input.txt": "corpus.txt"}, "configs": {"tinylm.yaml": TINY}, **extra}



def test_the_plan_checks_the_install_lines_and_lists_inputs_and_steps(client: TestClient) -> None:
    plan = client.get("/api/start/run", params={"path": "tinylm", "gpu": "4070ti", "os": "linux"}).json()
    assert plan["refusal"] is None
    assert plan["install"][0] == {"line": "pip install 'onecard[tinylm]'", "satisfied": True,
                                  "note": "the 'tinylm' extra is installed"}
    assert plan["install"][1]["satisfied"] is None and "download" in plan["install"][1]["note"]  # curl: never run
    assert plan["inputs"] == [{"name": "input.txt", "type": "file", "used_by": ["step 3 (tinylm train: data)"]}]
    assert plan["configs"][0]["file"] == "tinylm.yaml" and "data: input.txt" in plan["configs"][0]["yaml"]
    steps = [(s["how"], s["kind"], s["uses_run_of"]) for s in plan["steps"]]
    assert steps == [("here", None, []), ("here", None, []), ("job", "tinylm train", []),
                     ("job", "tinylm sample", [3]), ("job", "tinylm eval", [3]), ("job", "tinylm bench", [3])]


def test_a_path_with_no_step_the_queue_runs_points_to_its_page(client: TestClient) -> None:
    plan = client.get("/api/start/run", params={"path": "rag", "gpu": "4070ti"}).json()
    assert {s["how"] for s in plan["steps"]} == {"here", "skip"}
    answer = client.post("/api/start/run", json={"path": "rag", "gpu": "4070ti"})
    assert answer.status_code == 400 and "/rag" in answer.json()["fix"]


@pytest.mark.parametrize("path", PATHS)
def test_every_queued_step_is_read_as_the_cli_reads_its_command(path: str) -> None:
    from onecard.cli import build_parser
    from onecard.core.config import explicit_fields

    recipe = build(path, "4070ti", "linux")
    files = {c.file: c.values for c in recipe.configs}
    for step in recipe_steps(recipe.commands, files):
        if step.how != "job":
            continue
        assert step.kind is not None
        argv = shlex.split(step.command)[1:]
        args = build_parser(argv[0]).parse_args(argv)
        expected = {**files.get(getattr(args, "config", None) or "", {}), **explicit_fields(step.kind.model(), args)}
        assert step.values == expected, step.command
        # what the queue runs: `onecard CAP ACTION --config FILE --json`
        build_parser(argv[0]).parse_args([*argv[:2], "--config", "x.yaml", "--json"])


def test_a_missing_input_is_a_422_naming_it_and_the_step(client: TestClient) -> None:
    answer = client.post("/api/start/run", json=tinylm(inputs={}))
    assert answer.status_code == 422, answer.text
    [field] = answer.json()["fields"]
    assert field["field"] == "inputs.input.txt"
    assert "step 3 (`onecard tinylm train --config tinylm.yaml`) reads its data from 'input.txt'" in field["message"]
    assert client.get("/api/jobs").json() == []


@pytest.mark.parametrize(("body", "status", "said"), [
    (tinylm(inputs={"input.txt": "../texts/corpus.txt"}), 400, "inputs.input.txt: path '../texts/corpus.txt' "
                                                               "contains '..'"),
    (tinylm(inputs={"input.txt": "/etc/passwd"}), 403, "inputs.input.txt: path '/etc/passwd' is outside"),
    (tinylm(inputs={"input.txt": "{folder}/link.txt"}), 403, "is a symlink that leads out"),
    (tinylm(inputs={"input.txt": "link.txt"}), 400, "'link.txt' is in none of the registered folders"),
    (tinylm(inputs={"input.txt": "nothing.txt"}), 400, "'nothing.txt' is in none of the registered folders"),
    (tinylm(inputs={}, configs={"tinylm.yaml": TINY.replace("input.txt", "/etc/hostname")}), 403, "is outside"),
    (tinylm(configs={"tinylm.yaml": TINY + "glob: ../../**/*\n"}), 400, "glob '../../**/*' leaves the folder"),
    (tinylm(inputs={"input.txt": "x" * 3000}), 400, "cannot be looked up: File name too long"),  # not a 500
    (tinylm(inputs={}, configs={"tinylm.yaml": TINY.replace("input.txt", "x" * 3000)}), 400, "cannot be looked up"),
])
def test_paths_outside_the_registered_folders_are_refused(client: TestClient, folder: Path, body: dict[str, Any],
                                                          status: int, said: str) -> None:
    (folder / "link.txt").symlink_to("/etc/hostname")
    body["inputs"] = {k: v.format(folder=folder) for k, v in body["inputs"].items()}
    answer = client.post("/api/start/run", json=body)
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]
    assert client.get("/api/jobs").json() == []  # nothing queued


@pytest.mark.parametrize(("configs", "field"), [
    ({"tinylm.yaml": "data: [unclosed"}, "configs.tinylm.yaml"),
    ({"tinylm.yaml": "- a list"}, "configs.tinylm.yaml"),
    ({"tinylm.yaml": TINY + "a: &a [1, 1, 1]\nb: [*a, *a, *a]\n"}, "configs.tinylm.yaml"),  # aliases: a YAML bomb
    ({"other.yaml": "a: 1"}, "configs.other.yaml"),
    ({"tinylm.yaml": TINY + "max_iterz: 3\n"}, "steps.3.max_iterz"),
    ({"tinylm.yaml": TINY.replace("max_iters: 20", "max_iters: many")}, "steps.3.max_iters"),
])
def test_a_bad_config_is_a_422_naming_the_field(client: TestClient, configs: dict[str, str], field: str) -> None:
    answer = client.post("/api/start/run", json=tinylm(configs=configs))
    assert answer.status_code == 422, answer.text
    assert field in [f["field"] for f in answer.json()["fields"]]
    assert client.get("/api/jobs").json() == []


def test_a_missing_extra_refuses_the_run_with_its_pip_line(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from onecard.core import extras

    real = extras.available
    monkeypatch.setattr(extras, "available", lambda module: module != "torch" and real(module))
    plan = client.get("/api/start/run", params={"path": "tinylm", "gpu": "4070ti", "os": "linux"}).json()
    assert plan["refusal"]["error"] == "the tinylm recipe needs the 'tinylm' extra, which is not installed"
    assert plan["install"][0]["satisfied"] is False
    answer = client.post("/api/start/run", json=tinylm())
    assert answer.status_code == 501, answer.text
    assert "pip install 'onecard[tinylm]'" in answer.json()["fix"]
    assert client.get("/api/jobs").json() == []


def test_the_tinylm_recipe_runs_its_steps_in_order_on_the_run_it_trained(client: TestClient, onecard_home: Path,
                                                                         folder: Path) -> None:
    answer = client.post("/api/start/run", json=tinylm())
    assert answer.status_code == 201, answer.text
    data = answer.json()
    steps = data["steps"]
    assert [s["how"] for s in steps] == ["here", "here", "job", "job", "job", "job"]
    assert steps[0]["result"]["gpus"] and steps[1]["result"]["expect"]  # doctor and fit, answered in the page
    jobs = [s["job"] for s in steps[2:]]
    assert [j["kind"] for j in jobs] == ["tinylm train", "tinylm sample", "tinylm eval", "tinylm bench"]
    assert steps[2]["job_url"] == f"/jobs#{jobs[0]['id']}"
    assert jobs[0]["config"]["data"] == str(folder / "corpus.txt") and jobs[0]["config"]["max_iters"] == 20
    assert jobs[1]["config"]["prompt"] == "ROMEO:" and jobs[1]["config"]["max_new_tokens"] == 500  # its flags
    # The recipe and its YAML, with the user's file, in the data directory under a generated name.
    recipe_dir = Path(data["folder"])
    assert recipe_dir.parent == onecard_home / "recipes" and (recipe_dir / "recipe.md").is_file()
    assert f"data: {folder / 'corpus.txt'}" in (recipe_dir / "tinylm.yaml").read_text()

    ended = [wait_for(client, j["id"]) for j in jobs]
    assert [j["status"] for j in ended] == ["succeeded"] * 4, [(j["status"], j["error"]) for j in ended]
    train = ended[0]
    assert train["run_id"] and train["run_url"] == f"/runs?id={train['run_id']}"
    assert (onecard_home / "runs" / train["run_id"] / "run.json").is_file()  # the same run records as the CLI's
    for job in ended[1:]:  # `last` is the run the train step opened, in the job and in the file it ran
        assert job["config"]["run"] == train["run_id"]
        assert f"run: {train['run_id']}" in (onecard_home / "jobs" / job["id"] / "config.yaml").read_text()
    assert ended[1]["result"]["run"] == train["run_id"] and ended[1]["result"]["samples"]
    assert ended[0]["started_at"] <= ended[1]["started_at"] <= ended[2]["started_at"] <= ended[3]["started_at"]


def test_a_failed_step_stops_the_steps_after_it(client: TestClient) -> None:
    answer = client.post("/api/start/run", json=tinylm(inputs={"input.txt": "short.txt"}))
    assert answer.status_code == 201, answer.text
    jobs = [s["job"] for s in answer.json()["steps"] if s["job"]]
    ended = [wait_for(client, j["id"]) for j in jobs]
    assert ended[0]["status"] == "failed" and ended[0]["error"]
    for job in ended[1:]:
        assert job["status"] == "cancelled" and job["started_at"] is None
        assert job["error"] == f"not run: an earlier step, tinylm train (job {jobs[0]['id']}), failed"
