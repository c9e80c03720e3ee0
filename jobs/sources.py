"""Source registry and extraction readers (the edge where departmental data enters GovLake).

The registry is one YAML file per department in ``schemas/sources/`` (see :class:`SourceSpec`).
Readers return a Spark DataFrame of the delivered values **as text** (``StringType``; NULL stays
NULL), one column per delivered column, plus ``_row_number`` (LONG, 1-based position of the row
in the batch, ordered by the business key) so every raw row can be named in an error message.
Types are applied in the unified layer, never here, so no delivered value is lost to a cast.

Connections:

- ``embedded`` mode (the demo default): SQL departments are SQLite files and document
  departments JSON-lines exports under ``Settings.sources_dir``; file drops are under
  ``<sources_dir>/<inbox>/<logical date>/``.
- ``servers`` mode: each source names an Airflow connection id; its URI is read from the
  environment variable ``AIRFLOW_CONN_<ID>`` exactly as Airflow itself reads connections, e.g.
  ``AIRFLOW_CONN_GOVLAKE_HUKOU=postgresql://govlake@127.0.0.1:55432/departments``. PostgreSQL
  is read with Spark JDBC, MongoDB with pymongo.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml

from jobs.config import SCHEMAS_DIR, TIME_ZONE, Settings

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SourceError(RuntimeError):
    """A source cannot be read as registered. The message names the source, object and address."""


class SourceUnavailable(SourceError):
    """A source's server cannot be reached (network, credentials, missing database or file)."""


class ManifestMismatch(SourceError):
    """A file drop does not match its manifest (checksum, row count, missing file): rejected whole."""


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a safe SQL identifier (``[a-z_][a-z0-9_]*``, ≤ 63 chars).

    Identifiers from configuration are validated before they reach SQL text.

    Raises:
        ValueError: naming ``what`` and the offending value.
    """
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(f"{what} {value!r} is not a valid identifier ([a-z_][a-z0-9_]*, at most 63 characters)")
    return value


@dataclass(frozen=True)
class ObjectSpec:
    """One table, collection or file of a source.

    Attributes:
        name: object name (table / collection / file stem), a safe identifier.
        business_key: columns that identify a business record.
        watermark: column whose value orders changes (used for windows), or None.
        columns: delivered columns (SQL: read in this order; file drops: header -> raw name).
        projection: documents only: raw column -> JSON path into the document.
        file: file drops only: the file name in the drop.
        title: Chinese title for the resource catalog.
        unified: how the object feeds the unified layer (entity, priority, column roles, code
            maps, date formats); see ``schemas/sources/hukou.yaml``.
    """

    name: str
    business_key: tuple[str, ...]
    watermark: str | None = None
    columns: tuple[str, ...] = ()
    header_map: dict[str, str] = field(default_factory=dict)
    projection: dict[str, str] = field(default_factory=dict)
    file: str | None = None
    title: str = ""
    unified: dict[str, Any] = field(default_factory=dict)


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
            title=obj.get("title", ""), unified=dict(obj.get("unified") or {}),
        )
    if raw.get("db_schema"):
        check_identifier(raw["db_schema"], "db_schema")
    return SourceSpec(
        source=check_identifier(raw["source"], "source"), department=raw["department"], kind=kind,
        objects=objects, connection_id=raw.get("connection_id"), embedded=raw.get("embedded"),
        db_schema=raw.get("db_schema"), database=raw.get("database"), inbox=raw.get("inbox"),
        sharing_type=raw.get("sharing_type", "conditional"), update_cycle=raw.get("update_cycle", "daily"),
        conventions=raw.get("conventions", ""),
    )


# --- windows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """The extraction window of a logical date: business day ``[start, end)`` in Asia/Shanghai.

    The skeleton reads the snapshot of each object as of ``end`` (every row whose watermark is
    before the window end); ``start`` is recorded in the exchange ledger.
    """

    logical_date: date
    start: datetime
    end: datetime

    @classmethod
    def for_date(cls, logical_date: date) -> "Window":
        """Window of the business day ``logical_date`` (00:00 to next day's 00:00, Asia/Shanghai)."""
        tz = ZoneInfo(TIME_ZONE)
        start = datetime.combine(logical_date, time(0), tzinfo=tz)
        return cls(logical_date, start, start + timedelta(days=1))


# --- connections -------------------------------------------------------------------------------------

def connection_uri(spec: SourceSpec, env: dict[str, str] | None = None) -> str:
    """The URI of ``spec``'s Airflow connection from ``AIRFLOW_CONN_<CONNECTION_ID>``.

    Raises:
        SourceUnavailable: the variable is not set (names the source and the variable).
    """
    env = os.environ if env is None else env
    var = f"AIRFLOW_CONN_{(spec.connection_id or '').upper()}"
    uri = env.get(var)
    if not uri:
        raise SourceUnavailable(f"source {spec.source}: connection {spec.connection_id!r} is not configured ({var} is unset)")
    return uri


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

def _string_frame(spark, columns: list[str], rows: list[tuple]):
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField(c, StringType()) for c in columns] + [StructField("_row_number", LongType(), False)])
    return spark.createDataFrame([(*row, i) for i, row in enumerate(rows, start=1)], schema)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def read_sql_object(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window):
    """Read one SQL table's snapshot as of ``window.end``.

    Embedded mode reads the SQLite file with SQLAlchemy; servers mode reads PostgreSQL with Spark
    JDBC (``fetchsize`` 10,000) and casts every column to text.

    Returns:
        DataFrame: ``obj.columns`` as STRING + ``_row_number`` LONG, ordered by the business key.

    Raises:
        SourceUnavailable: the file, server, database or table cannot be reached (names source,
            table and address; nothing is written).
    """
    table = check_identifier(obj.name, "table")
    columns = [check_identifier(c, f"column of {spec.source}.{table}") for c in obj.columns]
    order = ", ".join(obj.business_key)
    end_text = window.end.strftime("%Y-%m-%d %H:%M:%S")
    if settings.sources_mode == "embedded":
        import sqlalchemy as sa

        path = settings.sources_dir / (spec.embedded or f"{spec.source}.sqlite")
        if not path.is_file():
            raise SourceUnavailable(f"source {spec.source}.{table}: embedded database {path} does not exist "
                                    "(generate the sample with `python -m jobs.sample.generate`)")
        select = ", ".join(f'CAST("{c}" AS TEXT)' for c in columns)
        where = f'WHERE "{obj.watermark}" < :end' if obj.watermark else ""
        sql = sa.text(f'SELECT {select} FROM "{table}" {where} ORDER BY {order}')
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                rows = [tuple(_text(v) for v in r) for r in conn.execute(sql, {"end": end_text})]
        except sa.exc.SQLAlchemyError as exc:
            raise SourceUnavailable(f"source {spec.source}.{table} ({path}): {exc.__class__.__name__}: {exc.orig}") from exc
        finally:
            engine.dispose()
        return _string_frame(spark, columns, rows)

    uri = connection_uri(spec)
    schema = check_identifier(spec.db_schema or spec.source, "db_schema")
    _probe_sql(spec, table, uri, schema)
    parts = urlsplit(uri)
    jdbc_url = f"jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
    where = f"WHERE {obj.watermark} < TIMESTAMP '{end_text}'" if obj.watermark else ""
    # Every column leaves PostgreSQL as its own text rendering: numeric beyond Spark's 38 digits,
    # timestamps and codes arrive exact; the row number is computed by the server.
    select = ", ".join(f"{c}::text AS {c}" for c in columns)
    query = (f"SELECT {select}, row_number() OVER (ORDER BY {order}) AS _row_number "
             f"FROM {schema}.{table} {where}")
    return (spark.read.format("jdbc")
            .option("url", jdbc_url).option("query", query)
            .option("user", parts.username or "").option("password", parts.password or "")
            .option("driver", "org.postgresql.Driver").option("fetchsize", "10000")
            .option("sessionInitStatement", "SET TIME ZONE 'Asia/Shanghai'")
            .load())


def _probe_sql(spec: SourceSpec, table: str, uri: str, schema: str) -> None:
    """Fail fast, with the address, when the server, database or table is not there."""
    import sqlalchemy as sa

    engine = sa.create_engine(_sqlalchemy_url(uri), connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{schema}.{table}"}).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise SourceUnavailable(f"source {spec.source}.{table}: cannot connect to {_redact(uri)}: "
                                f"{str(exc.orig).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()
    if not exists:
        raise SourceUnavailable(f"source {spec.source}.{table}: table {schema}.{table} does not exist at {_redact(uri)}")


def document_id_text(value: Any) -> str:
    """Text form of a document ``_id`` that keeps ObjectId and string ids distinct.

    ``ObjectId('65ab…')`` -> ``'ObjectId(65ab…)'``; any other id -> its relaxed Extended JSON,
    so the string ``"65ab…"`` becomes ``'"65ab…"'`` and the integer 7 becomes ``'7'``.
    """
    from bson import ObjectId, json_util

    if isinstance(value, ObjectId):
        return f"ObjectId({value})"
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS)


def documents_to_frame(spark, obj: ObjectSpec, documents: Iterable[dict]):
    """Turn documents into a raw frame: each document whole plus its typed projection.

    Returns:
        DataFrame with columns ``_id`` STRING (see :func:`document_id_text`), ``document`` STRING
        (the whole document as relaxed MongoDB Extended JSON: ObjectId and dates keep their types),
        then one STRING column per ``obj.projection`` entry (scalar values as text, objects and
        arrays as JSON text, so a field whose type drifts is never turned into a silent NULL), and
        ``_row_number`` LONG in ``_id`` order.
    """
    from bson import json_util
    from pyspark.sql import functions as F

    rows = sorted(((document_id_text(d.get("_id")),
                    json_util.dumps(d, json_options=json_util.RELAXED_JSON_OPTIONS, ensure_ascii=False))
                   for d in documents), key=lambda r: r[0])
    df = _string_frame(spark, ["_id", "document"], rows)
    projected = [F.get_json_object("document", path).alias(column) for column, path in obj.projection.items()]
    return df.select("_id", "document", *projected, "_row_number")


def read_mongo_object(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window):
    """Read one document collection as of ``window.end`` (documents whose watermark is before it).

    Embedded mode reads the JSON-lines export; servers mode streams the collection with pymongo in
    batches of 1,000.

    Returns:
        DataFrame as described in :func:`documents_to_frame`.

    Raises:
        SourceUnavailable: file or server unreachable (names source, collection and address).
    """
    from bson import json_util

    end_utc = window.end.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    if settings.sources_mode == "embedded":
        path = settings.sources_dir / (spec.embedded or f"{spec.source}.jsonl")
        if not path.is_file():
            raise SourceUnavailable(f"source {spec.source}.{obj.name}: embedded export {path} does not exist "
                                    "(generate the sample with `python -m jobs.sample.generate`)")
        docs = []
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    doc = json_util.loads(line)
                except (ValueError, TypeError) as exc:
                    raise SourceError(f"source {spec.source}.{obj.name}: line {line_no} of {path} is not Extended JSON: {exc}") from exc
                if _before(doc.get(obj.watermark) if obj.watermark else None, end_utc):
                    docs.append(doc)
        return documents_to_frame(spark, obj, docs)

    import pymongo
    from pymongo.errors import PyMongoError

    uri = connection_uri(spec)
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=False)
    try:
        collection = client[spec.database or spec.source][obj.name]
        query = {obj.watermark: {"$lt": end_utc}} if obj.watermark else {}
        docs = list(collection.find(query, batch_size=1000).sort("_id", 1))
    except PyMongoError as exc:
        raise SourceUnavailable(f"source {spec.source}.{obj.name}: cannot read from {_redact(uri)}: "
                                f"{str(exc).splitlines()[0][:300]}") from exc
    finally:
        client.close()
    return documents_to_frame(spark, obj, docs)


def _before(value: Any, end_utc: datetime) -> bool:
    """True when a document's watermark is before the window end (a missing watermark counts)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
        return value < end_utc
    return True


def read_file_drop(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window):
    """Read one file of the department's drop for ``window.logical_date``.

    The drop is ``<sources_dir>/<inbox>/<YYYY-MM-DD>/`` with a ``manifest.json``::

        {"files": [{"name": "messages.csv", "sha256": "...", "rows": 431, "encoding": "utf-8"}]}

    The file's SHA-256 and data-row count must match the manifest; it is decoded with the
    manifest's encoding, strictly (a byte sequence invalid in it rejects the file). Every value is
    read as text exactly as delivered (no NA guessing; an empty field is NULL, CSV's only way to
    say missing), and headers are renamed by the registry's ``columns`` map (delivered header ->
    raw column).

    Returns:
        DataFrame: the raw columns as STRING + ``_row_number`` (data row number in the file).

    Raises:
        SourceUnavailable: the drop or manifest is missing.
        ManifestMismatch: checksum, row count, header or encoding do not match (file rejected whole).
    """
    drop = settings.sources_dir / (spec.inbox or f"inbox/{spec.source}") / window.logical_date.isoformat()
    manifest_path = drop / "manifest.json"
    name = obj.file or f"{obj.name}.csv"
    if not manifest_path.is_file():
        raise SourceUnavailable(f"source {spec.source}.{obj.name}: no file drop for {window.logical_date} ({manifest_path} missing)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entry = next((f for f in manifest.get("files", []) if f.get("name") == name), None)
    if entry is None:
        raise ManifestMismatch(f"source {spec.source}.{obj.name}: {name} is not listed in {manifest_path}")
    data = (drop / name).read_bytes() if (drop / name).is_file() else None
    if data is None:
        raise ManifestMismatch(f"source {spec.source}.{obj.name}: {drop / name} listed in the manifest but missing")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise ManifestMismatch(f"source {spec.source}.{obj.name}: {drop / name} SHA-256 {digest} != manifest {entry.get('sha256')}")
    encoding = entry.get("encoding", "utf-8")
    try:
        text = data.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding, errors="strict")
    except (UnicodeDecodeError, LookupError) as exc:
        raise ManifestMismatch(f"source {spec.source}.{obj.name}: {drop / name} is not valid {encoding}: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    expected = list(obj.header_map) if obj.header_map else list(obj.columns)
    if header != expected:
        raise ManifestMismatch(f"source {spec.source}.{obj.name}: {drop / name} header {header} != registered {expected}")
    rows = []
    for line_no, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise ManifestMismatch(f"source {spec.source}.{obj.name}: {drop / name} line {line_no} has {len(row)} fields, "
                                   f"header has {len(header)}")
        rows.append(tuple(v if v != "" else None for v in row))
    if len(rows) != int(entry.get("rows", -1)):
        raise ManifestMismatch(f"source {spec.source}.{obj.name}: {drop / name} has {len(rows)} rows, manifest says {entry.get('rows')}")
    columns = [obj.header_map.get(h, h) for h in header]
    return _string_frame(spark, columns, rows)


def read_object(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window):
    """Dispatch to the reader of ``spec.kind`` (see the readers above for schemas and errors)."""
    reader = {"sql": read_sql_object, "mongo": read_mongo_object, "file_drop": read_file_drop}[spec.kind]
    return reader(spark, settings, spec, obj, window)
