"""/api/v1/news (anyone; a token only adds the items meant for the caller's role) and
/api/v1/admin/news (ADMIN)."""

import uuid

from flask.views import MethodView
from flask_jwt_extended import current_user

from gefapi.auth import caller, login_required, optional_login, require_role
from gefapi.models import Role
from gefapi.routes import Blueprint
from gefapi.schemas.common import envelope
from gefapi.schemas.news import (
    AdminNewsListArgs,
    NewsAdminSchema,
    NewsCreateBody,
    NewsLanguageArgs,
    NewsListArgs,
    NewsSchema,
    NewsTranslationsBody,
    NewsUpdateBody,
)
from gefapi.services import news_service

blp = Blueprint("news", __name__, url_prefix="/api/v1", description="News shown in the clients")


def _admin_dump(item) -> dict:
    return NewsAdminSchema.for_request().dump(item)


@blp.route("/news")
class News(MethodView):
    @optional_login
    @blp.arguments(NewsListArgs, location="query")
    @blp.documents(NewsSchema, many=True, paginated=True)
    def get(self, args):
        """News to show now, for a platform, client version and language"""
        page = news_service.public_list(by=caller(), **args)
        return envelope(NewsSchema.for_request(many=True).dump(page.items), **page.meta())


@blp.route("/news/<uuid:news_id>")
class NewsById(MethodView):
    @optional_login
    @blp.arguments(NewsLanguageArgs, location="query")
    @blp.documents(NewsSchema)
    def get(self, args, news_id: uuid.UUID):
        """One news item that is shown now"""
        view = news_service.public_get(news_id, by=caller(), lang=args.get("lang"))
        return envelope(NewsSchema.for_request().dump(view))


@blp.route("/admin/news")
class AdminNews(MethodView):
    @login_required
    @blp.arguments(AdminNewsListArgs, location="query")
    @blp.documents(NewsAdminSchema, many=True, paginated=True)
    def get(self, args):
        """Every news item, inactive and expired ones too (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        page = news_service.admin_list(**args)
        schema = NewsAdminSchema.for_request(many=True)
        return envelope(schema.dump(page.items), **page.meta())

    @login_required
    @blp.arguments(NewsCreateBody)
    @blp.documents(NewsAdminSchema)
    def post(self, body):
        """Publish a news item, with translations (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        return envelope(_admin_dump(news_service.create(body, by=current_user)))


@blp.route("/admin/news/<uuid:news_id>")
class AdminNewsById(MethodView):
    @login_required
    @blp.documents(NewsAdminSchema)
    def get(self, news_id: uuid.UUID):
        """One news item (ADMIN). Its fields are also at the top level, where the admin UI's
        edit form reads them."""
        require_role(current_user, Role.ADMIN)
        item = _admin_dump(news_service.get(news_id))
        return {**item, "data": item}

    @login_required
    @blp.arguments(NewsUpdateBody)
    @blp.documents(NewsAdminSchema)
    def put(self, body, news_id: uuid.UUID):
        """Change a news item: the fields given (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        return envelope(_admin_dump(news_service.update(news_id, body)))

    @login_required
    @blp.arguments(NewsUpdateBody)
    @blp.documents(NewsAdminSchema)
    def patch(self, body, news_id: uuid.UUID):
        """Change a news item: the fields given (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        return envelope(_admin_dump(news_service.update(news_id, body)))

    @login_required
    @blp.documents(NewsAdminSchema)
    def delete(self, news_id: uuid.UUID):
        """Delete a news item and its translations (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        return envelope(_admin_dump(news_service.delete(news_id)))


@blp.route("/admin/news/<uuid:news_id>/translations")
class AdminNewsTranslations(MethodView):
    @login_required
    @blp.documents(NewsAdminSchema)
    def get(self, news_id: uuid.UUID):
        """A news item with its translations (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        return envelope(_admin_dump(news_service.get(news_id)))

    @login_required
    @blp.arguments(NewsTranslationsBody)
    @blp.documents(NewsAdminSchema)
    def put(self, body, news_id: uuid.UUID):
        """Set translations: language -> {title, message, link_text}, null removes (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        item = news_service.set_translations(news_id, body["translations"])
        return envelope(_admin_dump(item))


@blp.route("/admin/news/<uuid:news_id>/translations/<lang>")
class AdminNewsTranslation(MethodView):
    @login_required
    @blp.documents(NewsAdminSchema)
    def delete(self, news_id: uuid.UUID, lang: str):
        """Remove one translation (ADMIN)"""
        require_role(current_user, Role.ADMIN)
        return envelope(_admin_dump(news_service.delete_translation(news_id, lang)))
