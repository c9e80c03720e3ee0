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

Each batch reads the window of its logical date (see :func:`resolve_window`: the first run and
backfills read everything before the window end). Each ``(source, object, logical date)`` partition is written once: a rerun whose content
fingerprint equals the ledger's leaves the partition (and ``_extracted_at``) untouched; a changed
delivery replaces the partition whole (``replaceWhere``), never adding to it. The exchange ledger
``ops.exchange_ledger`` has one row per batch.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

from jobs import lake
from jobs.config import Settings
from jobs.sources import ObjectSpec, SourceSpec, Window, extract_object

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


class ReconciliationError(RuntimeError):
    """Rows at the source for the window != rows in raw + rows rejected at parse: the task fails."""


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one raw batch: what the exchange ledger records (see :func:`ledger_schema`)."""

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
    mode: str = "full"  # 'full' | 'incremental' | 'drop'
    rows_source: int | None = None
    rows_rejected: int = 0
    details: str = "{}"


def ledger_schema():
    """Schema of ``ops.exchange_ledger`` (one row per batch).

    batch_id STRING, source STRING, object STRING, raw_table STRING, logical_date DATE,
    window_start / window_end TIMESTAMP (the data interval; a ``full`` read takes every row before
    window_end), rows_read LONG (rows delivered to raw), rows_written LONG (rows in the raw
    partition), fingerprint STRING, status STRING (written|unchanged), extracted_at TIMESTAMP,
    duration_s DOUBLE (seconds), mode STRING (full|incremental|drop), rows_source LONG (rows the
    source counted for the window, or manifest rows), rows_rejected LONG (refused at parse),
    details STRING (JSON: files with sha256/encoding/format, parse rejections with reasons, JDBC
    partitions).
    """
    from pyspark.sql.types import (DateType, DoubleType, LongType, StringType, StructField, StructType,
                                   TimestampType)

    return StructType([
        StructField("batch_id", StringType(), False), StructField("source", StringType()),
        StructField("object", StringType()), StructField("raw_table", StringType()),
        StructField("logical_date", DateType()), StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()), StructField("rows_read", LongType()),
        StructField("rows_written", LongType()), StructField("fingerprint", StringType()),
        StructField("status", StringType()), StructField("extracted_at", TimestampType()),
        StructField("duration_s", DoubleType()), StructField("mode", StringType()),
        StructField("rows_source", LongType()), StructField("rows_rejected", LongType()),
        StructField("details", StringType()),
    ])


def _ledger(spark, settings: Settings):
    path = settings.table_path("ops", "exchange_ledger")
    return spark.read.format("delta").load(path) if lake.exists(spark, path) else None


def resolve_window(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window) -> Window:
    """Decide whether a batch reads its window or everything before the window end.

    Full when ``window.full`` (backfill / snapshot mode), when the object has no watermark, when
    the ledger holds no batch of the object before this logical date (first run), or when this
    logical date's batch was first extracted full (a rerun repeats what the first run read, so a
    rerun of the first day never shrinks it). Otherwise the window ``[start, end)``.
    """
    if (obj.kind or spec.kind) == "file_drop":
        return window
    if window.full or not obj.watermark:
        return window.whole()
    ledger = _ledger(spark, settings)
    if ledger is None:
        return window.whole()
    has_mode = "mode" in ledger.columns
    rows = (ledger.where((F_col("source") == spec.source) & (F_col("object") == obj.name)
                         & (F_col("logical_date") <= window.logical_date))
            .select("logical_date", "mode" if has_mode else "status").collect())
    same = [r for r in rows if r[0] == window.logical_date]
    if same:
        return window if has_mode and same[0][1] == "incremental" else window.whole()
    return window if any(r[0] < window.logical_date for r in rows) else window.whole()


def F_col(name):  # noqa: N802 (a tiny lazy import helper)
    from pyspark.sql import functions as F

    return F.col(name)


def _ledger_fingerprint(spark, settings: Settings, batch_id: str) -> str | None:
    ledger = _ledger(spark, settings)
    if ledger is None:
        return None
    rows = ledger.where(F_col("batch_id") == batch_id).select("fingerprint").collect()
    return rows[0][0] if rows else None


def delete_path(spark, path: str) -> None:
    """Delete a storage folder (any Hadoop file system) if it exists."""
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())
    if fs.exists(hpath):
        fs.delete(hpath, True)


def extract_batch(spark, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window) -> BatchResult:
    """Extract one object for one logical date into ``raw.<source>_<object>`` (entry-point I/O).

    Resolves the window (:func:`resolve_window`), reads the source (:func:`jobs.sources.extract_object`),
    adds lineage, writes the partition in one Delta commit unless the same content is already
    there, and reconciles: rows counted at the source = rows read + rows rejected at parse, and
    rows read = rows in the raw partition. An empty window writes an empty partition and a ledger
    row (not an error). The caller records the result with :func:`record_batches`.

    Raises:
        jobs.sources.SourceError: the source cannot be read (nothing is written).
        ReconciliationError: a count disagrees (names the batch and the counts).
    """
    started = time.monotonic()
    table = f"{spec.source}_{obj.name}"
    path = settings.table_path("raw", table)
    batch_id = f"{spec.source}.{obj.name}:{window.logical_date.isoformat()}"
    extracted_at = dt.datetime.now(dt.timezone.utc)
    window = resolve_window(spark, settings, spec, obj, window)
    got = extract_object(spark, settings, spec, obj, window)
    delivered = got.frame.cache()
    try:
        batch = add_lineage(delivered, spec.source, obj.name, window.logical_date, extracted_at)
        rows, fp = fingerprint(batch)
        if got.rows_source is not None and got.rows_source != rows + len(got.rejected):
            raise ReconciliationError(f"reconciliation failed for {batch_id}: the source holds {got.rows_source} rows "
                                      f"in the window, {rows} were read and {len(got.rejected)} rejected at parse")
        unchanged = lake.exists(spark, path) and _ledger_fingerprint(spark, settings, batch_id) == fp
        if not unchanged:
            lake.replace_partition(batch, path, "_logical_date", window.logical_date)
    finally:
        delivered.unpersist()
        if got.staging:
            delete_path(spark, got.staging)
    in_raw = (spark.read.format("delta").load(path)
              .where(f"_logical_date = DATE'{window.logical_date.isoformat()}'").count())
    if in_raw != rows:
        raise ReconciliationError(f"reconciliation failed for {batch_id}: {rows} rows read, {in_raw} rows in raw.{table}")
    details = dict(got.details)
    if got.rejected:
        details["rejected"] = [{"row": n, "reason": r} for n, r in got.rejected[:100]]
    mode = details.pop("mode", window.mode)
    return BatchResult(batch_id, spec.source, obj.name, f"raw.{table}", window.logical_date, window.start,
                       window.end, rows, in_raw, fp, "unchanged" if unchanged else "written", extracted_at,
                       round(time.monotonic() - started, 3), mode, got.rows_source, len(got.rejected),
                       json.dumps(details, ensure_ascii=False, sort_keys=True))


def record_batches(spark, settings: Settings, results: list[BatchResult]) -> None:
    """MERGE batch results into ``ops.exchange_ledger`` (one row per batch_id) in one commit.

    A batch whose fingerprint is unchanged keeps its ledger row as it was (first extraction time,
    status ``written``), so rerunning a logical date leaves the ledger unchanged. A ledger written
    by an older version (without mode, rows_source, rows_rejected, details) gets those columns added.
    """
    from pyspark.sql import functions as F

    if not results:
        return
    rows = [(r.batch_id, r.source, r.object, r.table, r.logical_date, r.window_start, r.window_end, r.rows_read,
             r.rows_written, r.fingerprint, r.status, r.extracted_at, r.duration_s, r.mode, r.rows_source,
             r.rows_rejected, r.details) for r in results]
    df = spark.createDataFrame(rows, ledger_schema()).withColumn("_content_hash", F.col("fingerprint"))
    path = settings.table_path("ops", "exchange_ledger")
    current = _ledger(spark, settings)
    if current is not None:
        missing = [f for f in ledger_schema().fields if f.name not in current.columns]
        if missing:
            spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ("
                      + ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in missing) + ")")
    lake.merge_by_key(spark, df, path, ["batch_id"])
