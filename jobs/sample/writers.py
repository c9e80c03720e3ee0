"""Writers of the sample sources: SQLite files, PostgreSQL schemas, JSON lines, MongoDB, CSV file drops.

Table layouts (SQLite type, PostgreSQL type) are in :data:`TABLES`; every other column is TEXT. Reruns replace
what an earlier run wrote (SQLite files are recreated, PostgreSQL tables and the MongoDB collection dropped).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS

from jobs.sample.departments import ALLOWANCE_COLUMNS, HOUSEHOLD_COLUMNS, PERSON_COLUMNS

#: (schema, table) → (columns, {column: (sqlite type, postgresql type)} for non-TEXT columns, primary key or None).
#: hukou.persons has no primary key on purpose: the duplicate_row fault delivers exact duplicate rows.
TABLES: dict[tuple[str, str], tuple[Sequence[str], dict[str, tuple[str, str]], str | None]] = {
    ("hukou", "persons"): (PERSON_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, None),
    ("hukou", "households"): (HOUSEHOLD_COLUMNS, {"updated_at": ("TEXT", "timestamp")}, "household_no"),
    ("civil", "subsistence_allowance"): (ALLOWANCE_COLUMNS, {
        "family_size": ("INTEGER", "integer"), "monthly_amount": ("NUMERIC(10,2)", "numeric(10,2)"),
        "updated_at": ("TEXT", "timestamp")}, "case_no"),
}
#: Columns declared NOT NULL besides the primary key.
NOT_NULL = {("hukou", "persons"): {"person_no"}}


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


def write_sqlite(path: Path, schema: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Write ``tables`` ({table: rows}) of ``schema`` to a new SQLite file at ``path`` (an old file is removed).

    monthly_amount is stored as a REAL (SQLite NUMERIC affinity; a whole amount becomes an INTEGER).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        for table, rows in tables.items():
            columns = TABLES[(schema, table)][0]
            con.execute(ddl(schema, table, "sqlite"))
            con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                            [tuple(_sqlite_value(r[c]) for c in columns) for r in rows])
        con.commit()
    finally:
        con.close()


def _pg_value(col: str, value: Any, types: dict[str, tuple[str, str]]) -> Any:
    if value is not None and types.get(col, ("", ""))[1] == "timestamp":
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return value


def write_postgres(pg_url: str, schema: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Create schema ``schema`` if missing, drop and recreate its ``tables`` and load the rows with COPY,
    all in one transaction.

    Args:
        pg_url: SQLAlchemy URL, e.g. ``postgresql+psycopg://user:pw@127.0.0.1:5432/govlake``.
    Raises:
        sqlalchemy.exc.OperationalError / psycopg.Error: the server cannot be reached or refuses the load.
    """
    from sqlalchemy import create_engine

    engine = create_engine(pg_url)
    try:
        raw = engine.raw_connection()
        try:
            conn = raw.driver_connection
            with conn.cursor() as cur:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                for table, rows in tables.items():
                    columns, types, _ = TABLES[(schema, table)]
                    cur.execute(f"DROP TABLE IF EXISTS {schema}.{table}")
                    cur.execute(ddl(schema, table, "postgresql"))
                    with cur.copy(f"COPY {schema}.{table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row([_pg_value(c, r[c], types) for c in columns])
            conn.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


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
                batch: int = 1000) -> None:
    """Drop ``database.collection`` and insert ``docs`` in ordered batches of ``batch``.

    Raises:
        pymongo.errors.PyMongoError: the server cannot be reached or refuses the insert.
    """
    from pymongo import MongoClient

    client = MongoClient(mongo_url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    try:
        coll = client[database][collection]
        coll.drop()
        for start in range(0, len(docs), batch):
            coll.insert_many([dict(d) for d in docs[start:start + batch]], ordered=True)
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
