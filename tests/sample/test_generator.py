"""Tests of the sample-municipality generator (sample): determinism, ground truth, faults, file drop."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bson import json_util
from shapely.geometry import Point, shape

from govlake.codes.code_lists import id_check_char
from govlake.core.config import REFERENCE_DIR
from sample import faults as flt
from sample import more_departments as more
from sample import more_faults as mflt
from sample import writers
from sample.generate import generate
from sample.population import allocate, id_division_code, short_community_name

RESIDENTS, SEED, DAY = 150, 7, date(2025, 6, 30)
SKELETON = {
    ("hukou", "persons", k) for k in flt.PERSON_FAULTS
} | {("civil", "subsistence_allowance", k) for k in flt.CIVIL_FAULTS} | {
    ("wangge", "events", k) for k in flt.EVENT_FAULTS}
MORE = {("health", "births", k) for k in mflt.BIRTH_FAULTS} | {("health", "deaths", k) for k in mflt.DEATH_FAULTS} | {
    ("hrss", "employment", k) for k in mflt.EMPLOYMENT_FAULTS} | {
    ("hrss", "social_insurance", k) for k in mflt.INSURANCE_FAULTS} | {
    ("address", "standard_address", k) for k in mflt.ADDRESS_FAULTS} | {
    ("zhengwu", "applications", k) for k in mflt.APPLICATION_FAULTS} | {
    ("zhengwu", "evaluations", k) for k in mflt.DROP_FAULTS}


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
        "address.sqlite", "applications.jsonl", "civil.sqlite", "grid_events.jsonl", "health.sqlite",
        "hrss.sqlite", "hukou.sqlite", "inbox/zhengwu/2025-06-30/evaluations.csv",
        "inbox/zhengwu/2025-06-30/manifest.json", "inbox/zhengwu/2025-06-30/messages.csv",
        "reference/grid_boundaries.geojson", "truth/changes.csv",
        "truth/deceased.csv", "truth/faults.csv", "truth/grids.csv", "truth/households.csv", "truth/links.csv",
        "truth/persons.csv", "truth/summary.json"])
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
        assert i[:6] == id_division_code(t["district_code"], date.fromisoformat(t["birth_date"])), i
        assert i[6:14] == t["birth_date"].replace("-", ""), i
        assert int(i[16]) % 2 == (1 if t["sex_code"] == "1" else 0), i
    assert len({t["id_no"] for t in truth}) == len(truth)


def test_ids_issued_before_the_2014_division_change_keep_the_former_code():
    """GB 11643 IDs never change: people born in 藁城/鹿泉/栾城 before the 2014 change carry 130182/130185/130124,
    which the code pack accepts as historical GB/T 2260 codes."""
    from govlake.codes.code_lists import division_status, id_errors

    assert id_division_code("130109", date(2014, 9, 8)) == "130182"
    assert id_division_code("130109", date(2014, 9, 9)) == "130109"
    assert id_division_code("130110", date(1950, 1, 1)) == "130185"
    assert id_division_code("130111", date(2000, 1, 1)) == "130124"
    assert id_division_code("130102", date(1950, 1, 1)) == "130102"
    assert [division_status(c) for c in ("130182", "130185", "130124", "130109")] == [
        "historical", "historical", "historical", "current"]
    body = "130182" + "19800101" + "001"
    assert id_errors(body + id_check_char(body)) == []


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


def test_every_fault_kind_is_present(runs):
    faults = _csv(runs[0] / "truth" / "faults.csv")
    assert {(f["source"], f["table"], f["fault_kind"]) for f in faults} == SKELETON | MORE
    assert len({f["fault_kind"] for f in faults}) == 29
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


def test_keyless_faults_carry_a_locator_of_exactly_one_delivered_row(runs):
    """A fault that nulls the business key names its row by other delivered values (``row_locator``)."""
    faults = _csv(runs[0] / "truth" / "faults.csv")
    assert {f["fault_kind"] for f in faults if f["row_locator"]} == {"business_key_null"}
    keyless = {(f["table"], f["row_key"]): json.loads(f["row_locator"]) for f in faults if f["row_locator"]}
    assert {t for t, _ in keyless} == {"births", "applications"}
    with sqlite3.connect(runs[0] / "health.sqlite") as con:
        con.row_factory = sqlite3.Row
        births = [dict(r) for r in con.execute("SELECT * FROM births")]
    docs = [json_util.loads(line) for line in (runs[0] / "applications.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = {"births": births, "applications": [dict(d, _id=f"ObjectId({d['_id']})") for d in docs]}
    key = {"births": "cert_no", "applications": "app_no"}
    for (table, row_key), loc in keyless.items():
        assert sorted(loc) == sorted(mflt.LOCATOR_COLUMNS[("health" if table == "births" else "zhengwu", table)])
        hits = [r for r in rows[table] if all(r.get(c) == v for c, v in loc.items())]
        assert len(hits) == 1 and hits[0][key[table]] is None, (table, row_key)


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
    first = datetime(2025, 4, 7, 16, 0, tzinfo=UTC)  # 2025-04-08 00:00 Asia/Shanghai
    last = datetime(2025, 6, 30, 16, 0, tzinfo=UTC)
    for d in docs:
        assert first <= d["reported_at"].replace(tzinfo=UTC) < last
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
    evals = (folder / "evaluations.csv").read_bytes()
    eval_rows = list(csv.reader(io.StringIO(evals.decode("gbk"), newline="")))
    assert manifest["department"] == "zhengwu" and manifest["logical_date"] == "2025-06-30"
    assert manifest["files"] == [
        {"name": "messages.csv", "sha256": hashlib.sha256(data).hexdigest(), "rows": len(rows) - 1,
         "encoding": "utf-8"},
        {"name": "evaluations.csv", "sha256": hashlib.sha256(evals).hexdigest(), "rows": len(eval_rows) - 1,
         "encoding": "gbk", "format": "csv-gbk"}]
    assert eval_rows[0] == ["办件编号", "评价等级", "评价渠道", "评价时间", "评价内容"] and len(eval_rows) > 1
    with pytest.raises(UnicodeDecodeError):
        evals.decode("utf-8")
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


NEW_TABLES = {
    "health.sqlite": {
        "births": ["cert_no", "child_name", "child_sex", "birth_date", "birth_time", "birth_weight_g",
                   "gestation_weeks", "hospital_name", "mother_name", "mother_id_no", "father_name", "father_id_no",
                   "community_code", "updated_at"],
        "deaths": ["death_no", "deceased_name", "id_no", "sex", "birth_date", "death_date", "death_place",
                   "cause_icd10", "community_code", "updated_at"]},
    "hrss.sqlite": {
        "employment": ["emp_no", "id_no", "name", "sex", "birth_date", "phone", "employer_name",
                       "employer_credit_code", "occupation_code", "start_date", "end_date", "community_code",
                       "updated_at"],
        "social_insurance": ["si_no", "id_no", "name", "sex", "insurance_type", "start_month", "monthly_base",
                             "status", "updated_at"]},
    "address.sqlite": {
        "standard_address": ["address_id", "full_address", "district_code", "street_code", "division_code",
                             "building_no", "unit_no", "room_no", "lng", "lat", "grid_code", "updated_at"]},
}


def _table(path: Path, table: str) -> list[dict]:
    with sqlite3.connect(path) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(f"SELECT * FROM {table}")]


def _docs(path: Path) -> list[dict]:
    return [json_util.loads(line, json_options=json_util.RELAXED_JSON_OPTIONS)
            for line in path.read_text(encoding="utf-8").splitlines()]


def test_new_department_tables_have_their_columns(runs):
    a, _, counts = runs
    for file, tables in NEW_TABLES.items():
        with sqlite3.connect(a / file) as con:
            for table, columns in tables.items():
                assert [r[1] for r in con.execute(f"PRAGMA table_info({table})")] == columns, table
                n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                assert n == counts[f"{file.split('.')[0]}.{table}"] > 0, table
    docs = _docs(a / "applications.jsonl")
    assert len(docs) == counts["zhengwu.applications"] == RESIDENTS // 10
    clean = [d for d in docs if "tmp_sync_flag" not in d and isinstance(d["submitted_at"], datetime)]
    assert sorted(clean[0]) == ["_id", "app_no", "applicant", "channel", "form", "service", "status", "steps",
                                "submitted_at", "updated_at"]
    for d in docs:
        assert d["status"] == {1: "受理中", 2: "审核中", 3: "审核中", 4: "已办结"}[len(d["steps"])]
        assert d["updated_at"] == d["steps"][-1]["at"]


def test_new_departments_follow_their_conventions(runs):
    a = runs[0]
    faults = {(f["table"], f["row_key"], f["column"]) for f in _csv(a / "truth" / "faults.csv")}
    emp = _table(a / "hrss.sqlite", "employment")
    assert {r["sex"] for r in emp if ("employment", r["emp_no"], "sex") not in faults} == {"M", "F"}
    for r in emp:
        if ("employment", r["emp_no"], "employer_credit_code") not in faults:
            assert more.credit_check_char(r["employer_credit_code"][:17]) == r["employer_credit_code"][17]
    deaths = _table(a / "health.sqlite", "deaths")
    for r in deaths:
        if ("deaths", r["death_no"], "id_no") not in faults:
            assert len(r["id_no"]) == (15 if int(r["birth_date"][:4]) < 1950 else 18), r
    truth = {t["person_key"]: t for t in _csv(a / "truth" / "persons.csv")}
    deceased = {t["person_key"] for t in _csv(a / "truth" / "deceased.csv")}
    assert len(deceased) == len(deaths) == 3
    births = _table(a / "health.sqlite", "births")
    child_links = [lk for lk in _csv(a / "truth" / "links.csv") if (lk["table"], lk["role"]) == ("births", "child")]
    assert len(child_links) == len(births)
    for lk in child_links:
        assert truth[lk["person_key"]]["birth_date"] >= "2023-07-01"
    assert {lk["person_key"] for lk in _csv(a / "truth" / "links.csv")} <= set(truth)
    for r in _table(a / "address.sqlite", "standard_address"):
        if ("standard_address", r["address_id"], "division_code") not in faults:
            assert r["division_code"][:9] == r["street_code"] and r["street_code"][:6] == r["district_code"]
            assert r["grid_code"][:12] == r["division_code"]


def test_new_fault_values_have_the_expected_shapes(runs):
    by_kind = {}
    for f in _csv(runs[0] / "truth" / "faults.csv"):
        by_kind.setdefault((f["table"], f["fault_kind"]), []).append(f)
    for f in by_kind[("standard_address", "division_code_lost_zeros")]:
        o = f["original_value"]
        assert f["delivered_value"] == o[:6] + str(int(o[6:9])) + str(int(o[9:])) != o
    for f in by_kind[("deaths", "id_embedded_space")] + by_kind[("applications", "id_embedded_space")]:
        assert f["delivered_value"].replace(" ", "") == f["original_value"] and f["delivered_value"].count(" ") == 2
    for f in by_kind[("births", "name_rare_char")] + by_kind[("applications", "name_rare_char")]:
        assert f["delivered_value"][-1] in mflt.RARE_CHARS and f["delivered_value"][:-1] == f["original_value"][:-1]
    emp = {r["emp_no"]: r for r in _table(runs[0] / "hrss.sqlite", "employment")}
    for f in by_kind[("employment", "date_order_inverted")]:
        row = emp[f["row_key"]]
        assert row["end_date"] == f["delivered_value"] and row["start_date"][:4].isdigit()
        assert date.fromisoformat(f["delivered_value"]) < date.fromisoformat(row["start_date"])
    for f in by_kind[("births", "business_key_null")]:
        assert f["delivered_value"] == "" and f["original_value"] == f["row_key"]
    rows = _table(runs[0] / "hrss.sqlite", "social_insurance")
    for f in by_kind[("social_insurance", "duplicate_across_batches")]:
        copies = [r for r in rows if r["si_no"] == f["row_key"]]
        assert len(copies) == 2 and copies[0]["updated_at"] < copies[1]["updated_at"]
        assert {k: v for k, v in copies[0].items() if k != "updated_at"} == \
            {k: v for k, v in copies[1].items() if k != "updated_at"}
    assert [f["row_key"] for f in by_kind[("evaluations", "file_gbk_encoded")]] == ["evaluations.csv"]


def test_fault_rate_is_applied_per_kind(tmp_path):
    counts = generate(400, SEED, DAY, "embedded", tmp_path, fault_rates={"phone_formatting": 0.1})
    faults = _csv(tmp_path / "truth" / "faults.csv")
    n = sum(1 for f in faults if (f["table"], f["fault_kind"]) == ("employment", "phone_formatting"))
    assert n == round(0.1 * counts["hrss.employment"])
    m = sum(1 for f in faults if (f["table"], f["fault_kind"]) == ("employment", "sex_code_mixed"))
    assert m == max(1, round(0.015 * counts["hrss.employment"]))


@pytest.fixture(scope="module")
def two_days(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample-2days")
    generate(RESIDENTS, SEED, DAY, "embedded", out, days=2)
    return out


def _updated_day(value) -> str:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    return value[:10]


SQL_KEYS = {("hukou", "persons"): "person_no", ("hukou", "households"): "household_no",
            ("hukou", "residence_changes"): "change_no",
            ("civil", "subsistence_allowance"): "case_no", ("health", "births"): "cert_no",
            ("health", "deaths"): "death_no", ("hrss", "employment"): "emp_no", ("hrss", "social_insurance"): "si_no",
            ("address", "standard_address"): "address_id"}
DOC_KEYS = {("wangge", "events"): ("grid_events.jsonl", "event_no"),
            ("zhengwu", "applications"): ("applications.jsonl", "app_no")}


def _rows(root: Path, source: str, table: str) -> list[dict]:
    if (source, table) in SQL_KEYS:
        return _table(root / f"{source}.sqlite", table)
    return _docs(root / DOC_KEYS[(source, table)][0])


def test_day_n_plus_1_changes_are_exactly_the_rows_updated_that_day(two_days):
    changes = _csv(two_days / "truth" / "changes.csv")
    assert {c["change_kind"] for c in changes} == {"birth", "death", "move", "marriage", "correction",
                                                   "event_closed", "event_new", "application_new"}
    assert {c["day"] for c in changes} == {"2025-07-01"}
    for (source, table), key in list(SQL_KEYS.items()) + [(k, v[1]) for k, v in DOC_KEYS.items()]:
        rows = _rows(two_days, source, table)
        on_day = {r[key] for r in rows if _updated_day(r["updated_at"]) == "2025-07-01"}
        recorded = {c["row_key"] for c in changes if (c["source"], c["table"]) == (source, table)
                    and c["op"] != "delete"}
        assert on_day == recorded, (source, table)
        deleted = {c["row_key"] for c in changes if (c["source"], c["table"]) == (source, table)
                   and c["op"] == "delete"}
        assert not deleted & {r[key] for r in rows}
    assert (two_days / "inbox" / "zhengwu" / "2025-07-01" / "manifest.json").is_file()
    persons_next = _csv(two_days / "truth" / "persons_2025-07-01.csv")
    births = sum(1 for c in changes if (c["change_kind"], c["table"]) == ("birth", "persons"))
    deaths = sum(1 for c in changes if (c["change_kind"], c["table"]) == ("death", "persons"))
    assert len(persons_next) == RESIDENTS + births - deaths


def test_day_n_state_is_the_same_with_or_without_day_n_plus_1(runs, two_days):
    one = runs[0]
    f1, f2 = _files(one), _files(two_days)
    for name in ("truth/persons.csv", "truth/faults.csv", "truth/links.csv", "truth/deceased.csv",
                 "inbox/zhengwu/2025-06-30/messages.csv", "inbox/zhengwu/2025-06-30/evaluations.csv",
                 "inbox/zhengwu/2025-06-30/manifest.json"):
        assert f1[name] == f2[name], name
    changes = _csv(two_days / "truth" / "changes.csv")
    for (source, table), key in list(SQL_KEYS.items()) + [(k, v[1]) for k, v in DOC_KEYS.items()]:
        changed = {c["row_key"] for c in changes if (c["source"], c["table"]) == (source, table)}
        before = [r for r in _rows(one, source, table) if r[key] not in changed]
        kept = [r for r in _rows(two_days, source, table) if _updated_day(r["updated_at"]) <= "2025-06-30"]
        assert before == kept, (source, table)


def test_two_day_runs_are_deterministic(two_days, tmp_path):
    generate(RESIDENTS, SEED, DAY, "embedded", tmp_path, days=2)
    f1, f2 = _files(two_days), _files(tmp_path)
    assert sorted(f1) == sorted(f2) and [k for k in f1 if f1[k] != f2[k]] == []


def test_drop_writers_formats():
    header, rows = ("编号", "内容"), [["1", "满意"], ["2", None]]
    stamp = datetime(2025, 6, 30)
    assert writers.drop_bytes("csv", header, rows, stamp) == "编号,内容\r\n1,满意\r\n2,\r\n".encode()
    assert writers.drop_bytes("csv-gbk", header, rows, stamp) == "编号,内容\r\n1,满意\r\n2,\r\n".encode("gbk")
    assert writers.drop_bytes("csv-gbk", header, [["3", "㛃"]], stamp).endswith(b"3,?\r\n")
    assert writers.drop_bytes("jsonl", header, rows, stamp) == \
        '{"编号": "1", "内容": "满意"}\n{"编号": "2", "内容": null}\n'.encode()
    xlsx = writers.drop_bytes("xlsx", header, rows, stamp)
    assert xlsx == writers.drop_bytes("xlsx", header, rows, stamp)  # deterministic bytes
    import zipfile
    core = zipfile.ZipFile(io.BytesIO(xlsx)).read("docProps/core.xml").decode()
    assert core.count("2025-06-30T00:00:00Z") == 2  # created and modified: no wall clock
    from openpyxl import load_workbook
    ws = load_workbook(io.BytesIO(xlsx)).active
    assert [[c.value for c in r] for r in ws.iter_rows()] == [["编号", "内容"], ["1", "满意"], ["2", None]]
    with pytest.raises(ValueError):
        writers.drop_bytes("parquet", header, rows, stamp)


def test_drop_formats_are_configurable(tmp_path):
    generate(30, SEED, DAY, "embedded", tmp_path, drop_formats={"evaluations": "xlsx", "messages": "jsonl"})
    manifest = json.loads((tmp_path / "inbox" / "zhengwu" / "2025-06-30" / "manifest.json").read_text("utf-8"))
    assert [(f["name"], f["encoding"], f["format"]) for f in manifest["files"]] == [
        ("messages.jsonl", "utf-8", "jsonl"), ("evaluations.xlsx", None, "xlsx")]
    assert not any(f["fault_kind"] == "file_gbk_encoded" for f in _csv(tmp_path / "truth" / "faults.csv"))
    with pytest.raises(ValueError):
        generate(30, SEED, DAY, "embedded", tmp_path, drop_formats={"evaluations": "pdf"})


def test_more_fault_helpers_exact_values():
    assert mflt.lost_zeros("130102001001") == "13010211"
    assert mflt.lost_zeros("130102101011") == "13010210111"
    assert mflt.spaced_id("11010519491231002X") == "110105 19491231 002X"
    assert mflt.spaced_id("110105491231002") == "110105 491231 002"
    assert [mflt.messy_phone("13812345678", k) for k in range(3)] == [
        "138 1234 5678", "１３８１２３４５６７８", " 13812345678 "]
    assert mflt.rare_name("王晓燕", 1) == "王晓䶮"
    assert mflt.zh_iso_date("2025-03-01") == "2025年3月1日"
    assert mflt.impossible_iso("1981-02-11") == "1981-02-30" and mflt.impossible_iso("1981-04-11") == "1981-04-31"
    assert more.credit_check_char("91350100M000100Y4") == "3"
    assert more.credit_check_char("91110000802100433") == "B"
    assert more.legacy_id("11010519491231002X") == "110105491231002"


@pytest.mark.servers
@pytest.mark.sample_servers
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


# ------------------------------------------------------------------ scale work (issue #3): IDs, rates, census


def _valid_id18(value) -> bool:
    return (isinstance(value, str) and len(value) == 18 and value[:17].isdigit()
            and id_check_char(value[:17]) == value[17])


def test_every_delivered_id_is_valid_unless_its_row_is_faulted(runs):
    a = runs[0]
    faulted = {(f["table"], f["row_key"]) for f in _csv(a / "truth" / "faults.csv")}
    checked = 0

    def check(table: str, key, value, allow_null: bool = False, legacy: bool = False) -> None:
        nonlocal checked
        if (table, key) in faulted or (allow_null and value is None):
            return
        ok = _valid_id18(value) or (legacy and isinstance(value, str) and len(value) == 15 and value.isdigit())
        assert ok, (table, key, value)
        checked += 1

    for r in _table(a / "hukou.sqlite", "persons"):
        check("persons", r["person_no"], r["id_no"])
    for r in _table(a / "civil.sqlite", "subsistence_allowance"):
        check("subsistence_allowance", r["case_no"], r["applicant_id_no"])
    for r in _table(a / "civil.sqlite", "elderly_subsidy"):
        check("elderly_subsidy", r["subsidy_no"], r["id_no"])
    for r in _table(a / "civil.sqlite", "marriages"):
        check("marriages", r["cert_no"], r["husband_id_no"])
        check("marriages", r["cert_no"], r["wife_id_no"])
    for r in _table(a / "health.sqlite", "births"):
        check("births", r["cert_no"], r["mother_id_no"], allow_null=True)
        check("births", r["cert_no"], r["father_id_no"], allow_null=True)
    for r in _table(a / "health.sqlite", "deaths"):  # the commission keeps 15-digit IDs of people born before 1950
        check("deaths", r["death_no"], r["id_no"], legacy=int(r["birth_date"][:4]) < 1950)
    for table in ("employment", "social_insurance"):
        key = "emp_no" if table == "employment" else "si_no"
        for r in _table(a / "hrss.sqlite", table):
            check(table, r[key], r["id_no"])
    for d in _docs(a / "applications.jsonl"):
        if d["app_no"] is not None:  # a nulled app_no is itself a fault (business_key_null)
            check("applications", d["app_no"], d["applicant"].get("id_no", d["applicant"].get("idcard")))
    assert checked > RESIDENTS * 2


RATE = 0.05


@pytest.fixture(scope="module")
def rated(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample-rated")
    return out, generate(600, SEED, DAY, "embedded", out, default_fault_rate=RATE)


def test_every_fault_kind_is_in_the_manifest_at_its_rate(rated):
    """Tolerance: exactly max(1, round(rate × rows)) per (table, kind) — rows being the table's rows before
    injection; name_dot_variant (only names with '·' are eligible) and id_lowercase_x (only IDs ending in X)
    exactly min(that, max(1, eligible // 2))."""
    out, counts = rated
    faults = _csv(out / "truth" / "faults.csv")
    got = {}
    for f in faults:
        got[(f"{f['source']}.{f['table']}", f["fault_kind"])] = got.get((f"{f['source']}.{f['table']}",
                                                                         f["fault_kind"]), 0) + 1
    assert {(t.split(".")[0], t.split(".")[1], k) for t, k in got} == SKELETON | MORE
    rows = dict(counts, **{"hukou.persons": counts["truth.persons"], "zhengwu.evaluations": 1})
    rows["hrss.social_insurance"] -= got[("hrss.social_insurance", "duplicate_across_batches")]
    truth = _csv(out / "truth" / "persons.csv")
    dotted = sum(1 for t in truth if "·" in t["name"])
    x_ids = sum(1 for t in truth if t["id_no"].endswith("X"))
    for (table, kind), n in got.items():
        expected = max(1, round(RATE * rows[table]))
        if kind == "name_dot_variant":
            expected = min(expected, max(1, dotted // 2))
        if kind == "id_lowercase_x":  # only IDs ending in X are eligible (~1 in 11), at most half of them
            expected = min(expected, max(1, x_ids // 2))
        if table == "zhengwu.evaluations":
            expected = 1  # one file delivered in GBK (file_gbk_encoded is per file)
        assert n == expected, (table, kind, n, expected)


def test_address_points_lie_in_their_district(runs):
    geo = json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    polygons = {f["properties"]["gb"][3:]: shape(f["geometry"]) for f in geo["features"]}
    faults = [f for f in _csv(runs[0] / "truth" / "faults.csv") if f["table"] == "standard_address"]
    swapped = {f["row_key"] for f in faults if f["fault_kind"] == "coord_swapped"}
    moved = {f["row_key"] for f in faults if f["column"] == "coordinates"}  # coord_swapped, number_out_of_range
    rows = _table(runs[0] / "address.sqlite", "standard_address")
    for r in rows:
        inside = polygons[r["district_code"]].contains(Point(r["lng"], r["lat"]))
        assert inside if r["address_id"] not in moved else not inside, r["address_id"]
    assert len(swapped) > 0 and len(moved) < len(rows)


@pytest.mark.slow
def test_census_calibration_at_100k_residents() -> None:
    """Age × sex shares (5-year groups, 85+), education shares by sex (6+) and the floating share of 100,000
    residents within 1 percentage point of the 2020 census of the populated districts (only the Population is
    built once: ~20 s)."""
    from faker import Faker

    from sample import reference as ref
    from sample.population import Population, age_group

    districts = ref.load_districts()
    fake = Faker("zh_CN")
    fake.seed_instance(SEED)
    pop = Population(districts, 100_000, SEED, DAY, fake).build()
    got: dict = {}
    for p in pop.persons:
        got[(p.sex_code, age_group(p.age))] = got.get((p.sex_code, age_group(p.age)), 0) + 1
    census = {r["区划代码"]: r for r in _csv(REFERENCE_DIR / "census" / "census_county_2020_130100.csv")}
    expected: dict = {}
    for d in districts:
        for sex, word in (("1", "男"), ("2", "女")):
            for first, _, suffix in ref.AGE_GROUPS:
                key = (sex, age_group(first))
                expected[key] = expected.get(key, 0.0) + float(census[d.code][f"{word}_{suffix}"] or 0)
    total = sum(expected.values())
    assert len(expected) == 36 and len(pop.persons) == 100_000
    worst = max(abs(got.get(k, 0) / 100_000 - v / total) for k, v in expected.items())
    assert worst < 0.01, worst

    # education (GB/T 4658 code) shares by sex among residents aged 6+, same Population
    from sample.attributes import EDUCATION_LEVELS, EDUCATION_MIN_AGE
    for sex, word in (("1", "男"), ("2", "女")):
        want: dict = {}
        for d in districts:
            for level, code in EDUCATION_LEVELS:
                want[code] = want.get(code, 0.0) + float(census[d.code][f"{level}_{word}"] or 0)
        people = [p for p in pop.persons if p.sex_code == sex and p.age >= EDUCATION_MIN_AGE]
        have = {code: sum(p.education == code for p in people) / len(people) for code in want}
        worst = max(abs(have[c] - v / sum(want.values())) for c, v in want.items())
        assert worst < 0.01 and len(want) == 6, (sex, worst)
    assert all((p.education is None) == (p.age < EDUCATION_MIN_AGE) for p in pop.persons)
    # floating share: (省外 + 本省其他县) / total of the populated districts
    moved = sum(float(census[d.code]["户口登记地在外乡镇街道人口_省外"])
                + float(census[d.code]["户口登记地在外乡镇街道人口_本省其他县"]) for d in districts)
    share = moved / sum(float(census[d.code]["人口数_合计"]) for d in districts)
    floating = sum(p.registration_type == "流动" for p in pop.persons) / 100_000
    assert 0.2 < share < 0.6 and abs(floating - share) < 0.01, (floating, share)


def test_scale_helpers_exact_values():
    import random

    from faker import Faker

    from sample.generate import check_arguments, main
    from sample.population import FakerDraws, age_group, check_char

    assert check_char("11010519491231002") == "X" == id_check_char("11010519491231002")
    assert check_char("13010219900101123") == id_check_char("13010219900101123")
    a, b = Faker("zh_CN"), Faker("zh_CN")
    a.seed_instance(3)
    b.seed_instance(3)
    draws = FakerDraws(b)
    assert [a.last_name(), a.first_name_male(), a.first_name_female(), a.phone_number()] == \
        [draws.last_name(), draws.first_name_male(), draws.first_name_female(), draws.phone_number()]
    assert [age_group(x) for x in (0, 4, 5, 84, 85, 100)] == [0, 0, 1, 16, 17, 17]
    # the 100k crash: an 18-year-old who came of age less than 15 days before the logical date
    rng = random.Random(1)
    assert more.day_between(rng, date(2025, 6, 25), date(2025, 6, 15)) == date(2025, 6, 25)
    assert date(2025, 6, 1) <= more.day_between(rng, date(2025, 6, 1), date(2025, 6, 3)) <= date(2025, 6, 3)
    assert writers.copy_text(None) == "\\N" and writers.copy_text("a\tb\\c\nd") == "a\\tb\\\\c\\nd"
    assert writers.copy_text(12) == "12" and list(writers.copy_lines(("x", "y"), [{"x": "1", "y": None}])) == \
        ["1\t\\N\n"]
    assert check_arguments(5, "embedded", None, None, 1, {"evaluations": "xlsx"}) == \
        {"messages": "csv", "evaluations": "xlsx"}
    with pytest.raises(ValueError):
        check_arguments(5, "servers", None, None, 1, None)
    with pytest.raises(SystemExit) as exc:  # argument errors are usage errors (exit status 2)
        main(["--residents", "0"])
    assert exc.value.code == 2


def test_civil_marriages_follow_civil_conventions(runs):
    a, _, counts = runs
    rows = _table(a / "civil.sqlite", "marriages")
    truth = {t["person_key"]: t for t in _csv(a / "truth" / "persons.csv")}
    links = {}
    for lk in _csv(a / "truth" / "links.csv"):
        if lk["table"] == "marriages":
            links.setdefault(lk["row_key"], {})[lk["role"]] = truth[lk["person_key"]]
    couples = {t["household_no"] for t in truth.values() if t["person_key"] in
               {lk["person_key"] for lk in _csv(a / "truth" / "links.csv") if lk["table"] == "marriages"}}
    assert len(rows) == counts["civil.marriages"] == len(links) == len(couples) > 0
    zh = re.compile(r"^(\d{4})年([1-9]\d?)月([1-9]\d?)日$")
    for r in rows:
        h, w = links[r["cert_no"]]["husband"], links[r["cert_no"]]["wife"]
        assert (r["husband_sex"], r["wife_sex"], h["sex_code"], w["sex_code"]) == ("男", "女", "1", "2")
        assert (r["husband_id_no"], r["wife_id_no"], r["husband_name"]) == (h["id_no"], w["id_no"], h["name"])
        assert h["household_no"] == w["household_no"]
        y, m, d = (int(x) for x in zh.match(r["register_date"]).groups())
        assert zh.match(r["husband_birth_date"]) and zh.match(r["wife_birth_date"])
        registered = date(y, m, d)
        assert registered < DAY and registered >= date(int(h["birth_date"][:4]) + 22, 1, 1)
        assert registered >= date(int(w["birth_date"][:4]) + 20, 1, 1) or registered.year == 1980
        assert r["cert_no"] == f"J{r['community_code'][:6]}-{y}-{r['cert_no'][-6:]}"
        assert r["registry_office"].endswith("民政局婚姻登记处") and r["updated_at"][:10] >= registered.isoformat()


def test_civil_elderly_subsidy_pays_residents_aged_80_and_over(runs):
    a, _, counts = runs
    rows = _table(a / "civil.sqlite", "elderly_subsidy")
    truth = {t["person_key"]: t for t in _csv(a / "truth" / "persons.csv")}
    recipient = {lk["row_key"]: truth[lk["person_key"]] for lk in _csv(a / "truth" / "links.csv")
                 if lk["table"] == "elderly_subsidy"}
    assert len(rows) == counts["civil.elderly_subsidy"] == len(recipient) > 0
    for r in rows:
        t = recipient[r["subsidy_no"]]
        assert r["id_no"] == t["id_no"] and r["sex"] == {"1": "男", "2": "女"}[t["sex_code"]]
        assert r["age"] >= 80 and r["monthly_amount"] == (500 if r["age"] >= 100 else 200 if r["age"] >= 90 else 100)
        y, m, d = (int(x) for x in t["birth_date"].split("-"))
        assert r["birth_date"] == f"{y}年{m}月{d}日" and r["start_date"].endswith("月1日")
        assert r["status"] in ("发放中", "暂停") and len(r["bank_account"]) == 16


def test_marital_status_follows_the_household_rule():
    """GB/T 2261.2 marital status of a small population: None under 15; head + spouse (and the head's father +
    mother when both live there) 20; under the legal age (22 men, 20 women) 10; a lone head never 20;
    registration_type is the same for a whole household and matches its is_floating flag."""
    from faker import Faker

    from sample import reference as ref
    from sample.attributes import _couple_members
    from sample.population import REL_HEAD, REL_SPOUSE, Population

    fake = Faker("zh_CN")
    fake.seed_instance(SEED)
    pop = Population(ref.load_districts(), 400, SEED, DAY, fake).build()
    couples = lone = 0
    for hh in pop.households:
        rels = [m.relation_code for m in hh.members]
        married = _couple_members(hh)
        assert {m.registration_type for m in hh.members} == {"流动" if hh.is_floating else "户籍"}
        for i, p in enumerate(hh.members):
            if p.age < 15:
                assert p.marital_status is None
            elif i in married:
                assert p.marital_status == "20" and (rels[i] in (REL_HEAD, REL_SPOUSE, "51", "52"))
                couples += rels[i] == REL_SPOUSE
            elif p.age < {"1": 22, "2": 20}[p.sex_code]:
                assert p.marital_status == "10"
            else:
                assert p.marital_status in ("10", "20", "30", "40")
                if rels[i] == REL_HEAD:
                    assert p.marital_status != "20"
                    lone += 1
    assert couples > 20 and lone > 5
    assert {p.registration_type for p in pop.persons} == {"户籍", "流动"}


def test_hukou_residence_changes_move_households_between_districts(runs):
    a, _, counts = runs
    rows = _table(a / "hukou.sqlite", "residence_changes")
    truth = {t["person_key"]: t for t in _csv(a / "truth" / "persons.csv")}
    households = {h["household_no"]: h for h in _table(a / "hukou.sqlite", "households")}
    n_households = len(households)
    assert len({truth[r["person_no"]]["household_no"] for r in rows}) == max(1, round(0.03 * n_households))
    assert len(rows) == counts["hukou.residence_changes"] > 0
    assert len({r["change_no"] for r in rows}) == len(rows)
    with sqlite3.connect(a / "hukou.sqlite") as con:
        pk = [r[1] for r in con.execute("PRAGMA table_info(residence_changes)") if r[5]]
    assert pk == ["change_no"]
    for r in rows:
        t = truth[r["person_no"]]
        assert re.fullmatch(r"QY\d{8}", r["change_no"])
        assert r["id_no"] == t["id_no"] and r["change_type"] == "市内迁移"
        assert r["to_community_code"] == t["community_code"]
        assert re.fullmatch(r"\d{12}", r["from_community_code"])
        assert r["from_community_code"][:6] != r["to_community_code"][:6] == t["district_code"]
        moved = datetime.strptime(r["move_date"], "%Y%m%d").date()
        registered = datetime.strptime(households[t["household_no"]]["registered_date"], "%Y%m%d").date()
        assert registered < moved < DAY and moved.isoformat() >= t["birth_date"]
        assert moved.isoformat() <= r["updated_at"][:10] <= DAY.isoformat()
    movers = {(lk["row_key"], lk["person_key"]) for lk in _csv(a / "truth" / "links.csv")
              if (lk["source"], lk["table"], lk["role"]) == ("hukou", "residence_changes", "mover")}
    assert movers == {(r["change_no"], r["person_no"]) for r in rows}


def test_day_n_plus_1_moves_are_residence_changes_on_d(runs, two_days):
    changes = _csv(two_days / "truth" / "changes.csv")
    moved = [c for c in changes if (c["change_kind"], c["table"]) == ("move", "residence_changes")]
    assert moved and all(c["op"] == "insert" for c in moved)
    rows = {r["change_no"]: r for r in _table(two_days / "hukou.sqlite", "residence_changes")}
    day_n = {r["change_no"] for r in _table(runs[0] / "hukou.sqlite", "residence_changes")}
    assert set(rows) == day_n | {c["row_key"] for c in moved} and not day_n & {c["row_key"] for c in moved}
    before = {t["person_key"]: t for t in _csv(two_days / "truth" / "persons.csv")}
    after = {t["person_key"]: t for t in _csv(two_days / "truth" / "persons_2025-07-01.csv")}
    for c in moved:
        r = rows[c["row_key"]]
        assert r["person_no"] == c["person_key"] and r["move_date"] == "20250701"
        assert r["from_community_code"] == before[c["person_key"]]["community_code"]
        assert r["to_community_code"] == after[c["person_key"]]["community_code"]
        assert r["from_community_code"][:6] != r["to_community_code"][:6]
    movers = {c["person_key"] for c in changes if (c["change_kind"], c["table"]) == ("move", "persons")}
    assert {c["person_key"] for c in moved} == movers


def test_main_job_regenerates_a_sample_left_by_other_generator_code(tmp_path):
    """`make demo` reuses the embedded sample only when seed, size, date and the generator's code all match."""
    from govlake.core.config import Settings
    from sample.embedded import ensure_sample_sources, generator_fingerprint

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    marker = settings.sources_dir / "truth" / "summary.json"
    made_by = settings.sources_dir / "truth" / "generator.sha256"
    first = ensure_sample_sources(settings, DAY, 20, SEED)
    stamp = marker.stat().st_mtime_ns
    assert made_by.read_text(encoding="utf-8").strip() == generator_fingerprint()
    assert ensure_sample_sources(settings, DAY, 20, SEED) == first and marker.stat().st_mtime_ns == stamp
    made_by.write_text("0" * 64 + "\n", encoding="utf-8")  # a sample made by older generator code
    assert ensure_sample_sources(settings, DAY, 20, SEED) == first
    assert marker.stat().st_mtime_ns != stamp and made_by.read_text(encoding="utf-8").strip() == generator_fingerprint()


def test_published_grids_are_areas_that_hold_their_points(two_days) -> None:
    """reference/grid_boundaries.geojson partitions each community's area into its grids: valid polygons, no two
    grids of a community overlapping, not even their convex hulls (separate areas, not interleaved fragments),
    their union covering every household point (day N and after the day N+1 moves), and the grid that the truth
    (truth/households.csv), the address registry and the delivered events name containing the true point."""
    import shapely

    out = two_days
    features = json.loads((out / "reference" / "grid_boundaries.geojson").read_text(encoding="utf-8"))["features"]
    cells = {f["properties"]["grid_code"]: shape(f["geometry"]) for f in features}
    assert len(cells) == len(features) and all(g.is_valid and not g.is_empty for g in cells.values())
    assert all(f["properties"]["community_code"] == f["properties"]["grid_code"][:12] for f in features)
    by_community: dict[str, list] = {}
    for code, geom in sorted(cells.items()):
        by_community.setdefault(code[:12], []).append(geom)
    pairs = 0
    for geoms in by_community.values():
        for i, a in enumerate(geoms):
            for b in geoms[i + 1:]:
                pairs += 1
                assert a.intersection(b).area < 1e-12
                assert a.convex_hull.intersection(b.convex_hull).area < 1e-12
    assert pairs >= 20   # enough communities with several grids for the checks to mean something

    union = {c: shapely.union_all(g) for c, g in by_community.items()}
    households = _csv(out / "truth" / "households.csv")
    registry = _table(out / "address.sqlite", "standard_address")
    faulted = {f["row_key"] for f in _csv(out / "truth" / "faults.csv") if f["table"] in ("standard_address", "events")}
    # day N truth; the registry's rows (its day N+1 rows are the moved households' new points)
    points = [(h["grid_code"], float(h["lng"]), float(h["lat"])) for h in households]
    points += [(r["grid_code"], r["lng"], r["lat"]) for r in registry if r["address_id"] not in faulted]
    assert len(points) > len(households) + 40
    for grid, lng, lat in points:
        assert union[grid[:12]].contains(Point(lng, lat)), (grid, lng, lat)
        assert cells[grid].contains(Point(lng, lat)), (grid, lng, lat)
    events = [d for d in _docs(out / "grid_events.jsonl") if d["event_no"] not in faulted]
    assert len(events) > 10
    for d in events:
        loc = d["location"]
        assert cells[loc["grid_code"]].contains(Point(loc["lng"], loc["lat"])), d["event_no"]
    # some community has points in several grids, so a grid drawn apart from the point would show above
    per_community: dict[str, set] = {}
    for grid, _, _ in points + [(d["location"]["grid_code"], 0, 0) for d in events]:
        per_community.setdefault(grid[:12], set()).add(grid)
    assert sum(len(g) > 1 for g in per_community.values()) >= 3
