"""Every model, imported so Alembic and the shell see them."""

from gefapi.models.artifact import Artifact, ArtifactPolicy
from gefapi.models.boundary import RELEASE_TYPES, Boundary, BoundaryUnit, ReleaseType
from gefapi.models.credentials import (
    GeeCredential,
    GeeCredentialsType,
    GeeOAuthState,
    OpenEOCredential,
)
from gefapi.models.execution import (
    Execution,
    ExecutionLog,
    ExecutionStatus,
    ExecutionTotal,
    ScriptExecutionTotal,
    StatusLog,
)
from gefapi.models.login import FailedLogins
from gefapi.models.news import NewsItem, NewsTranslation, NewsType, Platform
from gefapi.models.script import Script, ScriptBuild, ScriptLog, ScriptStatus
from gefapi.models.token import OneTimeToken, OneTimeTokenKind, RefreshToken, RevokedAccessToken
from gefapi.models.user import PROFILE_FIELDS, Role, User, UserClient

__all__ = [
    "PROFILE_FIELDS",
    "RELEASE_TYPES",
    "Artifact",
    "ArtifactPolicy",
    "Boundary",
    "BoundaryUnit",
    "Execution",
    "ExecutionLog",
    "ExecutionStatus",
    "ExecutionTotal",
    "FailedLogins",
    "GeeCredential",
    "GeeCredentialsType",
    "GeeOAuthState",
    "NewsItem",
    "NewsTranslation",
    "NewsType",
    "OneTimeToken",
    "OneTimeTokenKind",
    "OpenEOCredential",
    "Platform",
    "RefreshToken",
    "ReleaseType",
    "RevokedAccessToken",
    "Role",
    "Script",
    "ScriptBuild",
    "ScriptExecutionTotal",
    "ScriptLog",
    "ScriptStatus",
    "StatusLog",
    "User",
    "UserClient",
]

# Engine probes and webhooks (issue 17), imported for their tables.
from gefapi.models import probe as probe
from gefapi.models import webhook as webhook
