"""/api/v1/data/boundaries: geoBoundaries' own field names, as the legacy server answered."""

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from gefapi.models import RELEASE_TYPES
from gefapi.schemas.common import QueryDateTime, QuerySchema, ResourceSchema, Timestamp

MAX_PER_PAGE = 1000


class BoundarySchema(ResourceSchema):
    """One metadata record (a country at ADM0 or ADM1) with its download URLs."""

    boundaryISO = fields.String(attribute="boundary_iso")
    releaseType = fields.String(attribute="release_type")
    boundaryID = fields.String(attribute="boundary_id")
    boundaryName = fields.String(attribute="boundary_name")
    boundaryType = fields.String(attribute="boundary_type")
    boundaryCanonical = fields.String(attribute="boundary_canonical")
    boundaryYearRepresented = fields.String(attribute="boundary_year_represented")
    boundarySource = fields.String(attribute="boundary_source")
    boundarySourceURL = fields.String(attribute="boundary_source_url")
    boundaryLicense = fields.String(attribute="boundary_license")
    licenseDetail = fields.String(attribute="license_detail")
    licenseSource = fields.String(attribute="license_source")
    sourceDataUpdateDate = fields.String(attribute="source_data_update_date")
    buildDate = fields.String(attribute="build_date")
    Continent = fields.String(attribute="continent")
    UNSDG_region = fields.String(attribute="unsdg_region")
    UNSDG_subregion = fields.String(attribute="unsdg_subregion")
    worldBankIncomeGroup = fields.String(attribute="world_bank_income_group")
    admUnitCount = fields.Integer(attribute="adm_unit_count")
    meanVertices = fields.Float(attribute="mean_vertices")
    minVertices = fields.Integer(attribute="min_vertices")
    maxVertices = fields.Integer(attribute="max_vertices")
    meanPerimeterLengthKM = fields.Float(attribute="mean_perimeter_length_km")
    minPerimeterLengthKM = fields.Float(attribute="min_perimeter_length_km")
    maxPerimeterLengthKM = fields.Float(attribute="max_perimeter_length_km")
    meanAreaSqKM = fields.Float(attribute="mean_area_sq_km")
    minAreaSqKM = fields.Float(attribute="min_area_sq_km")
    maxAreaSqKM = fields.Float(attribute="max_area_sq_km")
    staticDownloadLink = fields.String(attribute="static_download_link")
    gjDownloadURL = fields.String(attribute="gj_download_url")
    tjDownloadURL = fields.String(attribute="tj_download_url")
    simplifiedGeometryGeoJSON = fields.String(attribute="simplified_geometry_geojson")
    imagePreview = fields.String(attribute="image_preview")
    createdAt = Timestamp(attribute="created_at")
    updatedAt = Timestamp(attribute="updated_at")


class Admin1UnitSchema(Schema):
    shapeID = fields.String()
    shapeName = fields.String()


class CountryBoundariesSchema(Schema):
    """One country of /list: what the plugin's country and region selection reads."""

    boundaryISO = fields.String()
    boundaryName = fields.String()
    releaseType = fields.String()
    adm0_geojson_url = fields.String(allow_none=True)
    adm0_topojson_url = fields.String(allow_none=True)
    adm1_geojson_url = fields.String(allow_none=True)
    adm1_topojson_url = fields.String(allow_none=True)
    admin1_units = fields.List(fields.Nested(Admin1UnitSchema))


class LastUpdatedSchema(Schema):
    last_updated = Timestamp(allow_none=True)
    release_type = fields.String()
    total = fields.Integer(metadata={"description": "Countries in `boundaries`"})


class BoundaryListAnswerSchema(Schema):
    """The plugin reads `boundaries` and `last_updated` at the top level (not under `data`)."""

    boundaries = fields.List(fields.Nested(CountryBoundariesSchema))
    last_updated = Timestamp(allow_none=True)
    release_type = fields.String()
    data = fields.Nested(LastUpdatedSchema)


class Levels(fields.String):
    """`0`, `1` or `0,1`."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        levels = set()
        for part in text.split(","):
            part = part.strip()
            if part not in ("0", "1"):
                raise ValidationError("Must be 0, 1 or 0,1.")
            levels.add(int(part))
        return sorted(levels)


class ReleaseTypeArgs(QuerySchema):
    @pre_load
    def _blank_is_missing(self, data, **kwargs):
        """`?iso=` is a blank select: not given (CONTRACT section 1)."""
        return {key: value for key, value in data.items() if value != ""}

    release_type = fields.String(load_default="gbOpen", validate=validate.OneOf(RELEASE_TYPES))


class BoundaryListArgs(ReleaseTypeArgs):
    level = Levels(load_default=[0], metadata={"description": "0, 1 or 0,1 (default 0)"})
    id = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "A boundaryID, or a country's ISO code"},
    )
    iso = fields.String(validate=validate.Length(min=1, max=10))
    name = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "Part of the name, any case"},
    )
    created_at_since = QueryDateTime()
    updated_at_since = QueryDateTime()
    page = fields.Integer(validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(
        validate=validate.Range(min=1, max=MAX_PER_PAGE),
        metadata={"description": f"1-{MAX_PER_PAGE} (default 100 when paging)"},
    )
