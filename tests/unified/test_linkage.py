"""Person linkage: deterministic on the GB 11643 ID, Fellegi–Sunter (Splink, fixed m/u) without it; accuracy."""
from __future__ import annotations

import dataclasses

import pandas as pd

from govlake.extract.registry import load_registry
from govlake.unified import linkage
from govlake.unified import persons as unified

CIVIL_COLS = ("case_no string, applicant_id_no string, applicant_name string, sex string, birth_date string, "
              "community_code string, updated_at string, _source_table string, _row_number long")


#: Delivered columns of staging.hukou_persons (+ lineage) for the inline household-registry rows below.
HUKOU_COLUMNS = ("person_no string, id_no string, name string, sex_code string, birth_date string, ethnic_code string, "
                 "household_no string, relation_code string, community_code string, address string, phone string, "
                 "updated_at string, marital_status string, education string, registration_type string, "
                 "_source_table string, _row_number long")

def test_linkage_decisions(spark):
    hukou = spark.createDataFrame([
        ("HK1", "130102199001011237", "张三", "1", "19900101", "01", "H1", "02", "130102001002", "长安区2号",
         None, "2025-06-01 10:00:00", "20", "70", "户籍", "persons", 1),
    ], HUKOU_COLUMNS)
    civil = spark.createDataFrame([
        ("DB1", "130102199001011237", "张 三", "男", "1990年1月1日", "130102001002", "2025-06-02 09:00:00",
         "subsistence_allowance", 1),   # same ID, name written with a space -> same person by ID
        ("DB2", None, "张三", "男", "1990年1月1日", "130102001002", "2025-06-02 09:00:00",
         "subsistence_allowance", 2),   # no ID, same name / birth / community -> linked
        ("DB3", None, "张三", "男", "1985年3月4日", "130102001002", "2025-06-02 09:00:00",
         "subsistence_allowance", 3),   # namesake, other birth date, no ID -> apart
    ], CIVIL_COLS)
    reg = load_registry()
    cands = unified.person_candidates(hukou, "hukou", reg["hukou"].objects["persons"].unified).unionByName(
        unified.person_candidates(civil, "civil", reg["civil"].objects["subsistence_allowance"].unified))
    records = unified.dedupe_records(cands)
    by_id = unified.id_links(records)
    reference = records.join(by_id.select("record_key", "person_id"), "record_key")
    prob = linkage.link_residue(spark, records.where("NOT id_valid"), reference, model=linkage.load_model())
    got = sorted(tuple(r) for r in by_id.unionByName(prob).collect())
    namesake = linkage.synthetic_person_id("civil:subsistence_allowance:DB3")
    assert [g[:3] for g in got] == [
        ("civil:subsistence_allowance:DB1", "130102199001011237", "id"),
        ("civil:subsistence_allowance:DB2", "130102199001011237", "probabilistic"),
        ("civil:subsistence_allowance:DB3", namesake, "singleton"),
        ("hukou:persons:HK1", "130102199001011237", "id"),
    ]
    db2 = got[1]
    # explainable: which fields agreed, and the match weight (log2 odds) from the fixed m/u of linkage.yaml
    assert db2[4] == "name:exact;birth_date:exact;sex_code:exact;residence:same_community"
    assert round(db2[3], 2) == 14.98
    assert namesake.startswith("U") and len(namesake) == 18


def test_assign_person_ids_clusters_residue_and_keeps_existing_ids():
    pairs = pd.DataFrame([("a", "b", 12.0, 0.99, "name:exact"), ("b", "c", 3.0, 0.1, "phone:exact"),
                          ("d", "e", 9.0, 0.99, "birth_date:exact"), ("e", "R1", 20.0, 1.0, "id_no:first_17_equal")],
                         columns=["record_key_l", "record_key_r", "match_weight", "match_probability", "agreed_fields"])
    out = linkage.assign_person_ids(["a", "b", "c", "d", "e"], {"R1": "130102199001011237"}, pairs, 8.0,
                                    existing={"b": "U0000000000000000B"})
    assert out == [
        ("a", "U0000000000000000B", "cluster", 12.0, "name:exact"),
        ("b", "U0000000000000000B", "cluster", 12.0, "name:exact"),
        ("c", linkage.synthetic_person_id("c"), "singleton", None, ""),
        ("d", "130102199001011237", "cluster", 9.0, "birth_date:exact"),
        ("e", "130102199001011237", "probabilistic", 20.0, "id_no:first_17_equal"),
    ]


def test_pairwise_accuracy_per_department():
    links = pd.DataFrame([("hukou:persons:H1", "hukou.persons", "P1"), ("hukou:persons:H2", "hukou.persons", "P2"),
                          ("civil:subsistence_allowance:C1", "civil.subsistence_allowance", "P1"),
                          ("civil:subsistence_allowance:C2", "civil.subsistence_allowance", "P1")],
                         columns=["record_key", "department", "person_id"])
    truth = pd.DataFrame([("hukou:persons:H1", "H1"), ("hukou:persons:H2", "H2"), ("hukou:persons:H3", "H3"),
                          ("civil:subsistence_allowance:C1", "H1"), ("civil:subsistence_allowance:C2", "H2")],
                         columns=["record_key", "true_person"])
    r = linkage.linkage_accuracy(links, truth)
    # predicted pairs: H1-C1, H1-C2, C1-C2 (3); true pairs: H1-C1, H2-C2 (2); true positive: H1-C1
    assert {k: r["overall"][k] for k in ("predicted_pairs", "true_pairs", "true_positive_pairs")} == {
        "predicted_pairs": 3, "true_pairs": 2, "true_positive_pairs": 1}
    assert (r["overall"]["precision"], r["overall"]["recall"]) == (0.333333, 0.5)
    civil = r["departments"]["civil.subsistence_allowance"]
    assert (civil["predicted_pairs"], civil["true_pairs"], civil["coverage"]) == (3, 2, 1.0)
    assert r["departments"]["hukou.persons"]["coverage"] == round(2 / 3, 6)


def test_birth_certificate_links_child_probabilistically_and_parents_by_id(spark):
    hukou = spark.createDataFrame([
        ("HK1", "130102202403040019", "张小", "1", "20240304", "01", "H1", "20", "130102001002", "长安区2号",
         None, "2025-06-01 10:00:00", "10", None, "户籍", "persons", 1),
        ("HK2", "130102199001011237", "张三", "1", "19900101", "01", "H1", "02", "130102001002", "长安区2号",
         None, "2025-06-01 10:00:00", "20", "70", "户籍", "persons", 2),
    ], HUKOU_COLUMNS)
    births = spark.createDataFrame([
        ("P1", "张小", "1", "2024-03-04", "李梅", "130102199201021245", "张三", "130102199001011237", "130102001002",
         "2024-03-10 10:00:00", "births", 1),
    ], "cert_no string, child_name string, child_sex string, birth_date string, mother_name string, "
       "mother_id_no string, father_name string, father_id_no string, community_code string, updated_at string, "
       "_source_table string, _row_number long")
    reg = load_registry()
    cands = unified.person_candidates(hukou, "hukou", reg["hukou"].objects["persons"].unified).unionByName(
        unified.person_candidates(births, "health", reg["health"].objects["births"].unified))
    records = unified.dedupe_records(cands)
    by_id = unified.id_links(records)
    reference = records.join(by_id.select("record_key", "person_id"), "record_key")
    prob = linkage.link_residue(spark, records.where("NOT id_valid"), reference, model=linkage.load_model())
    got = sorted(tuple(r)[:3] for r in by_id.unionByName(prob).collect())
    # the certificate carries no ID for the child: name, birth date, sex and community link it to the registry
    assert got == [
        ("health:births:P1#child", "130102202403040019", "probabilistic"),
        ("health:births:P1#father", "130102199001011237", "id"),
        ("health:births:P1#mother", "130102199201021245", "id"),
        ("hukou:persons:HK1", "130102202403040019", "id"),
        ("hukou:persons:HK2", "130102199001011237", "id"),
    ]


def test_truth_names_one_record_per_role_of_a_multi_person_row(tmp_path):
    pd.DataFrame({"person_key": ["H1", "H2", "H3"]}).to_csv(tmp_path / "persons.csv", index=False)
    pd.DataFrame([("civil", "marriages", "J1", "husband", "H1"), ("civil", "marriages", "J1", "wife", "H2"),
                  ("health", "births", "P1", "child", "H3"), ("health", "births", "P1", "mother", "H2"),
                  ("health", "deaths", "D1", "deceased", "H1"),
                  ("civil", "subsistence_allowance", "C1", "applicant", "H1")],
                 columns=["source", "table", "row_key", "role", "person_key"]).to_csv(tmp_path / "links.csv",
                                                                                      index=False)
    got = linkage.truth_records(tmp_path)
    assert list(map(tuple, got.values)) == [
        ("civil:marriages:J1#husband", "H1"), ("civil:marriages:J1#wife", "H2"),
        ("civil:subsistence_allowance:C1", "H1"),
        ("health:births:P1#child", "H3"), ("health:births:P1#mother", "H2"), ("health:deaths:D1", "H1"),
        ("hukou:persons:H1", "H1"), ("hukou:persons:H2", "H2"), ("hukou:persons:H3", "H3"),
    ]
    assert linkage.role_objects() == {"civil:marriages", "health:births"}


#: Candidate columns blocking_reference reads (a subset of govlake.unified.persons.person_candidates) + person_id.
BLOCK_COLS = ("record_key string, id_no string, name string, sex_code string, birth_date date, "
              "community_code string, address string, phone string, person_id string")


def _block_rows(spark, rows):
    import datetime as dt

    return spark.createDataFrame([(*r[:4], dt.date.fromisoformat(r[4]) if r[4] else None, *r[5:]) for r in rows],
                                 BLOCK_COLS)


def test_blocking_reference_uses_compound_keys_only(spark):
    residue = _block_rows(spark, [
        ("c:1", None, "张三", "1", "1990-01-01", "130102001002", None, None, None),
        ("c:2", "13010219850304123X", "李四", "1", None, None, None, None, None),   # bad check digit, no birth
    ])
    reference = _block_rows(spark, [
        ("h:name_birth", "130102199001011237", "张三", "1", "1990-01-01", "130102009009", None, None, "P1"),
        ("h:birth_comm", "130102199001012345", "张叁", "1", "1990-01-01", "130102001002", None, None, "P2"),
        ("h:name_comm", "130102199202021234", "张三", "1", "1992-02-02", "130102001002", None, None, "P3"),
        ("h:birth_only", "130104199001013456", "王五", "1", "1990-01-01", "130104001001", None, None, "P4"),
        ("h:name_only", "130104198001011234", "张三", "1", "1980-01-01", "130104001001", None, None, "P5"),
        ("h:id_body", "130102198503041238", "李四", "1", "1985-03-04", None, None, None, "P6"),
        ("h:pinyin_comm", "130102197001011234", "章三", "2", "1970-01-01", "130102001002", None, None, "P7"),
    ])
    got = sorted(r[0] for r in linkage.blocking_reference(residue, reference, linkage.load_model())
                 .select("record_key").collect())
    # a birth date alone or a name alone no longer blocks (h:birth_only, h:name_only); every compound rule does
    assert got == ["h:birth_comm", "h:id_body", "h:name_birth", "h:name_comm", "h:pinyin_comm"]


def test_blocking_reference_skips_values_shared_by_more_than_max_block_size(spark, caplog):
    residue = _block_rows(spark, [("c:1", None, "张三", "1", "1990-01-01", "130102001002", None, "13800000000", None)])
    reference = _block_rows(spark, [
        ("h:1", "130102199001011237", "张三", "1", "1990-01-01", None, None, None, "P1"),
        ("h:2", "130102199001012345", "张三", "1", "1990-01-01", None, None, None, "P2"),
        ("h:3", "130102199001013456", "赵六", "2", "1960-05-05", None, None, "13800000000", "P3"),
    ])
    model = dataclasses.replace(linkage.load_model(), max_block_size=1)
    with caplog.at_level("WARNING", logger="govlake.unified.linkage"):
        got = sorted(r[0] for r in linkage.blocking_reference(residue, reference, model).select("record_key").collect())
    assert got == ["h:3"]   # name + birth date is shared by 2 > 1 records: skipped; the phone block (1) stays
    assert "['name', 'birth_date']: 1 value(s) shared by more than 1 ID'd records (largest block 2)" in caplog.text
    assert sorted(r[0] for r in linkage.blocking_reference(residue, reference, linkage.load_model())
                  .select("record_key").collect()) == [
        "h:1", "h:2", "h:3"]


def test_splink_blocking_rules_are_the_model_rules():
    model = linkage.load_model()
    rules = [r["blocking_rule"] for r in linkage.splink_settings(model)["blocking_rules_to_generate_predictions"]]
    assert rules[:3] == ["(l.id_body = r.id_body) AND (l.residue + r.residue) > 0",
                         "(l.phone = r.phone) AND (l.residue + r.residue) > 0",
                         "(l.name = r.name AND l.birth_date = r.birth_date) AND (l.residue + r.residue) > 0"]
    assert len(rules) == len(model.blocking_rules)
    assert all(len(r.keys) > 1 or r.keys[0] in ("id_body", "phone") for r in model.blocking_rules)
