"""The unify stage (write-audit-publish): persons, links, history, relationships, addresses and events into
``unified.*``; every table's new state is checked with ``expectations/unified.<table>.json`` before any is written.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import catalog, config, lake
from govlake.core.config import REFERENCE_DIR, Settings
from govlake.quality.stage import validation_results_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _hotline_labels(spark: SparkSession) -> DataFrame:
    import pandas as pd

    labels = pd.read_csv(REFERENCE_DIR / "hotline" / "messages_labeled_sample.csv", dtype=str,
                         usecols=["留言编号", "一级分类"])
    labels = labels.rename(columns={"留言编号": "message_id", "一级分类": "category_l1"})
    labels = labels.drop_duplicates("message_id").sort_values("message_id")
    return spark.createDataFrame(labels, "message_id string, category_l1 string")


#: The unified tables in publish order, from the table catalog (``tables/unified.<table>.yaml``).
UNIFIED_TABLES = tuple(spec.table for spec in catalog.tables("unified"))


class UnifiedPlan:
    """The writes of one unify run to the unified layer, audited before any of them is published
    (write-audit-publish).

    :meth:`merge` and :meth:`rewrite` only plan a write and return the table's state after it (what readers will
    see: :func:`govlake.core.lake.merged_state` of the table's current version, pinned, and the MERGE source); later
    tables are derived from those states. :meth:`publish` evaluates every state with its suite
    (:func:`validate_unified`, which records the results and raises when a fail rule failed: then nothing is
    written) and only then writes the tables, in plan order. Planned frames are cached until :meth:`release`.

    Attributes:
        states: table name (without layer) -> DataFrame of the table's rows after publication, in plan order.
    """

    def __init__(self, spark: SparkSession, settings: Settings, run_id: str | None = None):
        self.spark, self.settings, self.run_id = spark, settings, run_id
        self.states: dict[str, DataFrame] = {}
        self._writes: dict[str, tuple] = {}  # table -> ("merge", source, keys, insert_only) | ("rewrite", df, order)
        self._cached: list[DataFrame] = []

    def keep(self, df: DataFrame) -> DataFrame:
        """``df`` cached until :meth:`release`."""
        df = df.cache()
        self._cached.append(df)
        return df

    def current(self, name: str) -> DataFrame | None:
        """``unified.<name>`` at its latest version, pinned (None when the table does not exist)."""
        from govlake.unified import persons as unified

        path = self.settings.table_path("unified", name)
        version = unified.table_version(self.spark, path)
        return None if version is None else unified.read_pinned(self.spark, path, version)

    def merge(self, df: DataFrame, name: str) -> DataFrame:
        """Plan the MERGE of ``df`` (unique on the catalog's ``primary_key``, with ``_content_hash``) into
        ``unified.<name>`` (:func:`govlake.core.lake.merge_by_key`; the catalog's ``insert_only`` columns keep their
        first value); returns the table's state after it. Nothing is written.

        Raises:
            ValueError: the catalog says the table is rewritten, not MERGEd.
        """
        spec = catalog.table(f"unified.{name}")
        if spec.write != "merge":
            raise ValueError(f"unified.{name}: the table catalog says write: {spec.write}, not merge")
        keys, insert_only = spec.primary_key, spec.insert_only
        df = self.keep(df)
        self._writes[name] = ("merge", df, list(keys), tuple(insert_only))
        self.states[name] = self.keep(lake.merged_state(self.current(name), df, list(keys),
                                                        insert_only_columns=tuple(insert_only)))
        return self.states[name]

    def rewrite(self, df: DataFrame, name: str) -> DataFrame:
        """Plan the whole-table rewrite of ``unified.<name>`` with ``df`` when it changed
        (:func:`govlake.core.lake.overwrite_if_changed`, rows ordered by the catalog's ``primary_key``); returns
        ``df`` (cached), the table's state after it."""
        spec = catalog.table(f"unified.{name}")
        if spec.write != "rewrite":
            raise ValueError(f"unified.{name}: the table catalog says write: {spec.write}, not rewrite")
        df = self.keep(df)
        self._writes[name] = ("rewrite", df, list(spec.primary_key))
        self.states[name] = df
        return df

    def publish(self, logical_date: dt.date, suites_dir: Path | None = None) -> tuple[list[dict], dict]:
        """Audit every planned state (:func:`validate_unified`), then write the tables in plan order (each with the
        change data feed on, :func:`govlake.unified.persons.ensure_cdf_table`).

        Returns:
            ``(gate, stats)``: :func:`validate_unified`'s result, and per table ``{"inserted", "updated"}`` for a
            MERGE or ``True``/``False`` (rewritten or not) for a rewrite.

        Raises:
            govlake.quality.rules.FailRuleViolated: a fail rule failed; no table was written (the results are recorded).
        """
        from govlake.core.failpoints import failpoint
        from govlake.unified import persons as unified

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


def _unified_history(spark: SparkSession, settings: Settings, logical_date: dt.date, latest: dt.date) -> dict:
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


def run_unify(spark: SparkSession, settings: Settings, logical_date: dt.date, data_docs: bool | None = None,
              suites_dir: Path | None = None, run_id: str | None = None) -> dict:
    """Standardise the accepted staging rows of ``logical_date``, link them to persons and MERGE unified
    (write-audit-publish: every unified table's new state passes its suite before any of them is written).

    Every staging table is read once at a pinned Delta version (recorded in the result). Persons come from
    every object whose registry entry has ``unified.entity: person``: records with a NULL business key are
    quarantined (``quarantine.unified_person_records``) and counted, never merged; the rest are deduplicated
    per record_key, linked (valid GB 11643 ID: deterministically; otherwise :mod:`govlake.unified.linkage`) into
    ``unified.person_link`` (an object naming several persons per row gives one record per role); the
    relationships those objects state go to ``unified.person_relationship_statement``; then the golden record
    (``unified.person``), its attribute provenance, ``unified.address`` (addresses of the golden records and the
    household registry, :func:`_address_rows`), the SCD type 2 residence (with the address's grid as a type 1
    column) and household membership, and ``unified.person_relationship`` rebuilt from the membership, the
    statements and the links. Events come from the grid-management documents and the citizen messages.

    Write-audit-publish: each table's MERGE source is computed first and its state after the MERGE
    (:func:`govlake.core.lake.merged_state`; the later tables are derived from the earlier tables' new states, not
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
        "unlinked_person_records": n (records without a valid ID), "null_key_person_records": n,
        "link_methods": {method: n},
        "address": {"inserted", "updated", "rows", "match_level", "unmatched", "no_grid", "grid_method"}
        (``unmatched`` counts addresses kept without a registry match; ``{}`` without an address registry),
        "quality": [...] (:func:`validate_unified`), "data_docs": path | None}``.

    Publication: once every table is committed, their versions are recorded as the unified layer's state for the
    date (:func:`govlake.core.lake.record_publication`, ``run_id`` names the run); readers go through it. A date the
    layer was already published past (a rerun of an earlier day) is not MERGEd again: its publication stands
    (:func:`_unified_history`, result ``{"historical": True, "published": {table: version}, "note"}``).

    Raises:
        govlake.quality.rules.FailRuleViolated: a fail rule of a unified suite failed; the results are recorded, no
            unified table is written (``quarantine.unified_person_records`` is, for the day).
        OutOfOrderRun: an earlier date than the latest publication was never unified.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    from govlake.extract.registry import load_registry
    from govlake.unified import address, linkage
    from govlake.unified import persons as unified

    if data_docs is None:
        data_docs = config.data_docs()
    latest = lake.latest_published_date(spark, settings, "unified")
    if latest is not None and latest > logical_date:
        return _unified_history(spark, settings, logical_date, latest)
    day = logical_date.isoformat()
    versions: dict[str, int] = {}
    # the configuration, read and checked once at the stage's edge; the transforms receive it
    registry = load_registry()
    survivorship = unified.load_survivorship()
    model = linkage.load_model()
    plan = UnifiedPlan(spark, settings, run_id)
    current, plan_merge = plan.current, plan.merge

    def staging(table: str) -> DataFrame:
        path = settings.table_path("staging", table)
        version = unified.table_version(spark, path)
        if version is None:
            raise FileNotFoundError(f"unify {day}: no staging.{table} table at {path}")
        versions[table] = version
        return unified.read_pinned(spark, path, version).where(f"_logical_date = DATE'{day}'")

    try:
        candidates, statements = [], []
        for name, spec in registry.items():
            for obj in spec.objects.values():
                rules = obj.unified  # record_key / watermark default to the object's business key / watermark
                if rules is not None and rules.entity == "person":
                    frame = staging(f"{name}_{obj.name}")
                    candidates.append(unified.person_candidates(frame, name, rules))
                    if rules.relationships:
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
                                             None if existing is None else existing.select("record_key", "person_id"),
                                             model=model)
        all_links = plan_merge(unified.link_rows(records, by_id.unionByName(probabilistic)), "person_link")
        statement_state = current("person_relationship_statement")
        if statements:
            statement_state = plan_merge(unified.dedupe_statements(reduce(lambda a, b: a.unionByName(b), statements)),
                                         "person_relationship_statement")
        methods = {r[0]: int(r[1]) for r in all_links.groupBy("link_method").count().orderBy("link_method").collect()}
        golden = plan_merge(unified.golden_records(all_links, logical_date, survivorship), "person")
        provenance = plan_merge(unified.attribute_provenance(all_links, survivorship), "person_attribute_provenance")
        address_rows = _address_rows(spark, settings, golden, versions)
        if address_rows is not None:
            plan_merge(address_rows, "address")
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
            plan_merge(unified.scd2_changes(current(table), current_rows, logical_date, "person_id", tracked,
                                            overwrite), table)
        plan.rewrite(unified.relationships(plan.states["household_membership"], statement_state, all_links, provenance,
                                           survivorship=survivorship), "person_relationship")

        grid = unified.grid_events(staging("wangge_events"))
        hotline = unified.hotline_events(staging("zhengwu_messages"), _hotline_labels(spark))
        plan_merge(unified.finalize_events(grid.unionByName(hotline), logical_date), "event")

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


def _address_rows(spark: SparkSession, settings: Settings, golden: DataFrame,
                  versions: dict[str, int]) -> DataFrame | None:
    """The MERGE source of ``unified.address`` (:mod:`govlake.unified.address`): the address texts of the golden persons
    and of the household registry (``staging.hukou_households``, every logical date, pinned) matched against the whole
    standard address registry (``staging.address_standard_address`` at a pinned version, every logical date) and
    assigned to grids with the boundaries at ``<sources>/reference/grid_boundaries.geojson`` (registry fallback
    when missing); :data:`govlake.unified.address.ADDRESS_COLUMNS` + ``_content_hash``. None without a registry
    table."""
    from pyspark.sql import functions as F

    from govlake.unified import address
    from govlake.unified import persons as unified

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


def validate_unified(spark: SparkSession, settings: Settings, states: dict[str, DataFrame], logical_date: dt.date,
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
        key columns, :func:`govlake.quality.rules.tally`; what :func:`unified_checkpoints` turns into the GX validation
        results).

    Raises:
        FileNotFoundError: a table has no suite file.
        ValueError: a suite has a ``quarantine`` rule, or names a column the table lacks.
        govlake.quality.rules.FailRuleViolated: a fail rule failed on some row (after the results are recorded); the
            message names every such suite, rule and row count.
    """
    from govlake.quality import rules as quality

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
    results = spark.createDataFrame(rows, schema=validation_results_schema())
    path = settings.table_path("ops", "validation_results")
    lake.retry_on_conflict(  # shares the table with the validate tasks of the departments
        lambda: (results.write.format("delta").mode("overwrite")
                 .option("replaceWhere", f"_logical_date = DATE'{logical_date.isoformat()}' AND table LIKE 'unified.%'")
                 .partitionBy("_logical_date").save(path)),
        f"ops.validation_results unified {logical_date}")
    if failures:
        raise quality.FailRuleViolated("unified layer not published: " + " | ".join(failures))
    return out


def unified_checkpoints(spark: SparkSession, settings: Settings, states: dict[str, DataFrame], logical_date: dt.date,
                        suites_dir: Path | None = None, gate: list[dict] | None = None) -> str | None:
    """The Great Expectations validation result of every unified table's state, run name
    ``unified.<table>:<date>``, saved only; then the Data Docs pages of those runs and the index, built once
    (:func:`govlake.quality.rules.build_data_docs`). Returns the Data Docs index path (None without tables).

    With ``gate`` (:func:`validate_unified`'s result for these states) and the default ``GOVLAKE_GX_ENGINE``
    (``single-pass``), each result is built from the gate's counts
    (:func:`govlake.quality.rules.save_validation_result`): no state is evaluated again. Otherwise GX's own checkpoint
    runs on each state (:func:`govlake.quality.rules.run_checkpoint`)."""
    from govlake.quality import rules as quality

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
