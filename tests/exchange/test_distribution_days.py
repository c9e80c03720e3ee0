"""Issue #4, "Done when": the generator's day N+1 changes arrive in raw and nothing else, against the real
PostgreSQL and FerretDB servers; two consecutive daily windows equal one two-day window; the suite of the
household registry's residence changes (户口迁移登记).

The sample is loaded beside the standard one, never over it: PostgreSQL database ``departments_n1`` (created
here) and FerretDB databases ``n1_wangge`` / ``n1_zhengwu``, reached through the sources' Airflow connections
(``AIRFLOW_CONN_GOVLAKE_*``), so a concurrent DAG run on ``departments`` / ``wangge`` / ``zhengwu`` is untouched.
"""
from __future__ import annotations

import csv
import datetime as dt
from collections import Counter

import pytest

from govlake.core.config import Settings

DAY = dt.date(2025, 6, 30)
NEXT = DAY + dt.timedelta(days=1)
RESIDENTS = 40
SEED = 20250630
PG_DATABASE = "departments_n1"
MONGO_PREFIX = "n1_"
#: The departments the generator changes on day N+1 (hukou, health, address: PostgreSQL; wangge: FerretDB)
SOURCES = ["address", "health", "hukou", "wangge"]
#: Raw table -> business key of their objects.
KEYS = {"address_standard_address": "address_id", "health_births": "cert_no", "health_deaths": "death_no",
        "hukou_households": "household_no", "hukou_persons": "person_no", "hukou_residence_changes": "change_no",
        "wangge_events": "event_no"}
#: Rows of each raw table's day N+1 partition for this sample (40 residents, seed 20250630).
EXPECTED_N1 = {"address_standard_address": 1, "health_births": 1, "health_deaths": 1, "hukou_households": 1,
               "hukou_persons": 6, "hukou_residence_changes": 4, "wangge_events": 1}


def _separate_servers(pg_url: str, mongo_url: str, monkeypatch) -> str:
    """(Re)create the PostgreSQL database ``departments_n1`` on the test server; point every source's Airflow
    connection at it (SQL sources) or at its ``n1_`` MongoDB database (document sources). Returns its
    SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    from govlake.extract.registry import load_registry

    url = make_url(pg_url)
    libpq = url.set(drivername="postgresql")
    with psycopg.connect(libpq.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    own = libpq.set(database=PG_DATABASE).render_as_string(hide_password=False)
    base = mongo_url.split("?", 1)[0].rstrip("/")
    for spec in load_registry().values():
        for obj in spec.objects.values():
            kind = obj.kind or spec.kind
            var = f"AIRFLOW_CONN_{(obj.connection_id or spec.connection_id or '').upper()}"
            if kind == "sql":
                monkeypatch.setenv(var, own)
            elif kind == "mongo":
                monkeypatch.setenv(var, f"{base}/{MONGO_PREFIX}{obj.database or spec.database or spec.source}")
    return url.set(database=PG_DATABASE).render_as_string(hide_password=False)


def _changes(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.servers
def test_day_n_plus_1_changes_of_the_generator_arrive_and_nothing_else(spark, tmp_path, pg_url, mongo_url,
                                                                        monkeypatch):
    from govlake.extract.stage import run_extract
    from sample.generate import generate

    own_pg = _separate_servers(pg_url, mongo_url, monkeypatch)
    monkeypatch.delenv("GOVLAKE_EXTRACT_MODE", raising=False)
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    sample = dict(residents=RESIDENTS, seed=SEED, logical_date=DAY, target="servers", out=settings.sources_dir,
                  pg_url=own_pg, mongo_url=mongo_url, mongo_prefix=MONGO_PREFIX)

    # day N: the departments hold day N; the first run of each object reads everything before the window end
    day_n = generate(**sample)
    first = {f"{b['source']}_{b['object']}": b for b in run_extract(spark, settings, DAY, sources=SOURCES)}
    assert {t: (b["mode"], b["rows_read"], b["rows_written"]) for t, b in first.items()} == {
        t: ("full", day_n[t.replace("_", ".", 1)], day_n[t.replace("_", ".", 1)]) for t in KEYS}

    # day N+1: the same sample generated one day further (its day N rows are identical), loaded over day N
    generate(**sample, days=2)
    truth = _changes(settings.sources_dir / "truth" / "changes.csv")
    second = {f"{b['source']}_{b['object']}": b for b in run_extract(spark, settings, NEXT, sources=SOURCES)}
    assert sorted(second) == sorted(KEYS)
    raw = {t: [r[0] for r in spark.read.format("delta").load(settings.table_path("raw", t))
               .where(f"_logical_date = DATE'{NEXT}'").select(KEYS[t]).collect()] for t in KEYS}
    for table in KEYS:
        mine = [c for c in truth if f"{c['source']}_{c['table']}" == table]
        changed = {c["row_key"] for c in mine if c["op"] != "delete"}
        # exactly the rows inserted or updated that day, each once; nothing else of the day N state
        assert Counter(raw[table]) == Counter(changed), table
        assert not {c["row_key"] for c in mine if c["op"] == "delete"} & set(raw[table]), table  # hard deletes
        b = second[table]
        assert (b["mode"], b["rows_source"], b["rows_read"], b["rows_written"], b["rows_rejected"]) == (
            "incremental", len(changed), len(changed), len(changed), 0), table
    # every one of these tables changes on day N+1, so the equalities above are not vacuous
    assert {t: len(raw[t]) for t in KEYS} == EXPECTED_N1
    assert sum(1 for c in truth if c["op"] == "delete") > 0


@pytest.mark.servers
def test_two_consecutive_daily_windows_equal_one_two_day_window_in_ferretdb(spark, tmp_path, mongo_client,
                                                                            mongo_url):
    """BSON dates are instants: documents exactly at the Asia/Shanghai midnights fall in one window only."""
    from govlake.extract import raw as sources_raw
    from govlake.extract.registry import ObjectSpec, SourceSpec, Window, extract_object

    coll = mongo_client[f"{MONGO_PREFIX}windows"]["events"]
    coll.drop()
    midnight = dt.datetime(2025, 6, 29, 16, 0)  # 2025-06-30 00:00 Asia/Shanghai, stored as UTC
    at = [midnight - dt.timedelta(milliseconds=1), midnight, midnight + dt.timedelta(hours=23, minutes=59),
          midnight + dt.timedelta(days=1), midnight + dt.timedelta(days=1, hours=12),
          midnight + dt.timedelta(days=2, milliseconds=-1), midnight + dt.timedelta(days=2)]
    coll.insert_many([{"_id": f"e{k}", "event_no": f"E{k}", "updated_at": t} for k, t in enumerate(at)])
    spec = SourceSpec(source="grid", department="d", kind="mongo", connection_id="govlake_test_grid",
                      database=f"{MONGO_PREFIX}windows",
                      objects={"events": ObjectSpec(name="events", business_key=("event_no",), watermark="updated_at",
                                                    projection={"event_no": "$.event_no"})})
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_GOVLAKE_TEST_GRID", mongo_url)

        def keys(window):
            got = extract_object(spark, settings, spec, spec.objects["events"], window)
            try:
                return sorted(r.event_no for r in got.frame.collect())
            finally:
                sources_raw.delete_path(spark, got.staging)  # the staged chunks, as extract_batch does

        day1, day2 = keys(Window.for_date(DAY)), keys(Window.for_date(NEXT))
        both = keys(Window(DAY, Window.for_date(DAY).start, Window.for_date(NEXT).end))
    assert (day1, day2) == (["E1", "E2"], ["E3", "E4", "E5"])
    assert sorted(day1 + day2) == both


def test_residence_changes_suite_rows(spark):
    """The suite of 户口迁移登记 on delivered rows: keys, GB 11643 IDs, GB/T 2260 communities, YYYYMMDD dates."""
    from govlake.quality.rules import evaluate, load_suite, split

    suite = load_suite("raw.hukou_residence_changes")
    cols = ("change_no", "person_no", "id_no", "from_community_code", "to_community_code", "move_date", "change_type")
    rows = [
        ("QY26503580", "HK14665794", "130127196511220657", "130183107217", "130127101215", "20250614", "市内迁移"),
        ("QY26503581", "HK14665773", "130104198606100897", "130104008004", "130102014007", "20250701", "市内迁移"),
        ("QY26503582", "HK14665774", "１３０１０４２００７０５１７６４９２", "110105001001", "130102014007", "20250701",
         "迁入"),
        ("QY26503583", "HK14665775", "130104201604029084", "130104008004", "130102999999", "20250230", "市内迁移"),
        ("QY26503580", "HK14665794", "130127196511220657", "130183107217", "130127101215", "20250614", "户口迁移"),
        (None, None, None, None, "110105001001", None, "迁出"),
    ]
    df = spark.createDataFrame([(*r, k) for k, r in enumerate(rows, start=1)],
                               ", ".join(f"{c} string" for c in cols) + ", _row_number long")
    evaluated = evaluate(df, suite).cache()
    got = {r._row_number: sorted(x.split(".", 1)[1] for x in r._failed_rules) for r in evaluated.collect()}
    assert got == {
        1: [],
        2: ["id_no.gb11643"],  # check character 7 is wrong (8 is right)
        3: ["id_no.canonical"],  # full-width digits: flagged, kept; an origin outside the city is a valid origin
        4: ["move_date.yyyymmdd", "to_community_code.gbt2260"],  # 2月30日; 999 is not an NBS community
        5: ["change_no.unique", "change_type.in_set"],  # the worse copy of QY26503580 goes
        6: ["change_no.not_null", "from_community_code.not_null", "id_no.not_null", "move_date.not_null",
            "person_no.not_null", "to_community_code.shijiazhuang"],
    }
    accepted, quarantined = split(evaluated, suite)
    assert (sorted(r._row_number for r in accepted.collect()), quarantined.count()) == ([1, 3], 4)
    evaluated.unpersist()
