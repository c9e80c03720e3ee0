"""Tests of the sample-municipality generator (jobs.sample): determinism, ground truth, faults, file drop."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from bson import json_util
from shapely.geometry import Point, shape

from jobs.codes import id_check_char
from jobs.config import REFERENCE_DIR
from jobs.sample import faults as flt
from jobs.sample.generate import generate
from jobs.sample.population import allocate, short_community_name

RESIDENTS, SEED, DAY = 150, 7, date(2025, 6, 30)
SKELETON = {
    ("hukou", "persons", k) for k in flt.PERSON_FAULTS
} | {("civil", "subsistence_allowance", k) for k in flt.CIVIL_FAULTS} | {
    ("wangge", "events", k) for k in flt.EVENT_FAULTS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Two runs with the same arguments into two folders, and the counts of the first."""
    a, b = tmp_path_factory.mktemp("sample-a"), tmp_path_factory.mktemp("sample-b")
    counts = generate(RESIDENTS, SEED, DAY, "embedded", a)
    generate(RESIDENTS, SEED, DAY, "embedded", b)
    return a, b, counts


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes(runs):
    a, b, _ = runs
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted([
        "civil.sqlite", "grid_events.jsonl", "hukou.sqlite", "inbox/zhengwu/2025-06-30/manifest.json",
        "inbox/zhengwu/2025-06-30/messages.csv", "truth/faults.csv", "truth/grids.csv", "truth/persons.csv",
        "truth/summary.json"])
    assert [k for k in fa if fa[k] != fb[k]] == []


def test_other_seed_gives_other_people(runs, tmp_path):
    a, _, _ = runs
    generate(RESIDENTS, SEED + 1, DAY, "embedded", tmp_path)
    assert (tmp_path / "truth" / "persons.csv").read_bytes() != (a / "truth" / "persons.csv").read_bytes()


def test_counts_match_tables(runs):
    a, _, counts = runs
    with sqlite3.connect(a / "hukou.sqlite") as con:
        n_persons = con.execute("SELECT count(*) FROM persons").fetchone()[0]
        n_households = con.execute("SELECT count(*) FROM households").fetchone()[0]
        pk = [r[1] for r in con.execute("PRAGMA table_info(persons)") if r[5]]
    with sqlite3.connect(a / "civil.sqlite") as con:
        n_cases = con.execute("SELECT count(*) FROM subsistence_allowance").fetchone()[0]
    truth = _csv(a / "truth" / "persons.csv")
    dups = [f for f in _csv(a / "truth" / "faults.csv") if f["fault_kind"] == "duplicate_row"]
    assert len(truth) == RESIDENTS == counts["truth.persons"]
    assert n_persons == counts["hukou.persons"] == RESIDENTS + len(dups)
    assert n_households == counts["hukou.households"] == len({t["household_no"] for t in truth})
    assert n_cases == counts["civil.subsistence_allowance"] >= 3
    assert counts["wangge.events"] == RESIDENTS // 10 == counts["zhengwu.messages"]
    assert pk == []  # persons has no primary key: duplicate rows are a fault kind


def test_truth_ids_are_valid_gb11643(runs):
    truth = _csv(runs[0] / "truth" / "persons.csv")
    for t in truth:
        i = t["id_no"]
        assert len(i) == 18 and i[:17].isdigit(), i
        assert id_check_char(i[:17]) == i[17], i
        assert i[:6] == t["district_code"] and i[6:14] == t["birth_date"].replace("-", ""), i
        assert int(i[16]) % 2 == (1 if t["sex_code"] == "1" else 0), i
    assert len({t["id_no"] for t in truth}) == len(truth)


def test_delivered_persons_equal_truth_unless_faulted(runs):
    a = runs[0]
    truth = {t["person_key"]: t for t in _csv(a / "truth" / "persons.csv")}
    faults = {(f["row_key"], f["column"]): f for f in _csv(a / "truth" / "faults.csv") if f["source"] == "hukou"}
    with sqlite3.connect(a / "hukou.sqlite") as con:
        rows = con.execute("SELECT person_no, id_no, sex_code, birth_date, ethnic_code, name FROM persons").fetchall()
    checked = 0
    for person_no, id_no, sex, birth, ethnic, name in rows:
        t = truth[person_no]
        for column, delivered, true in (("id_no", id_no, t["id_no"]), ("sex_code", sex, t["sex_code"]),
                                        ("birth_date", birth, t["birth_date"].replace("-", "")),
                                        ("ethnic_code", ethnic, t["ethnic_code"]), ("name", name, t["name"])):
            f = faults.get((person_no, column))
            if f is None:
                assert delivered == true, (person_no, column)
            else:
                assert (f["original_value"], f["delivered_value"]) == (true, delivered or "")
                assert delivered != true
                checked += 1
    assert checked == sum(1 for k in faults if k[1] != "*")


def test_every_skeleton_fault_kind_is_present(runs):
    faults = _csv(runs[0] / "truth" / "faults.csv")
    assert {(f["source"], f["table"], f["fault_kind"]) for f in faults} == SKELETON
    summary = json.loads((runs[0] / "truth" / "summary.json").read_text(encoding="utf-8"))
    assert sum(sum(v.values()) for v in summary["faults"].values()) == len(faults)
    assert (summary["seed"], summary["residents"], summary["logical_date"]) == (SEED, RESIDENTS, "2025-06-30")


def test_fault_values_have_the_expected_shapes(runs):
    faults = _csv(runs[0] / "truth" / "faults.csv")
    by_kind = {}
    for f in faults:
        by_kind.setdefault((f["table"], f["fault_kind"]), []).append(f)
    for f in by_kind[("persons", "id_lowercase_x")]:
        assert f["original_value"].endswith("X") and f["delivered_value"] == f["original_value"][:17] + "x"
    for f in by_kind[("persons", "id_null")]:
        assert f["delivered_value"] == ""
    for f in by_kind[("persons", "id_float_mangled")]:
        assert f["delivered_value"] == f"{float(f['original_value']):.8E}" and "E+17" in f["delivered_value"]
    for f in by_kind[("subsistence_allowance", "id_15_digit")]:
        assert len(f["delivered_value"]) == 15 and int(f["original_value"][6:10]) < 1984
    for f in by_kind[("persons", "name_dot_variant")]:
        assert "·" in f["original_value"]
        assert f["delivered_value"] in (f["original_value"].replace("·", "."), f["original_value"].replace("·", "•"))


def test_truth_points_lie_in_their_district(runs):
    geo = json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    polygons = {f["properties"]["gb"][3:]: shape(f["geometry"]) for f in geo["features"]}
    for t in _csv(runs[0] / "truth" / "persons.csv"):
        assert polygons[t["district_code"]].contains(Point(float(t["lng"]), float(t["lat"]))), t["person_key"]
        assert t["community_code"][:6] == t["district_code"]


def test_grid_events_documents(runs):
    a = runs[0]
    docs = [json_util.loads(line, json_options=json_util.RELAXED_JSON_OPTIONS)
            for line in (a / "grid_events.jsonl").read_text(encoding="utf-8").splitlines()]
    faults = {f["row_key"]: f for f in _csv(a / "truth" / "faults.csv") if f["source"] == "wangge"}
    first = datetime(2025, 4, 7, 16, 0, tzinfo=timezone.utc)  # 2025-04-08 00:00 Asia/Shanghai
    last = datetime(2025, 6, 30, 16, 0, tzinfo=timezone.utc)
    for d in docs:
        assert first <= d["reported_at"].replace(tzinfo=timezone.utc) < last
        assert d["event_no"].startswith("GE") and len(d["event_no"]) == 10
        assert d["status"] == d["status_history"][-1]["status"]
        assert (d["closed_at"] is not None) == (d["status"] == "已结案")
        f = faults.get(d["event_no"])
        if f is None:
            assert isinstance(d["category"], dict) and isinstance(d["location"]["grid_code"], str)
            assert d["location"]["grid_code"][:12] == d["location"]["community_code"]
            assert d["reporter"]["worker_id"] == "W" + d["location"]["grid_code"]
        elif f["fault_kind"] == "event_outside_grid":
            assert d["location"]["grid_code"] is None
    assert len({d["_id"] for d in docs}) == len(docs)


def test_file_drop_manifest_matches(runs):
    folder = runs[0] / "inbox" / "zhengwu" / "2025-06-30"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    data = (folder / "messages.csv").read_bytes()
    with (folder / "messages.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert manifest["department"] == "zhengwu" and manifest["logical_date"] == "2025-06-30"
    assert manifest["files"] == [{"name": "messages.csv", "sha256": hashlib.sha256(data).hexdigest(),
                                  "rows": len(rows) - 1, "encoding": "utf-8"}]
    assert rows[0] == ["留言编号", "留言用户", "留言主题", "留言时间", "留言详情", "反对数", "点赞数"]
    assert any("-" in r[3] for r in rows[1:]) and any("/" in r[3] for r in rows[1:])


def test_fault_helpers_exact_values():
    assert flt.float_mangled("130102199001011234") == "1.30102199E+17"
    assert flt.bad_checksum("11010519491231002X") == "110105194912310029"
    assert flt.legacy_15("11010519491231002X") == "110105491231002"
    assert flt.impossible_day(1981, 2) == (2, 30) and flt.impossible_day(1981, 4) == (4, 31)
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(7, [5.0, 0.0, 2.0]) == [5, 0, 2]
    assert short_community_name("棉一东社区居民委员会") == "棉一东社区"
    assert short_community_name("东营村民委员会") == "东营村"
    assert short_community_name("南高基村委会") == "南高基村"


@pytest.mark.servers
def test_servers_target(tmp_path):
    pg_url, mongo_url = os.environ.get("GOVLAKE_PG_URL"), os.environ.get("GOVLAKE_MONGO_URL")
    if not (pg_url and mongo_url):
        pytest.skip("GOVLAKE_PG_URL / GOVLAKE_MONGO_URL not set")
    from pymongo import MongoClient
    from sqlalchemy import create_engine, text

    counts = generate(60, SEED, DAY, "servers", tmp_path, pg_url=pg_url, mongo_url=mongo_url)
    counts = generate(60, SEED, DAY, "servers", tmp_path, pg_url=pg_url, mongo_url=mongo_url)  # rerun replaces
    engine = create_engine(pg_url)
    with engine.connect() as con:
        assert con.execute(text("SELECT count(*) FROM hukou.persons")).scalar() == counts["hukou.persons"]
        assert con.execute(text("SELECT count(*) FROM civil.subsistence_allowance")).scalar() == \
            counts["civil.subsistence_allowance"]
        assert con.execute(text("SELECT data_type FROM information_schema.columns WHERE table_schema='hukou' "
                                "AND table_name='persons' AND column_name='updated_at'")).scalar() == \
            "timestamp without time zone"
    engine.dispose()
    client = MongoClient(mongo_url, tz_aware=True)
    try:
        assert client["wangge"]["events"].count_documents({}) == counts["wangge.events"]
    finally:
        client.close()
    assert (tmp_path / "inbox" / "zhengwu" / "2025-06-30" / "manifest.json").exists()
    assert not (tmp_path / "hukou.sqlite").exists()
