"""Person linkage: deterministic on the GB 11643 ID, Fellegi–Sunter (Splink, fixed m/u) without it; accuracy."""
from __future__ import annotations

import pandas as pd

from jobs import linkage, unified
from jobs.sources import load_registry

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
    prob = linkage.link_residue(spark, records.where("NOT id_valid"), reference)
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
        unified.person_candidates(births, "health", {**reg["health"].objects["births"].unified,
                                                     "record_key": ["cert_no"]}))
    records = unified.dedupe_records(cands)
    by_id = unified.id_links(records)
    reference = records.join(by_id.select("record_key", "person_id"), "record_key")
    prob = linkage.link_residue(spark, records.where("NOT id_valid"), reference)
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
                  ("health", "deaths", "D1", "deceased", "H1"), ("civil", "subsistence_allowance", "C1", "applicant", "H1")],
                 columns=["source", "table", "row_key", "role", "person_key"]).to_csv(tmp_path / "links.csv", index=False)
    got = linkage.truth_records(tmp_path)
    assert list(map(tuple, got.values)) == [
        ("civil:marriages:J1#husband", "H1"), ("civil:marriages:J1#wife", "H2"),
        ("civil:subsistence_allowance:C1", "H1"),
        ("health:births:P1#child", "H3"), ("health:births:P1#mother", "H2"), ("health:deaths:D1", "H1"),
        ("hukou:persons:H1", "H1"), ("hukou:persons:H2", "H2"), ("hukou:persons:H3", "H3"),
    ]
    assert linkage.role_objects() == {"civil:marriages", "health:births"}
