"""What an execution's container receives (CONTRACT section 9)."""

import gzip
import json

import boto3
import pytest

from gefapi.auth import EXECUTION_SCOPE
from gefapi.extensions import db
from gefapi.models import Execution
from gefapi.services import dispatch_service


@pytest.fixture
def execution(make_user, make_script, make_execution):
    user = make_user()
    return make_execution(make_script(user), user, params={"year": 2020, "geojson": {"a": 1}})


def env_for(app, execution) -> dict:
    with app.app_context():
        return dispatch_service.runtime_env(db.session.get(Execution, execution.id))


def test_default_env_has_a_scoped_token_and_no_secrets(app, execution):
    env = env_for(app, execution)
    assert set(env) == {"EXECUTION_ID", "API_URL", "API_TOKEN", "ENV"}
    assert env["EXECUTION_ID"] == str(execution.id) and env["ENV"] == "prod"
    assert not env["API_URL"].endswith("/api/v1")
    with app.app_context():
        from flask_jwt_extended import decode_token

        claims = decode_token(env["API_TOKEN"])
    assert claims["scope"] == EXECUTION_SCOPE and claims["execution_id"] == str(execution.id)
    lifetime = claims["exp"] - claims["iat"]
    assert lifetime >= app.config["EXECUTION_MAX_RUNTIME_SECONDS"]


def test_legacy_environment_credentials_only_when_configured(app, execution, monkeypatch):
    monkeypatch.setitem(app.config, "LEGACY_ENVIRONMENT_PASSWORD", "env secret")
    env = env_for(app, execution)
    assert (env["API_USER"], env["API_PASSWORD"]) == (
        app.config["API_ENVIRONMENT_USER"],
        "env secret",
    )


def test_params_are_written_to_s3_for_legacy_images(app, execution, monkeypatch, s3_endpoint):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(app.config, "S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setitem(app.config, "PARAMS_S3_BUCKET", "te-params")
    monkeypatch.setitem(app.config, "PARAMS_S3_PREFIX", "prod/params")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="te-params")
    env = env_for(app, execution)
    assert (env["PARAMS_S3_BUCKET"], env["PARAMS_S3_PREFIX"]) == ("te-params", "prod/params")
    body = s3.get_object(Bucket="te-params", Key=f"prod/params/{execution.id}.json.gz")["Body"]
    assert json.loads(gzip.decompress(body.read())) == {"year": 2020, "geojson": {"a": 1}}
