"""News for the clients: who sees which item, in which language, and how markdown becomes HTML.

Markdown is the only markup. A message holding raw HTML, or a link to anything but an absolute
http(s) or mailto address, is refused (400). What is stored and served as `message_html` is
rendered with raw HTML disabled and then sanitized against an allow-list, so even text that
slipped past the checks cannot carry a script or a `javascript:` link.
"""

import re
import uuid
from urllib.parse import unquote, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.normalize_url import normalizeLink
from packaging.version import InvalidVersion, Version
from sqlalchemy import any_, func, or_, select

from gefapi.errors import NotFound, ValidationError
from gefapi.extensions import db
from gefapi.models import NewsItem, NewsTranslation, User
from gefapi.models.base import utcnow
from gefapi.schemas.common import validation_error
from gefapi.schemas.news import PLATFORM_ALIASES
from gefapi.services.listing import Page, paginate, parse_sort

LINK_SCHEMES = {"http", "https", "mailto"}
SCHEME_RE = re.compile(r"^([a-z][a-z0-9+.\-]*):")
TAG_RE = re.compile(r"<\s*[A-Za-z!/?]")
MAX_CANDIDATES = 1000
ALLOWED_TAGS = {
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "s",
    "del", "code", "pre", "blockquote", "ul", "ol", "li", "img",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
SORTABLE = {
    "priority": NewsItem.priority,
    "publish_at": NewsItem.publish_at,
    "expires_at": NewsItem.expires_at,
    "created_at": NewsItem.created_at,
    "updated_at": NewsItem.updated_at,
    "title": NewsItem.title,
    "news_type": NewsItem.news_type,
}
FIELDS = (
    "title",
    "message",
    "language",
    "link_url",
    "link_text",
    "news_type",
    "priority",
    "target_platforms",
    "target_roles",
    "min_version",
    "max_version",
    "publish_at",
    "expires_at",
    "is_active",
)


# Markdown ------------------------------------------------------------------------------------


def _keep_placeholders(url: str) -> str:
    """Links may hold the plugin's `{token}` / `{lang}` placeholders: keep their braces."""
    return normalizeLink(url).replace("%7B", "{").replace("%7D", "}")


_renderer = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_renderer.normalizeLink = _keep_placeholders
# The checker sees what an author wrote: raw HTML as HTML, every link whatever its scheme.
_checker = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_checker.validateLink = lambda url: True


def render(markdown: str) -> str:
    html = _renderer.render(markdown)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=LINK_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
    )


def markdown_problems(markdown: str) -> list[str]:
    """Why a message cannot be published: raw HTML, or links that are not web or mail."""
    problems = []
    tokens = list(_checker.parse(markdown))
    while tokens:
        token = tokens.pop()
        tokens.extend(token.children or [])
        if token.type in ("html_block", "html_inline"):
            problems.append("Raw HTML is not allowed: write markdown")
        for attribute in ("href", "src"):
            url = token.attrGet(attribute) if token.attrs else None
            if url is not None and not safe_url(str(url)):
                problems.append(f"Links must be absolute http(s) or mailto, not {url[:40]!r}")
    return sorted(set(problems))


def safe_url(url: str) -> bool:
    """An absolute http(s) or mailto URL, however its scheme is disguised."""
    compact = "".join(char for char in unquote(url) if ord(char) > 32).lower()
    match = SCHEME_RE.match(compact)
    return match is not None and match.group(1) in LINK_SCHEMES


def _check_link_url(url: str | None, errors: dict) -> None:
    if url is None:
        return
    if any(ord(char) < 32 for char in url) or not url.strip():
        errors.setdefault("link_url", []).append("Not a valid URL")
        return
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme not in LINK_SCHEMES or not safe_url(url):
        errors.setdefault("link_url", []).append("Must be an http(s) or mailto URL")


def _check_plain(field: str, text: str | None, errors: dict) -> None:
    if text is not None and TAG_RE.search(text):
        errors.setdefault(field, []).append("HTML is not allowed here: plain text only")


def _check_message(field: str, markdown: str | None, errors: dict) -> None:
    if markdown is not None:
        for problem in markdown_problems(markdown):
            errors.setdefault(field, []).append(problem)


def _check_version(field: str, value: str | None, errors: dict) -> None:
    if value is None:
        return
    try:
        Version(value)
    except InvalidVersion:
        errors.setdefault(field, []).append("Not a version number (e.g. 2.1.0)")


# Reading -------------------------------------------------------------------------------------


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None  # an unparsable client version filters nothing, as before


def _platform(text: str | None) -> str | None:
    return PLATFORM_ALIASES.get(text.strip().lower(), text.strip().lower()) if text else None


def _for_version(item: NewsItem, version: Version | None) -> bool:
    if version is None:
        return True
    low, high = _version(item.min_version), _version(item.max_version)
    return (low is None or version >= low) and (high is None or version <= high)


def _visible_clause(*, role: str | None, platform: str | None, now):
    clauses = [
        NewsItem.is_active,
        NewsItem.publish_at <= now,
        or_(NewsItem.expires_at.is_(None), NewsItem.expires_at > now),
    ]
    roles = [func.cardinality(NewsItem.target_roles) == 0]
    if role:
        roles.append(any_(NewsItem.target_roles) == str(role))
    clauses.append(or_(*roles))
    if platform:
        clauses.append(
            or_(
                func.cardinality(NewsItem.target_platforms) == 0,
                any_(NewsItem.target_platforms) == platform,
            )
        )
    return clauses


def localized(item: NewsItem, language: str | None) -> dict:
    """The item's fields, with title, message and link text in `language` when translated."""
    view = {
        name: getattr(item, name)
        for name in (
            "id", "title", "message", "message_html", "language", "link_url", "link_text",
            "news_type", "priority", "publish_at", "expires_at", "created_at", "updated_at",
        )
    }  # fmt: skip
    translation = item.translation(language)
    if translation is not None:
        view.update(
            title=translation.title,
            message=translation.message,
            message_html=translation.message_html,
            language=translation.language,
            link_text=translation.link_text or item.link_text,
        )
    return view


def public_list(
    *,
    by: User | None,
    platform: str | None = None,
    version: str | None = None,
    lang: str | None = None,
    sort: str | None = None,
    page: int | None = None,
    per_page: int | None = None,
) -> Page:
    """What a client may show now: active, inside its publish window, for its platform,
    version and role, newest and most important first."""
    order = parse_sort(sort, SORTABLE) or [NewsItem.priority.desc(), NewsItem.publish_at.desc()]
    query = (
        select(NewsItem)
        .where(*_visible_clause(role=by and by.role, platform=_platform(platform), now=utcnow()))
        .order_by(*order, NewsItem.id)
        .limit(MAX_CANDIDATES)
    )
    wanted = _version(version)
    items = [item for item in db.session.scalars(query) if _for_version(item, wanted)]
    views = [localized(item, lang) for item in items]
    if page is None and per_page is None:
        return Page(items=views)
    page, per_page = page or 1, per_page or 20
    start = (page - 1) * per_page
    return Page(
        items=views[start : start + per_page], page=page, per_page=per_page, total=len(views)
    )


def public_get(news_id: uuid.UUID, *, by: User | None, lang: str | None = None) -> dict:
    visible = _visible_clause(role=by and by.role, platform=None, now=utcnow())
    item = db.session.scalar(select(NewsItem).where(NewsItem.id == news_id, *visible))
    if item is None:
        raise _not_found(news_id)
    return localized(item, lang)


def admin_list(
    *,
    platform: str | None = None,
    include_inactive: bool = True,
    include_expired: bool = True,
    sort: str | None = None,
    page: int | None = None,
    per_page: int | None = None,
) -> Page:
    order = parse_sort(sort, SORTABLE) or [NewsItem.created_at.desc()]
    query = select(NewsItem).order_by(*order, NewsItem.id)
    if not include_inactive:
        query = query.where(NewsItem.is_active)
    if not include_expired:
        query = query.where(or_(NewsItem.expires_at.is_(None), NewsItem.expires_at > utcnow()))
    platform = _platform(platform)
    if platform:
        query = query.where(
            or_(
                func.cardinality(NewsItem.target_platforms) == 0,
                any_(NewsItem.target_platforms) == platform,
            )
        )
    return paginate(query, page=page, per_page=per_page, cap=MAX_CANDIDATES)


def get(news_id: uuid.UUID, *, for_update: bool = False) -> NewsItem:
    query = select(NewsItem).where(NewsItem.id == news_id)
    if for_update:
        query = query.with_for_update()
    item = db.session.scalar(query)
    if item is None:
        raise _not_found(news_id)
    return item


def _not_found(news_id) -> NotFound:
    return NotFound(f"News item {news_id} not found", error_code="news_not_found")


# Writing -------------------------------------------------------------------------------------


def _checked(body: dict, item: NewsItem | None) -> dict:
    """The body's fields after every rule; a 400 naming each problem otherwise."""
    errors: dict[str, list[str]] = {}
    _check_plain("title", body.get("title"), errors)
    _check_plain("link_text", body.get("link_text"), errors)
    _check_message("message", body.get("message"), errors)
    _check_link_url(body.get("link_url"), errors)
    _check_version("min_version", body.get("min_version"), errors)
    _check_version("max_version", body.get("max_version"), errors)
    low = _version(body.get("min_version", item and item.min_version))
    high = _version(body.get("max_version", item and item.max_version))
    if low and high and low > high and not errors.get("max_version"):
        errors.setdefault("max_version", []).append("Lower than min_version")
    publish_at = body.get("publish_at") or (item.publish_at if item else utcnow())
    expires_at = body.get("expires_at", item.expires_at if item else None)
    if publish_at and expires_at and expires_at <= publish_at:
        errors.setdefault("expires_at", []).append("Must be after publish_at")
    for language, translation in (body.get("translations") or {}).items():
        if translation is None:
            continue
        key = f"translations.{language}"
        _check_plain(key, translation.get("title"), errors)
        _check_plain(key, translation.get("link_text"), errors)
        _check_message(key, translation.get("message"), errors)
    if errors:
        raise ValidationError("Invalid news item", errors=errors)
    return body


def _language_key(language: str) -> str:
    return language.replace("_", "-").lower()


def _apply(item: NewsItem, body: dict) -> None:
    for name in FIELDS:
        if name not in body:
            continue
        value = body[name]
        if name == "language":
            value = _language_key(value)
        if name == "publish_at" and value is None:
            continue
        if name in ("target_platforms", "target_roles"):
            value = value or []  # null: every platform / role
        setattr(item, name, value)
    if "message" in body:
        item.message_html = render(item.message)
    translations = body.get("translations") or {}
    by_language = {t.language: t for t in item.translations}
    for language, translation in translations.items():
        key = _language_key(language)
        existing = by_language.get(key)
        if translation is None:
            if existing is not None:
                item.translations.remove(existing)
            continue
        if existing is None:
            existing = NewsTranslation(language=key)
            item.translations.append(existing)
        existing.title = translation["title"]
        existing.message = translation["message"]
        existing.message_html = render(translation["message"])
        existing.link_text = translation.get("link_text")
    if item.language in {t.language for t in item.translations}:
        raise validation_error(
            "translations", f"{item.language} is the item's own language, not a translation"
        )


def create(body: dict, *, by: User) -> NewsItem:
    body = _checked(body, None)
    item = NewsItem(created_by_id=by.id, language="en", target_platforms=[], target_roles=[])
    _apply(item, body)
    db.session.add(item)
    db.session.commit()
    return item


def update(news_id: uuid.UUID, body: dict) -> NewsItem:
    item = get(news_id, for_update=True)
    try:
        body = _checked(body, item)
        _apply(item, body)
    except ValidationError:
        db.session.rollback()
        raise
    db.session.commit()
    return item


def set_translations(news_id: uuid.UUID, translations: dict) -> NewsItem:
    return update(news_id, {"translations": translations})


def delete_translation(news_id: uuid.UUID, language: str) -> NewsItem:
    item = get(news_id, for_update=True)
    key = _language_key(language)
    translation = next((t for t in item.translations if t.language == key), None)
    if translation is None:
        db.session.rollback()
        raise NotFound(f"No {language} translation", error_code="translation_not_found")
    item.translations.remove(translation)
    db.session.commit()
    return item


def delete(news_id: uuid.UUID) -> NewsItem:
    item = get(news_id, for_update=True)
    db.session.delete(item)
    db.session.flush()
    db.session.expunge(item)
    db.session.commit()
    return item
