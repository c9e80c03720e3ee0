"""Source registry and readers: SQLite, real PostgreSQL (Spark JDBC), real FerretDB, file drops."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3

import pytest

from jobs.config import Settings
from jobs.sources import (ManifestMismatch, ObjectSpec, SourceSpec, SourceUnavailable, Window, check_identifier,
                          document_id_text, load_registry, read_object)

DAY = dt.date(2025, 6, 30)


def test_registry_has_every_department_with_keys():
    registry = load_registry()
    assert sorted(registry) == ["civil", "hukou", "wangge", "zhengwu"]
    assert registry["hukou"].objects["persons"].business_key == ("person_no",)
    assert registry["zhengwu"].objects["messages"].header_map["留言编号"] == "message_id"
    assert registry["wangge"].kind == "mongo"
    assert registry["civil"].objects["subsistence_allowance"].unified["sex_map"] == {"男": "1", "女": "2"}


@pytest.mark.parametrize("bad", ["persons; drop table x", "Persons", "1abc", "a" * 64, ""])
def test_identifiers_from_configuration_are_checked(bad):
    with pytest.raises(ValueError, match="not a valid identifier"):
        check_identifier(bad, "table")


def test_registry_rejects_bad_identifier(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "source: x\ndepartment: d\nkind: sql\nobjects:\n  t:\n    business_key: [\"id; --\"]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="x.yaml.*id; --"):
        load_registry(tmp_path)


def test_window_is_the_shanghai_business_day():
    w = Window.for_date(DAY)
    assert w.start.isoformat() == "2025-06-30T00:00:00+08:00"
    assert w.end.isoformat() == "2025-07-01T00:00:00+08:00"


def _sql_spec():
    obj = ObjectSpec(name="persons", business_key=("person_no",), watermark="updated_at",
                     columns=("person_no", "id_no", "amount", "updated_at"))
    return SourceSpec(source="dept", department="d", kind="sql", objects={"persons": obj}, embedded="dept.sqlite",
                      connection_id="govlake_test_dept", db_schema="dept")


def test_sqlite_snapshot_reads_text_until_window_end(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    settings.sources_dir.mkdir(parents=True)
    con = sqlite3.connect(settings.sources_dir / "dept.sqlite")
    con.execute("CREATE TABLE persons (person_no TEXT, id_no TEXT, amount NUMERIC, updated_at TEXT)")
    con.executemany("INSERT INTO persons VALUES (?,?,?,?)", [
        ("P2", "11010519491231002X", 12.5, "2025-06-30 23:59:59"),
        ("P1", None, 7, "2025-06-01 08:00:00"),
        ("P3", "x", 1, "2025-07-01 00:00:00"),  # at the window end: next day's batch
    ])
    con.commit()
    con.close()
    spec = _sql_spec()
    rows = read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY)).collect()
    assert [r.asDict() for r in rows] == [
        {"person_no": "P1", "id_no": None, "amount": "7", "updated_at": "2025-06-01 08:00:00", "_row_number": 1},
        {"person_no": "P2", "id_no": "11010519491231002X", "amount": "12.5", "updated_at": "2025-06-30 23:59:59",
         "_row_number": 2},
    ]


def test_missing_embedded_database_names_source_and_path(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _sql_spec()
    with pytest.raises(SourceUnavailable, match=r"source dept\.persons: embedded database .*dept\.sqlite does not exist"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))


@pytest.mark.servers
def test_postgres_jdbc_reads_exact_text(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    import sqlalchemy as sa

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS dept CASCADE; CREATE SCHEMA dept"))
        conn.execute(sa.text("CREATE TABLE dept.persons (person_no text, id_no text, amount numeric(40,2), "
                             "updated_at timestamp)"))
        conn.execute(sa.text("INSERT INTO dept.persons VALUES "
                             "('P2', '11010519491231002X', 12345678901234567890123456789012345678.25, '2025-06-30 23:59:59'),"
                             "('P1', NULL, 7.00, '2025-06-01 08:00:00'),"
                             "('P3', 'x', 1, '2025-07-01 00:00:00')"))
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", pg_url.replace("postgresql+psycopg", "postgresql"))
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _sql_spec()
    rows = read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY)).collect()
    assert [r.asDict() for r in rows] == [
        {"person_no": "P1", "id_no": None, "amount": "7.00", "updated_at": "2025-06-01 08:00:00", "_row_number": 1},
        {"person_no": "P2", "id_no": "11010519491231002X", "amount": "12345678901234567890123456789012345678.25",
         "updated_at": "2025-06-30 23:59:59", "_row_number": 2},
    ]


@pytest.mark.servers
def test_postgres_missing_table_and_unreachable_server(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    import sqlalchemy as sa

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS dept CASCADE; CREATE SCHEMA dept"))
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _sql_spec()
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", pg_url.replace("postgresql+psycopg", "postgresql"))
    with pytest.raises(SourceUnavailable, match=r"source dept\.persons: table dept\.persons does not exist at postgresql://127\.0\.0\.1"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", "postgresql://govlake@127.0.0.1:9/departments")
    with pytest.raises(SourceUnavailable, match=r"source dept\.persons: cannot connect to postgresql://127\.0\.0\.1:9/departments"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))
    monkeypatch.delenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT")
    with pytest.raises(SourceUnavailable, match="AIRFLOW_CONN_GOVLAKE_TEST_DEPT is unset"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))


def _mongo_spec():
    obj = ObjectSpec(name="events", business_key=("event_no",), watermark="updated_at",
                     projection={"event_no": "$.event_no", "grid_code": "$.location.grid_code", "category": "$.category"})
    return SourceSpec(source="grid", department="d", kind="mongo", objects={"events": obj},
                      connection_id="govlake_test_grid", database="govlake_test_grid", embedded="events.jsonl")


@pytest.mark.servers
def test_mongo_documents_kept_whole_with_drift_visible(spark, tmp_path, mongo_client, mongo_url, monkeypatch):
    from bson import ObjectId

    coll = mongo_client["govlake_test_grid"]["events"]
    coll.drop()
    oid = ObjectId("65a000000000000000000001")
    coll.insert_many([
        {"_id": oid, "event_no": "E1", "location": {"grid_code": "130102001001001"},
         "category": {"l1": "城乡建设"}, "updated_at": dt.datetime(2025, 6, 29, 10, 0)},
        # (FerretDB 1.24 refuses a string _id equal to an ObjectId's hex as a duplicate key, so another string)
        {"_id": "65a000000000000000000002", "event_no": "E2", "location": {"grid_code": 130102001001002},
         "category": "城乡建设/安全生产/安全隐患", "updated_at": dt.datetime(2025, 6, 30, 15, 59)},
        {"_id": 7, "event_no": "E3", "updated_at": dt.datetime(2025, 6, 30, 16, 0)},  # = 07-01 00:00 Shanghai: next batch
    ])
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_GRID", mongo_url)
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _mongo_spec()
    rows = read_object(spark, settings, spec, spec.objects["events"], Window.for_date(DAY)).collect()
    got = [(r["_id"], r["event_no"], r["grid_code"], r["category"]) for r in rows]
    assert got == [
        ('"65a000000000000000000002"', "E2", "130102001001002", "城乡建设/安全生产/安全隐患"),
        ("ObjectId(65a000000000000000000001)", "E1", "130102001001001", '{"l1":"城乡建设"}'),
    ]
    assert json.loads(rows[1]["document"])["_id"] == {"$oid": "65a000000000000000000001"}


def test_document_ids_keep_their_type():
    from bson import ObjectId

    assert document_id_text(ObjectId("65a000000000000000000001")) == "ObjectId(65a000000000000000000001)"
    assert document_id_text("65a000000000000000000001") == '"65a000000000000000000001"'
    assert document_id_text(7) == "7"


def _drop(settings, content: bytes, rows: int, encoding="utf-8", sha=None):
    drop = settings.sources_dir / "inbox" / "zhengwu" / DAY.isoformat()
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "messages.csv").write_bytes(content)
    manifest = {"files": [{"name": "messages.csv", "sha256": sha or hashlib.sha256(content).hexdigest(),
                           "rows": rows, "encoding": encoding}]}
    (drop / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


HEADER = "留言编号,留言用户,留言主题,留言时间,留言详情,反对数,点赞数\n"


def test_file_drop_reads_values_as_delivered(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    body = HEADER + '0188006,A1,"主题,有逗号",2019/2/28 11:25:05,详情,0,\n2,A2,主题2,bad time,,1,3\n'
    _drop(settings, body.encode("utf-8"), 2)
    spec = load_registry()["zhengwu"]
    rows = read_object(spark, settings, spec, spec.objects["messages"], Window.for_date(DAY)).collect()
    assert [r.asDict() for r in rows] == [
        {"message_id": "0188006", "user_id": "A1", "subject": "主题,有逗号", "message_time": "2019/2/28 11:25:05",
         "detail": "详情", "votes_against": "0", "votes_for": None, "_row_number": 1},
        {"message_id": "2", "user_id": "A2", "subject": "主题2", "message_time": "bad time", "detail": None,
         "votes_against": "1", "votes_for": "3", "_row_number": 2},
    ]


@pytest.mark.parametrize("case, match", [
    ("checksum", "SHA-256"),
    ("rows", "has 1 rows, manifest says 2"),
    ("gbk", "is not valid utf-8"),
    ("truncated", "line 2 has 3 fields"),
])
def test_file_drop_rejected_whole(spark, tmp_path, case, match):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    good = HEADER + "1,A1,主题,2019/2/28 11:25:05,详情,0,1\n"
    if case == "checksum":
        _drop(settings, good.encode(), 1, sha="0" * 64)
    elif case == "rows":
        _drop(settings, good.encode(), 2)
    elif case == "gbk":
        _drop(settings, good.encode("gbk"), 1)
    else:
        _drop(settings, (HEADER + "1,A1,主题").encode(), 1)
    spec = load_registry()["zhengwu"]
    with pytest.raises(ManifestMismatch, match=match):
        read_object(spark, settings, spec, spec.objects["messages"], Window.for_date(DAY))
