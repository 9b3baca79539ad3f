"""A real Trends.Earth script, unchanged, on a legacy environment image (CONTRACT section 10):
built FROM the configured image, run by that image's entrypoint, logged in with its
per-execution credentials, params read from S3 (moto's server stands in), one log request per
line, results gzipped, and a raising script FAILED with its traceback; on Swarm and on the
single-engine backend."""

import os
import shutil
import textwrap
import time
import uuid

import boto3
import docker
import pytest

from tests.archives import script_archive
from tests.e2e.conftest import ADMIN, Client, Stack, base_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]
HERE = os.path.dirname(os.path.abspath(__file__))
ENVIRONMENT = {"environment": "trends.earth-environment", "environment_version": "e2e"}
TEMPLATE = "gefapi-e2e/{environment}:{environment_version}"
FINISHES = """
    REQUIRES_GEE = False

    def run(params, logger):
        for i in range(5):
            logger.info(f"line {i}")
        logger.send_progress(50)
        return {"year": params["year"], "padding": "x" * 4000, "env": params["ENV"]}
"""
RAISES = """
    def run(params, logger):
        logger.info("about to fail")
        raise ValueError("the input raster is empty")
"""


@pytest.fixture(scope="module")
def legacy_image(tmp_path_factory):
    """The stand-in environment image, built from the local base image."""
    context = tmp_path_factory.mktemp("legacy-environment")
    shutil.copytree(os.path.join(HERE, "legacy_environment"), context, dirs_exist_ok=True)
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", context / "extra-ca.crt")
    tag = TEMPLATE.format(**ENVIRONMENT)
    docker.from_env(version="auto").images.build(
        path=str(context), tag=tag, buildargs={"BASE_IMAGE": base_image()}, network_mode="host"
    )
    return tag


@pytest.fixture(scope="module")
def s3_url(s3_endpoint):
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="server",
        aws_secret_access_key="server",
        region_name="us-east-1",
    ).create_bucket(Bucket="te-params")
    return s3_endpoint


@pytest.fixture(scope="module", params=["swarm", "docker"])
def legacy_stack(request, tmp_path_factory, legacy_image, s3_url):
    stack = Stack(tmp_path_factory.mktemp("legacy-e2e"))
    stack.env.update(
        {
            "EXECUTION_BACKEND": request.param,
            "LEGACY_ENVIRONMENT_IMAGE": TEMPLATE,
            "PARAMS_S3_BUCKET": "te-params",
            "PARAMS_S3_PREFIX": "e2e/params",
            "S3_ENDPOINT_URL": s3_url,
            "AWS_ACCESS_KEY_ID": "server",
            "AWS_SECRET_ACCESS_KEY": "server",
            "AWS_DEFAULT_REGION": "us-east-1",
            "EXECUTION_AWS_ACCESS_KEY_ID": "executions",
            "EXECUTION_AWS_SECRET_ACCESS_KEY": "executions",
        }
    )
    if "REDIS_URL" in stack.env:  # a database of its own beside the session's stack
        stack.env["REDIS_URL"] = "redis://127.0.0.1:6379/11"
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def published(legacy_stack):
    admin = Client(legacy_stack.url, **ADMIN)
    scripts = {}
    for kind, code in (("finishes", FINISHES), ("raises", RAISES)):
        configuration = {"name": f"legacy {kind} {time.time_ns()}", **ENVIRONMENT}
        script = admin.publish(script_archive(configuration, main=textwrap.dedent(code)))
        built = admin.built(script["id"])
        assert built["status"] == "SUCCESS", admin.get(f"/api/v1/script/{script['id']}/log").text
        admin.post(f"/api/v1/script/{script['id']}/publish")
        scripts[kind] = script
    return admin, scripts


def owner(stack, admin) -> Client:
    email = f"{uuid.uuid4().hex[:8]}@e2e.local"
    body = {"email": email, "name": "Plugin user", "password": "a user password"}
    assert admin.post("/api/v1/user", json=body).status_code == 200
    return Client(stack.url, email, "a user password")


def test_the_build_says_which_base_image(published):
    admin, scripts = published
    lines = [
        line["text"]
        for line in admin.get(f"/api/v1/script/{scripts['finishes']['id']}/log").json()["data"]
    ]
    assert any(line.startswith(f"Base image: {TEMPLATE.format(**ENVIRONMENT)} (") for line in lines)


def test_a_legacy_script_runs_to_finished(legacy_stack, published):
    admin, scripts = published
    user = owner(legacy_stack, admin)
    execution = user.run(scripts["finishes"], year=2020)
    done = user.finished(execution["id"])
    assert done["status"] == "FINISHED", user.logs(execution["id"])
    assert done["results"] == {"year": 2020, "padding": "x" * 4000, "env": "prod"}
    texts = [line["text"] for line in user.logs(execution["id"])]
    assert [t for t in texts if t.startswith("line ")] == [f"line {i}" for i in range(5)]


def test_a_raising_legacy_script_fails_with_its_traceback(legacy_stack, published):
    admin, scripts = published
    user = owner(legacy_stack, admin)
    execution = user.run(scripts["raises"], year=2020)
    done = user.finished(execution["id"])
    assert done["status"] == "FAILED"
    text = "\n".join(line["text"] for line in user.logs(execution["id"]))
    assert "about to fail" in text
    assert "ValueError: the input raster is empty" in text
