"""The validate stage (raw quality gate, write-audit-publish): each raw batch through its expectation suite into
``staging.<table>`` (accepted) and ``quarantine.<table>`` (rejected, with rule ids and messages), per-rule counts to
``ops.validation_results``, the Great Expectations result and Data Docs.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import config, lake
from govlake.core.config import Settings
from govlake.extract.stage import raw_tables, raw_watermark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


def _partition(spark: SparkSession, settings: Settings, layer: str, table: str, logical_date: dt.date) -> DataFrame:
    return (spark.read.format("delta").load(settings.table_path(layer, table))
            .where(f"_logical_date = DATE'{logical_date.isoformat()}'"))


def validate_table(spark: SparkSession, settings: Settings, table: str, logical_date: dt.date, data_docs: bool = True,
                   suites_dir: Path | None = None, build_site: bool = True, write_results: bool = True) -> dict:
    """Validate one raw batch and publish it (write-audit-publish).

    Reads ``raw.<table>`` for ``logical_date``, evaluates ``expectations/raw.<table>.json`` in one
    pass (of the copies of a key the newest by the object's registry watermark stands, :func:`raw_watermark`),
    stops before publishing when a ``fail`` rule failed, then replaces the logical date's
    partitions of ``staging.<table>`` (accepted rows) and ``quarantine.<table>`` (rejected rows
    with ``_rule_ids`` and ``_messages``, plus ``_released`` FALSE, ``_release_id`` and ``_released_row`` NULL,
    set later by ``python -m govlake.quality.audit release``), and of ``ops.validation_results`` (one row per rule:
    table, batch_id, suite, suite_version, rule_id, expectation_type, column, action, evaluated,
    failed). ``suites_dir``: folder of the suite files (default ``expectations/``).

    The batch is read and evaluated once (:func:`govlake.quality.rules.evaluate`, cached): the row count and every
    rule's counts come from one aggregation over it (:func:`govlake.quality.rules.count_rules`), the staging/quarantine
    writes read it, and (``data_docs``) the Great Expectations validation result is built from those counts
    (:func:`govlake.quality.rules.save_validation_result`, no Spark job; with ``GOVLAKE_GX_ENGINE=spark`` GX's own
    checkpoint runs on the cached frame instead, :func:`govlake.quality.rules.run_checkpoint`).
    Rows accepted and quarantined are the ``numOutputRows`` of the two Delta commits that replaced the
    partitions (:func:`govlake.core.lake.replace_partition_counted`), checked against the raw rows.
    ``build_site``: also update the Data Docs site after the checkpoint (False: the caller builds it once for
    many tables, see :func:`build_data_docs`). ``write_results`` False: the caller writes the returned
    ``rules`` to ``ops.validation_results`` (:func:`write_validation_results`, one commit for many tables).
    With ``data_docs``, each rule's quarantined rows (the first 1000, with the total) are also written as
    ``<reports>/quarantine/<date>/<table>/<rule_id>.html`` (:mod:`govlake.quality.quarantine_pages`), which the
    batch's validation page links from the rule's row.

    Returns:
        ``{"table", "raw", "accepted", "quarantined", "rules": [...], "data_docs": path|None,
        "data_docs_page": path|None}`` (``data_docs``: the site's index.html; ``data_docs_page``: this batch's
        validation page on the site, written when the site is built).

    Raises:
        govlake.quality.rules.FailRuleViolated: a fail rule failed (nothing of the batch is published).
        RuntimeError: raw != accepted + quarantined (a row would be lost or doubled).
        ValueError: the batch lacks a column of the suite or the registry's watermark column.
    """
    from pyspark.sql import functions as F

    from govlake.core.failpoints import failpoint
    from govlake.extract.raw import RAW_STATS_COLUMNS
    from govlake.quality import quarantine_pages
    from govlake.quality import rules as quality
    from govlake.quality.audit import (
        RELEASE_COLUMNS,  # an older quarantine table gets them from replace_partition_counted
    )

    suite = quality.load_suite(f"raw.{table}", suites_dir) if suites_dir else quality.load_suite(f"raw.{table}")
    batch_id = f"{table.split('_', 1)[0]}.{table.split('_', 1)[1]}:{logical_date.isoformat()}"
    batch = _partition(spark, settings, "raw", table, logical_date)
    newest_first = raw_watermark(table)
    engine = quality.gx_engine()
    if data_docs and engine == "spark":  # GX's own checkpoint reads the derived columns too
        frame = quality.evaluate_with_derived(batch, suite, newest_first=newest_first).cache()
        evaluated = frame.drop(*quality.derived_column_names(suite).values())
    else:
        frame = evaluated = quality.evaluate(batch, suite, newest_first=newest_first).cache()
    docs = page = None
    try:
        tally = quality.count_rules(evaluated, suite)
        counts = tally.rules
        quality.enforce_fail_rules(counts, suite)
        accepted, quarantined = quality.split(evaluated, suite)
        release_init = {"_released": F.lit(False)}
        quarantined = quarantined.select("*", *[release_init.get(c, F.lit(None)).cast(t).alias(c)
                                                for c, t in RELEASE_COLUMNS])
        # File statistics only where they serve (as raw, govlake.extract.raw.RAW_STATS_COLUMNS): staging is read by
        # partition and version; quarantine rows are looked up by source key (govlake.quality.audit release)
        n_acc = lake.replace_partition_counted(spark, accepted, settings.table_path("staging", table),
                                               "_logical_date", logical_date, stats_columns=RAW_STATS_COLUMNS)
        failpoint("validate.after_staging")
        n_quar = lake.replace_partition_counted(spark, quarantined, settings.table_path("quarantine", table),
                                                "_logical_date", logical_date,
                                                stats_columns=f"_source_key,{RAW_STATS_COLUMNS}")
        failpoint("validate.after_table")
        n_raw = tally.rows
        if n_raw != n_acc + n_quar:
            raise RuntimeError(f"validate raw.{table} {logical_date}: {n_raw} raw rows != {n_acc} accepted"
                               f" + {n_quar} quarantined")
        if data_docs:  # the pages the validation page links failed rules to (before the site is built)
            quarantine_pages.write_extracts(settings.reports_dir, table, logical_date, suite,
                                            quarantine_pages.collect_extracts(quarantined))
        if data_docs and engine == "spark":
            checkpoint = quality.run_checkpoint(spark, frame, suite, batch_id, settings.reports_dir,
                                                data_docs=build_site)
        elif data_docs:
            checkpoint = quality.save_validation_result(suite, tally, batch_id, settings.reports_dir,
                                                        data_docs=build_site)
        docs = checkpoint.get("data_docs_index") if data_docs else None
        page = checkpoint.get("data_docs_page") if data_docs else None
    finally:
        frame.unpersist()
    rows = [{"_logical_date": logical_date, "table": f"raw.{table}", "batch_id": batch_id, "suite": suite.name,
             "suite_version": suite.version, **{k: c[k] for k in ("rule_id", "expectation_type", "column", "action")},
             "evaluated": int(c["evaluated"]), "failed": int(c["failed"])} for c in counts]
    out = {"table": f"raw.{table}", "raw": n_raw, "accepted": n_acc, "quarantined": n_quar,
           "rules": [dict(r) for r in rows], "data_docs": str(docs) if docs else None,
           "data_docs_page": str(page) if page else None}
    if write_results:
        write_validation_results(spark, settings, logical_date, [out])
    return out


def write_validation_results(spark: SparkSession, settings: Settings, logical_date: dt.date,
                             validated: list[dict]) -> None:
    """Replace the rows of ``ops.validation_results`` for ``logical_date`` and the tables of ``validated`` (outputs
    of :func:`validate_table`) by their ``rules``, in ONE Delta commit (``replaceWhere`` on the date and the
    tables; other tables' rows are untouched), retried when a parallel validate task committed first."""
    if not validated:
        return
    rows = [r for v in validated for r in v["rules"]]
    names = sorted({v["table"] for v in validated})
    results = spark.createDataFrame(rows, schema=validation_results_schema())
    path = settings.table_path("ops", "validation_results")
    in_list = ", ".join(f"'{n}'" for n in names)
    lake.retry_on_conflict(  # the validate tasks of the departments run in parallel and share this table
        lambda: (results.write.format("delta").mode("overwrite")
                 .option("replaceWhere", f"_logical_date = DATE'{logical_date.isoformat()}' AND table IN ({in_list})")
                 .partitionBy("_logical_date").save(path)),
        f"ops.validation_results {', '.join(names)} {logical_date}")


def validation_results_schema() -> StructType:
    from pyspark.sql.types import (
        DateType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    return StructType([StructField("_logical_date", DateType())] + [
        StructField(c, StringType()) for c in ("table", "batch_id", "suite", "suite_version", "rule_id",
                                               "expectation_type", "column", "action")
    ] + [StructField("evaluated", LongType()), StructField("failed", LongType())])


def validate_threads(env: dict | None = None) -> int:
    """How many raw tables :func:`run_validate` validates at once: ``GOVLAKE_VALIDATE_THREADS`` (default 2, at
    least 1).

    Why more than one: a table's gate is partly Spark work on every core and partly work of the driver alone (Delta
    commits, the GX result, planning), which leaves the cores idle; a second table's Spark work fills them (the
    Airflow DAG gets the same from its parallel validate tasks).

    Raises:
        ValueError: the variable is not a positive integer.
    """
    return config.validate_threads(env)


def run_validate(spark: SparkSession, settings: Settings, logical_date: dt.date, tables: list[str] | None = None,
                 data_docs: bool | None = None, build_site: bool = True, threads: int | None = None,
                 suites_dir: Path | None = None) -> list[dict]:
    """Validate every raw table (or ``tables``) for ``logical_date``; see :func:`validate_table`.

    ``data_docs``: run the GX checkpoint of each table (default: on unless ``GOVLAKE_DATA_DOCS=0``; the
    row-level gate, quarantine and ``ops.validation_results`` are written either way). ``build_site``: then
    build the Data Docs site ONCE, after the tables (:func:`build_data_docs`), also when a table stopped (the
    other tables are shown); the Airflow DAG passes False and builds it in its
    ``data_docs`` task after every validate task. ``ops.validation_results`` is written in one commit for all
    the tables (:func:`write_validation_results`), also when a table stopped.
    ``threads``: tables validated at once (default :func:`validate_threads`); each table is validated and
    published on its own (its own Delta commits), so the tables are independent and the result is the same for
    any number of threads. A table whose ``fail`` rule failed publishes nothing; the other tables are still
    validated and published, as the DAG's parallel validate tasks do. ``suites_dir``: as :func:`validate_table`.

    Returns:
        :func:`validate_table`'s result per table, in the order of ``tables``.

    Raises:
        what :func:`validate_table` raises, for the first table (in the order of ``tables``) that raised, after
        every other table was validated and the results and the site were written.
    """
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    if data_docs is None:
        data_docs = config.data_docs()
    names = list(tables or raw_tables())
    threads = threads or validate_threads()

    def one(table: str) -> dict:
        return validate_table(spark, settings, table, logical_date, data_docs, suites_dir=suites_dir,
                              build_site=False, write_results=False)

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(names))),
                            thread_name_prefix="govlake-validate") as pool:
        # each table in a copy of this context: its log lines keep the run id, date and stage (govlake.core.runlog)
        futures = [pool.submit(contextvars.copy_context().run, one, t) for t in names]
    results: list[dict] = []
    first_error: BaseException | None = None
    for future in futures:
        error = future.exception()
        if error is None:
            results.append(future.result())
        elif first_error is None:
            first_error = error
    try:
        write_validation_results(spark, settings, logical_date, results)
    finally:
        if data_docs and build_site and results:
            build_data_docs(settings, logical_date, [r["table"].split(".", 1)[1] for r in results])
    if first_error is not None:
        raise first_error
    return results


def build_data_docs(settings: Settings, logical_date: dt.date, tables: list[str] | None = None) -> str:
    """Build the Great Expectations Data Docs site once for the checkpoints of ``logical_date``: the pages of
    the validation results of every raw table (or ``tables``) for that date, then the index
    (:func:`govlake.quality.rules.build_data_docs`). The Airflow DAG's ``data_docs`` task.

    Returns:
        the path of the site's index.html (``<reports>/gx/uncommitted/data_docs/local_site/index.html``).

    Raises:
        FileNotFoundError: no checkpoint has run under ``<reports>/gx`` yet.
    """
    from govlake.quality import rules as quality

    run_names = [f"{t.split('_', 1)[0]}.{t.split('_', 1)[1]}:{logical_date.isoformat()}"
                 for t in (tables or raw_tables())]
    return str(quality.build_data_docs(settings.reports_dir, run_names))
