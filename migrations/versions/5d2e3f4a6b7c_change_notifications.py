"""change notifications for the per-process caches (gefapi/cache.py)

Revision ID: 5d2e3f4a6b7c
Revises: 3c1d2e4f5a6b
Create Date: 2026-11-22 09:00:00

"""

from alembic import op

revision = "5d2e3f4a6b7c"
down_revision = "3c1d2e4f5a6b"
branch_labels = None
depends_on = None

# Sent at commit, whoever wrote: a service, a Celery task, an admin's SQL. PostgreSQL sends one
# notification per distinct tag in a transaction, however many rows carry it.
NOTIFY_FUNCTION = """
CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' OR TG_TABLE_NAME = 'scripts' THEN
        PERFORM pg_notify('gefapi_changes', '*');
    ELSIF TG_TABLE_NAME = 'executions' THEN
        IF TG_OP <> 'DELETE' THEN
            PERFORM pg_notify('gefapi_changes', 'user:' || NEW.user_id);
        END IF;
        IF TG_OP <> 'INSERT' THEN
            PERFORM pg_notify('gefapi_changes', 'user:' || OLD.user_id);
        END IF;
    ELSIF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('gefapi_changes', 'user:' || OLD.id);
    ELSE
        PERFORM pg_notify('gefapi_changes', 'token:' || NEW.jti);
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = {
    "executions": "INSERT OR UPDATE OR DELETE",
    "users": "UPDATE OR DELETE",
    "revoked_access_tokens": "INSERT",
    "scripts": "UPDATE OR DELETE",
}


def upgrade():
    op.execute(NOTIFY_FUNCTION)
    for table, events in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER {events} ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION notify_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_notify_truncate AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION notify_change()"
        )


def downgrade():
    for table in TRIGGERS:
        op.execute(f"DROP TRIGGER {table}_notify_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_notify ON {table}")
    op.execute("DROP FUNCTION notify_change()")
