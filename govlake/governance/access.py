"""Enforcement where consumers read: the share views of each role and the SQL endpoint's access file.

- **Share views** (:func:`share_views`, :func:`publish_share_views`): per scope
  (:func:`govlake.governance.policy.scope`, e.g. ``share_district_130102``) one view per table the role may read,
  named ``<layer>__<table>``, selecting every column with the role's masks and the user's row filter
  (``SELECT … FROM unified.person WHERE (district_code = '130102')``). Created in the persistent catalog by the
  pipeline after it registers tables, and by ``python -m govlake.governance publish``; a view is replaced only when
  its text changed.
- **Access file** (:func:`write_access_file`, ``$GOVLAKE_HOME/sql-endpoint/access``, mode 600), read by the
  endpoint's authorization extension (``govlake/serve/auth/GovLakeAuthzExtension.java``, which documents the format):
  the governed databases, each user's role and scope, and each user's decision per resource
  (:func:`govlake.governance.policy.decide`): allow (until a grant's expiry) or refuse with the rule. Rewritten on
  every grant change, so a revocation holds from the next statement.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import fsio
from govlake.core.config import Settings
from govlake.governance import policy as pol
from govlake.governance.policy import GrantInfo, Policy, Principal, ResourceInfo

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG = logging.getLogger("govlake.governance.access")


@dataclass(frozen=True)
class Governance:
    """Everything a decision needs: the policy, the principals, each catalogued table's :class:`ResourceInfo` and
    information items (``[(column, spark_sql_type), ...]``), and the department (source name) → provider code map."""

    policy: Policy
    principals: Mapping[str, Principal]
    resources: Mapping[str, ResourceInfo]
    department_codes: Mapping[str, str]
    columns: Mapping[str, Sequence[tuple[str, str]]]


def load_governance(policy_file: Path = pol.POLICY_FILE, principals_file: Path = pol.PRINCIPALS_FILE) -> Governance:
    """Load the resource catalog, the policy (validated against the catalog's tables and columns) and principals.

    Raises:
        govlake.governance.resources.ResourceError: a catalog entry is wrong.
        PolicyError: the policy or principals file is wrong.
    """
    from govlake.extract.registry import load_registry
    from govlake.governance.resources import load_resources

    catalog = load_resources()
    known = {table: [c.name for c in r.columns] for table, r in catalog.items()}
    policy = pol.load_policy(known, policy_file)
    sources = sorted(load_registry())
    codes: dict[str, str] = {}
    for table, r in catalog.items():
        layer, name = table.split(".", 1)
        if layer == "raw":
            for source in sources:
                if name.startswith(f"{source}_"):
                    codes.setdefault(source, r.provider_code)
    principals = pol.load_principals(principals_file, sources)
    resources = {table: ResourceInfo(table, r.sharing_type, r.provider_code, r.provider)
                 for table, r in catalog.items()}
    columns = {table: [(c.name, c.type) for c in r.columns] for table, r in catalog.items()}
    return Governance(policy, principals, resources, codes, columns)


# --- the access file ----------------------------------------------------------------------------------------------

def _field(text: str) -> str:
    return " ".join(str(text).split())  # no tab or newline inside a field


def access_lines(gov: Governance, grants: Sequence[GrantInfo], now: datetime) -> list[str]:
    """The access file's lines (format in the Java extension's docstring), decided at ``now``: ``G`` per governed
    database, ``U`` per user, ``D`` per (non-steward user, resource its role has an access item on)."""
    lines = [f"# GovLake access decisions at {now.astimezone(UTC).isoformat()} (govlake.governance.access)"]
    lines += [f"G\t{db}" for db in sorted({t.split('.', 1)[0] for t in gov.resources})]
    for name, principal in sorted(gov.principals.items()):
        lines.append(f"U\t{name}\t{principal.role}\t{pol.scope(principal) or '-'}")
    for name, principal in sorted(gov.principals.items()):
        if principal.role == "steward":
            continue
        for table, resource in sorted(gov.resources.items()):
            if gov.policy.access_item(principal.role, table) is None:
                continue
            d = pol.decide(principal, resource, gov.policy, grants, now, gov.department_codes)
            expires = int(d.expires_at.timestamp() * 1000) if d.allowed and d.expires_at else 0
            text = (f"purpose: {d.purpose}" if d.purpose else d.reason) if d.allowed else d.reason
            lines.append(f"D\t{name}\t{table}\t{'allow' if d.allowed else 'refuse'}\t{expires}\t"
                         f"{d.grant_id or '-'}\t{_field(text)}")
    return lines


def access_file(settings: Settings) -> Path:
    """``$GOVLAKE_HOME/sql-endpoint/access``: read by the endpoint's authorization extension."""
    return Path(settings.home) / "sql-endpoint" / "access"


def audit_file(settings: Settings) -> Path:
    """``$GOVLAKE_HOME/sql-endpoint/audit/queries.jsonl``: one JSON line per statement through the endpoint."""
    return Path(settings.home) / "sql-endpoint" / "audit" / "queries.jsonl"


def write_access_file(settings: Settings, gov: Governance | None = None, now: datetime | None = None) -> Path:
    """Decide every user's access from the current grants and (re)write the access file atomically, mode 600."""
    from govlake.governance.requests import grants

    gov = gov or load_governance()
    lines = access_lines(gov, grants(settings), now or datetime.now(UTC))
    path = access_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fsio.atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def read_audit(settings: Settings) -> list[dict]:
    """The endpoint's audit records (``at``, ``user``, ``role``, ``statement``, ``resources``, ``grants``,
    ``decision``, ``reason``), oldest first; [] when none."""
    path = audit_file(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- share views --------------------------------------------------------------------------------------------------

def share_views(gov: Governance, tables: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, str]:
    """``{"<scope>.<layer>__<table>": select_sql}`` for every scope of the principals and every table of ``tables``
    (``{"layer.table": [(column, type), ...]}``, those present in the catalog) the scope's role has an access item
    on — whether or not a grant exists: the endpoint refuses a view its user may not read."""
    out: dict[str, str] = {}
    for principal in sorted(gov.principals.values(), key=lambda p: p.name):
        db = pol.scope(principal)
        if db is None:
            continue
        for table, columns in sorted(tables.items()):
            resource = gov.resources.get(table)
            if resource is None or gov.policy.access_item(principal.role, table) is None:
                continue
            own = pol.is_own(principal, resource, gov.department_codes)
            out.setdefault(f"{db}.{pol.view_name(table)}",
                           pol.view_sql(principal, table, columns, gov.policy, own=own))
    return out


def _state_file(settings: Settings) -> Path:
    return Path(settings.home) / "governance" / "share_views.json"


def publish_share_views(spark: SparkSession, settings: Settings, gov: Governance | None = None) -> list[str]:
    """Create or replace the share views in ``spark``'s (persistent) catalog; returns the views (re)created.

    A view is recreated when missing or when its SQL changed since the last publication (digests kept in
    ``$GOVLAKE_HOME/governance/share_views.json``); views of a share database no longer wanted are dropped. Tables
    are those registered in the catalog under their layer's database; their columns are the catalog's information
    items (no table is read). A view that cannot be created (a catalogued column missing from the table) is logged
    and skipped: the other views still publish.
    """
    gov = gov or load_governance()
    layers = sorted({t.split(".", 1)[0] for t in gov.resources})
    databases = {row[0] for row in spark.sql("SHOW DATABASES").collect()}
    tables: dict[str, Sequence[tuple[str, str]]] = {}
    for layer in layers:
        if layer not in databases:
            continue
        for row in spark.sql(f"SHOW TABLES IN {layer}").collect():
            name = f"{layer}.{row.tableName}"
            if name in gov.resources and not row.isTemporary:
                tables[name] = gov.columns[name]
    wanted = share_views(gov, tables)
    state_path = _state_file(settings)
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    made = []
    existing: dict[str, set[str]] = {}
    for db in sorted({v.split(".", 1)[0] for v in wanted}):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {db} COMMENT 'GovLake share views (govlake.governance.access)'")
        existing[db] = {r.viewName for r in spark.sql(f"SHOW VIEWS IN {db}").collect() if not r.isTemporary}
    for view, sql in sorted(wanted.items()):
        db, name = view.split(".", 1)
        digest = hashlib.sha256(sql.encode()).hexdigest()
        if name in existing[db] and state.get(view) == digest:
            continue
        try:
            spark.sql(f"CREATE OR REPLACE VIEW {view} AS {sql}")
        except Exception as exc:  # noqa: BLE001 - one table's drift must not hide the other views
            LOG.error("share view %s not published: %s", view, str(exc).splitlines()[0])
            continue
        state[view] = digest
        made.append(view)
    for db, names in existing.items():
        for name in sorted(names - {v.split(".", 1)[1] for v in wanted if v.startswith(f"{db}.")}):
            spark.sql(f"DROP VIEW IF EXISTS {db}.{name}")
            state.pop(f"{db}.{name}", None)
    fsio.atomic_write_text(state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")
    if made:
        LOG.info("share views: %d (re)created", len(made))
    return made
