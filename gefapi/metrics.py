"""Prometheus metrics: what each process counts, and what a scrape reads from the database.

Counted per process (HTTP requests, Celery tasks). Under gunicorn with several workers, set
PROMETHEUS_MULTIPROC_DIR (an empty folder, the same for every process of a host, set before
start): prometheus_client then keeps the values in files there and a scrape sums them. Without
it, a scrape sees only the worker that answers it.

Read at scrape time from PostgreSQL: executions by status (the stored totals, one row per user
and status), the queue (PENDING executions, through the unfinished-executions index) and the
execution engine's health as the worker last probed it (gefapi.tasks.metrics).
"""

import time

from flask import Flask, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily

HTTP_REQUESTS = Counter(
    "gefapi_http_requests_total",
    "HTTP requests answered, by method, route (the URL rule) and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "gefapi_http_request_duration_seconds",
    "Time from the first request hook to the response, by method, route and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS_SENT = Counter("gefapi_celery_tasks_sent_total", "Celery tasks sent, by task name", ["task"])
TASKS_DONE = Counter(
    "gefapi_celery_tasks_total",
    "Celery tasks run by a worker, by task name and outcome (success, failure, retry)",
    ["task", "outcome"],
)
START_KEY = "gefapi.metrics.start"
UNMATCHED = "<unmatched>"
_children: dict[tuple, tuple] = {}  # (method, route, status) -> (counter, histogram) children


def multiprocess_mode() -> bool:
    return values.ValueClass is not values.MutexValue


def init_app(app: Flask) -> None:
    """Time every request, first hook in and last hook out (what they cost: a clock read and
    two dict lookups per request)."""

    def start_timer():
        request.environ[START_KEY] = time.perf_counter()

    def observe(response):
        current = request._get_current_object()  # one proxy lookup, not four
        environ = current.environ
        started = environ.get(START_KEY)
        rule = current.url_rule
        key = (environ["REQUEST_METHOD"], rule.rule if rule else UNMATCHED, response.status_code)
        children = _children.get(key)
        if children is None:
            labels = (key[0], key[1], str(key[2]))
            children = _children[key] = (
                HTTP_REQUESTS.labels(*labels),
                HTTP_LATENCY.labels(*labels),
            )
        children[0].inc()
        if started is not None:
            children[1].observe(time.perf_counter() - started)
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)
    app.after_request_funcs.setdefault(None, []).append(observe)
    _connect_celery_signals()


_signals_connected = []


def _connect_celery_signals() -> None:
    if _signals_connected:
        return
    from celery import signals

    def sent(sender=None, **_kwargs):
        TASKS_SENT.labels(str(sender)).inc()

    def done(sender=None, state=None, **_kwargs):
        name = getattr(sender, "name", str(sender))
        TASKS_DONE.labels(name, "success" if state == "SUCCESS" else "failure").inc()

    def retried(request=None, **_kwargs):
        TASKS_DONE.labels(getattr(request, "task", "?"), "retry").inc()

    signals.before_task_publish.connect(sent, weak=False)
    signals.task_postrun.connect(done, weak=False)
    signals.task_retry.connect(retried, weak=False)
    _signals_connected.append(True)


class DatabaseCollector:
    """Gauges read from PostgreSQL when scraped."""

    def collect(self):
        from gefapi.services import metrics_service

        state = metrics_service.snapshot()
        by_status = GaugeMetricFamily(
            "gefapi_executions", "Executions (not deleted) by status", labels=["status"]
        )
        for status, total in sorted(state.executions_by_status.items()):
            by_status.add_metric([status], total)
        yield by_status
        yield GaugeMetricFamily(
            "gefapi_execution_queue_length",
            "Executions waiting to be dispatched (PENDING)",
            value=state.queue_length,
        )
        yield GaugeMetricFamily(
            "gefapi_execution_queue_oldest_seconds",
            "How long the oldest PENDING execution has waited (0 when none)",
            value=state.queue_oldest_seconds,
        )
        engine = GaugeMetricFamily(
            "gefapi_engine_up",
            "1 when the worker's last probe reached the execution engine, 0 when it failed; "
            "absent before the first probe",
            labels=["backend"],
        )
        probe_age = GaugeMetricFamily(
            "gefapi_engine_probe_age_seconds",
            "Seconds since the worker last probed the execution engine",
            labels=["backend"],
        )
        for probe in state.engine_probes:
            engine.add_metric([probe.backend], 1 if probe.ok else 0)
            probe_age.add_metric([probe.backend], probe.age_seconds)
        yield engine
        yield probe_age


def exposition() -> bytes:
    """The text format: this process's (or every process's) counters and the database gauges."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        for collector in (HTTP_REQUESTS, HTTP_LATENCY, TASKS_SENT, TASKS_DONE):
            registry.register(collector)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
