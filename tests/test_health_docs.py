from tests.helpers import assert_error


def test_health_reports_database_and_broker(client):
    body = client.get("/api-health").get_json()
    assert body["database"] == "ok" and body["broker"] == "ok" and body["status"] == "ok"


def test_health_is_503_when_the_broker_is_down(client, app):
    celery = app.extensions["celery"]
    original = celery.conf.broker_url
    celery.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/api-health")
    finally:
        celery.conf.broker_url = original
    assert response.status_code == 503
    assert response.get_json()["broker"] == "unavailable"
    assert response.get_json()["database"] == "ok"


def test_openapi_document_lists_the_endpoints(client):
    spec = client.get("/swagger.json").get_json()
    assert spec["openapi"].startswith("3.")
    for path in ("/auth", "/auth/refresh", "/api/v1/user", "/api/v1/user/me", "/api/v1/email"):
        assert path in spec["paths"], path
    login = spec["paths"]["/auth"]["post"]["requestBody"]["content"]["application/json"]
    assert login["schema"]["$ref"] == "#/components/schemas/Login"
    assert set(spec["components"]["schemas"]["Login"]["required"]) == {"email", "password"}


def test_docs_page(client):
    response = client.get("/api/docs")
    assert response.status_code == 200 and b"swagger" in response.data.lower()


def test_flask_errors_use_the_contract_shape(client):
    assert_error(client.get("/no/such/thing"), 404)
    response = client.put("/auth", json={})
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_security_headers(client):
    response = client.get("/api-health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_dependency_failures_are_503_without_internals(app):
    import sqlalchemy.exc

    from gefapi.errors import handle_unexpected

    with app.test_request_context():
        exc = sqlalchemy.exc.OperationalError("SELECT secret", {}, Exception("connection refused"))
        response = handle_unexpected(exc)
        assert response.status_code == 503
        assert "secret" not in response.get_data(as_text=True)
        response = handle_unexpected(KeyError("internal detail"))
        assert response.status_code == 500
        assert "internal detail" not in response.get_data(as_text=True)
