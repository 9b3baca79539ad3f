"""Every script in examples/ (docs/scripts.md walks through them) published and run through the
API, as a script author would: so the examples, and what the guide says they do, stay true."""

import io
import tarfile
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
KINDS = ("hello", "params-schema", "progress-and-logs", "failing", "raster-artifact")


def pack(folder: Path) -> bytes:
    """What `tar -czf x.tar.gz -C examples/<name> configuration.json requirements.txt src`
    makes (docs/scripts.md), with a name made unique for this test session."""
    import json

    configuration = json.loads((folder / "configuration.json").read_text())
    configuration["name"] += f" {time.time_ns()}"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = json.dumps(configuration).encode()
        info = tarfile.TarInfo("configuration.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(folder / "requirements.txt", "requirements.txt")
        tar.add(folder / "src", "src", filter=lambda m: None if "__pycache__" in m.name else m)
    return buffer.getvalue()


def test_every_example_is_in_this_test():
    assert {path.name for path in EXAMPLES.iterdir() if path.is_dir()} == set(KINDS)


@pytest.fixture(scope="module")
def examples(admin):
    published = {kind: admin.publish(pack(EXAMPLES / kind), f"{kind}.tar.gz") for kind in KINDS}
    for kind, script in published.items():
        built = admin.built(script["id"])
        log = admin.get(f"/api/v1/script/{script['id']}/log").text
        assert built["status"] == "SUCCESS", (kind, built, log)
    return published


def text(client, execution) -> str:
    return "\n".join(line["text"] for line in client.logs(execution["id"]))


def test_examples_run_as_the_guide_says(admin, examples):
    runs = {
        "hello": admin.run(examples["hello"], name="Ada"),
        "params-schema": admin.run(examples["params-schema"], width=3, height=4.5, unit="km"),
        "progress-and-logs": admin.run(examples["progress-and-logs"], steps=3),
        "failing": admin.run(examples["failing"]),
        "raster-artifact": admin.run(examples["raster-artifact"], size=4),
    }
    done = {kind: admin.finished(execution["id"]) for kind, execution in runs.items()}
    outcome = {kind: (e["status"], text(admin, e)) for kind, e in done.items()}

    assert done["hello"]["status"] == "FINISHED", outcome
    assert done["hello"]["results"] == {"greeting": "Hello, Ada!"}
    assert "Saying hello to Ada" in text(admin, done["hello"])

    assert done["params-schema"]["status"] == "FINISHED", outcome
    assert done["params-schema"]["results"] == {"area": 13.5, "unit": "km2"}

    steps = done["progress-and-logs"]
    assert steps["status"] == "FINISHED" and steps["progress"] == 100, outcome
    levels = {line["level"] for line in admin.logs(steps["id"])}
    assert {"DEBUG", "INFO", "WARNING", "ERROR"} <= levels
    assert "step 3 of 3 done" in text(admin, steps)

    assert done["failing"]["status"] == "FAILED"
    assert "ValueError: the input raster input.tif is empty" in text(admin, done["failing"])

    raster = done["raster-artifact"]
    assert raster["status"] == "FINISHED", text(admin, raster)
    link = raster["results"]["rasters"]["gradient"]["url"]
    grid = requests.get(link, timeout=30)  # a signed link: no token needed
    assert grid.status_code == 200 and grid.text.startswith("ncols 4\nnrows 4\n")


def test_params_that_fail_the_schema_are_refused_before_a_run(admin, examples):
    response = admin.post(
        f"/api/v1/script/{examples['params-schema']['id']}/run", json={"width": -1}
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "width" in errors and "_schema" in errors  # -1 is not > 0; height is missing
