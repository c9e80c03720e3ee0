"""End to end: the whole pipeline on a small sample municipality (run by Airflow against the real servers,
fixture ``dag_run``), its invariants, and a rerun of the same logical date that changes nothing."""
from __future__ import annotations

import csv
import datetime as dt

import pytest

from jobs import lake

DAY = dt.date(2025, 6, 30)


@pytest.fixture(scope="module")
def run(dag_run):
    """The whole pipeline once (the DAG run of tests/servers.py: 150 residents, servers mode); its settings."""
    settings, returncode, log = dag_run
    assert returncode == 0, log[-5000:]
    return settings


def _faults(settings, source, table):
    with open(settings.sources_dir / "truth" / "faults.csv", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if (r["source"], r["table"]) == (source, table)]


@pytest.mark.slow
def test_extracted_equals_accepted_plus_quarantined_for_every_raw_table(spark, run):
    from jobs.pipeline import raw_tables

    settings = run
    ledger = {r.raw_table: r for r in spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger")).collect()}
    assert sorted(ledger) == sorted(f"raw.{t}" for t in raw_tables())

    def rows(layer, table):
        return (spark.read.format("delta").load(settings.table_path(layer, table))
                .where(f"_logical_date = DATE'{DAY}'").count())

    counts = {}
    for raw_table, entry in ledger.items():
        table = raw_table.split(".", 1)[1]
        counts[table] = (rows("raw", table), rows("staging", table), rows("quarantine", table))
        assert entry.rows_read == entry.rows_written == counts[table][0] == counts[table][1] + counts[table][2], table
    assert counts["hukou_persons"][1] > 0 and counts["hukou_persons"][2] > 0


@pytest.mark.slow
def test_injected_faults_are_quarantined_with_their_rule(spark, run):
    settings = run
    quarantine = spark.read.format("delta").load(settings.table_path("quarantine", "hukou_persons")).collect()
    rules_by_key = {}
    for row in quarantine:
        rules_by_key.setdefault(row["_source_key"], set()).update(row["_rule_ids"])
    expected_rule = {"id_bad_checksum": "hukou_persons.id_no.gb11643",
                     "id_float_mangled": "hukou_persons.id_no.gb11643",
                     "id_null": "hukou_persons.id_no.not_null",
                     "birth_date_impossible": "hukou_persons.birth_date.yyyymmdd",
                     "duplicate_row": "hukou_persons.person_no.unique"}
    faults = [f for f in _faults(settings, "hukou", "persons") if f["fault_kind"] in expected_rule]
    assert {f["fault_kind"] for f in faults} == set(expected_rule)
    for fault in faults:
        assert expected_rule[fault["fault_kind"]] in rules_by_key.get(fault["row_key"], set()), fault
    # repairable faults are not quarantined for the repaired column, and land repaired in unified
    repaired = [f for f in _faults(settings, "hukou", "persons") if f["fault_kind"] in ("id_lowercase_x", "id_fullwidth")]
    assert repaired
    person_ids = {r.person_id for r in spark.read.format("delta").load(settings.table_path("unified", "person"))
                  .select("person_id").collect()}
    for fault in repaired:
        assert "hukou_persons.id_no.gb11643" not in rules_by_key.get(fault["row_key"], set())
        assert fault["original_value"] in person_ids


@pytest.mark.slow
def test_layers_are_filled_and_queryable_by_name(spark, run):
    from jobs.pipeline import findings

    settings = run
    names = lake.register_tables(spark, settings)
    for name in ("raw.hukou_persons", "unified.person", "unified.event", "marts.population_by_district_sex_age",
                 "marts.grid_events_by_district_category_week", "analysis.age_structure_by_district",
                 "analysis.top_event_categories_by_district", "ops.validation_results"):
        assert name in names
    pop = spark.sql("SELECT sum(population) FROM marts.population_by_district_sex_age").collect()[0][0]
    excluded = spark.sql("SELECT sum(persons) FROM marts.population_exclusions").collect()[0][0]
    current = spark.sql("SELECT count(*) FROM unified.person WHERE is_current").collect()[0][0]
    assert pop + excluded == current
    city = spark.sql("SELECT population FROM analysis.age_structure_by_district WHERE district_code = '130100'").collect()
    assert city[0][0] == pop
    assert len(findings(spark, settings, DAY)) >= 5
    assert (settings.reports_dir / "decision_support" / DAY.isoformat() / "index.html").is_file()


@pytest.mark.slow
def test_rerun_of_the_same_logical_date_changes_no_table(spark, run, dag_rerun):
    """The rerun of 2025-06-30 (``python -m jobs.pipeline run``, fixture ``dag_rerun``) after the DAG run leaves
    every table's content as the DAG run left it (Delta time travel to the version after the first run), creates
    no table, and commits nothing to raw (batches are written once)."""
    settings = run
    versions, returncode, log = dag_rerun
    assert returncode == 0, log[-5000:]
    from tests.servers import delta_versions

    after = delta_versions(settings)
    assert sorted(after) == sorted(versions) and len(versions) > 40
    assert {n: v for n, v in after.items() if n.startswith("raw.")} == {
        n: v for n, v in versions.items() if n.startswith("raw.")}

    def rows(name, version=None):
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return sorted(map(str, reader.load(settings.table_path(*name.split(".", 1))).collect()))

    changed = [n for n, v in versions.items() if after[n] != v and rows(n, v) != rows(n)]
    assert changed == []


#: Fault kinds of truth/faults.csv whose hukou.persons row the quality gate quarantines (rules of
#: expectations/raw.hukou_persons.json with action 'quarantine': id_no.gb11643, id_no.not_null, sex_code.matches_id,
#: birth_date.yyyymmdd). A duplicate_row keeps one copy; the other kinds are warn rules or repaired in unified.
QUARANTINED_PERSON_FAULTS = ("id_bad_checksum", "id_float_mangled", "id_null", "sex_id_mismatch",
                             "birth_date_impossible")


@pytest.mark.slow
def test_population_marts_equal_an_independent_count_on_the_generator_truth(spark, run):
    """The headline population figures of the marts, recomputed with pandas from the generator's truth
    (``<sources>/truth/persons.csv``, ``faults.csv``), exactly.

    What the pipeline must get exactly: every resident whose household-registry record passes the quality gate.
    A resident whose ``hukou.persons`` row carries one of :data:`QUARANTINED_PERSON_FAULTS` is legitimately missing
    from the registry-derived figures (the row is quarantined, and the registry alone delivers household,
    registration type and education), so the truth side leaves those residents out. Residents known only to other
    departments are legitimately extra in ``marts.population_natural_structure`` (e.g. a civil-affairs record whose
    ID is invalid and whose registry twin was quarantined stays a singleton person), so residents per district × sex
    are compared on the registry-known residents of ``marts.population_registration`` (registered + floating), and
    the natural-structure population is checked to be exactly those plus ``registration_unknown``.
    Compared exactly, per district: residents × sex, registered (户籍) and floating (流动) residents, households and
    their members (``marts.population_households`` and ``marts.population_household_generations``), one-person
    households = persons without registered relatives (edges only join members of one household), education
    (GB/T 4658 first level, aged 6+) and marital status (GB/T 2261.2, aged 15+) counts per code; the 'unknown' code
    also holds eligible residents the registry does not know, so it is bounded by registration_unknown. Household
    generations need the relation to the head, which the truth files do not carry: not compared here
    (tests/test_themes.py).
    """
    import pandas as pd

    settings = run
    truth = pd.read_csv(settings.sources_dir / "truth" / "persons.csv", dtype=str, keep_default_na=False)
    faults = pd.read_csv(settings.sources_dir / "truth" / "faults.csv", dtype=str, keep_default_na=False)
    rejected = set(faults[(faults["source"] == "hukou") & (faults["table"] == "persons")
                          & faults["fault_kind"].isin(QUARANTINED_PERSON_FAULTS)]["row_key"])
    kept = truth[~truth["person_key"].isin(rejected)].copy()
    assert 0 < len(rejected) < len(truth) and len(kept) >= 100  # the sample has faults, and most persons pass

    def mart(table):
        return spark.read.format("delta").load(settings.table_path("marts", table)).where(
            f"snapshot_date = DATE'{DAY}'").toPandas()

    def counts(frame, *keys):
        return {k if len(keys) > 1 else (k,): int(v) for k, v in frame.groupby(list(keys)).size().items()}

    def table_counts(frame, key_cols, value_cols):
        out = {}
        for _, r in frame.iterrows():
            for v in value_cols:
                if int(r[v]):
                    out[(*[r[k] for k in key_cols], v)] = int(r[v])
        return out

    # residents per district × sex, registered vs floating
    reg = mart("population_registration")
    reg = reg[reg["area_level"] == "district"]
    sex = {(d, s): n for (d, s), n in counts(kept, "district_code", "sex_code").items()}
    got_sex = {(r.area_code, s): int(getattr(r, f"registered_{w}") + getattr(r, f"floating_{w}"))
               for r in reg.itertuples() for s, w in (("1", "male"), ("2", "female"))
               if getattr(r, f"registered_{w}") + getattr(r, f"floating_{w}")}
    assert got_sex == sex
    kind = {"户籍": "registered", "流动": "floating"}
    exp_reg = {(d, kind[t]): n for (d, t), n in counts(kept, "district_code", "registration_type").items()}
    assert table_counts(reg, ["area_code"], ["registered", "floating"]) == exp_reg
    nat = mart("population_natural_structure")
    nat = nat[nat["area_level"] == "district"].set_index("area_code")["population"]
    assert {d: int(n) for d, n in nat.items()} == {
        r.area_code: r.registered + r.floating + r.registration_unknown for r in reg.itertuples()}

    # households per district (district = smallest district of the members) and one-person households
    hh = kept.groupby("household_no").agg(district=("district_code", "min"), size=("person_key", "size"))
    exp_hh = {d: (len(g), int(g["size"].sum()), int((g["size"] == 1).sum())) for d, g in hh.groupby("district")}
    households = mart("population_households")
    assert {r.district_code: (r.households, r.persons, r.size_1) for r in households.itertuples()} == exp_hh
    gen = mart("population_household_generations")
    assert {r.district_code: (r.households, r.persons, r.persons_without_relatives)
            for r in gen.itertuples()} == exp_hh

    # education (aged 6+) and marital status (aged 15+), first level of the codes, 'unknown' when missing
    birth = pd.to_datetime(kept["birth_date"])
    kept["age"] = DAY.year - birth.dt.year - ((birth.dt.month * 100 + birth.dt.day) > DAY.month * 100 + DAY.day)
    edu = kept[kept["age"] >= 6].assign(code=lambda f: [c[0] + "0" if c else "unknown" for c in f["education"]])
    mar = kept[kept["age"] >= 15].assign(
        code=lambda f: [("20" if c in ("21", "22", "23") else c) if c else "unknown" for c in f["marital_status"]])
    em = mart("population_education_marital")
    em = em[em["area_level"] == "district"]
    unknown_to_registry = {r.area_code: int(r.registration_unknown) for r in reg.itertuples()}
    for dimension, frame in (("education", edu), ("marital_status", mar)):
        rows = em[em["dimension"] == dimension]
        exp = counts(frame, "district_code", "code")
        assert {(r.area_code, r.code): int(r.persons) for r in rows.itertuples() if r.code != "unknown"} == {
            k: n for k, n in exp.items() if k[1] != "unknown"}, dimension
        # 'unknown' also holds the eligible residents the registry does not know (registration_unknown)
        for r in rows[rows["code"] == "unknown"].itertuples():
            assert 0 <= r.persons - exp.get((r.area_code, "unknown"), 0) <= unknown_to_registry[r.area_code], r
