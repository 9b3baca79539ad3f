"""/api/v1/data/boundaries: geoBoundaries metadata for country and region selection.

Public data: a token is optional (the plugin sends one; the admin UI's registration page asks
without), and an invalid token is still a 401.
"""

from flask.views import MethodView

from gefapi.auth import optional_login
from gefapi.extensions import ErrorSchema
from gefapi.routes import Blueprint
from gefapi.schemas.boundary import (
    BoundaryListAnswerSchema,
    BoundaryListArgs,
    BoundarySchema,
    LastUpdatedSchema,
    ReleaseTypeArgs,
)
from gefapi.schemas.common import envelope, timestamp
from gefapi.services import boundary_service

blp = Blueprint(
    "boundaries",
    __name__,
    url_prefix="/api/v1/data/boundaries",
    description="geoBoundaries administrative boundaries (metadata and download URLs)",
)


def _stamp(value):
    return None if value is None else timestamp(value)


@blp.route("")
class Boundaries(MethodView):
    @optional_login
    @blp.arguments(BoundaryListArgs, location="query")
    @blp.documents(BoundarySchema, many=True, paginated=True)
    def get(self, args):
        """Boundary metadata records with their download URLs (pages of up to 1,000)"""
        page = boundary_service.list_boundaries(**args)
        schema = BoundarySchema.for_request(many=True)
        return envelope(schema.dump(page.items), **page.meta())


@blp.route("/list")
class BoundaryList(MethodView):
    @optional_login
    @blp.arguments(ReleaseTypeArgs, location="query")
    @blp.alt_response(200, schema=BoundaryListAnswerSchema, success=True)
    def get(self, args):
        """Every country of a release with its ADM1 units (`boundaries`, `last_updated` at the
        top level, as the QGIS plugin reads them)"""
        release_type = args["release_type"]
        countries = boundary_service.countries(release_type)
        last_updated = _stamp(boundary_service.last_updated(release_type))
        return {
            "boundaries": countries,
            "last_updated": last_updated,
            "release_type": release_type,
            "data": {
                "last_updated": last_updated,
                "release_type": release_type,
                "total": len(countries),
            },
        }


@blp.route("/last-updated")
class BoundariesLastUpdated(MethodView):
    @optional_login
    @blp.arguments(ReleaseTypeArgs, location="query")
    @blp.documents(LastUpdatedSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No boundary data for this release")
    def get(self, args):
        """When a release's boundary data last changed (404 before any import)"""
        release_type = args["release_type"]
        value = boundary_service.require_last_updated(release_type)
        return envelope({"last_updated": timestamp(value), "release_type": release_type})
