"""A metric a plan does not name is no longer unlimited and free: it gives none of it
(consumes, reservations and checks of it are refused; usage reported of it is counted and
charges nothing). Unlimited is said explicitly, with no included quantity.

So that nothing an org has today changes, every existing version of every plan names each
metric it left out as unlimited, free and soft: exactly what leaving it out gave. Plans
made or changed from here give none of a metric they leave out, and so do existing plans
of a metric defined from here.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().execute(
        sa.text(
            "INSERT INTO plan_metrics (plan_slug, version, metric, included_quantity, "
            "overage_unit_price, overage_unit_size, enforcement, grace_percent, "
            "grace_period_seconds) "
            "SELECT v.plan_slug, v.version, m.key, NULL, 0, 1, 'soft', 0, NULL "
            "FROM plan_versions v CROSS JOIN metrics m "
            "WHERE NOT EXISTS (SELECT 1 FROM plan_metrics t WHERE t.plan_slug = v.plan_slug "
            "AND t.version = v.version AND t.metric = m.key)"
        )
    )


def downgrade() -> None:
    """Only the schema goes back: the rows written stay, and mean what they meant before
    (unlimited, free, soft), so no org's terms change either way."""
