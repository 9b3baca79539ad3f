"""geoBoundaries metadata: `flask boundaries import` of geoBoundaries' own files, and the three
endpoints read exactly as the QGIS plugin (clients.md A.2 #15, #16) and the admin UI read them."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gefapi.models import Role
from tests.helpers import DATE_RE, assert_error, data, database_state

DATA = Path(__file__).parent / "data" / "geoboundaries"
META = DATA / "gbOpen_meta.json"
KEN_UNITS = DATA / "geoBoundaries-KEN-ADM1_simplified.geojson"
UGA_UNITS = DATA / "geoBoundaries-UGA-ADM1_simplified.geojson"


def run_import(app, *args):
    return app.test_cli_runner().invoke(args=["boundaries", "import", *map(str, args)])


def imported(app, *args) -> str:
    result = run_import(app, *args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def loaded(app):
    """The sample metadata and both countries' ADM1 units."""
    imported(app, META, KEN_UNITS, UGA_UNITS)


@pytest.fixture
def served():
    """A small web server on 127.0.0.1 serving `files` (path -> bytes)."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, files
    server.shutdown()
    server.server_close()


# The plugin ----------------------------------------------------------------------------------


def test_list_drives_a_country_and_its_adm1_units(app, client, auth, make_user, loaded):
    """clients.md A.2 #15: top-level `boundaries` and `last_updated`; per country the URLs
    and `admin1_units` of {shapeID, shapeName} that fill the region selector."""
    headers = auth(make_user())
    response = client.get("/api/v1/data/boundaries/list?release_type=gbOpen", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert DATE_RE.match(body["last_updated"])
    boundaries = body["boundaries"]
    assert [country["boundaryISO"] for country in boundaries] == ["KEN", "UGA"]
    kenya = boundaries[0]
    assert kenya["boundaryName"] == "Kenya"
    assert kenya["releaseType"] == "gbOpen"
    release = "https://github.com/wmgeolab/geoBoundaries/raw/9469f09/releaseData/gbOpen/KEN"
    assert kenya["adm0_geojson_url"] == f"{release}/ADM0/geoBoundaries-KEN-ADM0.geojson"
    assert kenya["adm0_topojson_url"] == f"{release}/ADM0/geoBoundaries-KEN-ADM0.topojson"
    assert kenya["adm1_geojson_url"] == f"{release}/ADM1/geoBoundaries-KEN-ADM1.geojson"
    assert kenya["adm1_topojson_url"] == f"{release}/ADM1/geoBoundaries-KEN-ADM1.topojson"
    assert kenya["admin1_units"] == [
        {"shapeID": "18403467B21085633476310", "shapeName": "Mombasa"},
        {"shapeID": "18403467B54931238462779", "shapeName": "Nairobi"},
        {"shapeID": "18403467B66204175920218", "shapeName": "Turkana"},
    ]
    assert [unit["shapeName"] for unit in boundaries[1]["admin1_units"]] == [
        "Central",
        "Eastern",
        "Northern",
        "Western",
    ]

    # #16: the timestamp under `data`, the same one the list carries.
    stamp = data(client.get("/api/v1/data/boundaries/last-updated?release_type=gbOpen",
                            headers=headers))  # fmt: skip
    assert stamp["last_updated"] == body["last_updated"]


def test_other_release_types_are_separate(app, client, loaded):
    body = client.get("/api/v1/data/boundaries/list?release_type=gbHumanitarian").get_json()
    assert body["boundaries"] == [] and body["last_updated"] is None
    response = client.get("/api/v1/data/boundaries/last-updated?release_type=gbHumanitarian")
    assert_error(response, 404, "boundaries_not_found")
    imported(app, "--release-type", "gbHumanitarian", META)
    body = client.get("/api/v1/data/boundaries/list?release_type=gbHumanitarian").get_json()
    assert [country["boundaryISO"] for country in body["boundaries"]] == ["KEN", "UGA"]
    assert body["boundaries"][0]["admin1_units"] == []


def test_admin_ui_country_list(client, loaded):
    """The admin UI's country dropdown: `level=0&per_page=300`, reading data[].boundaryISO and
    boundaryName (anonymously too, from its registration page)."""
    body = client.get("/api/v1/data/boundaries?level=0&per_page=300").get_json()
    assert [(item["boundaryISO"], item["boundaryName"]) for item in body["data"]] == [
        ("KEN", "Kenya"),
        ("UGA", "Uganda"),
    ]
    assert (body["page"], body["per_page"], body["total"]) == (1, 300, 2)


def test_records_keep_geoboundaries_metadata(client, loaded):
    [record] = data(client.get("/api/v1/data/boundaries?level=1&iso=ken"))
    assert record["boundaryID"] == "KEN-ADM1-18403467"
    assert record["boundaryType"] == "ADM1"
    assert record["boundaryCanonical"] == "County"
    assert record["admUnitCount"] == 47
    assert record["meanAreaSqKM"] == pytest.approx(12481.650564526445)
    assert record["UNSDG_region"] == "Sub-Saharan Africa"
    assert record["worldBankIncomeGroup"] == "Lower-middle-income Countries"
    assert record["licenseDetail"] is None  # "" in the file: nothing
    assert record["simplifiedGeometryGeoJSON"].endswith("geoBoundaries-KEN-ADM1_simplified.geojson")
    assert DATE_RE.match(record["createdAt"]) and DATE_RE.match(record["updatedAt"])


def test_filters_and_paging(client, loaded):
    def isos(query):
        return [(i["boundaryISO"], i["boundaryType"]) for i in data(client.get(query))]

    base = "/api/v1/data/boundaries"
    assert isos(f"{base}?level=0,1") == [("KEN", "ADM0"), ("UGA", "ADM0"), ("KEN", "ADM1"),
                                         ("UGA", "ADM1")]  # fmt: skip
    assert isos(f"{base}?level=1&name=GAND") == [("UGA", "ADM1")]
    assert isos(f"{base}?id=UGA-ADM0-29373498") == [("UGA", "ADM0")]
    assert isos(f"{base}?id=ken") == [("KEN", "ADM0")]
    assert isos(f"{base}?name=%25") == []  # a LIKE wildcard is a plain character
    assert isos(f"{base}?updated_at_since=2000-01-01&level=0") == [("KEN", "ADM0"), ("UGA", "ADM0")]
    assert isos(f"{base}?created_at_since=2999-01-01T00:00:00Z") == []
    assert isos(f"{base}?iso=&name=&level=0") == [("KEN", "ADM0"), ("UGA", "ADM0")]  # blank
    page = client.get(f"{base}?level=0,1&page=2&per_page=3").get_json()
    assert (len(page["data"]), page["page"], page["per_page"], page["total"]) == (1, 2, 3, 4)
    page = client.get(f"{base}?level=0,1&page=1").get_json()
    assert (page["per_page"], page["total"]) == (100, 4)
    assert client.get(f"{base}?per_page=1000").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "level=2",
        "level=x",
        "level=0,",
        "release_type=gbClosed",
        "per_page=1001",
        "per_page=0",
        "per_page=abc",
        "page=0",
        "updated_at_since=yesterday",
        "created_at_since=2020-13-01",
        "name=" + "x" * 300,
    ],
)
def test_bad_queries_are_400(client, loaded, query):
    body = assert_error(client.get(f"/api/v1/data/boundaries?{query}"), 400, "validation_error")
    assert body["errors"]


@pytest.mark.parametrize("path", ["list", "last-updated"])
def test_bad_release_type_is_400(client, path):
    response = client.get(f"/api/v1/data/boundaries/{path}?release_type=open")
    assert assert_error(response, 400, "validation_error")["errors"]["release_type"]


def test_an_invalid_token_is_still_401(client, loaded):
    response = client.get(
        "/api/v1/data/boundaries/list", headers={"Authorization": "Bearer not.a.token"}
    )
    assert_error(response, 401)


def test_documented(client):
    spec = client.get("/swagger.json").get_json()
    for path in ("", "/list", "/last-updated"):
        operation = spec["paths"][f"/api/v1/data/boundaries{path}"]["get"]
        assert {"200", "400"} <= set(operation["responses"]), path
    listing = spec["paths"]["/api/v1/data/boundaries"]["get"]["parameters"]
    per_page = next(p for p in listing if p["name"] == "per_page")
    assert per_page["schema"]["maximum"] == 1000
    assert "404" in spec["paths"]["/api/v1/data/boundaries/last-updated"]["get"]["responses"]


# The import ----------------------------------------------------------------------------------


def test_import_reports_and_skips_other_levels(app):
    output = imported(app, META)
    assert "3 created" not in output
    assert "4 created, 0 updated, 0 unchanged, 1 skipped" in output


def test_import_is_idempotent(app, client, loaded):
    before = database_state(app)
    stamp = client.get("/api/v1/data/boundaries/list").get_json()["last_updated"]
    output = imported(app, META, KEN_UNITS, UGA_UNITS)
    assert "0 created, 0 updated, 4 unchanged" in output
    assert "ADM1 units: 0 created, 0 updated, 0 removed" in output
    assert database_state(app) == before
    assert client.get("/api/v1/data/boundaries/list").get_json()["last_updated"] == stamp


def test_reimport_updates_what_changed(app, client, loaded, tmp_path):
    records = json.loads(META.read_text())
    records[3]["boundaryName"] = "Republic of Uganda"
    changed = tmp_path / "meta.json"
    changed.write_text(json.dumps(records))
    stamp = client.get("/api/v1/data/boundaries/list").get_json()["last_updated"]
    assert "0 created, 1 updated, 3 unchanged" in imported(app, changed)
    body = client.get("/api/v1/data/boundaries/list").get_json()
    assert body["boundaries"][1]["boundaryName"] == "Republic of Uganda"
    assert body["last_updated"] > stamp


def test_units_file_replaces_a_countrys_units(app, client, loaded, tmp_path):
    units = json.loads(KEN_UNITS.read_text())
    units["features"] = units["features"][:2]
    units["features"][0]["properties"]["shapeName"] = "Nairobi City"
    smaller = tmp_path / "ken.geojson"
    smaller.write_text(json.dumps(units))
    assert "ADM1 units: 0 created, 1 updated, 1 removed" in imported(app, smaller)
    [kenya, uganda] = client.get("/api/v1/data/boundaries/list").get_json()["boundaries"]
    assert [u["shapeName"] for u in kenya["admin1_units"]] == ["Mombasa", "Nairobi City"]
    assert len(uganda["admin1_units"]) == 4


def test_import_from_a_url_with_units(app, client, served, tmp_path):
    """The URL form, and --units reading each ADM1 record's simplified GeoJSON (a local
    stand-in for github.com on 127.0.0.1)."""
    base, files = served
    records = json.loads(META.read_text())
    for record in records:
        for key in ("gjDownloadURL", "tjDownloadURL", "simplifiedGeometryGeoJSON"):
            record[key] = record[key].replace("https://github.com/wmgeolab/geoBoundaries/raw", base)
    files["/api/current/gbOpen/ALL/ALL/"] = json.dumps(records).encode()
    files["/9469f09/releaseData/gbOpen/KEN/ADM1/geoBoundaries-KEN-ADM1_simplified.geojson"] = (
        KEN_UNITS.read_bytes()
    )  # UGA's file is missing: a warning, and Uganda keeps no units
    output = imported(app, "--units", f"{base}/api/current/gbOpen/ALL/ALL/")
    assert "4 created" in output and "ADM1 units: 3 created" in output
    assert "UGA ADM1 (gbOpen)" in output and "HTTP 404" in output
    [kenya, uganda] = client.get("/api/v1/data/boundaries/list").get_json()["boundaries"]
    assert len(kenya["admin1_units"]) == 3 and uganda["admin1_units"] == []
    assert kenya["adm1_geojson_url"].startswith(base)


# Bad files change nothing --------------------------------------------------------------------


def failed_import(app, *args) -> str:
    result = run_import(app, *args)
    assert result.exit_code == 1, result.output
    return result.output


def test_a_file_that_is_not_json_changes_nothing(app, loaded, tmp_path):
    before = database_state(app)
    for content in (b"<html>not json</html>", b"\xff\xfe\x00garbage", b"[" * 100_000, b""):
        bad = tmp_path / "bad.json"
        bad.write_bytes(content)
        assert "is not JSON" in failed_import(app, bad)
    assert database_state(app) == before


def test_a_huge_file_changes_nothing(app, loaded, tmp_path, monkeypatch, served):
    before = database_state(app)
    monkeypatch.setitem(app.config, "BOUNDARIES_IMPORT_MAX_BYTES", 4096)
    assert "larger than 4096 bytes" in failed_import(app, META)  # 9 KB
    base, files = served
    files["/huge.json"] = b"[" + b"{}," * 10_000 + b"{}]"
    assert "larger than 4096 bytes" in failed_import(app, f"{base}/huge.json")
    assert database_state(app) == before


def test_invalid_records_change_nothing(app, loaded, tmp_path):
    before = database_state(app)
    records = json.loads(META.read_text())
    cases = {
        "hostile_url": {**records[0], "gjDownloadURL": "javascript:alert(1)"},
        "bad_iso": {**records[0], "boundaryISO": "KENYA"},
        "no_name": {**records[0], "boundaryName": ""},
        "bad_type": {**records[0], "boundaryType": 0},
        "long_text": {**records[0], "boundaryCanonical": "x" * 300},
        "nul": {**records[0], "boundaryName": "Ken\u0000ya"},
        "not_an_object": "KEN",
    }
    for name, bad in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps([{**records[3], "boundaryName": "Changed"}, bad]))
        output = failed_import(app, path)
        assert "nothing was imported" in output, (name, output)
    for document in ({"boundaries": []}, [], 42):
        path = tmp_path / "other.json"
        path.write_text(json.dumps(document))
        assert "Not geoBoundaries metadata" in failed_import(app, path)
    units = json.loads(UGA_UNITS.read_text())
    units["features"].append({"type": "Feature", "properties": {"shapeName": "No id"}})
    path = tmp_path / "units.geojson"
    path.write_text(json.dumps(units))
    assert "invalid feature" in failed_import(app, path)
    assert "only file paths and http(s) URLs" in failed_import(app, "ftp://127.0.0.1/x.json")
    assert "No such file" in failed_import(app, tmp_path / "missing.json")
    assert database_state(app) == before


def test_admin_role_not_needed_but_shown_to_admins_too(client, auth, make_user, loaded):
    headers = auth(make_user(Role.ADMIN))
    assert len(data(client.get("/api/v1/data/boundaries", headers=headers))) == 2
