"""What both kinds of per-user credentials share: the execution environment and key rotation."""

from gefapi.extensions import db
from gefapi.models import Execution, User
from gefapi.services import gee_credentials_service, openeo_credentials_service


def apply_execution_env(env: dict[str, str], execution: Execution) -> None:
    """Add the owner's credentials to an execution's environment. Their own Earth Engine
    credentials replace whatever server-level Earth Engine setup `env` holds (service account,
    SKIP_GEE_INIT): gefcore's entrypoint would otherwise pick or skip the wrong one."""
    gee = gee_credentials_service.execution_env(execution.user_id)
    if gee:
        for name in gee_credentials_service.SERVER_GEE_ENV:
            env.pop(name, None)
        env.update(gee)
    env.update(openeo_credentials_service.execution_env(execution.user_id))


def forget(user: User) -> None:
    """Every stored credential of a user whose account is being deleted. No commit."""
    gee_credentials_service.forget(user)
    openeo_credentials_service.forget(user)


def reencrypt_all() -> dict[str, int]:
    """Every stored secret re-encrypted under the first configured key, in one transaction."""
    gee, gee_unreadable = gee_credentials_service.reencrypt_all()
    openeo, openeo_unreadable = openeo_credentials_service.reencrypt_all()
    db.session.commit()
    return {
        "reencrypted": gee + openeo,
        "unreadable": gee_unreadable + openeo_unreadable,
    }
