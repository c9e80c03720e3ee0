"""Raw layer: every delivered batch as it came, with lineage, written exactly once per logical date.

Raw table ``raw.<source>_<object>`` = the delivered columns (STRING) + lineage columns:

==================  =========  ============================================================
column              type       meaning
==================  =========  ============================================================
``_row_number``     LONG       position of the row in the delivered batch (1-based)
``_source``         STRING     source (department system) name from the registry
``_source_table``   STRING     table / collection / file
``_batch_id``       STRING     ``<source>.<object>:<logical date>``
``_logical_date``   DATE       business day of the batch (partition column)
``_extracted_at``   TIMESTAMP  when the batch was first extracted with this content
``_row_hash``       STRING     SHA-256 of the delivered values (NULL-aware), hex
==================  =========  ============================================================

Each ``(source, object, logical date)`` partition is written once: a rerun whose content
fingerprint equals the ledger's leaves the partition (and ``_extracted_at``) untouched; a changed
delivery replaces the partition whole (``replaceWhere``), never adding to it. The exchange ledger
``ops.exchange_ledger`` has one row per batch.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from jobs import lake
from jobs.config import Settings
from jobs.sources import ObjectSpec, SourceSpec, Window, read_object

_NULL = "\u2400"  # ␀ marks NULL in the row hash so NULL and '' differ


def add_lineage(df, source: str, table: str, logical_date: dt.date, extracted_at: dt.datetime):
    """Add the lineage columns (see module doc) to a delivered frame.

    Args:
        df: delivered columns (STRING) + ``_row_number`` LONG.
        extracted_at: extraction instant (timezone-aware).

    Returns:
        ``df`` + ``_source``, ``_source_table``, ``_batch_id``, ``_logical_date``, ``_extracted_at``,
        ``_row_hash``.
    """
    from pyspark.sql import functions as F

    delivered = [c for c in df.columns if not c.startswith("_") or c == "_id"]
    row_hash = F.sha2(F.concat_ws("\u241f", *[F.coalesce(F.col(f"`{c}`"), F.lit(_NULL)) for c in delivered]), 256)
    return df.select(
        *[F.col(f"`{c}`") for c in df.columns],
        F.lit(source).alias("_source"),
        F.lit(table).alias("_source_table"),
        F.lit(f"{source}.{table}:{logical_date.isoformat()}").alias("_batch_id"),
        F.lit(logical_date).cast("date").alias("_logical_date"),
        F.lit(extracted_at).cast("timestamp").alias("_extracted_at"),
        row_hash.alias("_row_hash"),
    )


def fingerprint(df) -> tuple[int, str]:
    """Order-independent content fingerprint of a raw batch, in one aggregation.

    Returns:
        ``(rows, "<rows>:<sum of xxhash64(_row_hash) as decimal>")``.
    """
    from pyspark.sql import functions as F

    row = df.agg(F.count(F.lit(1)).alias("n"),
                 F.sum(F.xxhash64("_row_hash").cast("decimal(38,0)")).alias("s")).collect()[0]
    return int(row["n"]), f"{row['n']}:{row['s'] or 0}"


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one raw batch: what the exchange ledger records."""

    batch_id: str
    source: str
    object: str
    table: str
    logical_date: dt.date
    window_start: dt.datetime
    window_end: dt.datetime
    rows_read: int
    rows_written: int
    fingerprint: str
    status: str  # 'written' | 'unchanged'
    extracted_at: dt.datetime
    duration_s: float


def ledger_schema():
    """Schema of ``ops.exchange_ledger`` (one row per batch)."""
    from pyspark.sql.types import (DateType, DoubleType, LongType, StringType, StructField, StructType,
                                   TimestampType)

    return StructType([
        StructField("batch_id", StringType(), False), StructField("source", StringType()),
        StructField("object", StringType()), StructField("raw_table", StringType()),
        StructField("logical_date", DateType()), StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()), StructField("rows_read", LongType()),
        StructField("rows_written", LongType()), StructField("fingerprint", StringType()),
        StructField("status", StringType()), StructField("extracted_at", TimestampType()),
        StructField("duration_s", DoubleType()),
    ])


def _ledger_fingerprint(spark, settings: Settings, batch_id: str) -> str | None:
    path = settings.table_path("ops", "exchange_ledger")
    if not lake.exists(spark, path):
        return None
    rows = spark.read.format("delta").load(path).where(f"batch_id = '{batch_id}'").select("fingerprint").collect()
    return rows[0][0] if rows else None


def extract_batch(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window) -> BatchResult:
    """Extract one object for one logical date into ``raw.<source>_<object>`` (entry-point I/O).

    Reads the source (see :mod:`jobs.sources`), adds lineage, writes the partition unless the
    same content is already there and reconciles rows read = rows in the raw partition. The
    caller records the result with :func:`record_batches`.

    Raises:
        jobs.sources.SourceError: the source cannot be read (nothing is written).
        RuntimeError: reconciliation failed (rows in raw differ from rows read).
    """
    started = time.monotonic()
    table = f"{spec.source}_{obj.name}"
    path = settings.table_path("raw", table)
    extracted_at = dt.datetime.now(dt.timezone.utc)
    delivered = read_object(spark, settings, spec, obj, window).cache()
    try:
        batch = add_lineage(delivered, spec.source, obj.name, window.logical_date, extracted_at)
        rows, fp = fingerprint(batch)
        batch_id = f"{spec.source}.{obj.name}:{window.logical_date.isoformat()}"
        unchanged = lake.exists(spark, path) and _ledger_fingerprint(spark, settings, batch_id) == fp
        if not unchanged:
            lake.replace_partition(batch, path, "_logical_date", window.logical_date)
    finally:
        delivered.unpersist()
    in_raw = (spark.read.format("delta").load(path)
              .where(f"_logical_date = DATE'{window.logical_date.isoformat()}'").count())
    if in_raw != rows:
        raise RuntimeError(f"reconciliation failed for {batch_id}: {rows} rows read, {in_raw} rows in raw.{table}")
    return BatchResult(batch_id, spec.source, obj.name, f"raw.{table}", window.logical_date, window.start,
                       window.end, rows, in_raw, fp, "unchanged" if unchanged else "written", extracted_at,
                       round(time.monotonic() - started, 3))


def record_batches(spark, settings: Settings, results: list[BatchResult]) -> None:
    """MERGE batch results into ``ops.exchange_ledger`` (one row per batch_id) in one commit.

    A batch whose fingerprint is unchanged keeps its ledger row as it was (first extraction time,
    status ``written``), so rerunning a logical date leaves the ledger unchanged.
    """
    from pyspark.sql import functions as F

    if not results:
        return
    rows = [(r.batch_id, r.source, r.object, r.table, r.logical_date, r.window_start, r.window_end, r.rows_read,
             r.rows_written, r.fingerprint, r.status, r.extracted_at, r.duration_s) for r in results]
    df = spark.createDataFrame(rows, ledger_schema()).withColumn("_content_hash", F.col("fingerprint"))
    lake.merge_by_key(spark, df, settings.table_path("ops", "exchange_ledger"), ["batch_id"])
