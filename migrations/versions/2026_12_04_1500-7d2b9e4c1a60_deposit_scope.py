"""The `deposit` scope: creating money by DEPOSIT is a right of its own

Revision ID: 7d2b9e4c1a60
Revises: c4e8b1f2a6d3
Create Date: 2026-12-04 15:00:00.000000+00:00

A key may create money by `DEPOSIT` only with the scope `deposit` (docs/SECURITY.md:
money an owner can make at will lets it push another owner's wallet to its limit, and
learn that wallet's balance from the refusals). Keys that could write before keep what
they could do: each gets `deposit`, so no client is cut off by the upgrade; keys created
afterwards get it only when asked for. Catalog change and one UPDATE of the small key
table; no ledger row is touched. A service older than this revision cannot read the
scope (its keyed requests fail): stop the old instances before upgrading
(docs/OPERATIONS.md, Migrations).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7d2b9e4c1a60"
down_revision: str | Sequence[str] | None = "c4e8b1f2a6d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "scopes <@ ARRAY['read', 'write']::varchar[]"
_NEW = "scopes <@ ARRAY['read', 'write', 'deposit']::varchar[]"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(op.f("ck_api_keys_scopes_known"), "api_keys", type_="check")
    op.create_check_constraint(op.f("ck_api_keys_scopes_known"), "api_keys", _NEW)
    op.execute(
        "UPDATE api_keys SET scopes = array_append(scopes, 'deposit') "
        "WHERE 'write' = ANY(scopes) AND NOT 'deposit' = ANY(scopes)"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Without the scope, every key that can write may deposit again (as before it).
    op.execute("UPDATE api_keys SET scopes = array_remove(scopes, 'deposit')")
    op.drop_constraint(op.f("ck_api_keys_scopes_known"), "api_keys", type_="check")
    op.create_check_constraint(op.f("ck_api_keys_scopes_known"), "api_keys", _OLD)
