"""Tests of govlake.quality.audit: release of corrected rows from quarantine, recall against a fault manifest."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from govlake.core import lake
from govlake.core.config import Settings
from govlake.quality.audit import (
    crosscheck,
    recall,
    recall_markdown,
    release,
    rule_reads_fault_column,
    stored_result,
    write_recall,
)
from govlake.quality.stage import validate_table

D = dt.date(2025, 6, 30)
SUITE = {
    "name": "raw.t_people",
    "meta": {"table": "raw.t_people", "key_columns": ["pno"]},
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "pno"},
         "meta": {"rule_id": "p.pno.not_null", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "pno"},
         "meta": {"rule_id": "p.pno.unique", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_valid_gb11643_id", "kwargs": {"column": "id_no"},
         "meta": {"rule_id": "p.id.gb11643", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_normalized", "kwargs": {"column": "id_no", "kind": "gb11643_id"},
         "meta": {"rule_id": "p.id.canonical", "action": "warn"}},
        {"type": "expect_column_values_to_be_in_gb_code_list", "kwargs": {"column": "sex", "code_list": "sex"},
         "meta": {"rule_id": "p.sex.gbt2261_1", "action": "quarantine"}},
    ],
}
GOOD = "11010519491231002X"
ROWS = [  # pno, id_no, sex, name
    ("P1", GOOD, "2", "甲"),                    # clean
    ("P2", "11010519491231007X", "2", "乙"),    # bad check character → quarantined
    ("P3", "11010519491231002x", "2", "丙"),    # lower-case x → flagged (warn), kept
    ("P4", GOOD, "7", "丁"),                    # sex not GB/T 2261.1 → quarantined (no fault in manifest)
    ("P5", GOOD, "2", "戊"),                    # duplicate_row: two identical copies
    ("P5", GOOD, "2", "戊"),
    ("P6", GOOD, "1", "己"),                    # manifest says birth_date fault: no rule reads it → missed
    ("P7", GOOD, "7", "庚"),                    # fault on pseudo-column 'identity' (= id_no): the sex rule is unrelated
    (None, GOOD, "2", "辛"),                    # business_key_null: the manifest locates it by name
]
FAULTS = pd.DataFrame([(*f, "") for f in [
    ("t", "people", "P2", "id_no", "id_bad_checksum", GOOD, "11010519491231007X"),
    ("t", "people", "P2", "identity", "identity_damaged", "", ""),             # pseudo-column: caught by the ID rule
    ("t", "people", "P3", "id_no", "id_lowercase_x", GOOD, "11010519491231002x"),
    ("t", "people", "P5", "*", "duplicate_row", "1 row", "2 identical rows"),
    ("t", "people", "P6", "birth_date", "birth_date_impossible", "19490101", "19490230"),
    ("t", "people", "P7", "identity", "identity_other", "", ""),              # quarantined by an unrelated rule
    ("t", "people", "P9", "id_no", "id_null", GOOD, ""),                      # key not in the batch
    ("t", "pets", "Q1", "name", "name_rare_char", "a", "b"),                   # table not extracted
]] + [("t", "people", "P10", "pno", "business_key_null", "P10", "", '{"name": "辛", "sex": "2"}')],
    columns=["source", "table", "row_key", "column", "fault_kind", "original_value", "delivered_value", "row_locator"])
#: the test's manifest pseudo-column: 'identity' stands for the delivered id_no
PSEUDO = {("t", "people"): {"identity": ("id_no",)}}


@pytest.fixture(scope="module")
def lakehouse(spark, tmp_path_factory):
    """A tiny lakehouse: raw.t_people for D, validated (no Data Docs) into staging and quarantine."""
    home = tmp_path_factory.mktemp("audit-home")
    settings = Settings.from_env({"GOVLAKE_HOME": str(home)})
    suites = home / "suites"
    suites.mkdir()
    (suites / "raw.t_people.json").write_text(json.dumps(SUITE, ensure_ascii=False), encoding="utf-8")
    raw = spark.createDataFrame([(*r, i + 1, "t", "people", "t.people:2025-06-30", D, f"h{i}")
                                 for i, r in enumerate(ROWS)],
                                "pno string, id_no string, sex string, name string, _row_number long, _source string,"
                                " _source_table string, _batch_id string, _logical_date date, _row_hash string")
    lake.replace_partition(raw, settings.table_path("raw", "t_people"), "_logical_date", D)
    out = validate_table(spark, settings, "t_people", D, data_docs=False, suites_dir=suites)
    assert (out["raw"], out["accepted"], out["quarantined"]) == (9, 4, 5)
    return settings, suites


def test_recall_against_the_manifest(spark, lakehouse):
    settings, suites = lakehouse
    rep = recall(spark, settings, D, faults=FAULTS, suites_dir=suites, projections={}, pseudo_columns=PSEUDO)
    kinds = {(k["table"], k["fault_kind"]): k for k in rep["kinds"]}
    got = {key: (k["status"], k["injected"], k["caught"], k["quarantined"], k["flagged"], k["recall"], k["rules"])
           for key, k in kinds.items()}
    assert got == {
        ("t_people", "birth_date_impossible"): ("extracted", 1, 0, 0, 0, 0.0, []),
        ("t_people", "business_key_null"): ("extracted", 1, 1, 1, 0, 1.0, ["p.pno.not_null"]),
        ("t_people", "identity_damaged"): ("extracted", 1, 1, 1, 0, 1.0, ["p.id.gb11643"]),
        ("t_people", "identity_other"): ("extracted", 1, 0, 0, 0, 0.0, []),
        ("t_people", "duplicate_row"): ("extracted", 1, 1, 1, 0, 1.0, ["p.pno.unique"]),
        ("t_people", "id_bad_checksum"): ("extracted", 1, 1, 1, 0, 1.0, ["p.id.gb11643"]),
        ("t_people", "id_lowercase_x"): ("extracted", 1, 1, 0, 1, 1.0, ["p.id.canonical"]),
        ("t_people", "id_null"): ("extracted", 0, 0, 0, 0, None, []),
        ("t_pets", "name_rare_char"): ("not extracted", 1, None, None, None, None, []),
    }
    assert kinds[("t_people", "id_null")]["not_in_batch"] == 1
    # clean rows: P1, P4 (P4 quarantined although the manifest has no fault for it); the row without a key is the
    # business_key_null fault's (found by its locator), not a clean row
    assert rep["clean"] == [{"table": "t_people", "clean_rows": 2, "quarantined": 1, "rate": 0.5}]
    assert rep["false_quarantine_rate"] == 0.5
    js, md = write_recall(rep, settings.reports_dir)
    assert js.name == "recall_2025-06-30.json" and json.loads(js.read_text(encoding="utf-8")) == rep
    text = md.read_text(encoding="utf-8")
    assert "| t_pets | name_rare_char | not extracted | 1 | — |" in text and text == recall_markdown(rep)


def test_rule_reads_fault_column():
    proj = {"grid_code": "$.location.grid_code"}
    assert rule_reads_fault_column("location", ("grid_code",), proj)
    assert rule_reads_fault_column("location.grid_code", ("grid_code",), {})
    assert rule_reads_fault_column("*", ("x",), {}) and rule_reads_fault_column("category", ("document",), {})
    assert not rule_reads_fault_column("birth_date", ("id_no",), {})
    # a pseudo-column of the manifest is read by rules on the delivered columns it stands for, and only those
    assert rule_reads_fault_column("coordinates", ("lat",), {}, ("lng", "lat"))
    assert not rule_reads_fault_column("coordinates", ("lat",), {})
    assert not rule_reads_fault_column("coordinates", ("division_code",), {}, ("lng", "lat"))


def test_release_corrected_rows(spark, lakehouse):
    settings, suites = lakehouse
    corrections = spark.createDataFrame(
        [("P2", GOOD, None), ("P4", None, None), ("P8", GOOD, None)],  # P4: sex not given → still '7'
        "pno string, id_no string, name string").drop("name")
    first = release(spark, settings, "t_people", D, corrections, "r1", suites_dir=suites)
    assert (first["released"], first["still_quarantined"], first["not_in_quarantine"], first["staging"]) == (
        1, [{"key": "P4", "rule_ids": ["p.sex.gbt2261_1"]}], ["P8"], {"inserted": 1, "updated": 0})
    staging = spark.read.format("delta").load(settings.table_path("staging", "t_people"))
    p2 = staging.where("pno = 'P2'").collect()
    assert [(r.id_no, r.sex, r.name, r._row_number, r._batch_id) for r in p2] == [
        (GOOD, "2", "乙", 2, "t.people:2025-06-30")]
    q = {r._source_key: r for r in spark.read.format("delta").load(settings.table_path("quarantine", "t_people"))
         .collect()}
    assert len(q) == 5  # history kept: nothing deleted
    assert (q["P2"]._released, q["P2"]._release_id, json.loads(q["P2"]._released_row)["id_no"]) == (True, "r1", GOOD)
    assert (q["P4"]._released, q["P4"]._release_id) == (False, None)
    # a second run of the same corrections publishes nothing again (idempotent)
    second = release(spark, settings, "t_people", D, corrections, "r1", suites_dir=suites)
    assert (second["released"], second["not_in_quarantine"], second["staging"]) == (
        0, ["P2", "P8"], {"inserted": 0, "updated": 0})
    assert staging.count() == 5


def test_release_corrects_the_newest_copy_of_a_record(spark, tmp_path):
    """Two versions of one record in one batch, the newer with a broken ID: validation quarantines both (the newer
    stands for the key and fails its ID rule, the older is the duplicate); correcting the ID releases the newer
    version (its name and update time), even though the older copy came first in the batch."""
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path / "home")})
    suites = tmp_path / "suites"
    suites.mkdir()
    # a registered object (hukou.persons: watermark updated_at), with a suite of the test's own over 4 columns
    suite = {"name": "raw.hukou_persons", "meta": {"table": "raw.hukou_persons", "key_columns": ["person_no"]},
             "expectations": [
                 {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "person_no"},
                  "meta": {"rule_id": "p.person_no.unique", "action": "quarantine"}},
                 {"type": "expect_column_values_to_be_valid_gb11643_id", "kwargs": {"column": "id_no"},
                  "meta": {"rule_id": "p.id.gb11643", "action": "quarantine"}}]}
    (suites / "raw.hukou_persons.json").write_text(json.dumps(suite, ensure_ascii=False), encoding="utf-8")
    rows = [("HK1", GOOD, "张三", "2025-06-29 08:00:00"), ("HK1", "11010519491231007X", "张珊", "2025-06-30 09:00:00")]
    raw = spark.createDataFrame([(*r, i + 1, "hukou.persons:2025-06-30", D, f"h{i}") for i, r in enumerate(rows)],
                                "person_no string, id_no string, name string, updated_at string, _row_number long, "
                                "_batch_id string, _logical_date date, _row_hash string")
    lake.replace_partition(raw, settings.table_path("raw", "hukou_persons"), "_logical_date", D)
    out = validate_table(spark, settings, "hukou_persons", D, data_docs=False, suites_dir=suites)
    assert (out["raw"], out["accepted"], out["quarantined"]) == (2, 0, 2)
    corrections = spark.createDataFrame([("HK1", GOOD)], "person_no string, id_no string")
    got = release(spark, settings, "hukou_persons", D, corrections, "r1", suites_dir=suites)
    assert (got["released"], got["still_quarantined"], got["staging"]) == (1, [], {"inserted": 1, "updated": 0})
    staged = spark.read.format("delta").load(settings.table_path("staging", "hukou_persons")).collect()
    assert [(r.person_no, r.id_no, r.name, r.updated_at, r._row_number) for r in staged] == [
        ("HK1", GOOD, "张珊", "2025-06-30 09:00:00", 2)]


def test_crosscheck_of_the_stored_validation_result_with_gx(spark, tmp_path):
    """The validate stage stores the GX result built from its one-pass counts; GX's own checkpoint on the same raw
    batch finds the same figures for every rule, and a stored figure that differs is reported."""
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path / "home")})
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "raw.t_people.json").write_text(json.dumps(SUITE, ensure_ascii=False), encoding="utf-8")
    raw = spark.createDataFrame([(*r, i + 1, "t.people:2025-06-30", D) for i, r in enumerate(ROWS)],
                                "pno string, id_no string, sex string, name string, _row_number long, _batch_id string,"
                                " _logical_date date")
    lake.replace_partition(raw, settings.table_path("raw", "t_people"), "_logical_date", D)
    out = validate_table(spark, settings, "t_people", D, data_docs=True, suites_dir=suites)
    assert out["data_docs"].endswith("local_site/index.html")
    pages = list(Path(out["data_docs"]).parent.glob("validations/**/*.html"))  # the page says who computed it
    assert len(pages) == 1 and "GovLake single pass" in pages[0].read_text(encoding="utf-8")
    assert out["data_docs_page"] == str(pages[0])  # the validate task's own page (the Airflow Data Docs link)
    key, stored = stored_result(settings.reports_dir, "t.people:2025-06-30")
    assert stored.meta["govlake"] == {"engine": "single-pass", "rows": 9,
                                      "suite_version": out["rules"][0]["suite_version"]}
    figures = {r.expectation_config.meta["rule_id"]: (r.success, r.result["unexpected_count"]) for r in stored.results}
    assert figures == {"p.pno.not_null": (False, 1), "p.pno.unique": (False, 2),  # both P5 rows, as GX counts
                       "p.id.gb11643": (False, 1), "p.id.canonical": (False, 1), "p.sex.gbt2261_1": (False, 2)}
    assert crosscheck(spark, settings, D, ["t_people"], suites) == [
        {"table": "raw.t_people", "batch_id": "t.people:2025-06-30", "stored_engine": "single-pass", "rules": 5,
         "mismatches": []}]
    stored.results[1].result["unexpected_count"] = 1  # a stored figure that GX does not find
    from govlake.quality.rules import _gx_context, gx_project_lock

    with gx_project_lock(settings.reports_dir):
        _gx_context(settings.reports_dir).validation_results_store.set(key, stored)
    report = crosscheck(spark, settings, D, ["t_people"], suites)
    assert report[0]["mismatches"] == [{"rule_id": "p.pno.unique", "stored": (False, 9, 1, 1), "gx": (False, 9, 1, 2)}]


def test_data_docs_link_url():
    import importlib.util

    from govlake.core.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location("govlake_data_docs", REPO_ROOT / "plugins" / "govlake_data_docs.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    value = [{"table": "raw.hukou_persons", "data_docs": None},
             {"table": "raw.hukou_households",
              "data_docs": "/h/reports/gx/uncommitted/data_docs/local_site/index.html"}]
    assert plugin.data_docs_url(value) == "file:///h/reports/gx/uncommitted/data_docs/local_site/index.html"
    assert plugin.data_docs_url(json.dumps(value), "http://docs.example/govlake/") == (
        "http://docs.example/govlake/gx/uncommitted/data_docs/local_site/index.html")
    assert plugin.data_docs_url([{"data_docs": None}]) == "" and plugin.data_docs_url(None) == ""
    # a validate task's own page: the first table with quarantined rows, else the first; ':' of batch ids quoted
    site = "/h/reports/gx/uncommitted/data_docs/local_site"
    pages = [{"table": f"raw.hukou_{t}", "quarantined": q, "data_docs": f"{site}/index.html",
              "data_docs_page": f"{site}/validations/raw/hukou_{t}/hukou.{t}:2025-06-30/20250630T160000Z/b.html"}
             for t, q in (("persons", 0), ("households", 2))]
    assert plugin.data_docs_url(pages, "http://127.0.0.1:8000") == (
        "http://127.0.0.1:8000/gx/uncommitted/data_docs/local_site/validations/raw/hukou_households/"
        "hukou.households%3A2025-06-30/20250630T160000Z/b.html")
    pages[1]["quarantined"] = 0
    assert plugin.data_docs_url(pages).endswith("/validations/raw/hukou_persons/hukou.persons%3A2025-06-30/"
                                                "20250630T160000Z/b.html")
    assert [link.name for link in plugin.GovLakeDataDocsPlugin.operator_extra_links] == ["Data Docs"]
