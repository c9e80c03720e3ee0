"""Delta Lake write primitives shared by every layer, each idempotent for its logical date.

- :func:`replace_partition`: rewrite exactly one logical date's partition (``replaceWhere``);
  :func:`replace_partition_counted` also returns the rows it wrote (Delta commit metrics, no re-read);
- :func:`merge_by_key`: MERGE on business keys, updating only rows whose content hash changed,
  so a rerun with the same input leaves the table's contents (and its version) unchanged;
- :func:`merged_state`: what a table would hold after :func:`merge_by_key`, without writing (audit before publish);
- :func:`overwrite_if_changed`: whole-table rewrite for small derived tables, skipped when equal;
- :func:`register_tables`: name every table as ``<layer>.<table>`` for Spark SQL;
- :func:`register_new_tables`: the same in a persistent catalog (Hive metastore), registering only what is new;
- :func:`retry_on_conflict`: retry a commit to a table shared by parallel tasks (ledgers, results) when
  Delta's optimistic concurrency control rejects it.

Each write helper logs one line (:func:`govlake.core.runlog.log_write`): the operation, ``<layer>.<table>``, the
rows written (Delta's commit metrics, no re-read) and the seconds.

A table ``<layer>.<name>`` lives at ``Settings.table_path(layer, name)``.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from govlake.core import runlog
from govlake.core.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

LOG = logging.getLogger("govlake.core.lake")
T = TypeVar("T")
LAYERS = ("raw", "ops", "quarantine", "staging", "unified", "marts", "analysis", "governance", "catalog")
#: Layers whose readers go through publications (:func:`record_publication`).
PUBLISHED_LAYERS = ("unified",)


def exists(spark: SparkSession, path: str) -> bool:
    """True when ``path`` holds a Delta table: its ``_delta_log`` has a commit or a checkpoint (read from the file
    system, any Hadoop storage, each time: ``DeltaTable.isDeltaTable`` answers from a log cached in the JVM and
    keeps saying False for a table another process created after this process first looked)."""
    jvm = spark._jvm
    assert jvm is not None  # a classic (py4j) session
    log = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    fs = log.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(log):
        return False
    names = (status.getPath().getName() for status in fs.listStatus(log))
    return any(_COMMIT_FILE.match(name) for name in names)


#: A Delta commit (``<version>.json``) or checkpoint (``<version>.checkpoint[.<part or uuid>].parquet|json``).
_COMMIT_FILE = re.compile(r"^\d{20}\.(json|checkpoint(\.[^/]+)?\.(parquet|json))$")


def replace_partition(df: DataFrame, path: str, date_column: str, value: dt.date,
                      partition_by: str | None = None) -> None:
    """Write ``df`` as the whole content of one date's partition of the Delta table at ``path``.

    Other partitions are untouched; rerunning with the same ``df`` leaves the same rows. The table
    is created (partitioned by ``partition_by``, default ``date_column``) when missing; a column of ``df`` that
    an existing table lacks (a source field newly projected into raw and staging) is added first
    (:func:`add_missing_columns`: other partitions read NULL), columns are matched by name.

    Raises:
        ValueError: ``df`` holds a row whose ``date_column`` is not ``value`` (Delta refuses it).
    """
    import uuid

    partition_by = partition_by or date_column
    tag = f"govlake-replace-{uuid.uuid4()}"
    with runlog.timed_write("replace_partition", path) as logged:
        add_columns_of(df, path)
        (df.write.format("delta").mode("overwrite")
           .option("replaceWhere", f"{date_column} = DATE'{value.isoformat()}'")
           .option("userMetadata", tag)
           .partitionBy(partition_by)
           .save(path))
        logged.rows = _tagged_commit_rows(df.sparkSession, path, tag)


def _tagged_commit_rows(spark: SparkSession, path: str, tag: str) -> int | None:
    """``numOutputRows`` of the commit of ``path`` whose ``userMetadata`` is ``tag`` (0 when Delta recorded no
    commit or no data file for it: an empty write); None when the history cannot be read."""
    from delta.tables import DeltaTable

    try:
        history = DeltaTable.forPath(spark, path).history(50).select("userMetadata", "operationMetrics").collect()
    except Exception:  # noqa: BLE001 - a log figure must never fail the write it describes
        return None
    for row in history:
        if row["userMetadata"] == tag:
            return int((row["operationMetrics"] or {}).get("numOutputRows", 0))
    return 0


def replace_partition_counted(spark: SparkSession, df: DataFrame, path: str, date_column: str, value: dt.date,
                              stats_columns: str | None = None) -> int:
    """:func:`replace_partition` (missing columns added first), returning the rows the commit wrote: its Delta
    operation metric
    ``numOutputRows``. The commit REPLACES the whole partition atomically (``replaceWhere``), so this is the
    number of rows the partition holds after it, known without reading the table again. The commit is found in
    the table's history by a unique ``userMetadata`` tag, so a concurrent writer's commit is never taken. A
    commit without the metric (Delta omits it when no data file was written, e.g. an empty frame) is counted by
    reading the partition at that commit's version.

    Delta records no commit at all for a write that changes nothing (an empty frame into an empty partition of an
    existing table); the partition is then counted as it is.

    ``stats_columns``: when the write creates the table, its ``delta.dataSkippingStatsColumns`` (comma-separated
    columns that keep min/max/null-count file statistics; ``numRecords`` is always kept). An existing table keeps
    its property.

    Raises:
        ValueError: as :func:`replace_partition`.
    """
    with runlog.timed_write("replace_partition", path) as logged:
        logged.rows = _replace_partition_counted(spark, df, path, date_column, value, stats_columns)
        return logged.rows


def _replace_partition_counted(spark: SparkSession, df: DataFrame, path: str, date_column: str, value: dt.date,
                               stats_columns: str | None) -> int:
    import uuid

    from delta.tables import DeltaTable

    tag = f"govlake-replace-{uuid.uuid4()}"
    add_columns_of(df, path)  # as replace_partition: a newly projected source column reaches an older table
    writer = (df.write.format("delta").mode("overwrite")
              .option("replaceWhere", f"{date_column} = DATE'{value.isoformat()}'")
              .option("userMetadata", tag))
    if stats_columns:
        writer = writer.option("delta.dataSkippingStatsColumns", stats_columns)
    writer.partitionBy(date_column).save(path)
    history = DeltaTable.forPath(spark, path).history(50).select("version", "userMetadata", "operationMetrics")
    for row in history.collect():
        if row["userMetadata"] == tag:
            metrics = row["operationMetrics"] or {}
            if "numOutputRows" in metrics:
                return int(metrics["numOutputRows"])
            # Delta leaves the metric out when a commit wrote no data file (an empty frame): count that version
            return (spark.read.format("delta").option("versionAsOf", row["version"]).load(path)
                    .where(f"{date_column} = DATE'{value.isoformat()}'").count())
    # no commit carries the tag: Delta records none for a write that changes nothing (an empty frame into a
    # partition that is already empty), so the partition holds what it held: count it
    return (spark.read.format("delta").load(path)
            .where(f"{date_column} = DATE'{value.isoformat()}'").count())


def replace_partition_if_changed(spark: SparkSession, df: DataFrame, path: str, date_column: str,
                                 value: dt.date) -> bool:
    """:func:`replace_partition` unless the date's partition already holds exactly ``df`` (see
    :func:`same_content`), so a rerun leaves the table's history untouched.

    Returns:
        True when the partition was written.
    """
    from pyspark.sql import functions as F

    started = time.monotonic()
    if exists(spark, path):
        current = spark.read.format("delta").load(path).where(F.col(date_column) == F.lit(value))
        if same_content(current, df):
            runlog.log_write("replace_partition", path, 0, time.monotonic() - started, skipped="unchanged")
            return False
    replace_partition(df, path, date_column, value)
    return True


def add_columns_of(df: DataFrame, path: str) -> list[str]:
    """:func:`add_missing_columns` with ``df``'s columns, when a Delta table exists at ``path``; returns the names
    added."""
    spark = df.sparkSession
    if not exists(spark, path):
        return []
    return add_missing_columns(spark, path, [(f.name, f.dataType.simpleString()) for f in df.schema.fields])


def add_missing_columns(spark: SparkSession, path: str, columns: list[tuple[str, str]]) -> list[str]:
    """Add to the Delta table at ``path`` the ``(name, Spark SQL type)`` columns it lacks, with
    ``ALTER TABLE … ADD COLUMNS`` (old rows read NULL); schema auto-merge is off, so a table written by an
    older GovLake gets a new column this way before a write or MERGE that carries it.

    Returns:
        the names added (empty when the table already has them all).
    """
    have = set(spark.read.format("delta").load(path).columns)
    missing = [(c, t) for c, t in columns if c not in have]
    if missing:
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({', '.join(f'`{c}` {t}' for c, t in missing)})")
    return [c for c, _ in missing]


def merge_by_key(spark: SparkSession, df: DataFrame, path: str, keys: list[str], hash_column: str = "_content_hash",
                 insert_only_columns: tuple[str, ...] = ()) -> dict[str, int]:
    """MERGE ``df`` into the Delta table at ``path`` on ``keys`` (null-safe equality).

    ``df`` must be unique on ``keys`` (dedupe first, deterministically) and carry ``hash_column``,
    a hash of the attributes that matter. Only rows whose key is new or whose hash differs are MERGEd (a
    left anti join on key and hash first), so a rerun that changes nothing commits nothing;
    ``insert_only_columns`` (e.g. ``first_seen_date``) keep the value they had when the row was first inserted.
    The table is created from ``df`` when missing.

    Returns:
        ``{"inserted": n, "updated": n}`` from Delta's operation metrics (0/0 on a no-op rerun).

    Raises:
        ValueError: ``df`` has duplicate keys (names the table and one duplicated key).
    """
    with runlog.timed_write("merge_by_key", path) as logged:
        counts = _merge_by_key(spark, df, path, keys, hash_column, insert_only_columns)
        logged.rows = counts["inserted"] + counts["updated"]
        logged.details = dict(counts)
        return counts


def _merge_by_key(spark: SparkSession, df: DataFrame, path: str, keys: list[str], hash_column: str,
                  insert_only_columns: tuple[str, ...]) -> dict[str, int]:
    from functools import reduce

    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    dup = df.groupBy(*keys).count().where("count > 1").limit(1).collect()
    if dup:
        raise ValueError(f"MERGE into {path}: source has duplicate key { {k: dup[0][k] for k in keys} }")
    if not exists(spark, path):
        df.write.format("delta").save(path)
        return {"inserted": df.count(), "updated": 0}
    target = DeltaTable.forPath(spark, path)
    # only the rows that are new or changed reach the MERGE: Delta rewrites every file holding a matched row, even
    # when the update condition then leaves it as it was, so an unchanged rerun would commit a new version
    current = target.toDF().select(*[F.col(f"`{k}`").alias(f"__t_{k}") for k in keys],
                                   F.col(f"`{hash_column}`").alias("__t_hash"))
    same = [df[f"`{k}`"].eqNullSafe(current[f"__t_{k}"]) for k in keys] + [
        df[f"`{hash_column}`"].eqNullSafe(current["__t_hash"])]
    changed = df.join(current, reduce(lambda a, b: a & b, same), "left_anti")
    if changed.isEmpty():
        return {"inserted": 0, "updated": 0}  # nothing to change: no commit, the table keeps its version
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    update: dict[str, str | Column] = {c: F.col(f"s.`{c}`") for c in df.columns if c not in insert_only_columns}
    (target.alias("t").merge(changed.alias("s"), condition)
        .whenMatchedUpdate(condition=f"NOT (t.`{hash_column}` <=> s.`{hash_column}`)", set=update)
        .whenNotMatchedInsertAll()
        .execute())
    last = target.history(1).select("operation", "operationMetrics").collect()[0]
    metrics = last["operationMetrics"] or {}
    if last["operation"] != "MERGE":
        return {"inserted": 0, "updated": 0}
    return {"inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "updated": int(metrics.get("numTargetRowsUpdated", 0))}


def merged_state(target: DataFrame | None, source: DataFrame, keys: list[str], hash_column: str = "_content_hash",
                 insert_only_columns: tuple[str, ...] = ()) -> DataFrame:
    """The rows the table would hold after :func:`merge_by_key` of ``source`` into ``target`` — without writing
    (a pure transform, for write-audit-publish: validate the new state, then MERGE).

    Args:
        target: the table's current rows (None when the table does not exist yet).
        source: the MERGE source, unique on ``keys``, with ``hash_column``.
        keys, hash_column, insert_only_columns: as for :func:`merge_by_key`.

    Returns:
        DataFrame with the target's columns, then the source's columns the target lacks (NULL in rows that were
        not updated, as :func:`add_missing_columns` leaves them): target rows whose key (null-safe) is not in
        ``source`` or whose ``hash_column`` equals the source's, unchanged; matched rows with another hash take
        the source's values except ``insert_only_columns``; source rows without a target row are inserted
        (target-only columns NULL). ``target`` itself when ``source`` is empty. ``source`` when ``target`` is None.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    if target is None:
        return source
    s_cols, t_cols = list(source.columns), list(target.columns)
    t = target.select(*[F.col(c).alias(f"t_{i}") for i, c in enumerate(t_cols)], F.lit(True).alias("_t_present"))
    s = source.select(*[F.col(c).alias(f"s_{i}") for i, c in enumerate(s_cols)], F.lit(True).alias("_s_present"))
    ti, si = {c: F.col(f"t_{i}") for i, c in enumerate(t_cols)}, {c: F.col(f"s_{i}") for i, c in enumerate(s_cols)}
    on = reduce(lambda a, b: a & b, [ti[k].eqNullSafe(si[k]) for k in keys])
    j = t.join(s, on, "full_outer")
    t_in, s_in = F.col("_t_present").isNotNull(), F.col("_s_present").isNotNull()
    take_source = s_in & (~t_in | ~ti[hash_column].eqNullSafe(si[hash_column]))
    out = []
    for c in t_cols + [c for c in s_cols if c not in t_cols]:
        old = ti[c] if c in ti else F.lit(None).cast(source.schema[c].dataType)
        if c not in si:  # an UPDATE sets only the source's columns; an insert leaves this one NULL (= old)
            new = old
        elif c in insert_only_columns:
            new = F.when(~t_in, si[c]).otherwise(old)
        else:
            new = si[c]
        out.append(F.when(take_source, new).otherwise(old).alias(c))
    return j.select(*out)


def same_content(current: DataFrame, df: DataFrame) -> bool:
    """True when both frames have the same column names and types and the same rows as multisets
    (``exceptAll`` both ways). Nullability is ignored: Delta reads every column back as nullable,
    so ``schema ==`` never holds after a write of a frame with non-null columns."""
    def shape(d):
        return [(f.name, f.dataType.simpleString()) for f in d.schema.fields]

    return shape(current) == shape(df) and current.exceptAll(df).isEmpty() and df.exceptAll(current).isEmpty()


def overwrite_if_changed(spark: SparkSession, df: DataFrame, path: str, order_by: list[str]) -> bool:
    """Overwrite the Delta table at ``path`` with ``df`` unless its content is already equal.

    For small derived tables (marts, analysis) recomputed whole. Equality is an exact multiset
    comparison (``exceptAll`` both ways), so a rerun leaves the table and its history unchanged.

    Returns:
        True when the table was written.
    """
    import uuid

    with runlog.timed_write("overwrite", path) as logged:
        if exists(spark, path):
            current = spark.read.format("delta").load(path)
            if same_content(current, df):
                logged.rows, logged.details = 0, {"skipped": "unchanged"}
                return False
        tag = f"govlake-overwrite-{uuid.uuid4()}"
        (df.orderBy(*order_by).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
         .option("userMetadata", tag).save(path))
        logged.rows = _tagged_commit_rows(spark, path, tag)
        return True


def register_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every Delta table under the lakehouse as ``<layer>.<table>`` in Spark's catalog.

    Needed once per SparkSession (the catalog is in memory); afterwards ``spark.sql("SELECT *
    FROM marts.population_by_district_sex_age")`` works. A name registered before for another lakehouse
    is re-pointed to this one. A layer with publications (``unified``, see :func:`record_publication`) is
    registered as views pinned at its latest publication, so a reader never sees a run's tables half
    published; its tables themselves stay readable by path (``delta.`<path>```, time travel, history).

    In a persistent catalog (``GOVLAKE_METASTORE_URL``, :func:`is_persistent_catalog`) this is
    :func:`register_new_tables`: the names are kept across sessions, only new tables and changed publications are
    registered.

    Returns:
        the registered names, sorted.
    """
    if is_persistent_catalog(spark):
        return register_new_tables(spark, settings)
    names = []
    root = settings.lakehouse
    if root.startswith("file:"):
        root = root[5:]
    for layer in LAYERS:
        layer_dir = Path(root) / layer
        if not layer_dir.is_dir():
            continue
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        published = layer in PUBLISHED_LAYERS
        pinned = published_versions(spark, settings, layer) if published else None
        # names only (SHOW TABLES): resolving a name registered for a lakehouse since deleted fails
        known = {r["tableName"] for r in spark.sql(f"SHOW TABLES IN {layer}").collect() if not r["isTemporary"]}
        for table_dir in sorted(p for p in layer_dir.iterdir() if exists(spark, str(p))):
            name = f"{layer}.{table_dir.name}"
            # re-point a name registered earlier in this session (another lakehouse): the tables are EXTERNAL
            # (LOCATION), so DROP TABLE forgets the name and never touches the data; a published layer has views
            if table_dir.name.lower() in known:
                spark.sql(f"DROP {'VIEW' if published else 'TABLE'} {name}")
            if not published:
                spark.sql(f"CREATE TABLE {name} USING delta LOCATION '{table_dir}'")
            elif pinned is not None and table_dir.name in pinned[1]:
                spark.sql(f"CREATE VIEW {name} AS SELECT * FROM delta.`{table_dir}` "
                          f"VERSION AS OF {pinned[1][table_dir.name]}")
            else:
                continue  # not published (e.g. written by a run killed before its publication)
            names.append(name)
    return sorted(names)


def is_persistent_catalog(spark: SparkSession) -> bool:
    """True when ``spark``'s catalog is a Hive metastore (``spark.sql.catalogImplementation=hive``, set by
    :func:`govlake.core.spark.get_spark` when ``GOVLAKE_METASTORE_URL`` is), whose names outlive the session."""
    return spark.conf.get("spark.sql.catalogImplementation", "in-memory") == "hive"


def _lakehouse_dirs(settings: Settings) -> list[tuple[str, Path]]:
    """``(layer, layer folder)`` of each layer of :data:`LAYERS` present under a local lakehouse."""
    root = settings.lakehouse[5:] if settings.lakehouse.startswith("file:") else settings.lakehouse
    return [(layer, Path(root) / layer) for layer in LAYERS if (Path(root) / layer).is_dir()]


#: Table property of a published layer's view: the Delta version it is pinned at (see :func:`register_new_tables`).
PINNED_VERSION_PROPERTY = "govlake.pinned_version"


def register_new_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Register in ``spark``'s catalog, as ``<layer>.<table>``, every Delta table of the lakehouse not registered yet
    (``CREATE TABLE IF NOT EXISTS … USING delta LOCATION``: EXTERNAL, the data is never touched), creating the
    layer's database when missing; a published layer (:data:`PUBLISHED_LAYERS`) gets views pinned at its latest
    publication (as :func:`register_tables`), replaced when the publication moved on.

    Meant for a persistent catalog (Hive metastore): the pipeline calls it after each stage, so the SQL endpoint
    (:mod:`govlake.serve.sql_endpoint`) and ``spark-sql`` see every table by name without registering anything.
    Idempotent and cheap when nothing is new: one ``SHOW TABLES`` per layer, one property read per published view,
    a Delta log check only for folders not registered yet. A name is kept as registered: one metastore database
    serves one lakehouse.

    Returns:
        every registered ``<layer>.<table>`` of the lakehouse, sorted.
    """
    names = []
    for layer, layer_dir in _lakehouse_dirs(settings):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
        known = {r["tableName"] for r in spark.sql(f"SHOW TABLES IN {layer}").collect() if not r["isTemporary"]}
        published = layer in PUBLISHED_LAYERS
        pinned = published_versions(spark, settings, layer) if published else None
        for table_dir in sorted(p for p in layer_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            table, name = table_dir.name, f"{layer}.{table_dir.name}"
            if not published:
                if table.lower() not in known:
                    if not exists(spark, str(table_dir)):
                        continue
                    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION '{table_dir}'")
                names.append(name)
                continue
            if pinned is None or table not in pinned[1]:
                continue  # not published (e.g. written by a run killed before its publication)
            version = str(pinned[1][table])
            if table.lower() in known:
                props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}
                if props.get(PINNED_VERSION_PROPERTY) == version:
                    names.append(name)
                    continue
            spark.sql(f"CREATE OR REPLACE VIEW {name} TBLPROPERTIES ('{PINNED_VERSION_PROPERTY}' = '{version}') "
                      f"AS SELECT * FROM delta.`{table_dir}` VERSION AS OF {version}")
            names.append(name)
    return sorted(names)


def retry_on_conflict(commit: Callable[[], T], what: str, attempts: int = 6, first_wait_s: float = 0.2) -> T:
    """Run ``commit`` (one Delta write, MERGE or replaceWhere) and run it again when Delta rejects it because a
    concurrent transaction committed first (the classes of :data:`delta.exceptions.__all__`:
    ConcurrentAppend, ConcurrentDeleteRead, ConcurrentWrite, MetadataChanged, ...).

    Delta's optimistic concurrency control (Delta Lake docs, "Concurrency control") lets writers of one table
    race and fails the loser; the Airflow DAG runs one extract and one validate task per department in
    parallel, and all of them commit to the shared ``ops`` tables (exchange ledger, validation results).
    ``commit`` must be idempotent (a MERGE on business keys or a replaceWhere rewrite), so running it again
    on the newer snapshot is correct. Waits ``first_wait_s`` × 2^(attempt-1) seconds between attempts.

    Returns:
        what ``commit`` returns.

    Raises:
        one of those exceptions: still conflicting after ``attempts`` tries (the log names ``what``); any
        other error at once.
    """
    import delta.exceptions

    conflicts = tuple(getattr(delta.exceptions, name) for name in delta.exceptions.__all__)
    for attempt in range(1, attempts + 1):
        try:
            return commit()
        except conflicts as exc:
            if attempt == attempts:
                LOG.error("%s: concurrent commits won %d times in a row; giving up", what, attempts)
                raise
            wait = first_wait_s * 2 ** (attempt - 1)
            LOG.warning("%s: concurrent commit (%s); retrying in %.1f s (attempt %d of %d)",
                        what, type(exc).__name__, wait, attempt + 1, attempts)
            time.sleep(wait)
    raise AssertionError("unreachable")


# --- publications: which table versions make up a layer's state for a logical date -----------------------------

#: ``ops.publications``: per (layer, logical date), the version of every table of that layer after the stage that
#: wrote them for that date; recorded in one commit once all of them are committed.
PUBLICATIONS = ("ops", "publications")


def _publications_schema():
    from pyspark.sql.types import (
        DateType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    return StructType([StructField("layer", StringType(), False), StructField("logical_date", DateType(), False),
                       StructField("table", StringType(), False), StructField("version", LongType(), False),
                       StructField("run_id", StringType()), StructField("published_at", TimestampType())])


def table_version(spark: SparkSession, path: str) -> int | None:
    """Latest committed version of the Delta table at ``path`` (None when there is no table)."""
    from delta.tables import DeltaTable

    if not exists(spark, path):
        return None
    return int(DeltaTable.forPath(spark, path).history(1).select("version").collect()[0][0])


def record_publication(spark: SparkSession, settings: Settings, layer: str, logical_date: dt.date, tables: list[str],
                       run_id: str | None = None, versions: dict[str, int] | None = None) -> dict[str, int]:
    """Record that the current versions of ``layer``'s ``tables`` are that layer's state for ``logical_date``:
    the logical date's rows of ``ops.publications`` for the layer are replaced in one commit (``replaceWhere``).

    Readers (:func:`published_versions`, :func:`read_published`, :func:`register_tables`) see a stage's tables
    only through a publication, so a run killed between two of its table commits is invisible to them until its
    rerun publishes every table; and a later rerun of an earlier date reads that date's state.

    ``versions``: the version to record per table (default: each table's current version). When the date's
    publication already records exactly these versions nothing is written (a rerun that changed nothing).

    Returns:
        table -> version recorded (tables without a Delta table are left out).
    """
    if versions is None:
        versions = {t: v for t in tables if (v := table_version(spark, settings.table_path(layer, t))) is not None}
    before = published_versions(spark, settings, layer, logical_date)
    if before is not None and before[0] == logical_date and before[1] == versions:
        return versions  # a rerun that changed no table publishes nothing new: ops.publications stays as it is
    now = dt.datetime.now().replace(microsecond=0)
    rows = [(layer, logical_date, t, v, run_id, now) for t, v in sorted(versions.items())]
    df = spark.createDataFrame(rows, _publications_schema())
    path = settings.table_path(*PUBLICATIONS)
    retry_on_conflict(lambda: (df.write.format("delta").mode("overwrite")
                               .option("replaceWhere", f"layer = '{layer}' AND logical_date = DATE'{logical_date}'")
                               .save(path)), f"ops.publications {layer} {logical_date}")
    return versions


def published_versions(spark: SparkSession, settings: Settings, layer: str, as_of: dt.date | None = None
                       ) -> tuple[dt.date, dict[str, int]] | None:
    """The publication of ``layer`` that holds for ``as_of`` (default: the latest): the one of the latest logical
    date on or before it, as ``(logical date, {table: version})``; None when there is none."""
    path = settings.table_path(*PUBLICATIONS)
    if not exists(spark, path):
        return None
    pubs = spark.read.format("delta").load(path).where(f"layer = '{layer}'")
    if as_of is not None:
        pubs = pubs.where(f"logical_date <= DATE'{as_of}'")
    rows = pubs.select("logical_date", "table", "version").collect()
    if not rows:
        return None
    day = max(r["logical_date"] for r in rows)
    return day, {r["table"]: int(r["version"]) for r in rows if r["logical_date"] == day}


def latest_published_date(spark: SparkSession, settings: Settings, layer: str) -> dt.date | None:
    """The latest logical date ``layer`` was published for (None when never)."""
    found = published_versions(spark, settings, layer)
    return found[0] if found else None


def read_published(spark: SparkSession, settings: Settings, layer: str, table: str,
                   as_of: dt.date | None = None) -> DataFrame | None:
    """``<layer>.<table>`` as published for ``as_of`` (see :func:`published_versions`; time travel to that
    version); None when the layer has no publication on or before ``as_of`` or it does not include the table
    (tables of a run killed before its publication are not read).

    Raises:
        RuntimeError: the published version is no longer readable (removed by VACUUM): the message says so.
    """
    path = settings.table_path(layer, table)
    found = published_versions(spark, settings, layer, as_of)
    if found is None:
        return None
    version = found[1].get(table)
    if version is None:
        return None
    try:
        df = spark.read.format("delta").option("versionAsOf", version).load(path)
        df.schema  # noqa: B018 - resolves the version now, so a vacuumed one fails here with our message
        return df
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"{layer}.{table} version {version} (published for {found[0]}) cannot be read: "
                           f"{str(exc).splitlines()[0]}") from exc



def require_published(spark: SparkSession, settings: Settings, layer: str, table: str,
                      as_of: dt.date | None = None) -> DataFrame:
    """:func:`read_published`, for a reader that cannot go on without the table.

    Raises:
        RuntimeError: the layer has no publication of the table on or before ``as_of`` (names layer, table, date).
    """
    df = read_published(spark, settings, layer, table, as_of)
    if df is None:
        raise RuntimeError(f"{layer}.{table}: no publication on or before {as_of} (the stage that writes it has not "
                           "completed for that date): run it first")
    return df
