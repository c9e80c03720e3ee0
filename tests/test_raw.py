"""Raw layer: lineage columns, write-once batches, reconciliation and the exchange ledger."""
from __future__ import annotations

import datetime as dt
import sqlite3

from jobs import lake
from jobs.config import Settings
from jobs.raw import add_lineage, extract_batch, fingerprint, record_batches
from jobs.sources import ObjectSpec, SourceSpec, Window

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
    assert (first.status, first.rows_read, first.rows_written) == ("written", 3, 3)
    path = settings.table_path("raw", "dept_persons")
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).collect()[0][0]
    extracted = spark.read.format("delta").load(path).select("_extracted_at").distinct().collect()

    again = extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
    record_batches(spark, settings, [again])
    assert (again.status, again.rows_written) == ("unchanged", 3)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).collect()[0][0] == version
    assert spark.read.format("delta").load(path).select("_extracted_at").distinct().collect() == extracted

    ledger_path = settings.table_path("ops", "exchange_ledger")
    ledger = spark.read.format("delta").load(ledger_path).collect()
    assert [(r.batch_id, r.rows_read, r.rows_written, r.status) for r in ledger] == [
        ("dept.persons:2025-06-30", 3, 3, "written")]

    # the department corrects a record and redelivers: the partition is replaced, not appended to
    spec = _source(settings, rows[:2] + [("P3", "王五", "2025-06-30 12:00:00")])
    redelivered = extract_batch(spark, settings, spec, obj, Window.for_date(DAY))
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
    assert lake.merge_by_key(spark, df, path, ["k"]) == {"inserted": 0, "updated": 0}
    changed = spark.createDataFrame([("1", "a2", "h1b"), ("3", "c", "h3")], "k string, v string, _content_hash string")
    assert lake.merge_by_key(spark, changed, path, ["k"]) == {"inserted": 1, "updated": 1}
    assert sorted(tuple(r) for r in spark.read.format("delta").load(path).collect()) == [
        ("1", "a2", "h1b"), ("2", "b", "h2"), ("3", "c", "h3")]
