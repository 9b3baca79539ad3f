"""/metrics: the Prometheus text format, read with prometheus_client's own parser."""

import os
import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gefapi.extensions import db
from gefapi.models import Role
from gefapi.services import metrics_service


def scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_http_requests_counted_by_route_and_status(client, make_user, auth):
    user = make_user()
    headers = auth(user)
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/execution", headers=headers).status_code == 200
    client.get("/api/v1/execution/not-a-uuid", headers=headers)
    after = scrape(client)
    labels = {"method": "GET", "route": "/api/v1/execution", "status": "200"}
    assert (
        value(after, "gefapi_http_requests_total", **labels)
        - value(before, "gefapi_http_requests_total", **labels)
        == 3
    )
    count = "gefapi_http_request_duration_seconds_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 3
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, "gefapi_http_requests_total", **unmatched) >= 1


def test_executions_by_status_and_queue_move(client, make_user, make_script, make_execution):
    admin = make_user(Role.ADMIN)
    script = make_script(admin)
    before = scrape(client)
    make_execution(script, admin)
    make_execution(script, admin)
    make_execution(script, admin, status="RUNNING")
    after = scrape(client)
    for status, added in (("PENDING", 2), ("RUNNING", 1), ("FINISHED", 0)):
        moved = value(after, "gefapi_executions", status=status) - value(
            before, "gefapi_executions", status=status
        )
        assert moved == added, status
    queue = "gefapi_execution_queue_length"
    assert value(after, queue) - value(before, queue) == 2
    assert value(after, "gefapi_execution_queue_oldest_seconds") >= 0


def test_celery_tasks_sent_are_counted(client, make_user, make_script, auth, app, monkeypatch):
    import gefapi.queue

    user = make_user()
    script = make_script(make_user(Role.ADMIN), public=True)
    sent = []
    # Publishing for real would need a broker; the signal fires in task.apply_async.
    from celery import signals

    monkeypatch.setattr(
        gefapi.queue,
        "deliver",
        lambda task, args, kwargs: (
            sent.append(task.name),
            signals.before_task_publish.send(sender=task.name, body=args),
        ),
    )
    before = scrape(client)
    assert client.post(f"/api/v1/script/{script.id}/run", json={}, headers=auth(user)).status_code
    after = scrape(client)
    name = "gefapi_celery_tasks_sent_total"
    assert sent == ["executions.dispatch"]
    assert (
        value(after, name, task="executions.dispatch")
        - value(before, name, task="executions.dispatch")
        == 1
    )


def test_engine_health_is_the_workers_last_probe(client, app, monkeypatch):
    class Client:
        healthy = True

        def ping(self):
            if not self.healthy:
                raise ConnectionError("engine down")
            return True

    class Backend:
        name = "swarm"
        client = Client()

    monkeypatch.setitem(app.extensions, "executor", Backend())
    with app.app_context():
        assert metrics_service.probe_engine() is True
    assert value(scrape(client), "gefapi_engine_up", backend="swarm") == 1
    Backend.client.healthy = False
    with app.app_context():
        assert metrics_service.probe_engine() is False
    found = scrape(client)
    assert value(found, "gefapi_engine_up", backend="swarm") == 0
    assert ("gefapi_engine_probe_age_seconds", (("backend", "swarm"),)) in found
    with app.app_context():
        db.session.rollback()


def test_access_is_restricted_by_configuration(client, app, monkeypatch):
    outside = {"environ_base": {"REMOTE_ADDR": "203.0.113.7"}}
    response = client.get("/metrics", **outside)
    assert response.status_code == 403 and response.get_json()["error_code"] == "permission_denied"
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "scrape-token-0123456789")
    assert (
        client.get("/metrics", headers={"Authorization": "Bearer nope"}, **outside).status_code
        == 403
    )
    scrape(client, headers={"Authorization": "Bearer scrape-token-0123456789"}, **outside)
    monkeypatch.setitem(app.config, "METRICS_ALLOWED_NETWORKS", [])
    assert client.get("/metrics").status_code == 403
    monkeypatch.setitem(app.config, "METRICS_ALLOWED_NETWORKS", ["203.0.113.0/24"])
    scrape(client, **outside)


CHILD = textwrap.dedent(
    """
    import sys
    from gefapi import create_app
    from gefapi.config import TestingConfig

    class Config(TestingConfig):
        SQLALCHEMY_DATABASE_URI = sys.argv[1]
        CELERY_BROKER_URL = "memory://"

    client = create_app(Config).test_client()
    for _ in range(int(sys.argv[2])):
        assert client.get("/ogc/conformance").status_code == 200
    if sys.argv[3] == "scrape":
        sys.stdout.write(client.get("/metrics").get_data(as_text=True))
    """
)


@pytest.mark.slow
def test_multiprocess_counts_sum_over_processes(database_url, tmp_path):
    """Like gunicorn workers: several processes, one PROMETHEUS_MULTIPROC_DIR, one sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for requests in (2, 3):
        subprocess.run(
            [sys.executable, "-c", CHILD, database_url, str(requests), "-"], env=env, check=True
        )
    scraped = subprocess.run(
        [sys.executable, "-c", CHILD, database_url, "1", "scrape"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    labels = {"method": "GET", "route": "/ogc/conformance", "status": "200"}
    assert value(samples(scraped), "gefapi_http_requests_total", **labels) == 6
