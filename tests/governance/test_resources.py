"""The resource catalog (govlake/governance/resources.py): coverage of every table the pipeline writes, the
validation of the resource blocks, catalog.resources, the DCAT-AP export and update-cycle compliance."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from govlake.core import catalog as contracts
from govlake.core.config import REPO_ROOT
from govlake.governance import resources as res
from govlake.governance.resources import ResourceError, load_resources


@pytest.fixture(scope="module")
def catalog():
    return load_resources()


def _written_tables() -> set[str]:
    """Every table the pipeline writes: the contracts (a service contract stands for its theme output tables) and
    the raw, staging and quarantine table of every registry object."""
    from govlake.extract.stage import raw_tables
    from govlake.marts.theme_config import list_themes, load_theme

    tables = {name for name, spec in contracts.load_catalog().items() if not spec.table.startswith("service_")}
    tables |= {f"analysis.{theme}_{s.service}_{s.name}" for theme in list_themes() for s in load_theme(theme).services}
    tables |= {f"{layer}.{t}" for t in raw_tables() for layer in ("raw", "staging", "quarantine")}
    return tables


def test_the_catalog_covers_every_table_the_pipeline_writes(catalog):
    assert set(catalog) == _written_tables()
    assert len(catalog) == 94
    assert {"catalog.resources", "catalog.update_compliance", "ops.exchange_ledger", "ops.publications",
            "ops.validation_results", "quarantine.unified_person_records", "analysis.grid_trend_by_district"} <= set(
        catalog)


def test_sharing_types_and_sensitivities_follow_the_registry_and_the_rules(catalog):
    person = catalog["unified.person"]
    assert (person.code, person.provider_code, person.sharing_type) == ("SJ01-U004", "SJ01", "conditional")
    assert person.sharing_condition
    grades = {c.name: c.sensitivity for c in person.columns}
    assert (grades["id_no"], grades["name"], grades["phone"], grades["address"], grades["birth_date"]) == (
        "personal",) * 5
    assert (grades["ethnic_code"], grades["death_date"], grades["district_code"]) == (
        "sensitive_personal", "sensitive_personal", "internal")
    # raw: sharing type and cycle from the registry object; staging shares as raw, quarantine is never shared
    raw = catalog["raw.address_standard_address"]
    assert (raw.code, raw.sharing_type, raw.update_cycle, raw.sharing_condition) == (
        "MZ02-R001", "unconditional", "daily", None)
    assert catalog["staging.address_standard_address"].sharing_type == "unconditional"
    quarantine = catalog["quarantine.address_standard_address"]
    assert (quarantine.code, quarantine.sharing_type, quarantine.related_codes) == (
        "MZ02-Q001", "not_shared", ("MZ02-R001",))
    assert quarantine.sharing_condition
    allowance = catalog["raw.civil_subsistence_allowance"]
    assert allowance.columns_of("sensitive_personal")[:2] == ("applicant_id_no", "applicant_name")
    assert allowance.columns[0] == res.ResourceColumn("case_no", "STRING", "internal", "registry type text")
    assert catalog["marts.population_density"].sharing_type == "unconditional"
    assert all(r.sharing_condition for r in catalog.values() if r.sharing_type != "unconditional")
    assert not [r.table for r in catalog.values()
                if r.sharing_type == "unconditional" and r.columns_of("personal", "sensitive_personal")]


@pytest.fixture
def copied(tmp_path):
    """The contracts and the registry copied to ``tmp_path`` (tables/, sources/), to be broken one field at a time."""
    shutil.copytree(contracts.TABLES_DIR, tmp_path / "tables")
    shutil.copytree(REPO_ROOT / "schemas" / "sources", tmp_path / "sources")
    return tmp_path


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _person(field, value):
    return "tables/unified.person.yaml", lambda d: d["resource"].__setitem__(field, value)


@pytest.mark.parametrize(("file", "change", "error"), [
    (*_person("sharing_type", "sometimes"),
     "tables/unified.person.yaml: resource.sharing_type: 'sometimes' is not one of"),
    (*_person("update_cycle", "hourly"), "tables/unified.person.yaml: resource.update_cycle: 'hourly' is not one of"),
    ("tables/unified.person.yaml", lambda d: d["resource"]["columns"][1].__setitem__("sensitivity", "secret"),
     "tables/unified.person.yaml: resource.columns[id_no].sensitivity: 'secret' is not one of"),
    ("tables/unified.person.yaml", lambda d: d["resource"]["columns"].pop(2),
     "tables/unified.person.yaml: resource.columns: must list the table's columns in order"),
    (*_person("code", "SJ01-U001"), "SJ01-U001 is also the code of"),
    (*_person("code", "GA01-U004"), "tables/unified.person.yaml: resource.code: 'GA01-U004' must be SJ01-U<3 digits>"),
    (*_person("related", ["SJ01-U999"]), "tables/unified.person.yaml: resource.related: ['SJ01-U999'] are not codes"),
    (*_person("sharing_condition", ""), "tables/unified.person.yaml: resource.sharing_condition: must be non-empty"),
    (*_person("category", ["基础信息资源", "人口"]),
     "tables/unified.person.yaml: resource.category: must be [类, 项, 目, 细目]"),
    (*_person("sharing_type", "unconditional"),
     "tables/unified.person.yaml: resource.sharing_type: an unconditional resource must hold no personal"),
    ("tables/ops.publications.yaml", lambda d: d["resource"].pop("sharing_condition"),
     "tables/ops.publications.yaml: resource.sharing_condition: must be non-empty"),
    ("tables/marts.population_density.yaml", lambda d: d.pop("resource"),
     "tables/marts.population_density.yaml: resource: missing"),
    ("sources/hukou.yaml", lambda d: d["objects"]["persons"]["resource"].__setitem__("sharing_type", "conditional"),
     "schemas/sources/hukou.yaml: objects.persons.resource.sharing_type: set on the registry object"),
    ("sources/hukou.yaml", lambda d: d["objects"]["households"].pop("resource"),
     "schemas/sources/hukou.yaml: objects.households.resource: missing"),
    ("tables/analysis.service_trend.yaml", lambda d: d["resource"]["instances"].pop(0),
     "tables/analysis.service_trend.yaml: resource.instances: tables"),
])
def test_a_wrong_entry_is_refused_naming_its_file_and_field(copied, file, change, error):
    _edit(copied / file, change)
    with pytest.raises(ResourceError) as info:
        load_resources(copied / "tables", copied / "sources")
    assert error in str(info.value)


def test_the_dcat_export_validates_and_a_missing_mandatory_property_is_reported(tmp_path, catalog):
    out = tmp_path / "catalog.jsonld"
    assert res.main(["export", "--out", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert res.validate_dcat(doc) == []
    datasets = {d["dct:identifier"]: d for d in doc["dcat:dataset"]}
    assert len(datasets) == 94
    person = datasets["SJ01-U004"]
    eu = "http://publications.europa.eu/resource/authority/"
    assert (person["dct:accessRights"]["@id"], person["dct:accrualPeriodicity"]["@id"]) == (
        f"{eu}access-right/RESTRICTED", f"{eu}frequency/DAILY")
    assert datasets["MZ02-Q001"]["dct:accessRights"]["@id"] == f"{eu}access-right/NON_PUBLIC"
    assert datasets["MZ02-R001"]["dct:accessRights"]["@id"] == f"{eu}access-right/PUBLIC"
    assert person["dcat:distribution"][0]["dcat:accessURL"]["@id"].endswith("sql/unified.person")
    del doc["dct:title"]
    del person["dct:description"]
    del datasets["MZ02-R001"]["dcat:distribution"][0]["dcat:accessURL"]
    datasets["MZ02-S001"]["dct:accessRights"] = {"@id": "http://example.org/open"}
    base = res.DEFAULT_BASE
    assert res.validate_dcat(doc) == [
        f"catalog {base}catalog: missing mandatory dct:title",
        f"dataset MZ02-R001: distribution {base}resource/MZ02-R001/delta: missing mandatory dcat:accessURL",
        "dataset MZ02-S001: dct:accessRights 'http://example.org/open' is not in the EU access-right authority table",
        "dataset SJ01-U004: missing mandatory dct:description"]


def test_due_by_adds_one_cycle():
    t = dt.datetime(2025, 1, 31, 8, 0, tzinfo=dt.UTC)
    assert [res.due_by(t, c) for c in ("realtime", "daily", "weekly", "monthly", "quarterly", "yearly")] == [
        dt.datetime(2025, 1, 31, 9, 0, tzinfo=dt.UTC), dt.datetime(2025, 2, 1, 8, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 2, 7, 8, 0, tzinfo=dt.UTC), dt.datetime(2025, 2, 28, 8, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 4, 30, 8, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 31, 8, 0, tzinfo=dt.UTC)]
    with pytest.raises(ValueError, match="unknown update cycle 'hourly'"):
        res.due_by(t, "hourly")


def test_an_update_older_than_its_cycle_is_overdue(spark, tmp_path, catalog):
    """Two real Delta tables committed now, a daily and a weekly resource, checked three days later: the daily one
    is overdue, the weekly one is not; a resource without a table is overdue with no last update."""
    def path(layer, table):
        return str(tmp_path / layer / table)

    daily = catalog["marts.population_density"]
    weekly = replace(catalog["marts.grid_hotspots"], update_cycle="weekly")
    import pyarrow as pa
    from deltalake import write_deltalake

    for name in ("population_density", "grid_hotspots"):  # delta-rs: a real Delta table without a Spark job
        write_deltalake(path("marts", name), pa.table({"n": [1, 2, 3]}))
    before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    as_of = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    rows = res.update_compliance(spark, {daily.table: daily, weekly.table: weekly,
                                         "unified.person": catalog["unified.person"]}, path, as_of)
    assert [(c.table, c.update_cycle, c.overdue) for c in rows] == [
        ("marts.grid_hotspots", "weekly", False), ("marts.population_density", "daily", True),
        ("unified.person", "daily", True)]
    assert all(c.last_update is not None and before < c.last_update < as_of for c in rows[:2])
    assert rows[1].due_by == rows[1].last_update + dt.timedelta(days=1)
    assert (rows[2].last_update, rows[2].due_by) == (None, None)
    frame = res.compliance_frame(spark, rows, as_of)
    assert frame.columns == list(contracts.table("catalog.update_compliance").column_names)
    assert sorted(r["table"] for r in frame.where("overdue").collect()) == ["marts.population_density",
                                                                           "unified.person"]


def test_catalog_resources_is_one_row_per_resource_and_rewritten_only_when_changed(spark, tmp_path, catalog):
    from govlake.core import lake

    frame = res.resources_frame(spark, catalog)
    assert frame.columns == list(contracts.table("catalog.resources").column_names)
    row = frame.where("table = 'unified.person'").collect()[0]
    assert (row["code"], row["category"][0], row["columns"][1].asDict()) == (
        "SJ01-U004", "基础信息资源", {"name": "id_no", "type": "STRING", "sensitivity": "personal", "description": ""})
    path = str(tmp_path / "catalog" / "resources")
    assert lake.overwrite_if_changed(spark, frame, path, ["code"]) is True
    assert lake.overwrite_if_changed(spark, res.resources_frame(spark, load_resources()), path, ["code"]) is False
    assert spark.read.format("delta").load(path).count() == 94
