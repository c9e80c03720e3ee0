"""Run leases (govlake.core.lease): one run per logical date, shared by the tasks of one DAG run, taken over when
stale."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest

from govlake.core.config import Settings
from govlake.core.lease import (
    CUMULATIVE,
    Holder,
    Lease,
    LeaseHeld,
    LeaseLost,
    describe,
    is_stale,
    lease_path,
)


@pytest.fixture()
def home(tmp_path) -> Settings:
    return Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})


def _holder(run_id: str, pid: int | None = None, single: bool = True) -> Holder:
    return Holder(run_id, "testhost" if pid is None else __import__("socket").gethostname(),
                  os.getpid() if pid is None else pid, single)


def _rows(spark, settings):
    return sorted((r.scope, r.run_id) for r in spark.read.format("delta").load(lease_path(settings)).collect())


def test_a_second_run_of_the_date_is_refused_naming_the_holder(spark, home):
    a = Lease(spark, home, "date=2025-06-30", _holder("cli:a")).acquire()
    try:
        with pytest.raises(LeaseHeld, match=r"date=2025-06-30 .* held by run cli:a \(host testhost, pid \d+"):
            Lease(spark, home, "date=2025-06-30", _holder("cli:b")).acquire()
        # another date and the cumulative scope are free
        with Lease(spark, home, "date=2025-07-01", _holder("cli:b")), Lease(spark, home, CUMULATIVE, _holder("cli:b")):
            assert _rows(spark, home) == [("cumulative", "cli:b"), ("date=2025-06-30", "cli:a"),
                                          ("date=2025-07-01", "cli:b")]
    finally:
        a.release()
    assert _rows(spark, home) == []


def test_a_waiting_run_starts_when_the_holder_releases(spark, home):
    a = Lease(spark, home, "date=2025-06-30", _holder("cli:a")).acquire()
    threading.Timer(3.0, a.release).start()
    started = time.monotonic()
    with Lease(spark, home, "date=2025-06-30", _holder("cli:b"), wait_s=60, poll_s=0.5):
        waited = time.monotonic() - started
        assert _rows(spark, home) == [("date=2025-06-30", "cli:b")]
    assert 2.5 < waited < 60


def test_tasks_of_one_dag_run_share_the_lease_and_the_last_releases_it(spark, home):
    run = "airflow:govlake_daily:manual__2025-07-01"
    first = Lease(spark, home, "date=2025-06-30", Holder(run, "h1", 101, False), release_on_exit=False)
    with first, Lease(spark, home, "date=2025-06-30", Holder(run, "h2", 202, False), release_on_exit=False):
        pass
    assert _rows(spark, home) == [("date=2025-06-30", run)]  # kept between tasks
    with pytest.raises(LeaseHeld, match=run):
        Lease(spark, home, "date=2025-06-30", _holder("cli:operator")).acquire()
    with Lease(spark, home, "date=2025-06-30", Holder(run, "h3", 303, False)):
        pass
    assert _rows(spark, home) == []


def test_the_lease_of_a_killed_one_process_run_is_taken_over_at_once(spark, home):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    killed = Lease(spark, home, "date=2025-06-30", _holder("cli:killed", pid=pid)).acquire()
    killed.stop_renewing()  # as if the process were gone: its row stays
    with Lease(spark, home, "date=2025-06-30", _holder("cli:rerun"), wait_s=0):
        assert _rows(spark, home) == [("date=2025-06-30", "cli:rerun")]


def test_staleness_rules():
    now = dt.datetime(2025, 7, 1, 12, 0, 0)
    row = {"run_id": "airflow:d:r", "host": "elsewhere", "pid": 1, "single_process": False,
           "acquired_at": now, "renewed_at": now, "expires_at": now + dt.timedelta(seconds=1)}
    assert not is_stale(row, now)
    assert is_stale({**row, "expires_at": now}, now)
    # a one-process run on another host: only expiry frees it (its process cannot be checked from here)
    assert not is_stale({**row, "single_process": True, "pid": 2 ** 22 + 7}, now)
    assert is_stale({**row, "single_process": True, "pid": 2 ** 22 + 7}, now, host="elsewhere")
    assert not is_stale({**row, "single_process": True, "pid": os.getpid()}, now, host="elsewhere")
    assert describe(row) == ("run airflow:d:r (host elsewhere, pid 1, since 2025-07-01 12:00:00, renewed 12:00:00, "
                             "expires 2025-07-01 12:00:01)")


def test_racing_runs_get_the_lease_exactly_once(spark, home) -> None:
    """Two runs acquire at the same moment, five rounds: one wins each round, the other is refused."""
    for round_ in range(5):
        scope = f"date=2025-07-0{round_ + 1}"
        outcomes: dict[str, str] = {}
        barrier = threading.Barrier(2)

        def contend(name: str, barrier: threading.Barrier = barrier, scope: str = scope,
                    outcomes: dict[str, str] = outcomes) -> None:
            barrier.wait()
            try:
                Lease(spark, home, scope, _holder(f"cli:{name}"), poll_s=0.1).acquire().stop_renewing()
                outcomes[name] = "held"
            except LeaseHeld:
                outcomes[name] = "refused"

        threads = [threading.Thread(target=contend, args=(n,)) for n in ("x", "y")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["held", "refused"], outcomes
        winner = next(n for n, o in outcomes.items() if o == "held")
        assert [r for r in _rows(spark, home) if r[0] == scope] == [(scope, f"cli:{winner}")]


def test_a_run_whose_lease_was_taken_over_stops(spark, home):
    from delta.tables import DeltaTable

    lease = Lease(spark, home, "date=2025-06-30", _holder("cli:slow"), ttl_s=30).acquire()
    lease.stop_renewing()
    DeltaTable.forPath(spark, lease_path(home)).delete("scope = 'date=2025-06-30'")  # expired and taken over
    Lease(spark, home, "date=2025-06-30", _holder("cli:other")).acquire().stop_renewing()
    lease._renew()
    with pytest.raises(LeaseLost, match="now held by run cli:other"):
        lease.check()
