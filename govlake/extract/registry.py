"""Source registry and extraction readers (the edge where departmental data enters GovLake).

The registry is one YAML file per department in ``schemas/sources/`` (see :class:`SourceSpec`).
Readers return a Spark DataFrame of the delivered values **as text** (``StringType``; NULL stays
NULL), one column per delivered column, plus ``_row_number`` (LONG, 1-based position of the row
in the batch, ordered by the business key) so every raw row can be named in an error message.
Types are applied in the unified layer, never here, so no delivered value is lost to a cast.
:func:`extract_object` also returns what the reconciliation needs (rows counted at the source
for the window, rows rejected at parse with reasons, per-file checksums and encodings).

Windows (:class:`Window`): a run for logical date D reads the rows whose watermark lies in
``[data_interval_start, data_interval_end)`` — the business day D in Asia/Shanghai for the daily
schedule; ``timestamptz`` watermarks are compared as instants, ``timestamp`` (without time zone)
watermarks as Asia/Shanghai wall-clock time. A *full* window (first run of an object, a backfill,
or ``GOVLAKE_EXTRACT_MODE=snapshot`` — the embedded demo's former behaviour) reads every row whose
watermark is before the window end. Objects without a watermark are always read whole.
File drops are per logical date and have no window.

Connections:

- ``embedded`` mode (the demo default): SQL departments are SQLite files and document
  departments JSON-lines exports under ``Settings.sources_dir``; file drops are under
  ``<sources_dir>/<inbox>/<logical date>/``.
- ``servers`` mode: each source names an Airflow connection id, resolved through Airflow's connection API
  (secrets backends, ``AIRFLOW_CONN_<ID>`` variables, connections defined in the UI), e.g.
  ``AIRFLOW_CONN_GOVLAKE_HUKOU=postgresql://govlake@127.0.0.1:55432/departments``. PostgreSQL
  is read with Spark JDBC, MongoDB with pymongo (the database named in a MongoDB URI's path, as
  Airflow's connection ``schema``, wins over the registry's ``database``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import yaml

from govlake.core.config import SCHEMAS_DIR, TIME_ZONE, Settings
from govlake.core.failpoints import failpoint

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


#: 共享类型 of a shared resource (国务院《政务信息资源共享管理暂行办法》国发〔2016〕51号, art. 5):
#: 无条件共享 / 有条件共享 / 不予共享.
SHARING_TYPES = ("unconditional", "conditional", "none")
#: 更新周期 of a resource (GB/T 21063.3-2007 政务信息资源目录体系 核心元数据, update frequency).
UPDATE_CYCLES = ("realtime", "daily", "weekly", "monthly", "quarterly", "half_yearly", "yearly")
#: What a delivered column holds (registry ``types``; undeclared columns are ``text``). Raw keeps every value
#: as text whatever its type; the type decides which Excel cells are accepted (see :func:`extract_file_drop`).
COLUMN_TYPES = ("text", "code", "integer", "decimal", "date", "timestamp")
#: Column types that take an Excel number cell / an Excel date or time cell.
NUMBER_TYPES = ("integer", "decimal")
DATE_TYPES = ("date", "timestamp")


def _one_of(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return value


class SourceError(RuntimeError):
    """A source cannot be read as registered. The message names the source, object and address; ID and mobile
    numbers a driver quoted in it (a rejected value, a row key) are masked (issue #21,
    :func:`govlake.governance.masking.scrub_text`)."""

    def __init__(self, *args: object) -> None:
        from govlake.governance.masking import scrub_text

        super().__init__(*(scrub_text(a) if isinstance(a, str) else a for a in args))


class SourceUnavailable(SourceError):
    """A source's server cannot be reached (network, credentials, missing database or file)."""


class ManifestMismatch(SourceError):
    """A file drop does not match its manifest (checksum, row count, missing file): rejected whole."""


class SchemaDrift(SourceError):
    """The delivered columns differ from the registry (a column renamed or missing, an unknown
    header or JSON key): the batch is rejected whole; the message names source, object and columns."""


class ExtractionFailed(SourceError):
    """Some objects of an extraction run failed; the others were extracted (see
    :func:`govlake.extract.stage.run_extract`). The message names every failed ``source.object`` with its reason;
    ``failures`` maps ``source.object`` -> reason (as recorded in the exchange ledger's ``error``)."""

    def __init__(self, message: str, failures: dict[str, str | None] | None = None):
        super().__init__(message)
        self.failures = dict(failures or {})

    @classmethod
    def of(cls, logical_date: date, failures: dict[str, str | None], attempted: int) -> ExtractionFailed:
        """The error of a run for ``logical_date`` in which ``failures`` of ``attempted`` objects failed."""
        listed = "; ".join(f"{name} ({reason})" for name, reason in failures.items())
        return cls(f"extraction of {logical_date.isoformat()} failed for {len(failures)} of {attempted} objects: "
                   f"{listed}", failures)


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a safe SQL identifier (``[a-z_][a-z0-9_]*``, ≤ 63 chars).

    Identifiers from configuration are validated before they reach SQL text.

    Raises:
        ValueError: naming ``what`` and the offending value.
    """
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(f"{what} {value!r} is not a valid identifier ([a-z_][a-z0-9_]*, at most 63 characters)")
    return value


#: Roles of a person's attributes a ``unified`` block maps to delivered columns (``columns``, ``roles.<r>.columns``)
#: or fixes (``roles.<r>.values``); see :func:`govlake.unified.persons.person_candidates`.
PERSON_ROLES = ("id_no", "name", "sex", "birth_date", "ethnic", "household_no", "relation", "community_code",
                "address", "phone", "marital_status", "death_date", "education", "registration_type")
#: Entities of the unified layer an object may feed (``unified.entity``).
UNIFIED_ENTITIES = ("person",)
#: Relationship types of ``unified.person_relationship`` (``unified.relationships``, survivorship ``relationships``).
RELATIONSHIP_TYPES = ("spouse", "parent_child")
_UNIFIED_KEYS = ("entity", "priority", "record_key", "watermark", "columns", "roles", "sex_map", "marital_map",
                 "education_map", "registration_map", "date_formats", "relationships")


@dataclass(frozen=True)
class PersonRole:
    """One of several persons a row names (``unified.roles.<role>``): ``columns`` maps a :data:`PERSON_ROLES`
    role to the delivered column, ``values`` fixes a role the row lacks (e.g. ``sex: "2"`` for a mother)."""

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RelationshipRule:
    """A relationship a row states between two of its roles (``unified.relationships[i]``).

    Attributes:
        relationship: one of :data:`RELATIONSHIP_TYPES`.
        from_role, to_role: the YAML's ``from`` / ``to``: roles of ``roles`` (``from`` is the parent for
            'parent_child').
        basis: text of the statement's basis (e.g. 结婚登记), or None.
        valid_from, valid_to: delivered date columns of the validity, or None.
    """

    relationship: str
    from_role: str
    to_role: str
    basis: str | None = None
    valid_from: str | None = None
    valid_to: str | None = None


@dataclass(frozen=True)
class UnifiedRules:
    """How an object feeds the unified layer (its ``unified:`` block; see ``schemas/sources/hukou.yaml`` and
    :func:`govlake.unified.persons.person_candidates`).

    Attributes:
        entity: one of :data:`UNIFIED_ENTITIES`.
        priority: survivorship rank of the department (1 = most authoritative) after the configured orders.
        record_key: columns naming a record in ``unified.person_link`` (the object's business key when the
            block does not set it; empty: ``_row_number``).
        watermark: delivered column holding the department's update time (the object's registry watermark when
            the block does not set it; None: the object has none).
        columns: :data:`PERSON_ROLES` role -> delivered column, for an object whose rows name one person.
        roles: role name -> :class:`PersonRole`, for an object whose rows name several (exclusive with
            ``columns``).
        sex_map: department value -> GB/T 2261.1 code.
        marital_map, education_map, registration_map: department value -> national code, or None (no map:
            only values already in the national code list are kept).
        date_formats: Spark date patterns of the delivered dates, or None (the code pack's defaults).
        relationships: the relationships each row states between its ``roles``.
    """

    entity: str = "person"
    priority: int = 9
    record_key: tuple[str, ...] = ()
    watermark: str | None = "updated_at"
    columns: dict[str, str] = field(default_factory=dict)
    roles: dict[str, PersonRole] = field(default_factory=dict)
    sex_map: dict[str, str] = field(default_factory=dict)
    marital_map: dict[str, str] | None = None
    education_map: dict[str, str] | None = None
    registration_map: dict[str, str] | None = None
    date_formats: tuple[str, ...] | None = None
    relationships: tuple[RelationshipRule, ...] = ()


@dataclass(frozen=True)
class ObjectSpec:
    """One table, collection or file of a source.

    Attributes:
        name: object name (table / collection / file stem), a safe identifier.
        business_key: columns that identify a business record.
        watermark: column whose value orders changes (used for windows), or None.
        columns: delivered columns (SQL: read in this order; file drops: header -> raw name).
        projection: documents only: raw column -> JSON path into the document, or a list of paths tried in
            order (the first present wins: a field the department renamed, e.g. ``applicant.id_no`` →
            ``applicant.idcard``; the raw ``document`` keeps what was delivered, and a suite rule can flag it).
        file: file drops only: the file name in the drop.
        title: Chinese title for the resource catalog.
        types: raw column -> one of :data:`COLUMN_TYPES` (undeclared columns are ``text``). Values stay
            text in raw; an Excel number cell is accepted only in an ``integer`` / ``decimal`` column and a
            date cell only in a ``date`` / ``timestamp`` column (see :func:`extract_file_drop`).
        kind, connection_id, database, embedded: per-object overrides of the source's (a department
            delivering both a file drop and a MongoDB collection).
        unified: how the object feeds the unified layer (:class:`UnifiedRules`), None when it does not.
        sharing_type, update_cycle: the object's catalog entry (one of :data:`SHARING_TYPES` /
            :data:`UPDATE_CYCLES`); :func:`load_registry` fills them from the source's when the
            object does not set its own.
    """

    name: str
    business_key: tuple[str, ...]
    watermark: str | None = None
    columns: tuple[str, ...] = ()
    header_map: dict[str, str] = field(default_factory=dict)
    projection: dict[str, str | list[str]] = field(default_factory=dict)
    file: str | None = None
    title: str = ""
    unified: UnifiedRules | None = None
    types: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    connection_id: str | None = None
    database: str | None = None
    embedded: str | None = None
    sharing_type: str | None = None
    update_cycle: str | None = None

    def column_type(self, column: str) -> str:
        """The registry type of raw ``column`` (one of :data:`COLUMN_TYPES`; ``text`` when undeclared)."""
        return self.types.get(column, "text")


@dataclass(frozen=True)
class Subscription:
    """A shared dataset a department receives back into its exchange schema (see :mod:`govlake.exchange.distribution`).

    Attributes:
        name: table name in the subscriber's exchange schema ``exchange_<source>`` (identifier).
        dataset: lakehouse table ``<layer>.<table>`` it is cut from.
        columns: the columns the subscriber may see (identifiers), in this order.
        where: optional Spark SQL row filter (reviewed configuration, evaluated by Spark only,
            never sent to the department's database).
        date_column: optional DATE column of ``dataset`` selecting the run's logical date
            (e.g. ``snapshot_date``); without it the whole table is the run's snapshot.
    """

    name: str
    dataset: str
    columns: tuple[str, ...]
    where: str | None = None
    date_column: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """A department's source as registered in ``schemas/sources/<source>.yaml``.

    Attributes:
        source: short name, also the prefix of its raw tables (``raw.<source>_<object>``).
        department: the owning department.
        kind: ``sql``, ``mongo`` or ``file_drop``.
        connection_id: Airflow connection id used in servers mode.
        embedded: file name under the sources folder used in embedded mode.
        db_schema: PostgreSQL schema (sql) ; database: MongoDB database (mongo).
        inbox: file drops: folder under the sources folder holding ``<logical date>/`` drops.
        sharing_type: 无条件共享 / 有条件共享 / 不予共享 as ``unconditional|conditional|none``.
        update_cycle: how often the department delivers.
        objects: the tables / collections / files, by name.
    """

    source: str
    department: str
    kind: str
    objects: dict[str, ObjectSpec]
    connection_id: str | None = None
    embedded: str | None = None
    db_schema: str | None = None
    database: str | None = None
    inbox: str | None = None
    sharing_type: str = "conditional"
    update_cycle: str = "daily"
    conventions: str = ""
    subscriptions: tuple[Subscription, ...] = ()


def load_registry(directory: Path = SCHEMAS_DIR / "sources") -> dict[str, SourceSpec]:
    """Read every ``*.yaml`` source file in ``directory``.

    Returns:
        source name -> :class:`SourceSpec`, sorted by name.

    Raises:
        ValueError: a file is malformed (names the file and the field).
    """
    registry = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        try:
            spec = _parse_source(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"source registry file {path.name}: {exc}") from exc
        registry[spec.source] = spec
    return registry


def _parse_source(raw: dict[str, Any]) -> SourceSpec:
    kind = raw["kind"]
    if kind not in ("sql", "mongo", "file_drop"):
        raise ValueError(f"kind must be sql, mongo or file_drop, not {kind!r}")
    sharing = _one_of(raw.get("sharing_type", "conditional"), SHARING_TYPES, "sharing_type")
    cycle = _one_of(raw.get("update_cycle", "daily"), UPDATE_CYCLES, "update_cycle")
    objects = {}
    for name, obj in raw["objects"].items():
        check_identifier(name, "object name")
        columns = obj.get("columns") or ()
        header_map = {}
        if isinstance(columns, dict):
            header_map = dict(columns)
            columns = tuple(columns.values())
        for column in columns:
            check_identifier(column, f"column of {raw['source']}.{name}")
        key = tuple(obj["business_key"])
        for column in key:
            check_identifier(column, f"business key of {raw['source']}.{name}")
        if obj.get("watermark"):
            check_identifier(obj["watermark"], f"watermark of {raw['source']}.{name}")
        objects[name] = ObjectSpec(
            name=name, business_key=key, watermark=obj.get("watermark"), columns=tuple(columns),
            header_map=header_map, projection=dict(obj.get("projection") or {}), file=obj.get("file"),
            title=obj.get("title", ""),
            unified=_parse_unified(f"{raw['source']}.{name}", obj.get("unified"), key, obj.get("watermark"),
                                   tuple(columns) + tuple(obj.get("projection") or ())),
            types=_parse_types(f"{raw['source']}.{name}", obj.get("types"),
                               tuple(columns) + tuple(obj.get("projection") or ())),
            kind=obj.get("kind"), connection_id=obj.get("connection_id"), database=obj.get("database"),
            embedded=obj.get("embedded"),
            sharing_type=_one_of(obj.get("sharing_type", sharing), SHARING_TYPES, f"sharing_type of {name}"),
            update_cycle=_one_of(obj.get("update_cycle", cycle), UPDATE_CYCLES, f"update_cycle of {name}"),
        )
        if obj.get("kind") not in (None, "sql", "mongo", "file_drop"):
            raise ValueError(f"{raw['source']}.{name}: kind must be sql, mongo or file_drop, not {obj.get('kind')!r}")
        for column, path in (obj.get("projection") or {}).items():
            check_identifier(column, f"projected column of {raw['source']}.{name}")
            projection_paths(path)
    if raw.get("db_schema"):
        check_identifier(raw["db_schema"], "db_schema")
    return SourceSpec(
        source=check_identifier(raw["source"], "source"), department=raw["department"], kind=kind,
        objects=objects, connection_id=raw.get("connection_id"), embedded=raw.get("embedded"),
        db_schema=raw.get("db_schema"), database=raw.get("database"), inbox=raw.get("inbox"),
        sharing_type=sharing, update_cycle=cycle,
        conventions=raw.get("conventions", ""),
        subscriptions=tuple(_parse_subscription(raw["source"], s) for s in raw.get("subscriptions") or ()),
    )


def _str_map(where: str, value: Any) -> dict[str, str]:
    """A map of text to text (a YAML mapping whose keys and values are all strings)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{where} must be a map of text: text, not {value!r}")
    return dict(value)


def _role_columns(where: str, value: Any, delivered: tuple[str, ...]) -> dict[str, str]:
    """A map of :data:`PERSON_ROLES` role -> delivered column of the object."""
    mapping = _str_map(where, value)
    for role, column in mapping.items():
        _one_of(role, PERSON_ROLES, f"{where}: role {role!r}")
        if column not in delivered:
            raise ValueError(f"{where}: {role}: {column!r} is not a delivered column ({', '.join(delivered)})")
    return mapping


def _parse_unified(where: str, raw: Any, business_key: tuple[str, ...], watermark: str | None,
                   delivered: tuple[str, ...]) -> UnifiedRules | None:
    """An object's ``unified`` block (None when absent); ``record_key`` and ``watermark`` default to the object's
    business key and registry watermark. Errors name ``<source>.<object>: unified.<field>``."""
    if raw is None:
        return None
    at = f"{where}: unified"
    if not isinstance(raw, dict):
        raise ValueError(f"{at} must be a map, not {raw!r}")
    unknown = sorted(set(raw) - set(_UNIFIED_KEYS))
    if unknown:
        raise ValueError(f"{at}: unknown field(s) {', '.join(map(str, unknown))}; "
                         f"fields are {', '.join(_UNIFIED_KEYS)}")
    entity = _one_of(raw.get("entity"), UNIFIED_ENTITIES, f"{at}.entity")
    priority = raw.get("priority", 9)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"{at}.priority must be an integer, not {priority!r}")
    record_key = raw.get("record_key", list(business_key))
    if not isinstance(record_key, list) or not all(isinstance(c, str) for c in record_key):
        raise ValueError(f"{at}.record_key must be a list of columns, not {record_key!r}")
    for column in record_key:
        if column not in delivered:
            raise ValueError(f"{at}.record_key: {column!r} is not a delivered column ({', '.join(delivered)})")
    mark = raw.get("watermark", watermark)
    if mark is not None:
        check_identifier(mark, f"{at}.watermark")
    if ("columns" in raw) == ("roles" in raw):
        raise ValueError(f"{at} must have either columns (one person per row) or roles (several), not "
                         f"{'both' if 'columns' in raw else 'neither'}")
    columns = _role_columns(f"{at}.columns", raw["columns"], delivered) if "columns" in raw else {}
    roles: dict[str, PersonRole] = {}
    if "roles" in raw:
        if not isinstance(raw["roles"], dict) or not raw["roles"]:
            raise ValueError(f"{at}.roles must be a non-empty map of role: {{columns, values}}, not {raw['roles']!r}")
        for role, spec in raw["roles"].items():
            check_identifier(role, f"{at}.roles: role name")
            if not isinstance(spec, dict) or set(spec) - {"columns", "values"}:
                raise ValueError(f"{at}.roles.{role} must be a map with columns and values, not {spec!r}")
            values = _str_map(f"{at}.roles.{role}.values", spec.get("values") or {})
            for name in values:
                _one_of(name, PERSON_ROLES, f"{at}.roles.{role}.values: role {name!r}")
            roles[role] = PersonRole(
                columns=_role_columns(f"{at}.roles.{role}.columns", spec.get("columns") or {}, delivered),
                values=values)
    maps = {name: None if raw.get(name) is None else _str_map(f"{at}.{name}", raw[name])
            for name in ("marital_map", "education_map", "registration_map")}
    formats = raw.get("date_formats")
    if formats is not None and (not isinstance(formats, list) or not formats
                                or not all(isinstance(f, str) and f for f in formats)):
        raise ValueError(f"{at}.date_formats must be a non-empty list of date patterns, not {formats!r}")
    relationships = raw.get("relationships") or []
    if not isinstance(relationships, list):
        raise ValueError(f"{at}.relationships must be a list, not {relationships!r}")
    return UnifiedRules(
        entity=entity, priority=priority, record_key=tuple(record_key), watermark=mark, columns=columns,
        roles=roles, sex_map=_str_map(f"{at}.sex_map", raw.get("sex_map") or {}),
        marital_map=maps["marital_map"], education_map=maps["education_map"],
        registration_map=maps["registration_map"], date_formats=None if formats is None else tuple(formats),
        relationships=tuple(_parse_relationship(f"{at}.relationships[{i}]", r, roles, delivered)
                            for i, r in enumerate(relationships)))


def _parse_relationship(at: str, raw: Any, roles: dict[str, PersonRole],
                        delivered: tuple[str, ...]) -> RelationshipRule:
    """One ``unified.relationships`` entry: its type, two of the object's roles, basis and validity columns."""
    fields = ("relationship", "from", "to", "basis", "valid_from", "valid_to")
    if not isinstance(raw, dict) or set(raw) - set(fields):
        raise ValueError(f"{at} must be a map of {', '.join(fields)}, not {raw!r}")
    relationship = _one_of(raw.get("relationship"), RELATIONSHIP_TYPES, f"{at}.relationship")
    ends = []
    for end in ("from", "to"):
        if raw.get(end) not in roles:
            raise ValueError(f"{at}.{end} must be a role of unified.roles ({', '.join(roles) or 'none'}), "
                             f"not {raw.get(end)!r}")
        ends.append(raw[end])
    basis = raw.get("basis")
    if basis is not None and not isinstance(basis, str):
        raise ValueError(f"{at}.basis must be text, not {basis!r}")
    for name in ("valid_from", "valid_to"):
        if raw.get(name) is not None and raw[name] not in delivered:
            raise ValueError(f"{at}.{name}: {raw[name]!r} is not a delivered column ({', '.join(delivered)})")
    return RelationshipRule(relationship=relationship, from_role=ends[0], to_role=ends[1], basis=basis,
                            valid_from=raw.get("valid_from"), valid_to=raw.get("valid_to"))


def _parse_types(where: str, types: Any, columns: tuple[str, ...]) -> dict[str, str]:
    """An object's ``types`` map (raw column -> one of :data:`COLUMN_TYPES`), each column a registered one."""
    if types is None:
        return {}
    if not isinstance(types, dict):
        raise ValueError(f"types of {where} must be a map of column: type, not {types!r}")
    for column, kind in types.items():
        if column not in columns:
            raise ValueError(f"types of {where} name {column!r}, not a column of {where} ({', '.join(columns)})")
        _one_of(kind, COLUMN_TYPES, f"type of {where}.{column}")
    return dict(types)


def _parse_subscription(source: str, raw: dict[str, Any]) -> Subscription:
    where = f"subscription of {source}"
    name = check_identifier(raw["name"], f"{where}: name")
    layer, _, table = str(raw["dataset"]).partition(".")
    check_identifier(layer, f"{where} {name}: dataset layer")
    check_identifier(table, f"{where} {name}: dataset table")
    columns = tuple(check_identifier(c, f"{where} {name}: column") for c in raw["columns"])
    if not columns:
        raise ValueError(f"{where} {name}: columns must not be empty")
    date_column = raw.get("date_column")
    if date_column:
        check_identifier(date_column, f"{where} {name}: date_column")
    return Subscription(name=name, dataset=f"{layer}.{table}", columns=columns, where=raw.get("where"),
                        date_column=date_column)


# --- windows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """The extraction window of a logical date: ``[start, end)``, timezone-aware instants.

    Attributes:
        logical_date: the business day (Asia/Shanghai) the batch belongs to.
        start, end: the data interval; for the daily schedule the business day 00:00 to the next
            day's 00:00, Asia/Shanghai.
        full: read every row whose watermark is before ``end`` (first run, backfill, snapshot
            mode) instead of ``[start, end)``.
    """

    logical_date: date
    start: datetime
    end: datetime
    full: bool = False

    @classmethod
    def for_date(cls, logical_date: date, full: bool = False) -> Window:
        """Window of the business day ``logical_date`` (00:00 to next day's 00:00, Asia/Shanghai)."""
        tz = ZoneInfo(TIME_ZONE)
        start = datetime.combine(logical_date, time(0), tzinfo=tz)
        return cls(logical_date, start, start + timedelta(days=1), full)

    @classmethod
    def for_interval(cls, start: datetime, end: datetime, full: bool = False) -> Window:
        """Window of an Airflow data interval; the logical date is the Asia/Shanghai date of ``start``.

        Raises:
            ValueError: naive datetimes, or ``end`` not after ``start``.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("a data interval needs timezone-aware instants")
        if not end > start:
            raise ValueError(f"data interval end {end} is not after its start {start}")
        tz = ZoneInfo(TIME_ZONE)
        # plain datetimes (Airflow hands pendulum objects)
        s = datetime.fromtimestamp(start.timestamp(), tz)
        e = datetime.fromtimestamp(end.timestamp(), tz)
        return cls(s.date(), s, e, full)

    def whole(self) -> Window:
        """The same window read whole (every row before ``end``)."""
        return replace(self, full=True)

    @property
    def mode(self) -> str:
        """``full`` or ``incremental`` (recorded in the exchange ledger)."""
        return "full" if self.full else "incremental"

    def local_text(self, instant: datetime) -> str:
        """``instant`` as Asia/Shanghai wall-clock text ``YYYY-MM-DD HH:MM:SS`` (SQLite watermarks)."""
        return instant.astimezone(ZoneInfo(TIME_ZONE)).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Extracted:
    """What a reader delivers for one object and window.

    Attributes:
        frame: delivered columns (STRING) + ``_row_number`` LONG.
        rows_source: rows the source holds in the window, counted independently of the read
            (SQL ``count(*)``, MongoDB ``count_documents``, manifest rows), or None when unknown.
        rejected: rows refused at parse, ``(row number, reason)``; not in ``frame``.
        details: JSON-safe facts for the ledger (files with SHA-256, detected encoding, format;
            JDBC partitions).
        staging: a temporary storage path the frame reads from (deleted after the raw write).
    """

    frame: DataFrame
    rows_source: int | None = None
    rejected: list[tuple[int, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    staging: str | None = None

# --- connections -------------------------------------------------------------------------------------

def connection_uri(spec: SourceSpec, env: Mapping[str, str] | None = None) -> str:
    """The URI of ``spec``'s Airflow connection, resolved the way Airflow resolves it.

    With Airflow installed, through ``airflow.sdk.BaseHook.get_connection``: inside a task that is the
    configured secrets backends, the ``AIRFLOW_CONN_<CONNECTION_ID>`` variables and the connections defined in the
    UI (the metadata database, through the execution API); outside a task (the CLI), the variables and the
    configured secrets backends. Without Airflow (a job under ``spark-submit`` on a cluster), or when ``env`` is
    given, the variable ``AIRFLOW_CONN_<CONNECTION_ID>`` of ``env`` only.

    Airflow's connection types come back as URI schemes the readers know: ``postgres`` → ``postgresql``,
    ``mongo`` → ``mongodb`` (login and password stay percent-encoded, as in any URI).

    Raises:
        SourceUnavailable: no such connection (names the source, the connection and the variable).
    """
    conn_id = spec.connection_id or ""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    uri = env.get(var) if env is not None else _airflow_connection_uri(conn_id)
    if not uri:
        raise SourceUnavailable(f"source {spec.source}: connection {spec.connection_id!r} is not configured "
                                f"(no Airflow connection or secrets backend defines it, and {var} is unset)")
    return _normalise_scheme(uri)


def _airflow_connection_uri(conn_id: str) -> str | None:
    """``conn_id``'s URI from Airflow's connection API, or from ``AIRFLOW_CONN_*`` when Airflow is not installed."""
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    try:
        return BaseHook.get_connection(conn_id).get_uri()
    except AirflowNotFoundException:
        return None


_SCHEMES = {"postgres": "postgresql", "mongo": "mongodb"}


def _normalise_scheme(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    return f"{_SCHEMES.get(scheme, scheme)}{sep}{rest}"


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _sqlalchemy_url(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


# --- readers -----------------------------------------------------------------------------------------

#: Rows per JDBC partition (partitions are balanced by row count) and the most partitions per read.
JDBC_ROWS_PER_PARTITION = 250_000
JDBC_MAX_PARTITIONS = 8
#: Rows fetched per round trip by the PostgreSQL JDBC driver (bounded executor memory).
JDBC_FETCHSIZE = 10_000
#: Server memory for each partition's sort by the business key (PostgreSQL ``work_mem``; beyond it the
#: server sorts on disk, so this bounds speed, not correctness).
JDBC_WORK_MEM = "64MB"
#: Words of the error a JDBC partition raises when it delivers more rows than the plan counted.
OVER_DELIVERY = "delivered more rows than the"
#: Documents per cursor batch and per staged chunk (bounded driver memory).
MONGO_BATCH_SIZE = 1_000
MONGO_CHUNK_DOCS = 20_000


def _string_frame(spark: SparkSession, columns: list[str], rows: list[tuple]) -> DataFrame:
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField(c, StringType()) for c in columns]
                        + [StructField("_row_number", LongType(), False)])
    return spark.createDataFrame([(*row, i) for i, row in enumerate(rows, start=1)], schema)


def _numbered_frame(spark: SparkSession, columns: list[str], rows: list[tuple]) -> DataFrame:
    """Rows already carrying their row number as the last element."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField(c, StringType()) for c in columns]
                        + [StructField("_row_number", LongType(), False)])
    return spark.createDataFrame(rows, schema)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def _object_columns(spec: SourceSpec, obj: ObjectSpec) -> tuple[str, list[str], str]:
    table = check_identifier(obj.name, "table")
    columns = [check_identifier(c, f"column of {spec.source}.{table}") for c in obj.columns]
    for c in obj.business_key:
        check_identifier(c, f"business key of {spec.source}.{table}")
    if obj.watermark:
        check_identifier(obj.watermark, f"watermark of {spec.source}.{table}")
    return table, columns, ", ".join(obj.business_key)


def _drift(spec: SourceSpec, table: str, where: str, registered: Iterable[str], present: Iterable[str]) -> None:
    present = list(present)
    missing = [c for c in registered if c not in present]
    if missing:
        extra = [c for c in present if c not in registered]
        hint = f"; columns not in the registry: {extra} (renamed?)" if extra else ""
        raise SchemaDrift(f"source {spec.source}.{table}: registered column(s) {missing} missing in {where}{hint}")


def read_sql_object(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                    window: Window) -> DataFrame:
    """Read one SQL table's window; see :func:`extract_sql_object` (returns its ``frame``)."""
    return extract_sql_object(spark, settings, spec, obj, window).frame


def extract_sql_object(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                       window: Window) -> Extracted:
    """Read one SQL table's rows of ``window`` (by ``obj.watermark``; the whole table without one).

    Embedded mode reads the SQLite file with SQLAlchemy (watermarks are ``YYYY-MM-DD HH:MM:SS``
    Asia/Shanghai text). Servers mode reads PostgreSQL with Spark JDBC: every column cast to text on
    the server (``numeric`` beyond 38 digits stays exact), partitions balanced by row count
    (quantiles of the first business-key column, one partition per 250,000 rows, at most 8, plus one
    for NULL keys), each partition one JDBC query over a key range (``key >= lo AND key < hi``, so the
    server can walk the business-key index in order instead of scanning and sorting the table per
    partition), ``fetchsize`` 10,000 (the driver streams, memory per task bounded by one fetch),
    session time zone Asia/Shanghai, ``work_mem`` 64 MB for the server's per-partition sort. Row
    numbers are computed by the server per partition (``row_number()`` in key order) plus the rows of
    the partitions before it.

    Every partition carries the row count the plan saw for it: a partition that delivers more rows
    than counted (rows added to the window during the read) fails its Spark task with
    ``[USER_RAISED_EXCEPTION] source <s>.<t>: partition <i> delivered more rows than counted``
    before anything is written; fewer rows are caught by the reconciliation in :mod:`govlake.extract.raw`.

    Returns:
        :class:`Extracted`: ``obj.columns`` as STRING + ``_row_number`` LONG, ordered by the business
        key; ``rows_source`` = ``count(*)`` of the window on the server.

    Raises:
        SourceUnavailable: the file, server, database or table cannot be reached, or the login is
            refused (names source, table and address; nothing is written).
        SchemaDrift: a registered column is missing (renamed) in the table.
        ValueError: an identifier of the registry is not a safe identifier.
    """
    table, columns, order = _object_columns(spec, obj)
    if settings.sources_mode == "embedded":
        return _extract_sqlite(spark, settings, spec, obj, window, table, columns, order)

    from pyspark.sql import functions as F

    uri = connection_uri(spec)
    schema = check_identifier(spec.db_schema or spec.source, "db_schema")
    start = window.start.isoformat(sep=" ")
    end = window.end.isoformat(sep=" ")
    cond = "TRUE"
    if obj.watermark:
        cond = f"{obj.watermark} < TIMESTAMPTZ '{end}'"
        if not window.full:
            cond = f"{obj.watermark} >= TIMESTAMPTZ '{start}' AND " + cond
    split = obj.business_key[0]
    plan = _plan_sql(spec, table, uri, schema, columns, split, cond)
    parts = urlsplit(uri)
    jdbc_url = f"jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
    select = ", ".join(f"{c}::text AS {c}" for c in columns)
    properties = {"user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
                  "driver": "org.postgresql.Driver", "fetchsize": str(JDBC_FETCHSIZE),
                  "sessionInitStatement": f"SET TIME ZONE '{TIME_ZONE}'; SET work_mem = '{JDBC_WORK_MEM}'"}
    frame, offset = None, 0
    for i, (predicate, count) in enumerate(zip(plan["predicates"], plan["counts"], strict=False)):
        dbtable = (f"(SELECT {select}, row_number() OVER (ORDER BY {order}) AS __govlake_rn "
                   f"FROM {schema}.{table} WHERE {cond} AND {predicate}) q")
        part = spark.read.jdbc(jdbc_url, dbtable, properties=properties)
        rn = F.col("__govlake_rn")
        number = (F.when(rn > F.lit(count), F.raise_error(F.lit(
            f"source {spec.source}.{table}: partition {i} {OVER_DELIVERY} {count} counted for the "
            "window (the source changed during the read); nothing was written")))
            .otherwise(rn + F.lit(offset)).cast("long").alias("_row_number"))
        part = part.select(*columns, number)
        frame = part if frame is None else frame.unionAll(part)
        offset += count
    failpoint("extract.reading")  # counted; the rows are read when the batch is written
    assert frame is not None  # the plan always has at least one predicate
    return Extracted(frame, rows_source=offset, details={"jdbc_partitions": plan["counts"], "mode": window.mode})


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _plan_sql(spec: SourceSpec, table: str, uri: str, schema: str, columns: list[str], split_column: str,
              cond: str) -> dict[str, Any]:
    """Check server, table and columns; count the window and choose row-count-balanced partitions.

    Returns:
        ``{"predicates": SQL conditions on ``split_column``, one per partition (key ranges between
        the quantile bounds, then ``IS NULL``), "counts": rows of the window per partition}``.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(_sqlalchemy_url(uri), connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SET TIME ZONE '{TIME_ZONE}'"))
            exists = conn.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"),
                                  {"name": f"{schema}.{table}"}).scalar()
            if not exists:
                raise SourceUnavailable(f"source {spec.source}.{table}: table {schema}.{table} does not exist "
                                        f"at {_redact(uri)}")
            present = [r[0] for r in conn.execute(sa.text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
                "ORDER BY ordinal_position"), {"s": schema, "t": table})]
            _drift(spec, table, f"{schema}.{table} at {_redact(uri)}", columns, present)
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {schema}.{table} WHERE {cond}")).scalar()
            assert rows is not None  # count(*) always returns a row
            n = max(1, min(JDBC_MAX_PARTITIONS, -(-rows // JDBC_ROWS_PER_PARTITION)))
            if n == 1:
                return {"predicates": ["TRUE"], "counts": [rows]}
            fractions = ", ".join(f"{k / n:.6f}" for k in range(1, n))
            bounds = conn.execute(sa.text(
                f"SELECT (percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY {split_column}))::text[] "
                f"FROM {schema}.{table} WHERE {cond} AND {split_column} IS NOT NULL")).scalar() or []
            bounds = sorted({b for b in bounds if b is not None}, key=bounds.index)
            key = split_column
            edges = [None, *bounds, None]
            predicates = []
            for lo, hi in zip(edges, edges[1:], strict=False):
                terms = ([f"{key} >= {_sql_literal(lo)}"] if lo is not None else [f"{key} IS NOT NULL"]) + \
                        ([f"{key} < {_sql_literal(hi)}"] if hi is not None else [])
                predicates.append(" AND ".join(terms))
            predicates.append(f"{key} IS NULL")
            cases = " ".join(f"WHEN {p} THEN {i}" for i, p in enumerate(predicates))
            counted: dict[int, int] = dict(conn.execute(sa.text(
                f"SELECT CASE {cases} END AS b, count(*) FROM {schema}.{table} WHERE {cond} GROUP BY 1")).all())
            return {"predicates": predicates, "counts": [int(counted.get(i, 0)) for i in range(len(predicates))]}
    except sa.exc.SQLAlchemyError as exc:
        raise SourceUnavailable(f"source {spec.source}.{table}: cannot connect to {_redact(uri)} "
                                f"or read {schema}.{table}: "
                                f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()


def _extract_sqlite(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window,
                    table: str, columns: list[str], order: str) -> Extracted:
    import sqlalchemy as sa

    path = settings.sources_dir / (spec.embedded or f"{spec.source}.sqlite")
    if not path.is_file():
        raise SourceUnavailable(f"source {spec.source}.{table}: embedded database {path} does not exist "
                                "(generate the sample with `python -m sample.generate`)")
    select = ", ".join(f'CAST("{c}" AS TEXT)' for c in columns)
    where = ""
    if obj.watermark:
        where = f'WHERE "{obj.watermark}" < :end' + ("" if window.full else f' AND "{obj.watermark}" >= :start')
    sql = sa.text(f'SELECT {select} FROM "{table}" {where} ORDER BY {order}')
    params = {"end": window.local_text(window.end), "start": window.local_text(window.start)}
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            present = [r[1] for r in conn.execute(sa.text(f'PRAGMA table_info("{table}")'))]
            if not present:
                raise SourceUnavailable(f"source {spec.source}.{table}: table {table} does not exist in {path}")
            _drift(spec, table, f"{path}", columns, present)
            rows = [tuple(_text(v) for v in r) for r in conn.execute(sql, params)]
    except sa.exc.SQLAlchemyError as exc:
        raise SourceUnavailable(f"source {spec.source}.{table} ({path}): {exc.__class__.__name__}: "
                                f"{cast(sa.exc.DBAPIError, exc).orig}") from exc
    finally:
        engine.dispose()
    return Extracted(_string_frame(spark, columns, rows), rows_source=len(rows), details={"mode": window.mode})


def document_id_text(value: Any) -> str:
    """Text form of a document ``_id`` that keeps ObjectId and string ids distinct.

    ``ObjectId('65ab…')`` -> ``'ObjectId(65ab…)'``; any other id -> its relaxed Extended JSON,
    so the string ``"65ab…"`` becomes ``'"65ab…"'`` and the integer 7 becomes ``'7'``.
    """
    from bson import ObjectId, json_util

    if isinstance(value, ObjectId):
        return f"ObjectId({value})"
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS)


def _document_row(d: dict) -> tuple[str, str]:
    from bson import json_util

    return (document_id_text(d.get("_id")),
            json_util.dumps(d, json_options=json_util.RELAXED_JSON_OPTIONS, ensure_ascii=False))


def projection_paths(path: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The JSON paths of one projection entry (one path, or a list tried in order), as a tuple.

    Raises:
        ValueError: no path, or a path that does not start with ``$.``.
    """
    paths = (path,) if isinstance(path, str) else tuple(path)
    if not paths or not all(isinstance(p, str) and p.startswith("$.") for p in paths):
        raise ValueError(f"projection path(s) {path!r}: each must be a JSON path starting with '$.'")
    return paths


def _project(df: DataFrame, obj: ObjectSpec) -> DataFrame:
    """``_id``, ``document`` -> + projection columns + ``_row_number`` in ``_id`` text order."""
    from pyspark.sql import Window as W
    from pyspark.sql import functions as F

    projected = [F.coalesce(*[F.get_json_object("document", p) for p in projection_paths(path)]).alias(column)
                 for column, path in obj.projection.items()]
    number = F.row_number().over(W.orderBy("_id")).cast("long").alias("_row_number")
    return df.select("_id", "document", *projected, number)


def documents_to_frame(spark: SparkSession, obj: ObjectSpec, documents: Iterable[dict]) -> DataFrame:
    """Turn documents (held in memory: small inputs and tests) into a raw frame.

    Returns:
        DataFrame with columns ``_id`` STRING (see :func:`document_id_text`), ``document`` STRING
        (the whole document as relaxed MongoDB Extended JSON: ObjectId and dates keep their types;
        unknown fields are kept here), then one STRING column per ``obj.projection`` entry (scalar
        values as text, objects and arrays as JSON text, so a field whose type drifts is never
        turned into a silent NULL), and ``_row_number`` LONG in ``_id`` text order.
    """
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField("_id", StringType()), StructField("document", StringType())])
    return _project(spark.createDataFrame([_document_row(d) for d in documents], schema), obj)


def _stage_documents(spark: SparkSession, obj: ObjectSpec, documents: Iterable[dict],
                     staging: str) -> tuple[DataFrame, int]:
    """Write documents to Parquet at ``staging`` in chunks of :data:`MONGO_CHUNK_DOCS` (the driver
    never holds more than one chunk) and return (frame as in :func:`documents_to_frame`, count)."""
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField("_id", StringType()), StructField("document", StringType())])
    chunk: list[tuple[str, str]] = []
    n, written = 0, False

    def flush():
        nonlocal chunk, written
        spark.createDataFrame(chunk, schema).write.mode("append" if written else "overwrite").parquet(staging)
        chunk, written = [], True

    for d in documents:
        chunk.append(_document_row(d))
        n += 1
        if n == 1:
            failpoint("extract.reading")
        if len(chunk) >= MONGO_CHUNK_DOCS:
            flush()
    if chunk or not written:
        flush()
    return _project(spark.read.schema(schema).parquet(staging), obj), n


def staging_path(settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window) -> str:
    """Temporary storage of a batch being extracted (not a lakehouse layer; deleted after the write)."""
    return settings.table_path("_staging", f"{spec.source}_{obj.name}_{window.logical_date.isoformat()}")


def read_mongo_object(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                      window: Window) -> DataFrame:
    """Read one document collection's window; see :func:`extract_mongo_object` (returns its ``frame``)."""
    return extract_mongo_object(spark, settings, spec, obj, window).frame


def _in_window(value: Any, start_utc: datetime | None, end_utc: datetime) -> bool:
    """Embedded exports: a document's watermark is in the window; a missing or non-date watermark
    counts only in a full read (documented: such a document cannot be placed in a day)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
        return value < end_utc and (start_utc is None or value >= start_utc)
    return start_utc is None


def extract_mongo_object(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                         window: Window) -> Extracted:
    """Read the documents of ``window`` (by ``obj.watermark``, a BSON date compared as an instant).

    Embedded mode reads the JSON-lines export line by line; servers mode streams the collection
    with pymongo (cursor ``batch_size`` 1,000, ``_id`` order) from the database named in the
    connection URI's path (``mongodb://host/n1_wangge``), else the registry's ``database``, else the
    source name. Either way documents are written to
    a staging Parquet folder in chunks of 20,000, so the driver's memory is bounded by a chunk.
    A full read also keeps documents whose watermark is missing (embedded) — servers mode reads
    only documents with a date watermark (BSON comparison), and counts them with
    ``count_documents`` for reconciliation.

    Returns:
        :class:`Extracted` whose frame is as described in :func:`documents_to_frame`.

    Raises:
        SourceUnavailable: file or server unreachable, login refused (names source, collection, address).
        SourceError: a line of the export is not Extended JSON (names the line).
    """
    from bson import json_util

    end_utc = window.end.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    start_utc = None if window.full else window.start.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    staging = staging_path(settings, spec, obj, window)
    if settings.sources_mode == "embedded":
        path = settings.sources_dir / (spec.embedded or f"{spec.source}.jsonl")
        if not path.is_file():
            raise SourceUnavailable(f"source {spec.source}.{obj.name}: embedded export {path} does not exist "
                                    "(generate the sample with `python -m sample.generate`)")
        docs = []
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    doc = json_util.loads(line)
                except (ValueError, TypeError) as exc:
                    raise SourceError(f"source {spec.source}.{obj.name}: line {line_no} of {path} "
                                      f"is not Extended JSON: {exc}") from exc
                if (_in_window(doc.get(obj.watermark) if obj.watermark else None, start_utc, end_utc)
                        or not obj.watermark):
                    docs.append(doc)
        # the embedded export is small: held in memory, like the SQLite reader
        return Extracted(documents_to_frame(spark, obj, docs), rows_source=len(docs), details={"mode": window.mode})

    import pymongo
    from pymongo.errors import PyMongoError

    uri = connection_uri(spec)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000,
                                                                       tz_aware=False)
    try:
        # the connection's database (URI path) if it names one, else the registry's
        collection = client.get_default_database(spec.database or spec.source)[obj.name]
        query = {}
        if obj.watermark:
            query = {obj.watermark: {"$lt": end_utc} if start_utc is None else {"$gte": start_utc, "$lt": end_utc}}
        expected = collection.count_documents(query)
        cursor = collection.find(query, batch_size=MONGO_BATCH_SIZE).sort("_id", 1)
        frame, n = _stage_documents(spark, obj, cursor, staging)
    except PyMongoError as exc:
        raise SourceUnavailable(f"source {spec.source}.{obj.name}: cannot read from {_redact(uri)}: "
                                f"{str(exc).splitlines()[0][:300]}") from exc
    finally:
        client.close()
    if n != expected:
        raise SourceError(f"source {spec.source}.{obj.name}: the cursor returned {n} documents, "
                          f"count_documents said {expected} (collection changed during the read?)")
    return Extracted(frame, rows_source=expected, details={"mode": window.mode}, staging=staging)


# --- file drops --------------------------------------------------------------------------------------

#: File formats of a drop, by manifest ``format`` or file suffix.
DROP_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".xlsx": "xlsx"}


def detect_encoding(data: bytes) -> tuple[str, str]:
    """Decode a text file strictly: UTF-8 with a BOM, else UTF-8, else GB18030 (a superset of GBK and
    GB2312, which are never guessed on their own).

    Returns:
        ``(text, encoding)`` with encoding ``utf-8-sig``, ``utf-8`` or ``gb18030``.

    Raises:
        UnicodeDecodeError: the bytes are valid in none of them.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    try:
        return data.decode("utf-8", errors="strict"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="strict"), "gb18030"


def _drop_entry(manifest: dict, obj: ObjectSpec) -> dict | None:
    name = obj.file or f"{obj.name}.csv"
    stem = Path(name).stem
    entries = manifest.get("files", [])
    exact = next((f for f in entries if f.get("name") == name), None)
    return exact or next((f for f in entries if Path(str(f.get("name"))).stem == stem
                          and Path(str(f.get("name"))).suffix in DROP_FORMATS), None)


def drop_listing(settings: Settings, spec: SourceSpec, obj: ObjectSpec, logical_date: date) -> dict | None:
    """The manifest entry of ``obj`` in the department's drop for ``logical_date`` (``{"name", "sha256", ...}``),
    None when there is no drop or it does not list the object: what a delivery of the file is, without reading it
    (a changed entry is the department's redelivery)."""
    spec = effective_spec(spec, obj)
    manifest_path = (settings.sources_dir / (spec.inbox or f"inbox/{spec.source}") / logical_date.isoformat()
                     / "manifest.json")
    if not manifest_path.is_file():
        return None
    try:
        return _drop_entry(json.loads(manifest_path.read_text(encoding="utf-8")), obj)
    except ValueError:
        return None


def _confine(where: str, manifest_path: Path, manifest: dict) -> None:
    """Every file the manifest names must resolve inside the drop folder (``..``, an absolute path or a
    symlink pointing elsewhere would load a file the department did not drop).

    Raises:
        ManifestMismatch: names the manifest and the offending name.
    """
    drop = manifest_path.parent
    inside = drop.resolve()
    for entry in manifest.get("files", []):
        name = entry.get("name") if isinstance(entry, dict) else entry
        try:
            confined = (drop / str(name)).resolve().is_relative_to(inside)
        except (OSError, RuntimeError):  # a symlink loop
            confined = False
        if not confined:
            raise ManifestMismatch(f"{where}: manifest {manifest_path} names {name!r}, which resolves outside "
                                   f"the drop folder {drop}: rejected")


def read_file_drop(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                   window: Window) -> DataFrame:
    """Read one file of a drop; see :func:`extract_file_drop` (returns its ``frame``)."""
    return extract_file_drop(spark, settings, spec, obj, window).frame


def extract_file_drop(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                      window: Window) -> Extracted:
    """Read one file of the department's drop for ``window.logical_date``.

    The drop is ``<sources_dir>/<inbox>/<YYYY-MM-DD>/`` with a ``manifest.json``::

        {"files": [{"name": "messages.csv", "sha256": "...", "rows": 431, "encoding": "utf-8",
                    "format": "csv"}]}

    The registry's ``file`` names the file; a file with the same stem and another known suffix
    (``.csv``, ``.jsonl``, ``.xlsx``) is accepted, its format taken from the manifest's ``format``
    (``csv``, ``csv-gbk``, ``jsonl``, ``xlsx``) or the suffix. The SHA-256 and the data-row count must
    match the manifest, and every name the manifest lists must resolve inside the drop folder (``..``,
    absolute paths and symlinks followed). Text files are decoded by :func:`detect_encoding` (strict; the detected
    encoding is recorded); a manifest declaring UTF-8 for bytes that are not UTF-8 is a mismatch.
    A CSV or JSON-lines file must end with a line end (else it is truncated). Every value is text
    exactly as delivered: CSV empty field -> NULL; JSON numbers keep their literal text, and a nested
    JSON object or array its delivered JSON text; Excel cells are read as text, and a cell the
    column's registry type (:meth:`ObjectSpec.column_type`) does not take rejects that row at parse
    with a reason naming the column: a *number* cell outside an ``integer`` / ``decimal`` column (Excel
    may have lost leading zeros or digits beyond 15), a *date* cell outside a ``date`` / ``timestamp``
    column. Date cells are written ``YYYY-MM-DD HH:MM:SS`` (``YYYY-MM-DD`` in a ``date`` column when the
    time is midnight). Headers (JSON keys) are renamed by the registry's ``columns`` map; a header that
    differs from the registry rejects the file.

    Returns:
        :class:`Extracted`: raw columns as STRING + ``_row_number`` (data row number in the file);
        ``rows_source`` = manifest rows; ``details["files"]`` = [{name, sha256, encoding, format, rows}].

    Raises:
        SourceUnavailable: the drop or manifest is missing.
        ManifestMismatch: checksum, row count, encoding, truncation, a file name resolving outside the
            drop folder (file rejected whole).
        SchemaDrift: the header / keys differ from the registry.
    """
    drop = settings.sources_dir / (spec.inbox or f"inbox/{spec.source}") / window.logical_date.isoformat()
    manifest_path = drop / "manifest.json"
    where = f"source {spec.source}.{obj.name}"
    if not manifest_path.is_file():
        raise SourceUnavailable(f"{where}: no file drop for {window.logical_date} ({manifest_path} missing)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    _confine(where, manifest_path, manifest)
    failpoint("extract.reading")
    entry = _drop_entry(manifest, obj)
    if entry is None:
        raise ManifestMismatch(f"{where}: {obj.file or obj.name} is not listed in {manifest_path}")
    name = entry["name"]
    path = drop / name
    if not path.is_file():
        raise ManifestMismatch(f"{where}: {path} listed in the manifest but missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise ManifestMismatch(f"{where}: {path} SHA-256 {digest} != manifest {entry.get('sha256')}")
    fmt = {"csv-gbk": "csv"}.get(entry.get("format") or "", entry.get("format")) or DROP_FORMATS.get(path.suffix)
    if fmt not in ("csv", "jsonl", "xlsx"):
        raise ManifestMismatch(f"{where}: {path} has unknown format {entry.get('format')!r} "
                               "(csv, csv-gbk, jsonl, xlsx)")
    expected = list(obj.header_map) if obj.header_map else list(obj.columns)
    encoding = None
    if fmt == "xlsx":
        rows, rejected = _parse_xlsx(where, path, data, expected, obj)
    else:
        declared = (entry.get("encoding") or "").lower().replace("_", "-")
        try:
            text, encoding = detect_encoding(data)
        except UnicodeDecodeError as exc:
            raise ManifestMismatch(f"{where}: {path} is neither UTF-8 nor GB18030 text: {exc}") from exc
        if declared in ("utf-8", "utf8", "utf-8-sig") and encoding == "gb18030":
            raise ManifestMismatch(f"{where}: {path} is not valid utf-8 as its manifest says "
                                   "(it decodes as GB18030): rejected")
        if text and not text.endswith(("\n", "\r")):
            raise ManifestMismatch(f"{where}: {path} is truncated (no line end after its last line)")
        parse = _parse_csv if fmt == "csv" else _parse_jsonl
        rows, rejected = parse(spec, obj, where, path, text, expected)
    declared_rows = int(entry.get("rows", -1))
    if len(rows) + len(rejected) != declared_rows:
        raise ManifestMismatch(f"{where}: {path} has {len(rows) + len(rejected)} rows, "
                               f"manifest says {entry.get('rows')}")
    columns = [obj.header_map.get(h, h) for h in expected]
    info = {"name": name, "sha256": digest, "encoding": encoding, "format": fmt, "rows": declared_rows}
    return Extracted(_numbered_frame(spark, columns, rows), rows_source=declared_rows, rejected=rejected,
                     details={"mode": "drop", "files": [info]})


def _parse_csv(spec, obj, where, path, text, expected):
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, [])
        if header != expected:
            raise SchemaDrift(f"{where}: {path} header {header} != registered {expected}")
        rows = []
        for number, row in enumerate(reader, start=1):
            if len(row) != len(header):
                raise ManifestMismatch(f"{where}: {path} line {reader.line_num} has {len(row)} fields, "
                                       f"header has {len(header)}")
            rows.append((*(v if v != "" else None for v in row), number))
    except csv.Error as exc:
        raise ManifestMismatch(f"{where}: {path} is not well-formed CSV near line {reader.line_num}: {exc}") from exc
    return rows, []


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


#: Numbers (and NaN / Infinity) keep their literal text.
_LITERAL_JSON = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _space_end(line: str, pos: int) -> int:
    """The end of the JSON whitespace (possibly none) at ``pos``."""
    m = _JSON_SPACE.match(line, pos)
    assert m is not None  # the pattern matches the empty string
    return m.end()


def _delivered_members(line: str) -> dict[str, Any]:
    """The members of a JSON object ``line`` (already known to be valid): scalars decoded (numbers as
    their literal text), nested objects and arrays as the exact delivered JSON substring."""
    from json.decoder import scanstring  # type: ignore[attr-defined]  # missing from typeshed's json.decoder

    members = {}
    i = _space_end(line, _space_end(line, 0) + 1)  # after '{'
    while line[i] == '"':
        key, i = scanstring(line, i + 1)
        i = _space_end(line, _space_end(line, i) + 1)  # after ':'
        value, end = _LITERAL_JSON.raw_decode(line, i)
        members[key] = line[i:end] if isinstance(value, (dict, list)) else value  # the last of a repeated key wins
        i = _space_end(line, end)
        i = _space_end(line, i + 1) if line[i] == "," else i
    return members


def _parse_jsonl(spec, obj, where, path, text, expected):
    rows = []
    known = set(expected)
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            doc = _LITERAL_JSON.decode(line)
        except ValueError as exc:
            raise ManifestMismatch(f"{where}: {path} line {number} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ManifestMismatch(f"{where}: {path} line {number} is not a JSON object")
        unknown = [k for k in doc if k not in known]
        if unknown:
            raise SchemaDrift(f"{where}: {path} line {number} has key(s) {unknown} not in the registry {expected}")
        if any(isinstance(v, (dict, list)) for v in doc.values()):
            doc = _delivered_members(line)  # nested values as delivered, not re-serialised
        rows.append((*(_json_text(doc.get(h)) for h in expected), number))
    return rows, []


def _parse_xlsx(where, path, data, expected, obj):
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ManifestMismatch(f"{where}: {path} is not a readable .xlsx workbook (truncated?): {exc}") from exc
    try:
        sheet = wb.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        header = [("" if v is None else str(v)) for v in next(values, ())]
        while header and header[-1] == "":
            header.pop()
        if header != expected:
            raise SchemaDrift(f"{where}: {path} header {header} != registered {expected}")
        columns = [obj.header_map.get(h, h) for h in expected]
        types = [obj.column_type(c) for c in columns]
        rows, rejected = [], []
        number = 0
        for cells in values:
            cells = list(cells)[:len(expected)] + [None] * max(0, len(expected) - len(cells))
            if all(c is None or c == "" for c in cells):
                continue  # openpyxl reports formatted but empty rows
            number += 1
            bad = [_cell_refused(c, h, col, t) for c, h, col, t in zip(cells, expected, columns, types, strict=False)]
            bad = [b for b in bad if b]
            if bad:
                rejected.append((number, "; ".join(bad)))
                continue
            rows.append((*(_cell_text(c, t) for c, t in zip(cells, types, strict=False)), number))
    finally:
        wb.close()
    return rows, rejected


def _cell_refused(value: Any, header: str, column: str, column_type: str) -> str | None:
    """Why an Excel cell cannot be taken as delivered text in a column of ``column_type``, or None: a number
    cell outside a numeric column (Excel drops leading zeros and digits beyond 15), a date cell outside a
    date column (Excel keeps a serial number, not the text that was typed)."""
    if isinstance(value, bool) or value is None:
        return None
    named = f"{header} ({column}, registry type {column_type})" if header != column else \
        f"{header} (registry type {column_type})"
    if isinstance(value, (int, float)) and column_type not in NUMBER_TYPES:
        return f"number cell in {named}: leading zeros or digits may be lost"
    if isinstance(value, (date, time, timedelta)) and column_type not in DATE_TYPES:
        return f"date cell in {named}: the delivered text is lost"
    return None


def _cell_text(value: Any, column_type: str = "text") -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if column_type == "date" and value.time() == time(0):
            return value.date().isoformat()
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def effective_spec(spec: SourceSpec, obj: ObjectSpec) -> SourceSpec:
    """``spec`` with the object's overrides (kind, connection_id, database, embedded) applied."""
    return replace(spec, kind=obj.kind or spec.kind, connection_id=obj.connection_id or spec.connection_id,
                   database=obj.database or spec.database, embedded=obj.embedded or spec.embedded)


def extract_object(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                   window: Window) -> Extracted:
    """Dispatch to the extractor of the object's kind (see the extractors above for schemas and errors)."""
    spec = effective_spec(spec, obj)
    extractor = {"sql": extract_sql_object, "mongo": extract_mongo_object, "file_drop": extract_file_drop}[spec.kind]
    return extractor(spark, settings, spec, obj, window)


def read_object(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                window: Window) -> DataFrame:
    """The delivered frame of :func:`extract_object` (columns STRING + ``_row_number`` LONG)."""
    return extract_object(spark, settings, spec, obj, window).frame
