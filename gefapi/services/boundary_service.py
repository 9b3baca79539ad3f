"""geoBoundaries metadata: reading it for the clients, and importing geoBoundaries' own files.

The import takes what geoBoundaries publishes, unchanged:
- its metadata JSON (the answer of `https://www.geoboundaries.org/api/current/<release>/<ISO or
  ALL>/<ADM0|ADM1|ALL>/`): one record, or a list of them; records of other levels are skipped;
- a country's ADM1 GeoJSON (features with `shapeID`, `shapeName`, `shapeGroup`), which names
  the units of that country.
Everything is checked before anything is written, and written in one transaction: a bad file
changes nothing. Importing the same file again changes nothing either (timestamps included,
so `last_updated` moves only when the data does).
"""

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, func, or_, select

from gefapi.errors import NotFound, PayloadTooLarge, ValidationError
from gefapi.extensions import db
from gefapi.jsonprovider import guarded_loads
from gefapi.models import RELEASE_TYPES, Boundary, BoundaryUnit
from gefapi.services.listing import Page, paginate

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_PER_PAGE = 100
MAX_UNPAGINATED = 1000
MAX_LISTED_ERRORS = 20
LEVELS = {"ADM0": 0, "ADM1": 1}
ISO_RE = re.compile(r"^[A-Z]{3}$")
RELEASE_IN_URL = re.compile(r"/(" + "|".join(RELEASE_TYPES) + r")/")

# geoBoundaries field -> (column, kind, max length). The first name found wins where several
# map to one column (older API answers named the source `boundarySource-1`).
TEXT, INT, FLOAT, URL = "text", "int", "float", "url"
FIELDS = {
    "boundaryID": ("boundary_id", TEXT, 100),
    "boundaryName": ("boundary_name", TEXT, 255),
    "boundaryCanonical": ("boundary_canonical", TEXT, 255),
    "boundaryYearRepresented": ("boundary_year_represented", TEXT, 50),
    "boundarySource": ("boundary_source", TEXT, 10_000),
    "boundarySource-1": ("boundary_source", TEXT, 10_000),
    "boundarySourceURL": ("boundary_source_url", TEXT, 10_000),
    "boundaryLicense": ("boundary_license", TEXT, 10_000),
    "licenseDetail": ("license_detail", TEXT, 10_000),
    "licenseSource": ("license_source", TEXT, 10_000),
    "sourceDataUpdateDate": ("source_data_update_date", TEXT, 100),
    "buildDate": ("build_date", TEXT, 100),
    "Continent": ("continent", TEXT, 100),
    "UNSDG-region": ("unsdg_region", TEXT, 100),
    "UNSDG-subregion": ("unsdg_subregion", TEXT, 100),
    "worldBankIncomeGroup": ("world_bank_income_group", TEXT, 100),
    "admUnitCount": ("adm_unit_count", INT, None),
    "meanVertices": ("mean_vertices", FLOAT, None),
    "minVertices": ("min_vertices", INT, None),
    "maxVertices": ("max_vertices", INT, None),
    "meanPerimeterLengthKM": ("mean_perimeter_length_km", FLOAT, None),
    "minPerimeterLengthKM": ("min_perimeter_length_km", FLOAT, None),
    "maxPerimeterLengthKM": ("max_perimeter_length_km", FLOAT, None),
    "meanAreaSqKM": ("mean_area_sq_km", FLOAT, None),
    "minAreaSqKM": ("min_area_sq_km", FLOAT, None),
    "maxAreaSqKM": ("max_area_sq_km", FLOAT, None),
    "staticDownloadLink": ("static_download_link", URL, 2000),
    "gjDownloadURL": ("gj_download_url", URL, 2000),
    "tjDownloadURL": ("tj_download_url", URL, 2000),
    "simplifiedGeometryGeoJSON": ("simplified_geometry_geojson", URL, 2000),
    "imagePreview": ("image_preview", URL, 2000),
}
COLUMNS = sorted({column for column, _kind, _size in FIELDS.values()} | {"boundary_type"})


# Reading -------------------------------------------------------------------------------------


def list_boundaries(
    *,
    release_type: str,
    level: list[int],
    id: str | None = None,
    iso: str | None = None,
    name: str | None = None,
    created_at_since: datetime | None = None,
    updated_at_since: datetime | None = None,
    page: int | None = None,
    per_page: int | None = None,
) -> Page:
    query = select(Boundary).where(Boundary.release_type == release_type, Boundary.level.in_(level))
    if id:
        query = query.where(or_(Boundary.boundary_id == id, Boundary.boundary_iso == id.upper()))
    if iso:
        query = query.where(Boundary.boundary_iso == iso.upper())
    if name:
        query = query.where(Boundary.boundary_name.ilike(f"%{_escape_like(name)}%", escape="\\"))
    if created_at_since:
        query = query.where(Boundary.created_at >= created_at_since)
    if updated_at_since:
        query = query.where(Boundary.updated_at >= updated_at_since)
    query = query.order_by(Boundary.level, Boundary.boundary_name, Boundary.boundary_iso)
    if page is not None and per_page is None:
        per_page = DEFAULT_PER_PAGE
    return paginate(query, page=page, per_page=per_page, cap=MAX_UNPAGINATED)


def last_updated(release_type: str) -> datetime | None:
    """The newest change to the release's metadata or units."""
    return db.session.scalar(
        select(
            func.greatest(
                select(func.max(Boundary.updated_at))
                .where(Boundary.release_type == release_type)
                .scalar_subquery(),
                select(func.max(BoundaryUnit.updated_at))
                .where(BoundaryUnit.release_type == release_type)
                .scalar_subquery(),
            )
        )
    )


def require_last_updated(release_type: str) -> datetime:
    value = last_updated(release_type)
    if value is None:
        raise NotFound(
            f"No boundary data for release type {release_type}",
            error_code="boundaries_not_found",
        )
    return value


def countries(release_type: str) -> list[dict]:
    """Every country of a release with its download URLs and ADM1 units, by name."""
    records = db.session.scalars(
        select(Boundary)
        .where(Boundary.release_type == release_type)
        .order_by(Boundary.level, Boundary.boundary_name)
    )
    by_iso: dict[str, dict] = {}
    for record in records:
        entry = by_iso.setdefault(
            record.boundary_iso,
            {
                "boundaryISO": record.boundary_iso,
                "boundaryName": record.boundary_name,
                "releaseType": release_type,
                "adm0_geojson_url": None,
                "adm0_topojson_url": None,
                "adm1_geojson_url": None,
                "adm1_topojson_url": None,
                "admin1_units": [],
            },
        )
        prefix = f"adm{record.level}"
        entry[f"{prefix}_geojson_url"] = record.gj_download_url
        entry[f"{prefix}_topojson_url"] = record.tj_download_url
    units = db.session.execute(
        select(BoundaryUnit.boundary_iso, BoundaryUnit.shape_id, BoundaryUnit.shape_name)
        .where(BoundaryUnit.release_type == release_type)
        .order_by(BoundaryUnit.shape_name, BoundaryUnit.shape_id)
    )
    for iso, shape_id, shape_name in units:
        if iso in by_iso:
            by_iso[iso]["admin1_units"].append({"shapeID": shape_id, "shapeName": shape_name})
    return sorted(by_iso.values(), key=lambda entry: (entry["boundaryName"], entry["boundaryISO"]))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Importing -----------------------------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    units_created: int = 0
    units_updated: int = 0
    units_removed: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"Boundaries: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.skipped} skipped (not ADM0/ADM1); "
            f"ADM1 units: {self.units_created} created, {self.units_updated} updated, "
            f"{self.units_removed} removed"
        )


Track = Callable[[Iterable, str], Iterable]


def _no_progress(items: Iterable, _label: str) -> Iterable:
    return items


def max_import_bytes() -> int:
    return int(current_app.config.get("BOUNDARIES_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def read_source(source: str, *, max_bytes: int | None = None) -> object:
    """The JSON document at a path or an http(s) URL, at most `max_bytes` long."""
    max_bytes = max_bytes or max_import_bytes()
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        raw = _download(source, max_bytes)
    elif "://" in source:
        raise ValidationError(f"{source}: only file paths and http(s) URLs can be imported")
    else:
        raw = _read_file(source, max_bytes)
    try:
        return guarded_loads(json.loads, raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError(f"{source} is not JSON", error_code="not_json") from None


def _too_large(source: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{source} is larger than {max_bytes} bytes", error_code="too_large")


def _read_file(path: str, max_bytes: int) -> bytes:
    try:
        if os.stat(path).st_size > max_bytes:
            raise _too_large(path, max_bytes)
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ValidationError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise _too_large(path, max_bytes)
    return raw


def _download(url: str, max_bytes: int) -> bytes:
    import requests

    timeout = current_app.config.get("BOUNDARIES_IMPORT_TIMEOUT", 60)
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ValidationError(f"{url}: the server answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(url, max_bytes)
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(url, max_bytes)
                chunks.append(chunk)
    except requests.RequestException as exc:
        raise ValidationError(f"{url}: could not download ({type(exc).__name__})") from None
    return b"".join(chunks)


def import_document(
    document: object,
    *,
    release_type: str | None = None,
    fetch_units: bool = False,
    track: Track = _no_progress,
) -> ImportReport:
    """Import one geoBoundaries document (metadata records, or a country's ADM1 GeoJSON)."""
    if release_type is not None and release_type not in RELEASE_TYPES:
        raise ValidationError(f"Unknown release type {release_type!r}")
    report = ImportReport()
    try:
        if isinstance(document, dict) and document.get("type") == "FeatureCollection":
            units = parse_units(document, source="the GeoJSON")
            _replace_units(release_type or "gbOpen", units, report)
        else:
            records = parse_records(document, release_type=release_type, report=report)
            _upsert_records(records, report, track)
            if fetch_units:
                _fetch_units(records, report, track)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return report


def parse_records(document: object, *, release_type: str | None, report: ImportReport) -> dict:
    """Checked records keyed by (release type, ISO, level); other levels are counted skipped."""
    if isinstance(document, dict) and "boundaryISO" in document:
        document = [document]
    if not isinstance(document, list) or not document:
        raise ValidationError(
            "Not geoBoundaries metadata: expected a record or a list of records",
            error_code="not_geoboundaries",
        )
    records: dict[tuple, dict] = {}
    errors: dict[str, list[str]] = {}
    for index, raw in enumerate(document):
        label = f"record {index}"
        if not isinstance(raw, dict):
            errors[label] = ["Not an object"]
            continue
        label = f"record {index} ({str(raw.get('boundaryISO'))[:10]} {raw.get('boundaryType')})"
        problems: list[str] = []
        record = _record(raw, release_type, problems)
        if problems:
            errors[label] = problems
        elif record is None:
            report.skipped += 1
        else:
            records[(record["release_type"], record["boundary_iso"], record["level"])] = record
    if errors:
        listed = dict(list(errors.items())[:MAX_LISTED_ERRORS])
        raise ValidationError(
            f"{len(errors)} invalid geoBoundaries record(s); nothing was imported",
            errors=listed,
            error_code="invalid_boundaries",
        )
    return records


def _record(raw: dict, release_type: str | None, problems: list[str]) -> dict | None:
    boundary_type = raw.get("boundaryType")
    if not isinstance(boundary_type, str) or not re.fullmatch(r"ADM\d", boundary_type.upper()):
        problems.append("boundaryType must be ADM0, ADM1, …")
        return None
    if boundary_type.upper() not in LEVELS:
        return None
    iso = raw.get("boundaryISO")
    if not isinstance(iso, str) or not ISO_RE.fullmatch(iso.upper()):
        problems.append("boundaryISO must be a three-letter ISO code")
    record = {
        "boundary_iso": str(iso).upper(),
        "level": LEVELS[boundary_type.upper()],
        "boundary_type": boundary_type.upper(),
    }
    for name, (column, kind, size) in FIELDS.items():
        if column in record and record[column] is not None:
            continue
        value = _value(raw.get(name), kind, size, name, problems)
        if value is not None or column not in record:
            record[column] = value
    if not record.get("boundary_name"):
        problems.append("boundaryName is required")
    record["release_type"] = release_type or _release_in_urls(record) or "gbOpen"
    return record


def _value(value, kind: str, size: int | None, name: str, problems: list[str]):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind in (INT, FLOAT):
        # Statistics are informative: geoBoundaries writes them as strings, sometimes "Unknown".
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if not math.isfinite(number):
            return None
        if kind == INT:
            return int(number) if abs(number) < 2**31 else None
        return number
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(f"{name} must be a string")
        return None
    text = str(value).strip()
    if "\x00" in text:
        problems.append(f"{name} holds a NUL character")
        return None
    if size is not None and len(text) > size:
        problems.append(f"{name} is longer than {size} characters")
        return None
    if kind == URL and not _is_web_url(text):
        problems.append(f"{name} must be an http(s) URL")
        return None
    return text


def _is_web_url(text: str) -> bool:
    if any(ord(char) < 33 for char in text):
        return False
    parts = urlsplit(text)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _release_in_urls(record: dict) -> str | None:
    for column in ("gj_download_url", "tj_download_url", "static_download_link"):
        match = RELEASE_IN_URL.search(record.get(column) or "")
        if match:
            return match.group(1)
    return None


def _upsert_records(records: dict, report: ImportReport, track: Track) -> None:
    releases = {key[0] for key in records}
    existing = {
        (row.release_type, row.boundary_iso, row.level): row
        for row in db.session.scalars(select(Boundary).where(Boundary.release_type.in_(releases)))
    }
    for key in track(sorted(records), "Importing boundaries"):
        record, row = records[key], existing.get(key)
        if row is None:
            db.session.add(Boundary(**record))
            report.created += 1
            continue
        changed = False
        for column in COLUMNS:
            if getattr(row, column) != record[column]:
                setattr(row, column, record[column])
                changed = True
        if changed:
            report.updated += 1
        else:
            report.unchanged += 1
    db.session.flush()


def parse_units(document: object, *, source: str, iso: str | None = None) -> dict:
    """ADM1 units of one GeoJSON: {(ISO, shapeID): shapeName}."""
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, list):
        raise ValidationError(f"{source} is not a GeoJSON FeatureCollection")
    units: dict[tuple[str, str], str] = {}
    errors: dict[str, list[str]] = {}
    for index, feature in enumerate(features):
        properties = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(properties, dict):
            errors[f"feature {index}"] = ["No properties"]
            continue
        problems = []
        shape_id = properties.get("shapeID")
        shape_name = properties.get("shapeName")
        group = properties.get("shapeGroup") or iso
        shape_type = properties.get("shapeType")
        if not isinstance(shape_id, str) or not 0 < len(shape_id.strip()) <= 100:
            problems.append("shapeID must be a string of 1-100 characters")
        if shape_name is not None and (not isinstance(shape_name, str) or len(shape_name) > 255):
            problems.append("shapeName must be a string of at most 255 characters")
        elif "\x00" in f"{shape_id}{shape_name}":
            problems.append("shapeID and shapeName may not hold a NUL character")
        if not isinstance(group, str) or not ISO_RE.fullmatch(group.upper()):
            problems.append("shapeGroup must be a three-letter ISO code")
        elif iso is not None and group.upper() != iso:
            problems.append(f"shapeGroup {group} is not {iso}")
        if shape_type is not None and shape_type != "ADM1":
            problems.append("only ADM1 units can be imported")
        if problems:
            errors[f"feature {index}"] = problems
            continue
        units[(group.upper(), shape_id.strip())] = (shape_name or shape_id).strip()
    if errors:
        listed = dict(list(errors.items())[:MAX_LISTED_ERRORS])
        raise ValidationError(
            f"{source}: {len(errors)} invalid feature(s); nothing was imported",
            errors=listed,
            error_code="invalid_boundaries",
        )
    return units


def _replace_units(release_type: str, units: dict, report: ImportReport) -> None:
    """The given countries' units become exactly `units`."""
    countries_of = {iso for iso, _shape_id in units}
    existing = {
        row.shape_id: row
        for row in db.session.scalars(
            select(BoundaryUnit).where(
                BoundaryUnit.release_type == release_type,
                BoundaryUnit.boundary_iso.in_(countries_of),
            )
        )
    }
    wanted = {shape_id for _iso, shape_id in units}
    stale = [shape_id for shape_id in existing if shape_id not in wanted]
    if stale:
        db.session.execute(
            delete(BoundaryUnit).where(
                BoundaryUnit.release_type == release_type, BoundaryUnit.shape_id.in_(stale)
            )
        )
        report.units_removed += len(stale)
    for (iso, shape_id), shape_name in units.items():
        row = existing.get(shape_id)
        if row is None:
            # A shapeID is unique within a release: one listed under another country moves.
            row = db.session.get(BoundaryUnit, (release_type, shape_id))
        if row is None:
            db.session.add(
                BoundaryUnit(
                    release_type=release_type,
                    shape_id=shape_id,
                    boundary_iso=iso,
                    shape_name=shape_name,
                )
            )
            report.units_created += 1
        elif (row.boundary_iso, row.shape_name) != (iso, shape_name):
            row.boundary_iso, row.shape_name = iso, shape_name
            report.units_updated += 1
    db.session.flush()


def _fetch_units(records: dict, report: ImportReport, track: Track) -> None:
    """Each ADM1 record's units, from its (simplified, else full) GeoJSON. A country whose file
    cannot be read keeps the units it had, with a warning."""
    adm1 = [records[key] for key in sorted(records) if key[2] == 1]
    for record in track(adm1, "Reading ADM1 units"):
        url = record["simplified_geometry_geojson"] or record["gj_download_url"]
        label = f"{record['boundary_iso']} ADM1 ({record['release_type']})"
        if not url:
            report.warnings.append(f"{label}: no GeoJSON URL")
            continue
        try:
            document = read_source(url)
            units = parse_units(document, source=url, iso=record["boundary_iso"])
        except (ValidationError, PayloadTooLarge) as exc:
            report.warnings.append(f"{label}: {exc.detail}")
            continue
        _replace_units(record["release_type"], units, report)
