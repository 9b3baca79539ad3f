"""execution totals per script, user and status, kept by the counting trigger

Revision ID: 6e4f5a6b7c8d
Revises: 5d2e3f4a6b7c
Create Date: 2026-11-22 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "6e4f5a6b7c8d"
down_revision = "5d2e3f4a6b7c"
branch_labels = None
depends_on = None

# One function keeps both tables: a change locks rows of one user (and script) only, the old
# status's before the new one's, as before (migration 3c1d2e4f5a6b explains why that cannot
# deadlock).
COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION count_executions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.deleted = NEW.deleted AND OLD.user_id = NEW.user_id
            AND OLD.status = NEW.status AND OLD.script_id = NEW.script_id THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT OLD.deleted THEN
        UPDATE execution_totals SET total = total - 1
        WHERE user_id = OLD.user_id AND status = OLD.status;
        UPDATE script_execution_totals SET total = total - 1
        WHERE script_id = OLD.script_id AND user_id = OLD.user_id AND status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT NEW.deleted THEN
        INSERT INTO execution_totals (user_id, status, total) VALUES (NEW.user_id, NEW.status, 1)
        ON CONFLICT (user_id, status) DO UPDATE SET total = execution_totals.total + 1;
        INSERT INTO script_execution_totals (script_id, user_id, status, total)
        VALUES (NEW.script_id, NEW.user_id, NEW.status, 1)
        ON CONFLICT (script_id, user_id, status)
        DO UPDATE SET total = script_execution_totals.total + 1;
    END IF;
    RETURN NULL;
END
$$
"""

PREVIOUS_FUNCTION = """
CREATE OR REPLACE FUNCTION count_executions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.deleted = NEW.deleted AND OLD.user_id = NEW.user_id
            AND OLD.status = NEW.status THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT OLD.deleted THEN
        UPDATE execution_totals SET total = total - 1
        WHERE user_id = OLD.user_id AND status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT NEW.deleted THEN
        INSERT INTO execution_totals (user_id, status, total) VALUES (NEW.user_id, NEW.status, 1)
        ON CONFLICT (user_id, status) DO UPDATE SET total = execution_totals.total + 1;
    END IF;
    RETURN NULL;
END
$$
"""


def recreate_trigger(columns: str) -> None:
    op.execute("DROP TRIGGER executions_count ON executions")
    op.execute(
        "CREATE TRIGGER executions_count"
        f" AFTER INSERT OR DELETE OR UPDATE OF {columns}"
        " ON executions FOR EACH ROW EXECUTE FUNCTION count_executions()"
    )


def upgrade():
    op.create_table(
        "script_execution_totals",
        sa.Column("script_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["script_id"],
            ["scripts.id"],
            name=op.f("fk_script_execution_totals_script_id_scripts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_script_execution_totals_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "script_id", "user_id", "status", name=op.f("pk_script_execution_totals")
        ),
    )
    op.execute(COUNT_FUNCTION)
    recreate_trigger("deleted, user_id, status, script_id")
    op.execute(
        "INSERT INTO script_execution_totals (script_id, user_id, status, total)"
        " SELECT script_id, user_id, status, count(*) FROM executions WHERE NOT deleted"
        " GROUP BY script_id, user_id, status"
    )


def downgrade():
    recreate_trigger("deleted, user_id, status")
    op.execute(PREVIOUS_FUNCTION)
    op.drop_table("script_execution_totals")
