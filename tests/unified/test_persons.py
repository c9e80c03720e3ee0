"""Unified layer: department conventions to national codes, person survivorship, event drift."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from govlake.extract.registry import load_registry
from govlake.unified import persons as unified

DAY = dt.date(2025, 6, 30)
SURVIVORSHIP = unified.load_survivorship()
LINEAGE = "_source_table string, _row_number long"


def _hukou(spark):
    rows = [
        # person_no id_no name sex birth ethnic household relation community address phone updated marital
        # education registration_type
        ("HK1", "11010519491231002x", "阿依古丽.买买提", "2", "19491231", "1", "H1", "02", "130102001001", "长安区1号",
         "138 0000 0001", "2025-06-01 10:00:00", "30", " ９０", "流动", "persons", 1),
        ("HK2", "130102199001011237", "张 三", "1", "19900101", "01", "H2", "02", "130102001002", "长安区2号",
         "+86 １３８-0000-0002", "2025-06-02 10:00:00", "20", "21", "户籍", "persons", 2),
        ("HK3", "130102199001011236", "李四", "1", "19900101", "01", "H3", "02", "130102001002", None,
         None, "2025-06-02 10:00:00", "99", "99", "外来", "persons", 3),
    ]
    cols = ("person_no string, id_no string, name string, sex_code string, birth_date string, ethnic_code string, "
            "household_no string, relation_code string, community_code string, address string, phone string, "
            "updated_at string, marital_status string, education string, registration_type string, " + LINEAGE)
    return spark.createDataFrame(rows, cols)


def _civil(spark):
    rows = [
        ("DB1", "１１０１０５１９４９１２３１００２Ｘ", "阿依古丽·买买提", "女", "1949年12月31日", "130102001009",
         "2025-06-20 09:00:00", "subsistence_allowance", 1),
        ("DB2", "130102199001011237", "张三", "男", "1990年1月1日", "130102001002", "2025-06-25 09:00:00",
         "subsistence_allowance", 2),
    ]
    cols = ("case_no string, applicant_id_no string, applicant_name string, sex string, birth_date string, "
            "community_code string, updated_at string, " + LINEAGE)
    return spark.createDataFrame(rows, cols)


def _candidates(spark):
    registry = load_registry()
    hukou = unified.person_candidates(_hukou(spark), "hukou", registry["hukou"].objects["persons"].unified)
    civil = unified.person_candidates(_civil(spark), "civil",
                                      registry["civil"].objects["subsistence_allowance"].unified)
    return hukou.unionByName(civil)


def test_department_conventions_to_national_codes(spark):
    rows = {r.record_key: r for r in _candidates(spark).collect()}
    aygul = rows["hukou:persons:HK1"]
    assert (aygul.id_no, aygul.id_valid, aygul.name, aygul.sex_code, aygul.birth_date, aygul.ethnic_code) == (
        "11010519491231002X", True, "阿依古丽·买买提", "2", dt.date(1949, 12, 31), "01")
    assert (aygul.district_code, aygul.phone, aygul.priority) == ("130102", "13800000001", 1)
    # GB/T 2261.2 marital status kept when it is in the code list, NULL otherwise (99 is not a code)
    assert [rows[k].marital_status_code for k in ("hukou:persons:HK1", "hukou:persons:HK2", "hukou:persons:HK3")] == [
        "30", "20", None]
    # GB/T 4658 education kept when in the code list (full-width folded, trimmed; 99 is not a code); registration
    # type through the registry's registration_map (外来 is not mapped → NULL)
    assert [(rows[k].education_code, rows[k].registration_type)
            for k in ("hukou:persons:HK1", "hukou:persons:HK2", "hukou:persons:HK3")] == [
        ("90", "流动"), ("21", "户籍"), (None, None)]
    civil = rows["civil:subsistence_allowance:DB1"]
    assert (civil.id_no, civil.id_valid, civil.name, civil.sex_code, civil.birth_date, civil.ethnic_code) == (
        "11010519491231002X", True, "阿依古丽·买买提", "2", dt.date(1949, 12, 31), None)
    assert rows["hukou:persons:HK2"].name == "张三"
    assert rows["hukou:persons:HK2"].phone == "13800000002"  # full-width digits, separators, +86: canonical
    assert rows["hukou:persons:HK3"].id_valid is False  # check character 6 is wrong (7 is right)


def test_one_person_per_id_with_registry_as_authority(spark):
    persons = unified.resolve_persons(_candidates(spark), DAY, SURVIVORSHIP).orderBy("person_id").collect()
    assert [p.person_id for p in persons] == ["11010519491231002X", "130102199001011237"]
    aygul, zhang = persons
    # the household registry (priority 1) wins for community; civil affairs only adds its name to sources
    assert (aygul.community_code, aygul.household_no, aygul.sources) == ("130102001001", "H1", ["civil", "hukou"])
    assert (zhang.name, zhang.address, zhang.sources) == ("张三", "长安区2号", ["civil", "hukou"])
    assert (zhang.first_seen_date, zhang.last_seen_date, zhang.is_current) == (DAY, DAY, True)
    assert len(aygul["_content_hash"]) == 64


def test_survivorship_fills_gaps_from_the_next_source(spark):
    hukou = _hukou(spark).where("person_no = 'HK2'").withColumn("address", F.lit(None).cast("string"))
    registry = load_registry()
    cands = unified.person_candidates(hukou, "hukou", registry["hukou"].objects["persons"].unified).unionByName(
        unified.person_candidates(_civil(spark).where("case_no = 'DB2'"), "civil",
                                  registry["civil"].objects["subsistence_allowance"].unified))
    (zhang,) = unified.resolve_persons(cands, DAY, SURVIVORSHIP).collect()
    assert (zhang.address, zhang.community_code, zhang.household_no) == (None, "130102001002", "H2")


def test_a_valid_id_survives_over_a_more_authoritative_invalid_one(spark):
    """The registry outranks civil affairs, but its record here has a wrong check digit: the golden id_no is the
    civil-affairs number (valid), while the other attributes still follow authority."""
    zhang = "130102199001011237"
    links = (unified.dedupe_records(_candidates(spark))
             .where("record_key IN ('hukou:persons:HK2', 'civil:subsistence_allowance:DB2')")
             .withColumn("person_id", F.lit(zhang)).withColumn("link_method", F.lit("id"))
             .withColumn("id_no", F.when(F.col("source") == "hukou", F.lit("130102199001011236"))
                         .otherwise(F.col("id_no"))))
    conf = unified.SurvivorshipRules(default=("hukou", "civil"))
    (person,) = unified.golden_records(links, DAY, conf).collect()
    assert (person.id_no, person.name, person.household_no) == (zhang, "张三", "H2")
    only_invalid = links.where("source = 'hukou'")
    assert unified.golden_records(only_invalid, DAY, conf).collect()[0].id_no == "130102199001011236"


def test_grid_event_documents_with_type_drift(spark):
    rows = [
        ("GE1", '{"$date":"2025-06-29T02:30:00Z"}', "130102001001", "130102001001001",
         '{"l1":"城乡建设","l2":"安全生产","l3":"安全隐患"}', "文本1", "已结案", '{"$date":"2025-06-30T01:00:00Z"}',
         "114.5", "38.0"),
        ("GE2", '{"$date":"2025-06-30T15:59:59Z"}', "130102001001", "130102001001002",
         "环境保护/噪音污染/施工噪音", "文本2", "处理中", None, None, None),
    ]
    cols = ("event_no string, reported_at string, community_code string, grid_code string, category string, "
            "description string, status string, closed_at string, lng string, lat string")
    out = unified.grid_events(spark.createDataFrame(rows, cols)).orderBy("event_id").collect()
    assert [(e.event_id, e.report_date, e.district_code, e.grid_code, e.category_l1, e.category_l2, e.category_l3)
            for e in out] == [
        ("grid:GE1", dt.date(2025, 6, 29), "130102", "130102001001001", "城乡建设", "安全生产", "安全隐患"),
        ("grid:GE2", dt.date(2025, 6, 30), "130102", "130102001001002", "环境保护", "噪音污染", "施工噪音"),
    ]
    assert out[0].reported_at == dt.datetime(2025, 6, 29, 10, 30)  # Asia/Shanghai wall time
    assert out[0].closed_at == dt.datetime(2025, 6, 30, 9, 0)
    assert (out[0].lng, out[1].lng) == (114.5, None)


def test_hotline_messages_both_time_formats_and_labels(spark):
    rows = [("1", "主题", "2019/2/8 9:05:00", "详情"), ("2", "主题2", "2019-08-22 00:00:00", None),
            ("3", "主题3", "2019/2/30 10:00:00", "x")]
    msgs = spark.createDataFrame(rows, "message_id string, subject string, message_time string, detail string")
    labels = spark.createDataFrame([("1", "城乡建设")], "message_id string, category_l1 string")
    out = unified.hotline_events(msgs, labels).orderBy("event_id").collect()
    assert [(e.event_id, e.reported_at, e.category_l1, e.district_code, e.text) for e in out] == [
        ("hotline:1", dt.datetime(2019, 2, 8, 9, 5), "城乡建设", None, "主题\n详情"),
        ("hotline:2", dt.datetime(2019, 8, 22, 0, 0), None, None, "主题2"),
        ("hotline:3", None, None, None, "主题3\nx"),
    ]


def test_finalize_events_dedupes_deterministically(spark):
    rows = [("grid:1", dt.datetime(2025, 6, 1, 8), "a"), ("grid:1", dt.datetime(2025, 6, 2, 8), "b"),
            ("grid:2", None, "c")]
    ev = spark.createDataFrame(rows, "event_id string, reported_at timestamp, text string")
    out = unified.finalize_events(ev, DAY).orderBy("event_id").collect()
    assert [(e.event_id, e.text, e.first_seen_date) for e in out] == [("grid:1", "b", DAY), ("grid:2", "c", DAY)]


def test_survivorship_by_attribute_authority_with_provenance(spark):
    conf = unified.SurvivorshipRules(default=("hukou", "civil"), attributes={"community_code": ("civil", "hukou")})
    recs = unified.dedupe_records(_candidates(spark).withColumn("batch_id", F.concat("source", F.lit(":2025-06-30"))))
    links = unified.link_rows(recs, unified.id_links(recs)).where("person_id = '11010519491231002X'")
    (aygul,) = unified.golden_records(links, DAY, conf).collect()
    assert (aygul.name, aygul.community_code, aygul.household_no) == ("阿依古丽·买买提", "130102001009", "H1")
    prov = {r.attribute: (r.value, r.source, r.record_key, r.batch_id)
            for r in unified.attribute_provenance(links, conf).collect()}
    assert prov["community_code"] == ("130102001009", "civil", "civil:subsistence_allowance:DB1", "civil:2025-06-30")
    assert prov["birth_date"] == ("1949-12-31", "hukou", "hukou:persons:HK1", "hukou:2025-06-30")
    assert "phone" in prov and "death_date" not in prov
    assert (aygul.education_code, aygul.registration_type) == ("90", "流动")
    assert prov["education_code"] == ("90", "hukou", "hukou:persons:HK1", "hukou:2025-06-30")
    assert prov["registration_type"] == ("流动", "hukou", "hukou:persons:HK1", "hukou:2025-06-30")


def test_scd2_move_gives_two_rows_and_rerun_changes_nothing(spark):
    cols = "person_id string, community_code string, district_code string, address string"
    day1 = spark.createDataFrame([("P1", "130102001001", "130102", "a"), ("P2", "130104001001", "130104", "b")], cols)
    hist = unified.scd2_changes(None, day1, DAY, "person_id", unified.RESIDENCE_COLUMNS)
    day2 = spark.createDataFrame([("P1", "130105001001", "130105", "c"), ("P2", "130104001001", "130104", "b")], cols)
    nxt = DAY + dt.timedelta(days=1)
    changes = unified.scd2_changes(hist, day2, nxt, "person_id", unified.RESIDENCE_COLUMNS)
    got = sorted((r.person_id, r.community_code, r.valid_from, r.valid_to, r.is_current) for r in changes.collect())
    assert got == [("P1", "130102001001", DAY, nxt, False), ("P1", "130105001001", nxt, None, True)]
    assert unified.scd2_changes(hist, day1, DAY, "person_id", unified.RESIDENCE_COLUMNS).isEmpty()


def test_relationships_from_relation_to_head(spark):
    m = spark.createDataFrame([("A", "H1", "02"), ("B", "H1", "10"), ("C", "H1", "20"), ("D", "H1", "51"),
                               ("E", "H1", "41"), ("F", "H2", "02")],
                              "person_id string, household_no string, relation_code string")
    got = sorted((r.person_id_1, r.person_id_2, r.relationship, r.basis)
                 for r in unified.relationships(m, survivorship=SURVIVORSHIP).collect())
    assert got == [("A", "B", "spouse", "02-10"), ("A", "C", "parent_child", "02-20"),
                   ("B", "C", "parent_child", "10-20"), ("D", "A", "parent_child", "51-02")]


def test_new_attribute_columns_are_added_to_an_existing_unified_table(spark, tmp_path):
    path = str(tmp_path / "person")
    old = spark.createDataFrame([("P1", "a")], "person_id string, name string")
    unified.ensure_cdf_table(spark, old, path)
    new = spark.createDataFrame([("P1", "a", "20")], "person_id string, name string, education_code string")
    unified.ensure_cdf_table(spark, new, path)  # schema auto-merge is off: the column is added by ALTER TABLE
    got = spark.read.format("delta").load(path)
    assert got.columns == ["person_id", "name", "education_code"]
    unified.ensure_cdf_table(spark, new, path)  # nothing missing any more: no second ALTER
    assert got.isEmpty() and unified.table_version(spark, path) == 1  # created (0), then one ALTER (1)


MARRIAGE_COLS = ("cert_no string, husband_name string, wife_name string, husband_id_no string, wife_id_no string, "
                 "husband_sex string, wife_sex string, husband_birth_date string, wife_birth_date string, "
                 "register_date string, registry_office string, community_code string, updated_at string, "
                 "_source_table string, _batch_id string, _logical_date date")
BIRTH_COLS = ("cert_no string, child_name string, child_sex string, birth_date string, mother_name string, "
              "mother_id_no string, father_name string, father_id_no string, community_code string, "
              "updated_at string, _source_table string, _batch_id string, _logical_date date")
HUSBAND, WIFE = "130102199001011237", "11010519491231002X"


def _marriages(spark):
    return spark.createDataFrame([
        ("J1", "张三", "阿依古丽·买买提", HUSBAND, WIFE, "男", "女", "1990年1月1日", "1949年12月31日", "2015年5月20日",
         "长安区民政局婚姻登记处", "130102001002", "2025-06-01 09:00:00", "marriages", "civil:b1", DAY),
        ("J2", "王五", None, "130102198501010011", None, "男", None, "1985年1月1日", None, "2016年1月2日",
         "长安区民政局婚姻登记处", "130102001002", "2025-06-01 09:00:00", "marriages", "civil:b1", DAY),
    ], MARRIAGE_COLS)


def _births(spark):
    return spark.createDataFrame([
        ("P1", "张小", "1", "2024-03-04", "阿依古丽·买买提", WIFE, "张三", HUSBAND, "130102001002",
         "2024-03-10 10:00:00", "births", "health:b1", DAY),
        ("P2", "李小", "2", "2024-05-06", "李母", "130102199501011234", None, None, "130102001003",
         "2024-05-10 10:00:00", "births", "health:b1", DAY),
    ], BIRTH_COLS)


def _rules(source, obj):
    rules = load_registry()[source].objects[obj].unified
    assert rules is not None
    return rules


def test_a_marriage_row_links_both_spouses_and_states_one_spouse_edge(spark):
    cands = unified.person_candidates(_marriages(spark), "civil", _rules("civil", "marriages"))
    got = sorted((r.record_key, r.business_key, r.id_no, r.name, r.sex_code, r.birth_date, r.id_valid)
                 for r in cands.collect())
    # one record per role present; J2's wife is not named (no ID, no name): no record
    assert got == [
        ("civil:marriages:J1#husband", "J1", HUSBAND, "张三", "1", dt.date(1990, 1, 1), True),
        ("civil:marriages:J1#wife", "J1", WIFE, "阿依古丽·买买提", "2", dt.date(1949, 12, 31), True),
        ("civil:marriages:J2#husband", "J2", "130102198501010011", "王五", "1", dt.date(1985, 1, 1), False),
    ]
    st = unified.dedupe_statements(
        unified.relationship_statements(_marriages(spark), "civil", _rules("civil", "marriages")))
    statements = st.collect()
    assert [(s.statement_key, s.relationship, s.record_key_1, s.record_key_2, s.basis, s.valid_from, s.batch_id)
            for s in statements] == [
        ("civil:marriages:J1:spouse:husband-wife", "spouse", "civil:marriages:J1#husband", "civil:marriages:J1#wife",
         "结婚登记", dt.date(2015, 5, 20), "civil:b1")]
    records = unified.dedupe_records(cands)
    links = unified.id_links(records)
    empty = spark.createDataFrame([], "person_id string, household_no string, relation_code string")
    (edge,) = unified.relationships(empty, st, links, survivorship=SURVIVORSHIP).collect()
    # one undirected edge: the smaller person_id first (the wife's ID here), record keys swapped with it
    assert (edge.person_id_1, edge.person_id_2, edge.relationship, edge.household_no, edge.basis, edge.valid_from,
            edge.valid_to, edge.sources) == (WIFE, HUSBAND, "spouse", None, "结婚登记", dt.date(2015, 5, 20), None,
                                             ["civil"])
    assert [(p.source, p.source_object, p.record_key_1, p.record_key_2, p.batch_id) for p in edge.provenance] == [
        ("civil", "marriages", "civil:marriages:J1#wife", "civil:marriages:J1#husband", "civil:b1")]


def test_a_birth_row_yields_mother_to_child_and_father_to_child(spark):
    rules = _rules("health", "births")
    cands = unified.person_candidates(_births(spark), "health", rules)
    got = sorted((r.record_key, r.id_no, r.name, r.sex_code, r.birth_date) for r in cands.collect())
    assert got == [
        ("health:births:P1#child", None, "张小", "1", dt.date(2024, 3, 4)),
        ("health:births:P1#father", HUSBAND, "张三", "1", None),
        ("health:births:P1#mother", WIFE, "阿依古丽·买买提", "2", None),  # the role gives the sex
        ("health:births:P2#child", None, "李小", "2", dt.date(2024, 5, 6)),
        ("health:births:P2#mother", "130102199501011234", "李母", "2", None),
    ]
    statements = unified.dedupe_statements(unified.relationship_statements(_births(spark), "health", rules))
    assert sorted(r.statement_key for r in statements.collect()) == [
        "health:births:P1:parent_child:father-child", "health:births:P1:parent_child:mother-child",
        "health:births:P2:parent_child:mother-child"]
    # the child has no ID: its person comes from probabilistic linkage (here given), the parents' from their IDs
    links = spark.createDataFrame([("health:births:P1#child", "130102202403040018"),
                                   ("health:births:P1#mother", WIFE), ("health:births:P1#father", HUSBAND),
                                   ("health:births:P2#mother", "130102199501011234")],
                                  "record_key string, person_id string")
    empty = spark.createDataFrame([], "person_id string, household_no string, relation_code string")
    edges = unified.relationships(empty, statements, links, survivorship=SURVIVORSHIP).collect()
    # P2's child is not linked (e.g. quarantined): no edge
    assert sorted((e.person_id_1, e.person_id_2, e.relationship, e.basis, e.valid_from, e.sources) for e in edges) == [
        (WIFE, "130102202403040018", "parent_child", "出生医学证明", dt.date(2024, 3, 4), ["health"]),
        (HUSBAND, "130102202403040018", "parent_child", "出生医学证明", dt.date(2024, 3, 4), ["health"]),
    ]


def test_a_registry_spouse_edge_and_a_marriage_edge_are_one_edge_and_rerun_writes_nothing(spark, tmp_path):
    from govlake.core import lake

    membership = spark.createDataFrame([(HUSBAND, "H1", "02", True), (WIFE, "H1", "10", True),
                                        ("130102201001010013", "H1", "20", True)],
                                       "person_id string, household_no string, relation_code string, "
                                       "is_current boolean")
    provenance = spark.createDataFrame([
        (HUSBAND, "relation_code", "hukou", "hukou:persons:HK2", "hukou:b1", dt.date(2025, 6, 29)),
        (WIFE, "relation_code", "hukou", "hukou:persons:HK1", "hukou:b2", DAY),
        ("130102201001010013", "relation_code", "hukou", "hukou:persons:HK5", "hukou:b1", dt.date(2025, 6, 29))],
        "person_id string, attribute string, source string, record_key string, batch_id string, batch_date date")
    rules = _rules("civil", "marriages")
    statements = unified.dedupe_statements(unified.relationship_statements(_marriages(spark), "civil", rules))
    links = unified.id_links(unified.dedupe_records(unified.person_candidates(_marriages(spark), "civil", rules)))
    edges = unified.relationships(membership, statements, links, provenance, survivorship=SURVIVORSHIP)
    got = {(e.person_id_1, e.person_id_2, e.relationship): e for e in edges.collect()}
    assert sorted(got) == [(WIFE, HUSBAND, "spouse"), (WIFE, "130102201001010013", "parent_child"),
                           (HUSBAND, "130102201001010013", "parent_child")]
    spouse = got[(WIFE, HUSBAND, "spouse")]
    # civil affairs is the authority for marriage (survivorship.yaml): its basis and date; the registry's household
    assert (spouse.household_no, spouse.basis, spouse.valid_from, spouse.sources) == (
        "H1", "结婚登记", dt.date(2015, 5, 20), ["civil", "hukou"])
    assert [(p.source, p.source_object, p.record_key_1, p.record_key_2, p.household_no, p.basis, p.batch_id,
             p.batch_date) for p in spouse.provenance] == [
        ("civil", "marriages", "civil:marriages:J1#wife", "civil:marriages:J1#husband", None, "结婚登记", "civil:b1",
         DAY),
        # the registry's claim: the records whose relation_code survived, the later of their batches
        ("hukou", "persons", "hukou:persons:HK1", "hukou:persons:HK2", "H1", "02-10", "hukou:b2", DAY)]
    child = got[(HUSBAND, "130102201001010013", "parent_child")]
    assert (child.basis, child.valid_from, child.sources) == ("02-20", None, ["hukou"])
    # rerun: the statement MERGE and the edge table write change nothing
    spath, epath = str(tmp_path / "statement"), str(tmp_path / "edges")
    assert lake.merge_by_key(spark, statements, spath, ["statement_key"]) == {"inserted": 1, "updated": 0}
    assert lake.merge_by_key(spark, statements, spath, ["statement_key"]) == {"inserted": 0, "updated": 0}
    assert lake.overwrite_if_changed(spark, edges, epath, ["person_id_1", "person_id_2", "relationship"]) is True
    again = unified.relationships(membership, spark.read.format("delta").load(spath), links, provenance,
                                  survivorship=SURVIVORSHIP)
    assert lake.overwrite_if_changed(spark, again, epath, ["person_id_1", "person_id_2", "relationship"]) is False
    assert unified.table_version(spark, epath) == 0


def test_scd2_grid_change_alone_updates_the_current_version_in_place(spark):
    cols = "person_id string, community_code string, district_code string, address string, grid_code string"
    day1 = spark.createDataFrame([("P1", "130102001001", "130102", "a", "G1"),
                                  ("P2", "130104001001", "130104", "b", "G2")], cols)
    hist = unified.scd2_changes(None, day1, DAY, "person_id", unified.RESIDENCE_COLUMNS, unified.RESIDENCE_OVERWRITE)
    nxt = DAY + dt.timedelta(days=1)
    # P1 moves (a new version with its new grid; the closed one keeps G1); P2's grid is redrawn: same version
    day2 = spark.createDataFrame([("P1", "130105001001", "130105", "c", "G3"),
                                  ("P2", "130104001001", "130104", "b", "G4")], cols)
    changes = unified.scd2_changes(hist, day2, nxt, "person_id", unified.RESIDENCE_COLUMNS, unified.RESIDENCE_OVERWRITE)
    got = sorted((r.person_id, r.address, r.grid_code, r.valid_from, r.valid_to, r.is_current)
                 for r in changes.collect())
    assert got == [("P1", "a", "G1", DAY, nxt, False), ("P1", "c", "G3", nxt, None, True),
                   ("P2", "b", "G4", DAY, None, True)]
    assert unified.scd2_changes(hist, day1, nxt, "person_id", unified.RESIDENCE_COLUMNS,
                                unified.RESIDENCE_OVERWRITE).isEmpty()
    # a history written before grid_code existed reads it as NULL: the grid fills the open version in place
    old = hist.drop("grid_code")
    filled = unified.scd2_changes(old, day1, nxt, "person_id", unified.RESIDENCE_COLUMNS, unified.RESIDENCE_OVERWRITE)
    assert sorted((r.person_id, r.grid_code, r.valid_from) for r in filled.collect()) == [("P1", "G1", DAY),
                                                                                          ("P2", "G2", DAY)]


def test_every_unified_table_has_a_suite_with_warn_or_fail_rules():
    from pathlib import Path

    from govlake.core.config import EXPECTATIONS_DIR
    from govlake.quality.rules import load_suite
    from govlake.unified.stage import UNIFIED_TABLES

    assert sorted(p.stem for p in Path(EXPECTATIONS_DIR).glob("unified.*.json")) == sorted(
        f"unified.{t}" for t in UNIFIED_TABLES)
    for table in UNIFIED_TABLES:
        suite = load_suite(f"unified.{table}")
        assert suite.table == f"unified.{table}" and suite.key_columns
        assert {r.action for r in suite.rules} <= {"warn", "fail"}


def test_unified_gate_publishes_a_good_state_and_a_fail_rule_stops_publication(spark, tmp_path):
    """Write-audit-publish with the real suites of expectations/: a correct tiny unified.person and
    unified.person_residence pass and are published; a bug (an invalid GB/T 2261.1 sex code in unified.person, a
    move whose previous residence is not closed: two current rows for one person) stops publication of BOTH tables
    — each stays at its previous Delta version — and the failed rules are recorded in ops.validation_results."""
    import os

    from govlake.core.config import Settings
    from govlake.quality.audit import stored_result
    from govlake.quality.rules import FailRuleViolated
    from govlake.unified.stage import UnifiedPlan, unified_checkpoints

    settings = Settings.from_env({**os.environ, "GOVLAKE_HOME": str(tmp_path)})
    zhang = "130102199001011237"
    person = unified.resolve_persons(_candidates(spark), DAY, SURVIVORSHIP)

    def results(day):
        rows = (spark.read.format("delta").load(settings.table_path("ops", "validation_results"))
                .where(F.col("_logical_date") == F.lit(day)).collect())
        return {(r.table, r.rule_id): (r.action, r.evaluated, r.failed) for r in rows}

    plan = UnifiedPlan(spark, settings)
    try:
        plan.merge(person, "person")
        plan.merge(unified.scd2_changes(None, person.where("is_current").withColumn("grid_code", F.lit("G1")), DAY,
                                        "person_id", unified.RESIDENCE_COLUMNS, unified.RESIDENCE_OVERWRITE),
                   "person_residence")
        gate, stats = plan.publish(DAY)
        docs = unified_checkpoints(spark, settings, plan.states, DAY, gate=gate)
    finally:
        plan.release()
    # the GX results of the unified tables come from the gate's counts (no state evaluated again)
    assert docs.endswith("local_site/index.html")
    for name, rules in (("person", 25), ("person_residence", 13)):
        _, stored = stored_result(settings.reports_dir, f"unified.{name}:{DAY.isoformat()}")
        assert (stored.meta["govlake"]["engine"], stored.meta["govlake"]["rows"], stored.success) == (
            "single-pass", 2, True)
        assert len(stored.results) == rules
    assert stats == {"person": {"inserted": 2, "updated": 0}, "person_residence": {"inserted": 2, "updated": 0}}
    assert [(g["table"], g["rows"]) for g in gate] == [("unified.person", 2), ("unified.person_residence", 2)]
    recorded = results(DAY)
    assert len(recorded) == 25 + 13 and {t for t, _ in recorded} == {"unified.person", "unified.person_residence"}
    assert {k: v for k, v in recorded.items() if v[2]} == {}  # every rule passes on the correct state
    assert recorded[("unified.person", "person.sex_code.gbt2261_1")] == ("fail", 2, 0)
    assert recorded[("unified.person_residence", "person_residence.person_id.one_current")] == ("fail", 2, 0)

    def version(name):
        return unified.table_version(spark, settings.table_path("unified", name))

    published = {name: (version(name), spark.read.format("delta").load(settings.table_path("unified", name)))
                 for name in ("person", "person_residence")}
    before = {name: sorted(map(str, df.collect())) for name, (_, df) in published.items()}
    day2 = DAY + dt.timedelta(days=1)
    bad_person = unified.with_content_hash(
        person.withColumn("sex_code", F.when(F.col("person_id") == zhang, "3").otherwise(F.col("sex_code"))),
        exclude=("first_seen_date",))
    moved = person.withColumn("community_code", F.when(F.col("person_id") == zhang, "130102001001")
                              .otherwise(F.col("community_code")))
    plan = UnifiedPlan(spark, settings)
    try:
        plan.merge(bad_person, "person")
        changes = unified.scd2_changes(plan.current("person_residence"),
                                       moved.where("is_current").withColumn("grid_code", F.lit("G1")), day2,
                                       "person_id", unified.RESIDENCE_COLUMNS, unified.RESIDENCE_OVERWRITE)
        assert changes.count() == 2  # the new version and the closed old one
        plan.merge(changes.where("is_current"), "person_residence")  # bug: not closed
        with pytest.raises(FailRuleViolated, match=r"unified layer not published: suite unified\.person .*rule "
                           r"person\.sex_code\.gbt2261_1 failed for 1 of 2 rows \| suite unified\.person_residence "
                           r".*rule person_residence\.person_id\.one_current failed for 1 of 3 rows"):
            plan.publish(day2)
    finally:
        plan.release()
    for name, (v, _) in published.items():
        assert version(name) == v
        assert sorted(map(str, spark.read.format("delta").load(settings.table_path("unified", name)).collect())) \
            == before[name]
    assert {k: v for k, v in results(day2).items() if v[2]} == {
        ("unified.person", "person.sex_code.gbt2261_1"): ("fail", 2, 1),
        ("unified.person_residence", "person_residence.person_id.one_current"): ("fail", 3, 1)}
    assert len(results(DAY)) == 38  # the earlier day's results are untouched


def test_every_person_source_carries_its_updated_at(spark):
    """Every object feeding unified.person carries the department's update time (its registry watermark) into its
    candidates and relationship statements, whatever form the source delivers it in: SQL text in Asia/Shanghai
    wall time, or a MongoDB date (relaxed Extended JSON, UTC)."""
    local = dt.datetime(2025, 6, 30, 9, 15, 30)
    checked = []
    for source, spec in load_registry().items():
        for obj in spec.objects.values():
            if obj.unified is None or obj.unified.entity != "person":
                continue
            mongo = (obj.kind or spec.kind) == "mongo"
            columns = list(obj.projection) if mongo else list(obj.columns)
            wm = '{"$date": "2025-06-30T01:15:30Z"}' if mongo else "2025-06-30 09:15:30"
            row = tuple(wm if c == obj.watermark else "1" for c in columns) + (obj.name, 1)
            frame = spark.createDataFrame([row], ", ".join(f"{c} string" for c in columns) + ", " + LINEAGE)
            rules = _rules(source, obj.name)  # its watermark: the object's registry watermark
            got = {r.updated_at for r in unified.person_candidates(frame, source, rules).collect()}
            if rules.relationships:
                got |= {r.updated_at for r in unified.relationship_statements(frame, source, rules).collect()}
            checked.append((source, obj.name, got))
    assert ("zhengwu", "applications", {local}) in checked  # the MongoDB source
    assert checked and all(got == {local} for _, _, got in checked), checked


def test_grid_event_copies_keep_the_latest_update(spark):
    """Two versions of one grid event (same event_no and report time; the status changed): the latest update
    stands, although the older text sorts first."""
    rows = [("GE1", '{"$date":"2025-06-29T02:30:00Z"}', "处理中", "文本1", '{"$date":"2025-06-29T03:00:00Z"}'),
            ("GE1", '{"$date":"2025-06-29T02:30:00Z"}', "已结案", "文本2", '{"$date":"2025-06-30T01:00:00Z"}'),
            ("GE2", '{"$date":"2025-06-29T02:30:00Z"}', "处理中", "x", None)]
    cols = "event_no string, reported_at string, status string, description string, updated_at string"
    docs = spark.createDataFrame(rows, cols)
    for c in ("community_code", "grid_code", "category", "closed_at", "lng", "lat"):
        docs = docs.withColumn(c, F.lit(None).cast("string"))
    events = unified.grid_events(docs)
    out = unified.finalize_events(events.unionByName(unified.hotline_events(spark.createDataFrame(
        [("1", "主题", "2019/2/8 9:05:00", "详情")], "message_id string, subject string, message_time string, "
        "detail string"))), DAY).orderBy("event_id").collect()
    assert [(e.event_id, e.status, e.text) for e in out] == [
        ("grid:GE1", "已结案", "文本2"), ("grid:GE2", "处理中", "x"), ("hotline:1", None, "主题\n详情")]
    assert "updated_at" not in out[0].asDict()  # the source's update time orders the copies; unified.event lacks it
