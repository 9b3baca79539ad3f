"""/api/docs in a real browser with no network beyond loopback: Swagger UI comes from the
package's own static files, renders every operation, and its Authorize button works.

Headless Chromium (Debian's `chromium`, which `.ci/run` installs) driven by Playwright. Skipped
where either is missing, except under CI, where that is a failure.
"""

import os
import shutil
import threading

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Every name but 127.0.0.1 fails to resolve: a CDN address would leave the page blank.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def _browser_missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return "no chromium (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright (requirements-dev.txt)"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run installs it")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def live_url(app):
    from werkzeug.serving import make_server

    from tests.conftest import free_port

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join()


def open_docs(browser, live_url):
    """The docs page, with every request recorded and any request off this server refused."""
    page = browser.new_page(viewport={"width": 1280, "height": 2000})
    page.set_default_timeout(120_000)  # a loaded machine: generous, never asserted on
    outside = []

    def guard(route):
        if route.request.url.startswith(live_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(f"{live_url}/api/docs")
    page.wait_for_selector(".opblock")
    return page, outside


def operations(document: dict) -> list[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    ]


def test_docs_render_every_operation_offline(browser, live_url, client, tmp_path):
    page, outside = open_docs(browser, live_url)
    shot = tmp_path / "api-docs.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one

    assert outside == []  # nothing but this server: no CDN
    document = client.get("/swagger.json").get_json()
    expected = operations(document)
    assert page.locator(".opblock").count() == len(expected)
    rendered = {
        (
            page.locator(".opblock-summary-method").nth(i).inner_text().strip(),
            page.locator(".opblock-summary-path").nth(i).get_attribute("data-path"),
        )
        for i in range(len(expected))
    }
    assert rendered == set(expected)
    assert page.locator(".errors-wrapper").count() == 0  # Swagger UI found the document valid
    assert page.locator("button.authorize").count() == 1
    # Publishing shows its multipart body in the page.
    publish = page.locator(".opblock-post:has([data-path='/api/v1/script'])").first
    publish.locator(".opblock-summary").click()
    publish.locator(".opblock-body").wait_for()
    assert "multipart/form-data" in publish.inner_text()
    page.close()


def test_authorize_button_sends_the_bearer_token(browser, live_url, make_user, login, tmp_path):
    user = make_user(email="docs-reader@example.org")
    token = login(user)["access_token"]
    page, outside = open_docs(browser, live_url)

    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.wait_for()
    bearer = dialog.locator(".auth-container", has_text="bearerAuth")
    bearer.locator("input").fill(token)
    bearer.locator("button.authorize").click()
    dialog.locator("button.btn-done").first.click()

    me = page.locator(".opblock-get:has([data-path='/api/v1/user/me'])").first
    me.locator(".opblock-summary").click()
    me.locator("button.try-out__btn").click()
    me.locator("button.execute").click()
    status = me.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    page.screenshot(path=str(tmp_path / "api-docs-authorized.png"))
    assert status.inner_text().strip() == "200"
    assert "docs-reader@example.org" in me.locator(".live-responses-table").inner_text()
    assert outside == []
    page.close()
