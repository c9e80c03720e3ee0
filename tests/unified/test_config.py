"""Typed configuration of the unified layer: survivorship.yaml and linkage.yaml parse to frozen dataclasses, and a
malformed file is rejected with an error naming the file and the field."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from govlake.unified import linkage
from govlake.unified import persons as unified


def test_survivorship_file_parses_to_typed_rules():
    conf = unified.load_survivorship()
    assert isinstance(conf, unified.SurvivorshipRules)
    assert conf.version == 1
    assert conf.default == ("hukou", "health", "civil", "hrss", "zhengwu")
    assert conf.attributes["marital_status_code"] == ("civil", "hukou")
    assert conf.attributes["death_date"] == ("health", "hukou", "civil")
    assert conf.relationships == {"spouse": ("civil", "hukou"), "parent_child": ("health", "hukou")}
    assert conf.order("phone") == ("zhengwu", "hrss", "hukou", "civil")
    assert conf.order("district_code") == conf.default  # not configured: the default order
    with pytest.raises(dataclasses.FrozenInstanceError):
        conf.default = ()


@pytest.mark.parametrize("text, field", [
    ("default: [hukou]\nattributes:\n  favourite_colour: [hukou]\n",
     "attributes: unknown attribute 'favourite_colour'"),
    ("default: hukou\n", "default must be a list of departments"),
    ("default: [hukou]\nrelationships:\n  cousin: [hukou]\n", "relationships: unknown relationship 'cousin'"),
    ("default: [hukou]\nattributes:\n  name: [hukou, hukou]\n", "attributes.name lists a department twice"),
    ("defaults: [hukou]\n", "unknown field(s) defaults"),
])
def test_malformed_survivorship_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "survivorship_bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"survivorship file .*survivorship_bad\.yaml: ") as err:
        unified.load_survivorship(path)
    assert field in str(err.value)


def test_linkage_file_parses_to_a_typed_model():
    model = linkage.load_model()
    assert isinstance(model, linkage.LinkageModel)
    assert (model.version, model.probability_two_random_records_match, model.match_weight_threshold,
            model.max_block_size) == (1, 1.0e-5, 8.0, 100)
    assert model.blocking_rules[0] == linkage.BlockingRule(keys=("id_body",))
    assert model.blocking_rules[-1].keys == ("name", "id_birth")
    assert [c.name for c in model.comparisons] == ["id_no", "name", "birth_date", "sex_code", "residence", "phone"]
    null, first = model.comparisons[0].levels[:2]
    assert (null.label, null.is_null, null.m, null.u) == ("null", True, None, None)
    assert first == linkage.ComparisonLevel(label="first_17_equal", sql="id_body_l = id_body_r", m=0.60, u=1.0e-7)
    settings = linkage.splink_settings(model)
    assert settings["probability_two_random_records_match"] == 1.0e-5
    assert settings["comparisons"][0]["comparison_levels"][1] == {
        "sql_condition": "id_body_l = id_body_r", "label_for_charts": "first_17_equal", "m_probability": 0.60,
        "u_probability": 1.0e-7, "fix_m_probability": True, "fix_u_probability": True}


def _model_with(tmp_path, change):
    raw = yaml.safe_load(linkage.MODEL_FILE.read_text(encoding="utf-8"))
    change(raw)
    path = tmp_path / "linkage_bad.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, field", [
    (lambda m: m["comparisons"][1]["levels"][1].update(m=1.5), "comparisons.name.exact.m must be in (0, 1], not 1.5"),
    (lambda m: m["comparisons"][5]["levels"][1].pop("u"), "comparisons.phone.exact.u must be in (0, 1], not None"),
    (lambda m: m["blocking_rules"].append({"keys": ["shoe_size"]}), "blocking_rules[8].keys must be a non-empty list"),
    (lambda m: m.update(max_block_size=0), "max_block_size must be a positive integer, not 0"),
    (lambda m: m.pop("match_weight_threshold"), "missing field(s) match_weight_threshold"),
])
def test_malformed_linkage_model_names_file_and_field(tmp_path, change, field):
    path = _model_with(tmp_path, change)
    with pytest.raises(ValueError, match=r"linkage model file .*linkage_bad\.yaml: ") as err:
        linkage.load_model(path)
    assert field in str(err.value)
