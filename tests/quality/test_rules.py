"""Tests of govlake.quality.rules: suite files, row-level evaluation, split, counts, fail rules, GX checkpoint."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from govlake.codes.code_lists import id_check_char
from govlake.core.config import EXPECTATIONS_DIR
from govlake.quality.rules import (
    FailRuleViolated,
    Rule,
    Suite,
    enforce_fail_rules,
    evaluate,
    load_suite,
    rule_counts,
    run_checkpoint,
    split,
    strftime_to_spark,
)

LINEAGE = "_batch_id string, _logical_date date"

# --- a test suite covering every generic type (written to tmp_path as a suite file) ----------
PEOPLE_SUITE = {
    "name": "raw.test_people",
    "meta": {"table": "raw.test_people", "key_columns": ["person_no"]},
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "person_no"},
         "meta": {"rule_id": "p.pn.not_null", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "person_no"},
         "meta": {"rule_id": "p.pn.unique", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "sex_code", "value_set": ["1", "2"]},
         "meta": {"rule_id": "p.sex.in_set", "action": "quarantine"}},
        {"type": "expect_column_values_to_match_strftime_format",
         "kwargs": {"column": "birth_date", "strftime_format": "%Y%m%d"},
         "meta": {"rule_id": "p.birth.yyyymmdd", "action": "quarantine"}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "ethnic_code", "regex": "^\\d{2}$"},
         "meta": {"rule_id": "p.eth.two_digits", "action": "warn"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 150},
         "meta": {"rule_id": "p.age.between", "action": "quarantine"}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["household_no", "relation_code"]},
         "meta": {"rule_id": "p.hh_rel.unique", "action": "warn"}},
    ],
}
PEOPLE_SCHEMA = ("person_no string, sex_code string, birth_date string, ethnic_code string, age string, "
                 "household_no string, relation_code string, " + LINEAGE)
D = dt.date(2025, 6, 30)
PEOPLE_ROWS = [
    ("P1", "1", "19900101", "01", "35", "H1", "02", "b1", D),    # clean
    ("P2", "2", "2025630", "1", "0", "H1", "10", "b1", D),       # birth not strict; ethnic warn
    ("P3", "3", "20000229", None, "abc", "H2", "02", "b1", D),   # sex, age not a number; (H2,02) duplicate
    (None, "1", None, "01", None, "H2", "02", "b1", D),          # person_no NULL (other NULLs ignored)
    ("P1", "1", "20250230", "01", "151", "H3", "02", "b1", D),   # 2nd P1 (worse copy), Feb 30, age > 150
    ("P6", "2", "19850315", "1", "40", "H3", "10", "b1", D),     # warn only: kept
    ("P7", "1", "19700101", "56", "150", "H4", "01", "b1", D),   # exact duplicate rows:
    ("P7", "1", "19700101", "56", "150", "H4", "01", "b1", D),   # one copy kept
]


@pytest.fixture()
def people_suite(tmp_path) -> Suite:
    (tmp_path / "raw.test_people.json").write_text(json.dumps(PEOPLE_SUITE), encoding="utf-8")
    return load_suite("raw.test_people", tmp_path)


def test_example_suite_file_loads():
    suite = load_suite("raw.hukou_persons")
    raw = (EXPECTATIONS_DIR / "raw.hukou_persons.json").read_bytes()
    assert suite.version == hashlib.sha256(raw).hexdigest()[:12]
    assert suite.table == "raw.hukou_persons" and suite.key_columns == ("person_no",)
    assert [(r.rule_id.split(".", 1)[1], r.action) for r in suite.rules] == [
        ("person_no.not_null", "quarantine"), ("person_no.unique", "quarantine"),
        ("id_no.not_null", "quarantine"), ("id_no.gb11643", "quarantine"),
        ("id_no.canonical", "warn"), ("sex_code.in_set", "quarantine"), ("sex_code.gbt2261_1", "quarantine"),
        ("sex_code.matches_id", "quarantine"), ("birth_date.yyyymmdd", "quarantine"), ("ethnic_code.gbt3304", "warn"),
        ("relation_code.gbt4761", "quarantine"), ("marital_status.gbt2261_2", "warn"), ("education.gbt4658", "warn"),
        ("registration_type.in_set", "warn"), ("community_code.shijiazhuang", "quarantine"),
        ("community_code.gbt2260", "quarantine"), ("phone.mobile", "warn"), ("phone.canonical", "warn"),
        ("name.middle_dot", "warn"),
    ]
    assert suite.rules[3].expectation_type == "expect_column_values_to_be_valid_gb11643_id"


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(type="expect_column_values_to_be_shiny"), "unknown expectation type"),
    (lambda e: e["meta"].update(action="drop"), "unknown action 'drop'"),
    (lambda e: e["kwargs"].update(mostly=0.9), "unsupported kwargs ['mostly']"),
    (lambda e: e["kwargs"].pop("value_set"), "missing kwargs ['value_set']"),
    (lambda e: e["kwargs"].update(value_set=[1, 2]), "list of strings"),
])
def test_load_suite_rejects_bad_rule(tmp_path, change, message):
    doc = json.loads(json.dumps(PEOPLE_SUITE))
    change(doc["expectations"][2])
    (tmp_path / "raw.test_people.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_suite("raw.test_people", tmp_path)
    assert message in str(err.value)
    assert "raw.test_people.json" in str(err.value) and "'p.sex.in_set'" in str(err.value)


def test_load_suite_rejects_missing_rule_id_and_bad_name(tmp_path):
    doc = json.loads(json.dumps(PEOPLE_SUITE))
    del doc["expectations"][4]["meta"]["rule_id"]
    (tmp_path / "raw.test_people.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=r"raw\.test_people\.json: expectation #4 .*missing meta\.rule_id"):
        load_suite("raw.test_people", tmp_path)
    (tmp_path / "raw.other.json").write_text(json.dumps(PEOPLE_SUITE), encoding="utf-8")
    with pytest.raises(ValueError, match="differs from the file name"):
        load_suite("raw.other", tmp_path)


def test_strftime_translation():
    assert strftime_to_spark("%Y%m%d") == (r"^(?!0000)\d{4}\d{2}\d{2}$", "yyyyMMdd")
    assert strftime_to_spark("%Y-%m-%dT%H:%M:%S") == (
        r"^(?!0000)\d{4}\-\d{2}\-\d{2}T\d{2}:\d{2}:\d{2}$", "yyyy-MM-dd'T'HH:mm:ss")
    with pytest.raises(ValueError, match="unsupported strftime directive '%b'"):
        strftime_to_spark("%d %b %Y")


def test_evaluate_split_and_counts(spark, people_suite):
    df = spark.createDataFrame(PEOPLE_ROWS, PEOPLE_SCHEMA)
    evaluated = evaluate(df, people_suite)
    assert evaluated.columns == df.columns + ["_failed_rules"]
    got = sorted((r.person_no or "", r.birth_date or "", tuple(r._failed_rules)) for r in evaluated.collect())
    assert got == [
        ("", "", ("p.pn.not_null",)),
        ("P1", "19900101", ()),
        ("P1", "20250230", ("p.pn.unique", "p.birth.yyyymmdd", "p.age.between")),
        ("P2", "2025630", ("p.birth.yyyymmdd", "p.eth.two_digits")),
        ("P3", "20000229", ("p.sex.in_set", "p.age.between", "p.hh_rel.unique")),
        ("P6", "19850315", ("p.eth.two_digits",)),
        ("P7", "19700101", ()),
        ("P7", "19700101", ("p.pn.unique", "p.hh_rel.unique")),
    ]

    accepted, quarantined = split(evaluated, people_suite)
    assert accepted.columns == df.columns
    acc = accepted.collect()
    assert sorted((r.person_no, r.birth_date) for r in acc) == [
        ("P1", "19900101"), ("P6", "19850315"), ("P7", "19700101")]
    assert quarantined.columns == ["_source_key", "_rule_ids", "_messages", "_row", "_batch_id", "_logical_date"]
    q = sorted(quarantined.collect(), key=lambda r: (r._source_key, r._row))
    assert len(acc) + len(q) == len(PEOPLE_ROWS)
    assert [(r._source_key, r._rule_ids) for r in q] == [
        ("P1", ["p.pn.unique", "p.birth.yyyymmdd", "p.age.between"]),
        ("P2", ["p.birth.yyyymmdd"]),
        ("P3", ["p.sex.in_set", "p.age.between"]),
        ("P7", ["p.pn.unique"]),
        ("∅", ["p.pn.not_null"]),
    ]
    assert q[1]._messages == ["raw.test_people.birth_date: p.birth.yyyymmdd failed for key P2: value '2025630'"]
    assert q[2]._messages[1] == "raw.test_people.age: p.age.between failed for key P3: value 'abc'"
    assert q[4]._messages == ["raw.test_people.person_no: p.pn.not_null failed for key ∅: value '∅'"]
    assert json.loads(q[4]._row) == {"person_no": None, "sex_code": "1", "birth_date": None, "ethnic_code": "01",
                                     "age": None, "household_no": "H2", "relation_code": "02"}
    assert (q[4]._batch_id, q[4]._logical_date) == ("b1", D)

    counts = rule_counts(evaluated, people_suite)
    assert [(c["rule_id"], c["column"], c["action"], c["evaluated"], c["failed"]) for c in counts] == [
        ("p.pn.not_null", "person_no", "quarantine", 8, 1),
        ("p.pn.unique", "person_no", "quarantine", 7, 2),
        ("p.sex.in_set", "sex_code", "quarantine", 8, 1),
        ("p.birth.yyyymmdd", "birth_date", "quarantine", 7, 2),
        ("p.eth.two_digits", "ethnic_code", "warn", 7, 2),
        ("p.age.between", "age", "quarantine", 7, 2),
        ("p.hh_rel.unique", "household_no,relation_code", "warn", 8, 2),
    ]
    assert counts[6]["expectation_type"] == "expect_compound_columns_to_be_unique"
    enforce_fail_rules(counts, people_suite)  # no fail-action rule: no raise


def test_duplicate_counts_are_exact_when_hashes_are_shared(spark):
    """tally's uniqueness counts group the key's hash first: keys whose NULL parts the hash skips share a hash
    (('a', NULL) and (NULL, 'a')) without being duplicates; NULL equals NULL in a key, as in GROUP BY."""
    from govlake.quality.rules import _duplicate_counts

    df = spark.createDataFrame([("a", None), (None, "a"), ("b", "c"), ("b", "c"), ("b", "c"), (None, None),
                                (None, None), ("d", "e")], "x string, y string")
    assert _duplicate_counts(df, ("x", "y")) == (3, 2)  # (b, c) twice more, (NULL, NULL) once more
    assert _duplicate_counts(df.where("x IS NOT NULL AND x <> 'b'"), ("x", "y")) == (0, 0)
    assert _duplicate_counts(df.where("y IS NOT NULL AND x IS NOT NULL OR x = 'a' OR y = 'a'"), ("x", "y")) == (2, 1)


def test_fail_rule_stops_the_batch(spark):
    suite = Suite(name="raw.t", table="raw.t", key_columns=("k",), version="0" * 12, rules=(
        Rule("t.k.not_null", "expect_column_values_to_not_be_null", {"column": "k"}, "fail"),
        Rule("t.v.in_set", "expect_column_values_to_be_in_set", {"column": "v", "value_set": ["a"]}, "warn"),
    ))
    df = spark.createDataFrame([("1", "a"), (None, "b"), (None, None)], "k string, v string")
    counts = rule_counts(evaluate(df, suite), suite)
    assert [(c["evaluated"], c["failed"]) for c in counts] == [(3, 2), (2, 1)]
    with pytest.raises(FailRuleViolated, match=r"suite raw\.t .*rule t\.k\.not_null failed for 2 of 3 rows"):
        enforce_fail_rules(counts, suite)


#: Two or more copies of one key in one batch, delivered by a department (k, name, id_no, updated_at): the older copy
#: first in content order (its name sorts first), the newer one second.
WATERMARK_SUITE = Suite(name="raw.t_wm", table="raw.t_wm", key_columns=("k",), version="0" * 12, rules=(
    Rule("t.k.not_null", "expect_column_values_to_not_be_null", {"column": "k"}, "quarantine"),
    Rule("t.k.unique", "expect_column_values_to_be_unique", {"column": "k"}, "quarantine"),
    Rule("t.id.gb11643", "expect_column_values_to_be_valid_gb11643_id", {"column": "id_no"}, "quarantine"),
))
_GOOD, _BAD = "11010519491231002X", "11010519491231007X"
WATERMARK_ROWS = [
    ("K1", "张三", _GOOD, "2025-06-29 08:00:00"), ("K1", "张珊", _GOOD, "2025-06-30 09:00:00"),
    # a BSON date (UTC) against local text: 01:00Z is 09:00 in Asia/Shanghai, before 10:15 (as text it sorts last)
    ("K2", "李四", _GOOD, '{"$date":"2025-06-30T01:00:00Z"}'), ("K2", "李斯", _GOOD, "2025-06-30 10:15:00"),
    # ... and after 08:30 (read as local wall time it would be 01:00, before it)
    ("K3", "王五", _GOOD, "2025-06-30 08:30:00"), ("K3", "王伍", _GOOD, '{"$date":"2025-06-30T01:00:00Z"}'),
    # NULL and unparsable watermarks rank after any time
    ("K4", "赵", _GOOD, None), ("K4", "赵六", _GOOD, "not a time"), ("K4", "赵陆", _GOOD, "2025-06-01 00:00:00"),
    # the newer copy has a broken ID: recency first, so it is the copy that stands (and fails its ID rule)
    ("K5", "孙七", _GOOD, "2025-06-29 10:00:00"), ("K5", "孙柒", _BAD, "2025-06-30 10:00:00"),
    # the same watermark: the copy with fewer failures stands, whatever the content order
    ("K6", "周八", _BAD, "2025-06-30 10:00:00"), ("K6", "周捌", _GOOD, "2025-06-30 10:00:00"),
]


def test_duplicates_keep_the_newest_copy_by_the_watermark(spark):
    from govlake.quality.rules import count_rules, tally

    suite = WATERMARK_SUITE
    df = spark.createDataFrame([(*r, "b1") for r in WATERMARK_ROWS],
                               "k string, name string, id_no string, updated_at string, _batch_id string")
    evaluated = evaluate(df, suite, newest_first="updated_at")
    assert sorted((r.k, r.name, tuple(r._failed_rules)) for r in evaluated.collect()) == [
        ("K1", "张三", ("t.k.unique",)), ("K1", "张珊", ()),
        ("K2", "李四", ("t.k.unique",)), ("K2", "李斯", ()),
        ("K3", "王五", ("t.k.unique",)), ("K3", "王伍", ()),
        ("K4", "赵", ("t.k.unique",)), ("K4", "赵六", ("t.k.unique",)), ("K4", "赵陆", ()),
        ("K5", "孙七", ("t.k.unique",)), ("K5", "孙柒", ("t.id.gb11643",)),
        ("K6", "周八", ("t.k.unique", "t.id.gb11643")), ("K6", "周捌", ()),
    ]
    accepted, quarantined = split(evaluated, suite)
    assert sorted(r.name for r in accepted.collect()) == sorted(["张珊", "李斯", "王伍", "赵陆", "周捌"])
    held = sorted((r._source_key, json.loads(r._row)["name"], list(r._rule_ids)) for r in quarantined.collect())
    assert held[:2] == [("K1", "张三", ["t.k.unique"]), ("K2", "李四", ["t.k.unique"])]
    assert [h for h in held if h[0] == "K5"] == [("K5", "孙七", ["t.k.unique"]), ("K5", "孙柒", ["t.id.gb11643"])]
    # the counts do not depend on which copy stands
    counts = count_rules(evaluated, suite)
    assert [(c["rule_id"], c["evaluated"], c["failed"]) for c in counts.rules] == [
        ("t.k.not_null", 13, 0), ("t.k.unique", 13, 7), ("t.id.gb11643", 13, 2)]
    assert count_rules(evaluate(df, suite), suite) == counts == tally(df, suite)
    assert count_rules(evaluate(df, suite, rank_duplicates=False), suite) == counts
    # without a watermark the copies are ranked by failures, then content: the older K1 (first in content) stays
    no_wm = {(r.k, r.name): list(r._failed_rules) for r in evaluate(df, suite).collect()}
    assert (no_wm[("K1", "张三")], no_wm[("K5", "孙七")]) == ([], [])
    with pytest.raises(ValueError, match=r"raw\.t_wm.*watermark column 'changed_at'"):
        evaluate(df, suite, newest_first="changed_at")


def _id(body17: str) -> str:
    return body17 + id_check_char(body17)


def test_hukou_suite_rows_and_checkpoint(spark, tmp_path):
    """The example suite, GB 11643 rule included, row level and through one GX checkpoint run."""
    suite = load_suite("raw.hukou_persons")
    good = _id("13010219900101001")
    bad_check = good[:17] + ("0" if good[17] != "0" else "1")
    cols = ["person_no", "id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no", "relation_code",
            "community_code", "address", "phone", "updated_at", "education", "marital_status", "registration_type"]
    schema = ", ".join(f"{c} string" for c in cols) + ", _source string, _batch_id string"
    base = dict(zip(cols, ["N1", good, "张三", "1", "19900101", "01", "H1", "02", "130102001001", "长安区",
                           "13800000000", "20250630", "80", "20", "户籍"], strict=False))
    rows = [
        base,
        {**base, "person_no": "N2", "id_no": bad_check},                         # GB 11643 check char
        {**base, "person_no": "N3", "id_no": _id("13010219850315002"), "sex_code": "9",
         "phone": "0311-1234567", "marital_status": "99"},                      # sex; phone, marital warn
        {**base, "ethnic_code": "1"},                                           # duplicate N1; ethnic warn
        {**base, "person_no": "N5", "id_no": _id("13010220000101003"), "birth_date": "19900231",
         "community_code": "130200000000"},                                      # date, community
    ]
    df = spark.createDataFrame([tuple(r[c] for c in cols) + ("hukou", "b7") for r in rows], schema)

    accepted, quarantined = split(evaluate(df, suite), suite)
    assert sorted((r.person_no, r.ethnic_code) for r in accepted.collect()) == [("N1", "01")]
    q = {r._source_key: r for r in quarantined.collect()}
    assert {k: list(r._rule_ids) for k, r in q.items()} == {
        "N1": ["hukou_persons.person_no.unique"],
        "N2": ["hukou_persons.id_no.gb11643"],
        "N3": ["hukou_persons.sex_code.in_set"],
        "N5": ["hukou_persons.birth_date.yyyymmdd", "hukou_persons.community_code.shijiazhuang"],
    }
    # the message masks the ID number (issue #21: first 6, 8 asterisks, last 4); _row keeps it for the release
    assert q["N2"]._messages == [
        f"raw.hukou_persons.id_no: hukou_persons.id_no.gb11643 failed for key N2: value "
        f"'{bad_check[:6]}********{bad_check[14:]}'"]
    assert json.loads(q["N2"]._row)["id_no"] == bad_check
    assert (q["N2"]._source, q["N2"]._batch_id) == ("hukou", "b7")

    out = run_checkpoint(spark, df, suite, "b7", tmp_path / "reports",
                         run_time=dt.datetime(2025, 6, 30, 18, 0, tzinfo=dt.UTC))
    assert out["success"] is False
    assert out["statistics"]["evaluated_expectations"] == 19
    assert out["statistics"]["unsuccessful_expectations"] == 9
    unexpected = {e["rule_id"].split(".", 1)[1]: e["unexpected_count"] for e in out["expectations"]}
    assert unexpected == {"person_no.not_null": 0, "person_no.unique": 2, "id_no.not_null": 0,
                          "id_no.gb11643": 1, "id_no.canonical": 0, "sex_code.in_set": 1, "sex_code.gbt2261_1": 0,
                          "sex_code.matches_id": 0, "birth_date.yyyymmdd": 1, "ethnic_code.gbt3304": 1,
                          "relation_code.gbt4761": 0, "marital_status.gbt2261_2": 1, "education.gbt4658": 0,
                          "registration_type.in_set": 0, "community_code.shijiazhuang": 1, "community_code.gbt2260": 0,
                          "phone.mobile": 1, "phone.canonical": 1, "name.middle_dot": 0}
    with open(out["results_path"], encoding="utf-8") as f:
        result = json.loads(f.read())
    assert result["success"] is False and result["suite_name"] == "raw.hukou_persons"
    assert "/b7/" in out["results_path"]
    with open(out["data_docs_index"], encoding="utf-8") as f:
        index = f.read()
    assert "raw.hukou_persons" in index
    page = Path(out["data_docs_page"])  # this batch's own page on the site (the Airflow Data Docs link)
    assert page.parent.parent.name == "b7" and "raw.hukou_persons" in page.read_text(encoding="utf-8")


def test_checkpoint_on_the_evaluated_frame_then_one_data_docs_build(spark, tmp_path):
    """The validate stage's path: the checkpoint on the cached output of evaluate_with_derived (no site update),
    then the site built once for the run: same GX counts as on the raw batch, and the run on the index."""
    from govlake.quality.rules import (
        build_data_docs,
        derived_column_names,
        evaluate_with_derived,
    )

    suite = load_suite("raw.hukou_persons")
    cols = ["person_no", "id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no", "relation_code",
            "community_code", "address", "phone", "updated_at", "education", "marital_status", "registration_type"]
    good = _id("13010219900101001")
    base = dict(zip(cols, ["N1", good, "张三", "1", "19900101", "01", "H1", "02", "130102001001", "长安区",
                           "13800000000", "20250630", "80", "20", "户籍"], strict=False))
    rows = [base, {**base, "person_no": "N2", "id_no": good[:-1] + ("0" if good[-1] != "0" else "1")},
            {**base, "ethnic_code": "1"}]
    df = spark.createDataFrame([tuple(r[c] for c in cols) for r in rows], ", ".join(f"{c} string" for c in cols))
    frame = evaluate_with_derived(df, suite).cache()
    assert frame.columns == cols + ["_failed_rules"] + list(derived_column_names(suite).values())
    reports = tmp_path / "reports"
    when = dt.datetime(2025, 6, 30, 18, 0, tzinfo=dt.UTC)
    on_frame = run_checkpoint(spark, frame, suite, "hukou.persons:2025-06-30", reports, run_time=when,
                              data_docs=False)
    on_raw = run_checkpoint(spark, df, suite, "other:2025-06-30", reports, run_time=when, data_docs=False)
    frame.unpersist()
    unexpected = {e["rule_id"].split(".", 1)[1]: (e["element_count"], e["unexpected_count"])
                  for e in on_frame["expectations"]}
    assert unexpected == {e["rule_id"].split(".", 1)[1]: (e["element_count"], e["unexpected_count"])
                          for e in on_raw["expectations"]}
    assert (unexpected["person_no.unique"], unexpected["id_no.gb11643"], unexpected["ethnic_code.gbt3304"]) == (
        (3, 2), (3, 1), (3, 1))
    index = reports / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert on_frame["data_docs_index"] == str(index) and not index.exists()  # no site update per checkpoint
    assert build_data_docs(reports, ["hukou.persons:2025-06-30"]) == index
    html = index.read_text(encoding="utf-8")
    assert "hukou.persons:2025-06-30" in html and "other:2025-06-30" not in html  # the index lists rendered runs
    pages = sorted(p.name for p in (index.parent / "validations").rglob("*.html"))
    assert len(pages) == 1  # only the pages of the named run were rendered
    assert Path(on_frame["data_docs_page"]).is_file() and not Path(on_raw["data_docs_page"]).exists()


CODE_PACK_SUITE = {
    "name": "raw.test_civil",
    "meta": {"table": "raw.test_civil", "key_columns": ["case_no"]},
    "expectations": [
        {"type": "expect_column_values_to_be_valid_date",
         "kwargs": {"column": "birth_date", "formats": ["yyyy年M月d日"]},
         "meta": {"rule_id": "c.birth.valid_date", "action": "quarantine"}},
        {"type": "expect_column_values_to_agree_with_gb11643_sex",
         "kwargs": {"column": "sex", "id_column": "id_no", "sex_map": {"男": "1", "女": "2"}},
         "meta": {"rule_id": "c.sex.matches_id", "action": "quarantine"}},
    ],
}


def test_code_pack_date_and_sex_agreement_rules(spark, tmp_path):
    (tmp_path / "raw.test_civil.json").write_text(json.dumps(CODE_PACK_SUITE, ensure_ascii=False), encoding="utf-8")
    suite = load_suite("raw.test_civil", tmp_path)
    woman = "11010519491231002X"  # 17th digit 2: female
    rows = [
        ("C1", "1949年12月31日", "女", woman),      # clean
        ("C2", "2023年2月30日", "女", woman),       # no 30 February
        ("C3", "1949年12月31日", "男", woman),      # sex contradicts the ID
        ("C4", "1949年1月5日", "男", "11010519491231007X"),  # invalid ID: sex not judged
        ("C5", "1949-12-31", None, None),          # wrong date format; NULL sex ignored
    ]
    df = spark.createDataFrame(rows, "case_no string, birth_date string, sex string, id_no string")
    got = {r.case_no: r._failed_rules for r in evaluate(df, suite).collect()}
    assert got == {"C1": [], "C2": ["c.birth.valid_date"], "C3": ["c.sex.matches_id"], "C4": [],
                   "C5": ["c.birth.valid_date"]}


CODE_PACK_MORE = {
    "name": "raw.test_org",
    "meta": {"table": "raw.test_org", "key_columns": ["k"]},
    "expectations": [
        {"type": "expect_column_values_to_be_valid_gbt2260_code", "kwargs": {"column": "division"},
         "meta": {"rule_id": "o.division.gbt2260", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_valid_gbt2260_code", "kwargs": {"column": "division", "historical": False},
         "meta": {"rule_id": "o.division.current", "action": "warn"}},
        {"type": "expect_column_values_to_be_in_gb_code_list",
         "kwargs": {"column": "marital", "code_list": "marital_status"},
         "meta": {"rule_id": "o.marital.gbt2261_2", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_in_gb_code_list",
         "kwargs": {"column": "education", "code_list": "education"},
         "meta": {"rule_id": "o.education.gbt4658", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_valid_cn_mobile", "kwargs": {"column": "phone"},
         "meta": {"rule_id": "o.phone.mobile", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_normalized", "kwargs": {"column": "phone", "kind": "phone"},
         "meta": {"rule_id": "o.phone.canonical", "action": "warn"}},
        {"type": "expect_column_values_to_be_valid_cn_postcode", "kwargs": {"column": "postcode"},
         "meta": {"rule_id": "o.postcode.six_digits", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_valid_gb32100_code", "kwargs": {"column": "credit_code"},
         "meta": {"rule_id": "o.credit_code.gb32100", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_normalized", "kwargs": {"column": "id_no", "kind": "gb11643_id"},
         "meta": {"rule_id": "o.id_no.canonical", "action": "warn"}},
    ],
}


def test_code_pack_more_types(spark, tmp_path):
    (tmp_path / "raw.test_org.json").write_text(json.dumps(CODE_PACK_MORE, ensure_ascii=False), encoding="utf-8")
    suite = load_suite("raw.test_org", tmp_path)
    rows = [  # k, division, marital, education, phone, postcode, credit_code, id_no
        ("K1", "130102", "20", "21", "13812345678", "050000", "91350100M000100Y43", "11010519491231002X"),  # clean
        ("K2", "110228", "4", "21", "138 1234 5678", "10010", "91350100M000100Y44", "11010519491231002x"),
        ("K3", "990000", "20", "99", "0311-1234567", "050000", None, "１１０１０５１９４９１２３１００２Ｘ"),
        ("K4", None, None, None, "+86 13812345678", "010010", "91350100m000100y43", "130102900101001"),
    ]
    df = spark.createDataFrame(rows, "k string, division string, marital string, education string, phone string, "
                                     "postcode string, credit_code string, id_no string")
    got = {r.k: r._failed_rules for r in evaluate(df, suite).collect()}
    assert got == {
        "K1": [],
        "K2": ["o.division.current", "o.marital.gbt2261_2", "o.phone.canonical", "o.postcode.six_digits",
               "o.credit_code.gb32100", "o.id_no.canonical"],
        "K3": ["o.division.gbt2260", "o.division.current", "o.education.gbt4658", "o.phone.mobile",
               "o.phone.canonical", "o.id_no.canonical"],
        "K4": ["o.phone.canonical", "o.id_no.canonical"],  # lower-case credit code is valid after upper-casing
    }
    with pytest.raises(ValueError, match="unknown code_list 'blood'"):
        doc = json.loads(json.dumps(CODE_PACK_MORE))
        doc["expectations"][2]["kwargs"]["code_list"] = "blood"
        (tmp_path / "raw.test_org.json").write_text(json.dumps(doc), encoding="utf-8")
        load_suite("raw.test_org", tmp_path)


PAIR_AND_FIELDS_SUITE = {
    "name": "raw.test_deaths",
    "meta": {"table": "raw.test_deaths", "key_columns": ["k"]},
    "expectations": [
        {"type": "expect_column_pair_dates_to_be_ordered",
         "kwargs": {"column_a": "birth_date", "column_b": "death_date", "formats": ["yyyy-MM-dd", "yyyy年M月d日"],
                    "or_equal": True},
         "meta": {"rule_id": "d.death_date.not_before_birth", "action": "warn"}},
        {"type": "expect_document_fields_to_be_registered",
         "kwargs": {"column": "document", "fields": ["_id", "k", "birth_date", "death_date"]},
         "meta": {"rule_id": "d.document.registered_fields", "action": "quarantine"}},
    ],
}


def test_pair_dates_and_registered_fields_rules(spark, tmp_path):
    """Both GovLake types, row level (one evaluate pass), in the quarantine message and in GX's derived columns."""
    from govlake.quality.rules import (
        _gx_expectation_configs,
        _gx_frame,
        derived_column_names,
    )

    (tmp_path / "raw.test_deaths.json").write_text(json.dumps(PAIR_AND_FIELDS_SUITE, ensure_ascii=False),
                                                   encoding="utf-8")
    suite = load_suite("raw.test_deaths", tmp_path)
    assert suite.rules[0].columns == ("birth_date", "death_date")
    rows = [  # k, birth_date, death_date, document
        ("K1", "1940-05-01", "2025-06-01", '{"_id": 1, "k": "K1"}'),           # clean
        ("K2", "1940-05-01", "1939-12-31", '{"k": "K2"}'),                     # death before birth
        ("K3", "1940-05-01", "1940年5月1日", '{"k": "K3", "tmp_sync_flag": "1", "a": 2}'),  # same day; unknown fields
        ("K4", "1940-05-01", "2023年2月30日", "[1]"),                           # unparseable date; not an object
        ("K5", None, "1939-12-31", None),                                      # NULL: not judged
    ]
    df = spark.createDataFrame(rows, "k string, birth_date string, death_date string, document string")
    evaluated = evaluate(df, suite)
    assert {r.k: r._failed_rules for r in evaluated.collect()} == {
        "K1": [], "K2": ["d.death_date.not_before_birth"], "K3": ["d.document.registered_fields"], "K4": [], "K5": []}
    assert [(c["rule_id"], c["column"], c["evaluated"], c["failed"]) for c in rule_counts(evaluated, suite)] == [
        ("d.death_date.not_before_birth", "birth_date,death_date", 3, 1),
        ("d.document.registered_fields", "document", 4, 1)]
    _, quarantined = split(evaluated, suite)
    assert [(r._source_key, r._messages) for r in quarantined.collect()] == [
        ("K3", ["raw.test_deaths.document: d.document.registered_fields failed for key K3: "
                "value 'unknown fields a, tmp_sync_flag'"])]
    names = derived_column_names(suite)
    assert names == {"d.death_date.not_before_birth": "birth_date__death_date__dates_ordered",
                     "d.document.registered_fields": "document__fields_registered"}
    gx = {r.k: (r.birth_date__death_date__dates_ordered, r.document__fields_registered)
          for r in _gx_frame(df, suite).collect()}
    assert gx == {"K1": (True, True), "K2": (False, True), "K3": (True, False), "K4": (None, True),
                  "K5": (None, None)}
    configs = _gx_expectation_configs(suite)
    assert [(c["type"], c["kwargs"], c["severity"]) for c in configs] == [
        ("expect_column_values_to_be_in_set", {"column": "birth_date__death_date__dates_ordered", "value_set": [True]},
         "warning"),
        ("expect_column_values_to_be_in_set", {"column": "document__fields_registered", "value_set": [True]},
         "critical")]
    assert configs[0]["description"].startswith(
        "d.death_date.not_before_birth [warn]: birth_date is on or before death_date")


@pytest.mark.parametrize("change, message", [
    (lambda k: k.update(column_b="birth_date"), "two different columns"),
    (lambda k: k.update(formats=["yyyy-MM-dd HH"]), "unsupported field 'HH'"),
    (lambda k: k.update(or_equal="yes"), "'or_equal' must be true or false"),
])
def test_load_suite_rejects_bad_pair_rule(tmp_path, change, message):
    doc = json.loads(json.dumps(PAIR_AND_FIELDS_SUITE))
    change(doc["expectations"][0]["kwargs"])
    (tmp_path / "raw.test_deaths.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_suite("raw.test_deaths", tmp_path)


def test_applications_registered_fields_cover_the_projection():
    """Every top-level field the registry projects from a zhengwu application is a registered field of the suite."""
    from govlake.extract.registry import load_registry, projection_paths

    obj = load_registry()["zhengwu"].objects["applications"]
    projected = {p[2:].split(".")[0] for path in obj.projection.values() for p in projection_paths(path)}
    rule = next(r for r in load_suite("raw.zhengwu_applications").rules
                if r.expectation_type == "expect_document_fields_to_be_registered")
    assert projected <= set(rule.kwargs["fields"])
    assert set(rule.kwargs["fields"]) - projected == {"_id", "form", "steps"}


def test_row_condition_and_column_pair_rules(spark, tmp_path):
    """row_condition restricts a rule to the rows where it is TRUE (uniqueness among them only: one current row
    per key of an SCD type 2 table); the column-pair rule compares as the columns' types and skips NULLs. The GX
    checkpoint agrees (conditional rules as derived columns from the row-level result, the pair rule native)."""
    doc = {"name": "unified.test_scd2", "meta": {"key_columns": ["pid", "valid_from"]}, "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "pid", "row_condition": "is_current"},
         "meta": {"rule_id": "s.pid.one_current", "action": "fail"}},
        {"type": "expect_column_pair_values_a_to_be_greater_than_b",
         "kwargs": {"column_A": "valid_to", "column_B": "valid_from"},
         "meta": {"rule_id": "s.valid_to.after_from", "action": "fail"}},
        {"type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": "valid_to", "row_condition": "NOT is_current"},
         "meta": {"rule_id": "s.valid_to.closed", "action": "warn"}},
    ]}
    (tmp_path / "unified.test_scd2.json").write_text(json.dumps(doc), encoding="utf-8")
    suite = load_suite("unified.test_scd2", tmp_path)
    d1, d2 = dt.date(2025, 6, 1), dt.date(2025, 6, 30)
    rows = [("A", d1, d2, False), ("A", d2, None, True),   # a move: closed + current (good)
            ("B", d1, None, True), ("B", d2, None, True),  # two current rows for B: one fails
            ("C", d2, d2, False),                          # zero-length version: fails the pair rule
            ("D", d1, None, False), ("E", d1, None, None)]  # closed without end (warn); is_current NULL: not judged
    df = spark.createDataFrame(rows, "pid string, valid_from date, valid_to date, is_current boolean")
    evaluated = evaluate(df, suite)
    failed = {(r.pid, str(r.valid_from)): r._failed_rules for r in evaluated.collect() if r._failed_rules}
    assert failed == {("B", "2025-06-30"): ["s.pid.one_current"], ("C", "2025-06-30"): ["s.valid_to.after_from"],
                      ("D", "2025-06-01"): ["s.valid_to.closed"]}
    counts = rule_counts(evaluated, suite)
    assert [(c["rule_id"], c["column"], c["evaluated"], c["failed"]) for c in counts] == [
        ("s.pid.one_current", "pid", 3, 1), ("s.valid_to.after_from", "valid_to,valid_from", 2, 1),
        ("s.valid_to.closed", "valid_to", 3, 1)]
    with pytest.raises(FailRuleViolated, match=r"s\.pid\.one_current failed for 1 of 3 rows; rule s\.valid_to"):
        enforce_fail_rules(counts, suite)
    result = run_checkpoint(spark, df, suite, "scd2:2025-06-30", tmp_path / "reports",
                            run_time=dt.datetime(2025, 6, 30, 12, 0, tzinfo=dt.UTC))
    got = {e["rule_id"]: (e["type"], e["success"], e["unexpected_count"]) for e in result["expectations"]}
    assert got == {"s.pid.one_current": ("expect_column_values_to_be_unique", False, 1),
                   "s.valid_to.after_from": ("expect_column_pair_values_a_to_be_greater_than_b", False, 1),
                   "s.valid_to.closed": ("expect_column_values_to_not_be_null", False, 1)}
    assert _both_engines(spark, df, suite, tmp_path / "engines") == {  # (success, element, missing, unexpected)
        "s.pid.one_current": (False, 7, 4, 1),     # judged: the 3 current rows
        "s.valid_to.after_from": (False, 7, 5, 1),  # judged: the 2 rows with both dates
        "s.valid_to.closed": (False, 7, 4, 1)}      # judged: the 3 rows that are not current (E's NULL is not)
    bad = dict(doc, expectations=[dict(doc["expectations"][0], kwargs={"column": "pid", "row_condition": " "})])
    (tmp_path / "unified.test_scd2.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ValueError, match="row_condition"):
        load_suite("unified.test_scd2", tmp_path)


def _both_engines(spark, df, suite, reports) -> dict:
    """GX's own checkpoint (its Spark engine) and the single-pass result on the same batch; asserts they agree on
    every rule (success, element, missing and unexpected counts) and on the statistics; returns the figures."""
    from govlake.quality.rules import count_rules, save_validation_result, tally

    when = dt.datetime(2025, 6, 30, 18, 0, tzinfo=dt.UTC)
    gx_run = run_checkpoint(spark, df, suite, "gx:2025-06-30", reports, run_time=when, data_docs=False)
    counts = count_rules(evaluate(df, suite), suite)
    # counting without ranking the copies of a duplicated key (the unified gate's way) counts the same
    assert count_rules(evaluate(df, suite, rank_duplicates=False), suite) == counts
    # and counting without flagging rows at all (tally: uniqueness by grouping keys) too
    assert tally(df, suite) == counts
    single = save_validation_result(suite, counts, "single:2025-06-30", reports, run_time=when)

    def figures(out):
        return {e["rule_id"]: (e["success"], e["element_count"], e["missing_count"], e["unexpected_count"])
                for e in out["expectations"]}

    assert figures(single) == figures(gx_run)
    assert (single["success"], single["statistics"]) == (gx_run["success"], gx_run["statistics"])
    assert single["max_severity"] == gx_run["max_severity"]
    assert "/single:2025-06-30/" in single["results_path"]
    return figures(single)


@pytest.mark.parametrize("doc", [PEOPLE_SUITE, CODE_PACK_MORE, PAIR_AND_FIELDS_SUITE, CODE_PACK_SUITE],
                         ids=lambda d: d["name"])
def test_single_pass_result_equals_the_gx_checkpoint(spark, tmp_path, doc):
    """The GX validation result the validate stage stores by default (built from the gate's one-pass counts, no
    Spark job of GX's) is the one GX's own checkpoint computes: every native type (duplicates counted GX's way:
    every row of a duplicated key), every code-pack type, the GovLake pair and document types, NULLs as missing."""
    (tmp_path / f"{doc['name']}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    suite = load_suite(doc["name"], tmp_path)
    if doc is PEOPLE_SUITE:
        df = spark.createDataFrame(PEOPLE_ROWS, PEOPLE_SCHEMA)
    elif doc is CODE_PACK_MORE:
        df = spark.createDataFrame([
            ("K1", "130102", "20", "21", "13812345678", "050000", "91350100M000100Y43", "11010519491231002X"),
            ("K2", "110228", "4", "21", "138 1234 5678", "10010", "91350100M000100Y44", "11010519491231002x"),
            ("K3", "990000", "20", "99", "0311-1234567", "050000", None, "１１０１０５１９４９１２３１００２Ｘ"),
            ("K4", None, None, None, "+86 13812345678", "010010", "91350100m000100y43", "130102900101001")],
            "k string, division string, marital string, education string, phone string, postcode string, "
            "credit_code string, id_no string")
    elif doc is PAIR_AND_FIELDS_SUITE:
        df = spark.createDataFrame([
            ("K1", "1940-05-01", "2025-06-01", '{"_id": 1, "k": "K1"}'),
            ("K2", "1940-05-01", "1939-12-31", '{"k": "K2"}'),
            ("K3", "1940-05-01", "1940年5月1日", '{"k": "K3", "tmp_sync_flag": "1"}'),
            ("K4", "1940-05-01", "2023年2月30日", "[1]"),
            ("K5", None, "1939-12-31", None)], "k string, birth_date string, death_date string, document string")
    else:
        df = spark.createDataFrame([
            ("C1", "1949年12月31日", "女", "11010519491231002X"), ("C2", "2023年2月30日", "女", "11010519491231002X"),
            ("C3", "1949年12月31日", "男", "11010519491231002X"), ("C4", "1949年1月5日", "男", "11010519491231007X"),
            ("C5", "1949-12-31", None, None)], "case_no string, birth_date string, sex string, id_no string")
    got = _both_engines(spark, df, suite, tmp_path / "reports")
    expected = {  # (success, element, missing, unexpected) of a few rules, worked out by hand from the rows
        "raw.test_people": {"p.pn.not_null": (False, 8, 0, 1),
                            "p.pn.unique": (False, 8, 1, 4),        # P1 twice, P7 twice: all 4 rows, as GX counts
                            "p.hh_rel.unique": (False, 8, 0, 4),    # (H2,02) twice, (H4,01) twice
                            "p.age.between": (False, 8, 1, 2)},     # abc, 151
        "raw.test_org": {"o.division.gbt2260": (False, 4, 1, 1), "o.credit_code.gb32100": (False, 4, 1, 1),
                         "o.phone.canonical": (False, 4, 0, 3)},
        "raw.test_deaths": {"d.death_date.not_before_birth": (False, 5, 2, 1),
                            "d.document.registered_fields": (False, 5, 1, 1)},
        "raw.test_civil": {"c.birth.valid_date": (False, 5, 0, 2), "c.sex.matches_id": (False, 5, 1, 1)},
    }[doc["name"]]
    assert {k: got[k] for k in expected} == expected


def test_gx_project_lock_serialises_data_docs_builds(tmp_path):
    """The DAG stores results and builds Data Docs from parallel processes: a build waits while another holder has
    the GX project's lock (flock: separate opens conflict, in other processes as in other threads)."""
    import threading
    import time

    from govlake.quality.rules import build_data_docs, gx_project_lock

    reports = tmp_path / "reports"
    with pytest.raises(FileNotFoundError, match="no Great Expectations project"):
        build_data_docs(reports)
    (reports / "gx").mkdir(parents=True)
    (reports / "gx" / "great_expectations.yml").write_text("", encoding="utf-8")  # a (broken) project exists
    done = []

    def build():
        try:
            done.append(build_data_docs(reports))
        except Exception as exc:  # noqa: BLE001 - whether the empty project builds or fails, it ran after the lock
            done.append(type(exc).__name__)

    with gx_project_lock(reports):
        worker = threading.Thread(target=build)
        worker.start()
        time.sleep(1.0)
        assert done == []  # still waiting for the lock
    worker.join(timeout=60)
    assert len(done) == 1 and not worker.is_alive()
