"""gefcore's protocol: log in with API_USER/API_PASSWORD (again once on a 401), params from S3
with boto3's default endpoint and credential chain, one log request per record, progress and
results by PATCH (gzip above 1 KB), FAILED with the traceback on an exception."""

import gzip
import json
import logging
import os
import time
import traceback

import boto3
import requests

API = os.environ["API_URL"].rstrip("/")
EXECUTION = os.environ["EXECUTION_ID"]
PATH = f"{API}/api/v1/execution/{EXECUTION}"


class Api:
    def __init__(self):
        self.token = None
        self.login()

    def login(self):
        body = {"email": os.environ["API_USER"], "password": os.environ["API_PASSWORD"]}
        for attempt in range(10):
            response = requests.post(f"{API}/auth", json=body, timeout=30)
            if response.status_code == 200:
                self.token = response.json()["access_token"]
                return
            time.sleep(min(2**attempt, 10) / 4)
        raise RuntimeError(f"login failed: {response.status_code} {response.text}")

    def call(self, method, url, payload):
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if len(data) > 1024:
            data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
        for relogged in (False, True):
            headers["Authorization"] = f"Bearer {self.token}"
            response = requests.request(method, url, data=data, headers=headers, timeout=30)
            if response.status_code == 401 and not relogged:
                self.login()
                continue
            if response.status_code >= 400:
                print(f"{method} {url}: {response.status_code} {response.text}", flush=True)
            return response


class ApiHandler(logging.Handler):
    def __init__(self, api):
        super().__init__()
        self.api = api

    def emit(self, record):
        text = self.format(record)[:9000]
        self.api.call("POST", f"{PATH}/log", {"text": text, "level": record.levelname})


class ScriptLogger:
    def __init__(self, api):
        self.api = api
        self.logger = logging.getLogger("gefcore.script")
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(ApiHandler(api))
        for name in ("debug", "info", "warning", "error", "critical", "exception"):
            setattr(self, name, getattr(self.logger, name))

    def send_progress(self, progress):
        self.api.call("PATCH", PATH, {"progress": progress})


def read_params():
    key = f"{os.environ['PARAMS_S3_PREFIX'].strip('/')}/{EXECUTION}.json.gz"
    client = boto3.client("s3")
    for _ in range(60):
        try:
            body = client.get_object(Bucket=os.environ["PARAMS_S3_BUCKET"], Key=key)["Body"]
            return json.loads(gzip.decompress(body.read()))
        except client.exceptions.NoSuchKey:
            time.sleep(1)
    raise RuntimeError(f"no params at {key}")


def run():
    api = Api()
    params = read_params()
    api.call("PATCH", PATH, {"status": "RUNNING"})
    logger = ScriptLogger(api)
    params.update(ENV=os.environ.get("ENV"), EXECUTION_ID=EXECUTION)
    try:
        from gefcore.script import main

        results = main.run(params, logger)
    except Exception:
        logger.error("Execution failed:\n" + traceback.format_exc())
        api.call("PATCH", PATH, {"status": "FAILED"})
        return 1
    api.call("PATCH", PATH, {"results": results, "status": "FINISHED"})
    return 0
