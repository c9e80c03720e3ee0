"""The main job: every stage of GovLake for one logical date, and its command line.

Stages (each idempotent for its logical date; the Airflow DAG runs them as separate tasks, see ``STAGES``):
extract (:mod:`govlake.extract.stage`), validate (:mod:`govlake.quality.stage`), unify
(:mod:`govlake.unified.stage`), marts (:mod:`govlake.marts.stage`), analysis (:mod:`govlake.analysis.stage`).
After the analysis stage the resource catalog is published as ``catalog.resources``
(:func:`govlake.governance.resources.publish_resources`, rewritten only when the catalog changed).

Command line (also the ``spark-submit`` entry point; ``--stage`` runs one stage)::

    python -m govlake.pipeline run [--date 2025-06-30] [--stage all] [--redeliver] [--wait SECONDS]
    python -m govlake.pipeline sql "SELECT * FROM marts.population_by_district_sex_age LIMIT 5"

The embedded sample municipality is generated beforehand by ``python -m sample.embedded`` (``make demo`` does both).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from govlake.analysis.stage import run_analysis
from govlake.core import config, lake, runlog
from govlake.core.config import SAMPLE_LOGICAL_DATE, Settings
from govlake.core.fsio import atomic_write_text
from govlake.core.lease import CUMULATIVE_STAGES, Holder, LeaseHeld, run_leases
from govlake.core.spark import get_spark, metastore_lock
from govlake.extract.stage import run_extract
from govlake.governance.resources import publish_resources
from govlake.marts.stage import run_marts
from govlake.quality.stage import run_validate
from govlake.summary import findings, print_summary, table_counts
from govlake.unified.stage import run_unify

if TYPE_CHECKING:  # annotations only: this module does not import pyspark at import time
    from pyspark.sql import SparkSession

#: The stages of a run, in order; each is one Airflow task of the daily DAG.
STAGES = ("extract", "validate", "unify", "marts", "analysis")


def run_stage(stage: str, logical_date: dt.date, settings: Settings | None = None,
              spark: SparkSession | None = None, holder: Holder | None = None,
              wait_s: float | None = None, release: bool = True, **kwargs: Any) -> dict | list[dict]:
    """Run one stage for ``logical_date`` under the run's leases (:func:`run_leases`; the Airflow tasks' entry
    point, and ``run --stage``).

    Args:
        holder: the run (:class:`govlake.core.lease.Holder`; default this process as a one-process run).
        wait_s: how long to wait for another run's lease (default ``GOVLAKE_LEASE_WAIT_S``).
        release: release the leases after the stage (False: keep them for the run's next task).
        kwargs: the stage function's own arguments.

    Raises:
        ValueError: unknown stage.
        govlake.core.lease.LeaseHeld: another run of the date (or, for unify, marts and analysis, of the cumulative
            layers) is under way.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    settings = settings or Settings.from_env()
    spark = spark or get_spark(settings, app_name=f"govlake-{stage}")
    stage_functions: dict[str, Callable[..., dict | list[dict]]] = {
        "extract": run_extract, "validate": run_validate, "unify": run_unify, "marts": run_marts,
        "analysis": run_analysis}
    fn = stage_functions[stage]
    runlog.install()  # every log record of the stage names the run, the date and the stage
    with run_leases(spark, settings, logical_date, stage in CUMULATIVE_STAGES, holder, wait_s, release) as leases, \
            runlog.run_context(leases.holder.run_id, logical_date, stage), runlog.stage_step(stage):
        if stage in ("unify", "marts", "analysis"):
            kwargs.setdefault("run_id", leases.holder.run_id)
        result = fn(spark, settings, logical_date, **kwargs)
        if stage == "analysis":
            publish_resources(spark, settings)  # catalog.resources, after the last stage (unchanged: no commit)
        register_written(spark, settings)
        return result


def register_written(spark: SparkSession, settings: Settings) -> list[str]:
    """After a stage: in a persistent catalog (``GOVLAKE_METASTORE_URL``) register the tables it wrote that have no
    name yet (:func:`govlake.core.lake.register_new_tables`, cheap when none is new), so the SQL endpoint sees
    them, then the roles' share views over them (:func:`govlake.governance.access.publish_share_views`, only the
    views that are new or changed); with the in-memory catalog nothing (readers register per session). Returns the
    names registered."""
    if not lake.is_persistent_catalog(spark):
        return []
    from govlake.governance.access import publish_share_views

    url = config.metastore_url()
    if not url:  # under spark-submit: the cluster's own metastore
        names = lake.register_new_tables(spark, settings)
        publish_share_views(spark, settings)
        return names
    with metastore_lock(url):  # one process at a time (tasks of a run register concurrently)
        names = lake.register_new_tables(spark, settings)
        publish_share_views(spark, settings)
        return names



def run_all(settings: Settings, logical_date: dt.date, spark: SparkSession | None = None,
            data_docs: bool | None = None, wait_s: float | None = None, redeliver: bool = False) -> dict:
    """The whole pipeline for one logical date in one SparkSession, under the date's and the cumulative layers'
    leases (:func:`run_leases`; ``wait_s`` as there); returns the run summary.

    The summary (also written to ``<reports>/summary-<date>.json``) holds rows per table per layer,
    quarantined rows per rule, MERGE statistics, wall seconds per stage (``stage_seconds``) and headline findings.
    """
    spark = spark or get_spark(settings, app_name="govlake-main")
    started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the run's time (the workbook's generated-at)
    summary: dict[str, Any] = {"logical_date": logical_date.isoformat(), "lakehouse": settings.lakehouse}
    timings: dict[str, float] = {}
    runlog.install()
    with run_leases(spark, settings, logical_date, cumulative=True, wait_s=wait_s) as leases, \
            runlog.run_context(leases.holder.run_id, logical_date):
        run_id = leases.holder.run_id
        summary["run_id"] = run_id
        steps = (("extract", lambda: run_extract(spark, settings, logical_date, redeliver=redeliver)),
                 ("validate", lambda: run_validate(spark, settings, logical_date, data_docs=data_docs)),
                 ("unify", lambda: run_unify(spark, settings, logical_date, data_docs=data_docs, run_id=run_id)),
                 ("marts", lambda: run_marts(spark, settings, logical_date, run_id=run_id)),
                 ("analysis", lambda: run_analysis(spark, settings, logical_date, run_id=run_id,
                                                   run_time=started_at)))
        for name, step in steps:
            leases.check()
            started = time.monotonic()
            with runlog.run_context(stage=name), runlog.stage_step(name):
                summary[name] = step()
            if name == "analysis":
                summary["catalog_resources_written"] = publish_resources(spark, settings)
            register_written(spark, settings)
            timings[name] = round(time.monotonic() - started, 1)
    summary["stage_seconds"] = timings
    summary["tables"] = table_counts(spark, settings, logical_date)
    summary["findings"] = findings(spark, settings, logical_date)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.reports_dir / f"summary-{logical_date.isoformat()}.json",
                      json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    return summary



def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (also for ``spark-submit govlake/pipeline.py run ...``)."""
    parser = argparse.ArgumentParser(prog="python -m govlake.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline (all stages, or one with --stage) for a logical date")
    run.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat, help="logical date YYYY-MM-DD")
    run.add_argument("--stage", default="all", choices=("all",) + STAGES)
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
    runlog.configure()  # log lines on stderr, each with the run id, logical date and stage
    settings = Settings.from_env()
    if args.command == "sql":
        spark = get_spark(settings, app_name="govlake-sql")
        lake.register_tables(spark, settings)
        spark.sql(args.query).show(args.limit, truncate=False)
        return 0
    try:
        if args.stage == "all":
            print_summary(run_all(settings, args.date, wait_s=args.wait,
                                  redeliver=args.redeliver))
        else:
            extra: dict[str, Any] = {"redeliver": True} if args.redeliver and args.stage == "extract" else {}
            result = run_stage(args.stage, args.date, settings, wait_s=args.wait, **extra)
            print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    except LeaseHeld as exc:
        print(f"govlake: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    return 0



if __name__ == "__main__":
    sys.exit(main())
