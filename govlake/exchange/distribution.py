"""Distribution back to departments: a shared dataset into the subscriber's exchange schema, per run.

The exchange mechanism is department database → front-end (exchange) database → central node → unified
repository, and back: a department that subscribes to a shared dataset receives it, cut to what it may
see, in its own PostgreSQL exchange schema ``exchange_<source>`` (its front-end database, reached through
the department's Airflow connection ``AIRFLOW_CONN_<CONNECTION_ID>``).

Subscriptions are declared in the subscriber's registry file (``schemas/sources/<source>.yaml``)::

    subscriptions:
      - name: population_by_district          # table exchange_<source>.<name>
        dataset: marts.population_by_district_sex_age
        date_column: snapshot_date             # optional: the run's partition of the dataset
        columns: [district_code, sex_code, age_group, population]
        where: "district_code LIKE '1301%'"    # optional Spark SQL filter (never sent to the department)

Each delivered table has the subscribed columns plus ``_logical_date`` DATE and ``_batch_id`` TEXT.
A run replaces the rows of its logical date in one PostgreSQL transaction (DELETE of the run's
``_logical_date``, COPY of the new rows, and a row in ``exchange_<source>._ledger``), so a rerun
leaves exactly one copy and a failed run leaves the previous one; the central node also MERGEs a row
per delivery into ``ops.distribution_ledger``.

Command line::

    python -m govlake.exchange.distribution distribute --date 2025-06-30 [--subscriber civil]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from govlake.core import lake
from govlake.core.config import Settings
from govlake.extract.registry import (
    SourceSpec,
    SourceUnavailable,
    Subscription,
    _redact,
    _sqlalchemy_url,
    check_identifier,
    connection_uri,
    load_registry,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class Delivery:
    """One dataset delivered to one subscriber for one logical date (a ledger row).

    rows: rows delivered; checksum: SHA-256 (hex) of the delivered rows' text in delivery order
    (columns joined by U+241F, NULL as U+2400); duration_s: seconds.
    """

    delivery_id: str
    subscriber: str
    dataset: str
    target: str
    logical_date: dt.date
    rows: int
    checksum: str
    status: str
    duration_s: float


def pg_type(spark_type) -> str:
    """PostgreSQL column type for a Spark type (exact: decimals keep precision and scale).

    STRING→text, INT→integer, LONG→bigint, SHORT→smallint, DOUBLE→double precision, FLOAT→real,
    BOOLEAN→boolean, DATE→date, TIMESTAMP→timestamptz, DECIMAL(p,s)→numeric(p,s); anything else
    (arrays, structs) → jsonb-compatible text.
    """
    name = spark_type.simpleString()
    if name.startswith("decimal"):
        return name.replace("decimal", "numeric")
    return {"string": "text", "int": "integer", "bigint": "bigint", "smallint": "smallint", "tinyint": "smallint",
            "double": "double precision", "float": "real", "boolean": "boolean", "date": "date",
            "timestamp": "timestamptz", "timestamp_ntz": "timestamp"}.get(name, "text")


def cut_dataset(df: DataFrame, sub: Subscription, logical_date: dt.date) -> DataFrame:
    """The part of a shared dataset a subscriber may see for ``logical_date`` (pure transform).

    Args:
        df: the dataset (``sub.dataset``), any columns including ``sub.columns``.
    Returns:
        ``sub.columns`` (their types unchanged) of the rows passing ``sub.where`` and, when
        ``sub.date_column`` is set, whose date equals ``logical_date``; ordered by all columns.
    Raises:
        ValueError: a subscribed column is not in the dataset (names the subscription).
    """
    from pyspark.sql import functions as F

    missing = [c for c in sub.columns + ((sub.date_column,) if sub.date_column else ()) if c not in df.columns]
    if missing:
        raise ValueError(f"subscription {sub.name}: column(s) {missing} not in {sub.dataset}")
    if sub.date_column:
        df = df.where(F.col(sub.date_column) == F.lit(logical_date).cast("date"))
    if sub.where:
        df = df.where(F.expr(sub.where))
    return df.select(*sub.columns).orderBy(*sub.columns)


def write_exchange(df: DataFrame, uri: str, subscriber: str, sub: Subscription,
                   logical_date: dt.date) -> tuple[int, str]:
    """Replace ``logical_date``'s rows of ``exchange_<subscriber>.<sub.name>`` with ``df`` (entry-point I/O).

    One transaction: create the schema / table / ``_ledger`` when missing, DELETE the date's rows,
    COPY ``df`` (streamed with ``toLocalIterator``: the driver holds one partition at a time), and
    upsert the ledger row (delivery_id, dataset, logical_date, rows, checksum, delivered_at).

    Returns:
        (rows, checksum) — see :class:`Delivery`.

    Raises:
        SourceUnavailable: the exchange database cannot be reached or refuses the write (names
            subscriber, table and address); nothing of the run is visible then.
        ValueError: the existing table's columns differ from the subscription's.
    """
    import sqlalchemy as sa

    schema = check_identifier(f"exchange_{subscriber}", "exchange schema")
    table = check_identifier(sub.name, "exchange table")
    types = {f.name: pg_type(f.dataType) for f in df.schema.fields}
    columns = [check_identifier(c, f"column of {sub.name}") for c in df.columns]
    delivery_id = f"{subscriber}.{table}:{logical_date.isoformat()}"
    engine = sa.create_engine(_sqlalchemy_url(uri), connect_args={"connect_timeout": 10})
    digest, rows = hashlib.sha256(), 0
    try:
        raw = engine.raw_connection()
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        raise SourceUnavailable(f"exchange {schema}.{table}: cannot connect to {_redact(uri)}: "
                                f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}") from exc
    conn = raw.driver_connection
    assert conn is not None  # a checked-out pooled connection has its driver connection
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                        + ", ".join(f"{c} {types[c]}" for c in columns)
                        + ", _logical_date date NOT NULL, _batch_id text NOT NULL)")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {schema}._ledger (delivery_id text PRIMARY KEY, dataset text, "
                        "logical_date date, rows bigint, checksum text, delivered_at timestamptz)")
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                        "AND table_name = %s ORDER BY ordinal_position", (schema, table))
            present = [r[0] for r in cur.fetchall()]
            if present != columns + ["_logical_date", "_batch_id"]:
                raise ValueError(f"exchange {schema}.{table} has columns {present}, subscription {sub.name} "
                                 f"delivers {columns} + _logical_date, _batch_id (drop the table to change its shape)")
            cur.execute(f"DELETE FROM {schema}.{table} WHERE _logical_date = %s", (logical_date,))
            with cur.copy(f"COPY {schema}.{table} ({', '.join(columns)}, _logical_date, _batch_id) FROM STDIN") as copy:
                for row in df.toLocalIterator():
                    values = list(row)
                    digest.update("\u241f".join("\u2400" if v is None else str(v) for v in values).encode() + b"\n")
                    copy.write_row(values + [logical_date, delivery_id])
                    rows += 1
            cur.execute(f"INSERT INTO {schema}._ledger VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (delivery_id) "
                        "DO UPDATE SET rows = EXCLUDED.rows, checksum = EXCLUDED.checksum, "
                        "delivered_at = EXCLUDED.delivered_at", (delivery_id, sub.dataset, logical_date, rows,
                                                                 digest.hexdigest()))
        conn.commit()
    except Exception as exc:
        conn.rollback()
        if isinstance(exc, ValueError):
            raise
        import psycopg

        if isinstance(exc, psycopg.Error):
            raise SourceUnavailable(f"exchange {schema}.{table} at {_redact(uri)}: "
                                    f"{str(exc).strip().splitlines()[0]}") from exc
        raise
    finally:
        raw.close()
        engine.dispose()
    return rows, digest.hexdigest()


def distribute(spark: SparkSession, settings: Settings, logical_date: dt.date, subscribers: list[str] | None = None,
               registry: dict[str, SourceSpec] | None = None) -> list[Delivery]:
    """Deliver every subscribed dataset (or those of ``subscribers``) for ``logical_date``.

    Reads ``<lakehouse>/<layer>/<table>`` of each subscription, cuts it (:func:`cut_dataset`),
    writes it with :func:`write_exchange` to the subscriber's connection and MERGEs the deliveries
    into ``ops.distribution_ledger`` (key delivery_id; columns of :class:`Delivery`).

    Raises:
        SourceUnavailable: a subscriber's connection is unset or unreachable.
        ValueError: a subscribed dataset is missing or lacks a column.
    """
    registry = registry if registry is not None else load_registry()
    deliveries = []
    for name, spec in registry.items():
        if subscribers and name not in subscribers:
            continue
        for sub in spec.subscriptions:
            started = time.monotonic()
            layer, table = sub.dataset.split(".", 1)
            path = settings.table_path(layer, table)
            if not lake.exists(spark, path):
                raise ValueError(f"subscription {name}.{sub.name}: dataset {sub.dataset} does not exist at {path}")
            df = cut_dataset(spark.read.format("delta").load(path), sub, logical_date)
            rows, checksum = write_exchange(df, connection_uri(spec), name, sub, logical_date)
            deliveries.append(Delivery(f"{name}.{sub.name}:{logical_date.isoformat()}", name, sub.dataset,
                                       f"exchange_{name}.{sub.name}", logical_date, rows, checksum, "delivered",
                                       round(time.monotonic() - started, 3)))
    if deliveries:
        from pyspark.sql import functions as F

        frame = spark.createDataFrame([tuple(asdict(d).values()) for d in deliveries],
                                      "delivery_id string, subscriber string, dataset string, target string, "
                                      "logical_date date, rows long, checksum string, status string, duration_s double")
        lake.merge_by_key(spark, frame.withColumn("_content_hash", F.col("checksum")),
                          settings.table_path("ops", "distribution_ledger"), ["delivery_id"])
    return deliveries


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``distribute --date D [--subscriber S]``; prints the deliveries as JSON."""
    parser = argparse.ArgumentParser(prog="python -m govlake.exchange.distribution", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("distribute", help="deliver the subscribed datasets of a logical date")
    d.add_argument("--date", required=True, type=dt.date.fromisoformat)
    d.add_argument("--subscriber", action="append", default=None)
    args = parser.parse_args(argv)
    from govlake.core.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings, app_name="govlake-distribute")
    result = distribute(spark, settings, args.date, args.subscriber)
    print(json.dumps([asdict(r) for r in result], ensure_ascii=False, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
