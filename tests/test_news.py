"""News: what the QGIS plugin reads (clients.md A.2 #14), the admin UI's CRUD, translations
with fallback, and markdown that can never carry HTML or script into `message_html`."""

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from gefapi.models import Role
from gefapi.services.news_service import render
from tests.helpers import DATE_RE, assert_error, data, database_state

PLUGIN_FIELDS = {
    "id",
    "title",
    "message",
    "message_html",
    "link_url",
    "link_text",
    "news_type",
    "priority",
    "publish_at",
    "expires_at",
}
PLUGIN_QUERY = "/api/v1/news?platform=qgis_plugin&version=2.2.4&lang=fr"


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).replace(tzinfo=None).isoformat()


@pytest.fixture
def admin(make_user, auth):
    return auth(make_user(Role.ADMIN))


@pytest.fixture
def post(client, admin):
    def create(**body) -> dict:
        body.setdefault("message", "Some **news**.")
        return data(client.post("/api/v1/admin/news", json=body, headers=admin))

    return create


@pytest.fixture
def feed(post):
    """One item of each kind the plugin's feed must show or hide."""
    day = timedelta(days=1)
    return {
        "translated": post(
            title="New release",
            message="Version **2.3** is out: [read more](https://trends.earth/news?lang={lang}).",
            link_url="https://trends.earth/release?token={token}",
            link_text="Download",
            news_type="release",
            priority=10,
            target_platforms=["qgis_plugin", "web"],
            translations={
                "fr": {"title": "Nouvelle version", "message": "La version **2.3** est sortie."}
            },
        ),
        "untranslated": post(title="Maintenance tonight", news_type="maintenance"),
        "expired": post(title="Expired", publish_at=iso(-3 * day), expires_at=iso(-day)),
        "future": post(title="Future", publish_at=iso(day)),
        "web_only": post(title="Web only", target_platforms="web"),
        "newer_plugins": post(title="For 3.x", min_version="3.0.0"),
        "older_plugins": post(title="For 1.x", max_version="1.9"),
        "inactive": post(title="Inactive", is_active=False),
        "admins_only": post(title="Admins only", target_roles=["ADMIN"]),
    }


def titles(response) -> list[str]:
    return [item["title"] for item in data(response)]


# The plugin ----------------------------------------------------------------------------------


def test_plugin_feed_for_platform_version_and_language(client, feed):
    """Anonymous, as the plugin asks once a day: expired, future, other-platform, other-version,
    inactive and role-targeted items are hidden; French where translated, else the default."""
    response = client.get(PLUGIN_QUERY, headers={"X-TE-Client": "type=qgis_plugin"})
    items = data(response)
    assert [item["title"] for item in items] == ["Nouvelle version", "Maintenance tonight"]
    translated, fallback = items
    assert set(translated) >= PLUGIN_FIELDS
    assert translated["id"] == feed["translated"]["id"]
    assert translated["message"] == "La version **2.3** est sortie."
    assert translated["message_html"] == "<p>La version <strong>2.3</strong> est sortie.</p>\n"
    assert translated["language"] == "fr"
    assert translated["link_url"] == "https://trends.earth/release?token={token}"
    assert translated["link_text"] == "Download"  # not translated: the default's
    assert (translated["news_type"], translated["priority"]) == ("release", 10)
    assert DATE_RE.match(translated["publish_at"]) and translated["expires_at"] is None
    assert fallback["title"] == "Maintenance tonight"
    assert fallback["language"] == "en"
    assert fallback["message_html"] == "<p>Some <strong>news</strong>.</p>\n"
    assert fallback["link_url"] is None and fallback["link_text"] is None


def test_language_variants_and_other_filters(client, auth, make_user, feed):
    assert titles(client.get("/api/v1/news?lang=fr_FR"))[0] == "Nouvelle version"
    assert titles(client.get("/api/v1/news?lang=es"))[0] == "New release"
    web = titles(client.get("/api/v1/news?platform=web&lang=en"))
    assert "Web only" in web and "New release" in web
    assert "Web only" not in titles(client.get("/api/v1/news?platform=app"))  # old name
    assert "For 3.x" in titles(client.get("/api/v1/news?platform=qgis_plugin&version=3.1"))
    assert "For 1.x" in titles(client.get("/api/v1/news?version=1.2.0"))
    every = titles(client.get("/api/v1/news?version=not-a-version"))  # filters nothing
    assert "For 3.x" in every and "For 1.x" in every
    admin_view = titles(client.get("/api/v1/news", headers=auth(make_user(Role.ADMIN))))
    assert "Admins only" in admin_view
    assert "Admins only" not in titles(client.get("/api/v1/news", headers=auth(make_user())))


def test_paging_and_sort(client, feed):
    body = client.get("/api/v1/news?platform=qgis_plugin&version=2.2.4&page=1&per_page=1")
    body = body.get_json()
    assert (len(body["data"]), body["page"], body["per_page"], body["total"]) == (1, 1, 1, 2)
    assert titles(client.get("/api/v1/news?sort=title&version=2.2.4&platform=qgis_plugin")) == [
        "Maintenance tonight",
        "New release",
    ]


def test_one_item(client, feed):
    item = data(client.get(f"/api/v1/news/{feed['translated']['id']}?lang=fr"))
    assert item["title"] == "Nouvelle version"
    for hidden in ("expired", "future", "inactive", "admins_only"):
        assert_error(client.get(f"/api/v1/news/{feed[hidden]['id']}"), 404, "news_not_found")
    assert_error(client.get("/api/v1/news/not-a-uuid"), 404)


@pytest.mark.parametrize(
    "query", ["lang=french!", "lang=" + "x" * 20, "per_page=101", "page=0", "sort=secret", "page=x"]
)
def test_bad_public_queries_are_400(client, query):
    assert_error(client.get(f"/api/v1/news?{query}"), 400, "validation_error")


# Administration ------------------------------------------------------------------------------


def test_admin_ui_crud(client, admin, feed):
    """The admin UI: list with include_inactive, create with comma-separated platforms and
    start/end dates, read for editing (fields at the top level), update with PUT, delete."""
    listed = data(client.get("/api/v1/admin/news?include_inactive=true", headers=admin))
    assert len(listed) == len(feed) and {"target_platforms", "is_active"} <= set(listed[0])
    body = {
        "title": "Webinar",
        "message": "Join us",
        "target_platforms": "qgis_plugin,web,api_ui",
        "target_roles": None,
        "news_type": "announcement",
        "priority": 0,
        "is_active": True,
        "start_date": "2020-01-01",
        "end_date": "2999-01-01",
        "certainPassword": "ignored",  # unknown fields are ignored
        "link_url": "",  # blank = not given
    }
    created = data(client.post("/api/v1/admin/news", json=body, headers=admin))
    assert created["target_platforms"] == ["qgis_plugin", "web", "api_ui"]
    assert created["target_roles"] == [] and created["link_url"] is None
    assert created["publish_at"] == "2020-01-01T00:00:00.000000"
    assert (created["start_date"], created["end_date"]) == ("2020-01-01", "2999-01-01")

    read = client.get(f"/api/v1/admin/news/{created['id']}", headers=admin).get_json()
    assert read["title"] == read["data"]["title"] == "Webinar"
    assert read["start_date"] == "2020-01-01"

    changed = data(
        client.put(
            f"/api/v1/admin/news/{created['id']}",
            json={**body, "title": "Webinar moved", "message": "Now on *Friday*"},
            headers=admin,
        )
    )
    assert changed["message_html"] == "<p>Now on <em>Friday</em></p>\n"
    patched = data(
        client.patch(f"/api/v1/admin/news/{created['id']}", json={"priority": 5}, headers=admin)
    )
    assert (patched["title"], patched["priority"]) == ("Webinar moved", 5)
    assert "Webinar moved" in titles(client.get("/api/v1/news?platform=api_ui"))

    assert (
        data(client.delete(f"/api/v1/admin/news/{created['id']}", headers=admin))["id"]
        == (created["id"])
    )
    assert_error(client.get(f"/api/v1/admin/news/{created['id']}", headers=admin), 404)
    assert_error(client.delete(f"/api/v1/admin/news/{created['id']}", headers=admin), 404)


def test_admin_list_filters(client, admin, feed):
    active = titles(client.get("/api/v1/admin/news?include_inactive=false", headers=admin))
    assert "Inactive" not in active and "Expired" in active
    current = titles(client.get("/api/v1/admin/news?include_expired=false", headers=admin))
    assert "Expired" not in current and "Inactive" in current
    page = client.get("/api/v1/admin/news?page=2&per_page=4", headers=admin).get_json()
    assert (len(page["data"]), page["total"]) == (4, len(feed))


def test_translations(client, admin, post):
    item = post(title="Hello", message="Hello world")
    url = f"/api/v1/admin/news/{item['id']}/translations"
    body = {
        "translations": {
            "es": {"title": "Hola", "message": "Hola *mundo*", "is_machine_translated": True},
            "pt-BR": {"title": "Olá", "message": "Olá mundo", "link_text": "Saiba mais"},
        }
    }
    saved = data(client.put(url, json=body, headers=admin))
    assert set(saved["translations"]) == {"es", "pt-br"}
    assert saved["translations"]["es"]["message_html"] == "<p>Hola <em>mundo</em></p>\n"
    assert titles(client.get("/api/v1/news?lang=pt-BR")) == ["Olá"]
    assert titles(client.get("/api/v1/news?lang=pt")) == ["Hello"]  # no pt of its own
    data(client.delete(f"{url}/es", headers=admin))
    assert titles(client.get("/api/v1/news?lang=es")) == ["Hello"]  # falls back
    assert_error(client.delete(f"{url}/es", headers=admin), 404, "translation_not_found")
    removed = data(client.put(url, json={"translations": {"pt-BR": None}}, headers=admin))
    assert removed["translations"] == {}
    own = {"translations": {"en": {"title": "x", "message": "y"}}}
    assert_error(client.put(url, json=own, headers=admin), 400)


def test_only_admins_manage_news(client, auth, make_user, post):
    item = post(title="Hello")
    user = auth(make_user())
    for method, path in (
        ("get", "/api/v1/admin/news"),
        ("post", "/api/v1/admin/news"),
        ("get", f"/api/v1/admin/news/{item['id']}"),
        ("put", f"/api/v1/admin/news/{item['id']}"),
        ("delete", f"/api/v1/admin/news/{item['id']}"),
        ("put", f"/api/v1/admin/news/{item['id']}/translations"),
    ):
        kwargs = {"json": {"title": "x", "message": "y", "translations": {}}}
        if method in ("get", "delete"):
            kwargs = {}
        assert_error(getattr(client, method)(path, headers=user, **kwargs), 403)
        assert_error(getattr(client, method)(path, **kwargs), 401)


# Hostile and bad input -----------------------------------------------------------------------


HOSTILE_MESSAGES = [
    "<script>alert(1)</script>",
    "Hi <img src=x onerror=alert(1)>",
    '<a href="https://x.org" onclick="steal()">x</a>',
    "<iframe src=https://evil.example></iframe>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click]( javascript:alert(1) )",
    "[click](java&#x0A;script:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD4=)",
    "<javascript:alert(1)>",
    "![img](javascript:alert(1))",
    "[ref][x]\n\n[x]: vbscript:msgbox(1)",
]


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x"},  # no message
        {"message": "x"},  # no title
        {"title": "", "message": "x"},
        {"title": 5, "message": "x"},
        {"title": "x", "message": ["x"]},
        {"title": "x", "message": "x" * 20_001},  # oversized markdown
        {"title": "x" * 256, "message": "x"},
        {"title": "x", "message": "x", "priority": "high"},
        {"title": "x", "message": "x", "is_active": "maybe"},
        {"title": "x", "message": "x", "news_type": "rumour"},
        {"title": "x", "message": "x", "target_platforms": 5},
        {"title": "x", "message": "x", "target_platforms": ["qgis_plugin", "tv"]},
        {"title": "x", "message": "x", "target_roles": ["GOD"]},
        {"title": "x", "message": "x", "publish_at": "yesterday"},
        {"title": "x", "message": "x", "expires_at": "2000-01-01"},  # before publish_at
        {"title": "x", "message": "x", "min_version": "banana"},
        {"title": "x", "message": "x", "min_version": "3.0", "max_version": "2.0"},
        {"title": "x", "message": "x", "language": "english!"},
        {"title": "x", "message": "x", "link_url": "javascript:alert(1)"},
        {"title": "x", "message": "x", "link_url": " JAVASCRIPT:alert(1)"},
        {"title": "x", "message": "x", "link_url": "data:text/html,<script>"},
        {"title": "x", "message": "x", "link_url": "https://x.org/\nSet-Cookie: a"},
        {"title": "<b onmouseover=alert(1)>x</b>", "message": "x"},
        {"title": "x", "message": "x", "link_text": "<script>x</script>"},
        {"title": "x", "message": "x", "translations": {"fr": {"title": "x"}}},
        {"title": "x", "message": "x", "translations": {"fr!": {"title": "x", "message": "y"}}},
        {"title": "x", "message": "x", "translations": {"fr": {"title": "x", "message": "<b>"}}},
        {"title": "x", "message": "x", "translations": ["fr"]},
        *({"title": "x", "message": message} for message in HOSTILE_MESSAGES),
    ],
)
def test_bad_news_is_400_and_changes_nothing(app, client, admin, post, body):
    """On create, and (but for a missing title or message) on update too."""
    item = post(title="Existing")
    before = database_state(app)
    assert_error(client.post("/api/v1/admin/news", json=body, headers=admin), 400)
    update = {key: value for key, value in body.items() if value not in ("x", "")}
    if update:
        response = client.patch(f"/api/v1/admin/news/{item['id']}", json=update, headers=admin)
        assert_error(response, 400)
    assert database_state(app) == before


def test_raw_html_is_refused_with_the_reason(client, admin):
    response = client.post(
        "/api/v1/admin/news", json={"title": "x", "message": "<b>bold</b>"}, headers=admin
    )
    assert assert_error(response, 400)["errors"]["message"] == [
        "Raw HTML is not allowed: write markdown"
    ]


def test_malformed_bodies(client, admin):
    assert_error(
        client.post(
            "/api/v1/admin/news",
            data="{not json",
            headers={**admin, "Content-Type": "application/json"},
        ),
        400,
    )
    assert_error(client.post("/api/v1/admin/news", data="x", headers=admin), 415)
    assert_error(client.post("/api/v1/admin/news", json=["x"], headers=admin), 400)


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)


@pytest.mark.parametrize("markdown", HOSTILE_MESSAGES)
def test_rendering_never_emits_raw_html_or_script_links(markdown):
    """Defense in depth: whatever reaches the renderer, its HTML holds no element or attribute
    outside the allow-list, no event handler and no link but http(s) or mailto."""
    parsed = _Elements()
    parsed.feed(render(markdown))
    assert set(parsed.tags) <= {"p", "a", "img", "strong", "em"}
    for name, value in parsed.attributes:
        assert name in ("href", "src", "alt", "title", "rel"), name
        if name in ("href", "src"):
            assert (value or "").startswith(("http://", "https://", "mailto:")), value


def test_good_markdown_renders(client, post):
    item = post(
        title="Links",
        message="# Title\n\n- [Docs](https://docs.trends.earth)\n- `code`\n\n> quote\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |",
    )
    html = item["message_html"]
    assert '<a href="https://docs.trends.earth" rel="noopener noreferrer nofollow">Docs</a>' in html
    for tag in ("<h1>", "<ul>", "<code>", "<blockquote>", "<table>", "<td>1</td>"):
        assert tag in html


def test_documented(client):
    spec = client.get("/swagger.json").get_json()
    for path, methods in {
        "/api/v1/news": ["get"],
        "/api/v1/news/{news_id}": ["get"],
        "/api/v1/admin/news": ["get", "post"],
        "/api/v1/admin/news/{news_id}": ["get", "put", "patch", "delete"],
        "/api/v1/admin/news/{news_id}/translations": ["get", "put"],
    }.items():
        for method in methods:
            assert "400" in spec["paths"][path][method]["responses"], (path, method)
    body = spec["paths"]["/api/v1/admin/news"]["post"]["requestBody"]["content"]
    schema = spec["components"]["schemas"][
        body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    ]
    assert set(schema["required"]) == {"title", "message"}
