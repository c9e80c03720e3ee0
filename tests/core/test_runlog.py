"""The run log (govlake.core.runlog): every record names the run, the date and the stage; every table write of
govlake.core.lake and every raw batch write logs one line with its table, rows and seconds."""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import threading

import pytest

from govlake.core import lake, runlog

DATE = dt.date(2025, 6, 30)


@pytest.fixture(autouse=True)
def _installed():
    runlog.install()


def _writes(caplog) -> list[tuple]:
    """(operation, table, rows, message without its seconds) of the write lines captured."""
    out = []
    for r in caplog.records:
        if r.name == "govlake.runlog" and getattr(r, "operation", None) not in (None, "stage"):
            assert isinstance(r.seconds, float) and r.seconds >= 0
            message = r.getMessage()
            out.append((r.operation, r.table, r.rows, message.replace(f"seconds={r.seconds:.3f}", "seconds=S"),
                        (r.run_id, r.logical_date, r.stage)))
    return out


def test_records_carry_the_run_fields_of_their_context(caplog):
    log = logging.getLogger("govlake.test")
    seen = {}
    with caplog.at_level(logging.INFO, logger="govlake"):
        log.info("outside")
        with runlog.run_context("run-1", DATE):
            log.info("run")
            with runlog.run_context(stage="validate"):
                log.info("stage")

                def worker():
                    log.info("thread")
                    seen["thread"] = runlog.current()

                t = threading.Thread(target=contextvars.copy_context().run, args=(worker,))
                t.start()
                t.join()
            log.info("run again")
    fields = [(r.getMessage(), r.run_id, r.logical_date, r.stage) for r in caplog.records]
    assert fields == [("outside", "-", "-", "-"), ("run", "run-1", "2025-06-30", "-"),
                      ("stage", "run-1", "2025-06-30", "validate"), ("thread", "run-1", "2025-06-30", "validate"),
                      ("run again", "run-1", "2025-06-30", "-")]
    assert seen["thread"] == {"run_id": "run-1", "logical_date": "2025-06-30", "stage": "validate"}


def test_the_formatter_prefixes_every_line_and_survives_a_foreign_record():
    formatter = runlog.RunFormatter(fmt=runlog.FORMAT.replace("%(asctime)s ", ""))
    with runlog.run_context("run-2", DATE, "marts"):
        ours = logging.getLogger("govlake.core.lake").makeRecord("govlake.core.lake", logging.INFO, __file__, 1,
                                                                 "written %s", ("x",), None)
    # a record a third-party handler builds itself, bypassing the record factory: no run fields at all
    foreign = logging.LogRecord("airflow.task", logging.WARNING, __file__, 2, "from elsewhere", None, None)
    assert not hasattr(foreign, "run_id")
    assert formatter.format(ours) == "INFO [run=run-2 date=2025-06-30 stage=marts] govlake.core.lake: written x"
    assert formatter.format(foreign) == "WARNING [run=- date=- stage=-] airflow.task: from elsewhere"
    assert runlog.ContextFilter().filter(foreign) is True and (foreign.run_id, foreign.stage) == ("-", "-")


def test_a_stage_step_logs_its_start_and_end_with_seconds(caplog):
    with caplog.at_level(logging.INFO, logger="govlake.runlog"), runlog.run_context("run-3", DATE, "unify"):
        with runlog.stage_step("unify"):
            pass
        with pytest.raises(KeyError), runlog.stage_step("unify"):
            raise KeyError("x")
    lines = [r.getMessage().split(" seconds=")[0] + (" error=" + r.getMessage().split(" error=")[1]
                                                     if " error=" in r.getMessage() else "")
             for r in caplog.records]
    assert lines == ["stage unify started", "stage unify finished", "stage unify started",
                     "stage unify failed error=KeyError"]
    assert {(r.run_id, r.logical_date, r.stage) for r in caplog.records} == {("run-3", "2025-06-30", "unify")}


def test_table_name_is_layer_dot_table():
    assert runlog.table_name("/x/lakehouse/unified/person") == "unified.person"
    assert runlog.table_name("file:///x/lakehouse/raw/hukou_persons/") == "raw.hukou_persons"


def test_each_lake_write_logs_one_line_with_its_rows(spark, tmp_path, caplog):
    ctx = ("run-4", "2025-06-30", "marts")
    rows = [("a", "1", DATE), ("b", "2", DATE), ("c", "3", DATE)]
    df = spark.createDataFrame(rows, "k string, v string, _logical_date date")
    part = str(tmp_path / "staging" / "t")
    whole = str(tmp_path / "marts" / "m")
    keyed = str(tmp_path / "unified" / "u")
    with caplog.at_level(logging.INFO, logger="govlake.runlog"), runlog.run_context(*ctx):
        assert lake.replace_partition_counted(spark, df, part, "_logical_date", DATE) == 3
        lake.replace_partition(df.limit(2), part, "_logical_date", DATE)
        assert lake.replace_partition_if_changed(spark, df.limit(2), part, "_logical_date", DATE) is False
        assert lake.overwrite_if_changed(spark, df, whole, ["k"]) is True
        assert lake.overwrite_if_changed(spark, df, whole, ["k"]) is False
        hashed = df.selectExpr("k", "v", "sha2(v, 256) AS _content_hash")
        assert lake.merge_by_key(spark, hashed, keyed, ["k"]) == {"inserted": 3, "updated": 0}
        changed = spark.createDataFrame([("a", "9"), ("d", "4"), ("b", "2")], "k string, v string") \
            .selectExpr("k", "v", "sha2(v, 256) AS _content_hash")
        assert lake.merge_by_key(spark, changed, keyed, ["k"]) == {"inserted": 1, "updated": 1}
        assert lake.merge_by_key(spark, changed, keyed, ["k"]) == {"inserted": 0, "updated": 0}
    assert _writes(caplog) == [
        ("replace_partition", "staging.t", 3, "replace_partition staging.t rows=3 seconds=S", ctx),
        ("replace_partition", "staging.t", 2, "replace_partition staging.t rows=2 seconds=S", ctx),
        ("replace_partition", "staging.t", 0, "replace_partition staging.t rows=0 seconds=S skipped=unchanged", ctx),
        ("overwrite", "marts.m", 3, "overwrite marts.m rows=3 seconds=S", ctx),
        ("overwrite", "marts.m", 0, "overwrite marts.m rows=0 seconds=S skipped=unchanged", ctx),
        ("merge_by_key", "unified.u", 3, "merge_by_key unified.u rows=3 seconds=S inserted=3 updated=0", ctx),
        ("merge_by_key", "unified.u", 2, "merge_by_key unified.u rows=2 seconds=S inserted=1 updated=1", ctx),
        ("merge_by_key", "unified.u", 0, "merge_by_key unified.u rows=0 seconds=S inserted=0 updated=0", ctx),
    ]


def test_a_raw_batch_write_logs_one_line_with_its_rows(spark, tmp_path, caplog):
    from govlake.extract import raw

    delivered = spark.createDataFrame([("p1", 1), ("p2", 2), ("p3", 3), ("p4", 4)], "id string, _row_number long")
    batch = raw.add_lineage(delivered, "hukou", "persons", DATE, dt.datetime(2025, 7, 1, tzinfo=dt.UTC))
    path = str(tmp_path / "raw" / "hukou_persons")
    ctx = ("run-5", "2025-06-30", "extract")
    with caplog.at_level(logging.INFO, logger="govlake.runlog"), runlog.run_context(*ctx):
        rows, _, written, before = raw._write_batch(spark, batch, path, DATE)
    assert (rows, written, before) == (4, 4, None)
    assert _writes(caplog) == [("raw_batch", "raw.hukou_persons", 4, "raw_batch raw.hukou_persons rows=4 seconds=S",
                                ctx)]
