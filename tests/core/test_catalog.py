"""The table catalog (tables/*.yaml): every contract parses, agrees with its suite, and names its file and field in
errors. Agreement with what the writers produce is checked on the pipeline run in tests/test_pipeline.py."""
from __future__ import annotations

import json

import pytest
import yaml

from govlake.core import catalog
from govlake.core.config import REPO_ROOT
from govlake.marts.themes import PARTITIONED_TABLES
from govlake.unified.stage import UNIFIED_TABLES


def _unique_columns(expectations: list[dict]) -> list[tuple[str, ...]]:
    """Column sets of the unconditional uniqueness expectations of a suite or contract."""
    out = []
    for e in expectations:
        kwargs = e.get("kwargs", {})
        if kwargs.get("row_condition"):
            continue
        if e["type"] == "expect_compound_columns_to_be_unique":
            out.append(tuple(kwargs["column_list"]))
        elif e["type"] == "expect_column_values_to_be_unique":
            out.append((kwargs["column"],))
    return out


def test_every_layer_has_its_contracts():
    layers = {s.layer for s in catalog.load_catalog().values()}
    assert layers == {"unified", "marts", "analysis", "ops", "quarantine", "catalog", "governance"}
    assert [s.table for s in catalog.tables("unified")] == list(UNIFIED_TABLES)
    assert [s.publish_order for s in catalog.tables("unified")] == list(range(1, 10))


def test_unified_keys_equal_their_suite_keys():
    for spec in catalog.tables("unified"):
        suite = json.loads((REPO_ROOT / spec.suite).read_text(encoding="utf-8"))
        assert tuple(suite["meta"]["key_columns"]) == spec.primary_key, spec.name
        assert spec.primary_key in _unique_columns(suite["expectations"]), spec.name
        assert set(spec.insert_only) <= set(spec.column_names), spec.name


def test_contract_keys_equal_their_uniqueness_expectation():
    checked = 0
    for spec in catalog.tables("marts") + catalog.tables("analysis"):
        doc = yaml.safe_load((catalog.TABLES_DIR / f"{spec.name}.yaml").read_text(encoding="utf-8"))
        unique = _unique_columns(doc.get("expectations", []))
        if unique:
            assert spec.primary_key in unique, spec.name
            checked += 1
    assert checked >= 20


def test_the_marts_writer_partitions_as_the_catalog_says():
    assert PARTITIONED_TABLES["marts.grid_worker_stats"] == "period_end"
    assert PARTITIONED_TABLES["analysis.top_event_categories_by_district"] == "logical_date"
    assert "marts.grid_events_by_district_category_week" not in PARTITIONED_TABLES
    assert catalog.partition_column("marts.population_exclusions") == "snapshot_date"
    with pytest.raises(ValueError, match="declares no partition_by"):
        catalog.partition_column("unified.person")


@pytest.mark.parametrize("change, error", [
    (("primary_key:\n- person_id", "primary_key:\n- no_such_column"), "'primary_key' names columns"),
    (("layer: unified", "layer: marts"), "name 'unified.person' and layer 'marts'"),
    (("publish_order: 3\n", ""), "needs publish_order"),
    (("suite: expectations/unified.person.json", "suite: expectations/missing.json"), "missing file"),
])
def test_a_wrong_contract_names_its_file_and_field(tmp_path, change, error):
    text = (catalog.TABLES_DIR / "unified.person.yaml").read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / "unified.person.yaml"
    path.write_text(text.replace(change[0], change[1]), encoding="utf-8")
    with pytest.raises(catalog.CatalogError, match="unified.person.yaml") as info:
        catalog.parse_contract(path)
    assert error in str(info.value)
