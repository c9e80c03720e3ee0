"""The typed theme configuration (govlake.marts.theme_config): the repository's themes parse, and a malformed theme
file fails with an error naming the file and the field."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from govlake.analysis.services import SERVICES
from govlake.marts import theme_config, themes
from govlake.marts.theme_config import ThemeConfig, ThemeConfigError, ThemeParams, load_theme, parse_theme

GOOD = """\
theme: demo
title_zh: 示例
params:
  period_days: 14
  deadline_hours: 72
  city_code: "130100"
marts:
  - grid_hot_fields
services:
  - name: by_district
    service: trend
    table: unified.event
    where: "channel = 'grid'"
    columns: {wk: "date_trunc('week', report_date)"}
    params: {date_col: report_date, group_cols: [district_code]}
"""


def _load(tmp_path: Path, text: str, name: str = "demo") -> ThemeConfig:
    (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    return load_theme(name, tmp_path, known_marts=tuple(themes.MART_BUILDERS), known_services=SERVICES)


def test_the_repository_themes_parse_into_frozen_dataclasses():
    configs = themes.load_themes()
    assert [c.name for c in configs] == ["grid", "population"]
    grid, population = configs
    assert grid.marts[0] == "grid_events_by_district_category_week"
    assert population.marts[:2] == ("population_by_district_sex_age", "population_exclusions")
    assert grid.params.deadline_hours == 120.0 and grid.params.repeat_window_days == 30
    assert population.params.elderly_age == 60
    assert all(m in themes.MART_BUILDERS for c in configs for m in c.marts)
    assert all(s.service in SERVICES for c in configs for s in c.services)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.params.top_n = 3
    with pytest.raises(TypeError):
        grid.services[0].params["date_col"] = "x"


def test_a_valid_file_gives_typed_values(tmp_path):
    cfg = _load(tmp_path, GOOD)
    assert cfg.name == "demo" and cfg.title_zh == "示例" and cfg.marts == ("grid_hot_fields",)
    assert cfg.params == ThemeParams(period_days=14, deadline_hours=72.0)
    (svc,) = cfg.services
    assert (svc.name, svc.service, svc.table, svc.where) == ("by_district", "trend", "unified.event",
                                                             "channel = 'grid'")
    assert svc.columns == (("wk", "date_trunc('week', report_date)"),)
    assert dict(svc.params) == {"date_col": "report_date", "group_cols": ("district_code",)}
    assert cfg.source == str(tmp_path / "demo.yaml")


@pytest.mark.parametrize("old, new, field", [
    ("  period_days: 14", "  period_days: fourteen", "params.period_days"),
    ("  period_days: 14", "  period_days: 0", "params.period_days"),
    ("  period_days: 14", "  period_days: true", "params.period_days"),
    ("  period_days: 14", "  period_dayz: 14", "params.period_dayz"),
    ('  city_code: "130100"', "  city_code: 130100", "params.city_code"),
    ("  deadline_hours: 72", "  deadline_hours: soon", "params.deadline_hours"),
    ('params:\n  period_days: 14\n  deadline_hours: 72\n  city_code: "130100"\n', "params: [1]\n", "params"),
    ("  - grid_hot_fields", "  - grid_hot_fieldz", "marts[0]"),
    ("  - grid_hot_fields", "  - grid_hot_fields\n  - grid_hot_fields", "marts[1]"),
    ("  - grid_hot_fields", "  - {name: grid_hot_fields}", "marts[0]"),
    ("marts:\n  - grid_hot_fields", "marts: grid_hot_fields", "marts"),
    ("    service: trend", "    service: forecast", "services[0].service"),
    ("    table: unified.event\n", "", "services[0].table"),
    ("    table: unified.event", "    table: [unified.event]", "services[0].table"),
    ("  - name: by_district", "  - name: By District", "services[0].name"),
    ("    where: \"channel = 'grid'\"", "    when: x", "services[0].when"),
    ("    columns: {wk: \"date_trunc('week', report_date)\"}", "    columns: {wk: 3}", "services[0].columns.wk"),
    ("    params: {date_col: report_date, group_cols: [district_code]}", "    params: [report_date]",
     "services[0].params"),
    ("theme: demo", "theme: other", "theme"),
    ("theme: demo\n", "", "theme"),
    ("title_zh: 示例", "titel: 示例", "titel"),
])
def test_a_malformed_field_is_named_with_its_file(tmp_path, old, new, field):
    assert old in GOOD
    with pytest.raises(ThemeConfigError) as err:
        _load(tmp_path, GOOD.replace(old, new, 1))
    path = str(tmp_path / "demo.yaml")
    assert err.value.source == path and err.value.field == field
    assert str(err.value).startswith(f"{path}: {field}: ")


def test_malformed_yaml_and_documents_name_the_file(tmp_path):
    path = str(tmp_path / "demo.yaml")
    with pytest.raises(ThemeConfigError, match=r"demo\.yaml: \(yaml, line \d+\): ") as err:
        _load(tmp_path, "theme: demo\nmarts: [grid_hot_fields\nservices: {")
    assert err.value.source == path
    for text in ("", "- theme: demo\n", "just text\n"):
        with pytest.raises(ThemeConfigError, match=r"demo\.yaml: \(document\): "):
            _load(tmp_path, text)
    with pytest.raises(FileNotFoundError):
        load_theme("missing", tmp_path)


def test_the_same_output_table_twice_is_rejected():
    svc = {"name": "a", "service": "trend", "table": "unified.event", "params": {"date_col": "report_date"}}
    with pytest.raises(ThemeConfigError, match=r"<t>: services\[1\]\.name: "):
        parse_theme({"theme": "t", "services": [svc, svc]}, "<t>")
    assert theme_config.parse_theme({"theme": "t"}, "<t>") == ThemeConfig(name="t", source="<t>")
