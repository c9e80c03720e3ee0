"""The main job: every stage of GovLake for one logical date, and its command line.

Stages (each idempotent for its logical date; the Airflow DAG runs them as separate tasks):

1. ``extract``  — every registered object into ``raw.<source>_<object>`` (+ ``ops.exchange_ledger``)
2. ``validate`` — each raw batch through its expectation suite (write-audit-publish): accepted rows
   to ``staging.<table>``, failing rows to ``quarantine.<table>`` with rule ids and messages,
   per-rule counts to ``ops.validation_results``, GX checkpoint + Data Docs under the reports folder.
   Invariant, checked every run: rows in raw = rows accepted + rows quarantined.
3. ``unify``    — persons, their links, history and relationships, events and addresses into ``unified.*``
   (write-audit-publish: every table's new state through ``expectations/unified.<table>.json`` first)
4. ``marts``    — ``marts.population_by_district_sex_age``, ``marts.grid_events_by_district_category_week``
5. ``analysis`` — ``analysis.age_structure_by_district``, ``analysis.top_event_categories_by_district``,
   and the decision-support report (HTML with charts and a map)

Command line (also the ``spark-submit`` entry point; ``--stage`` runs one stage)::

    python -m jobs.pipeline run [--date 2025-06-30] [--residents 2000] [--seed 20250630] [--stage all]
    python -m jobs.pipeline sql "SELECT * FROM marts.population_by_district_sex_age LIMIT 5"
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from jobs import lake
from jobs.config import REFERENCE_DIR, SAMPLE_CITY_CODE, SAMPLE_LOGICAL_DATE, Settings

STAGES = ("extract", "validate", "unify", "marts", "analysis")
DEFAULT_SEED = 20250630
DEFAULT_RESIDENTS = 2000


# --- stage: extract ----------------------------------------------------------------------------------

def run_extract(spark, settings: Settings, logical_date: dt.date, sources: list[str] | None = None,
                data_interval: tuple[dt.datetime, dt.datetime] | None = None, backfill: bool = False,
                redeliver: bool = False) -> list[dict]:
    """Extract every registered object (or those of ``sources``) for ``logical_date`` into raw.

    Each batch reads its window ``data_interval`` (default: the business day ``logical_date`` in
    Asia/Shanghai) by the object's watermark; the first run of an object, ``backfill=True`` or
    ``GOVLAKE_EXTRACT_MODE=backfill`` read everything before the window end, and
    ``GOVLAKE_EXTRACT_MODE=snapshot`` does so on every run (the embedded demo's former behaviour:
    each partition is the snapshot as of the window end). See :func:`jobs.raw.resolve_window`.

    A batch already delivered for the date stays as delivered (status ``kept``, the source is not read): a rerun
    of a past date reproduces it. ``redeliver`` (the department delivers the date again) or ``backfill`` read
    every object again and replace its batch when it changed; a file drop whose manifest lists another file is
    read again anyway (:func:`jobs.raw.extract_batch`).

    An object whose extraction fails (its source unreachable, its drop rejected, its reconciliation
    failed, ...) fails alone: the other objects are still extracted, and every batch, failed ones included
    (status ``failed`` with its reason, :func:`jobs.raw.failed_batch`), is recorded in the exchange ledger.

    Returns:
        one dict per batch (:class:`jobs.raw.BatchResult` fields).

    Raises:
        jobs.sources.ExtractionFailed: after every object was attempted, when any failed; names each failed
            ``source.object`` with its reason (chained to the first failure).
        ValueError: unknown ``GOVLAKE_EXTRACT_MODE`` (incremental, backfill, snapshot).
    """
    import os

    from jobs.failpoints import failpoint
    from jobs.raw import extract_batch, failed_batch, record_batches
    from jobs.sources import ExtractionFailed, Window, load_registry

    mode = os.environ.get("GOVLAKE_EXTRACT_MODE", "incremental")
    if mode not in ("incremental", "backfill", "snapshot"):
        raise ValueError(f"GOVLAKE_EXTRACT_MODE must be incremental, backfill or snapshot, not {mode!r}")
    full = backfill or mode in ("backfill", "snapshot")
    if data_interval:
        window = Window.for_interval(*data_interval, full=full)
        if window.logical_date != logical_date:
            raise ValueError(f"data interval {data_interval} does not start on business day {logical_date}")
    else:
        window = Window.for_date(logical_date, full=full)
    results, errors = [], []
    try:
        for name, spec in load_registry().items():
            if sources and name not in sources:
                continue
            for obj in spec.objects.values():
                started = dt.datetime.now(dt.timezone.utc)
                try:
                    results.append(extract_batch(spark, settings, spec, obj, window, redeliver or backfill))
                except Exception as exc:  # one object's failure must not stop the others
                    results.append(failed_batch(spec, obj, window, exc, started))
                    errors.append(exc)
    finally:
        record_batches(spark, settings, results)  # what was attempted is recorded even if the loop was interrupted
    failpoint("extract.after_ledger")
    if errors:
        failures = {f"{r.source}.{r.object}": r.error for r in results if r.status == "failed"}
        raise ExtractionFailed.of(window.logical_date, failures, len(results)) from errors[0]
    return [asdict(r) for r in results]


def raw_tables(sources: list[str] | None = None) -> list[str]:
    """Names (without layer) of the raw tables of the registry: ``<source>_<object>``."""
    from jobs.sources import load_registry

    return [f"{name}_{obj}" for name, spec in load_registry().items() if not sources or name in sources
            for obj in spec.objects]


def raw_watermark(table: str) -> str | None:
    """The watermark column (``schemas/sources/<source>.yaml`` ``watermark:``, e.g. ``updated_at``) of the object
    whose raw table is ``table`` (``<source>_<object>``, as :func:`raw_tables`): what orders the versions of a
    record, so the validate stage keeps the newest copy of a key (:func:`jobs.quality.evaluate` ``newest_first``).
    None when the object has no watermark or ``table`` is not a registered object (a test's own table)."""
    from jobs.sources import load_registry

    for name, spec in load_registry().items():
        for obj in spec.objects.values():
            if f"{name}_{obj.name}" == table:
                return obj.watermark
    return None


# --- stage: validate ---------------------------------------------------------------------------------

def _partition(spark, settings: Settings, layer: str, table: str, logical_date: dt.date):
    return (spark.read.format("delta").load(settings.table_path(layer, table))
            .where(f"_logical_date = DATE'{logical_date.isoformat()}'"))


def validate_table(spark, settings: Settings, table: str, logical_date: dt.date, data_docs: bool = True,
                   suites_dir: Path | None = None, build_site: bool = True, write_results: bool = True) -> dict:
    """Validate one raw batch and publish it (write-audit-publish).

    Reads ``raw.<table>`` for ``logical_date``, evaluates ``expectations/raw.<table>.json`` in one
    pass (of the copies of a key the newest by the object's registry watermark stands, :func:`raw_watermark`),
    stops before publishing when a ``fail`` rule failed, then replaces the logical date's
    partitions of ``staging.<table>`` (accepted rows) and ``quarantine.<table>`` (rejected rows
    with ``_rule_ids`` and ``_messages``, plus ``_released`` FALSE, ``_release_id`` and ``_released_row`` NULL,
    set later by ``python -m jobs.audit release``), and of ``ops.validation_results`` (one row per rule:
    table, batch_id, suite, suite_version, rule_id, expectation_type, column, action, evaluated,
    failed). ``suites_dir``: folder of the suite files (default ``expectations/``).

    The batch is read and evaluated once (:func:`jobs.quality.evaluate`, cached): the row count and every rule's
    counts come from one aggregation over it (:func:`jobs.quality.count_rules`), the staging/quarantine writes read
    it, and (``data_docs``) the Great Expectations validation result is built from those counts
    (:func:`jobs.quality.save_validation_result`, no Spark job; with ``GOVLAKE_GX_ENGINE=spark`` GX's own
    checkpoint runs on the cached frame instead, :func:`jobs.quality.run_checkpoint`).
    Rows accepted and quarantined are the ``numOutputRows`` of the two Delta commits that replaced the
    partitions (:func:`jobs.lake.replace_partition_counted`), checked against the raw rows.
    ``build_site``: also update the Data Docs site after the checkpoint (False: the caller builds it once for
    many tables, see :func:`build_data_docs`). ``write_results`` False: the caller writes the returned
    ``rules`` to ``ops.validation_results`` (:func:`write_validation_results`, one commit for many tables).

    Returns:
        ``{"table", "raw", "accepted", "quarantined", "rules": [...], "data_docs": path|None}``.

    Raises:
        jobs.quality.FailRuleViolated: a fail rule failed (nothing of the batch is published).
        RuntimeError: raw != accepted + quarantined (a row would be lost or doubled).
        ValueError: the batch lacks a column of the suite or the registry's watermark column.
    """
    from pyspark.sql import functions as F

    from jobs import quality
    from jobs.audit import RELEASE_COLUMNS  # an older quarantine table gets them from replace_partition_counted
    from jobs.failpoints import failpoint
    from jobs.raw import RAW_STATS_COLUMNS

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
    docs = None
    try:
        tally = quality.count_rules(evaluated, suite)
        counts = tally.rules
        quality.enforce_fail_rules(counts, suite)
        accepted, quarantined = quality.split(evaluated, suite)
        release_init = {"_released": F.lit(False)}
        quarantined = quarantined.select("*", *[release_init.get(c, F.lit(None)).cast(t).alias(c)
                                                for c, t in RELEASE_COLUMNS])
        # File statistics only where they serve (as raw, jobs.raw.RAW_STATS_COLUMNS): staging is read by partition
        # and version; quarantine rows are looked up by source key (jobs.audit release)
        n_acc = lake.replace_partition_counted(spark, accepted, settings.table_path("staging", table),
                                               "_logical_date", logical_date, stats_columns=RAW_STATS_COLUMNS)
        failpoint("validate.after_staging")
        n_quar = lake.replace_partition_counted(spark, quarantined, settings.table_path("quarantine", table),
                                                "_logical_date", logical_date,
                                                stats_columns=f"_source_key,{RAW_STATS_COLUMNS}")
        failpoint("validate.after_table")
        n_raw = tally.rows
        if n_raw != n_acc + n_quar:
            raise RuntimeError(f"validate raw.{table} {logical_date}: {n_raw} raw rows != {n_acc} accepted + {n_quar} quarantined")
        if data_docs and engine == "spark":
            checkpoint = quality.run_checkpoint(spark, frame, suite, batch_id, settings.reports_dir,
                                                data_docs=build_site)
        elif data_docs:
            checkpoint = quality.save_validation_result(suite, tally, batch_id, settings.reports_dir,
                                                        data_docs=build_site)
        docs = checkpoint.get("data_docs_index") if data_docs else None
    finally:
        frame.unpersist()
    rows = [{"_logical_date": logical_date, "table": f"raw.{table}", "batch_id": batch_id, "suite": suite.name,
             "suite_version": suite.version, **{k: c[k] for k in ("rule_id", "expectation_type", "column", "action")},
             "evaluated": int(c["evaluated"]), "failed": int(c["failed"])} for c in counts]
    out = {"table": f"raw.{table}", "raw": n_raw, "accepted": n_acc, "quarantined": n_quar,
           "rules": [dict(r) for r in rows], "data_docs": str(docs) if docs else None}
    if write_results:
        write_validation_results(spark, settings, logical_date, [out])
    return out


def write_validation_results(spark, settings: Settings, logical_date: dt.date, validated: list[dict]) -> None:
    """Replace the rows of ``ops.validation_results`` for ``logical_date`` and the tables of ``validated`` (outputs
    of :func:`validate_table`) by their ``rules``, in ONE Delta commit (``replaceWhere`` on the date and the
    tables; other tables' rows are untouched), retried when a parallel validate task committed first."""
    if not validated:
        return
    rows = [r for v in validated for r in v["rules"]]
    names = sorted({v["table"] for v in validated})
    results = spark.createDataFrame(rows, schema=_results_schema())
    path = settings.table_path("ops", "validation_results")
    in_list = ", ".join(f"'{n}'" for n in names)
    lake.retry_on_conflict(  # the validate tasks of the departments run in parallel and share this table
        lambda: (results.write.format("delta").mode("overwrite")
                 .option("replaceWhere", f"_logical_date = DATE'{logical_date.isoformat()}' AND table IN ({in_list})")
                 .partitionBy("_logical_date").save(path)),
        f"ops.validation_results {', '.join(names)} {logical_date}")


def _results_schema():
    from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType

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
    import os

    value = (env if env is not None else os.environ).get("GOVLAKE_VALIDATE_THREADS", "2")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"GOVLAKE_VALIDATE_THREADS must be a positive integer, not {value!r}")
    return int(value)


def run_validate(spark, settings: Settings, logical_date: dt.date, tables: list[str] | None = None,
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
    import os
    from concurrent.futures import ThreadPoolExecutor

    if data_docs is None:
        data_docs = os.environ.get("GOVLAKE_DATA_DOCS", "1") != "0"
    names = list(tables or raw_tables())
    threads = threads or validate_threads()

    def one(table: str) -> dict:
        return validate_table(spark, settings, table, logical_date, data_docs, suites_dir=suites_dir,
                              build_site=False, write_results=False)

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(names))),
                            thread_name_prefix="govlake-validate") as pool:
        futures = [pool.submit(one, t) for t in names]
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
    (:func:`jobs.quality.build_data_docs`). The Airflow DAG's ``data_docs`` task.

    Returns:
        the path of the site's index.html (``<reports>/gx/uncommitted/data_docs/local_site/index.html``).

    Raises:
        FileNotFoundError: no checkpoint has run under ``<reports>/gx`` yet.
    """
    from jobs import quality

    run_names = [f"{t.split('_', 1)[0]}.{t.split('_', 1)[1]}:{logical_date.isoformat()}" for t in (tables or raw_tables())]
    return str(quality.build_data_docs(settings.reports_dir, run_names))


# --- stage: unify ------------------------------------------------------------------------------------

def _hotline_labels(spark):
    import pandas as pd

    labels = pd.read_csv(REFERENCE_DIR / "hotline" / "messages_labeled_sample.csv", dtype=str,
                         usecols=["留言编号", "一级分类"]).rename(columns={"留言编号": "message_id", "一级分类": "category_l1"})
    labels = labels.drop_duplicates("message_id").sort_values("message_id")
    return spark.createDataFrame(labels, "message_id string, category_l1 string")


#: The unified tables, in publish order; each has its suite ``expectations/unified.<table>.json``.
UNIFIED_TABLES = ("person_link", "person_relationship_statement", "person", "person_attribute_provenance", "address",
                  "person_residence", "household_membership", "person_relationship", "event")


class UnifiedPlan:
    """The writes of one unify run to the unified layer, audited before any of them is published
    (write-audit-publish).

    :meth:`merge` and :meth:`rewrite` only plan a write and return the table's state after it (what readers will
    see: :func:`jobs.lake.merged_state` of the table's current version, pinned, and the MERGE source); later
    tables are derived from those states. :meth:`publish` evaluates every state with its suite
    (:func:`validate_unified`, which records the results and raises when a fail rule failed: then nothing is
    written) and only then writes the tables, in plan order. Planned frames are cached until :meth:`release`.

    Attributes:
        states: table name (without layer) -> DataFrame of the table's rows after publication, in plan order.
    """

    def __init__(self, spark, settings: Settings, run_id: str | None = None):
        self.spark, self.settings, self.run_id = spark, settings, run_id
        self.states: dict = {}
        self._writes: dict[str, tuple] = {}  # table -> ("merge", source, keys, insert_only) | ("rewrite", df, order)
        self._cached: list = []

    def keep(self, df):
        """``df`` cached until :meth:`release`."""
        df = df.cache()
        self._cached.append(df)
        return df

    def current(self, name: str):
        """``unified.<name>`` at its latest version, pinned (None when the table does not exist)."""
        from jobs import unified

        path = self.settings.table_path("unified", name)
        version = unified.table_version(self.spark, path)
        return None if version is None else unified.read_pinned(self.spark, path, version)

    def merge(self, df, name: str, keys: list[str], insert_only: tuple[str, ...] = ()):
        """Plan the MERGE of ``df`` (unique on ``keys``, with ``_content_hash``) into ``unified.<name>``
        (:func:`jobs.lake.merge_by_key`); returns the table's state after it. Nothing is written."""
        df = self.keep(df)
        self._writes[name] = ("merge", df, list(keys), tuple(insert_only))
        self.states[name] = self.keep(lake.merged_state(self.current(name), df, list(keys),
                                                        insert_only_columns=tuple(insert_only)))
        return self.states[name]

    def rewrite(self, df, name: str, order_by: list[str]):
        """Plan the whole-table rewrite of ``unified.<name>`` with ``df`` when it changed
        (:func:`jobs.lake.overwrite_if_changed`); returns ``df`` (cached), the table's state after it."""
        df = self.keep(df)
        self._writes[name] = ("rewrite", df, list(order_by))
        self.states[name] = df
        return df

    def publish(self, logical_date: dt.date, suites_dir: Path | None = None) -> tuple[list[dict], dict]:
        """Audit every planned state (:func:`validate_unified`), then write the tables in plan order (each with the
        change data feed on, :func:`jobs.unified.ensure_cdf_table`).

        Returns:
            ``(gate, stats)``: :func:`validate_unified`'s result, and per table ``{"inserted", "updated"}`` for a
            MERGE or ``True``/``False`` (rewritten or not) for a rewrite.

        Raises:
            jobs.quality.FailRuleViolated: a fail rule failed; no table was written (the results are recorded).
        """
        from jobs import unified

        from jobs.failpoints import failpoint

        gate = validate_unified(self.spark, self.settings, self.states, logical_date, suites_dir)
        stats: dict = {}
        for name, write in self._writes.items():
            path = self.settings.table_path("unified", name)
            unified.ensure_cdf_table(self.spark, write[1], path)
            failpoint("unify.merge")
            if write[0] == "rewrite":
                stats[name] = lake.overwrite_if_changed(self.spark, write[1], path, write[2])
            elif write[1].isEmpty():
                stats[name] = {"inserted": 0, "updated": 0}
            else:
                stats[name] = lake.merge_by_key(self.spark, write[1], path, write[2], insert_only_columns=write[3])
            failpoint("unify.after_table")
        failpoint("unify.before_publication")
        lake.record_publication(self.spark, self.settings, "unified", logical_date, list(UNIFIED_TABLES), self.run_id)
        return gate, stats

    def release(self) -> None:
        """Unpersist every cached frame of the plan."""
        for df in self._cached:
            df.unpersist()
        self._cached.clear()


class OutOfOrderRun(RuntimeError):
    """A logical date earlier than the unified layer's latest publication was never unified: the cumulative layer
    cannot take it after a later day without rewriting that day's history."""


def _unified_history(spark, settings: Settings, logical_date: dt.date, latest: dt.date) -> dict:
    """The unify stage of a date the unified layer has moved past: its publication is that day's state and stays
    as it is (MERGEing the day again into a later state would rewrite history).

    Raises:
        OutOfOrderRun: the date was never published.
    """
    found = lake.published_versions(spark, settings, "unified", logical_date)
    if found is None or found[0] != logical_date:
        raise OutOfOrderRun(f"unify {logical_date}: the unified layer is published up to {latest} and {logical_date} "
                            "was never unified; run the days from the earliest missing one in order (or rebuild the "
                            "unified layer from that day)")
    return {"historical": True, "published": found[1],
            "note": f"unified layer already published for {latest}: {logical_date} kept as published"}


def run_unify(spark, settings: Settings, logical_date: dt.date, data_docs: bool | None = None,
              suites_dir: Path | None = None, run_id: str | None = None) -> dict:
    """Standardise the accepted staging rows of ``logical_date``, link them to persons and MERGE unified
    (write-audit-publish: every unified table's new state passes its suite before any of them is written).

    Every staging table is read once at a pinned Delta version (recorded in the result). Persons come from
    every object whose registry entry has ``unified.entity: person``: records with a NULL business key are
    quarantined (``quarantine.unified_person_records``) and counted, never merged; the rest are deduplicated
    per record_key, linked (valid GB 11643 ID: deterministically; otherwise :mod:`jobs.linkage`) into
    ``unified.person_link`` (an object naming several persons per row gives one record per role); the
    relationships those objects state go to ``unified.person_relationship_statement``; then the golden record
    (``unified.person``), its attribute provenance, ``unified.address`` (addresses of the golden records and the
    household registry, :func:`_address_rows`), the SCD type 2 residence (with the address's grid as a type 1
    column) and household membership, and ``unified.person_relationship`` rebuilt from the membership, the
    statements and the links. Events come from the grid-management documents and the citizen messages.

    Write-audit-publish: each table's MERGE source is computed first and its state after the MERGE
    (:func:`jobs.lake.merged_state`; the later tables are derived from the earlier tables' new states, not
    from published ones); :func:`validate_unified` evaluates every state with ``expectations/unified.<table>.json``
    (``suites_dir`` to use another folder) and records the per-rule counts in ``ops.validation_results``;
    only when no ``fail`` rule failed are the tables MERGEd (unchanged rows are not touched;
    ``unified.person_relationship`` is rewritten whole when it changed). Then, when ``data_docs`` (default: on
    unless ``GOVLAKE_DATA_DOCS=0``), a GX checkpoint per unified table. Unified tables have the Delta change
    data feed enabled.

    Returns:
        ``{"staging_versions": {table: version}, "person": {"inserted", "updated"}, "person_link": {...},
        "person_attribute_provenance": {...}, "person_residence": {...}, "household_membership": {...},
        "person_relationship_statement": {...}, "person_relationship_rewritten": bool, "event": {...},
        "unlinked_person_records": n (records without a valid ID), "null_key_person_records": n, "link_methods": {method: n},
        "address": {"inserted", "updated", "rows", "match_level", "unmatched", "no_grid", "grid_method"}
        (``unmatched`` counts addresses kept without a registry match; ``{}`` without an address registry),
        "quality": [...] (:func:`validate_unified`), "data_docs": path | None}``.

    Publication: once every table is committed, their versions are recorded as the unified layer's state for the
    date (:func:`jobs.lake.record_publication`, ``run_id`` names the run); readers go through it. A date the layer
    was already published past (a rerun of an earlier day) is not MERGEd again: its publication stands
    (:func:`_unified_history`, result ``{"historical": True, "published": {table: version}, "note"}``).

    Raises:
        jobs.quality.FailRuleViolated: a fail rule of a unified suite failed; the results are recorded, no
            unified table is written (``quarantine.unified_person_records`` is, for the day).
        OutOfOrderRun: an earlier date than the latest publication was never unified.
    """
    import os
    from functools import reduce

    from pyspark.sql import functions as F

    from jobs import address, linkage, unified
    from jobs.sources import load_registry

    if data_docs is None:
        data_docs = os.environ.get("GOVLAKE_DATA_DOCS", "1") != "0"
    latest = lake.latest_published_date(spark, settings, "unified")
    if latest is not None and latest > logical_date:
        return _unified_history(spark, settings, logical_date, latest)
    day = logical_date.isoformat()
    versions: dict[str, int] = {}
    plan = UnifiedPlan(spark, settings, run_id)
    current, plan_merge = plan.current, plan.merge

    def staging(table: str):
        path = settings.table_path("staging", table)
        versions[table] = unified.table_version(spark, path)
        return unified.read_pinned(spark, path, versions[table]).where(f"_logical_date = DATE'{day}'")

    try:
        candidates, statements = [], []
        for name, spec in load_registry().items():
            for obj in spec.objects.values():
                if obj.unified.get("entity") == "person":
                    rules = dict(obj.unified)
                    rules.setdefault("record_key", list(obj.business_key))
                    rules.setdefault("watermark", obj.watermark)  # the department's update time of each record
                    frame = staging(f"{name}_{obj.name}")
                    candidates.append(unified.person_candidates(frame, name, rules))
                    if rules.get("relationships"):
                        statements.append(unified.relationship_statements(frame, name, rules))
        persons_in = reduce(lambda a, b: a.unionByName(b), candidates)
        keyed, null_keyed = unified.split_null_keys(persons_in)
        lake.replace_partition(null_keyed.withColumn("_logical_date", F.lit(logical_date).cast("date")),
                               settings.table_path("quarantine", "unified_person_records"), "_logical_date",
                               logical_date)
        records = plan.keep(unified.dedupe_records(keyed))
        n_null = spark.read.format("delta").load(settings.table_path("quarantine", "unified_person_records")) \
            .where(f"_logical_date = DATE'{day}'").count()
        by_id = unified.id_links(records)
        residue = records.where("NOT id_valid")
        unlinked = residue.count()
        # the ID'd records with their person: no join of every record with by_id, no shuffle
        reference = unified.id_reference(records)
        existing = current("person_link")
        probabilistic = linkage.link_residue(spark, residue, reference,
                                             None if existing is None else existing.select("record_key", "person_id"))
        all_links = plan_merge(unified.link_rows(records, by_id.unionByName(probabilistic)), "person_link",
                               ["record_key"])
        statement_state = current("person_relationship_statement")
        if statements:
            statement_state = plan_merge(unified.dedupe_statements(reduce(lambda a, b: a.unionByName(b), statements)),
                                         "person_relationship_statement", ["statement_key"])
        methods = {r[0]: int(r[1]) for r in all_links.groupBy("link_method").count().orderBy("link_method").collect()}
        golden = plan_merge(unified.golden_records(all_links, logical_date), "person", ["person_id"],
                            insert_only=("first_seen_date",))
        provenance = plan_merge(unified.attribute_provenance(all_links), "person_attribute_provenance",
                                ["person_id", "attribute"])
        address_rows = _address_rows(spark, settings, golden, versions)
        if address_rows is not None:
            plan_merge(address_rows, "address", ["address_key"])
        residence = golden.where("is_current")
        if "address" in plan.states:  # the grid of each address: a type 1 column of the residence (RESIDENCE_OVERWRITE)
            residence = residence.join(address.grids_of(residence, plan.states["address"], address.load_gazetteer()),
                                       "address", "left")
        else:
            residence = residence.withColumn("grid_code", F.lit(None).cast("string"))
        for table, current_rows, tracked, overwrite in (
                ("person_residence", residence, unified.RESIDENCE_COLUMNS, unified.RESIDENCE_OVERWRITE),
                ("household_membership", golden.where("is_current AND household_no IS NOT NULL"),
                 unified.HOUSEHOLD_COLUMNS, ())):
            plan_merge(unified.scd2_changes(current(table), current_rows, logical_date, "person_id", tracked, overwrite),
                       table, ["person_id", "valid_from"])
        plan.rewrite(unified.relationships(plan.states["household_membership"], statement_state, all_links, provenance),
                     "person_relationship", ["person_id_1", "person_id_2", "relationship"])

        grid = unified.grid_events(staging("wangge_events"))
        hotline = unified.hotline_events(staging("zhengwu_messages"), _hotline_labels(spark))
        plan_merge(unified.finalize_events(grid.unionByName(hotline), logical_date), "event", ["event_id"],
                   insert_only=("first_seen_date",))

        gate, stats = plan.publish(logical_date, suites_dir)  # audit every new state, then write them all
        address_stats = {**stats["address"], **address.counts(plan.states["address"])} if "address" in stats else {}
        docs = (unified_checkpoints(spark, settings, plan.states, logical_date, suites_dir, gate)
                if data_docs else None)
    finally:
        plan.release()
    return {"staging_versions": versions, "person": stats["person"], "person_link": stats["person_link"],
            "person_attribute_provenance": stats["person_attribute_provenance"],
            "person_residence": stats["person_residence"], "household_membership": stats["household_membership"],
            "person_relationship_statement": stats.get("person_relationship_statement",
                                                       {"inserted": 0, "updated": 0}),
            "person_relationship_rewritten": stats["person_relationship"], "event": stats["event"],
            "unlinked_person_records": unlinked, "null_key_person_records": n_null, "link_methods": methods,
            "address": address_stats, "quality": gate, "data_docs": docs}


def _address_rows(spark, settings: Settings, golden, versions: dict):
    """The MERGE source of ``unified.address`` (:mod:`jobs.address`): the address texts of the golden persons and
    of the household registry (``staging.hukou_households``, every logical date, pinned) matched against the whole
    standard address registry (``staging.address_standard_address`` at a pinned version, every logical date) and
    assigned to grids with the boundaries at ``<sources>/reference/grid_boundaries.geojson`` (registry fallback
    when missing); :data:`jobs.address.ADDRESS_COLUMNS` + ``_content_hash``. None without a registry table."""
    from pyspark.sql import functions as F

    from jobs import address, unified

    path = settings.table_path("staging", "address_standard_address")
    version = unified.table_version(spark, path)
    if version is None:
        return None
    versions["address_standard_address"] = version
    texts = golden.select("address")
    households = settings.table_path("staging", "hukou_households")
    hh_version = unified.table_version(spark, households)
    if hh_version is not None:  # a household whose members were all quarantined still has its address
        versions.setdefault("hukou_households", hh_version)
        texts = texts.unionByName(unified.read_pinned(spark, households, versions["hukou_households"])
                                  .select(F.col("address").cast("string").alias("address")))
    rows = address.standardise(spark, texts, unified.read_pinned(spark, path, version),
                               address.load_gazetteer(),
                               address.load_boundaries(settings.sources_dir / address.BOUNDARIES_FILE))
    return unified.with_content_hash(rows)


def validate_unified(spark, settings: Settings, states: dict, logical_date: dt.date,
                     suites_dir: Path | None = None) -> list[dict]:
    """The audit of write-audit-publish for the unified layer: every table's new state through its suite.

    Evaluates ``expectations/unified.<table>.json`` (in ``suites_dir`` when given) on the whole new state of each
    table (all rows, not only the day's changes: the contract holds for the table readers will see), records
    the per-rule counts in ``ops.validation_results`` (``table`` = ``unified.<table>``, ``batch_id`` =
    ``unified.<table>:<date>``; the logical date's unified rows are replaced in one commit), then stops when a
    ``fail`` rule failed. Warn rules are counted only; a unified suite has no quarantine action (a unified row
    is not a department's delivery that can be sent back).

    Args:
        states: table name (without layer) -> DataFrame of its rows after publication.

    Returns:
        one dict per table, in ``states`` order: ``{"table": "unified.<t>", "rows": n, "suite_version",
        "rules": [{rule_id, expectation_type, column, action, evaluated, failed}, ...], "duplicated_keys":
        {rule_id: n}}`` (rows and rules from one aggregation per table plus one per uniqueness rule over its
        key columns, :func:`jobs.quality.tally`; what :func:`unified_checkpoints` turns into the GX validation
        results).

    Raises:
        FileNotFoundError: a table has no suite file.
        ValueError: a suite has a ``quarantine`` rule, or names a column the table lacks.
        jobs.quality.FailRuleViolated: a fail rule failed on some row (after the results are recorded); the
            message names every such suite, rule and row count.
    """
    from jobs import quality

    out, rows, failures = [], [], []
    for name, state in states.items():
        suite_name = f"unified.{name}"
        suite = quality.load_suite(suite_name, suites_dir) if suites_dir else quality.load_suite(suite_name)
        if any(r.action == "quarantine" for r in suite.rules):
            raise ValueError(f"suite {suite_name}: unified suites take warn or fail actions, not quarantine")
        # counts only (a unified suite quarantines nothing): no row is flagged, uniqueness by grouping keys
        tally = quality.tally(state, suite)
        counts = tally.rules
        batch_id = f"{suite_name}:{logical_date.isoformat()}"
        table_rows = [{"_logical_date": logical_date, "table": suite_name, "batch_id": batch_id, "suite": suite.name,
                       "suite_version": suite.version,
                       **{k: c[k] for k in ("rule_id", "expectation_type", "column", "action")},
                       "evaluated": int(c["evaluated"]), "failed": int(c["failed"])} for c in counts]
        rows += table_rows
        out.append({"table": suite_name, "rows": tally.rows, "suite_version": suite.version,
                    "rules": [{k: r[k] for k in ("rule_id", "expectation_type", "column", "action", "evaluated",
                                                 "failed")} for r in table_rows],
                    "duplicated_keys": dict(tally.duplicated_keys)})
        try:
            quality.enforce_fail_rules(counts, suite)
        except quality.FailRuleViolated as exc:
            failures.append(str(exc))
    results = spark.createDataFrame(rows, schema=_results_schema())
    path = settings.table_path("ops", "validation_results")
    lake.retry_on_conflict(  # shares the table with the validate tasks of the departments
        lambda: (results.write.format("delta").mode("overwrite")
                 .option("replaceWhere", f"_logical_date = DATE'{logical_date.isoformat()}' AND table LIKE 'unified.%'")
                 .partitionBy("_logical_date").save(path)),
        f"ops.validation_results unified {logical_date}")
    if failures:
        raise quality.FailRuleViolated("unified layer not published: " + " | ".join(failures))
    return out


def unified_checkpoints(spark, settings: Settings, states: dict, logical_date: dt.date,
                        suites_dir: Path | None = None, gate: list[dict] | None = None) -> str | None:
    """The Great Expectations validation result of every unified table's state, run name
    ``unified.<table>:<date>``, saved only; then the Data Docs pages of those runs and the index, built once
    (:func:`jobs.quality.build_data_docs`). Returns the Data Docs index path (None without tables).

    With ``gate`` (:func:`validate_unified`'s result for these states) and the default ``GOVLAKE_GX_ENGINE``
    (``single-pass``), each result is built from the gate's counts (:func:`jobs.quality.save_validation_result`):
    no state is evaluated again. Otherwise GX's own checkpoint runs on each state
    (:func:`jobs.quality.run_checkpoint`)."""
    from jobs import quality

    tallies = {g["table"]: g for g in gate or []}
    engine = quality.gx_engine()
    run_names = []
    for name, state in states.items():
        suite_name = f"unified.{name}"
        suite = quality.load_suite(suite_name, suites_dir) if suites_dir else quality.load_suite(suite_name)
        run_names.append(f"{suite_name}:{logical_date.isoformat()}")
        tally = tallies.get(suite_name)
        if engine == "single-pass" and tally is not None and tally["suite_version"] == suite.version:
            counts = quality.BatchCounts(rows=tally["rows"], rules=tally["rules"],
                                         duplicated_keys=tally.get("duplicated_keys", {}))
            quality.save_validation_result(suite, counts, run_names[-1], settings.reports_dir)
        else:
            quality.run_checkpoint(spark, state, suite, run_names[-1], settings.reports_dir, data_docs=False)
    return str(quality.build_data_docs(settings.reports_dir, run_names)) if run_names else None


# --- stages: marts and analysis ---------------------------------------------------------------------------

def divisions_frame(spark, city_code: str = SAMPLE_CITY_CODE):
    """District codes and names of the city from ``schemas/reference/divisions/areas.csv``.

    Returns:
        DataFrame district_code STRING, district_name STRING.
    """
    import pandas as pd

    areas = pd.read_csv(REFERENCE_DIR / "divisions" / "areas.csv", dtype=str)
    city = areas[areas["cityCode"] == city_code[:4]][["code", "name"]]
    city = city.rename(columns={"code": "district_code", "name": "district_name"}).sort_values("district_code")
    return spark.createDataFrame(city, "district_code string, district_name string")


def _is_historical(spark, settings: Settings, layer: str, logical_date: dt.date) -> bool:
    """True when ``layer`` was already published for a later date than ``logical_date`` (a rerun of a past day)."""
    latest = lake.latest_published_date(spark, settings, layer)
    return latest is not None and latest > logical_date


def _publish_stage(spark, settings: Settings, layer: str, logical_date: dt.date, written: list[str],
                   historical: bool, run_id: str | None) -> None:
    """Record ``layer``'s publication for ``logical_date``: every table of the layer at its current version; for a
    historical date only the (partition-rewritten) ``written`` tables move, the others keep the versions recorded
    for that date before (their current versions hold later dates' state)."""
    from pathlib import Path as _Path

    root = settings.lakehouse[5:] if settings.lakehouse.startswith("file:") else settings.lakehouse
    layer_dir = _Path(root) / layer
    tables = sorted(p.name for p in layer_dir.iterdir() if lake.exists(spark, str(p))) if layer_dir.is_dir() else []
    if historical:
        before = lake.published_versions(spark, settings, layer, logical_date)
        kept = before[1] if before and before[0] == logical_date else {}
        tables = sorted(set(written) | set(kept))
        versions = {**kept, **{t: v for t in written
                               if (v := lake.table_version(spark, settings.table_path(layer, t))) is not None}}
        lake.record_publication(spark, settings, layer, logical_date, tables, run_id, versions=versions)
    else:
        lake.record_publication(spark, settings, layer, logical_date, tables, run_id)


def run_marts(spark, settings: Settings, logical_date: dt.date, run_id: str | None = None) -> dict:
    """Rebuild the topic marts for ``logical_date`` from the unified layer as published for that date
    (:func:`jobs.lake.read_published`), then record the marts' publication for the date.

    Snapshot / period tables replace the date's partition; whole-table marts are rewritten when changed, except on a
    rerun of a past date (the layer was published for a later date): they hold the latest state and stay as they are.

    Returns:
        ``{"population_rows", "event_mart_rewritten", "theme_tables_rewritten", "historical"}``.

    Raises:
        RuntimeError: the unified layer was never published on or before ``logical_date``.
    """
    from jobs import marts, themes
    from jobs.failpoints import failpoint

    historical = _is_historical(spark, settings, "marts", logical_date)
    person = lake.read_published(spark, settings, "unified", "person", logical_date)
    event = lake.read_published(spark, settings, "unified", "event", logical_date)
    if person is None or event is None:
        raise RuntimeError(f"marts {logical_date}: the unified layer has no publication on or before that date "
                           "(unify has not completed for it): run unify first")
    divisions = divisions_frame(spark)
    pop = marts.population_by_district_sex_age(person, divisions, logical_date)
    lake.replace_partition_if_changed(spark, pop, settings.table_path("marts", "population_by_district_sex_age"),
                                      "snapshot_date", logical_date)
    failpoint("marts.after_table")
    excl = marts.population_exclusions(person, logical_date)
    lake.replace_partition_if_changed(spark, excl, settings.table_path("marts", "population_exclusions"),
                                      "snapshot_date", logical_date)
    written_tables = ["population_by_district_sex_age", "population_exclusions"]
    written = False
    if not historical:
        ev = marts.grid_events_by_district_category_week(event, divisions)
        written = lake.overwrite_if_changed(spark, ev, settings.table_path("marts", "grid_events_by_district_category_week"),
                                            ["week_start", "district_code", "category_l1", "channel"])
    theme_tables = themes.run_themes(spark, settings, logical_date, historical=historical)
    written_tables += [n.split(".", 1)[1] for n in theme_tables if n.startswith("marts.")]
    _publish_stage(spark, settings, "marts", logical_date, written_tables, historical, run_id)
    return {"population_rows": pop.count(), "event_mart_rewritten": written, "theme_tables_rewritten": theme_tables,
            "historical": historical}


def run_analysis(spark, settings: Settings, logical_date: dt.date, report: bool = True) -> dict:
    """Compute the analysis tables of ``logical_date`` from the marts as published for that date and build the
    decision-support report."""
    from pyspark.sql import functions as F

    from jobs import analysis
    from jobs.failpoints import failpoint

    pop = (lake.read_published(spark, settings, "marts", "population_by_district_sex_age", logical_date)
           .where(f"snapshot_date = DATE'{logical_date.isoformat()}'"))
    ev = lake.read_published(spark, settings, "marts", "grid_events_by_district_category_week", logical_date)
    ages = analysis.age_structure_by_district(pop)
    lake.replace_partition_if_changed(spark, ages, settings.table_path("analysis", "age_structure_by_district"),
                                      "snapshot_date", logical_date)
    top = analysis.top_event_categories_by_district(ev, logical_date)
    top = top.withColumn("logical_date", F.lit(logical_date).cast("date"))
    lake.replace_partition_if_changed(spark, top, settings.table_path("analysis", "top_event_categories_by_district"),
                                      "logical_date", logical_date)
    failpoint("analysis.before_report")
    out = {"report": None}
    if report:
        out["report"] = str(build_report(spark, settings, logical_date))
    return out


def report_tables(spark, settings: Settings, logical_date: dt.date) -> dict:
    """The tables the report reads, as pandas frames (small: marts and analysis only; marts as published for
    ``logical_date``)."""
    d = logical_date.isoformat()
    marts_ = lambda name: lake.read_published(spark, settings, "marts", name, logical_date)  # noqa: E731
    analysis_ = lambda name: spark.read.format("delta").load(settings.table_path("analysis", name))  # noqa: E731
    return {
        "population_by_district_sex_age": marts_("population_by_district_sex_age").where(f"snapshot_date = DATE'{d}'").toPandas(),
        "grid_events_by_district_category_week": marts_("grid_events_by_district_category_week").toPandas(),
        "age_structure_by_district": analysis_("age_structure_by_district").where(f"snapshot_date = DATE'{d}'").toPandas(),
        "top_event_categories_by_district": analysis_("top_event_categories_by_district").where(f"logical_date = DATE'{d}'").drop("logical_date").toPandas(),
    }


def build_report(spark, settings: Settings, logical_date: dt.date) -> Path:
    """Write the decision-support report for ``logical_date``; returns the index.html path."""
    from jobs import report

    geojson = json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    return report.build_report(report_tables(spark, settings, logical_date), geojson,
                               settings.reports_dir / "decision_support" / logical_date.isoformat(), logical_date)


# --- orchestration -------------------------------------------------------------------------------------

#: Stages that write tables of every date (MERGEd unified state, whole-table marts): they also hold the
#: lakehouse-wide lease :data:`jobs.lease.CUMULATIVE`.
CUMULATIVE_STAGES = ("unify", "marts", "analysis")


def run_leases(spark, settings: Settings, logical_date: dt.date, cumulative: bool, holder=None,
               wait_s: float | None = None, release: bool = True):
    """The leases a run of ``logical_date`` holds (:mod:`jobs.lease`): ``date=<date>``, and :data:`CUMULATIVE`
    when ``cumulative``; a context manager (an ``ExitStack``) that takes them in that order (one order for every
    run, so two runs never wait on each other crosswise) and, on exit, releases them (``release``) or only stops
    renewing them (the next task of the same Airflow run takes them over). The entered stack has ``check()``.

    Raises:
        jobs.lease.LeaseHeld: another run holds one of them after ``wait_s`` (default ``GOVLAKE_LEASE_WAIT_S``).
    """
    from contextlib import ExitStack

    from jobs.lease import CUMULATIVE, Holder, Lease, settings_from_env

    env_wait, ttl = settings_from_env()
    holder = holder or Holder.current()
    wait = env_wait if wait_s is None else wait_s
    scopes = [f"date={logical_date.isoformat()}"] + ([CUMULATIVE] if cumulative else [])
    stack = ExitStack()
    leases = [Lease(spark, settings, scope, holder, wait, ttl, release_on_exit=release) for scope in scopes]

    def check():
        for lease in leases:
            lease.check()

    stack.check = check  # type: ignore[attr-defined]
    stack.holder = holder  # type: ignore[attr-defined]
    try:
        for lease in leases:
            stack.enter_context(lease)
    except BaseException:
        stack.close()
        raise
    return stack


def run_stage(stage: str, logical_date: dt.date, settings: Settings | None = None, spark=None, holder=None,
              wait_s: float | None = None, release: bool = True, **kwargs):
    """Run one stage for ``logical_date`` under the run's leases (:func:`run_leases`; the Airflow tasks' entry
    point, and ``run --stage``).

    Args:
        holder: the run (:class:`jobs.lease.Holder`; default this process as a one-process run).
        wait_s: how long to wait for another run's lease (default ``GOVLAKE_LEASE_WAIT_S``).
        release: release the leases after the stage (False: keep them for the run's next task).
        kwargs: the stage function's own arguments.

    Raises:
        ValueError: unknown stage.
        jobs.lease.LeaseHeld: another run of the date (or, for unify, marts and analysis, of the cumulative
            layers) is under way.
    """
    from jobs.spark import get_spark

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    settings = settings or Settings.from_env()
    spark = spark or get_spark(settings, app_name=f"govlake-{stage}")
    fn = {"extract": run_extract, "validate": run_validate, "unify": run_unify, "marts": run_marts,
          "analysis": run_analysis}[stage]
    with run_leases(spark, settings, logical_date, stage in CUMULATIVE_STAGES, holder, wait_s, release) as leases:
        if stage in ("unify", "marts"):
            kwargs.setdefault("run_id", leases.holder.run_id)
        return fn(spark, settings, logical_date, **kwargs)


def ensure_sample_sources(settings: Settings, logical_date: dt.date, residents: int, seed: int) -> dict:
    """Generate the embedded sample municipality unless the same one is already there: same seed, size and
    logical date, made by the same generator code (:func:`generator_fingerprint`, kept in
    ``<sources>/truth/generator.sha256``), so a sample left by an older GovLake is regenerated.

    Returns:
        the generator's summary (counts per table).
    """
    from jobs.sample.generate import generate

    marker = settings.sources_dir / "truth" / "summary.json"
    made_by = settings.sources_dir / "truth" / "generator.sha256"
    fingerprint = generator_fingerprint()
    if marker.is_file() and made_by.is_file() and made_by.read_text(encoding="utf-8").strip() == fingerprint:
        summary = json.loads(marker.read_text(encoding="utf-8"))
        if (summary.get("seed"), summary.get("residents"), str(summary.get("logical_date"))) == (seed, residents, logical_date.isoformat()):
            return summary
    generate(residents=residents, seed=seed, logical_date=logical_date, target="embedded", out=settings.sources_dir)
    made_by.write_text(fingerprint + "\n", encoding="utf-8")
    return json.loads(marker.read_text(encoding="utf-8"))


def generator_fingerprint() -> str:
    """SHA-256 (hex) over the sample generator's source files (``jobs/sample/*.py``, by name): changes whenever
    the generator's code does."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parent / "sample").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_all(settings: Settings, logical_date: dt.date, residents: int = DEFAULT_RESIDENTS, seed: int = DEFAULT_SEED,
            generate_sample: bool = True, spark=None, data_docs: bool | None = None,
            wait_s: float | None = None, redeliver: bool = False) -> dict:
    """The whole pipeline for one logical date in one SparkSession, under the date's and the cumulative layers'
    leases (:func:`run_leases`; ``wait_s`` as there); returns the run summary.

    The summary (also written to ``<reports>/summary-<date>.json``) holds rows per table per layer,
    quarantined rows per rule, MERGE statistics, wall seconds per stage (``stage_seconds``) and headline findings.
    """
    from jobs.spark import get_spark

    if generate_sample and settings.sources_mode == "embedded":
        ensure_sample_sources(settings, logical_date, residents, seed)
    spark = spark or get_spark(settings, app_name="govlake-main")
    summary = {"logical_date": logical_date.isoformat(), "lakehouse": settings.lakehouse}
    timings: dict[str, float] = {}
    with run_leases(spark, settings, logical_date, cumulative=True, wait_s=wait_s) as leases:
        run_id = leases.holder.run_id
        summary["run_id"] = run_id
        steps = (("extract", lambda: run_extract(spark, settings, logical_date, redeliver=redeliver)),
                 ("validate", lambda: run_validate(spark, settings, logical_date, data_docs=data_docs)),
                 ("unify", lambda: run_unify(spark, settings, logical_date, data_docs=data_docs, run_id=run_id)),
                 ("marts", lambda: run_marts(spark, settings, logical_date, run_id=run_id)),
                 ("analysis", lambda: run_analysis(spark, settings, logical_date)))
        for name, step in steps:
            leases.check()
            started = time.monotonic()
            summary[name] = step()
            timings[name] = round(time.monotonic() - started, 1)
    summary["stage_seconds"] = timings
    summary["tables"] = table_counts(spark, settings, logical_date)
    summary["findings"] = findings(spark, settings, logical_date)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    from jobs.fsio import atomic_write_text  # a reader of the summary never sees half of it

    atomic_write_text(settings.reports_dir / f"summary-{logical_date.isoformat()}.json",
                      json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    return summary


def table_counts(spark, settings: Settings, logical_date: dt.date) -> dict[str, int]:
    """Rows per registered table (``layer.table`` -> rows), for the run summary."""
    names = lake.register_tables(spark, settings)
    return {name: spark.table(name).count() for name in names}


def findings(spark, settings: Settings, logical_date: dt.date) -> list[str]:
    """Headline findings of the themes (see :func:`jobs.report.headline_findings`)."""
    from jobs import address, report, themes

    gaz = address.load_gazetteer()
    return (report.headline_findings(report_tables(spark, settings, logical_date))
            + themes.theme_findings(themes.read_findings_tables(spark, settings, logical_date),
                                    {**gaz.district_names, **gaz.street_names}))


def print_summary(summary: dict) -> None:
    """Print the run summary as tables on the console (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    console.rule(f"GovLake run for logical date {summary['logical_date']}")
    layers = Table(title="Rows per table", show_lines=False)
    for col in ("table", "rows"):
        layers.add_column(col, justify="right" if col == "rows" else "left")
    for name, n in summary["tables"].items():
        layers.add_row(name, f"{n:,}")
    console.print(layers)
    gate = Table(title="Quality gate: raw = accepted + quarantined")
    for col in ("raw table", "raw", "accepted", "quarantined"):
        gate.add_column(col, justify="left" if col == "raw table" else "right")
    for v in summary["validate"]:
        gate.add_row(v["table"], str(v["raw"]), str(v["accepted"]), str(v["quarantined"]))
    console.print(gate)
    rules = Table(title="Failed rows per rule")
    for col in ("rule", "action", "failed"):
        rules.add_column(col, justify="right" if col == "failed" else "left")
    for v in summary["validate"] + summary.get("unify", {}).get("quality", []):  # raw gates, then the unified audit
        for r in v["rules"]:
            if r["failed"]:
                rules.add_row(r["rule_id"], r["action"], str(r["failed"]))
    console.print(rules)
    if summary.get("stage_seconds"):
        console.print("Stage wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["stage_seconds"].items()))
    console.print("[bold]Findings[/bold]")
    for f in summary["findings"]:
        console.print(f"  • {f}")
    if summary["analysis"].get("report"):
        console.print(f"Decision-support report: {summary['analysis']['report']}")
    docs = next((v["data_docs"] for v in summary["validate"] if v.get("data_docs")), None)
    if docs:
        console.print(f"Data Docs (validation results): {docs}")
    console.print(f"Tables: {summary['lakehouse']}  —  query: python -m jobs.pipeline sql \"SELECT ...\"")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (also for ``spark-submit jobs/pipeline.py run ...``)."""
    parser = argparse.ArgumentParser(prog="python -m jobs.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline (all stages, or one with --stage) for a logical date")
    run.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat, help="logical date YYYY-MM-DD")
    run.add_argument("--stage", default="all", choices=("all",) + STAGES)
    run.add_argument("--residents", type=int, default=DEFAULT_RESIDENTS, help="size of the sample municipality")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED)
    run.add_argument("--redeliver", action="store_true",
                     help="extract: read every object again, replacing a delivered batch that changed (the "
                          "department's redelivery); without it a delivered batch is kept as delivered")
    run.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                     help="wait this long for another run of the date to finish (default GOVLAKE_LEASE_WAIT_S, 0: "
                          "refuse at once)")
    sql = sub.add_parser("sql", help="run a Spark SQL query against the lakehouse tables and print the result")
    sql.add_argument("query")
    sql.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "sql":
        from jobs.spark import get_spark

        spark = get_spark(settings, app_name="govlake-sql")
        lake.register_tables(spark, settings)
        spark.sql(args.query).show(args.limit, truncate=False)
        return 0
    from jobs.lease import LeaseHeld

    try:
        if args.stage == "all":
            print_summary(run_all(settings, args.date, args.residents, args.seed, wait_s=args.wait,
                                  redeliver=args.redeliver))
        else:
            extra = {"redeliver": True} if args.redeliver and args.stage == "extract" else {}
            result = run_stage(args.stage, args.date, settings, wait_s=args.wait, **extra)
            print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    except LeaseHeld as exc:
        print(f"govlake: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    return 0


if __name__ == "__main__":
    sys.exit(main())
