"""A schema-based fuzz of the Jobs and capability APIs (schemathesis over the app's OpenAPI): no input gives a 500.

The queue is a dry one: a job that passes validation is recorded and ends at once, nothing runs, so the fuzz stays
quick; the checks before the queue (the config model, the registered folders, the uploads) are the real ones.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (the test extra)")

from hypothesis import HealthCheck, settings  # noqa: E402

from onecard.web.app import create_app  # noqa: E402
from onecard.web.jobs import Job, JobQueue  # noqa: E402
from onecard.web.settings import WebSettings  # noqa: E402

HOME = Path(tempfile.mkdtemp(prefix="onecard-jobs-fuzz-"))
(HOME / "folder").mkdir()
(HOME / "folder" / "corpus.txt").write_text("some text to train on\n" * 50)


class DryQueue(JobQueue):
    def _run(self, job: Job) -> None:
        job.status, job.error = "failed", "dry run: nothing is started in the fuzz"


APP = create_app(WebSettings(data_dir=HOME, folders=(HOME / "folder",), upload_limit_mib=1))
APP.state.jobs = DryQueue(HOME)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(
    path_regex=r"^/api/(jobs|detect|asr|diffuse)").exclude(path_regex=r"/log$")
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@schema.parametrize()
@FUZZ
def test_no_input_gives_a_500(case: schemathesis.Case) -> None:
    response = case.call()
    # 501 is the app's answer for a capability whose extra is missing (detect without ultralytics), with its fix.
    missing_extra = response.status_code == 501 and "pip install" in response.json()["fix"]
    assert response.status_code < 500 or missing_extra, (case.method, case.formatted_path, case.body,
                                                         response.text[:500])
