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
backfills read everything before the window end). Each ``(source, object, logical date)`` partition is written
once: a rerun whose content fingerprint equals the ledger's leaves the partition (and ``_extracted_at``)
untouched; a changed delivery replaces the partition whole (``replaceWhere``), never adding to it. A batch is read from
its source once: lineage, row count and fingerprint are computed while the partition is written, and
rows in raw are taken from the Delta commit (see :func:`extract_batch`). The exchange ledger
``ops.exchange_ledger`` has one row per batch, also for a batch whose extraction failed (status ``failed``
until a later attempt delivers it; see :func:`record_batches`).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from govlake.core import lake, runlog
from govlake.core.config import Settings
from govlake.core.failpoints import failpoint
from govlake.extract.registry import (
    OVER_DELIVERY,
    ObjectSpec,
    SourceSpec,
    Window,
    drop_listing,
    extract_object,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOG = logging.getLogger("govlake.extract.raw")

_NULL = "\u2400"  # ␀ marks NULL in the row hash so NULL and '' differ


def add_lineage(df: DataFrame, source: str, table: str, logical_date: dt.date, extracted_at: dt.datetime) -> DataFrame:
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


def fingerprint(df: DataFrame) -> tuple[int, str]:
    """Order-independent content fingerprint of a raw batch, in one aggregation (the same aggregate is
    taken during the raw write itself, see :func:`extract_batch`).

    Args:
        df: a frame with ``_row_hash`` (see :func:`add_lineage`).

    Returns:
        ``(rows, "<rows>:<sum of xxhash64(_row_hash) as decimal>")``.
    """
    row = df.agg(*_fingerprint_columns()).collect()[0]
    return int(row["n"]), f"{row['n']}:{row['s'] or 0}"


class ReconciliationError(RuntimeError):
    """Rows at the source for the window != rows in raw + rows rejected at parse: the task fails. ID and mobile
    numbers quoted in the message are masked (issue #21, :func:`govlake.governance.masking.scrub_text`)."""

    def __init__(self, *args: object) -> None:
        from govlake.governance.masking import scrub_text

        super().__init__(*(scrub_text(a) if isinstance(a, str) else a for a in args))


@dataclass(frozen=True)
class BatchResult:
    """Outcome of one raw batch: what the exchange ledger records (see :func:`ledger_schema`); a failed
    attempt (:func:`failed_batch`) has status ``failed``, its ``error``, and None where nothing is known."""

    batch_id: str
    source: str
    object: str
    table: str
    logical_date: dt.date
    window_start: dt.datetime
    window_end: dt.datetime
    rows_read: int | None
    rows_written: int | None
    fingerprint: str | None
    status: str  # 'written' | 'unchanged' | 'kept' (delivered before, not read again) | 'failed'
    extracted_at: dt.datetime
    duration_s: float
    mode: str | None = "full"  # 'full' | 'incremental' | 'drop'
    rows_source: int | None = None
    rows_rejected: int | None = 0
    details: str | None = "{}"
    error: str | None = None


def error_text(error: BaseException) -> str:
    """``<exception class>: <first line of its message>`` (at most 1,000 characters, ID and mobile numbers masked):
    the reason a batch failed, as the ledger records it. A Py4J error's first line names only the JVM call, so its
    second is kept."""
    from govlake.governance.masking import scrub_text

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2] if lines and lines[0].startswith("An error occurred while calling") else lines[:1])
    return scrub_text(f"{type(error).__name__}: {text}")[:1000]  # issue #21: no ID / mobile number in clear


def failed_batch(spec: SourceSpec, obj: ObjectSpec, window: Window, error: BaseException,
                 started_at: dt.datetime) -> BatchResult:
    """The ledger record of a failed extraction attempt of ``obj`` for ``window`` (started at ``started_at``,
    timezone-aware): status ``failed``, ``error`` = :func:`error_text`, the requested data interval; rows,
    fingerprint, mode and details NULL (unknown). Record it with :func:`record_batches`."""
    now = dt.datetime.now(dt.UTC)
    table = f"{spec.source}_{obj.name}"
    return BatchResult(f"{spec.source}.{obj.name}:{window.logical_date.isoformat()}", spec.source, obj.name,
                       f"raw.{table}", window.logical_date, window.start, window.end, None, None, None, "failed",
                       started_at, round((now - started_at).total_seconds(), 3), None, None, None, None,
                       error_text(error))


def ledger_schema():
    """Schema of ``ops.exchange_ledger`` (one row per batch).

    batch_id STRING, source STRING, object STRING, raw_table STRING, logical_date DATE,
    window_start / window_end TIMESTAMP (the data interval; a ``full`` read takes every row before
    window_end), rows_read LONG (rows delivered to raw), rows_written LONG (rows in the raw
    partition), fingerprint STRING, status STRING (written|unchanged|failed), extracted_at TIMESTAMP
    (for a failed batch: when the attempt started), duration_s DOUBLE (seconds), mode STRING
    (full|incremental|drop), rows_source LONG (rows the source counted for the window, or manifest
    rows), rows_rejected LONG (refused at parse), details STRING (JSON: files with
    sha256/encoding/format, parse rejections with reasons, JDBC partitions), error STRING (a failed
    batch's reason, ``<exception class>: <message>``; NULL otherwise). A failed batch has rows_read,
    rows_written, fingerprint, mode, rows_source, rows_rejected and details NULL.
    """
    from pyspark.sql.types import (
        DateType,
        DoubleType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    return StructType([
        StructField("batch_id", StringType(), False), StructField("source", StringType()),
        StructField("object", StringType()), StructField("raw_table", StringType()),
        StructField("logical_date", DateType()), StructField("window_start", TimestampType()),
        StructField("window_end", TimestampType()), StructField("rows_read", LongType()),
        StructField("rows_written", LongType()), StructField("fingerprint", StringType()),
        StructField("status", StringType()), StructField("extracted_at", TimestampType()),
        StructField("duration_s", DoubleType()), StructField("mode", StringType()),
        StructField("rows_source", LongType()), StructField("rows_rejected", LongType()),
        StructField("details", StringType()), StructField("error", StringType()),
    ])


def _ledger(spark: SparkSession, settings: Settings) -> DataFrame | None:
    path = settings.table_path("ops", "exchange_ledger")
    return spark.read.format("delta").load(path) if lake.exists(spark, path) else None


def resolve_window(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec,
                   window: Window) -> Window:
    """Decide whether a batch reads its window or everything before the window end.

    Full when ``window.full`` (backfill / snapshot mode), when the object has no watermark, when
    the ledger holds no batch of the object before this logical date (first run), or when this
    logical date's batch was first extracted full (a rerun repeats what the first run read, so a
    rerun of the first day never shrinks it). Otherwise the window ``[start, end)``. Failed
    attempts (status ``failed``) delivered nothing and are not batches here.
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
                         & (F_col("logical_date") <= window.logical_date) & _delivered())
            .select("logical_date", "mode" if has_mode else "status").collect())
    same = [r for r in rows if r[0] == window.logical_date]
    if same:
        return window if has_mode and same[0][1] == "incremental" else window.whole()
    return window if any(r[0] < window.logical_date for r in rows) else window.whole()


def F_col(name):  # noqa: N802 (a tiny lazy import helper)
    from pyspark.sql import functions as F

    return F.col(name)


def _delivered():
    """Ledger rows of delivered batches (not failed attempts)."""
    return ~F_col("status").eqNullSafe("failed")


def _ledger_fingerprint(spark: SparkSession, settings: Settings, batch_id: str) -> str | None:
    ledger = _ledger(spark, settings)
    if ledger is None:
        return None
    rows = ledger.where((F_col("batch_id") == batch_id) & _delivered()).select("fingerprint").collect()
    return rows[0][0] if rows else None


def delete_path(spark: SparkSession, path: str) -> None:
    """Delete a storage folder (any Hadoop file system) if it exists."""
    jvm = spark._jvm
    assert jvm is not None  # a classic (py4j) session
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())
    if fs.exists(hpath):
        fs.delete(hpath, True)


#: Raw tables keep Delta file statistics (min/max/null counts used for data skipping) for ``_row_number``
#: only: raw is read by logical-date partition, and statistics on every delivered text column and the
#: 64-character ``_row_hash`` cost about as much CPU as the Parquet encoding itself. ``numRecords`` is
#: kept for every file. Set when a raw table is created.
RAW_STATS_COLUMNS = "_row_number"


def _fingerprint_columns():
    from pyspark.sql import functions as F

    return (F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64("_row_hash").cast("decimal(38,0)")).alias("s"))


def _write_batch(spark: SparkSession, batch: DataFrame, path: str,
                 logical_date: dt.date) -> tuple[int, str, int, int | None]:
    """Write ``batch`` as the whole ``_logical_date`` partition in one Delta commit (``replaceWhere``),
    computing the fingerprint in the same pass (``observe``).

    Returns:
        ``(rows observed, fingerprint, rows in the commit (Delta's numOutputRows), version before the
        write or None when this write created the table)``.
    """
    from delta.tables import DeltaTable

    before = DeltaTable.forPath(spark, path).history(1).collect()[0]["version"] if lake.exists(spark, path) else None
    if before is not None:
        lake.add_columns_of(batch, path)  # a newly projected source field (older partitions read NULL)
    with runlog.timed_write("raw_batch", path) as logged:
        out = _write_observed(spark, batch, path, logical_date, before)
        logged.rows = out[2]
    return out


def _write_observed(spark: SparkSession, batch: DataFrame, path: str, logical_date: dt.date,
                    before: int | None) -> tuple[int, str, int, int | None]:
    """The write of :func:`_write_batch` (``before``: the table's version before it)."""
    from delta.tables import DeltaTable
    from pyspark.sql import Observation

    observation = Observation("govlake_raw_batch")
    (batch.observe(observation, *_fingerprint_columns())
        .write.format("delta").mode("overwrite")
        .option("replaceWhere", f"_logical_date = DATE'{logical_date.isoformat()}'")
        .option("delta.dataSkippingStatsColumns", RAW_STATS_COLUMNS)
        .partitionBy("_logical_date")
        .save(path))
    got = observation.get
    rows = int(got["n"])
    commit = DeltaTable.forPath(spark, path).history(1).collect()[0]
    metrics = commit["operationMetrics"] or {}
    if (before is not None and commit["version"] == before) or "numOutputRows" not in metrics:
        # Delta records no commit for a write that changes nothing (an empty batch into an empty
        # partition), and no row metric when an empty batch creates the table: count what the partition holds
        written = (spark.read.format("delta").load(path)
                   .where(f"_logical_date = DATE'{logical_date.isoformat()}'").count())
    else:
        written = int(metrics["numOutputRows"])
    return rows, f"{rows}:{got['s'] or 0}", written, before


def _undo_write(spark: SparkSession, path: str, before: int | None) -> None:
    """Take back a raw write that failed reconciliation: restore the version before it, or remove a
    table that the write created."""
    from delta.tables import DeltaTable

    if before is None:
        delete_path(spark, path)
        return
    table = DeltaTable.forPath(spark, path)
    if table.history(1).collect()[0]["version"] > before:
        table.restoreToVersion(before)


def _recorded_batch(spark: SparkSession, settings: Settings, batch_id: str):
    """The ledger row of a delivered batch (None when the batch was never delivered)."""
    ledger = _ledger(spark, settings)
    if ledger is None:
        return None
    rows = ledger.where((F_col("batch_id") == batch_id) & _delivered()).collect()
    return rows[0] if rows else None


def _kept_batch(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window, path: str,
                recorded) -> BatchResult | None:
    """The recorded batch, kept as delivered (no source read), when the raw partition still is what the ledger
    recorded (same fingerprint) and, for a file drop, the drop's manifest still lists the same file (same
    SHA-256); None when the batch must be read again (a redelivered drop, or a partition that is not the recorded
    delivery, e.g. written by a run killed before its ledger write)."""
    if (obj.kind or spec.kind) == "file_drop":
        entry = drop_listing(settings, spec, obj, window.logical_date)
        files = json.loads(recorded["details"] or "{}").get("files") or [{}]
        if entry is None or entry.get("sha256") != files[0].get("sha256"):
            return None
    if not lake.exists(spark, path):
        return None
    partition = spark.read.format("delta").load(path).where(f"_logical_date = DATE'{window.logical_date.isoformat()}'")
    rows, fp = fingerprint(partition)
    if fp != recorded["fingerprint"]:
        LOG.warning("%s: raw partition (%s) differs from the ledger (%s): extracting again", recorded["batch_id"],
                    fp, recorded["fingerprint"])
        return None
    r = recorded
    return BatchResult(r["batch_id"], r["source"], r["object"], r["raw_table"], r["logical_date"], r["window_start"],
                       r["window_end"], rows, rows, fp, "kept", r["extracted_at"], r["duration_s"], r["mode"],
                       r["rows_source"], r["rows_rejected"] or 0, r["details"] or "{}")


def extract_batch(spark: SparkSession, settings: Settings, spec: SourceSpec, obj: ObjectSpec, window: Window,
                  redeliver: bool = False) -> BatchResult:
    """Extract one object for one logical date into ``raw.<source>_<object>`` (entry-point I/O).

    A batch already delivered (a delivered row in the ledger) is kept as it was delivered, without reading the
    source, and the result has status ``kept`` (the ledger row stays as it is): a rerun of a past date reproduces
    that date, whatever the source holds now (:func:`_kept_batch`). It is read again only when ``redeliver``
    (the department's explicit redelivery), when its file drop's manifest lists another file, or when the raw
    partition is not the recorded delivery.

    Resolves the window (:func:`resolve_window`), reads the source (:func:`govlake.extract.registry.extract_object`),
    adds lineage and writes the partition in one Delta commit, in one pass over the source: the row
    count and :func:`fingerprint` are taken during the write (Spark ``observe``), rows in raw from the
    commit's ``numOutputRows``. A rerun of a logical date already in the ledger first computes the
    fingerprint in one aggregate and writes nothing when it equals the ledger's (the partition and
    ``_extracted_at`` stay untouched); a changed delivery replaces the partition whole.

    Reconciles: rows counted at the source = rows read + rows rejected at parse, and rows read = rows in the raw
    partition. A JDBC partition that delivers more rows than counted fails the write before the commit (see
    :func:`govlake.extract.registry.extract_sql_object`; raised as ReconciliationError); any other disagreement found
    after the commit takes the commit back (restores the previous table version, or removes a table the write created)
    before raising, so a batch that fails reconciliation never stays in raw. An empty window writes an empty partition
    and a ledger row (not an error). The caller records the result with :func:`record_batches`.

    Raises:
        govlake.extract.registry.SourceError: the source cannot be read (nothing is written).
        ReconciliationError: a count disagrees (names the batch and the counts).
    """
    started = time.monotonic()
    table = f"{spec.source}_{obj.name}"
    path = settings.table_path("raw", table)
    batch_id = f"{spec.source}.{obj.name}:{window.logical_date.isoformat()}"
    extracted_at = dt.datetime.now(dt.UTC)
    recorded = None if redeliver else _recorded_batch(spark, settings, batch_id)
    if recorded is not None and (kept := _kept_batch(spark, settings, spec, obj, window, path, recorded)):
        return kept
    window = resolve_window(spark, settings, spec, obj, window)
    got = extract_object(spark, settings, spec, obj, window)
    unchanged = False
    try:
        batch = add_lineage(got.frame, spec.source, obj.name, window.logical_date, extracted_at)
        previous = _ledger_fingerprint(spark, settings, batch_id) if lake.exists(spark, path) else None
        if previous is not None:
            rows, fp = _guarded(batch_id, fingerprint, batch)
            unchanged = fp == previous
            _reconcile(batch_id, got, rows)
        if unchanged:
            in_raw = (spark.read.format("delta").load(path)
                      .where(f"_logical_date = DATE'{window.logical_date.isoformat()}'").count())
        else:
            rows, fp, in_raw, before = _guarded(batch_id, _write_batch, spark, batch, path, window.logical_date)
            failpoint("extract.after_raw_write")
            try:
                _reconcile(batch_id, got, rows)
            except ReconciliationError:
                _undo_write(spark, path, before)
                raise
    finally:
        if got.staging:
            delete_path(spark, got.staging)
    if in_raw != rows:
        if not unchanged:
            _undo_write(spark, path, before)
        raise ReconciliationError(f"reconciliation failed for {batch_id}: {rows} rows read, "
                                  f"{in_raw} rows in raw.{table}")
    details = dict(got.details)
    if got.rejected:
        details["rejected"] = [{"row": n, "reason": r} for n, r in got.rejected[:100]]
    mode = details.pop("mode", window.mode)
    return BatchResult(batch_id, spec.source, obj.name, f"raw.{table}", window.logical_date, window.start,
                       window.end, rows, in_raw, fp, "unchanged" if unchanged else "written", extracted_at,
                       round(time.monotonic() - started, 3), mode, got.rows_source, len(got.rejected),
                       json.dumps(details, ensure_ascii=False, sort_keys=True))


#: Signs, in a failed Spark job's message, that the source went away while the job read it (JDBC, the driver).
_UNREACHABLE = ("PSQLException", "Connection refused", "connection refused", "terminating connection",
                "An I/O error occurred", "Connection reset", "server closed the connection")


def _guarded(batch_id: str, action, *args):
    """Run a Spark action over a batch (the lazy source read happens in it). The read's own over-delivery guard
    (a failed Spark task, so nothing was committed) becomes a ReconciliationError naming the batch; a source that
    went away during the read becomes a SourceUnavailable naming it (nothing was committed either)."""
    from govlake.extract.registry import SourceUnavailable

    try:
        return action(*args)
    except Exception as exc:
        text = str(exc)
        if OVER_DELIVERY in text:
            line = next(line for line in text.splitlines() if OVER_DELIVERY in line)
            reason = line[line.find("source "):].split(" SQLSTATE")[0].strip()
            raise ReconciliationError(f"reconciliation failed for {batch_id}: {reason}") from exc
        sign = next((s for s in _UNREACHABLE if s in text), None)
        if sign is None:
            raise
        line = next(line for line in text.splitlines() if sign in line).strip()
        source = batch_id.split(":", 1)[0]
        raise SourceUnavailable(f"source {source}: the source became unreachable while batch {batch_id} was read "
                                f"(nothing written): {line[:300]}") from exc


def _reconcile(batch_id: str, got, rows: int) -> None:
    if got.rows_source is not None and got.rows_source != rows + len(got.rejected):
        raise ReconciliationError(f"reconciliation failed for {batch_id}: the source holds {got.rows_source} rows "
                                  f"in the window, {rows} were read and {len(got.rejected)} rejected at parse")


def record_batches(spark: SparkSession, settings: Settings, results: list[BatchResult]) -> None:
    """MERGE batch results into ``ops.exchange_ledger`` (one row per batch_id) in one commit.

    A batch whose fingerprint is unchanged keeps its ledger row as it was (first extraction time,
    status ``written``), so rerunning a logical date leaves the ledger unchanged. A failed attempt
    (:func:`failed_batch`) is recorded when the batch has no row or a ``failed`` one (the latest
    attempt's reason), never over a delivered batch (``written`` / ``unchanged``); a later success
    replaces a ``failed`` row. A ledger written by an older version (without mode, rows_source,
    rows_rejected, details, error) gets those columns added.

    Raises:
        ValueError: two results of the same batch_id.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if not results:
        return
    ids = [r.batch_id for r in results]
    if len(set(ids)) != len(ids):
        raise ValueError(f"ops.exchange_ledger: batch {next(i for i in ids if ids.count(i) > 1)} recorded twice")
    # the MERGE updates a row only when this hash changes: the fingerprint, or each failed attempt
    rows = [(r.batch_id, r.source, r.object, r.table, r.logical_date, r.window_start, r.window_end, r.rows_read,
             r.rows_written, r.fingerprint, r.status, r.extracted_at, r.duration_s, r.mode, r.rows_source,
             r.rows_rejected, r.details, r.error,
             r.fingerprint if r.status != "failed" else f"failed:{r.extracted_at.isoformat()}:{r.error}")
            for r in results]
    schema = StructType(ledger_schema().fields + [StructField("_content_hash", StringType())])
    df = spark.createDataFrame(rows, schema)
    path = settings.table_path("ops", "exchange_ledger")
    if lake.exists(spark, path):
        lake.add_missing_columns(spark, path, [(f.name, f.dataType.simpleString()) for f in ledger_schema().fields])

    def merge():
        if not lake.exists(spark, path):
            return lake.merge_by_key(spark, df, path, ["batch_id"])
        (DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), "t.batch_id = s.batch_id")
            .whenMatchedUpdate(condition="NOT (t._content_hash <=> s._content_hash) "
                                         "AND (s.status <> 'failed' OR t.status <=> 'failed')",
                               set={c: F.col(f"s.`{c}`") for c in df.columns})
            .whenNotMatchedInsertAll()
            .execute())

    lake.retry_on_conflict(merge, "ops.exchange_ledger")  # parallel extract tasks
