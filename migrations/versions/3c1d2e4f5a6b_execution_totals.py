"""execution totals per user and status, kept by a trigger

Revision ID: 3c1d2e4f5a6b
Revises: f140b55d9104
Create Date: 2026-11-22 06:10:00

"""

import sqlalchemy as sa
from alembic import op

revision = "3c1d2e4f5a6b"
down_revision = "f140b55d9104"
branch_labels = None
depends_on = None

# Row-level, in the writing transaction: a total is exact whatever writes the rows (the
# services, an admin's SQL, a bulk load with triggers on). A change locks the rows of one user
# only, the old status's before the new one's; statuses only move forward (CONTRACT section 8),
# so two transactions cannot wait on each other's rows in a cycle.
COUNT_FUNCTION = """
CREATE FUNCTION count_executions() RETURNS trigger LANGUAGE plpgsql AS $$
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


def upgrade():
    op.create_table(
        "execution_totals",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_execution_totals_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "status", name=op.f("pk_execution_totals")),
    )
    op.execute(COUNT_FUNCTION)
    op.execute(
        "CREATE TRIGGER executions_count"
        " AFTER INSERT OR DELETE OR UPDATE OF deleted, user_id, status"
        " ON executions FOR EACH ROW EXECUTE FUNCTION count_executions()"
    )
    op.execute(
        "INSERT INTO execution_totals (user_id, status, total) SELECT user_id, status, count(*)"
        " FROM executions WHERE NOT deleted GROUP BY user_id, status"
    )


def downgrade():
    op.execute("DROP TRIGGER executions_count ON executions")
    op.execute("DROP FUNCTION count_executions()")
    op.drop_table("execution_totals")
