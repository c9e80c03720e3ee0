"""GovLake daily DAG: departmental sources -> raw -> quality gate -> unified -> marts -> analysis.

Wiring only: no I/O and no heavy imports at parse time. Each task calls one stage of
``govlake.pipeline`` (imported inside the task) for the run's business date: the Asia/Shanghai date of
the data interval's start (the schedule closes each business day at 00:00 Asia/Shanghai, so the run
for 2025-06-30 starts just after 2025-07-01 00:00).

Backfill from the UI: trigger with the ``backfill`` param checked (or ``{"backfill": true}`` as the run's conf)
and the extract tasks read everything before the window end instead of the window alone. A rerun of a date keeps
the batches already delivered; ``redeliver`` reads the departments again.
"""
from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

# one per schemas/sources/<source>.yaml (checked in tests)
SOURCES = ("hukou", "civil", "health", "hrss", "address", "wangge", "zhengwu")

DEFAULT_ARGS = {
    "owner": "govlake",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=5),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="govlake_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=pendulum.timezone("Asia/Shanghai")),
    start_date=pendulum.datetime(2025, 6, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["govlake", "exchange", "quality", "marts"],
    doc_md=__doc__,
    params={"backfill": Param(False, type="boolean", title="Backfill",
                              description="Extract everything before the window end, not only the run's window "
                                          "(govlake.extract.stage.run_extract backfill=True)."),
            "redeliver": Param(False, type="boolean", title="Redelivery",
                               description="The departments deliver this date again: read every source again "
                                           "instead of keeping the batches already delivered "
                                           "(govlake.extract.stage.run_extract redeliver=True).")},
)
def govlake_daily():
    @task(task_id="extract")
    def extract(source: str, data_interval_start=None, data_interval_end=None, logical_date=None, params=None,
                dag_run=None):
        """Extract one department's objects into raw: the rows of the run's data interval (write-once batches),
        or everything before its end when the run is a backfill (param / conf ``backfill``)."""
        from govlake.orchestration import (
            business_date,
            extract_options,
            interval_of,
            stage,
        )

        return stage("extract", business_date(data_interval_start, data_interval_end, logical_date), dag_run,
                     sources=[source], data_interval=interval_of(data_interval_start, data_interval_end),
                     **extract_options(params, getattr(dag_run, "conf", None)))

    @task(task_id="validate")
    def validate(source: str, data_interval_start=None, data_interval_end=None, logical_date=None, dag_run=None):
        """Quality gate for one department's raw batches: staging, quarantine, results, GX checkpoint results
        (the Data Docs site is built once by the data_docs task)."""
        from govlake.orchestration import business_date, stage, tables_of

        return stage("validate", business_date(data_interval_start, data_interval_end, logical_date), dag_run,
                     tables=tables_of(source), build_site=False)

    @task(trigger_rule="all_done")
    def data_docs(data_interval_start=None, data_interval_end=None, logical_date=None):
        """Great Expectations Data Docs of the run, built once after every validate task (also failed ones)."""
        from govlake.orchestration import business_date
        from govlake.orchestration import data_docs as build_site

        return build_site(business_date(data_interval_start, data_interval_end, logical_date))

    @task
    def unify(data_interval_start=None, data_interval_end=None, logical_date=None, dag_run=None):
        """MERGE the accepted rows into unified.person and unified.event."""
        from govlake.orchestration import business_date, stage

        return stage("unify", business_date(data_interval_start, data_interval_end, logical_date), dag_run)

    @task
    def marts(data_interval_start=None, data_interval_end=None, logical_date=None, dag_run=None):
        """Refresh the population and grid-management marts."""
        from govlake.orchestration import business_date, stage

        return stage("marts", business_date(data_interval_start, data_interval_end, logical_date), dag_run)

    @task
    def analysis(data_interval_start=None, data_interval_end=None, logical_date=None, dag_run=None):
        """Analysis tables, the decision-support report and the Excel workbook (its path in the result); the last
        task: it releases the run's leases."""
        from govlake.orchestration import business_date, run_started_at, stage

        return stage("analysis", business_date(data_interval_start, data_interval_end, logical_date), dag_run,
                     final=True, run_time=run_started_at(dag_run))

    gate = []
    for source in SOURCES:
        raw = extract.override(task_id=f"extract_{source}")(source)
        checked = validate.override(task_id=f"validate_{source}")(source)
        raw >> checked
        gate.append(checked)
    gate >> data_docs()  # off the critical path: unify does not wait for the site
    gate >> unify() >> marts() >> analysis()


govlake_daily()
