"""/metrics: Prometheus text format, for the addresses or the bearer token the operator allows
(METRICS_ALLOWED_NETWORKS, METRICS_TOKEN)."""

import hmac
import ipaddress

from flask import current_app, request
from flask.views import MethodView

from gefapi import metrics
from gefapi.errors import PermissionDenied
from gefapi.extensions import limiter
from gefapi.routes import Blueprint

blp = Blueprint("metrics", __name__, description="Prometheus metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def allowed() -> bool:
    config = current_app.config
    token = config["METRICS_TOKEN"]
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(
        address in network for network in networks(tuple(config["METRICS_ALLOWED_NETWORKS"]))
    )


_NETWORKS: dict[tuple, list] = {}


def networks(names: tuple[str, ...]) -> list:
    if names not in _NETWORKS:
        _NETWORKS[names] = [ipaddress.ip_network(name, strict=False) for name in names]
    return _NETWORKS[names]


@blp.route("/metrics")
class Metrics(MethodView):
    decorators = [limiter.exempt]

    @blp.alt_response(200, content_type=CONTENT_TYPE, success=True, description="Metrics")
    def get(self):
        """Prometheus metrics (for METRICS_ALLOWED_NETWORKS or the METRICS_TOKEN bearer)"""
        if not allowed():
            raise PermissionDenied("Metrics are not available to this client")
        return current_app.response_class(metrics.exposition(), content_type=CONTENT_TYPE)
