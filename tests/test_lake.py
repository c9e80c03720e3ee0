"""Delta write primitives of jobs.lake: commits to tables shared by parallel tasks survive conflicts."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from jobs import lake

DAY = dt.date(2025, 6, 30)


def test_retry_on_conflict_runs_the_commit_again_and_gives_up_after_the_attempts(spark):
    from delta.exceptions import ConcurrentAppendException, ProtocolChangedException

    calls = []

    def commit(fail_times, exc_type):
        def run():
            calls.append(1)
            if len(calls) <= fail_times:
                raise exc_type(message="Files were added to the root of the table by a concurrent update.")
            return "committed"
        return run

    assert lake.retry_on_conflict(commit(2, ConcurrentAppendException), "t", attempts=3, first_wait_s=0) == "committed"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ProtocolChangedException):
        lake.retry_on_conflict(commit(5, ProtocolChangedException), "t", attempts=2, first_wait_s=0)
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(ZeroDivisionError):  # not a commit conflict: raised at once
        lake.retry_on_conflict(lambda: (calls.append(1), 1 / 0), "t", attempts=3, first_wait_s=0)
    assert len(calls) == 1


def test_parallel_replace_where_commits_to_one_table_all_land(spark, tmp_path):
    """Four tasks rewrite their own slice of one date partition at the same time (as the parallel validate
    tasks do with ops.validation_results): every slice lands once, whatever the interleaving."""
    path = str(tmp_path / "results")
    schema = "_logical_date date, table string, failed long"
    spark.createDataFrame([(DAY, "seed", 0)], schema).write.format("delta").partitionBy("_logical_date").save(path)
    start = threading.Barrier(4)
    errors = []

    def task(i: int) -> None:
        df = spark.createDataFrame([(DAY, f"t{i}", i), (DAY, f"t{i}", 10 + i)], schema)
        start.wait()
        try:
            lake.retry_on_conflict(lambda: df.write.format("delta").mode("overwrite")
                                   .option("replaceWhere", f"_logical_date = DATE'{DAY}' AND table = 't{i}'")
                                   .partitionBy("_logical_date").save(path), f"t{i}", first_wait_s=0.05)
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = sorted((r.table, r.failed) for r in spark.read.format("delta").load(path).collect())
    assert got == [("seed", 0), ("t0", 0), ("t0", 10), ("t1", 1), ("t1", 11), ("t2", 2), ("t2", 12),
                   ("t3", 3), ("t3", 13)]


def test_register_tables_points_each_name_at_the_lakehouse_registered_last(spark, tmp_path):
    from jobs.config import Settings

    homes = [Settings.from_env({"GOVLAKE_HOME": str(tmp_path / name)}) for name in ("one", "two")]
    for n, settings in enumerate(homes, start=1):
        spark.range(n).write.format("delta").save(settings.table_path("governance", "lake_test"))
    assert "governance.lake_test" in lake.register_tables(spark, homes[0])
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 1
    lake.register_tables(spark, homes[1])
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 2
    lake.register_tables(spark, homes[0])  # data of the other lakehouse untouched by the re-pointing
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 1
    spark.sql("DROP TABLE governance.lake_test")


def test_replace_partition_counted_returns_the_rows_of_its_own_commit(spark, tmp_path):
    path = str(tmp_path / "t")
    schema = "_logical_date date, k string"
    other = dt.date(2025, 6, 29)
    assert lake.replace_partition_counted(spark, spark.createDataFrame([(other, "x")], schema), path,
                                          "_logical_date", other) == 1
    rows = [(DAY, "a"), (DAY, "b"), (DAY, "c")]
    assert lake.replace_partition_counted(spark, spark.createDataFrame(rows, schema), path, "_logical_date", DAY) == 3
    # a rerun replaces the partition: 2 rows written, 2 rows in it (not 3 + 2), the other date untouched
    assert lake.replace_partition_counted(spark, spark.createDataFrame(rows[:2], schema), path,
                                          "_logical_date", DAY) == 2
    assert lake.replace_partition_counted(spark, spark.createDataFrame([], schema), path, "_logical_date", DAY) == 0
    table = spark.read.format("delta").load(path)
    assert sorted((str(r._logical_date), r.k) for r in table.collect()) == [("2025-06-29", "x")]
