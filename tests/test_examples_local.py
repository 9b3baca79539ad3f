"""examples/run_local.py, the local check docs/scripts.md (section 6) tells authors to use,
runs every example as the server would call it. The examples through the API:
tests/e2e/test_examples_e2e.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_local(tmp_path, example: str, params: dict) -> subprocess.CompletedProcess:
    script = EXAMPLES / "run_local.py"
    return subprocess.run(
        [sys.executable, str(script), str(EXAMPLES / example), json.dumps(params)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("example", "params", "results"),
    [
        ("hello", {"name": "Ada"}, {"greeting": "Hello, Ada!"}),
        ("params-schema", {"width": 3, "height": 4.5, "unit": "km"}, {"area": 13.5, "unit": "km2"}),
        ("progress-and-logs", {"steps": 2, "seconds_per_step": 0}, {"steps": 2}),
    ],
)
def test_examples_run_locally(tmp_path, example, params, results):
    done = run_local(tmp_path, example, params)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = done.stdout
    assert json.loads(printed[printed.index("\n{") :]) == results


def test_a_failing_example_prints_its_traceback_and_exits_1(tmp_path):
    done = run_local(tmp_path, "failing", {})
    assert done.returncode == 1
    assert "ValueError: the input raster input.tif is empty" in done.stdout


def test_an_upload_lands_in_the_artifacts_folder(tmp_path):
    done = run_local(tmp_path, "raster-artifact", {"size": 2})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "artifacts" / "gradient.asc").read_text().startswith("ncols 2\nnrows 2\n")
