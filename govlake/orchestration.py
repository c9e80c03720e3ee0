"""Glue between the Airflow DAG and the jobs: business dates and one-stage runs.

Kept out of ``dags/`` so the DAG file only wires tasks; imported inside tasks, never at parse time.
"""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from govlake.core import config
from govlake.core.config import TIME_ZONE


def business_date(data_interval_start=None, data_interval_end=None, logical_date=None) -> dt.date:
    """The business day a run processes: the Asia/Shanghai date of its data interval's start.

    The daily schedule's interval for business day D is [D 00:00, D+1 00:00) Asia/Shanghai and the
    run starts when it closes. A manual run triggered at instant T processes the last complete
    interval before T (Airflow's ``infer_manual_data_interval``): trigger at D+1 00:00 for day D.
    Falls back to the logical date when the run has no data interval (manual runs of a DAG with
    a non-interval timetable).

    Raises:
        ValueError: none of the three is given.
    """
    instant = data_interval_start or logical_date
    if instant is None:
        raise ValueError("a run needs a data interval or a logical date")
    local = instant.astimezone(ZoneInfo(TIME_ZONE))
    return dt.date(local.year, local.month, local.day)  # a plain date (Airflow hands pendulum objects)


def interval_of(data_interval_start=None, data_interval_end=None) -> tuple[dt.datetime, dt.datetime] | None:
    """The run's data interval as plain timezone-aware datetimes, or None when the run has none
    (extraction then reads the business day of the logical date)."""
    if data_interval_start is None or data_interval_end is None:
        return None
    return (dt.datetime.fromtimestamp(data_interval_start.timestamp(), dt.UTC),
            dt.datetime.fromtimestamp(data_interval_end.timestamp(), dt.UTC))


def extract_options(params=None, conf=None) -> dict:
    """Keyword arguments of :func:`govlake.extract.stage.run_extract` chosen when the run was triggered.

    Args:
        params: the run's params (the DAG's ``backfill`` and ``redeliver`` Params, default False, as the task sees
            them: Airflow already lets ``dag_run.conf`` override params when ``[core] dag_run_conf_overrides_params``
            is on).
        conf: the run's ``dag_run.conf``; its values win over ``params`` (read here too, so the flags work whatever
            that option says).

    Returns:
        ``{"backfill": bool, "redeliver": bool}``: backfill reads everything before the window end; redeliver reads
        a date already delivered again (see :func:`govlake.extract.raw.extract_batch`).

    Raises:
        ValueError: a flag is neither a boolean nor the text ``true`` / ``false`` (any case).
    """
    out = {}
    for flag in ("backfill", "redeliver"):
        value = False
        for given in (params, conf):
            if given and given.get(flag) is not None:
                value = given.get(flag)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be true or false, not {value!r}")
        out[flag] = value
    return out


def tables_of(source: str) -> list[str]:
    """Raw table names (``<source>_<object>``) of one registered source."""
    from govlake.extract.stage import raw_tables

    return raw_tables([source])


#: How long a task waits for another run's lease (an operator's CLI run of the same date, another DAG run in the
#: cumulative stages) before failing, unless ``GOVLAKE_LEASE_WAIT_S`` says otherwise: one hour, seconds.
TASK_LEASE_WAIT_S = 3600.0


def run_holder(dag_run=None):
    """The lease holder of a task (:class:`govlake.core.lease.Holder`): every task of one DAG run shares the run id
    ``airflow:<dag_id>:<run_id>``; None outside a DAG run (the task then runs as a one-process run)."""
    import os
    import socket

    from govlake.core.lease import Holder

    if dag_run is None:
        return None
    return Holder(f"airflow:{dag_run.dag_id}:{dag_run.run_id}", socket.gethostname(), os.getpid(),
                  single_process=False)


def run_started_at(dag_run=None) -> dt.datetime | None:
    """When the DAG run started (its ``start_date``, else ``run_after``) as a timezone-aware datetime: the same for
    every task and retry of the run (the workbook's generated-at); None outside a DAG run."""
    if dag_run is None:
        return None
    when = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
    return None if when is None else dt.datetime.fromtimestamp(when.timestamp(), dt.UTC)


def stage(name: str, day: dt.date, dag_run=None, final: bool = False, **kwargs):
    """Run one pipeline stage for ``day`` in this process under the DAG run's leases and return a JSON-safe result
    (XCom). The leases stay with the run between its tasks; ``final`` (the last task) releases them.

    Raises:
        govlake.core.lease.LeaseHeld: another run held the date (or the cumulative layers) for longer than
            ``GOVLAKE_LEASE_WAIT_S`` (default :data:`TASK_LEASE_WAIT_S`); Airflow retries the task.
    """

    from govlake.pipeline import run_stage

    wait, _ = config.lease_seconds(wait_default=str(TASK_LEASE_WAIT_S))
    result = run_stage(name, day, holder=run_holder(dag_run), wait_s=wait, release=final, **kwargs)
    return json.loads(json.dumps(result, default=str))


def data_docs(day: dt.date) -> list[dict]:
    """Build the Great Expectations Data Docs site once for ``day``'s checkpoints (after every validate task;
    :func:`govlake.quality.stage.build_data_docs`). Returns ``[{"data_docs": <index.html path>}]`` (XCom, the shape the
    Data Docs link of ``plugins/govlake_data_docs.py`` reads); ``[]`` when ``GOVLAKE_DATA_DOCS=0`` (the validate
    tasks then ran no checkpoint, so there is no site to build)."""

    from govlake.core.config import Settings
    from govlake.quality.stage import build_data_docs

    if not config.data_docs():
        return []
    return [{"data_docs": build_data_docs(Settings.from_env(), day)}]
