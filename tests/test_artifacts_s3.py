"""Artifacts on S3 (moto's server on loopback): the upload lands in the bucket, HEAD is answered
by the API, GET redirects to a presigned URL that serves ranges; the purge empties the bucket."""

import hashlib
import os
from datetime import timedelta
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from gefapi.services import artifact_service
from gefapi.storage.s3 import S3Storage
from tests.helpers import data

BODY = os.urandom(3000)


@pytest.fixture
def bucket(app, monkeypatch, s3_endpoint):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="te-results")
    monkeypatch.setitem(app.extensions, "storage", S3Storage("te-results", "prod", client=client))
    return client


def test_s3_upload_head_redirect_and_ranges(
    app, client, make_user, make_script, make_execution, runtime_headers, bucket
):
    owner = make_user()
    execution = make_execution(make_script(owner), owner, status="RUNNING")
    answer = data(
        client.put(
            f"/api/v1/execution/{execution.id}/artifacts/map.tif",
            data=BODY,
            headers={**runtime_headers(execution), "Content-Type": "application/octet-stream"},
        )
    )
    key = f"prod/artifacts/{execution.id}/{answer['id']}"
    assert bucket.get_object(Bucket="te-results", Key=key)["Body"].read() == BODY
    parts = urlsplit(answer["url"])
    link = f"{parts.path}?{parts.query}"

    head = client.head(link)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(BODY))
    assert head.headers["ETag"] == f'"{answer["md5"]}"'

    moved = client.get(link, headers={"Range": "bytes=0-999"})
    assert moved.status_code == 307
    presigned = moved.headers["Location"]
    assert urlsplit(presigned).hostname == "127.0.0.1"
    received = b""
    for start in range(0, len(BODY), 1000):
        part = requests.get(
            presigned, headers={"Range": f"bytes={start}-{start + 999}"}, timeout=10
        )
        assert part.status_code == 206
        received += part.content
    assert hashlib.md5(received).hexdigest() == answer["etag"]["hash"]
    past = requests.get(presigned, headers={"Range": f"bytes={len(BODY)}-"}, timeout=10)
    assert past.status_code == 416

    with app.app_context():
        later = artifact_service.clock() + timedelta(days=10_000)
        assert artifact_service.purge(later) == 1
    assert bucket.list_objects_v2(Bucket="te-results").get("KeyCount") == 0
