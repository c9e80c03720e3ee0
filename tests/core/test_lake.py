"""Delta write primitives of govlake.core.lake: commits to tables shared by parallel tasks survive conflicts."""
from __future__ import annotations

import datetime as dt
import shutil
import threading

import pytest

from govlake.core import lake

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
    from govlake.core.config import Settings

    homes = [Settings.from_env({"GOVLAKE_HOME": str(tmp_path / name)}) for name in ("one", "two")]
    for n, settings in enumerate(homes, start=1):
        spark.range(n).write.format("delta").save(settings.table_path("governance", "lake_test"))
    assert "governance.lake_test" in lake.register_tables(spark, homes[0])
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 1
    lake.register_tables(spark, homes[1])
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 2
    lake.register_tables(spark, homes[0])  # data of the other lakehouse untouched by the re-pointing
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 1
    shutil.rmtree(homes[0].home)  # a name left pointing at a deleted lakehouse is re-pointed too
    assert "governance.lake_test" in lake.register_tables(spark, homes[1])
    assert spark.sql("SELECT count(*) FROM governance.lake_test").collect()[0][0] == 2
    spark.sql("DROP TABLE governance.lake_test")


def test_replace_partition_adds_a_newly_projected_column(spark, tmp_path):
    """A table written before a source field was projected takes the new column; older partitions read NULL."""
    path = str(tmp_path / "staging_apps")
    before = dt.date(2025, 6, 29)
    lake.replace_partition(spark.createDataFrame([("A1", before)], "app_no string, _logical_date date"),
                           path, "_logical_date", before)
    newer = spark.createDataFrame([("A2", "13812345678", DAY)],
                                  "app_no string, applicant_phone string, _logical_date date")
    lake.replace_partition(newer, path, "_logical_date", DAY)
    lake.replace_partition(newer, path, "_logical_date", DAY)  # idempotent
    got = sorted(tuple(r) for r in spark.read.format("delta").load(path).select("app_no", "applicant_phone").collect())
    assert got == [("A1", None), ("A2", "13812345678")]


def test_merged_state_is_what_merge_by_key_writes(spark, tmp_path):
    """merged_state (no write) equals the table after merge_by_key: an unchanged row (its insert-only column and
    the column the hash leaves out kept), a changed row (updated, insert-only kept), a NULL key, a new row, a target
    row absent from the source (kept), and a new column the old table lacks (NULL in rows not updated)."""
    path = str(tmp_path / "t")
    old = spark.createDataFrame([("a", "1", DAY, "x", "h1"), ("b", "2", DAY, "x", "h2"), (None, "3", DAY, "x", "h3"),
                                 ("d", "4", DAY, "x", "h4")],
                                "k string, v string, first_seen date, note string, _content_hash string")
    old.write.format("delta").save(path)
    later = dt.date(2025, 7, 1)
    source = spark.createDataFrame([("a", "1", later, "y", "h1", "n1"), ("b", "9", later, "y", "h9", "n2"),
                                    (None, "7", later, "y", "h7", "n3"), ("e", "5", later, "y", "h5", "n4")],
                                   "k string, v string, first_seen date, note string, _content_hash string, "
                                   "extra string")
    target = spark.read.format("delta").option("versionAsOf", 0).load(path)  # pinned, as run_unify reads it
    state = lake.merged_state(target, source, ["k"], insert_only_columns=("first_seen",))
    expected = [("a", "1", DAY, "x", "h1", None), ("b", "9", DAY, "y", "h9", "n2"), (None, "7", DAY, "y", "h7", "n3"),
                ("d", "4", DAY, "x", "h4", None), ("e", "5", later, "y", "h5", "n4")]
    assert sorted(map(tuple, state.collect()), key=str) == sorted(expected, key=str)
    assert state.columns == ["k", "v", "first_seen", "note", "_content_hash", "extra"]
    lake.add_missing_columns(spark, path, [("extra", "string")])
    assert lake.merge_by_key(spark, source, path, ["k"], insert_only_columns=("first_seen",)) == {
        "inserted": 1, "updated": 2}
    merged = spark.read.format("delta").load(path)
    assert lake.same_content(merged, state)
    assert lake.merged_state(None, source, ["k"]) is source
    assert lake.same_content(lake.merged_state(merged, source.limit(0), ["k"]), merged)
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
    # an empty frame into a date the table has never held: Delta records no commit at all (the day N+1 quarantine
    # of a clean table)
    later = dt.date(2025, 7, 1)
    assert lake.replace_partition_counted(spark, spark.createDataFrame([], schema), path, "_logical_date", later) == 0
    table = spark.read.format("delta").load(path)
    assert sorted((str(r._logical_date), r.k) for r in table.collect()) == [("2025-06-29", "x")]
    # a newly projected column reaches the older table (as with replace_partition)
    wider = spark.createDataFrame([(DAY, "d", "13812345678")], "_logical_date date, k string, phone string")
    assert lake.replace_partition_counted(spark, wider, path, "_logical_date", DAY) == 1
    assert sorted((r.k, r.phone) for r in spark.read.format("delta").load(path).collect()) == [("d", "13812345678"),
                                                                                               ("x", None)]
