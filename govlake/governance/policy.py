"""Roles and policies (权限管理): who may read which resource, with which masks and row filters.

One policy file, ``schemas/governance/policy.json``, in Apache Ranger's policy-export shape so that a move to Kyuubi
AuthZ/Ranger stays mechanical: ``policies`` of ``policyType`` 0 (access: ``policyItems`` give roles ``select`` on
``resources`` database/table/column), 1 (data mask: ``dataMaskPolicyItems`` with a ``dataMaskInfo.dataMaskType``)
and 2 (row filter: ``rowFilterPolicyItems`` with ``rowFilterInfo.filterExpr``, where ``${{USER.<attribute>}}`` is a
user attribute, as in Ranger 2.3+). Resource values are names or ``*``/``?`` wildcards (Ranger's matching). Mask
types: Ranger's ``MASK_NULL``, ``MASK_NONE`` and ``MASK_HASH`` and GovLake's ``MASK_ID_NO``, ``MASK_NAME``,
``MASK_PHONE``, ``MASK_ADDRESS``, ``MASK_TEXT`` (the issue's formats, :mod:`govlake.governance.masking`; in Ranger,
custom mask types of the service definition whose transformer is :func:`mask_expression` with ``{col}``).

Users (``schemas/governance/principals.yaml``) carry a role and attributes (``district_code``, ``department``).

On top of the allow items GovLake applies the sharing type of each resource (the resource catalog, from the 2016
《政务信息资源共享管理暂行办法》 art. 9): 无条件共享 readable by the roles the policy allows; 有条件共享 only with an
active grant of an approved data request; 不予共享 never outside the provider department. A department analyst reads
the department's own resources in full (no grant, no mask); a steward reads everything in clear; an access item
marked ``"govlake:mandate": true`` (the auditor's oversight of quality results, quarantine and run records) needs
no grant whatever the sharing type; masks still apply.
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from govlake.core.config import REPO_ROOT

POLICY_FILE = REPO_ROOT / "schemas" / "governance" / "policy.json"
PRINCIPALS_FILE = REPO_ROOT / "schemas" / "governance" / "principals.yaml"
ROLES = ("steward", "city_analyst", "district_official", "auditor", "dept_analyst")
#: Mask types → mask kind of :mod:`govlake.governance.masking` (None: Ranger's own MASK_NULL / MASK_NONE).
MASK_TYPES = {"MASK_ID_NO": "id_no", "MASK_NAME": "name", "MASK_PHONE": "phone", "MASK_ADDRESS": "address",
              "MASK_TEXT": "text", "MASK_HASH": None, "MASK_NULL": None, "MASK_NONE": None}
SHARING_TYPES = ("unconditional", "conditional", "not_shared")
SHARING_LABELS = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}
_USER_ATTR = re.compile(r"\$\{\{USER\.([A-Za-z_]+)\}\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class PolicyError(ValueError):
    """The policy or principals file is wrong: the message names the file, the policy and the rule broken."""


@dataclass(frozen=True, order=True)
class Principal:
    """A user of the SQL endpoint: its role and attributes (``district_code`` for a district official,
    ``department`` — a source name of ``schemas/sources`` — for a department analyst)."""

    name: str
    role: str
    district_code: str | None = None
    department: str | None = None

    def attribute(self, name: str) -> str | None:
        return {"district_code": self.district_code, "department": self.department, "name": self.name}.get(name)


@dataclass(frozen=True)
class Item:
    """One policy item of one policy: its resources (database, table, column patterns), the roles it names and what
    it gives (``mask`` type for a data-mask item, ``filter`` expression for a row-filter item)."""

    policy: str
    kind: int
    databases: tuple[str, ...]
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    roles: tuple[str, ...]
    mask: str | None = None
    filter: str | None = None
    mandate: bool = False

    def matches(self, database: str, table: str, column: str | None = None) -> bool:
        if not (_any(self.databases, database) and _any(self.tables, table)):
            return False
        return column is None or _any(self.columns, column)


def _any(patterns: Sequence[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)


@dataclass(frozen=True)
class Policy:
    """The parsed policy file: roles and items in file order (access, mask, row filter)."""

    roles: tuple[str, ...]
    access: tuple[Item, ...]
    masks: tuple[Item, ...]
    row_filters: tuple[Item, ...]
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def access_item(self, role: str, table: str) -> Item | None:
        """The first access item giving ``role`` select on ``table`` (``layer.table``), or None."""
        db, name = table.split(".", 1)
        return next((i for i in self.access if role in i.roles and i.matches(db, name)), None)

    def mask_for(self, role: str, table: str, column: str) -> str | None:
        """The mask type of the first data-mask item matching ``role`` and the column (Ranger: first match wins)."""
        db, name = table.split(".", 1)
        item = next((i for i in self.masks if role in i.roles and i.matches(db, name, column)), None)
        return item.mask if item else None

    def row_filter(self, role: str, table: str) -> Item | None:
        """The first row-filter item matching ``role`` and ``table``, or None."""
        db, name = table.split(".", 1)
        return next((i for i in self.row_filters if role in i.roles and i.matches(db, name)), None)


def _values(path: Path, pname: str, resources: dict, key: str, required: bool) -> tuple[str, ...]:
    entry = resources.get(key)
    if entry is None:
        if required:
            raise PolicyError(f"{path.name}: policy {pname!r}: resources need a {key!r}")
        return ("*",)
    values = entry.get("values") if isinstance(entry, dict) else None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{path.name}: policy {pname!r}: resources.{key}.values must be a non-empty list of names")
    if entry.get("isExcludes"):
        raise PolicyError(f"{path.name}: policy {pname!r}: resources.{key}.isExcludes is not supported")
    return tuple(values)


def parse_policy(doc: dict, known: Mapping[str, Sequence[str]], path: Path = POLICY_FILE) -> Policy:
    """Validate a policy document against the known tables and build a :class:`Policy`.

    Args:
        doc: the policy file's JSON (see the module docstring).
        known: ``{"layer.table": [column, ...]}`` of every catalogued table.

    Raises:
        PolicyError: an unknown role, policy type or mask type; a database, table or column a policy names that no
            catalogued table has (wildcards must match at least one); a row filter naming an unknown user attribute.
    """
    roles = tuple(r.get("name") for r in doc.get("roles", []))
    if set(roles) != set(ROLES):
        raise PolicyError(f"{path.name}: roles must be exactly {', '.join(ROLES)}, got {', '.join(map(str, roles))}")
    by_db: dict[str, dict[str, set[str]]] = {}
    for table, columns in known.items():
        db, name = table.split(".", 1)
        by_db.setdefault(db, {})[name] = set(columns)
    access, masks, filters = [], [], []
    for pol in doc.get("policies", []):
        pname = pol.get("name") or f"#{pol.get('id')}"
        if not pol.get("isEnabled", True):
            continue
        kind = pol.get("policyType")
        if kind not in (0, 1, 2):
            raise PolicyError(f"{path.name}: policy {pname!r}: policyType must be 0, 1 or 2, got {kind!r}")
        res = pol.get("resources") or {}
        dbs = _values(path, pname, res, "database", True)
        tables = _values(path, pname, res, "table", True)
        columns = _values(path, pname, res, "column", kind == 1)
        matched = [(db, t, cols) for db, ts in by_db.items() if _any(dbs, db) for t, cols in ts.items()
                   if _any(tables, t)]
        for pattern in dbs:
            if not any(fnmatch.fnmatchcase(db, pattern) for db in by_db):
                raise PolicyError(f"{path.name}: policy {pname!r}: database {pattern!r} is not a catalogued layer")
        for pattern in tables:
            if not any(fnmatch.fnmatchcase(t, pattern) for _, t, _ in matched):
                raise PolicyError(f"{path.name}: policy {pname!r}: table {pattern!r} is in none of "
                                  f"{', '.join(dbs)}")
        for pattern in columns:
            if not any(fnmatch.fnmatchcase(c, pattern) for _, _, cols in matched for c in cols):
                raise PolicyError(f"{path.name}: policy {pname!r}: column {pattern!r} is in no table of "
                                  f"{', '.join(dbs)}.{'|'.join(tables)}")
        items_key = {0: "policyItems", 1: "dataMaskPolicyItems", 2: "rowFilterPolicyItems"}[kind]
        items = pol.get(items_key) or []
        if not items:
            raise PolicyError(f"{path.name}: policy {pname!r}: no {items_key}")
        for item in items:
            item_roles = tuple(item.get("roles") or ())
            unknown = sorted(set(item_roles) - set(ROLES))
            if not item_roles or unknown:
                raise PolicyError(f"{path.name}: policy {pname!r}: unknown or missing roles {unknown or '[]'}")
            if item.get("users") or item.get("groups"):
                raise PolicyError(f"{path.name}: policy {pname!r}: name roles, not users or groups")
            base = Item(pname, kind, dbs, tables, columns, item_roles, mandate=bool(pol.get("govlake:mandate")))
            if kind == 0:
                access.append(base)
            elif kind == 1:
                mask = (item.get("dataMaskInfo") or {}).get("dataMaskType")
                if mask not in MASK_TYPES:
                    raise PolicyError(f"{path.name}: policy {pname!r}: dataMaskType {mask!r} is not one of "
                                      f"{', '.join(MASK_TYPES)}")
                masks.append(Item(pname, kind, dbs, tables, columns, item_roles, mask=mask))
            else:
                expr = (item.get("rowFilterInfo") or {}).get("filterExpr")
                if not isinstance(expr, str) or not expr.strip():
                    raise PolicyError(f"{path.name}: policy {pname!r}: rowFilterInfo.filterExpr is empty")
                for attr in _USER_ATTR.findall(expr):
                    if attr not in ("district_code", "department", "name"):
                        raise PolicyError(f"{path.name}: policy {pname!r}: unknown user attribute {attr!r}")
                filters.append(Item(pname, kind, dbs, tables, columns, item_roles, filter=expr))
    return Policy(roles, tuple(access), tuple(masks), tuple(filters), raw=doc)


def load_policy(known: Mapping[str, Sequence[str]], path: Path = POLICY_FILE) -> Policy:
    """:func:`parse_policy` of the policy file ``path`` (errors as there; :class:`PolicyError` for bad JSON)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{Path(path).name}: not JSON: {exc}") from exc
    return parse_policy(doc, known, Path(path))


def load_principals(path: Path = PRINCIPALS_FILE, departments: Sequence[str] = ()) -> dict[str, Principal]:
    """The users file's principals by name.

    Raises:
        PolicyError: an unknown role, a duplicate or invalid name, a district official without a six-digit
            ``district_code``, a department analyst without a ``department`` (one of ``departments`` when given).
    """
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    out: dict[str, Principal] = {}
    for entry in doc.get("users") or []:
        name, role = str(entry.get("name", "")), entry.get("role")
        where = f"{Path(path).name}: user {name!r}"
        if not _NAME.match(name) or name in out:
            raise PolicyError(f"{where}: names are unique and made of letters, digits, '_', '.', '-'")
        if role not in ROLES:
            raise PolicyError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        district = entry.get("district_code")
        department = entry.get("department")
        if role == "district_official" and not re.fullmatch(r"\d{6}", str(district or "")):
            raise PolicyError(f"{where}: a district official needs a six-digit district_code (GB/T 2260)")
        if role == "dept_analyst" and (not department or (departments and department not in departments)):
            raise PolicyError(f"{where}: a department analyst needs a department, one of {', '.join(departments)}")
        out[name] = Principal(name, role, str(district) if district else None, department)
    return out


def scope(principal: Principal) -> str | None:
    """The share database of a principal's views (None for a steward, who reads the tables themselves):
    ``share_city_analyst``, ``share_auditor``, ``share_district_<code>``, ``share_dept_<department>``."""
    if principal.role == "steward":
        return None
    if principal.role == "district_official":
        return f"share_district_{principal.district_code}"
    if principal.role == "dept_analyst":
        return f"share_dept_{principal.department}"
    return f"share_{principal.role}"


def view_name(table: str) -> str:
    """``unified.person`` → ``unified__person``: a table's view in a share database."""
    return table.replace(".", "__", 1)


# --- decisions ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResourceInfo:
    """What a decision needs of a catalogued resource: its table, sharing type, provider and its name for messages."""

    table: str
    sharing_type: str
    provider_code: str
    provider: str = ""


@dataclass(frozen=True)
class GrantInfo:
    """A grant of an approved data request (:mod:`govlake.governance.requests`)."""

    grant_id: str
    user: str
    resource: str
    purpose: str
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """May a user read a resource: ``allowed``; ``reason`` (the rule, when refused; the basis, when allowed);
    the grant it rests on, with its expiry and purpose."""

    allowed: bool
    reason: str
    grant_id: str | None = None
    expires_at: datetime | None = None
    purpose: str | None = None


def is_own(principal: Principal, resource: ResourceInfo, department_codes: Mapping[str, str]) -> bool:
    """True when ``principal`` is an analyst of the resource's provider department (``department_codes``: source
    name → provider code)."""
    return (principal.role == "dept_analyst" and principal.department is not None
            and department_codes.get(principal.department) == resource.provider_code)


def decide(principal: Principal, resource: ResourceInfo, policy: Policy, grants: Sequence[GrantInfo], now: datetime,
           department_codes: Mapping[str, str]) -> Decision:
    """Decide whether ``principal`` may read ``resource`` at ``now`` (see the module docstring for the rules).

    Grants are matched by user and resource; a revoked or expired grant does not count (the refusal names it).
    """
    table = resource.table
    if principal.role == "steward":
        return Decision(True, "data steward")
    item = policy.access_item(principal.role, table)
    if item is None:
        return Decision(False, f"no access policy gives role {principal.role} select on {table}")
    if item.mandate:  # the auditor's oversight duty: no request, whatever the sharing type; masks still apply
        return Decision(True, "mandate")
    own = is_own(principal, resource, department_codes)
    label = f"{table} is {SHARING_LABELS[resource.sharing_type]} ({resource.sharing_type})"
    provider = resource.provider or resource.provider_code
    if resource.sharing_type == "not_shared" and not own:
        return Decision(False, f"{label}: never readable outside its provider department {provider} "
                               "(《政务信息资源共享管理暂行办法》 art. 9)")
    if resource.sharing_type == "conditional" and not own:
        mine = [g for g in grants if g.user == principal.name and g.resource == table]
        active = [g for g in mine if g.revoked_at is None and g.expires_at > now]
        if active:
            grant = max(active, key=lambda g: g.expires_at)
            return Decision(True, f"grant {grant.grant_id}", grant.grant_id, grant.expires_at, grant.purpose)
        if mine:
            last = max(mine, key=lambda g: g.revoked_at or g.expires_at)
            state = (f"revoked at {last.revoked_at:%Y-%m-%d %H:%M}" if last.revoked_at
                     else f"expired at {last.expires_at:%Y-%m-%d %H:%M}")
            return Decision(False, f"{label}: grant {last.grant_id} was {state}; file a new data request")
        return Decision(False, f"{label}: needs an approved data request (python -m govlake.governance request "
                               f"--user {principal.name} --resource {table} --purpose ...)")
    return Decision(True, "own department" if own else f"policy {item.policy}")


# --- share views --------------------------------------------------------------------------------------------------

def mask_expression(mask: str, column_sql: str, data_type: str = "STRING") -> str:
    """The Spark SQL expression of ``mask`` applied to ``column_sql`` (a quoted column name or Ranger's ``{col}``).

    ``MASK_NULL`` is a typed NULL, ``MASK_NONE`` the column itself, ``MASK_HASH`` its SHA-256 (hex), ``MASK_TEXT``
    :func:`govlake.governance.masking.scrub_sql` (ID numbers and mobiles inside free text); the others are
    :func:`govlake.governance.masking.mask_sql` of their kind (only built-in functions).

    Raises:
        KeyError: an unknown mask type.
    """
    kind = MASK_TYPES[mask]
    if mask == "MASK_NULL":
        return f"CAST(NULL AS {data_type})"
    if mask == "MASK_HASH":  # Ranger's MASK_HASH: SHA-256 of the value, the same in every table (joins still work)
        return f"sha2(CAST({column_sql} AS STRING), 256)"
    if kind is None:
        return column_sql
    from govlake.governance.masking import mask_sql, scrub_sql

    return scrub_sql(column_sql) if kind == "text" else mask_sql(kind, column_sql)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def view_sql(principal: Principal, table: str, columns: Sequence[tuple[str, str]], policy: Policy,
             own: bool = False, mask_expr: Callable[[str, str, str], str] = mask_expression) -> str:
    """The ``SELECT`` of ``principal``'s share view of ``table`` (``layer.table``): every column in order, masked
    per the first data-mask item of the role (none when ``own``: the department's own data), rows filtered by the
    role's row filter with the user's attributes filled in.

    Args:
        columns: ``[(name, spark_sql_type), ...]`` of the table as stored.
        mask_expr: ``(mask_type, quoted_column, type) -> SQL`` (default :func:`mask_expression`).

    Raises:
        PolicyError: a row filter needs a user attribute the principal lacks.
    """
    select = []
    for name, data_type in columns:
        mask = None if own else policy.mask_for(principal.role, table, name)
        quoted = _quote(name)
        select.append(quoted if mask in (None, "MASK_NONE") else f"{mask_expr(mask, quoted, data_type)} AS {quoted}")
    sql = f"SELECT {', '.join(select)} FROM {table}"
    item = None if own else policy.row_filter(principal.role, table)
    if item is not None and item.filter is not None:
        expr = item.filter

        def fill(match: re.Match) -> str:
            value = principal.attribute(match.group(1))
            if value is None:
                raise PolicyError(f"policy {item.policy!r}: user {principal.name} has no {match.group(1)}")
            return _sql_string(value)[1:-1]

        sql += f" WHERE ({_USER_ATTR.sub(fill, expr)})"
    return sql


def fill_user_attributes(expr: str, principal: Principal) -> str:
    """``expr`` with each ``${{USER.<attribute>}}`` replaced by the principal's value (empty when unset)."""
    return _USER_ATTR.sub(lambda m: str(principal.attribute(m.group(1)) or ""), expr)


# --- Apache Ranger ------------------------------------------------------------------------------------------------

def ranger_export(policy: Policy, principals: Mapping[str, Principal], grants: Sequence[GrantInfo],
                  now: datetime) -> dict:
    """The policy in the form Apache Ranger (and Kyuubi's Spark AuthZ plugin reading a Ranger policy cache) loads:
    GovLake's mask types become ``CUSTOM`` masks whose ``valueExpr`` is :func:`mask_expression` with ``{col}``;
    row filters get one item per user with the user's attributes filled in (Ranger's ``${{USER.x}}`` needs a user
    store, a file cannot carry one); each active grant becomes an access policy for its user on its table with a
    ``validitySchedules`` entry ending at the grant's expiry. Roles map to Ranger roles of the same name with their
    users. The sharing-type rule itself (conditional needs a grant, not shared stays home) has no Ranger equivalent
    beyond this: the exported allow items must be read with it.

    Returns:
        ``{"serviceName", "policies": [...], "roles": [{"name", "users": [{"name"}]}]}``.
    """
    out: list[dict] = []
    next_id = 1
    for pol in policy.raw.get("policies", []):
        doc = json.loads(json.dumps(pol))
        doc["id"] = next_id
        next_id += 1
        for item in doc.get("dataMaskPolicyItems", []):
            info = item.get("dataMaskInfo", {})
            if MASK_TYPES.get(info.get("dataMaskType")) is not None:
                info["valueExpr"] = mask_expression(info["dataMaskType"], "{col}")
                info["dataMaskType"] = "CUSTOM"
        if doc.get("rowFilterPolicyItems"):
            items = []
            for item in doc["rowFilterPolicyItems"]:
                for user in sorted(p for p in principals.values() if p.role in item.get("roles", [])):
                    expr = fill_user_attributes(item["rowFilterInfo"]["filterExpr"], user)
                    items.append({"users": [user.name], "accesses": item.get("accesses", []),
                                  "rowFilterInfo": {"filterExpr": expr}})
            doc["rowFilterPolicyItems"] = items
        doc.pop("govlake:mandate", None)
        out.append(doc)
    for grant in sorted(grants, key=lambda g: g.grant_id):
        if grant.revoked_at is not None or grant.expires_at <= now:
            continue
        db, table = grant.resource.split(".", 1)
        out.append({"id": next_id, "name": f"grant-{grant.grant_id}", "isEnabled": True, "policyType": 0,
                    "description": f"data request grant {grant.grant_id}: {grant.purpose}",
                    "resources": {"database": {"values": [db]}, "table": {"values": [table]},
                                  "column": {"values": ["*"]}},
                    "policyItems": [{"users": [grant.user], "accesses": [{"type": "select", "isAllowed": True}]}],
                    "validitySchedules": [{"startTime": now.strftime("%Y/%m/%d %H:%M:%S"),
                                           "endTime": grant.expires_at.strftime("%Y/%m/%d %H:%M:%S"),
                                           "timeZone": "UTC"}]})
        next_id += 1
    roles = [{"name": r, "users": [{"name": p.name, "isAdmin": False} for p in sorted(principals.values())
                                   if p.role == r]} for r in policy.roles]
    return {"serviceName": policy.raw.get("serviceName", "govlake_spark"), "policies": out, "roles": roles}
