"""Auditor commands of the quality gate: release corrected rows from quarantine, recall against the fault manifest,
cross-check of the stored validation results with GX's own checkpoint.

Command line::

    python -m govlake.quality.audit release --table hukou_persons --date 2025-06-30 --corrections fixed.csv
    python -m govlake.quality.audit recall --date 2025-06-30
    python -m govlake.quality.audit crosscheck --date 2025-06-30 [--table hukou_persons ...]

Release (write-audit-publish for corrections): a corrections CSV (UTF-8, header = the suite's key columns plus the
corrected data columns; every value is text, an empty cell is NULL; columns not in the file keep the quarantined
row's value) is matched to the logical date's *unreleased* quarantine rows of ``quarantine.<table>`` by source key,
re-validated with the same suite (``expectations/raw.<table>.json``), and the passing rows are MERGEd into
``staging.<table>`` on (key columns, ``_logical_date``), so a second run of the same file changes nothing. Their
quarantine rows are kept and marked: ``_released`` TRUE, ``_release_id`` (first 12 hex digits of the SHA-256 of the
corrections file), ``_released_row`` (the published row as JSON). Rows that still fail stay quarantined, unmarked.
Note: re-running ``validate`` for the date re-derives staging and quarantine from raw and drops earlier releases;
re-apply the corrections file after it (the release is idempotent).

Recall: the generator's fault manifest (``$GOVLAKE_HOME/sources/truth/faults.csv``, columns
``govlake.quality.manifest.FAULT_COLUMNS``) joined with the quarantine table and the warn flags of the same suite. A
fault is *caught* when its row is quarantined or warn-flagged by a rule that reads the fault's column (see
:func:`rule_reads_fault_column`; a manifest pseudo-column such as ``coordinates`` of the address registry stands for
the delivered columns listed in ``govlake.quality.manifest.PSEUDO_COLUMNS``, here ``lng`` and ``lat``). The fault's row
is found by business key, or, when the fault nulled that key (``business_key_null``), by the manifest's
``row_locator`` (delivered values of other columns, e.g. the document ``_id``); quarantine rows are matched to raw
rows by ``(_batch_id, _row_number)``. Fault kinds of tables without a raw batch for the date are reported as
'not extracted'. Writes ``<reports>/quality/recall_<date>.json`` and ``.md``.

Cross-check: the validate stage stores each batch's Great Expectations result built from the gate's one-pass counts
(``GOVLAKE_GX_ENGINE=single-pass``, the default); ``crosscheck`` runs GX's own checkpoint (its Spark engine) on the
same raw batches and compares every rule's ``success``, ``element_count``, ``missing_count`` and
``unexpected_count`` with the stored result. Writes ``<reports>/quality/crosscheck_<date>.json``; exit code 1 when
any differs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import fsio, lake
from govlake.core.config import EXPECTATIONS_DIR, SAMPLE_LOGICAL_DATE, Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from govlake.quality.rules import Suite

#: Columns that ``validate_table`` adds to every quarantine table and :func:`release` sets.
RELEASE_COLUMNS = (("_released", "boolean"), ("_release_id", "string"), ("_released_row", "string"))
#: Name of the whole-document column of document sources (a rule on it reads every field).
DOCUMENT_COLUMN = "document"
#: Row-hash separator and NULL mark, the same as :func:`govlake.extract.raw.add_lineage`.
_SEP, _NULL = "\u241f", "\u2400"


# --------------------------------------------------------------------------------------------- release

def release_id(data: bytes) -> str:
    """Id of a release: the first 12 hex digits of the SHA-256 of the corrections file's bytes."""
    return hashlib.sha256(data).hexdigest()[:12]


def corrected_rows(corrections: DataFrame, quarantine: DataFrame, raw_schema: StructType, suite: Suite,
                   newest_first: str | None = None) -> DataFrame:
    """Build the corrected rows of a release (pure transform, lazy).

    Args:
        corrections: DataFrame of STRING columns: every ``suite.key_columns`` plus any data columns of the table.
        quarantine: the quarantine rows of one logical date (``_source_key``, ``_row`` JSON, lineage columns,
            ``_released``); released rows are ignored.
        raw_schema: StructType of ``raw.<table>`` (data columns, then lineage columns starting with ``_``).
        suite: the table's :class:`govlake.quality.rules.Suite`.
        newest_first: the table's watermark column (``govlake.extract.stage.raw_watermark``), or None.

    Returns:
        DataFrame with ``raw_schema``'s columns: data columns from the correction when the file has the column,
        else from the quarantined ``_row``; lineage columns from the quarantined row. When several quarantined
        rows share a key (copies of a record), the one corrected is the newest by ``newest_first`` (read as
        :func:`govlake.quality.rules.evaluate` ranks copies: :func:`govlake.unified.persons.source_timestamp_col`, NULL
        or unparsable last; the copy that stood for the key at validation), then the one with the lowest
        ``_row_number``. ``_row_hash`` recomputed over the corrected data columns as in
        :func:`govlake.extract.raw.add_lineage`. Corrections whose key has no unreleased quarantine row are dropped
        (see :func:`unmatched_keys`).

    Raises:
        ValueError: a key column is missing from ``corrections``, or a correction column is not a column of the
            table.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    from govlake.quality.rules import source_key

    data_fields = [f for f in raw_schema.fields if not f.name.startswith("_") or f.name == "_id"]
    lineage = [f.name for f in raw_schema.fields if f not in data_fields]
    names = {f.name for f in data_fields}
    missing = [k for k in suite.key_columns if k not in corrections.columns]
    if missing:
        raise ValueError(f"corrections for {suite.table}: key columns {missing} are missing")
    unknown = sorted(set(corrections.columns) - names)
    if unknown:
        raise ValueError(f"corrections for {suite.table}: {unknown} are not columns of the table")
    open_rows = quarantine.where(~F.coalesce(F.col("_released"), F.lit(False)))
    order = [F.col("_row_number").asc_nulls_last(), F.col("_row")]
    if newest_first is not None:
        from govlake.unified.persons import (
            source_timestamp_col,  # lazy: the reading of delivered times the gate ranks by
        )

        order.insert(0, source_timestamp_col(F.get_json_object("_row", f"$.{newest_first}")).desc_nulls_last())
    base = (open_rows.select("*", F.row_number().over(Window.partitionBy("_source_key").orderBy(*order)).alias("_n"))
            .where("_n = 1")
            .select("_source_key", F.from_json("_row", StructType(data_fields)).alias("_orig"), *lineage))
    corr = corrections.select(source_key(suite.key_columns).alias("_source_key"),
                              *[F.col(f"`{c}`").alias(f"_c_{c}") for c in corrections.columns])
    joined = base.join(corr, "_source_key", "inner")
    data = [(F.col(f"_c_{f.name}").cast(f.dataType) if f.name in corrections.columns
             else F.col("_orig").getField(f.name)).alias(f.name) for f in data_fields]
    out = joined.select(*data, *lineage)
    row_hash = F.sha2(F.concat_ws(_SEP, *[F.coalesce(F.col(f"`{f.name}`").cast("string"), F.lit(_NULL))
                                          for f in data_fields]), 256)
    return out.select(*[row_hash.alias(c) if c == "_row_hash" else F.col(f"`{c}`") for c in out.columns])


def unmatched_keys(corrections: DataFrame, quarantine: DataFrame, suite: Suite) -> DataFrame:
    """Source keys of corrections with no unreleased quarantine row (DataFrame ``_source_key`` STRING)."""
    from pyspark.sql import functions as F

    from govlake.quality.rules import source_key

    open_keys = quarantine.where(~F.coalesce(F.col("_released"), F.lit(False))).select("_source_key").distinct()
    return (corrections.select(source_key(suite.key_columns).alias("_source_key"))
            .join(open_keys, "_source_key", "left_anti"))


def ensure_release_columns(spark: SparkSession, path: str) -> None:
    """Add the missing ``RELEASE_COLUMNS`` to the quarantine Delta table at ``path`` (tables written before them)."""
    lake.add_missing_columns(spark, path, list(RELEASE_COLUMNS))


def release(spark: SparkSession, settings: Settings, table: str, logical_date: dt.date, corrections: DataFrame,
            rid: str, suites_dir: Path = EXPECTATIONS_DIR) -> dict:
    """Release corrected rows of ``quarantine.<table>`` for ``logical_date`` into ``staging.<table>``.

    Args:
        corrections: DataFrame of STRING columns (see :func:`corrected_rows`).
        rid: the release id (:func:`release_id` of the corrections file).
        suites_dir: folder of the suite files (default ``expectations/``).

    Returns:
        ``{"table", "logical_date", "release_id", "suite_version", "corrections", "released",
        "still_quarantined": [{"key", "rule_ids"}], "not_in_quarantine": [keys], "staging": {"inserted",
        "updated"}}`` (lists sorted by key).

    Raises:
        FileNotFoundError: no quarantine table for ``table``.
        govlake.quality.rules.FailRuleViolated: a corrected row fails a ``fail`` rule (nothing is released).
        ValueError: see :func:`corrected_rows`.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from govlake.extract.stage import raw_watermark
    from govlake.quality import rules as quality

    suite = quality.load_suite(f"raw.{table}", suites_dir)
    qpath = settings.table_path("quarantine", table)
    if not lake.exists(spark, qpath):
        raise FileNotFoundError(f"no quarantine table {qpath}")
    ensure_release_columns(spark, qpath)
    day = f"_logical_date = DATE'{logical_date.isoformat()}'"
    quarantine = spark.read.format("delta").load(qpath).where(day)
    raw_schema = spark.read.format("delta").load(settings.table_path("raw", table)).schema
    # before the quarantine rows are marked (the read is lazy)
    unmatched = sorted(r["_source_key"] for r in unmatched_keys(corrections, quarantine, suite).collect())
    # the quarantined copy corrected is the newest by the object's watermark, as the validate stage ranks copies
    fixed = corrected_rows(corrections, quarantine, raw_schema, suite, raw_watermark(table))
    evaluated = quality.evaluate(fixed, suite).cache()
    try:
        counts = quality.rule_counts(evaluated, suite)
        quality.enforce_fail_rules(counts, suite)
        passed, still = quality.split(evaluated, suite)
        still_rows = sorted((r["_source_key"], list(r["_rule_ids"])) for r in still.collect())
        passed = passed.cache()
        n_passed = passed.count()
        stats = {"inserted": 0, "updated": 0}
        if n_passed:
            stats = lake.merge_by_key(spark, passed, settings.table_path("staging", table),
                                      [*suite.key_columns, "_logical_date"], hash_column="_row_hash")
            data_cols = [c for c in passed.columns if not c.startswith("_") or c == "_id"]
            marks = passed.select(quality.source_key(suite.key_columns).alias("_source_key"),
                                  F.to_json(F.struct(*[F.col(f"`{c}`") for c in data_cols]),
                                            {"ignoreNullFields": "false"}).alias("_released_row"))
            (DeltaTable.forPath(spark, qpath).alias("q")
                .merge(marks.alias("m"), f"q.{day} AND q._source_key = m._source_key "
                                         "AND NOT coalesce(q._released, false)")
                .whenMatchedUpdate(set={"_released": F.lit(True), "_release_id": F.lit(rid),
                                        "_released_row": F.col("m._released_row")})
                .execute())
        passed.unpersist()
    finally:
        evaluated.unpersist()
    return {"table": table, "logical_date": logical_date.isoformat(), "release_id": rid,
            "suite_version": suite.version, "corrections": corrections.count(), "released": n_passed,
            "still_quarantined": [{"key": k, "rule_ids": ids} for k, ids in still_rows],
            "not_in_quarantine": unmatched, "staging": stats}


# --------------------------------------------------------------------------------------------- recall

def rule_reads_fault_column(fault_column: str, rule_columns: tuple[str, ...],
                            projection: dict[str, str | list[str]], stands_for: tuple[str, ...] = ()) -> bool:
    """Whether a rule on ``rule_columns`` can be the one that catches a fault on ``fault_column``.

    True when the fault is on the whole row (``'*'``), or a rule column is the fault column, its last dotted segment
    (``location.grid_code`` → ``grid_code``), one of the delivered columns the manifest's pseudo-column stands for
    (``stands_for``: ``coordinates`` → ``('lng', 'lat')``, see ``govlake.quality.manifest.PSEUDO_COLUMNS``), the whole
    document (``document``), or a projection of it (raw column whose JSON path (or one of its paths) in
    ``projection`` starts with ``$.<fault column>``: ``location`` → ``grid_code`` from ``$.location.grid_code``).
    """
    if fault_column == "*":
        return True
    last = fault_column.rsplit(".", 1)[-1]
    for c in rule_columns:
        entry = projection.get(c) or ()
        paths = (entry,) if isinstance(entry, str) else tuple(entry)
        if c in (fault_column, last, DOCUMENT_COLUMN) or c in stands_for or any(
                p == f"$.{fault_column}" or p.startswith(f"$.{fault_column}.") for p in paths):
            return True
    return False


def read_faults(settings: Settings):
    """The fault manifest as a pandas DataFrame of str (``FAULT_COLUMNS``, '' for empty; ``row_locator`` '' when
    the file predates it).

    Raises:
        FileNotFoundError: no ``<sources>/truth/faults.csv``.
    """
    import pandas as pd

    from govlake.quality.manifest import FAULT_COLUMNS

    path = settings.sources_dir / "truth" / "faults.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no fault manifest at {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "row_locator" not in df.columns:
        df["row_locator"] = ""
    return df[list(FAULT_COLUMNS)]


def row_fault_key(keyed_faults, key: Column) -> Column:
    """The manifest ``row_key`` a raw row stands for: ``key`` (the row's source key), except for a row matched by a
    fault's ``row_locator`` (JSON ``{column: text or null}``; every column equal, NULL-safe) → that fault's
    ``row_key``.

    Args:
        keyed_faults: iterable of (row_key, row_locator) pairs with a non-empty locator.
        key: the source-key Column (:func:`govlake.quality.rules.source_key`).

    Raises:
        ValueError: a locator is not a JSON object.
    """
    from pyspark.sql import functions as F

    out = None
    for row_key, locator in keyed_faults:
        loc = json.loads(locator)
        if not isinstance(loc, dict) or not loc:
            raise ValueError(f"fault {row_key}: row_locator {locator!r} is not a JSON object")
        eqs = [F.col(f"`{c}`").cast("string").eqNullSafe(F.lit(v).cast("string")) for c, v in loc.items()]
        cond = eqs[0]
        for eq in eqs[1:]:
            cond = cond & eq
        out = F.when(cond, F.lit(row_key)) if out is None else out.when(cond, F.lit(row_key))
    return key if out is None else out.otherwise(key)


def recall(spark: SparkSession, settings: Settings, logical_date: dt.date, faults=None,
           suites_dir: Path = EXPECTATIONS_DIR, projections: dict[str, dict[str, str | list[str]]] | None = None,
           pseudo_columns: dict[tuple[str, str], dict[str, tuple[str, ...]]] | None = None) -> dict:
    """Recall of the quality gate per (table, fault kind) and false-quarantine rate on clean rows.

    Args:
        faults: pandas DataFrame of the manifest (default :func:`read_faults`).
        projections: raw table → {raw column: JSON path} of document sources (default: from the registry).
        pseudo_columns: (source, table) → {manifest pseudo-column: delivered columns it stands for} (default
            ``govlake.quality.manifest.PSEUDO_COLUMNS``).

    Returns:
        ``{"logical_date", "kinds": [{"table", "fault_kind", "status": "extracted"|"not extracted",
        "injected", "caught", "quarantined", "flagged", "recall", "rules"}], "clean": [{"table", "clean_rows",
        "quarantined", "rate"}], "false_quarantine_rate"}``; ``injected`` counts the faults whose row is in the
        date's raw batch (by key, or by ``row_locator`` for a fault that nulled the key), ``quarantined``/
        ``flagged`` the caught ones by action, ``recall`` = caught / injected (None when nothing was injected or not
        extracted), ``rules`` the rule ids that caught them; a clean row is a raw row that no fault of the manifest
        names (by key or locator). Sorted by table, kind.

    Raises:
        ValueError: a ``row_locator`` is not a JSON object.
    """
    from pyspark.sql import functions as F

    from govlake.quality import rules as quality
    from govlake.quality.manifest import PSEUDO_COLUMNS

    faults = read_faults(settings) if faults is None else faults
    pseudo_columns = PSEUDO_COLUMNS if pseudo_columns is None else pseudo_columns
    if "row_locator" not in faults.columns:
        faults = faults.assign(row_locator="")
    if projections is None:
        try:
            from govlake.extract.registry import load_registry

            projections = {f"{n}_{o.name}": dict(o.projection) for n, s in load_registry().items()
                           for o in s.objects.values()}
        except Exception:  # noqa: BLE001 - the registry is optional for the report
            projections = {}
    day = f"_logical_date = DATE'{logical_date.isoformat()}'"
    kinds, clean = [], []
    faults = faults.assign(raw_table=faults["source"] + "_" + faults["table"])
    for table in sorted(faults["raw_table"].unique()):
        tf = faults[faults["raw_table"] == table]
        raw_path = settings.table_path("raw", table)
        batch = (spark.read.format("delta").load(raw_path).where(day) if lake.exists(spark, raw_path) else None)
        if batch is None or not (suites_dir / f"raw.{table}.json").is_file() or batch.limit(1).count() == 0:
            for kind in sorted(tf["fault_kind"].unique()):
                kinds.append({"table": table, "fault_kind": kind, "status": "not extracted",
                              "injected": int((tf["fault_kind"] == kind).sum()), "caught": None,
                              "quarantined": None, "flagged": None, "recall": None, "rules": []})
            continue
        suite = quality.load_suite(f"raw.{table}", suites_dir)
        action = {r.rule_id: r.action for r in suite.rules}
        located = tf[tf["row_locator"] != ""][["row_key", "row_locator"]].drop_duplicates()
        keyed = batch.select(row_fault_key(located.itertuples(index=False, name=None),
                                           quality.source_key(suite.key_columns)).alias("k"), "*")
        warn_ids = [r.rule_id for r in suite.rules if r.action == "warn"]
        flags = (quality.evaluate(keyed, suite)
                 .select("k", F.explode(F.array_intersect(F.col(quality.FAILED_RULES_COL),
                                                          F.array(*[F.lit(i) for i in warn_ids] or [F.lit(None)])
                                                          .cast("array<string>"))).alias("rule_id")))
        qpath = settings.table_path("quarantine", table)
        # quarantine rows → their raw row (and its fault key) by position in the batch
        q_rows = (spark.read.format("delta").load(qpath).where(day)
                  .join(keyed.select("_batch_id", "_row_number", "k"), ["_batch_id", "_row_number"], "left")
                  .select(F.coalesce("k", "_source_key").alias("k"), "_rule_ids")
                  if lake.exists(spark, qpath) else None)
        quarantined = (None if q_rows is None
                       else q_rows.select("k", F.explode("_rule_ids").alias("rule_id")))
        hits = flags if quarantined is None else flags.unionByName(quarantined)
        fault_keys = sorted(set(tf["row_key"]))
        hit_rows = hits.where(F.col("k").isin(fault_keys)).distinct().collect()
        by_key: dict[str, set[str]] = {}
        for r in hit_rows:
            by_key.setdefault(r["k"], set()).add(r["rule_id"])
        present = {r["k"] for r in keyed.where(F.col("k").isin(fault_keys)).select("k").distinct().collect()}
        columns = {r.rule_id: r.columns for r in suite.rules}
        proj = projections.get(table, {})
        pseudo = pseudo_columns.get((tf["source"].iloc[0], tf["table"].iloc[0]), {})
        for kind in sorted(tf["fault_kind"].unique()):
            rows = tf[(tf["fault_kind"] == kind) & tf["row_key"].isin(present)]
            caught = n_q = n_w = 0
            rules: dict[str, int] = {}
            for _, f in rows.iterrows():
                got = sorted(i for i in by_key.get(f["row_key"], ())
                             if i in columns and rule_reads_fault_column(f["column"], columns[i], proj,
                                                                         pseudo.get(f["column"], ())))
                if got:
                    caught += 1
                    blocking = any(action[i] in ("quarantine", "fail") for i in got)
                    n_q, n_w = n_q + blocking, n_w + (not blocking)
                    for i in got:
                        rules[i] = rules.get(i, 0) + 1
            n = len(rows)
            kinds.append({"table": table, "fault_kind": kind, "status": "extracted", "injected": n,
                          "caught": caught, "quarantined": n_q, "flagged": n_w,
                          "recall": round(caught / n, 4) if n else None,
                          "not_in_batch": int((tf["fault_kind"] == kind).sum()) - n,
                          "rules": sorted(rules)})
        agg = keyed.agg(F.count_if(~F.col("k").isin(fault_keys)).alias("clean")).collect()[0]
        q_clean = 0 if q_rows is None else q_rows.where(~F.col("k").isin(fault_keys)).count()
        n_clean = int(agg["clean"])
        clean.append({"table": table, "clean_rows": n_clean, "quarantined": q_clean,
                      "rate": round(q_clean / n_clean, 6) if n_clean else None})
    total_clean = sum(c["clean_rows"] for c in clean)
    total_q = sum(c["quarantined"] for c in clean)
    return {"logical_date": logical_date.isoformat(), "kinds": kinds, "clean": clean,
            "false_quarantine_rate": round(total_q / total_clean, 6) if total_clean else None}


def recall_markdown(report: dict) -> str:
    """The recall report as Markdown (two tables: per fault kind, false quarantine on clean rows)."""
    pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines = [f"# Quality-gate recall, logical date {report['logical_date']}", "",
             "| table | fault kind | status | injected | caught | quarantined | flagged | recall | rules |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for k in report["kinds"]:
        cell = lambda v: "—" if v is None else str(v)  # noqa: E731
        lines.append(f"| {k['table']} | {k['fault_kind']} | {k['status']} | {k['injected']} | {cell(k['caught'])} | "
                     f"{cell(k['quarantined'])} | {cell(k['flagged'])} | {pct(k['recall'])} | "
                     f"{', '.join(k['rules'])} |")
    lines += ["", "| table | clean rows | quarantined | false-quarantine rate |", "|---|---:|---:|---:|"]
    for c in report["clean"]:
        lines.append(f"| {c['table']} | {c['clean_rows']} | {c['quarantined']} | {pct(c['rate'])} |")
    lines += ["", f"False-quarantine rate on all clean rows: {pct(report['false_quarantine_rate'])}", ""]
    return "\n".join(lines)


def write_recall(report: dict, reports_dir: Path) -> tuple[Path, Path]:
    """Write ``<reports_dir>/quality/recall_<date>.json`` and ``.md`` (each atomically, :mod:`govlake.core.fsio`);
    returns both paths."""
    out = Path(reports_dir) / "quality"
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"recall_{report['logical_date']}"
    js, md = stem.with_suffix(".json"), stem.with_suffix(".md")
    fsio.atomic_write_text(js, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    fsio.atomic_write_text(md, recall_markdown(report))
    return js, md


# --------------------------------------------------------------------------------------------- cross-check

def stored_result(reports_dir: Path, batch_id: str):
    """The newest GX validation result stored for run name ``batch_id`` in ``<reports_dir>/gx`` (None when there is
    none), as ``(key, ExpectationSuiteValidationResult)``."""
    from govlake.quality import rules as quality

    with quality.gx_project_lock(reports_dir):
        store = quality._gx_context(reports_dir).validation_results_store
        keys = [k for k in store.list_keys() if k.run_id.run_name == batch_id]
        if not keys:
            return None
        key = max(keys, key=lambda k: str(k.run_id.run_time))
        return key, store.get(key)


def _figures(expectations: list[dict]) -> dict[str, tuple]:
    """rule_id -> (success, element_count, missing_count, unexpected_count) of
    :func:`govlake.quality.rules.expectation_figures` rows."""
    return {e["rule_id"]: (e["success"], e["element_count"], e["missing_count"], e["unexpected_count"])
            for e in expectations}


def crosscheck(spark: SparkSession, settings: Settings, logical_date: dt.date, tables: list[str] | None = None,
               suites_dir: Path = EXPECTATIONS_DIR) -> list[dict]:
    """A second opinion on the validation results auditors read: for each raw batch of ``logical_date``, GX's own
    checkpoint (:func:`govlake.quality.rules.run_checkpoint`, its Spark engine, run name ``<batch id>#crosscheck``) on
    the raw partition, compared rule by rule with the newest result stored for the batch (by default built from the
    gate's single-pass counts, :func:`govlake.quality.rules.save_validation_result`).

    Compared per rule: ``success``, ``element_count``, ``missing_count``, ``unexpected_count``.

    Args:
        tables: raw table names (default: every raw table of the registry that has a stored result for the date).
        suites_dir: folder of the suite files.

    Returns:
        one dict per table: ``{"table": "raw.<t>", "batch_id", "stored_engine": "single-pass"|"spark",
        "rules": n, "mismatches": [{"rule_id", "stored": (success, element, missing, unexpected), "gx": (...)}]}``;
        a table whose batch has no stored result is reported with ``"stored_engine": None`` and every rule as a
        mismatch (``stored`` None).
    """
    from govlake.extract.stage import raw_tables
    from govlake.quality import rules as quality

    out = []
    for table in tables or raw_tables():
        batch_id = f"{table.split('_', 1)[0]}.{table.split('_', 1)[1]}:{logical_date.isoformat()}"
        stored = stored_result(settings.reports_dir, batch_id)
        if stored is None and tables is None:
            continue
        suite = quality.load_suite(f"raw.{table}", suites_dir)
        batch = (spark.read.format("delta").load(settings.table_path("raw", table))
                 .where(f"_logical_date = DATE'{logical_date.isoformat()}'"))
        gx_run = quality.run_checkpoint(spark, batch, suite, f"{batch_id}#crosscheck", settings.reports_dir,
                                        data_docs=False)
        gx = _figures(gx_run["expectations"])
        mine = _figures(quality.expectation_figures(stored[1])) if stored else {}
        engine = ((stored[1].meta or {}).get("govlake") or {}).get("engine", "spark") if stored else None
        out.append({"table": f"raw.{table}", "batch_id": batch_id, "stored_engine": engine, "rules": len(gx),
                    "mismatches": [{"rule_id": rid, "stored": mine.get(rid), "gx": fig}
                                   for rid, fig in gx.items() if mine.get(rid) != fig]})
    return out


# --------------------------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m govlake.quality.audit release|recall|crosscheck`` (see the module docstring); crosscheck exits 1 when
    a stored result differs from GX's own checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m govlake.quality.audit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="release corrected rows from quarantine into staging")
    rel.add_argument("--table", required=True, help="raw table name, e.g. hukou_persons")
    rel.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat)
    rel.add_argument("--corrections", required=True, type=Path, help="CSV keyed by the source key")
    rec = sub.add_parser("recall", help="recall per fault kind against the generator's fault manifest")
    rec.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat)
    cc = sub.add_parser("crosscheck", help="GX's own checkpoint on each raw batch vs the stored validation results")
    cc.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat)
    cc.add_argument("--table", action="append", help="raw table name (repeatable; default: every validated table)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    from govlake.core.spark import get_spark

    spark = get_spark(settings, app_name=f"govlake-audit-{args.command}")
    if args.command == "release":
        import pandas as pd

        data = args.corrections.read_bytes()
        pdf = pd.read_csv(args.corrections, dtype=str, keep_default_na=False)
        pdf = pdf.astype(object).where(pdf != "", None)
        corrections = spark.createDataFrame(pdf, ", ".join(f"`{c}` string" for c in pdf.columns))
        out = release(spark, settings, args.table, args.date, corrections, release_id(data))
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    if args.command == "crosscheck":
        report = crosscheck(spark, settings, args.date, args.table)
        for t in report:
            print(f"{t['table']:<36} {t['rules']:3d} rules  stored by {t['stored_engine']}: "
                  + ("same figures as GX's checkpoint" if not t["mismatches"] else f"{len(t['mismatches'])} differ"))
            for m in t["mismatches"]:
                print(f"    {m['rule_id']}: stored {m['stored']} vs GX {m['gx']}"
                      " (success, element, missing, unexpected)")
        path = settings.reports_dir / "quality" / f"crosscheck_{args.date.isoformat()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fsio.atomic_write_text(path, json.dumps(report, ensure_ascii=False, indent=2))
        print(f"written: {path}")
        return 1 if any(t["mismatches"] for t in report) else 0
    recalled = recall(spark, settings, args.date)
    js, md = write_recall(recalled, settings.reports_dir)
    print(recall_markdown(recalled))
    print(f"written: {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
