"""Writers of the sample sources: SQLite files, PostgreSQL schemas, JSON lines, MongoDB, CSV file drops.

Table layouts (SQLite type, PostgreSQL type) are in :data:`TABLES`; every other column is TEXT. Reruns replace
what an earlier run wrote (SQLite files are recreated, PostgreSQL tables and the MongoDB collection dropped).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS

from sample.departments import (
    ALLOWANCE_COLUMNS,
    ELDERLY_COLUMNS,
    HOUSEHOLD_COLUMNS,
    MARRIAGE_COLUMNS,
    PERSON_COLUMNS,
    RESIDENCE_CHANGE_COLUMNS,
)
from sample.more_departments import (
    ADDRESS_COLUMNS,
    BIRTH_COLUMNS,
    DEATH_COLUMNS,
    EMPLOYMENT_COLUMNS,
    INSURANCE_COLUMNS,
)

if TYPE_CHECKING:
    import psycopg

#: (schema, table) → (columns, {column: (sqlite type, postgresql type)} for non-TEXT columns, primary key or None).
#: hukou.persons has no primary key on purpose: the duplicate_row fault delivers exact duplicate rows.
TABLES: dict[tuple[str, str], tuple[Sequence[str], dict[str, tuple[str, str]], str | None]] = {
    ("hukou", "persons"): (PERSON_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, None),
    ("hukou", "households"): (HOUSEHOLD_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, "household_no"),
    ("hukou", "residence_changes"): (RESIDENCE_CHANGE_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, "change_no"),
    ("civil", "subsistence_allowance"): (ALLOWANCE_COLUMNS, {
        "family_size": ("INTEGER", "integer"), "monthly_amount": ("NUMERIC(10,2)", "numeric(10,2)"),
        "updated_at": ("TEXT", "timestamp")}, "case_no"),
    ("civil", "marriages"): (MARRIAGE_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, "cert_no"),
    ("civil", "elderly_subsidy"): (ELDERLY_COLUMNS, {
        "age": ("INTEGER", "integer"), "monthly_amount": ("NUMERIC(10,2)", "numeric(10,2)"),
        "updated_at": ("TEXT", "timestamp")}, "subsidy_no"),
    # births has no primary key: the business_key_null fault delivers a NULL cert_no
    ("health", "births"): (BIRTH_COLUMNS, {"birth_weight_g": ("INTEGER", "integer"),
                                           "gestation_weeks": ("INTEGER", "integer"),
                                           "updated_at": ("TEXT", "timestamp")}, None),
    ("health", "deaths"): (DEATH_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, "death_no"),
    ("hrss", "employment"): (EMPLOYMENT_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, "emp_no"),
    # social_insurance has no primary key: duplicate_across_batches re-delivers a si_no
    ("hrss", "social_insurance"): (INSURANCE_COLUMNS, {"monthly_base": ("NUMERIC(10,2)", "numeric(10,2)"),
                                                       "updated_at": ("TEXT", "timestamp")}, None),
    ("address", "standard_address"): (ADDRESS_COLUMNS, {"lng": ("REAL", "double precision"),
                                                        "lat": ("REAL", "double precision"),
                                                        "updated_at": ("TEXT", "timestamp")}, "address_id"),
}
#: Columns declared NOT NULL besides the primary key.
NOT_NULL = {("hukou", "persons"): {"person_no"}, ("hrss", "social_insurance"): {"si_no"}}


def ddl(schema: str, table: str, dialect: str) -> str:
    """CREATE TABLE statement of ``schema.table`` for ``dialect`` 'sqlite' (table name only) or 'postgresql'."""
    columns, types, pk = TABLES[(schema, table)]
    parts = []
    for col in columns:
        sqlite_type, pg_type = types.get(col, ("TEXT", "text"))
        decl = f"{col} {sqlite_type if dialect == 'sqlite' else pg_type}"
        if col == pk:
            decl += " PRIMARY KEY"
        elif col in NOT_NULL.get((schema, table), ()):
            decl += " NOT NULL"
        parts.append(decl)
    name = table if dialect == "sqlite" else f"{schema}.{table}"
    return f"CREATE TABLE {name} (\n  " + ",\n  ".join(parts) + "\n)"


def _sqlite_value(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _sqlite_rows(schema: str, table: str, rows: Iterable[dict[str, Any]]) -> Iterable[tuple]:
    """Row tuples in column order; Decimal columns (NUMERIC) as float."""
    columns, types, _ = TABLES[(schema, table)]
    numeric = [k for k, c in enumerate(columns) if types.get(c, ("TEXT",))[0].startswith("NUMERIC")]
    get = itemgetter(*columns)
    for r in rows:
        t = get(r)
        if numeric:
            t = list(t)
            for k in numeric:
                t[k] = _sqlite_value(t[k])
        yield tuple(t)


def write_sqlite(path: Path, schema: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Write ``tables`` ({table: rows}) of ``schema`` to a new SQLite file at ``path`` (an old file is removed).

    monthly_amount is stored as a REAL (SQLite NUMERIC affinity; a whole amount becomes an INTEGER).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        for table, rows in tables.items():
            _sqlite_table(con, schema, table, rows)
        con.commit()
    finally:
        con.close()


def _sqlite_table(con: sqlite3.Connection, schema: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
    columns = TABLES[(schema, table)][0]
    con.execute(ddl(schema, table, "sqlite"))
    con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    _sqlite_rows(schema, table, rows))


def _pg_value(col: str, value: Any, types: dict[str, tuple[str, str]]) -> Any:
    if value is not None and types.get(col, ("", ""))[1] == "timestamp":
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return value


#: COPY text format escapes (PostgreSQL docs, COPY "Text Format"): backslash, tab, newline, carriage return.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """One value in PostgreSQL COPY text format: None → '\\N', str escaped, numbers via ``str`` (timestamps
    are the 'YYYY-MM-DD HH:MM:SS' text the server parses)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def copy_lines(columns: Sequence[str], rows: Iterable[dict[str, Any]], block: int = 20_000) -> Iterable[str]:
    """COPY text-format data of ``rows`` (dicts) in blocks of ``block`` lines, each block one string."""
    get = itemgetter(*columns)
    buf: list[str] = []
    for r in rows:
        buf.append("\t".join([copy_text(v) for v in get(r)]))
        if len(buf) >= block:
            yield "\n".join(buf) + "\n"
            buf = []
    if buf:
        yield "\n".join(buf) + "\n"


def _pg_table(cur, schema: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
    columns = TABLES[(schema, table)][0]
    cur.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
    cur.execute(ddl(schema, table, "postgresql"))
    with cur.copy(f"COPY {schema}.{table} ({', '.join(columns)}) FROM STDIN") as copy:
        for chunk in copy_lines(columns, rows):
            copy.write(chunk)


def write_postgres(pg_url: str, schema: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Create schema ``schema`` if missing, drop and recreate its ``tables`` and load the rows with COPY (text
    format, blocks of 20,000 rows), all in one transaction.

    Args:
        pg_url: SQLAlchemy URL, e.g. ``postgresql+psycopg://user:pw@127.0.0.1:5432/govlake``.
    Raises:
        psycopg.Error: the server cannot be reached or refuses the load.
    """
    import psycopg

    with psycopg.connect(_libpq_url(pg_url)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table, rows in tables.items():
            _pg_table(cur, schema, table, rows)


def _libpq_url(pg_url: str) -> str:
    """'postgresql+psycopg://…' (SQLAlchemy) → 'postgresql://…' (libpq)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", pg_url)


class Sink:
    """Where the generator delivers each finished table, one table at a time (so a table can be freed as soon
    as it is written).

    ``target='embedded'``: SQL tables go to ``<out>/<schema>.sqlite`` (a file is recreated on the schema's first
    table, committed on :meth:`close`), documents to ``<out>/<jsonl name>``. ``target='servers'``: SQL tables to
    PostgreSQL schemas at ``pg_url`` (each table dropped, recreated and loaded with COPY, committed per table),
    documents to MongoDB ``database.collection`` at ``mongo_url`` (:func:`write_mongo`), the database name
    prefixed with ``mongo_prefix`` (default none: ``wangge``; ``'n1_'`` gives ``n1_wangge``, so a test can load a
    sample beside the standard one). Use as a context manager. Raises what the writers raise.
    """

    def __init__(self, target: str, out: Path, pg_url: str | None = None, mongo_url: str | None = None,
                 mongo_prefix: str = ""):
        self.target, self.out, self.pg_url, self.mongo_url = target, out, pg_url, mongo_url
        self.mongo_prefix = mongo_prefix
        self._sqlite: dict[str, sqlite3.Connection] = {}
        self._pg: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sql(self, schema: str, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Deliver ``schema.table`` (dicts with the columns of :data:`TABLES`)."""
        if self.target == "embedded":
            con = self._sqlite.get(schema)
            if con is None:
                path = self.out / f"{schema}.sqlite"
                path.unlink(missing_ok=True)
                con = self._sqlite[schema] = sqlite3.connect(path)
            _sqlite_table(con, schema, table, rows)
            return
        import psycopg

        if self._pg is None:
            if self.pg_url is None:
                raise ValueError("target 'servers' needs pg_url and mongo_url")
            self._pg = psycopg.connect(_libpq_url(self.pg_url))
        with self._pg.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            _pg_table(cur, schema, table, rows)
        self._pg.commit()

    def docs(self, database: str, collection: str, jsonl_name: str, docs: list[dict[str, Any]]) -> None:
        """Deliver documents: ``<out>/<jsonl_name>`` (embedded) or ``database.collection`` (servers)."""
        if self.target == "embedded":
            write_jsonl(self.out / jsonl_name, docs)
        else:
            if self.mongo_url is None:
                raise ValueError("target 'servers' needs pg_url and mongo_url")
            write_mongo(self.mongo_url, self.mongo_prefix + database, collection, docs)

    def close(self) -> None:
        """Commit and close the SQLite files and the PostgreSQL connection."""
        for con in self._sqlite.values():
            con.commit()
            con.close()
        self._sqlite = {}
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def dumps_event(doc: dict[str, Any]) -> str:
    """One event as relaxed Extended JSON (ObjectId as {"$oid"}, datetimes as {"$date": ISO-8601 UTC})."""
    return json_util.dumps(doc, json_options=RELAXED_JSON_OPTIONS, ensure_ascii=False)


def write_jsonl(path: Path, docs: Iterable[dict[str, Any]]) -> None:
    """Write documents as JSON lines (UTF-8, '\\n' line ends) with :func:`dumps_event`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for doc in docs:
            fh.write(dumps_event(doc) + "\n")


def write_mongo(mongo_url: str, database: str, collection: str, docs: list[dict[str, Any]],
                batch: int = 2000) -> None:
    """Drop ``database.collection`` and insert ``docs`` in unordered batches of ``batch`` (``insert_many(
    ordered=False)``: the server may apply a batch in any order; every document has its own ``_id``).

    Raises:
        pymongo.errors.PyMongoError: the server cannot be reached or refuses the insert (BulkWriteError when
        some documents of a batch were refused).
    """
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        coll = client[database][collection]
        coll.drop()
        for start in range(0, len(docs), batch):
            coll.insert_many([dict(d) for d in docs[start:start + batch]], ordered=False)
    finally:
        client.close()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], lineterminator: str = "\n") -> int:
    """Write a UTF-8 CSV (minimal quoting; None as ''). Returns the number of data rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator=lineterminator)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
            n += 1
    return n


class CsvAppender:
    """A UTF-8 CSV written in pieces (same bytes as :func:`write_csv` of all the pieces' rows): the header on
    open, then :meth:`write` per batch. Use as a context manager; ``rows`` counts the data rows written."""

    def __init__(self, path: Path, header: Sequence[str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("w", encoding="utf-8", newline="")
        self._w = csv.writer(self._fh, lineterminator="\n")
        self._w.writerow(header)
        self.rows = 0

    def write(self, rows: Iterable[Sequence[Any]]) -> None:
        """Append rows (None written as '')."""
        for row in rows:
            self._w.writerow(["" if v is None else v for v in row])
            self.rows += 1

    def __enter__(self) -> CsvAppender:
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def write_file_drop(folder: Path, department: str, logical_date: str, name: str, header: Sequence[str],
                    rows: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Write ``<folder>/<name>`` (UTF-8 CSV, CRLF line ends like the source) and ``manifest.json``.

    manifest.json: {"department", "logical_date", "files": [{"name", "sha256" (hex of the file's bytes),
    "rows" (data rows, header excluded), "encoding": "utf-8"}]}. Returns the manifest.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    manifest = {"department": department, "logical_date": logical_date,
                "files": [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "rows": len(rows),
                           "encoding": "utf-8"}]}
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                                          encoding="utf-8")
    return manifest


#: File-drop formats: UTF-8 CSV (CRLF), GBK CSV (CRLF; a character GBK lacks becomes '?', as GBK exports do),
#: JSON lines (one object per row keyed by the header, UTF-8) and Excel (.xlsx, one sheet, all cells text).
DROP_FORMATS = ("csv", "csv-gbk", "jsonl", "xlsx")
DROP_SUFFIX = {"csv": ".csv", "csv-gbk": ".csv", "jsonl": ".jsonl", "xlsx": ".xlsx"}


def drop_bytes(fmt: str, header: Sequence[str], rows: Sequence[Sequence[Any]], stamp: datetime) -> bytes:
    """The bytes of one drop file in ``fmt`` (one of :data:`DROP_FORMATS`).

    xlsx output is deterministic: workbook properties (created and modified) dated ``stamp`` and every zip entry
    dated 1980-01-01.
    Raises:
        ValueError: unknown format.
    """
    if fmt in ("csv", "csv-gbk"):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])
        return buf.getvalue().encode("utf-8" if fmt == "csv" else "gbk", errors="strict" if fmt == "csv" else "replace")
    if fmt == "jsonl":
        return "".join(json.dumps(dict(zip(header, r, strict=False)), ensure_ascii=False) + "\n"
                       for r in rows).encode("utf-8")
    if fmt == "xlsx":
        import zipfile

        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.title = "Sheet1"
        ws.append(list(header))
        for r in rows:
            ws.append(["" if v is None else str(v) for v in r])
        wb.properties.created = wb.properties.modified = stamp
        wb.properties.creator = "govlake-sample"
        raw = io.BytesIO()
        wb.save(raw)
        out = io.BytesIO()
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "docProps/core.xml":  # openpyxl stamps 'modified' with the wall clock on save
                    data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(<)",
                                  rb"\g<1>" + f"{stamp:%Y-%m-%dT%H:%M:%SZ}".encode() + rb"\g<2>", data)
                dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
        return out.getvalue()
    raise ValueError(f"unknown drop format {fmt!r}; formats are {DROP_FORMATS}")


def write_drop(folder: Path, department: str, logical_date: str,
               files: Sequence[tuple[str, str, Sequence[str], Sequence[Sequence[Any]]]]) -> dict[str, Any]:
    """Write a file drop of several files and its ``manifest.json``.

    Args:
        files: (stem, format, header, rows) per file; the file is ``stem`` + '.csv' / '.jsonl' / '.xlsx'.
    manifest.json: {"department", "logical_date", "files": [{"name", "sha256", "rows" (data rows),
    "encoding" ('utf-8', 'gbk', or null for xlsx), and "format" unless it is plain UTF-8 CSV}]} — a UTF-8 CSV
    entry is exactly as :func:`write_file_drop` writes it. Returns the manifest.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(f"{logical_date}T00:00:00")
    entries = []
    for stem, fmt, header, rows in files:
        name = stem + DROP_SUFFIX[fmt] if fmt in DROP_SUFFIX else stem
        data = drop_bytes(fmt, header, rows, stamp)
        (folder / name).write_bytes(data)
        entry = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "rows": len(rows),
                 "encoding": {"csv": "utf-8", "csv-gbk": "gbk", "jsonl": "utf-8", "xlsx": None}[fmt]}
        if fmt != "csv":
            entry["format"] = fmt
        entries.append(entry)
    manifest = {"department": department, "logical_date": logical_date, "files": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest
