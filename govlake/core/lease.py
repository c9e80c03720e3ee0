"""Run leases: one run per (lakehouse, logical date) at a time, and one run at a time in the cumulative layers.

Two runs of the same logical date (an operator's CLI run while the DAG runs, a manual trigger beside a scheduled
run, a backfill) must never write the same tables at once: Delta's optimistic concurrency would fail one of them
half-way, and two runs of different dates must not MERGE the unified layer at once either. Airflow's
``max_active_runs`` only orders the runs of one DAG; the CLI and ``spark-submit`` runs are outside it. So every
entry point (:func:`govlake.pipeline.run_all`, :func:`govlake.pipeline.run_stage`) holds a lease:

* scope ``date=<YYYY-MM-DD>`` for the whole run of a logical date;
* scope ``cumulative`` while it runs ``unify``, ``marts`` or ``analysis`` (tables of every date: MERGEd state,
  whole-table marts), whatever its date.

A lease is a row of the Delta table ``<lakehouse>/_system/run_leases`` (outside the analysts' layers, partitioned by
scope), changed only by MERGEs that compare the row's ``token`` (compare-and-swap); Delta's optimistic concurrency
control fails the second of two racing MERGEs (``ConcurrentAppendException`` / ``ConcurrentDeleteReadException``),
which then reads the winner's row. So the lease is exactly as strong as Delta's own commit protocol on the lakehouse's
storage: local disk and HDFS as they are, object storage with the LogStore Delta requires for several writers.

Holders: a run is named by its ``run_id``: ``cli:<host>:<pid>:<random>`` for a command-line run (one process), or
``airflow:<dag_id>:<run_id>`` for a DAG run, whose tasks (several processes, some in parallel) share the lease by
that name. The holder's processes renew ``expires_at`` from a background thread (Spark FAIR pool
``govlake_lease``, so a long job cannot starve the renewal). A lease is stale, and taken over, when it expired,
or when its holder is a one-process run on this host whose process is gone (a killed run is rerun at once).

Environment: ``GOVLAKE_RUN_ID`` names the run (default: a new CLI id); ``GOVLAKE_LEASE_WAIT_S`` how long a run
waits for a held lease before refusing (default 0: refuse at once); ``GOVLAKE_LEASE_TTL_S`` the lease's time to
live without renewal (default 600 s; renewed every TTL/6).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard

from govlake.core import config
from govlake.core.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG = logging.getLogger("govlake.core.lease")
CUMULATIVE = "cumulative"
#: Spark FAIR scheduler pool of the lease's own jobs (``spark.scheduler.mode`` is FAIR, see govlake.core.spark).
POOL = "govlake_lease"


class LeaseHeld(RuntimeError):
    """Another run holds the lease (the message names it, its host and process, and when it expires)."""


class LeaseLost(RuntimeError):
    """This run's lease was taken over (it expired unrenewed): the run must stop before writing more."""


@dataclass(frozen=True)
class Holder:
    """Who runs: ``run_id`` (see the module docstring), the process renewing the lease, and whether the run is
    that one process (then a dead process frees the lease at once)."""

    run_id: str
    host: str
    pid: int
    single_process: bool

    @classmethod
    def current(cls, env: Mapping[str, str] | None = None) -> Holder:
        """The holder of this process: ``GOVLAKE_RUN_ID`` when set (several processes of one run), else a new
        one-process CLI run id."""
        host, pid = socket.gethostname(), os.getpid()
        run_id = config.run_id(env)
        if run_id:
            return cls(run_id, host, pid, single_process=False)
        return cls(f"cli:{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid, single_process=True)


def lease_path(settings: Settings) -> str:
    """Storage path of the lease table."""
    return f"{settings.lakehouse.rstrip('/')}/_system/run_leases"


def _schema():
    from pyspark.sql.types import (
        BooleanType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    return StructType([
        StructField("scope", StringType(), False), StructField("run_id", StringType(), False),
        StructField("host", StringType()), StructField("pid", LongType()),
        StructField("single_process", BooleanType()), StructField("acquired_at", TimestampType()),
        StructField("renewed_at", TimestampType()), StructField("expires_at", TimestampType()),
        StructField("token", StringType(), False),
    ])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(row: dict, now: dt.datetime, host: str | None = None) -> bool:
    """True when the lease ``row`` (a dict of the table's columns) no longer protects a run: it expired
    (``expires_at`` <= ``now``, both naive wall times in the session time zone), or its holder is a one-process
    run on ``host`` (default this host) whose process is gone."""
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return True
    same_host = row["host"] == (host or socket.gethostname())
    return bool(row["single_process"]) and same_host and not _pid_alive(int(row["pid"]))


def describe(row: dict) -> str:
    """One line naming a lease's holder for an error message."""
    return (f"run {row['run_id']} (host {row['host']}, pid {row['pid']}, since {row['acquired_at']:%Y-%m-%d %H:%M:%S}, "
            f"renewed {row['renewed_at']:%H:%M:%S}, expires {row['expires_at']:%Y-%m-%d %H:%M:%S})")


def _conflict(exc: Exception) -> bool:
    """True for Delta's optimistic-concurrency failures (another writer committed first: the classes of
    :data:`delta.exceptions.__all__`) and for losing the race to create the table."""
    import delta.exceptions

    if isinstance(exc, tuple(getattr(delta.exceptions, n) for n in delta.exceptions.__all__)):
        return True
    return "already exists" in str(exc) or "DELTA_PATH_EXISTS" in str(exc)


class Lease:
    """A lease on one scope, held by one holder (see the module docstring); a context manager.

    Args:
        spark: the run's SparkSession.
        settings: the run's settings (the lakehouse holds the lease table).
        scope: ``date=<YYYY-MM-DD>`` or :data:`CUMULATIVE`.
        holder: who takes it (:meth:`Holder.current`).
        wait_s: seconds to wait for a held lease before :class:`LeaseHeld` (0: refuse at once).
        ttl_s: time to live without renewal, seconds; renewed every ``ttl_s / 6`` while held.
        release_on_exit: the context manager releases the lease on exit (False: keep it for the next process of
            the same run, e.g. the next Airflow task; it then expires ``ttl_s`` after the last renewal).
    """

    def __init__(self, spark: SparkSession, settings: Settings, scope: str, holder: Holder, wait_s: float = 0.0,
                 ttl_s: float = 600.0, release_on_exit: bool = True, poll_s: float = 2.0):
        self.spark, self.path, self.scope, self.holder = spark, lease_path(settings), scope, holder
        self.wait_s, self.ttl_s, self.poll_s, self.release_on_exit = wait_s, ttl_s, poll_s, release_on_exit
        self.held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lost: str | None = None

    # --- the table ---------------------------------------------------------------------------------------------

    def _pooled(self):
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", POOL)

    def _read(self) -> dict | None:
        from govlake.core.lake import exists

        if not exists(self.spark, self.path):
            return None
        rows = (self.spark.read.format("delta").load(self.path).where(f"scope = '{self.scope}'")
                .collect())
        return rows[0].asDict() if rows else None

    def _now(self) -> dt.datetime:
        return dt.datetime.now().replace(microsecond=0)  # naive wall time in TZ (govlake.core.spark sets it)

    def _row(self, token: str, acquired_at: dt.datetime):
        now = self._now()
        h = self.holder
        return self.spark.createDataFrame(
            [(self.scope, h.run_id, h.host, h.pid, h.single_process, acquired_at, now,
              now + dt.timedelta(seconds=self.ttl_s), token)], _schema())

    def _swap(self, expected: str | None, acquired_at: dt.datetime) -> dict | None:
        """Compare-and-swap: write this holder's row (a new token) when the scope's row still has the token
        ``expected`` (None: when the scope has no row). Returns the scope's row afterwards (None when it has
        none): this run holds the lease when its ``run_id`` is in it, whoever won a race."""
        from delta.tables import DeltaTable

        from govlake.core.lake import exists

        source = self._row(uuid.uuid4().hex, acquired_at)
        try:
            if not exists(self.spark, self.path):
                if expected is None:
                    source.write.format("delta").mode("errorifexists").partitionBy("scope").save(self.path)
            else:
                cond = "t.token = s.expected" if expected is not None else "FALSE"
                literal = "CAST(NULL AS STRING)" if expected is None else f"'{expected}'"
                (DeltaTable.forPath(self.spark, self.path).alias("t")
                 .merge(source.selectExpr("*", f"{literal} AS expected").alias("s"),
                        f"t.scope = '{self.scope}' AND t.scope = s.scope")  # one partition: scopes never conflict
                 .whenMatchedUpdate(condition=cond, set={c: f"s.{c}" for c in source.columns})
                 .whenNotMatchedInsert(values={c: f"s.{c}" for c in source.columns})
                 .execute())
        except Exception as exc:  # noqa: BLE001 - only Delta's race losses are expected here
            if not _conflict(exc):
                raise
        return self._read()

    def _ours(self, row: dict | None) -> TypeGuard[dict]:
        return row is not None and row["run_id"] == self.holder.run_id

    # --- acquire, renew, release ----------------------------------------------------------------------------------

    def acquire(self) -> Lease:
        """Take the lease, waiting up to ``wait_s`` for another holder; start renewing it.

        A lease held by the same ``run_id`` (another task of the same DAG run) is shared and renewed; a stale one
        (:func:`is_stale`) is taken over, with a warning naming the holder it replaces.

        Raises:
            LeaseHeld: still held by another run after ``wait_s`` seconds (the message names it).
        """
        self._pooled()
        deadline = time.monotonic() + self.wait_s
        while True:
            row = self._read()
            now = self._now()
            free = row is None or is_stale(row, now)
            if self._ours(row) or free:
                if row is not None and not self._ours(row):
                    LOG.warning("lease %s: taking over the stale lease of %s", self.scope, describe(row))
                keep_since = row["acquired_at"] if self._ours(row) else now
                if self._ours(self._swap(row["token"] if row else None, keep_since)):
                    break
                continue  # lost a race: read the winner's row
            assert row is not None  # not free: another run's row
            if time.monotonic() >= deadline:
                raise LeaseHeld(f"scope {self.scope} of lakehouse {self.path.rsplit('/_system', 1)[0]} is held by "
                                f"{describe(row)}; this run ({self.holder.run_id}) did not start. Rerun when it has "
                                "finished, or let it wait (GOVLAKE_LEASE_WAIT_S, --wait SECONDS).")
            LOG.info("lease %s held by %s: waiting", self.scope, describe(row))
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        self.held = True
        self._start_renewer()
        return self

    def _renew(self) -> None:
        row = self._read()
        if self._ours(row):
            row = self._swap(row["token"], row["acquired_at"])  # a sibling's renewal winning the race is as good
        if not self._ours(row):
            self._lost = (f"lease {self.scope} of run {self.holder.run_id} was lost"
                          + (f": now held by {describe(row)}" if row else ": its row is gone"))

    def _start_renewer(self) -> None:
        def loop():
            self._pooled()
            while not self._stop.wait(self.ttl_s / 6):
                try:
                    self._renew()
                except Exception as exc:  # noqa: BLE001 - a failed renewal is retried; expiry is the guard
                    LOG.warning("lease %s: renewal failed: %s", self.scope, exc)
                if self._lost:
                    LOG.error(self._lost)
                    return

        self._stop.clear()
        self._renewer = threading.Thread(target=loop, name=f"govlake-lease-{self.scope}", daemon=True)
        self._renewer.start()

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the lease was lost since it was acquired (call before writing)."""
        if self._lost:
            raise LeaseLost(self._lost)

    def stop_renewing(self) -> None:
        """Stop the renewal thread and keep the row (it expires ``ttl_s`` after the last renewal)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=120)
            self._renewer = None

    def release(self) -> None:
        """Stop renewing and delete the scope's row if this run still holds it."""
        from delta.tables import DeltaTable

        self.stop_renewing()
        if not self.held:
            return
        self._pooled()
        for attempt in range(6):
            try:
                DeltaTable.forPath(self.spark, self.path).delete(
                    f"scope = '{self.scope}' AND run_id = '{self.holder.run_id}'")
                break
            except Exception as exc:  # noqa: BLE001
                if not _conflict(exc) or attempt == 5:
                    raise
        self.held = False

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        if self.release_on_exit:
            self.release()
        else:
            self.stop_renewing()


def settings_from_env(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """``(wait_s, ttl_s)`` from ``GOVLAKE_LEASE_WAIT_S`` (default 0) and ``GOVLAKE_LEASE_TTL_S`` (default 600).

    Raises:
        ValueError: a value is not a non-negative number (TTL: at least 30 s).
    """
    return config.lease_seconds(env)




#: Stages that write tables of every date (MERGEd unified state, whole-table marts): they also hold the
#: lakehouse-wide lease :data:`govlake.core.lease.CUMULATIVE`.
#: Stages that write the cumulative layers and so also hold the :data:`CUMULATIVE` lease.
CUMULATIVE_STAGES = ("unify", "marts", "analysis")


def run_leases(spark: SparkSession, settings: Settings, logical_date: dt.date, cumulative: bool, holder=None,
               wait_s: float | None = None, release: bool = True):
    """The leases a run of ``logical_date`` holds (:mod:`govlake.core.lease`): ``date=<date>``, and :data:`CUMULATIVE`
    when ``cumulative``; a context manager (an ``ExitStack``) that takes them in that order (one order for every
    run, so two runs never wait on each other crosswise) and, on exit, releases them (``release``) or only stops
    renewing them (the next task of the same Airflow run takes them over). The entered stack has ``check()``.

    Raises:
        govlake.core.lease.LeaseHeld: another run holds one of them after ``wait_s`` (default ``GOVLAKE_LEASE_WAIT_S``).
    """
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
