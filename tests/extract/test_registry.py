"""Source registry and readers: SQLite, real PostgreSQL (Spark JDBC), real FerretDB, file drops."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3

import pytest

from govlake.core.config import Settings
from govlake.extract import registry as sources
from govlake.extract.registry import (
    ManifestMismatch,
    ObjectSpec,
    SchemaDrift,
    SourceSpec,
    SourceUnavailable,
    Window,
    check_identifier,
    detect_encoding,
    document_id_text,
    extract_object,
    load_registry,
    read_object,
)

DAY = dt.date(2025, 6, 30)


def test_registry_has_every_department_with_keys():
    registry = load_registry()
    assert sorted(registry) == ["address", "civil", "health", "hrss", "hukou", "wangge", "zhengwu"]
    assert sorted(registry["zhengwu"].objects) == ["applications", "evaluations", "messages"]
    assert registry["zhengwu"].objects["applications"].kind == "mongo"
    assert registry["hrss"].objects["social_insurance"].business_key == ("si_no",)
    assert registry["civil"].subscriptions[0].dataset == "marts.population_by_district_sex_age"
    assert registry["hukou"].objects["persons"].business_key == ("person_no",)
    assert registry["zhengwu"].objects["messages"].header_map["留言编号"] == "message_id"
    assert registry["wangge"].kind == "mongo"
    assert registry["civil"].objects["subsistence_allowance"].unified.sex_map == {"男": "1", "女": "2"}
    assert sorted(registry["hukou"].objects) == ["households", "persons", "residence_changes"]
    moves = registry["hukou"].objects["residence_changes"]  # 户口迁移登记, written by sample (writers.TABLES)
    assert (moves.title, moves.business_key, moves.watermark, moves.sharing_type, moves.update_cycle) == (
        "户口迁移登记", ("change_no",), "updated_at", "conditional", "daily")
    assert moves.columns == ("change_no", "person_no", "id_no", "from_community_code", "to_community_code",
                             "move_date", "change_type", "updated_at")
    assert moves.unified is None  # not a unified source (yet)
    assert registry["address"].objects["standard_address"].sharing_type == "unconditional"  # the source's
    assert sum(len(s.objects) for s in registry.values()) == 15


@pytest.mark.parametrize("bad", ["persons; drop table x", "Persons", "1abc", "a" * 64, ""])
def test_identifiers_from_configuration_are_checked(bad):
    with pytest.raises(ValueError, match="not a valid identifier"):
        check_identifier(bad, "table")


def test_registry_rejects_bad_identifier(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "source: x\ndepartment: d\nkind: sql\nobjects:\n  t:\n    business_key: [\"id; --\"]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="x.yaml.*id; --"):
        load_registry(tmp_path)
    (tmp_path / "x.yaml").write_text(
        "source: x\ndepartment: d\nkind: sql\nobjects:\n  t:\n    business_key: [k]\n    sharing_type: open\n",
        encoding="utf-8")
    with pytest.raises(ValueError, match="x.yaml: sharing_type of t must be one of unconditional, conditional, none, "
                                         "not 'open'"):
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


def _sqlite_persons(tmp_path, rows):
    """Settings of a GovLake home whose embedded ``dept.sqlite`` holds ``persons`` (person_no, id_no, amount
    NUMERIC, updated_at) with ``rows``; returns (settings, open connection)."""
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    settings.sources_dir.mkdir(parents=True)
    con = sqlite3.connect(settings.sources_dir / "dept.sqlite")
    con.execute("CREATE TABLE persons (person_no TEXT, id_no TEXT, amount NUMERIC, updated_at TEXT)")
    con.executemany("INSERT INTO persons VALUES (?,?,?,?)", rows)
    con.commit()
    return settings, con


def test_sqlite_snapshot_reads_text_until_window_end(spark, tmp_path):
    settings, con = _sqlite_persons(tmp_path, [
        ("P2", "11010519491231002X", 12.5, "2025-06-30 23:59:59"),
        ("P1", None, 7, "2025-06-01 08:00:00"),
        ("P3", "x", 1, "2025-07-01 00:00:00"),  # at the window end: next day's batch
    ])
    con.close()
    spec = _sql_spec()
    rows = read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY).whole()).collect()
    assert [r.asDict() for r in rows] == [
        {"person_no": "P1", "id_no": None, "amount": "7", "updated_at": "2025-06-01 08:00:00", "_row_number": 1},
        {"person_no": "P2", "id_no": "11010519491231002X", "amount": "12.5", "updated_at": "2025-06-30 23:59:59",
         "_row_number": 2},
    ]


def test_missing_embedded_database_names_source_and_path(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _sql_spec()
    with pytest.raises(SourceUnavailable,
                       match=r"source dept\.persons: embedded database .*dept\.sqlite does not exist"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))


@pytest.mark.servers
def test_postgres_jdbc_reads_exact_text(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    import sqlalchemy as sa

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS dept CASCADE; CREATE SCHEMA dept"))
        conn.execute(sa.text("CREATE TABLE dept.persons (person_no text, id_no text, amount numeric(40,2), "
                             "updated_at timestamp)"))
        conn.execute(sa.text("INSERT INTO dept.persons VALUES "
                             "('P2', '11010519491231002X', 12345678901234567890123456789012345678.25, "
                             "'2025-06-30 23:59:59'),"
                             "('P1', NULL, 7.00, '2025-06-01 08:00:00'),"
                             "('P3', 'x', 1, '2025-07-01 00:00:00')"))
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", pg_url.replace("postgresql+psycopg", "postgresql"))
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _sql_spec()
    rows = read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY).whole()).collect()
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
                     projection={"event_no": "$.event_no", "grid_code": "$.location.grid_code",
                                 "category": "$.category"})
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
        # = 07-01 00:00 Shanghai: next batch
        {"_id": 7, "event_no": "E3", "updated_at": dt.datetime(2025, 6, 30, 16, 0)},
    ])
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_GRID", mongo_url)
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _mongo_spec()
    rows = read_object(spark, settings, spec, spec.objects["events"], Window.for_date(DAY).whole()).collect()
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
    ("truncated", "is truncated"),
    ("short_line", "line 2 has 3 fields"),
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
    elif case == "truncated":
        _drop(settings, (HEADER + "1,A1,主题").encode(), 1)
    else:
        _drop(settings, (HEADER + "1,A1,主题\n").encode(), 1)
    spec = load_registry()["zhengwu"]
    with pytest.raises(ManifestMismatch, match=rf"source zhengwu\.messages: .*messages\.csv.*{match}"):
        read_object(spark, settings, spec, spec.objects["messages"], Window.for_date(DAY))


# --- encodings, formats and faults of file drops ----------------------------------------------------------

def test_encoding_detection_is_strict():
    assert detect_encoding("编号\n".encode()) == ("编号\n", "utf-8")
    assert detect_encoding(b"\xef\xbb\xbf" + "编号".encode()) == ("编号", "utf-8-sig")
    assert detect_encoding("编号,镕".encode("gbk")) == ("编号,镕", "gb18030")
    with pytest.raises(UnicodeDecodeError):
        detect_encoding(b"\x81\x30\xff")


EVAL_HEADER = ["办件编号", "评价等级", "评价渠道", "评价时间", "评价内容"]


def _eval_drop(settings, name: str, content: bytes, rows: int, fmt: str | None = None, encoding: str | None = "utf-8"):
    drop = settings.sources_dir / "inbox" / "zhengwu" / DAY.isoformat()
    drop.mkdir(parents=True, exist_ok=True)
    (drop / name).write_bytes(content)
    entry = {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "rows": rows, "encoding": encoding}
    if fmt:
        entry["format"] = fmt
    (drop / "manifest.json").write_text(json.dumps({"files": [entry]}), encoding="utf-8")


def test_gbk_csv_drop_is_read_and_its_encoding_recorded(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    body = ",".join(EVAL_HEADER) + "\r\n" + "ZW202506010001,非常满意,窗口,2025/6/3 9:05:00,一次办好\r\n"
    _eval_drop(settings, "evaluations.csv", body.encode("gbk"), 1, fmt="csv-gbk", encoding="gbk")
    spec = load_registry()["zhengwu"]
    got = extract_object(spark, settings, spec, spec.objects["evaluations"], Window.for_date(DAY))
    assert [r.asDict() for r in got.frame.collect()] == [
        {"app_no": "ZW202506010001", "level": "非常满意", "channel": "窗口", "evaluated_at": "2025/6/3 9:05:00",
         "content": "一次办好", "_row_number": 1}]
    assert got.details["files"][0]["encoding"] == "gb18030"
    assert (got.rows_source, got.rejected) == (1, [])


def test_jsonl_drop_keeps_number_literals_and_rejects_unknown_keys(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    lines = ['{"办件编号": "ZW1", "评价等级": "满意", "评价渠道": "网上", "评价时间": "2025/6/3 9:05:00", '
             '"评价内容": ""}',
             '{"办件编号": 12.50, "评价等级": null, "评价渠道": "窗口", "评价时间": "x", "评价内容": "好"}']
    _eval_drop(settings, "evaluations.jsonl", ("\n".join(lines) + "\n").encode(), 2, fmt="jsonl")
    spec = load_registry()["zhengwu"]
    rows = read_object(spark, settings, spec, spec.objects["evaluations"], Window.for_date(DAY)).collect()
    assert [(r.app_no, r.level, r.content, r._row_number) for r in rows] == [("ZW1", "满意", "", 1),
                                                                            ("12.50", None, "好", 2)]
    _eval_drop(settings, "evaluations.jsonl", (lines[0].replace("评价内容", "评价备注") + "\n").encode(), 1,
               fmt="jsonl")
    with pytest.raises(SchemaDrift, match=r"source zhengwu\.evaluations: .*evaluations\.jsonl line 1 has "
                                          r"key\(s\) \['评价备注'\]"):
        read_object(spark, settings, spec, spec.objects["evaluations"], Window.for_date(DAY))


def test_xlsx_drop_reads_text_and_rejects_number_ids_with_reason(spark, tmp_path):
    import io

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(EVAL_HEADER)
    ws.append(["ZW202506010001", "满意", "窗口", "2025/6/3 9:05:00", None])
    ws.append([202506010002, "满意", "窗口", "2025/6/3 9:06:00", "好"])  # an ID typed as a number by the exporter
    ws.append(["ZW202506010003", "不满意", "网上", dt.datetime(2025, 6, 3, 9, 7), "等待时间较长"])
    buf = io.BytesIO()
    wb.save(buf)
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    _eval_drop(settings, "evaluations.xlsx", buf.getvalue(), 3, fmt="xlsx", encoding=None)
    spec = load_registry()["zhengwu"]
    got = extract_object(spark, settings, spec, spec.objects["evaluations"], Window.for_date(DAY))
    assert [(r.app_no, r.evaluated_at, r.content, r._row_number) for r in got.frame.collect()] == [
        ("ZW202506010001", "2025/6/3 9:05:00", None, 1),
        ("ZW202506010003", "2025-06-03 09:07:00", "等待时间较长", 3)]
    assert got.rejected == [(2, "number cell in 办件编号 (app_no, registry type text): "
                                "leading zeros or digits may be lost")]
    _eval_drop(settings, "evaluations.xlsx", buf.getvalue()[:200], 3, fmt="xlsx", encoding=None)
    with pytest.raises(ManifestMismatch,
                       match=r"source zhengwu\.evaluations: .*evaluations\.xlsx is not a readable \.xlsx"):
        read_object(spark, settings, spec, spec.objects["evaluations"], Window.for_date(DAY))


def test_sqlite_window_and_renamed_column(spark, tmp_path):
    settings, con = _sqlite_persons(tmp_path, [
        ("P1", None, 7, "2025-06-29 23:59:59"), ("P2", None, 1, "2025-06-30 00:00:00"),
        ("P3", None, 1, "2025-07-01 00:00:00")])
    spec = _sql_spec()
    got = extract_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))
    assert ([r.person_no for r in got.frame.collect()], got.rows_source) == (["P2"], 1)
    con.execute("ALTER TABLE persons RENAME COLUMN id_no TO idno")
    con.commit()
    con.close()
    with pytest.raises(SchemaDrift, match=r"source dept\.persons: registered column\(s\) \['id_no'\] missing "
                                          r".*\['idno'\] \(renamed\?\)"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))


# --- PostgreSQL windows, partitions and faults ------------------------------------------------------------

def _pg_persons(pg_engine, rows):
    import sqlalchemy as sa

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS dept CASCADE; CREATE SCHEMA dept"))
        conn.execute(sa.text("CREATE TABLE dept.persons (person_no text, id_no text, amount numeric(40,2), "
                             "updated_at timestamptz)"))
        for r in rows:
            conn.execute(sa.text("INSERT INTO dept.persons VALUES (:p, :i, :a, :u)"),
                         {"p": r[0], "i": r[1], "a": r[2], "u": r[3]})


@pytest.mark.servers
def test_postgres_windows_are_instants_and_partitions_balanced(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    utc = dt.UTC
    # business day 2025-06-30 in Asia/Shanghai = [06-29 16:00Z, 06-30 16:00Z)
    rows = [(f"P{k:02d}", None, "1.00", dt.datetime(2025, 6, 29, 15, 0, tzinfo=utc) + dt.timedelta(hours=4 * k))
            for k in range(12)]
    rows.append((None, None, "99999999999999999999999999999999999999.99", dt.datetime(2025, 6, 30, 10, tzinfo=utc)))
    _pg_persons(pg_engine, rows)
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", pg_url.replace("postgresql+psycopg", "postgresql"))
    monkeypatch.setattr(sources, "JDBC_ROWS_PER_PARTITION", 3)
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _sql_spec()
    obj = spec.objects["persons"]

    def read(window):
        got = extract_object(spark, settings, spec, obj, window)
        return got, sorted((r.person_no or "", r.amount, r.updated_at, r._row_number) for r in got.frame.collect())

    day1, got1 = read(Window.for_date(DAY))
    assert [r[0] for r in got1] == ["", "P01", "P02", "P03", "P04", "P05", "P06"]
    assert got1[0][1:] == ("99999999999999999999999999999999999999.99", "2025-06-30 18:00:00+08", 7)  # NULL key last
    assert [r[3] for r in got1[1:]] == [1, 2, 3, 4, 5, 6]
    assert day1.rows_source == 7 and sum(day1.details["jdbc_partitions"]) == 7
    assert max(day1.details["jdbc_partitions"]) <= 3  # balanced by rows, not by key range
    _, got2 = read(Window.for_date(DAY + dt.timedelta(days=1)))
    two_days = Window(DAY, Window.for_date(DAY).start, Window.for_date(DAY + dt.timedelta(days=2)).start)
    _, both = read(two_days)
    assert sorted(r[:3] for r in got1 + got2) == sorted(r[:3] for r in both)
    _, whole = read(Window.for_date(DAY).whole())
    assert [r[0] for r in whole][:3] == ["", "P00", "P01"] and len(whole) == 8


@pytest.mark.servers
def test_postgres_faults_name_source_and_object(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    import sqlalchemy as sa

    _pg_persons(pg_engine, [("P1", None, "1", dt.datetime(2025, 6, 30, 2, tzinfo=dt.UTC))])
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _sql_spec()
    base = pg_url.replace("postgresql+psycopg", "postgresql")
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", base.replace("govlake@", "nobody:wrong@"))
    with pytest.raises(SourceUnavailable, match=r"source dept\.persons: cannot connect to postgresql://127\.0\.0\.1.*nobody"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", base)
    with pg_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE dept.persons RENAME COLUMN amount TO amount_yuan"))
    with pytest.raises(SchemaDrift, match=r"source dept\.persons: registered column\(s\) \['amount'\] missing "
                                          r"in dept\.persons"):
        read_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))
    bad = SourceSpec(source="dept", department="d", kind="sql", connection_id="govlake_test_dept", db_schema="dept",
                     objects={"p": ObjectSpec(name="p", business_key=("x; drop table y",), columns=("x",))})
    with pytest.raises(ValueError, match="not a valid identifier"):
        read_object(spark, settings, bad, bad.objects["p"], Window.for_date(DAY))


@pytest.mark.servers
def test_postgres_rows_added_during_the_read_fail_the_read(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    import sqlalchemy as sa
    from pyspark.errors import PySparkException

    at = dt.datetime(2025, 6, 30, 2, tzinfo=dt.UTC)
    _pg_persons(pg_engine, [("P1", None, "1", at), ("P3", None, "3", at)])
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_DEPT", pg_url.replace("postgresql+psycopg", "postgresql"))
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _sql_spec()
    got = extract_object(spark, settings, spec, spec.objects["persons"], Window.for_date(DAY))
    assert (got.rows_source, got.details["jdbc_partitions"]) == (2, [2])
    with pg_engine.begin() as conn:  # a row lands in the window between the count and the read
        conn.execute(sa.text("INSERT INTO dept.persons VALUES ('P2', NULL, 2, :u)"), {"u": at})
    with pytest.raises(PySparkException, match=r"source dept\.persons: partition 0 delivered more rows than the 2 "
                                               r"counted for the window"):
        got.frame.collect()


@pytest.mark.servers
def test_mongo_window_streamed_in_chunks_keeps_unknown_fields(spark, tmp_path, mongo_client, mongo_url, monkeypatch):
    coll = mongo_client["govlake_test_grid"]["events"]
    coll.drop()
    utc_day = dt.datetime(2025, 6, 29, 16, 0)  # 2025-06-30 00:00 Asia/Shanghai, stored as UTC
    coll.insert_many([{"_id": f"e{k}", "event_no": f"E{k}", "updated_at": utc_day + dt.timedelta(hours=6 * k)}
                      for k in range(6)] + [{"_id": "x", "event_no": "X", "new_field": {"a": 1},
                                             "updated_at": utc_day - dt.timedelta(seconds=1)}])
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_GRID", mongo_url)
    monkeypatch.setattr(sources, "MONGO_CHUNK_DOCS", 2)
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    spec = _mongo_spec()
    got = extract_object(spark, settings, spec, spec.objects["events"], Window.for_date(DAY))
    assert [(r.event_no, r._row_number) for r in got.frame.orderBy("_row_number").collect()] == [
        ("E0", 1), ("E1", 2), ("E2", 3), ("E3", 4)]
    assert got.rows_source == 4 and got.staging
    whole = read_object(spark, settings, spec, spec.objects["events"], Window.for_date(DAY).whole())
    kept = whole.where("event_no = 'X'").collect()[0]
    assert json.loads(kept.document)["new_field"] == {"a": 1} and kept.category is None
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TEST_GRID", "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500")
    with pytest.raises(SourceUnavailable, match=r"source grid\.events: cannot read from mongodb://127\.0\.0\.1:9/"):
        read_object(spark, settings, spec, spec.objects["events"], Window.for_date(DAY))


def test_projection_paths_tried_in_order_and_the_renamed_field_flagged(spark):
    """A field a department renamed (applicant.id_no → applicant.idcard) is projected from its second path, and
    the applications suite's warn rule flags that document (the raw document keeps what was delivered)."""
    from govlake.quality import rules as quality

    obj = load_registry()["zhengwu"].objects["applications"]
    docs = [{"_id": "A1", "app_no": "ZW1", "applicant": {"id_no": "11010519491231002X", "name": "甲"}},
            {"_id": "A2", "app_no": "ZW2", "applicant": {"idcard": "110105194912310021", "name": "乙"}},
            {"_id": "A3", "app_no": "ZW3", "applicant": {"name": "丙"}}]
    frame = sources.documents_to_frame(spark, obj, docs)
    assert [(r.app_no, r.applicant_id_no) for r in frame.orderBy("_id").collect()] == [
        ("ZW1", "11010519491231002X"), ("ZW2", "110105194912310021"), ("ZW3", None)]
    rule = "zhengwu_applications.document.applicant_id_no_field"
    counts = {c["rule_id"]: c["failed"] for c in quality.rule_counts(
        quality.evaluate(frame, quality.load_suite("raw.zhengwu_applications")),
        quality.load_suite("raw.zhengwu_applications"))}
    assert counts[rule] == 2
    with pytest.raises(ValueError, match="must be a JSON path"):
        sources.projection_paths(["$.a", "b"])


# --- drop confinement, registry column types, nested JSON -------------------------------------------------

def _outside_drop(settings, tmp_path, case):
    """A valid messages.csv outside zhengwu's drop folder, and a manifest naming it (``case``: a relative
    ``../`` path, an absolute path, or a symlink in the drop pointing at it); returns the name in the manifest."""
    body = (HEADER + "1,A1,主题,2019/2/28 11:25:05,详情,0,1\n").encode("utf-8")
    outside = tmp_path / "elsewhere" / "messages.csv"
    outside.parent.mkdir()
    outside.write_bytes(body)
    drop = settings.sources_dir / "inbox" / "zhengwu" / DAY.isoformat()
    drop.mkdir(parents=True)
    name = {"relative": "../../../../../elsewhere/messages.csv", "absolute": str(outside),
            "symlink": "messages.csv"}[case]
    if case == "symlink":
        (drop / "messages.csv").symlink_to(outside)
    assert (drop / name).resolve() == outside  # the manifest really reaches the outside file
    entry = {"name": name, "sha256": hashlib.sha256(body).hexdigest(), "rows": 1, "encoding": "utf-8"}
    (drop / "manifest.json").write_text(json.dumps({"files": [entry]}), encoding="utf-8")
    return name, drop / "manifest.json"


@pytest.mark.parametrize("case", ["relative", "absolute", "symlink"])
def test_file_drop_names_outside_the_drop_folder_are_rejected_whole(spark, tmp_path, case):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path / "home")})
    name, manifest = _outside_drop(settings, tmp_path, case)
    spec = load_registry()["zhengwu"]
    with pytest.raises(ManifestMismatch) as err:
        extract_object(spark, settings, spec, spec.objects["messages"], Window.for_date(DAY))
    assert str(err.value) == (f"source zhengwu.messages: manifest {manifest} names {name!r}, which resolves outside "
                              f"the drop folder {manifest.parent}: rejected")


def test_file_drop_may_use_a_subfolder_or_a_symlink_within_the_drop(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    body = (HEADER + "1,A1,主题,2019/2/28 11:25:05,详情,0,1\n").encode("utf-8")
    drop = settings.sources_dir / "inbox" / "zhengwu" / DAY.isoformat()
    (drop / "files").mkdir(parents=True)
    (drop / "files" / "messages.csv").write_bytes(body)
    (drop / "messages.csv").symlink_to(drop / "files" / "messages.csv")
    entry = {"name": "messages.csv", "sha256": hashlib.sha256(body).hexdigest(), "rows": 1, "encoding": "utf-8"}
    (drop / "manifest.json").write_text(json.dumps({"files": [entry]}), encoding="utf-8")
    spec = load_registry()["zhengwu"]
    got = extract_object(spark, settings, spec, spec.objects["messages"], Window.for_date(DAY))
    assert [r.message_id for r in got.frame.collect()] == ["1"]


def test_registry_column_types_are_checked(tmp_path):
    base = "source: x\ndepartment: d\nkind: file_drop\nobjects:\n  t:\n    business_key: [k]\n    columns: [k, n]\n"
    (tmp_path / "x.yaml").write_text(base + "    types: {n: integer, k: code}\n", encoding="utf-8")
    assert load_registry(tmp_path)["x"].objects["t"].types == {"n": "integer", "k": "code"}
    (tmp_path / "x.yaml").write_text(base + "    types: {n: int}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^source registry file x\.yaml: type of x\.t\.n must be one of text, code, "
                                         r"integer, decimal, date, timestamp, not 'int'$"):
        load_registry(tmp_path)
    (tmp_path / "x.yaml").write_text(base + "    types: {amount: decimal}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^source registry file x\.yaml: types of x\.t name 'amount', "
                                         r"not a column of x\.t \(k, n\)$"):
        load_registry(tmp_path)
    (tmp_path / "x.yaml").write_text(base + "    types: [n]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^source registry file x\.yaml: types of x\.t must be a map"):
        load_registry(tmp_path)
    registry = load_registry()
    assert registry["zhengwu"].objects["messages"].types == {"votes_against": "integer", "votes_for": "integer",
                                                             "message_time": "timestamp"}


RESIDENT_HEADER = ["resident_no", "postcode", "age", "income", "born", "note"]


def _residents_drop(settings, cells: list[list]):
    """A file-drop source ``dept.residents`` (registered in its own registry folder) delivered as .xlsx (no
    header map: header = raw columns), typed age integer, income decimal, born date; postcode and note are
    text (undeclared)."""
    import io

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(RESIDENT_HEADER)
    for row in cells:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    drop = settings.sources_dir / "inbox" / "dept" / DAY.isoformat()
    drop.mkdir(parents=True, exist_ok=True)
    (drop / "residents.xlsx").write_bytes(data)
    entry = {"name": "residents.xlsx", "sha256": hashlib.sha256(data).hexdigest(), "rows": len(cells),
             "encoding": None, "format": "xlsx"}
    (drop / "manifest.json").write_text(json.dumps({"files": [entry]}), encoding="utf-8")
    registry = settings.sources_dir.parent / "registry"
    registry.mkdir(exist_ok=True)
    (registry / "dept.yaml").write_text(
        "source: dept\ndepartment: d\nkind: file_drop\ninbox: inbox/dept\nobjects:\n  residents:\n"
        f"    file: residents.xlsx\n    business_key: [resident_no]\n    columns: [{', '.join(RESIDENT_HEADER)}]\n"
        "    types: {age: integer, income: decimal, born: date}\n", encoding="utf-8")
    return load_registry(registry)["dept"]


def test_xlsx_number_cells_are_accepted_by_column_type_not_by_name(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _residents_drop(settings, [
        ["R1", "010010", 42, 1234.5, dt.datetime(1983, 1, 2), "x"],
        ["R2", 10010, 42, 1234.5, dt.datetime(1983, 1, 2), None],    # a postcode typed as a number: lost its zero
        ["R3", "010020", "41", None, "1984-02-03", 7],                # a number cell in the free-text note
        ["R4", "010030", 40, 10, dt.datetime(1985, 3, 4, 5, 6), "y"],
        ["R5", "010040", dt.datetime(2025, 1, 1), 1, 12345, "z"],    # a date cell in age, a number in born
    ])
    got = extract_object(spark, settings, spec, spec.objects["residents"], Window.for_date(DAY))
    assert [tuple(r) for r in got.frame.collect()] == [
        ("R1", "010010", "42", "1234.5", "1983-01-02", "x", 1),
        ("R4", "010030", "40", "10", "1985-03-04 05:06:00", "y", 4)]
    assert got.rejected == [
        (2, "number cell in postcode (registry type text): leading zeros or digits may be lost"),
        (3, "number cell in note (registry type text): leading zeros or digits may be lost"),
        (5, "date cell in age (registry type integer): the delivered text is lost; "
            "number cell in born (registry type date): leading zeros or digits may be lost")]
    assert got.rows_source == 5 == 2 + len(got.rejected)


def test_xlsx_rejections_reconcile_in_the_batch_and_the_ledger(spark, tmp_path):
    from govlake.extract.raw import extract_batch, record_batches

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    spec = _residents_drop(settings, [["R1", "010010", 42, None, None, None], ["R2", 10010, 42, None, None, None],
                                      ["R3", "010030", 40, None, None, None]])
    result = extract_batch(spark, settings, spec, spec.objects["residents"], Window.for_date(DAY))
    record_batches(spark, settings, [result])
    ledger = spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger")).collect()
    assert [(r.status, r.rows_source, r.rows_read, r.rows_written, r.rows_rejected) for r in ledger] == [
        ("written", 3, 2, 2, 1)]
    assert ledger[0].rows_source == ledger[0].rows_read + ledger[0].rows_rejected
    assert json.loads(ledger[0].details)["rejected"] == [
        {"row": 2, "reason": "number cell in postcode (registry type text): leading zeros or digits may be lost"}]
    raw = spark.read.format("delta").load(settings.table_path("raw", "dept_residents"))
    assert sorted((r.resident_no, r.postcode, r._row_number) for r in raw.collect()) == [
        ("R1", "010010", 1), ("R3", "010030", 3)]


def test_jsonl_drop_keeps_nested_values_as_delivered(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    lines = ['{"办件编号": "ZW1", "评价等级": 5, "评价渠道": ["网上", 2], "评价时间": 1.50, '
             '"评价内容": {"score": 5.10, "big": 12345678901234567890, "tags": [1, "a", {"x": null}], "ok": true}}',
             '{"办件编号":"ZW2","评价等级":{},"评价渠道":[],"评价时间":"x","评价内容":{ "s" :1e3 }}']
    _eval_drop(settings, "evaluations.jsonl", ("\n".join(lines) + "\n").encode(), 2, fmt="jsonl")
    spec = load_registry()["zhengwu"]
    rows = read_object(spark, settings, spec, spec.objects["evaluations"], Window.for_date(DAY)).collect()
    assert [(r.app_no, r.level, r.channel, r.evaluated_at, r.content) for r in rows] == [
        ("ZW1", "5", '["网上", 2]', "1.50",
         '{"score": 5.10, "big": 12345678901234567890, "tags": [1, "a", {"x": null}], "ok": true}'),
        ("ZW2", "{}", "[]", "x", '{ "s" :1e3 }')]


def test_mongo_nested_values_keep_numbers_as_numbers(spark):
    from bson import Decimal128, json_util

    obj = ObjectSpec(name="events", business_key=("event_no",),
                     projection={"event_no": "$.event_no", "score": "$.score", "tags": "$.tags"})
    line = ('{"_id": "e1", "event_no": "E1", "score": {"n": 5, "w": 5.25, "d": {"$numberDecimal": "5.10"}}, '
            '"tags": [1, "a"]}')
    frame = sources.documents_to_frame(spark, obj, [json_util.loads(line)])
    row = frame.collect()[0]
    assert (row.score, row.tags) == ('{"n":5,"w":5.25,"d":{"$numberDecimal":"5.10"}}', '[1,"a"]')
    assert json.loads(row.document)["score"] == {"n": 5, "w": 5.25, "d": {"$numberDecimal": "5.10"}}
    assert isinstance(json_util.loads(row.document)["score"]["d"], Decimal128)


def test_registry_unified_blocks_are_typed():
    registry = load_registry()
    hukou = registry["hukou"].objects["persons"].unified
    assert isinstance(hukou, sources.UnifiedRules)
    assert (hukou.entity, hukou.priority, hukou.record_key, hukou.watermark) == ("person", 1, ("person_no",),
                                                                                "updated_at")
    assert hukou.columns["sex"] == "sex_code" and hukou.roles == {}
    assert (hukou.registration_map, hukou.marital_map, hukou.date_formats) == (
        {"户籍": "户籍", "流动": "流动"}, None, ("yyyyMMdd",))
    births = registry["health"].objects["births"].unified
    assert births is not None and births.columns == {} and births.date_formats is None
    assert births.roles["mother"] == sources.PersonRole(
        columns={"id_no": "mother_id_no", "name": "mother_name", "community_code": "community_code"},
        values={"sex": "2"})
    assert births.relationships[0] == sources.RelationshipRule(
        relationship="parent_child", from_role="mother", to_role="child", basis="出生医学证明", valid_from="birth_date")
    assert sorted(f"{s}.{o.name}" for s, spec in registry.items() for o in spec.objects.values() if o.unified) == [
        "civil.elderly_subsidy", "civil.marriages", "civil.subsistence_allowance", "health.births", "health.deaths",
        "hrss.employment", "hrss.social_insurance", "hukou.persons", "zhengwu.applications"]


_UNIFIED_SOURCE = """source: x
department: d
kind: sql
objects:
  people:
    business_key: [pid]
    watermark: updated_at
    columns: [pid, id_no, name, husband_id_no, wife_id_no, married_on, updated_at]
    unified:
{block}
"""


@pytest.mark.parametrize("block, field", [
    ("      entity: person\n      columns: {id_no: id_no, shoe_size: name}\n",
     "x.people: unified.columns: role 'shoe_size' must be one of id_no"),
    ("      entity: person\n      columns: {id_no: idcard}\n",
     "x.people: unified.columns: id_no: 'idcard' is not a delivered column"),
    ("      entity: person\n      priority: first\n      columns: {id_no: id_no}\n",
     "x.people: unified.priority must be an integer, not 'first'"),
    ("      entity: person\n      columns: {id_no: id_no}\n      sexmap: {M: '1'}\n",
     "x.people: unified: unknown field(s) sexmap"),
    ("      entity: person\n      roles:\n        husband: {columns: {id_no: husband_id_no}}\n"
     "        wife: {columns: {id_no: wife_id_no}}\n"
     "      relationships: [{relationship: spouse, from: husband, to: bride}]\n",
     "x.people: unified.relationships[0].to must be a role of unified.roles (husband, wife), not 'bride'"),
])
def test_registry_rejects_a_malformed_unified_block(tmp_path, block, field):
    (tmp_path / "x.yaml").write_text(_UNIFIED_SOURCE.format(block=block), encoding="utf-8")
    with pytest.raises(ValueError, match="source registry file x.yaml: ") as err:
        load_registry(tmp_path)
    assert field in str(err.value)


def test_registry_unified_block_defaults_to_the_objects_key_and_watermark(tmp_path):
    block = "      entity: person\n      columns: {name: name}\n"
    (tmp_path / "x.yaml").write_text(_UNIFIED_SOURCE.format(block=block), encoding="utf-8")
    rules = load_registry(tmp_path)["x"].objects["people"].unified
    assert rules == sources.UnifiedRules(entity="person", record_key=("pid",), watermark="updated_at",
                                         columns={"name": "name"})
