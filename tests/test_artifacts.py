"""Artifacts: uploads by an execution's runtime, listings, and downloads through signed links
exactly as the QGIS plugin fetches a result file (HEAD, ranged GETs, MD5 against the etag)."""

import hashlib
import os
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from gefapi.extensions import db
from gefapi.models import Artifact, Role
from gefapi.models.base import utcnow
from gefapi.services import artifact_service
from gefapi.storage import LocalStorage
from tests.helpers import assert_error, data, stored_files

BODY = os.urandom(4500) + b"tail"


@pytest.fixture
def storage(app, monkeypatch, tmp_path):
    root = str(tmp_path / "storage")
    monkeypatch.setitem(app.extensions, "storage", LocalStorage(root))
    return root


@pytest.fixture
def clock(monkeypatch):
    """The artifacts' clock, moved by the test."""
    now = {"t": utcnow()}
    monkeypatch.setattr(artifact_service, "clock", lambda: now["t"])

    class Clock:
        def advance(self, **delta):
            now["t"] += timedelta(**delta)

        @property
        def now(self):
            return now["t"]

    return Clock()


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def script(make_script, owner):
    return make_script(owner)


@pytest.fixture
def running(make_execution, script, owner):
    return make_execution(script, owner, status="RUNNING")


def upload(client, execution, headers, name="map.tif", body=BODY, **query):
    path = f"/api/v1/execution/{execution.id}/artifacts/{name}"
    if query:
        path += "?" + urlencode(query)
    return client.put(
        path, data=body, headers={**headers, "Content-Type": "application/octet-stream"}
    )


def local(url: str) -> str:
    """The path and query of a link (the test client talks to the app directly)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def plugin_download(client, url: str, chunk: int) -> bytes:
    """What the plugin does: HEAD for the length, then Range GETs, no Authorization."""
    head = client.head(local(url))
    assert head.status_code == 200
    assert "Content-Encoding" not in head.headers
    length = int(head.headers["Content-Length"])
    received = b""
    for start in range(0, length, chunk):
        end = min(start + chunk, length) - 1
        part = client.get(local(url), headers={"Range": f"bytes={start}-{end}"})
        assert part.status_code == 206, part.get_data()
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/{length}"
        assert "Content-Encoding" not in part.headers
        received += part.get_data()
    return received


# Upload and listing ------------------------------------------------------------------------


def test_runtime_uploads_and_the_plugin_downloads_without_a_token(
    client, running, runtime_headers, storage
):
    answer = data(upload(client, running, runtime_headers(running), media_type="image/tiff"))
    md5 = hashlib.md5(BODY).hexdigest()
    assert answer["name"] == "map.tif" and answer["size"] == len(BODY)
    assert answer["md5"] == md5 and answer["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert answer["media_type"] == "image/tiff"
    assert answer["etag"] == {"hash": md5, "type": "AWS MD5 Etag"}
    assert answer["uri"] == {"uri": answer["url"], "type": "cloud", "etag": answer["etag"]}

    received = plugin_download(client, answer["uri"]["uri"], chunk=1000)
    assert received == BODY
    assert hashlib.md5(received).hexdigest() == answer["uri"]["etag"]["hash"]

    whole = client.get(local(answer["url"]))
    assert whole.status_code == 200 and whole.get_data() == BODY
    assert whole.headers["ETag"] == f'"{md5}"'
    assert whole.headers["Content-Type"] == "image/tiff"
    assert "attachment" in whole.headers["Content-Disposition"]
    # The stored object is named by ids only.
    assert stored_files(storage) == [f"artifacts/{running.id}/{answer['id']}"]


def test_listing_and_metadata(client, running, runtime_headers, auth, owner, make_user, storage):
    token = runtime_headers(running)
    upload(client, running, token, name="a.csv", body=b"x,y\n1,2\n")
    upload(client, running, token, name="b.json", body=b'{"a": 1}')
    listed = data(client.get(f"/api/v1/execution/{running.id}/artifacts", headers=auth(owner)))
    assert [(a["name"], a["media_type"]) for a in listed] == [
        ("a.csv", "text/csv"),
        ("b.json", "application/json"),
    ]
    assert all(a["url"].startswith("http") and a["url_expires_at"] for a in listed)
    one = data(client.get(f"/api/v1/execution/{running.id}/artifacts/a.csv", headers=token))
    assert one["size"] == 8 and one["id"] == listed[0]["id"]
    assert client.get(local(one["url"])).get_data() == b"x,y\n1,2\n"
    stranger = auth(make_user())
    assert_error(
        client.get(f"/api/v1/execution/{running.id}/artifacts", headers=stranger),
        404,
        "execution_not_found",
    )
    assert_error(
        client.get(f"/api/v1/execution/{running.id}/artifacts/zzz.csv", headers=token),
        404,
        "artifact_not_found",
    )


def test_only_the_runtime_or_an_admin_uploads(
    client, running, auth, owner, make_user, runtime_headers, storage
):
    assert_error(upload(client, running, auth(owner)), 403, "permission_denied")
    assert_error(upload(client, running, {}), 401)
    admin = make_user(role=Role.ADMIN)
    assert data(upload(client, running, auth(admin)))["name"] == "map.tif"


def test_runtime_token_ends_with_the_execution(
    client, app, running, runtime_headers, storage, make_execution, script, owner
):
    token = runtime_headers(running)
    finished = make_execution(script, owner, status="FINISHED")
    assert_error(upload(client, finished, runtime_headers(finished)), 401, "token_revoked")
    assert data(upload(client, running, token))
    with app.app_context():
        from gefapi.models import Execution

        db.session.get(Execution, running.id).status = "FINISHED"
        db.session.commit()
    assert_error(upload(client, running, token, name="late.tif"), 401, "token_revoked")


def test_same_name_replaces_and_the_old_link_dies(client, running, runtime_headers, storage):
    token = runtime_headers(running)
    first = data(upload(client, running, token, body=b"first version"))
    second = data(upload(client, running, token, body=b"second"))
    assert first["id"] != second["id"]
    assert_error(client.get(local(first["url"])), 404, "artifact_not_found")
    assert client.get(local(second["url"])).get_data() == b"second"
    assert stored_files(storage) == [f"artifacts/{running.id}/{second['id']}"]


# Hostile and oversized uploads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("..%2F..%2Fetc%2Fpasswd", "etc_passwd"),
        ("../../etc/passwd", "etc_passwd"),
        (".hidden", "hidden"),
        ("a%5Cb%5C..%5Cc.tif", "a_b_c.tif"),
        ("r%C3%A9sultat%20final.tif", "résultat_final.tif"),
        ("x" * 300 + ".tif", "x" * 196 + ".tif"),
    ],
)
def test_names_are_sanitized(client, running, runtime_headers, storage, given, stored):
    answer = data(upload(client, running, runtime_headers(running), name=given))
    assert answer["name"] == stored
    assert stored_files(storage) == [f"artifacts/{running.id}/{answer['id']}"]


@pytest.mark.parametrize("name", ["...", "%2E%2E", "%E2%80%8B%E2%80%8B"])
def test_unusable_names_are_refused(client, running, runtime_headers, storage, name):
    assert_error(
        upload(client, running, runtime_headers(running), name=name), 400, "invalid_artifact_name"
    )
    assert stored_files(storage) == []


def test_bad_input_leaves_nothing_behind(app, client, running, runtime_headers, storage):
    token = runtime_headers(running)
    assert_error(upload(client, running, token, body=b""), 400, "empty_artifact")
    assert_error(upload(client, running, token, media_type="not a type"), 400, "validation_error")
    with open(__file__, "rb") as source:
        multipart = client.put(
            f"/api/v1/execution/{running.id}/artifacts/a.tif",
            data={"file": (source, "a.tif")},
            headers=token,
            content_type="multipart/form-data",
        )
    assert_error(multipart, 415)
    app.config["ARTIFACT_MAX_BYTES"], saved = 1000, app.config["ARTIFACT_MAX_BYTES"]
    try:
        too_big = upload(client, running, token, body=b"x" * 1001)
        assert_error(too_big, 413, "artifact_too_large")
        assert "1000" in too_big.get_json()["detail"]
    finally:
        app.config["ARTIFACT_MAX_BYTES"] = saved
    assert stored_files(storage) == []
    with app.app_context():
        assert db.session.query(Artifact).count() == 0


def test_per_execution_caps(app, client, running, runtime_headers, storage, monkeypatch):
    token = runtime_headers(running)
    monkeypatch.setitem(app.config, "ARTIFACT_MAX_EXECUTION_BYTES", 10)
    assert data(upload(client, running, token, name="a", body=b"123456"))
    assert_error(
        upload(client, running, token, name="b", body=b"12345"),
        413,
        "execution_artifacts_too_large",
    )
    # Replacing counts the new size only.
    assert data(upload(client, running, token, name="a", body=b"1234567890"))
    monkeypatch.setitem(app.config, "ARTIFACT_MAX_EXECUTION_BYTES", 10**9)
    monkeypatch.setitem(app.config, "ARTIFACT_MAX_PER_EXECUTION", 1)
    assert_error(upload(client, running, token, name="c", body=b"1"), 413, "too_many_artifacts")
    assert len(stored_files(storage)) == 1


# Signed links ------------------------------------------------------------------------------


def test_tampered_expired_wrong_and_deleted_links_are_refused(
    client, running, runtime_headers, storage, clock, auth, owner, app
):
    token = runtime_headers(running)
    one = data(upload(client, running, token, name="one.tif"))
    two = data(upload(client, running, token, name="two.tif"))
    path, query = local(one["url"]).split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}

    def get(path=path, **changes):
        return client.get(f"{path}?{urlencode({**params, **changes})}")

    assert get().status_code == 200
    flipped = params["signature"][:-2] + ("AA" if params["signature"][-2:] != "AA" else "BB")
    assert_error(get(signature=flipped), 403, "invalid_signature")
    assert_error(get(expires=str(int(params["expires"]) + 3600)), 403, "invalid_signature")
    assert_error(client.get(path), 403, "invalid_signature")
    assert_error(get(expires="soon"), 403, "invalid_signature")
    # The signature of one artifact does not open another.
    other = path.replace(one["id"], two["id"]).replace("one.tif", "two.tif")
    assert_error(get(path=other), 403, "invalid_signature")
    # Another name under the same id is not the artifact.
    assert_error(get(path=path.replace("one.tif", "x.tif")), 404, "artifact_not_found")
    # Past its expiry.
    clock.advance(seconds=app.config["ARTIFACT_URL_SECONDS"] + 1)
    assert_error(get(), 403, "link_expired")
    clock.advance(seconds=-(app.config["ARTIFACT_URL_SECONDS"] + 1))
    # Deleted by its owner: gone, file included.
    removed = client.delete(
        f"/api/v1/execution/{running.id}/artifacts/one.tif", headers=auth(owner)
    )
    assert data(removed)["id"] == one["id"]
    assert_error(get(), 404, "artifact_not_found")
    assert stored_files(storage) == [f"artifacts/{running.id}/{two['id']}"]


def test_links_die_with_the_execution(client, app, running, runtime_headers, auth, owner, storage):
    answer = data(upload(client, running, runtime_headers(running)))
    with app.app_context():
        from gefapi.models import Execution

        db.session.get(Execution, running.id).status = "FINISHED"
        db.session.commit()
    assert data(client.delete(f"/api/v1/execution/{running.id}", headers=auth(owner)))
    assert_error(client.get(local(answer["url"])), 404, "artifact_not_found")
    with app.app_context():
        assert artifact_service.purge() == 1
        assert db.session.query(Artifact).count() == 0
    assert stored_files(storage) == []


def test_signing_key_is_not_the_jwt_key(app, client, running, runtime_headers, storage):
    import base64
    import hmac

    answer = data(upload(client, running, runtime_headers(running)))
    params = parse_qs(urlsplit(answer["url"]).query)
    message = f"{answer['id']}:{params['expires'][0]}".encode()
    naive = hmac.new(app.config["JWT_SECRET_KEY"].encode(), message, hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(naive).rstrip(b"=").decode() != params["signature"][0]


# Ranges ------------------------------------------------------------------------------------


@pytest.fixture
def link(client, running, runtime_headers, storage):
    return local(data(upload(client, running, runtime_headers(running)))["url"])


SIZE = len(BODY)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
        ("bytes=-1", SIZE - 1, SIZE - 1),
        ("bytes=100-", 100, SIZE - 1),
        (f"bytes=4000-{SIZE + 500}", 4000, SIZE - 1),
        ("bytes=0-9,5-20", 0, 20),  # overlapping ranges merge
        ("bytes=10-19, 0-9", 0, 19),  # and so do adjacent ones, in any order
    ],
)
def test_single_ranges(client, link, header, start, end):
    answer = client.get(link, headers={"Range": header})
    assert answer.status_code == 206
    assert answer.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert answer.headers["Content-Length"] == str(end - start + 1)
    assert answer.get_data() == BODY[start : end + 1]


def test_ranges_past_the_end_and_unparsable(client, link):
    past = client.get(link, headers={"Range": f"bytes={SIZE}-"})
    assert_error(past, 416, "range_not_satisfiable")
    assert past.headers["Content-Range"] == f"bytes */{SIZE}"
    ignored = client.get(link, headers={"Range": "bytes=zz"})
    assert ignored.status_code == 200 and ignored.get_data() == BODY
    stale = client.get(link, headers={"Range": "bytes=0-0", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.get_data()) == SIZE
    head = client.head(link, headers={"Range": "bytes=10-19"})
    assert head.status_code == 206 and head.headers["Content-Length"] == "10"
    assert client.get(link, headers={"If-None-Match": head.headers["ETag"]}).status_code == 304


def test_multiple_ranges_answer_multipart(client, link):
    answer = client.get(link, headers={"Range": f"bytes=0-9,100-109,-5,{SIZE + 10}-"})
    assert answer.status_code == 206
    media_type, _, boundary = answer.headers["Content-Type"].partition("; boundary=")
    assert media_type == "multipart/byteranges"
    body = answer.get_data()
    assert len(body) == int(answer.headers["Content-Length"])
    parts = body.split(f"--{boundary}".encode())[1:-1]
    got = []
    for part in parts:
        head, _, content = part.partition(b"\r\n\r\n")
        content_range = [h for h in head.decode().split("\r\n") if h.startswith("Content-Range")]
        got.append((content_range[0], content[:-2]))
    assert got == [
        (f"Content-Range: bytes 0-9/{SIZE}", BODY[0:10]),
        (f"Content-Range: bytes 100-109/{SIZE}", BODY[100:110]),
        (f"Content-Range: bytes {SIZE - 5}-{SIZE - 1}/{SIZE}", BODY[-5:]),
    ]
    assert body.endswith(f"--{boundary}--\r\n".encode())


# Retention, quota, usage -------------------------------------------------------------------


def test_retention_with_a_controlled_clock(
    app, client, running, runtime_headers, storage, clock, auth, owner, script
):
    token = runtime_headers(running)
    default = data(upload(client, running, token, name="default.tif"))
    days = app.config["ARTIFACT_RETENTION_DAYS"]
    assert default["expires_at"].startswith((clock.now + timedelta(days=days)).date().isoformat())
    admin_headers = auth(owner)
    # The script's own retention (its owner may set it; within the server's maximum).
    assert_error(
        client.put(
            f"/api/v1/script/{script.id}/artifact-policy",
            json={"retention_days": 100_000},
            headers=admin_headers,
        ),
        400,
    )
    policy = data(
        client.put(
            f"/api/v1/script/{script.id}/artifact-policy",
            json={"retention_days": 2, "unknown": "ignored"},
            headers=admin_headers,
        )
    )
    assert policy["retention_days"] == 2 and policy["effective_retention_days"] == 2
    short = data(upload(client, running, token, name="short.tif"))

    clock.advance(days=2, seconds=1)
    with app.app_context():
        assert artifact_service.purge(clock.now) == 1
    # Its link ended with it (a link never outlives its artifact).
    assert_error(client.get(local(short["url"])), 403, "link_expired")
    assert client.get(local(default["url"])).status_code == 200
    names = [
        a["name"]
        for a in data(client.get(f"/api/v1/execution/{running.id}/artifacts", headers=token))
    ]
    assert names == ["default.tif"]

    clock.advance(days=days)
    # Expired and not yet purged: already refused, and no longer listed.
    assert_error(client.get(local(default["url"])), 403, "link_expired")
    assert data(client.get(f"/api/v1/execution/{running.id}/artifacts", headers=token)) == []
    with app.app_context():
        assert artifact_service.purge(clock.now) == 1
        assert db.session.query(Artifact).count() == 0
    assert stored_files(storage) == []


def test_the_purge_task_runs_from_beat(app):
    schedule = app.extensions["celery"].conf.beat_schedule
    assert schedule["purge-artifacts"]["task"] == "artifacts.purge"
    assert "artifacts.purge" in app.extensions["celery"].tasks


def test_quota_and_usage(
    app, client, running, runtime_headers, storage, monkeypatch, auth, owner, make_user
):
    token = runtime_headers(running)
    monkeypatch.setitem(app.config, "ARTIFACT_USER_QUOTA_BYTES", 10)
    assert data(upload(client, running, token, name="a", body=b"1234567"))
    over = assert_error(
        upload(client, running, token, name="b", body=b"1234"), 409, "storage_quota_exceeded"
    )
    assert over["quota_bytes"] == 10 and over["used_bytes"] == 7
    assert "quota" in over["detail"].lower()
    admin = make_user(role=Role.ADMIN)
    usage = data(client.get("/api/v1/artifacts/usage", headers=auth(admin)))
    assert usage == [
        {
            "user_id": str(owner.id),
            "email": owner.email,
            "artifacts": 1,
            "bytes": 7,
            "quota_bytes": 10,
        }
    ]
    assert_error(client.get("/api/v1/artifacts/usage", headers=auth(owner)), 403)


# The document ------------------------------------------------------------------------------


def test_openapi_describes_the_artifact_routes(client):
    document = client.get("/swagger.json").get_json()
    upload_op = document["paths"]["/api/v1/execution/{execution_id}/artifacts/{name}"]["put"]
    assert "application/octet-stream" in upload_op["requestBody"]["content"]
    assert {"400", "401", "404", "409", "413", "415"} <= set(upload_op["responses"])
    download = document["paths"]["/api/v1/artifact/{artifact_id}/{name}"]["get"]
    assert {"200", "206", "307", "400", "404", "416"} <= set(download["responses"])
    assert "security" not in download


# The runtime's helper ----------------------------------------------------------------------


def test_logger_upload_from_the_runtime(
    app, running, runtime_headers, storage, tmp_path, monkeypatch
):
    """gefapi's runtime (standard library only) against a real HTTP server on loopback."""
    import threading

    from werkzeug.serving import make_server

    from gefapi.runner import runtime
    from tests.conftest import free_port

    port = free_port()
    monkeypatch.setitem(app.config, "API_PUBLIC_URL", f"http://127.0.0.1:{port}")
    server = make_server("127.0.0.1", port, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = runtime_headers(running)["Authorization"].removeprefix("Bearer ")
        api = runtime.Api(f"http://127.0.0.1:{port}", str(running.id), token)
        logger = runtime.Logger(api, flush_seconds=60)
        produced = tmp_path / "land cover.tif"
        produced.write_bytes(BODY)
        artifact = logger.upload(produced, media_type="image/tiff")
        logger.close()
        assert artifact["name"] == "land_cover.tif" and artifact["media_type"] == "image/tiff"
        assert artifact["uri"]["etag"] == {
            "hash": hashlib.md5(BODY).hexdigest(),
            "type": "AWS MD5 Etag",
        }
        with urllib_request(artifact["url"]) as answer:
            assert answer.read() == BODY
    finally:
        server.shutdown()
        thread.join()


def urllib_request(url):
    import urllib.request

    return urllib.request.urlopen(url, timeout=30)
