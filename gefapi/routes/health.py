"""/api-health: is the API up, and can it reach the database and the broker?"""

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields
from sqlalchemy import text

from gefapi.extensions import db, limiter
from gefapi.models.base import utcnow
from gefapi.routes import Blueprint
from gefapi.schemas.common import timestamp

blp = Blueprint("health", __name__, description="Health")


def _database_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception:
        db.session.rollback()
        return False


def _broker_ok() -> bool:
    celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


class HealthSchema(Schema):
    status = fields.String()
    database = fields.String()
    broker = fields.String()
    timestamp = fields.String()


@blp.route("/api-health")
class Health(MethodView):
    decorators = [limiter.exempt]

    @blp.alt_response(200, schema=HealthSchema, success=True)
    @blp.alt_response(503, schema=HealthSchema)
    def get(self):
        """Health of the API and its dependencies (503 when one is down)"""
        database, broker = _database_ok(), _broker_ok()
        healthy = database and broker
        body = {
            "status": "ok" if healthy else "degraded",
            "database": "ok" if database else "unavailable",
            "broker": "ok" if broker else "unavailable",
            "timestamp": timestamp(utcnow()),
        }
        return body, 200 if healthy else 503
