"""Raw layer: lineage columns, write-once batches, reconciliation and the exchange ledger."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from govlake.core import lake
from govlake.core.config import Settings
from govlake.extract.raw import (
    ReconciliationError,
    _guarded,
    _undo_write,
    _write_batch,
    add_lineage,
    extract_batch,
    fingerprint,
    record_batches,
)
from govlake.extract.registry import ObjectSpec, SourceSpec, SourceUnavailable, Window

DAY = dt.date(2025, 6, 30)
AT = dt.datetime(2025, 7, 1, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_lineage_columns_and_null_aware_row_hash(spark):
    df = spark.createDataFrame([("a", None, 1), ("a", "", 2), ("b", "x", 3)], "k string, v string, _row_number long")
    out = add_lineage(df, "hukou", "persons", DAY, AT).collect()
    assert out[0]["_batch_id"] == "hukou.persons:2025-06-30"
    assert out[0]["_logical_date"] == DAY
    assert out[0]["_extracted_at"] == dt.datetime(2025, 7, 1, 0, 5)  # session time zone Asia/Shanghai
    assert (out[0]["_source"], out[0]["_source_table"]) == ("hukou", "persons")
    hashes = [r["_row_hash"] for r in out]
    assert len(set(hashes)) == 3  # NULL and '' differ
    assert all(len(h) == 64 for h in hashes)


def test_fingerprint_is_order_independent(spark):
    a = add_lineage(spark.createDataFrame([("a", 1), ("b", 2)], "k string, _row_number long"), "s", "t", DAY, AT)
    b = add_lineage(spark.createDataFrame([("b", 2), ("a", 1)], "k string, _row_number long"), "s", "t", DAY, AT)
    c = add_lineage(spark.createDataFrame([("a", 1), ("c", 2)], "k string, _row_number long"), "s", "t", DAY, AT)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a)[0] == 2 and fingerprint(a) != fingerprint(c)


def test_raw_write_counts_in_one_pass_and_is_taken_back_on_failed_reconciliation(spark, tmp_path):
    path = str(tmp_path / "raw_t")
    first = add_lineage(spark.createDataFrame([("a", 1)], "k string, _row_number long"), "s", "t", DAY, AT)
    rows, fp, written, before = _write_batch(spark, first, path, DAY)
    assert (rows, fp[:2], written, before) == (1, "1:", 1, None)
    second = add_lineage(spark.createDataFrame([("b", 1), ("c", 2)], "k string, _row_number long"), "s", "t", DAY, AT)
    assert _write_batch(spark, second, path, DAY) == (2, fingerprint(second)[1], 2, 0)  # observed = aggregated
    log = [json.loads(line) for line in (tmp_path / "raw_t" / "_delta_log" / f"{0:020d}.json").read_text().splitlines()]
    assert [e["metaData"]["configuration"] for e in log if "metaData" in e] == [
        {"delta.dataSkippingStatsColumns": "_row_number"}]
    _undo_write(spark, path, 0)  # reconciliation failed after the second commit: the first batch is back
    assert [r.k for r in spark.read.format("delta").load(path).collect()] == ["a"]
    _undo_write(spark, path, None)  # the failed write had created the table
    assert not lake.exists(spark, path)
    # the JDBC read's over-delivery guard fails a Spark task: reported as the batch's reconciliation failure
    from pyspark.sql import functions as F
    guard = spark.range(1).select(F.raise_error(F.lit("source s.t: partition 0 delivered more rows than the "
                                                      "0 counted")))
    with pytest.raises(ReconciliationError, match=r"^reconciliation failed for s\.t:2025-06-30: source s\.t: "
                                                  r"partition 0 delivered more rows than the 0 counted$"):
        _guarded("s.t:2025-06-30", lambda df: df.collect(), guard)


def _source(settings, rows):
    settings.sources_dir.mkdir(parents=True, exist_ok=True)
    path = settings.sources_dir / "dept.sqlite"
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE persons (person_no TEXT, name TEXT, updated_at TEXT)")
    con.executemany("INSERT INTO persons VALUES (?,?,?)", rows)
    con.commit()
    con.close()
    obj = ObjectSpec(name="persons", business_key=("person_no",), watermark="updated_at",
                     columns=("person_no", "name", "updated_at"))
    return SourceSpec(source="dept", department="d", kind="sql", objects={"persons": obj}, embedded="dept.sqlite")


def test_batch_written_once_and_replaced_whole_when_redelivered(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    rows = [("P1", "张三", "2025-06-30 10:00:00"), ("P2", "李四", "2025-06-30 11:00:00"),
            ("P3", "王五", "2025-06-29 09:00:00")]
    spec = _source(settings, rows)
    obj = spec.objects["persons"]
    first = extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
    record_batches(spark, settings, [first])
    assert (first.status, first.rows_read, first.rows_written, first.mode) == ("written", 3, 3, "full")  # first run
    path = settings.table_path("raw", "dept_persons")
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).collect()[0][0]
    extracted = spark.read.format("delta").load(path).select("_extracted_at").distinct().collect()

    again = extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
    record_batches(spark, settings, [again])
    assert (again.status, again.rows_written) == ("kept", 3)  # delivered: not read again
    assert spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).collect()[0][0] == version
    assert spark.read.format("delta").load(path).select("_extracted_at").distinct().collect() == extracted

    ledger_path = settings.table_path("ops", "exchange_ledger")
    ledger = spark.read.format("delta").load(ledger_path).collect()
    assert [(r.batch_id, r.rows_read, r.rows_written, r.status) for r in ledger] == [
        ("dept.persons:2025-06-30", 3, 3, "written")]

    # a redelivery with the same content writes nothing
    assert extract_batch(spark, settings, spec, obj, Window.for_date(DAY), redeliver=True).status == "unchanged"
    # the source changes afterwards: a rerun of the date still reproduces the batch as delivered
    spec = _source(settings, rows[:2] + [("P3", "王五", "2025-06-30 12:00:00")])
    rerun = extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
    assert (rerun.status, rerun.rows_written, rerun.fingerprint) == ("kept", 3, first.fingerprint)
    # the department corrects a record and redelivers explicitly: the partition is replaced, not appended to
    redelivered = extract_batch(spark, settings, spec, obj, Window.for_date(DAY), redeliver=True)
    record_batches(spark, settings, [redelivered])
    assert (redelivered.status, redelivered.rows_written) == ("written", 3)
    raw = spark.read.format("delta").load(path).orderBy("person_no").collect()
    assert [(r.person_no, r.updated_at) for r in raw] == [
        ("P1", "2025-06-30 10:00:00"), ("P2", "2025-06-30 11:00:00"), ("P3", "2025-06-30 12:00:00")]
    assert spark.read.format("delta").load(ledger_path).count() == 1


def test_merge_by_key_is_a_no_op_on_rerun(spark, tmp_path):
    path = str(tmp_path / "t")
    df = spark.createDataFrame([("1", "a", "h1"), ("2", "b", "h2")], "k string, v string, _content_hash string")
    assert lake.merge_by_key(spark, df, path, ["k"]) == {"inserted": 2, "updated": 0}
    version = lake.table_version(spark, path)
    assert lake.merge_by_key(spark, df, path, ["k"]) == {"inserted": 0, "updated": 0}
    assert lake.table_version(spark, path) == version  # nothing changed: no commit, no new version
    changed = spark.createDataFrame([("1", "a2", "h1b"), ("3", "c", "h3")], "k string, v string, _content_hash string")
    assert lake.merge_by_key(spark, changed, path, ["k"]) == {"inserted": 1, "updated": 1}
    assert sorted(tuple(r) for r in spark.read.format("delta").load(path).collect()) == [
        ("1", "a2", "h1b"), ("2", "b", "h2"), ("3", "c", "h3")]


def _pg_source(pg_engine, rows):
    import sqlalchemy as sa

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS dept CASCADE; CREATE SCHEMA dept"))
        conn.execute(sa.text("CREATE TABLE dept.persons (person_no text PRIMARY KEY, name text, updated_at timestamp)"))
        for r in rows:
            conn.execute(sa.text("INSERT INTO dept.persons VALUES (:p, :n, :u) ON CONFLICT (person_no) DO UPDATE "
                                 "SET name = EXCLUDED.name, updated_at = EXCLUDED.updated_at"),
                         {"p": r[0], "n": r[1], "u": r[2]})
    obj = ObjectSpec(name="persons", business_key=("person_no",), watermark="updated_at",
                     columns=("person_no", "name", "updated_at"))
    return SourceSpec(source="dept", department="d", kind="sql", objects={"persons": obj},
                      connection_id="govlake_test_dept", db_schema="dept")


@pytest.mark.servers
def test_incremental_batches_from_postgres(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", pg_url.replace("postgresql+psycopg", "postgresql"))
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _pg_source(pg_engine, [("P1", "张三", "2025-06-01 08:00:00"), ("P2", "李四", "2025-06-30 23:59:59")])
    obj = spec.objects["persons"]
    run = lambda day: extract_batch(spark, settings, spec, obj, Window.for_date(day))  # noqa: E731
    day1 = run(DAY)
    record_batches(spark, settings, [day1])
    assert (day1.mode, day1.rows_source, day1.rows_read) == ("full", 2, 2)
    again = run(DAY)  # a second run of the same window adds nothing
    record_batches(spark, settings, [again])
    assert (again.mode, again.status, again.rows_written) == ("full", "kept", 2)

    # day N+1: the department changes P1 and adds P3; only those arrive
    _pg_source(pg_engine, [("P1", "张三丰", "2025-07-01 09:00:00"), ("P2", "李四", "2025-06-30 23:59:59"),
                           ("P3", "王五", "2025-07-01 10:00:00"), ("P4", "赵六", "2025-07-02 00:00:00")])
    day2 = run(DAY + dt.timedelta(days=1))
    empty = run(DAY + dt.timedelta(days=5))  # nothing changed that day: an empty, recorded batch
    record_batches(spark, settings, [day2, empty])
    assert (day2.mode, day2.rows_source, day2.rows_read) == ("incremental", 2, 2)
    assert (empty.mode, empty.rows_source, empty.rows_written, empty.status) == ("incremental", 0, 0, "written")
    raw = spark.read.format("delta").load(settings.table_path("raw", "dept_persons"))
    assert sorted((str(r._logical_date), r.person_no, r.name) for r in raw.collect()) == [
        ("2025-06-30", "P1", "张三"), ("2025-06-30", "P2", "李四"), ("2025-07-01", "P1", "张三丰"),
        ("2025-07-01", "P3", "王五")]
    ledger = (spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger"))
              .orderBy("batch_id").collect())
    assert [(r.logical_date.isoformat(), r.mode, r.rows_source, r.rows_read, r.rows_written, r.rows_rejected)
            for r in ledger] == [("2025-06-30", "full", 2, 2, 2, 0), ("2025-07-01", "incremental", 2, 2, 2, 0),
                                 ("2025-07-05", "incremental", 0, 0, 0, 0)]


def test_failed_source_leaves_no_partial_batch(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _source(settings, [("P1", "张三", "2025-06-30 10:00:00")])
    obj = spec.objects["persons"]
    record_batches(spark, settings, [extract_batch(spark, settings, spec, obj, Window.for_date(DAY))])
    (settings.sources_dir / "dept.sqlite").unlink()
    with pytest.raises(SourceUnavailable, match=r"source dept\.persons: embedded database .* does not exist"):
        extract_batch(spark, settings, spec, obj, Window.for_date(DAY + dt.timedelta(days=1)))
    raw = spark.read.format("delta").load(settings.table_path("raw", "dept_persons"))
    assert [(str(r._logical_date), r.person_no) for r in raw.collect()] == [("2025-06-30", "P1")]


def _ledger_rows(spark, settings):
    return [r.asDict() for r in spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger"))
            .orderBy("batch_id").collect()]


def test_failed_attempts_are_recorded_and_never_replace_a_delivered_batch(spark, tmp_path):
    from govlake.extract.raw import failed_batch

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _source(settings, [("P1", "张三", "2025-06-29 10:00:00"), ("P2", "李四", "2025-06-30 10:00:00")])
    obj = spec.objects["persons"]
    (settings.sources_dir / "dept.sqlite").rename(settings.sources_dir / "away.sqlite")  # an outage on day N
    started = dt.datetime.now(dt.UTC)
    with pytest.raises(SourceUnavailable) as err:
        extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
    record_batches(spark, settings, [failed_batch(spec, obj, Window.for_date(DAY), err.value, started)])
    (failed,) = _ledger_rows(spark, settings)
    assert {k: failed[k] for k in ("batch_id", "status", "mode", "rows_read", "rows_written", "fingerprint",
                                   "rows_source", "rows_rejected")} == {
        "batch_id": "dept.persons:2025-06-30", "status": "failed", "mode": None, "rows_read": None,
        "rows_written": None, "fingerprint": None, "rows_source": None, "rows_rejected": None}
    assert failed["error"].startswith("SourceUnavailable: source dept.persons: embedded database ")
    assert (failed["window_start"], failed["window_end"]) == (dt.datetime(2025, 6, 30), dt.datetime(2025, 7, 1))

    # the outage ends; day N+1 runs first: the failed day N is no earlier batch, so N+1 is a first (full) run
    (settings.sources_dir / "away.sqlite").rename(settings.sources_dir / "dept.sqlite")
    nxt = extract_batch(spark, settings, spec, obj, Window.for_date(DAY + dt.timedelta(days=1)))
    assert (nxt.mode, nxt.rows_read) == ("full", 2)
    # the rerun of day N is a first run too (full), and its success replaces the failed row
    day = extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
    assert (day.mode, day.status, day.rows_read) == ("full", "written", 2)
    record_batches(spark, settings, [day, nxt])
    rows = _ledger_rows(spark, settings)
    assert [(r["batch_id"], r["status"], r["rows_written"], r["error"]) for r in rows] == [
        ("dept.persons:2025-06-30", "written", 2, None), ("dept.persons:2025-07-01", "written", 2, None)]

    # a later failed attempt of a delivered date (a redelivery during an outage) leaves the delivered row as it was
    (settings.sources_dir / "dept.sqlite").unlink()
    assert extract_batch(spark, settings, spec, obj, Window.for_date(DAY)).status == "kept"  # no source read
    with pytest.raises(SourceUnavailable) as err:
        extract_batch(spark, settings, spec, obj, Window.for_date(DAY), redeliver=True)
    record_batches(spark, settings, [failed_batch(spec, obj, Window.for_date(DAY), err.value, started)])
    assert _ledger_rows(spark, settings) == rows


def test_failed_row_is_refreshed_and_older_ledgers_get_the_error_column(spark, tmp_path):
    from govlake.extract.raw import failed_batch, ledger_schema

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _source(settings, [("P1", "张三", "2025-06-30 10:00:00")])
    obj = spec.objects["persons"]
    old = [f for f in ledger_schema().fields if f.name != "error"]  # a ledger written before the error column
    from pyspark.sql.types import StructType
    spark.createDataFrame([], StructType(old)).selectExpr("*", "CAST(NULL AS STRING) AS _content_hash") \
        .write.format("delta").save(settings.table_path("ops", "exchange_ledger"))
    started = dt.datetime.now(dt.UTC)
    record_batches(spark, settings, [failed_batch(spec, obj, Window.for_date(DAY), RuntimeError("first"), started)])
    record_batches(spark, settings,
                   [failed_batch(spec, obj, Window.for_date(DAY), RuntimeError("second\nmore"), started)])
    assert [(r["status"], r["error"]) for r in _ledger_rows(spark, settings)] == [("failed", "RuntimeError: second")]


def test_run_extract_extracts_every_object_despite_failures_and_names_them_all(spark, tmp_path):
    """zhengwu: messages (file drop, bad checksum) fails, evaluations (file drop) is extracted, applications
    (embedded MongoDB export, missing) fails; the run raises one error naming both failures."""
    import hashlib

    from govlake.extract.registry import SourceError
    from govlake.extract.stage import run_extract

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    drop = settings.sources_dir / "inbox" / "zhengwu" / DAY.isoformat()
    drop.mkdir(parents=True)
    messages = ("留言编号,留言用户,留言主题,留言时间,留言详情,反对数,点赞数\n"
                "1,A1,主题,2019/2/28 11:25:05,详情,0,1\n").encode()
    evaluations = ("办件编号,评价等级,评价渠道,评价时间,评价内容\n"
                   "ZW1,满意,窗口,2025/6/3 9:05:00,好\nZW2,满意,网上,x,\n").encode()
    (drop / "messages.csv").write_bytes(messages)
    (drop / "evaluations.csv").write_bytes(evaluations)
    (drop / "manifest.json").write_text(json.dumps({"files": [
        {"name": "messages.csv", "sha256": "0" * 64, "rows": 1, "encoding": "utf-8"},
        {"name": "evaluations.csv", "sha256": hashlib.sha256(evaluations).hexdigest(), "rows": 2,
         "encoding": "utf-8"}]}),
        encoding="utf-8")
    with pytest.raises(SourceError) as err:
        run_extract(spark, settings, DAY, sources=["zhengwu"])
    message = str(err.value)
    assert type(err.value).__name__ == "ExtractionFailed", message
    assert message.startswith("extraction of 2025-06-30 failed for 2 of 3 objects: zhengwu.messages (ManifestMismatch: "
                              "source zhengwu.messages: ")
    assert "SHA-256" in message and "zhengwu.applications (SourceUnavailable: source zhengwu.applications: embedded " \
                                     "export " in message
    assert sorted(err.value.failures) == ["zhengwu.applications", "zhengwu.messages"]
    rows = _ledger_rows(spark, settings)
    assert [(r["batch_id"], r["status"], r["rows_source"], r["rows_read"], r["rows_rejected"]) for r in rows] == [
        ("zhengwu.applications:2025-06-30", "failed", None, None, None),
        ("zhengwu.evaluations:2025-06-30", "written", 2, 2, 0),
        ("zhengwu.messages:2025-06-30", "failed", None, None, None)]
    assert [r["error"] for r in rows] == [err.value.failures["zhengwu.applications"], None,
                                          err.value.failures["zhengwu.messages"]]
    raw = spark.read.format("delta").load(settings.table_path("raw", "zhengwu_evaluations"))
    assert sorted(r.app_no for r in raw.collect()) == ["ZW1", "ZW2"]
