"""The resource catalog (政务信息资源目录): one entry per lakehouse table, kept beside the table definitions.

Sources of truth (edited by hand; nothing generates them):

- ``tables/<layer>.<table>.yaml``: a ``resource:`` block in each contract. A contract with ``applies_to`` (the
  analysis service contracts, one per service kind) holds a template block with ``instances:`` — one
  ``{table, code, name, summary, related}`` per output table ``analysis.<theme>_<service>_<name>`` of
  ``schemas/themes/*.yaml``; the template gives the other elements and the information items.
- ``schemas/sources/<source>.yaml``: a ``resource:`` block in each object. It describes ``raw.<source>_<object>``;
  its sharing type and update cycle are the object's registry ``sharing_type`` / ``update_cycle`` (never repeated in
  the block). The object's ``staging`` and ``quarantine`` tables are derived from it: same information items, code
  with layer letter ``S`` / ``Q``, staging shared as raw, quarantine 不予共享 (rows that failed the quality rules).

Elements of an entry (《政务信息资源目录编制指南（试行）》, 发改高技〔2017〕1272号, 核心元数据):

====================  ==================  ==========================================================================
block field           element             value
====================  ==================  ==========================================================================
``code``              资源代码            ``<provider_code>-<layer letter><3-digit sequence>``, e.g. ``GA01-R001``;
                                          letters R raw, S staging, Q quarantine, U unified, M marts, A analysis,
                                          O ops, C catalog; a sequence is never reused (stable across releases)
``name``              资源名称            text
``category``          资源分类            ``[类, 项, 目, 细目]`` (类: 基础 / 主题 / 部门信息资源)
``provider``          资源提供方          department
``provider_code``     提供方代码          ``[A-Z]{2}\\d{2}`` (e.g. GA01 公安局, SJ01 the platform)
``summary``           资源摘要            text
``format``            资源格式            text
``columns``           信息项              ``[{name, sensitivity[, description]}]`` equal to the table's columns in
                                          order; the type comes from the contract (raw/staging/quarantine: STRING,
                                          technical ``_`` columns are not information items)
``sharing_type``      共享类型            :data:`SHARING_TYPES` (registry ``none`` = ``not_shared``)
``sharing_condition`` 共享条件            required for conditional; for not_shared the reason (不予共享依据)
``sharing_method``    共享方式            text
``open_attribute``    开放属性            :data:`OPEN_ATTRIBUTES`
``update_cycle``      更新周期            :data:`govlake.extract.registry.UPDATE_CYCLES`
``published``         发布日期            ISO date
``related``           关联资源代码        list of codes of this catalog
====================  ==================  ==========================================================================

Sensitivity (:data:`SENSITIVITIES`) follows GB/T 43697-2024 《数据安全技术 数据分类分级规则》 and the PIPL's
sensitive personal information (art. 28): ``public``; ``internal`` (business keys, codes, technical columns);
``personal`` (identifiers such as ID numbers, person names, phones, addresses, birth dates, free text about a
person); ``sensitive_personal`` (health and causes of death, ethnicity, subsistence allowance, financial accounts,
minors' data). Sharing rules (《政务信息资源共享管理暂行办法》国发〔2016〕51号, art. 9): a conditional resource
states its condition, a not-shared one the reason; an unconditional resource holds no personal column.

Command line::

    python -m govlake.governance.resources check                 # validate, print the number of resources
    python -m govlake.governance.resources export --out F.jsonld # DCAT-AP 3 JSON-LD, validated before writing
    python -m govlake.governance.resources compliance [--date D] # write catalog.update_compliance, list overdue

Tables: ``catalog.resources`` (:func:`resources_frame`, written by the pipeline after the analysis stage,
:func:`publish_resources`) and ``catalog.update_compliance`` (:func:`update_compliance`, CLI ``compliance``: every
resource but that table itself, as of the end of ``--date`` (Asia/Shanghai) or now; Delta commit times are compared,
so a date before the last commit flags nothing);
contracts ``tables/catalog.*.yaml``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml

from govlake.core import catalog as contracts
from govlake.core import fsio
from govlake.core.config import SCHEMAS_DIR, TIME_ZONE
from govlake.extract.registry import UPDATE_CYCLES, load_registry
from govlake.marts.theme_config import THEMES_DIR, list_themes, load_theme

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from govlake.core.config import Settings

__all__ = ["LAYER_LETTERS", "OPEN_ATTRIBUTES", "SENSITIVITIES", "SHARING_TYPES", "Compliance", "Resource",
           "ResourceColumn", "ResourceError", "dcat_catalog", "due_by", "load_resources", "publish_resources",
           "resources_frame", "update_compliance", "validate_dcat"]

#: 共享类型 (国发〔2016〕51号 art. 5): 无条件共享 / 有条件共享 / 不予共享.
SHARING_TYPES = ("unconditional", "conditional", "not_shared")
#: The registry's spelling (govlake.extract.registry.SHARING_TYPES) -> the catalog's.
REGISTRY_SHARING = {"unconditional": "unconditional", "conditional": "conditional", "none": "not_shared"}
#: 开放属性: 无条件开放 / 有条件开放 / 不予开放.
OPEN_ATTRIBUTES = ("unconditional", "conditional", "not_open")
#: Sensitivity classes of an information item, least to most sensitive (GB/T 43697-2024 style).
SENSITIVITIES = ("public", "internal", "personal", "sensitive_personal")
#: Layer -> the letter of its resource codes.
LAYER_LETTERS = {"raw": "R", "staging": "S", "quarantine": "Q", "unified": "U", "marts": "M", "analysis": "A",
                 "ops": "O", "catalog": "C", "governance": "G"}
_CODE = re.compile(r"^([A-Z]{2}\d{2})-([A-Z])(\d{3})$")
_FIELDS = ("code", "name", "category", "provider", "provider_code", "summary", "format", "sharing_type",
           "sharing_condition", "sharing_method", "open_attribute", "update_cycle", "published", "related",
           "columns", "instances")
_INSTANCE_FIELDS = ("table", "code", "name", "summary", "related")
#: libyaml's loader when built (ten times faster on the ~50 files read), else the pure-Python one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_QUARANTINE_REASON = "未通过质量规则的交付记录，仅供提供部门与数据质量人员核查（不予共享）"


class ResourceError(ValueError):
    """A resource entry is missing, malformed or inconsistent (the message names the file and the field)."""


@dataclass(frozen=True)
class ResourceColumn:
    """One information item (信息项): column name, Spark SQL type, sensitivity (:data:`SENSITIVITIES`)."""

    name: str
    type: str
    sensitivity: str
    description: str = ""


@dataclass(frozen=True)
class Resource:
    """One catalog entry (see the module docstring for the elements). ``table`` is ``<layer>.<table>``;
    ``category`` is ``(类, 项, 目, 细目)``; ``sharing_condition`` is the condition (conditional), the reason
    (not_shared) or None (unconditional); ``source`` is the file (and field) the entry was read from."""

    code: str
    table: str
    name: str
    category: tuple[str, str, str, str]
    provider: str
    provider_code: str
    summary: str
    format: str
    columns: tuple[ResourceColumn, ...]
    sharing_type: str
    sharing_condition: str | None
    sharing_method: str
    open_attribute: str
    update_cycle: str
    published: dt.date
    related_codes: tuple[str, ...]
    source: str = ""

    @property
    def layer(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def columns_of(self, *sensitivities: str) -> tuple[str, ...]:
        """Names of the information items of the given sensitivity classes (e.g. ``'personal',
        'sensitive_personal'``)."""
        return tuple(c.name for c in self.columns if c.sensitivity in sensitivities)


# --- loading and validation ----------------------------------------------------------------------------------------

def _text(where: str, block: Mapping, field: str, required: bool = True) -> str | None:
    value = block.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ResourceError(f"{where}.{field}: must be non-empty text, got {value!r}")
    return value.strip()


def _one_of(where: str, value: Any, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise ResourceError(f"{where}.{field}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _columns(where: str, block: Mapping, table_columns: list[tuple[str, str, str]]) -> tuple[ResourceColumn, ...]:
    """The block's information items, checked against the table's ``(name, type, description)`` columns."""
    raw = block.get("columns")
    if not isinstance(raw, list) or not all(isinstance(c, dict) and "name" in c for c in raw):
        raise ResourceError(f"{where}.columns: must be a list of {{name, sensitivity[, description]}}")
    names = [str(c["name"]) for c in raw]
    expected = [n for n, _, _ in table_columns]
    if names != expected:
        missing, extra = [n for n in expected if n not in names], [n for n in names if n not in expected]
        raise ResourceError(f"{where}.columns: must list the table's columns in order {expected}; missing {missing}, "
                            f"not in the table {extra}")
    out = []
    for c, (name, type_, description) in zip(raw, table_columns, strict=True):
        sensitivity = _one_of(f"{where}.columns[{name}]", c.get("sensitivity"), SENSITIVITIES, "sensitivity")
        out.append(ResourceColumn(name, type_, sensitivity, str(c.get("description") or description or "")))
    return tuple(out)


def _published(where: str, value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ResourceError(f"{where}.published: {value!r} is not an ISO date (YYYY-MM-DD)") from None


def _codes(where: str, value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResourceError(f"{where}.{field}: must be a list of resource codes, got {value!r}")
    return tuple(value)


def _resource(where: str, table: str, block: Mapping, columns: tuple[ResourceColumn, ...],
              sharing_type: str | None = None, update_cycle: str | None = None,
              overrides: Mapping[str, Any] | None = None) -> Resource:
    """One :class:`Resource` from ``block`` (plus ``overrides``: code, name, summary, related of an instance).

    Raises:
        ResourceError: a field is missing or invalid, or the sharing rules are broken (names ``where`` and field).
    """
    if unknown := sorted(set(block) - set(_FIELDS)):
        raise ResourceError(f"{where}: unknown field(s) {unknown}; fields are {', '.join(_FIELDS)}")
    merged = {**block, **(overrides or {})}
    for field, given in (("sharing_type", sharing_type), ("update_cycle", update_cycle)):
        if given is not None and field in block:
            raise ResourceError(f"{where}.{field}: set on the registry object, not in its resource block")
    sharing = _one_of(where, sharing_type or merged.get("sharing_type"), SHARING_TYPES, "sharing_type")
    cycle = _one_of(where, update_cycle or merged.get("update_cycle"), UPDATE_CYCLES, "update_cycle")
    code = _text(where, merged, "code")
    provider_code = _text(where, merged, "provider_code")
    assert code is not None and provider_code is not None
    layer = table.split(".", 1)[0]
    m = _CODE.match(code)
    if not m or m.group(1) != provider_code or m.group(2) != LAYER_LETTERS[layer]:
        raise ResourceError(f"{where}.code: {code!r} must be {provider_code}-{LAYER_LETTERS[layer]}<3 digits> "
                            "(<provider_code>-<layer letter><sequence>)")
    category = merged.get("category")
    if not isinstance(category, list) or len(category) != 4 or not all(isinstance(c, str) and c for c in category):
        raise ResourceError(f"{where}.category: must be [类, 项, 目, 细目] (four non-empty texts), got {category!r}")
    condition = _text(where, merged, "sharing_condition", required=sharing != "unconditional")
    personal = [c.name for c in columns if c.sensitivity in ("personal", "sensitive_personal")]
    if sharing == "unconditional" and personal:
        raise ResourceError(f"{where}.sharing_type: an unconditional resource must hold no personal information, "
                            f"but columns {personal} are personal or sensitive_personal")
    return Resource(
        code=code, table=table, name=str(_text(where, merged, "name")),
        category=(category[0], category[1], category[2], category[3]),
        provider=str(_text(where, merged, "provider")), provider_code=provider_code,
        summary=str(_text(where, merged, "summary")), format=str(_text(where, merged, "format")),
        columns=columns, sharing_type=sharing, sharing_condition=condition,
        sharing_method=str(_text(where, merged, "sharing_method")),
        open_attribute=_one_of(where, merged.get("open_attribute"), OPEN_ATTRIBUTES, "open_attribute"),
        update_cycle=cycle, published=_published(where, merged.get("published")),
        related_codes=_codes(where, merged.get("related", []), "related"), source=where)


def _service_tables(kind: str, themes_dir: Path) -> list[tuple[str, str]]:
    """``(analysis.<theme>_<service>_<name>, input table)`` of every theme service entry of service ``kind``."""
    return [(f"analysis.{theme}_{s.service}_{s.name}", s.table)
            for theme in list_themes(themes_dir) for s in load_theme(theme, themes_dir).services if s.service == kind]


def _contract_resources(path: Path, spec: contracts.TableSpec, themes_dir: Path) -> list[Resource]:
    where = f"tables/{path.name}: resource"
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
    block = doc.get("resource")
    if not isinstance(block, dict):
        raise ResourceError(f"{where}: missing (every table contract has a resource block)")
    described = {str(c.get("name")): str(c.get("description") or "") for c in doc.get("columns") or []}
    table_columns = [(c.name, c.type, described.get(c.name, "")) for c in spec.columns]
    columns = _columns(where, block, table_columns)
    if not doc.get("applies_to"):
        if "instances" in block:
            raise ResourceError(f"{where}.instances: only a contract with applies_to has instances")
        return [_resource(where, spec.name, block, columns)]
    instances = block.get("instances")
    if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
        raise ResourceError(f"{where}.instances: must list one {{table, code, name, summary, related}} per output "
                            "table of the service")
    template = {k: v for k, v in block.items() if k != "instances"}
    expected = sorted(t for t, _ in _service_tables(spec.table.split("_", 1)[1], themes_dir))
    listed = sorted(str(i.get("table")) for i in instances)
    if listed != expected:
        raise ResourceError(f"{where}.instances: tables {listed} must equal the service's output tables {expected} "
                            "(schemas/themes/*.yaml)")
    out = []
    for i in instances:
        if unknown := sorted(set(i) - set(_INSTANCE_FIELDS)):
            raise ResourceError(f"{where}.instances[{i.get('table')}]: unknown field(s) {unknown}")
        out.append(_resource(f"{where}.instances[{i['table']}]", str(i["table"]), template, columns,
                             overrides={k: v for k, v in i.items() if k != "table"}))
    return out


def _registry_resources(sources_dir: Path) -> list[Resource]:
    registry = load_registry(sources_dir)
    out = []
    for source, spec in registry.items():
        doc = yaml.load((sources_dir / f"{source}.yaml").read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506
        for name, obj in spec.objects.items():
            where = f"schemas/sources/{source}.yaml: objects.{name}.resource"
            block = (doc.get("objects") or {}).get(name, {}).get("resource")
            if not isinstance(block, dict):
                raise ResourceError(f"{where}: missing (every registry object has a resource block)")
            delivered = list(obj.columns) + [c for c in obj.projection if c not in obj.columns]
            table_columns = [(c, "STRING", f"registry type {obj.column_type(c)}") for c in delivered]
            columns = _columns(where, block, table_columns)
            sharing = REGISTRY_SHARING[obj.sharing_type or spec.sharing_type]
            cycle = obj.update_cycle or spec.update_cycle
            raw = _resource(where, f"raw.{source}_{name}", block, columns, sharing, cycle)
            out.append(raw)
            number = raw.code[-3:]
            out.append(_derived(raw, "staging", f"{raw.provider_code}-S{number}", f"{raw.name}（已校验）",
                                f"{raw.name}中通过质量规则的行（staging.{source}_{name}，按逻辑日期分区）。",
                                raw.sharing_type, raw.sharing_condition, raw.open_attribute))
            quarantine = _derived(raw, "quarantine", f"{raw.provider_code}-Q{number}", f"{raw.name}（质量隔离）",
                                  f"{raw.name}中未通过质量规则的行及其规则与原因（quarantine.{source}_{name}）。",
                                  "not_shared", _QUARANTINE_REASON, "not_open")
            out.append(replace(quarantine, columns=_quarantine_columns(raw)))
    return out


def _quarantine_columns(raw: Resource) -> tuple[ResourceColumn, ...]:
    """The information items of a registry object's quarantine table: the columns
    :func:`govlake.quality.rules.split` and the quality stage write (a row's data is the JSON ``_row``, as sensitive
    as the object's most sensitive column; a Mongo object's tables also carry ``_id``, left out here)."""
    grades = [c.sensitivity for c in raw.columns]
    row = next((g for g in ("sensitive_personal", "personal", "internal") if g in grades), "public")
    return tuple(ResourceColumn(n, t, g, d) for n, t, g, d in (
        ("_source_key", "STRING", "personal" if row != "public" else "internal",
         "Business key of the row, key columns joined with |."),
        ("_rule_ids", "ARRAY<STRING>", "internal", "Quarantine or fail rules the row failed."),
        ("_messages", "ARRAY<STRING>", "internal", "One message per rule, personal values masked."),
        ("_row", "STRING", row, "The row's data columns as JSON."),
        ("_row_number", "BIGINT", "internal", "Row number in the delivery."),
        ("_source", "STRING", "internal", "Source (department) name."),
        ("_source_table", "STRING", "internal", "Source object."),
        ("_batch_id", "STRING", "internal", "Extraction batch."),
        ("_logical_date", "DATE", "internal", "Logical date of the batch."),
        ("_extracted_at", "TIMESTAMP", "internal", "Extraction instant."),
        ("_row_hash", "STRING", "internal", "SHA-256 of the row."),
        ("_released", "BOOLEAN", "internal", "Released by a steward (python -m govlake.quality.audit release)."),
        ("_release_id", "STRING", "internal", "The release."),
        ("_released_row", "STRING", row, "The corrected row a release published, as JSON.")))


def _derived(raw: Resource, layer: str, code: str, name: str, summary: str, sharing_type: str,
             condition: str | None, open_attribute: str) -> Resource:
    """The staging or quarantine entry of a registry object, derived from its raw entry (related to it)."""
    return replace(raw, code=code, table=f"{layer}.{raw.table.split('.', 1)[1]}", name=name, summary=summary,
                   sharing_type=sharing_type, sharing_condition=condition, open_attribute=open_attribute,
                   related_codes=(raw.code,), source=f"{raw.source} (derived: {layer})")


def load_resources(tables_dir: Path = contracts.TABLES_DIR, sources_dir: Path = SCHEMAS_DIR / "sources",
                   themes_dir: Path = THEMES_DIR) -> dict[str, Resource]:
    """Every catalog entry, by ``<layer>.<table>`` (see the module docstring for where they are kept).

    Raises:
        ResourceError: a block is missing or invalid (unknown sharing type, open attribute, sensitivity or update
            cycle; a malformed code or category; information items that differ from the table's columns; a
            conditional entry without condition or a not-shared one without reason; personal columns in an
            unconditional entry), two entries share a code or a table, or a related code is not in the catalog;
            the message names the file and the field.
    """
    resources: dict[str, Resource] = {}
    by_code: dict[str, Resource] = {}
    specs = contracts.load_catalog(Path(tables_dir))
    found = [r for path in sorted(Path(tables_dir).glob("*.yaml"))
             for r in _contract_resources(path, specs[path.stem], themes_dir)]
    for r in found + _registry_resources(Path(sources_dir)):
        if r.code in by_code:
            raise ResourceError(f"{r.source}.code: {r.code} is also the code of {by_code[r.code].table} "
                                f"({by_code[r.code].source})")
        if r.table in resources:
            raise ResourceError(f"{r.source}: table {r.table} already has an entry ({resources[r.table].source})")
        by_code[r.code], resources[r.table] = r, r
    for r in resources.values():
        if missing := [c for c in r.related_codes if c not in by_code]:
            raise ResourceError(f"{r.source}.related: {missing} are not codes of this catalog")
    return dict(sorted(resources.items()))


# --- catalog.resources -----------------------------------------------------------------------------------------------

def _resources_schema():
    from pyspark.sql.types import ArrayType, DateType, StringType, StructField, StructType

    item = StructType([StructField(n, StringType(), n == "description") for n in
                       ("name", "type", "sensitivity", "description")])
    text = ("code", "table", "name")
    more = ("provider", "provider_code", "summary", "format", "sharing_type", "sharing_condition",
            "sharing_method", "open_attribute", "update_cycle")
    return StructType(
        [StructField(n, StringType(), False) for n in text]
        + [StructField("category", ArrayType(StringType(), False), False)]
        + [StructField(n, StringType(), n == "sharing_condition") for n in more]
        + [StructField("published", DateType(), False),
           StructField("related_codes", ArrayType(StringType(), False), False),
           StructField("columns", ArrayType(item, False), False)])


def resources_frame(spark: SparkSession, resources: Mapping[str, Resource]) -> DataFrame:
    """``catalog.resources``: one row per resource, ordered by code, with the columns of
    ``tables/catalog.resources.yaml`` (information items as ``ARRAY<STRUCT<name, type, sensitivity,
    description>>``). Pure: no I/O."""
    rows = [(r.code, r.table, r.name, list(r.category), r.provider, r.provider_code, r.summary, r.format,
             r.sharing_type, r.sharing_condition, r.sharing_method, r.open_attribute, r.update_cycle, r.published,
             list(r.related_codes), [(c.name, c.type, c.sensitivity, c.description) for c in r.columns])
            for r in sorted(resources.values(), key=lambda r: r.code)]
    return spark.createDataFrame(rows, _resources_schema())


def publish_resources(spark: SparkSession, settings: Settings) -> bool:
    """Rewrite ``catalog.resources`` from :func:`load_resources` when its content changed (the pipeline calls it
    after the analysis stage; a rerun leaves the table and its history as they are). Returns True when written."""
    from govlake.core import lake

    frame = resources_frame(spark, load_resources())
    return lake.overwrite_if_changed(spark, frame, settings.table_path("catalog", "resources"), ["code"])


# --- DCAT-AP export ----------------------------------------------------------------------------------------------

_EU = "http://publications.europa.eu/resource/authority/"
#: 更新周期 -> EU frequency authority table (DCAT-AP dct:accrualPeriodicity).
FREQUENCIES = {"realtime": "CONT", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
               "quarterly": "QUARTERLY", "half_yearly": "ANNUAL_2", "yearly": "ANNUAL"}
#: 共享类型 -> EU access-right authority table (DCAT-AP dct:accessRights).
ACCESS_RIGHTS = {"unconditional": "PUBLIC", "conditional": "RESTRICTED", "not_shared": "NON_PUBLIC"}
_CONTEXT = {"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/", "skos": "http://www.w3.org/2004/02/skos/core#",
            "xsd": "http://www.w3.org/2001/XMLSchema#"}
DEFAULT_BASE = "https://data.govlake.example.gov.cn/"


def _zh(text: str) -> dict[str, str]:
    return {"@value": text, "@language": "zh"}


def dcat_catalog(resources: Mapping[str, Resource], base: str = DEFAULT_BASE) -> dict[str, Any]:
    """The catalog as a DCAT-AP 3 JSON-LD document: one ``dcat:Catalog`` with one ``dcat:Dataset`` per resource
    (dct:identifier = 资源代码, dct:title, dct:description, dct:publisher, dcat:theme = 分类 path as a skos:Concept,
    dcat:keyword = 分类, dct:accrualPeriodicity (:data:`FREQUENCIES`), dct:accessRights (:data:`ACCESS_RIGHTS`),
    dct:issued, dct:relation = 关联资源, one dcat:Distribution with dcat:accessURL ``<base>sql/<layer>.<table>``
    and dct:format). ``base`` is the URI prefix of the nodes."""
    platform = {"@type": "foaf:Agent", "foaf:name": _zh("市政务数据管理局（GovLake 平台）")}
    datasets = []
    for r in resources.values():
        datasets.append({
            "@id": f"{base}resource/{r.code}", "@type": "dcat:Dataset",
            "dct:identifier": r.code, "dct:title": _zh(r.name), "dct:description": _zh(r.summary),
            "dct:publisher": {"@type": "foaf:Agent", "foaf:name": _zh(r.provider), "dct:identifier": r.provider_code},
            "dcat:theme": {"@type": "skos:Concept", "skos:prefLabel": _zh("/".join(r.category))},
            "dcat:keyword": [_zh(c) for c in r.category],
            "dct:accrualPeriodicity": {"@id": f"{_EU}frequency/{FREQUENCIES[r.update_cycle]}"},
            "dct:accessRights": {"@id": f"{_EU}access-right/{ACCESS_RIGHTS[r.sharing_type]}"},
            "dct:issued": {"@value": r.published.isoformat(), "@type": "xsd:date"},
            "dct:relation": [{"@id": f"{base}resource/{c}"} for c in r.related_codes],
            "dcat:distribution": [{
                "@id": f"{base}resource/{r.code}/delta", "@type": "dcat:Distribution",
                "dcat:accessURL": {"@id": f"{base}sql/{r.table}"},
                "dct:format": {"@id": f"{_EU}file-type/PARQUET"}, "dct:title": _zh(r.format)}],
        })
    return {"@context": _CONTEXT, "@id": f"{base}catalog", "@type": "dcat:Catalog",
            "dct:title": _zh("政务信息资源目录（GovLake）"),
            "dct:description": _zh("GovLake 数据湖的政务信息资源目录：每张表一个资源，"
                                   "含分类、共享类型、更新周期与信息项。"),
            "dct:publisher": platform, "dcat:dataset": datasets}


def _present(node: Mapping, prop: str) -> bool:
    value = node.get(prop)
    if isinstance(value, dict):
        value = value.get("@value", value.get("@id", value))
    if isinstance(value, list):
        return bool(value)
    return value is not None and value != "" and value != {}


def validate_dcat(doc: Mapping[str, Any]) -> list[str]:
    """DCAT-AP 3's mandatory properties of ``doc`` (as :func:`dcat_catalog` writes it): Catalog dct:title,
    dct:description, dct:publisher, dcat:dataset; Dataset dct:title, dct:description; Distribution
    dcat:accessURL. Also: dct:accessRights and dct:accrualPeriodicity, when given, are EU authority URIs.

    Returns:
        one message per problem (naming the node and the property); empty when valid.
    """
    problems = []
    if doc.get("@type") != "dcat:Catalog":
        problems.append(f"catalog {doc.get('@id')}: @type must be dcat:Catalog")
    for prop in ("dct:title", "dct:description", "dct:publisher", "dcat:dataset"):
        if not _present(doc, prop):
            problems.append(f"catalog {doc.get('@id')}: missing mandatory {prop}")
    for ds in doc.get("dcat:dataset") or []:
        name = f"dataset {ds.get('dct:identifier') or ds.get('@id')}"
        for prop in ("dct:title", "dct:description"):
            if not _present(ds, prop):
                problems.append(f"{name}: missing mandatory {prop}")
        for prop, table in (("dct:accessRights", "access-right"), ("dct:accrualPeriodicity", "frequency")):
            uri = (ds.get(prop) or {}).get("@id") if isinstance(ds.get(prop), dict) else ds.get(prop)
            if uri is not None and not str(uri).startswith(f"{_EU}{table}/"):
                problems.append(f"{name}: {prop} {uri!r} is not in the EU {table} authority table")
        for dist in ds.get("dcat:distribution") or []:
            if not _present(dist, "dcat:accessURL"):
                problems.append(f"{name}: distribution {dist.get('@id')}: missing mandatory dcat:accessURL")
    return problems


# --- update-cycle compliance ----------------------------------------------------------------------------------------

#: Months of a calendar-based update cycle; the others are fixed durations (:data:`_CYCLE_DURATIONS`).
_CYCLE_MONTHS = {"monthly": 1, "quarterly": 3, "half_yearly": 6, "yearly": 12}
#: realtime: a resource updated continuously is expected to have committed within the last hour.
_CYCLE_DURATIONS = {"realtime": dt.timedelta(hours=1), "daily": dt.timedelta(days=1),
                    "weekly": dt.timedelta(days=7)}


@dataclass(frozen=True)
class Compliance:
    """One resource's update-cycle check: its last Delta commit (None: no table), the time the next update is due
    (last_update + one cycle) and whether ``as_of`` is past it (a missing table is overdue)."""

    table: str
    code: str
    update_cycle: str
    last_update: dt.datetime | None
    due_by: dt.datetime | None
    overdue: bool


def due_by(last_update: dt.datetime, cycle: str) -> dt.datetime:
    """``last_update`` plus one ``cycle`` (:data:`UPDATE_CYCLES`): fixed durations for realtime (1 h), daily, weekly;
    calendar months for monthly (1), quarterly (3), half_yearly (6), yearly (12), the day clipped to the month's end.

    Raises:
        ValueError: unknown cycle.
    """
    if cycle in _CYCLE_DURATIONS:
        return last_update + _CYCLE_DURATIONS[cycle]
    if cycle not in _CYCLE_MONTHS:
        raise ValueError(f"unknown update cycle {cycle!r}; cycles are {', '.join(UPDATE_CYCLES)}")
    import calendar

    month0 = last_update.month - 1 + _CYCLE_MONTHS[cycle]
    year, month = last_update.year + month0 // 12, month0 % 12 + 1
    return last_update.replace(year=year, month=month, day=min(last_update.day, calendar.monthrange(year, month)[1]))


def last_commit(spark: SparkSession, path: str) -> dt.datetime | None:
    """Timestamp (UTC, aware) of the latest commit of the Delta table at ``path`` (its history), None when there is
    no table."""
    from delta.tables import DeltaTable

    from govlake.core import lake

    if not lake.exists(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).selectExpr("CAST(timestamp AS DOUBLE) AS t").collect()[0]
    return dt.datetime.fromtimestamp(float(row["t"]), dt.UTC)


def update_compliance(spark: SparkSession, resources: Mapping[str, Resource], table_path: Callable[[str, str], str],
                      as_of: dt.datetime) -> list[Compliance]:
    """Each resource's last update (:func:`last_commit` of ``table_path(layer, table)``) against its update cycle
    as of the aware instant ``as_of``, by table."""
    out = []
    for name, r in sorted(resources.items()):
        last = last_commit(spark, table_path(*name.split(".", 1)))
        due = due_by(last, r.update_cycle) if last is not None else None
        out.append(Compliance(name, r.code, r.update_cycle, last, due, due is None or as_of > due))
    return out


def compliance_frame(spark: SparkSession, rows: list[Compliance], as_of: dt.datetime) -> DataFrame:
    """``catalog.update_compliance`` rows (columns of ``tables/catalog.update_compliance.yaml``) for ``as_of``."""
    from pyspark.sql.types import BooleanType, DateType, StringType, StructField, StructType, TimestampType

    schema = StructType([StructField("table", StringType(), False), StructField("code", StringType(), False),
                         StructField("update_cycle", StringType(), False),
                         StructField("last_update", TimestampType()), StructField("due_by", TimestampType()),
                         StructField("overdue", BooleanType(), False), StructField("as_of", TimestampType(), False),
                         StructField("as_of_date", DateType(), False)])
    day = as_of.astimezone(ZoneInfo(TIME_ZONE)).date()
    return spark.createDataFrame([(c.table, c.code, c.update_cycle, c.last_update, c.due_by, c.overdue, as_of, day)
                                  for c in rows], schema)


# --- command line ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``check`` | ``export --out F`` | ``compliance [--date D]`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m govlake.governance.resources", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate every resource entry")
    export = sub.add_parser("export", help="write the catalog as DCAT-AP 3 JSON-LD")
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--base", default=DEFAULT_BASE, help="URI prefix of the catalog's nodes")
    comp = sub.add_parser("compliance", help="write catalog.update_compliance and list overdue resources")
    comp.add_argument("--date", type=dt.date.fromisoformat, default=None,
                      help="check as of the end of this day (Asia/Shanghai); default now")
    args = parser.parse_args(argv)
    try:
        resources = load_resources()
    except (ResourceError, contracts.CatalogError, ValueError) as exc:
        print(f"govlake: {exc}", file=sys.stderr)
        return 1
    if args.command == "check":
        print(f"{len(resources)} resources, every entry valid")
        return 0
    if args.command == "export":
        doc = dcat_catalog(resources, args.base)
        if problems := validate_dcat(doc):
            print("\n".join(problems), file=sys.stderr)
            return 1
        fsio.atomic_write_text(args.out, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        print(f"{len(doc['dcat:dataset'])} datasets written to {args.out}")
        return 0
    from govlake.core import lake
    from govlake.core.config import Settings
    from govlake.core.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings, app_name="govlake-compliance")
    if args.date is None:
        as_of = dt.datetime.now(dt.UTC).replace(microsecond=0)
    else:
        as_of = dt.datetime.combine(args.date + dt.timedelta(days=1), dt.time(0), ZoneInfo(TIME_ZONE))
    # the table this command writes is its output, not a resource it checks
    checked = {t: r for t, r in resources.items() if t != "catalog.update_compliance"}
    rows = update_compliance(spark, checked, settings.table_path, as_of)
    frame = compliance_frame(spark, rows, as_of)
    lake.replace_partition(frame, settings.table_path("catalog", "update_compliance"), "as_of_date",
                           as_of.astimezone(ZoneInfo(TIME_ZONE)).date())
    for c in rows:
        if c.overdue:
            print(f"overdue: {c.table} ({c.code}, {c.update_cycle}): last update {c.last_update}, due by {c.due_by}")
    print(f"{sum(c.overdue for c in rows)} of {len(rows)} resources overdue as of {as_of.isoformat()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
