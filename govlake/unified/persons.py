"""Unified layer: one person, one event per real thing, in national codes, with provenance and history.

Tables (Delta, change data feed enabled, MERGEd on their business key; a rerun with the same input changes
nothing, and day N+1 touches only the rows whose content changed):

``unified.person_link`` — one row per department record that describes a person, key ``record_key``
    (``<source>:<object>:<business key>``): the standardised :data:`PERSON_ATTRIBUTES` of the record, its
    ``person_id`` and how it was linked (``link_method`` 'id' | 'probabilistic' | 'cluster' | 'singleton',
    ``match_weight`` DOUBLE, ``agreed_fields`` STRING), lineage (``source``, ``source_object``,
    ``business_key``, ``batch_id`` = the batch that delivered the current content, ``batch_date`` DATE,
    ``updated_at`` TIMESTAMP = the department's own update time), ``_content_hash``.

``unified.person`` — the golden record, one row per person, key ``person_id``:
    person_id STRING (the normalised 18-digit GB 11643 ID number; ``U`` + 17 hex digits for a person known
    only from records without a valid ID), id_no, name, sex_code (GB/T 2261.1), birth_date DATE,
    ethnic_code (GB/T 3304), household_no, relation_code (GB/T 4761 relation to the household head),
    community_code (12-digit statistical division code), district_code (6-digit GB/T 2260), address, phone,
    marital_status_code (GB/T 2261.2), death_date DATE, education_code (GB/T 4658-2006),
    registration_type ('户籍' registered here | '流动' floating: registered elsewhere), sources ARRAY<STRING>,
    link_method STRING,
    first_seen_date DATE (insert only), last_seen_date DATE (the latest batch that changed one of the
    person's records), is_current BOOLEAN (no death recorded), _content_hash STRING.

``unified.person_attribute_provenance`` — key (``person_id``, ``attribute``): the surviving ``value``
    (STRING), the department (``source``), ``record_key``, ``batch_id``, ``batch_date`` DATE and
    ``source_updated_at`` TIMESTAMP of the record it came from, ``_content_hash``.

``unified.person_residence`` / ``unified.household_membership`` — slowly changing dimensions of type 2,
    key (``person_id``, ``valid_from``): tracked columns (community_code, district_code, address |
    household_no, relation_code), ``valid_from`` DATE, ``valid_to`` DATE (exclusive; NULL while current),
    ``is_current`` BOOLEAN, ``_content_hash``. ``person_residence`` also carries ``grid_code`` (the 网格 grid of
    the address in ``unified.address``) as a type 1 column (:data:`RESIDENCE_OVERWRITE`): a grid change alone
    updates the current version in place, it does not open a new one.

``unified.person_relationship_statement`` — one row per relationship stated by a department record naming
    several persons (``civil.marriages``: husband–wife; ``health.births``: mother–child, father–child), key
    ``statement_key``; columns :data:`STATEMENT_COLUMNS` (the two ends as ``unified.person_link`` record keys,
    basis, validity, lineage) and ``_content_hash`` (see :func:`relationship_statements`).

``unified.person_relationship`` — spouse and parent–child edges from the household registry's relation to the
    head (GB/T 4761-2008) and from the statements above, one row per (person_id_1, person_id_2, relationship)
    (parent, child for 'parent_child'; the smaller id first for 'spouse'): household_no, basis, valid_from,
    valid_to, sources, provenance (every claim: department, table, record keys, batch) — see
    :func:`relationships`.

``unified.event`` — one row per grid event or citizen message, key ``event_id``:
    event_id STRING ('grid:<event_no>' | 'hotline:<message id>'), channel STRING,
    reported_at TIMESTAMP, report_date DATE (Asia/Shanghai), district_code STRING (NULL when the
    place is unknown), community_code STRING, grid_code STRING, category_l1/_l2/_l3 STRING,
    text STRING, status STRING, closed_at TIMESTAMP, lng DOUBLE, lat DOUBLE,
    first_seen_date DATE, _content_hash STRING.

Standardisation rules come from each object's ``unified`` block in ``schemas/sources/*.yaml``
(column roles, department code maps, date formats); survivorship order per attribute from
``schemas/unified/survivorship.yaml``; the code pack is :mod:`govlake.codes.code_lists`. Probabilistic linkage of
records without a valid ID is in :mod:`govlake.unified.linkage`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from govlake.codes import code_lists as codes
from govlake.core import lake
from govlake.core.config import SCHEMAS_DIR
from govlake.extract.registry import RELATIONSHIP_TYPES, check_identifier

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from govlake.extract.registry import UnifiedRules

#: Variants of the middle dot used in transliterated names (GB 18030 / GA 1050-2013 practice: U+00B7).
NAME_DOT_VARIANTS = ".•・．‧∙⋅●·｡"
MIDDLE_DOT = "\u00b7"

PERSON_ATTRIBUTES = ("id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no", "relation_code",
                     "community_code", "district_code", "address", "phone", "marital_status_code", "death_date",
                     "education_code", "registration_type")
#: Lineage columns of a candidate / link row (see :func:`person_candidates`).
RECORD_LINEAGE = ("record_key", "source", "source_object", "business_key", "priority", "updated_at", "batch_id",
                  "batch_date")
LINK_COLUMNS = ("person_id", "link_method", "match_weight", "agreed_fields")
RESIDENCE_COLUMNS = ("community_code", "district_code", "address")
#: Type 1 columns of ``unified.person_residence``: the 网格 grid of the address (``unified.address``) is a
#: derived attribute of the address, redrawn by the grid-management centre; its change alone is not a move.
RESIDENCE_OVERWRITE = ("grid_code",)
HOUSEHOLD_COLUMNS = ("household_no", "relation_code")
SURVIVORSHIP_FILE = SCHEMAS_DIR / "unified" / "survivorship.yaml"

#: GB/T 2261.2-2003 marital status codes (10 unmarried, 20 married, 21-23 first/re-/re-married to the
#: same spouse, 30 widowed, 40 divorced, 90 not stated).
MARITAL_STATUS_CODES = ("10", "20", "21", "22", "23", "30", "40", "90")
#: Registration type of a resident (户口登记地): '户籍' registered in this place, '流动' floating (registered
#: elsewhere; 国家统计局 人口普查 "户口登记地在外乡镇街道"). Departments' own values map here by ``registration_map``.
REGISTRATION_TYPES = ("户籍", "流动")


@dataclass(frozen=True)
class SurvivorshipRules:
    """The survivorship configuration of ``schemas/unified/survivorship.yaml`` (:func:`load_survivorship`).

    Attributes:
        default: departments in order of authority for an attribute not in ``attributes``.
        attributes: :data:`PERSON_ATTRIBUTES` attribute -> departments in order of authority.
        relationships: :data:`RELATIONSHIP_TYPES` type -> departments in order of authority for an edge's basis and
            validity (:func:`relationships`).
        version: the file's version.
    """

    default: tuple[str, ...] = ()
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    relationships: dict[str, tuple[str, ...]] = field(default_factory=dict)
    version: int = 1

    def order(self, attribute: str) -> tuple[str, ...]:
        """The departments in order of authority for ``attribute`` (its own list, else ``default``)."""
        return self.attributes.get(attribute) or self.default


def load_survivorship(path: Path | str = SURVIVORSHIP_FILE) -> SurvivorshipRules:
    """The survivorship configuration of ``path`` (read and checked once per path).

    Raises:
        ValueError: the file is malformed: names the file and the field (an unknown field, an attribute not in
            :data:`PERSON_ATTRIBUTES`, a relationship not in :data:`RELATIONSHIP_TYPES`, an order that is not a
            list of department names).
    """
    return _load_survivorship(str(path))


@lru_cache(maxsize=4)
def _load_survivorship(path: str) -> SurvivorshipRules:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    try:
        return _parse_survivorship(raw)
    except ValueError as exc:
        raise ValueError(f"survivorship file {path}: {exc}") from exc


def _parse_survivorship(raw: Any) -> SurvivorshipRules:
    fields = ("version", "default", "attributes", "relationships")
    if not isinstance(raw, dict):
        raise ValueError(f"must be a map of {', '.join(fields)}, not {raw!r}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(str, unknown))}; fields are {', '.join(fields)}")
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"version must be an integer, not {version!r}")

    def order(where: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list of departments, not {value!r}")
        for source in value:
            check_identifier(source, f"{where}: department")
        if len(set(value)) != len(value):
            raise ValueError(f"{where} lists a department twice: {value!r}")
        return tuple(value)

    def orders(name: str, allowed: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a map of {name[:-1]}: [department, ...], not {value!r}")
        for key in value:
            if key not in allowed:
                raise ValueError(f"{name}: unknown {name[:-1]} {key!r}; {name} are {', '.join(allowed)}")
        return {key: order(f"{name}.{key}", v) for key, v in value.items()}

    return SurvivorshipRules(default=order("default", raw.get("default") or []),
                             attributes=orders("attributes", PERSON_ATTRIBUTES),
                             relationships=orders("relationships", RELATIONSHIP_TYPES), version=version)


def normalize_name_col(c: Column) -> Column:
    """Standardise a person name: NFKC-style full-width folding is not applied to Han characters;
    whitespace is removed and every middle-dot variant becomes U+00B7 '·' (names of ethnic
    minorities and foreigners, GA 1050-2013 practice). Returns STRING (NULL for blank)."""
    from pyspark.sql import functions as F

    cleaned = F.regexp_replace(F.regexp_replace(c, r"[\s\u3000]+", ""), f"[{NAME_DOT_VARIANTS}]", MIDDLE_DOT)
    return F.when(F.length(cleaned) > 0, cleaned)


def district_of_col(community_code: Column) -> Column:
    """6-digit district code (GB/T 2260) of a 12-digit community code, NULL when malformed."""
    from pyspark.sql import functions as F

    return F.when(community_code.rlike(r"^\d{12}$"), F.substring(community_code, 1, 6))


def person_candidates(df: DataFrame, source: str, rules: UnifiedRules) -> DataFrame:
    """Standardise one department's person records (a staging frame) to candidate rows.

    An object whose rows name SEVERAL persons (a marriage registration: husband and wife; a birth certificate:
    child, mother, father) lists them under ``roles`` instead of ``columns``: ``roles: {<role>: {columns:
    {role -> column}, values: {role -> constant delivered value}}}``. Each role gives one candidate per row in
    which the role is present (its ``id_no`` or ``name`` column is non-blank), with record_key
    ``<source>:<object>:<business key>#<role>`` (business_key stays the row's key); ``values`` stand for a
    column the row lacks (e.g. ``sex: "2"`` for a mother; it then goes through ``sex_map``). The other rules
    (priority, record_key, maps, date formats) apply to every role.

    Args:
        df: accepted rows of ``staging.<source>_<object>`` (delivered STRING columns + lineage
            ``_source_table``, ``_row_number``, optionally ``_batch_id`` and ``_logical_date``).
        source: department source name (e.g. ``hukou``).
        rules: the object's ``unified`` block (:class:`govlake.extract.registry.UnifiedRules`): ``priority`` (int,
            1 = most authoritative),
            ``record_key`` (business key columns naming the record; default ``_row_number``),
            ``columns`` (role -> delivered column; roles id_no, name, sex, birth_date, ethnic,
            household_no, relation, community_code, address, phone, marital_status, death_date, education,
            registration_type), ``watermark`` (the delivered column holding the department's update time: the
            object's registry ``watermark``; default ``updated_at``; None: the object has none, updated_at NULL),
            ``sex_map``, ``marital_map`` (department value -> GB/T 2261.2),
            ``education_map`` (department value -> GB/T 4658-2006), ``registration_map`` (department value ->
            one of :data:`REGISTRATION_TYPES`), ``date_formats``. Without a map a value is kept only when it is
            already a national code (education: in the GB/T 4658-2006 list after
            :func:`govlake.codes.code_lists.normalize_code_col`; registration type: in :data:`REGISTRATION_TYPES`); any
            other value becomes NULL (the raw suite's warn rules count them).

    Returns:
        DataFrame: :data:`RECORD_LINEAGE` (record_key STRING ``<source>:<object>:<business key>``, NULL
        when a business key column is NULL; source, source_object, business_key STRING; priority INT;
        updated_at TIMESTAMP (the watermark read by :func:`source_timestamp_col`: SQL text or a MongoDB date; NULL
        when it does not parse); batch_id STRING; batch_date DATE), id_valid BOOLEAN, and the
        :data:`PERSON_ATTRIBUTES` standardised (birth_date, death_date DATE, the rest STRING; phone in canonical
        form, :func:`govlake.codes.code_lists.normalize_phone_col`: full-width digits folded, separators and a +86
        prefix removed; a role the department lacks is NULL).

    Raises:
        ValueError: a role of ``roles`` names a column the frame lacks (names the source, object and column).
    """
    from functools import reduce

    if not rules.roles:
        return _role_candidates(df, source, rules, rules.columns, {}, None)
    parts = []
    for name, spec in rules.roles.items():
        missing = sorted(set(spec.columns.values()) - set(df.columns))
        if missing:
            raise ValueError(f"{source}: unified role {name!r} names columns {missing} the frame lacks")
        parts.append(_role_candidates(df, source, rules, spec.columns, spec.values, name))
    return reduce(lambda a, b: a.unionByName(b), parts)


def _role_candidates(df: DataFrame, source: str, rules: UnifiedRules, cols: dict[str, str], values: dict[str, str],
                     role_name: str | None) -> DataFrame:
    """:func:`person_candidates` for one column mapping (``role_name`` None: the object's single person)."""
    from pyspark.sql import functions as F

    null = F.lit(None).cast("string")

    def role(name):
        if name in cols:
            return F.col(cols[name])
        return F.lit(str(values[name])) if name in values else null

    def has(name):
        return name in df.columns

    key_cols = list(rules.record_key or ["_row_number"])
    business_key = F.concat_ws("|", *[F.col(k).cast("string") for k in key_cols])
    key_ok = F.lit(True)
    for k in key_cols:
        key_ok = key_ok & F.col(k).isNotNull() & (F.length(F.trim(F.col(k).cast("string"))) > 0)
    record_key = F.concat_ws(":", F.lit(source), F.col("_source_table"), business_key)
    if role_name is not None:
        record_key = F.concat(record_key, F.lit(f"#{role_name}"))
        df = df.where(_role_present(cols))
    community = F.trim(role("community_code"))
    formats = codes.DATE_FORMATS if rules.date_formats is None else rules.date_formats
    watermark = rules.watermark
    marital = role("marital_status")
    if rules.marital_map is not None:
        marital = _map_col(F.trim(marital), rules.marital_map)
    education = codes.normalize_code_col(role("education"))
    if rules.education_map is not None:
        education = _map_col(education, {codes.normalize_code(k): v for k, v in rules.education_map.items()})
    registration = F.trim(role("registration_type"))
    if rules.registration_map is not None:
        registration = _map_col(registration, rules.registration_map)
    # The normalised ID is projected once and validated in a second projection: inlined, the
    # GB 11643 expression tree grows past Spark's 64 KB code-generation limit.
    standardised = df.select(
        F.when(key_ok, record_key).alias("record_key"),
        F.lit(source).alias("source"),
        F.col("_source_table").alias("source_object"),
        F.when(key_ok, business_key).alias("business_key"),
        F.lit(int(rules.priority)).alias("priority"),
        (source_timestamp_col(F.col(watermark)) if watermark else F.lit(None).cast("timestamp")).alias("updated_at"),
        (F.col("_batch_id") if has("_batch_id") else null).alias("batch_id"),
        (F.col("_logical_date") if has("_logical_date") else F.lit(None)).cast("date").alias("batch_date"),
        codes.id_normalize_col(role("id_no")).alias("id_no"),
        normalize_name_col(role("name")).alias("name"),
        codes.standardize_sex_col(role("sex"), rules.sex_map).alias("sex_code"),
        codes.parse_date_col(role("birth_date"), formats).alias("birth_date"),
        (codes.standardize_ethnic_col(role("ethnic")) if "ethnic" in cols or "ethnic" in values
         else null).alias("ethnic_code"),
        F.trim(role("household_no")).alias("household_no"),
        F.trim(role("relation")).alias("relation_code"),
        community.alias("community_code"),
        district_of_col(community).alias("district_code"),
        F.trim(role("address")).alias("address"),
        codes.normalize_phone_col(role("phone")).alias("phone"),
        F.when(F.trim(marital).isin(*MARITAL_STATUS_CODES), F.trim(marital)).alias("marital_status_code"),
        (codes.parse_date_col(role("death_date"), formats) if "death_date" in cols or "death_date" in values
         else F.lit(None).cast("date")).alias("death_date"),
        F.when(codes.code_in_list_col(education, "education"), education).alias("education_code"),
        F.when(registration.isin(*REGISTRATION_TYPES), registration).alias("registration_type"),
    )
    return standardised.select(*RECORD_LINEAGE, codes.id_is_valid_col(F.col("id_no")).alias("id_valid"),
                               *PERSON_ATTRIBUTES)


def _role_present(cols: dict[str, str]) -> Column:
    """BOOLEAN: the role's ``id_no`` or ``name`` column is non-blank (a row names the role's person)."""
    from pyspark.sql import functions as F

    present = F.lit(False)
    for r in ("id_no", "name"):
        if r in cols:
            present = present | F.coalesce(F.length(F.trim(F.col(cols[r]))) > 0, F.lit(False))
    return present


def _map_col(c: Column, mapping: Mapping[str | None, str] | Mapping[str, str]) -> Column:
    """``mapping[c]`` (NULL for values not in the mapping), as a native CASE expression."""
    from pyspark.sql import functions as F

    out = F.lit(None).cast("string")
    for k, v in sorted(mapping.items()):
        out = F.when(c == F.lit(str(k)), F.lit(str(v))).otherwise(out)
    return out


def split_null_keys(candidates: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split candidate rows into (keyed, null_keyed): a record whose business key is NULL can never be
    MERGEd (NULL never equals NULL); those rows go to quarantine and are counted, never merged.

    Returns:
        two DataFrames with the columns of ``candidates``.
    """
    return candidates.where("record_key IS NOT NULL"), candidates.where("record_key IS NULL")


def dedupe_records(candidates: DataFrame) -> DataFrame:
    """One row per ``record_key``: the latest ``updated_at`` (NULLs last), then the largest ``batch_date``,
    then the smallest ID / name (a total, deterministic tie-break), so a MERGE source is unique on its key.

    Returns:
        DataFrame with the columns of ``candidates``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("record_key").orderBy(
        F.col("updated_at").desc_nulls_last(), F.col("batch_date").desc_nulls_last(),
        F.col("id_no").asc_nulls_last(), F.col("name").asc_nulls_last(), F.col("business_key"))
    return candidates.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")


def link_rows(records: DataFrame, links: DataFrame) -> DataFrame:
    """``unified.person_link`` rows: deduplicated candidate ``records`` joined with their ``links``.

    Args:
        records: candidate rows (:func:`person_candidates`, unique on record_key).
        links: record_key STRING, person_id STRING, link_method STRING, match_weight DOUBLE,
            agreed_fields STRING — from :func:`id_links` and :func:`govlake.unified.linkage.link_residue`.

    Returns:
        the ``unified.person_link`` columns (module doc); records without a link are dropped.
        ``_content_hash`` leaves out ``batch_id`` and ``batch_date``, so a record delivered again unchanged
        keeps the batch that first delivered its content.
    """
    out = records.join(links, on="record_key", how="inner").select(
        *RECORD_LINEAGE, *PERSON_ATTRIBUTES, *LINK_COLUMNS)
    return with_content_hash(out, exclude=("batch_id", "batch_date"))


def id_reference(records: DataFrame) -> DataFrame:
    """The records with a valid normalised GB 11643 ID, each with its person: ``records``' columns plus
    ``person_id`` STRING (= ``id_no``: the ID is the person). The one place that rule is written; the linkage
    reference of the residue and :func:`id_links` both read it."""
    from pyspark.sql import functions as F

    return records.where("id_valid").withColumn("person_id", F.col("id_no"))


def id_links(records: DataFrame) -> DataFrame:
    """Deterministic links: every record with a valid normalised GB 11643 ID is the person of that ID
    (:func:`id_reference`).

    Returns:
        DataFrame record_key, person_id (= id_no), link_method 'id', match_weight DOUBLE (NULL),
        agreed_fields 'id_no'.
    """
    from pyspark.sql import functions as F

    return id_reference(records).select(
        "record_key", "person_id", F.lit("id").alias("link_method"),
        F.lit(None).cast("double").alias("match_weight"), F.lit("id_no").alias("agreed_fields"))


def _authority_rank(attribute: str, conf: SurvivorshipRules) -> Column:
    """Rank (INT, 0 = most authoritative) of the row's ``source`` for ``attribute``: position in the
    configured list, else 100 + the department's ``priority``."""
    from pyspark.sql import functions as F

    order = conf.order(attribute)
    rank = F.lit(100) + F.col("priority")
    for i, src in reversed(list(enumerate(order))):
        rank = F.when(F.col("source") == F.lit(src), F.lit(i)).otherwise(rank)
    return rank


def _survive(links: DataFrame, conf: SurvivorshipRules) -> DataFrame:
    """One row per person_id with, per attribute, the surviving struct(value, source, record_key, batch_id,
    batch_date, updated_at) — ``min_by`` over (authority rank, latest updated_at, record_key). For ``id_no`` a
    valid GB 11643 number (:func:`govlake.codes.code_lists.id_is_valid_col`) ranks before any invalid one, whatever the
    department: a civil-affairs record with a bad check digit, linked by name and birth date, must not give a
    person identified by a valid number an invalid ``id_no``."""
    from pyspark.sql import functions as F

    newest = F.coalesce(-F.unix_timestamp(F.col("updated_at")), F.lit(2**62).cast("long"))
    aggs = []
    for a in PERSON_ATTRIBUTES:
        validity = (F.when(codes.id_is_valid_col(F.col(a)), 0).otherwise(1) if a == "id_no" else F.lit(0))
        ordering = F.when(F.col(a).isNotNull(), F.struct(validity.alias("v"), _authority_rank(a, conf).alias("r"),
                                                          newest.alias("t"), F.col("record_key").alias("k")))
        picked = F.struct(F.col(a).alias("value"), "source", "record_key", "batch_id", "batch_date", "updated_at")
        aggs.append(F.min_by(picked, ordering).alias(a))
    return links.groupBy("person_id").agg(
        *aggs,
        F.array_sort(F.collect_set("source")).alias("sources"),
        F.min(F.when(F.col("link_method") == "id", 0).when(F.col("link_method") == "probabilistic", 1)
              .when(F.col("link_method") == "cluster", 2).otherwise(3)).alias("_method"),
        F.max("batch_date").alias("last_seen_date"),
    )


def golden_records(links: DataFrame, logical_date: dt.date, survivorship: SurvivorshipRules) -> DataFrame:
    """The golden record of every person in ``links`` (``unified.person_link`` rows).

    Each attribute takes the value of the most authoritative department that has one, per
    ``schemas/unified/survivorship.yaml`` (e.g. the household registry for name and birth date, civil
    affairs for marital status, health for death; ``survivorship``: :func:`load_survivorship`); ties go to the
    latest ``updated_at``, then the smallest ``record_key``.

    Returns:
        the ``unified.person`` columns (module doc). ``first_seen_date`` is ``logical_date`` (kept from the
        first insert by the MERGE); ``last_seen_date`` the latest batch that changed one of the person's
        records; ``is_current`` is false once a death date survives. ``_content_hash`` leaves out
        ``first_seen_date``.
    """
    from pyspark.sql import functions as F

    s = _survive(links, survivorship)
    method = (F.when(F.col("_method") == 0, "id").when(F.col("_method") == 1, "probabilistic")
              .when(F.col("_method") == 2, "cluster").otherwise("singleton"))
    out = s.select(
        "person_id", *[F.col(f"{a}.value").alias(a) for a in PERSON_ATTRIBUTES], "sources",
        method.alias("link_method"),
        F.lit(logical_date).cast("date").alias("first_seen_date"),
        F.coalesce(F.col("last_seen_date"), F.lit(logical_date).cast("date")).alias("last_seen_date"),
        F.col("death_date.value").isNull().alias("is_current"),
    )
    return with_content_hash(out, exclude=("first_seen_date",))


def attribute_provenance(links: DataFrame, survivorship: SurvivorshipRules) -> DataFrame:
    """Provenance of every surviving attribute of the golden record (``survivorship``: :func:`load_survivorship`):
    which department, batch and time.

    Returns:
        DataFrame person_id STRING, attribute STRING, value STRING (dates ISO 8601), source STRING,
        record_key STRING, batch_id STRING, batch_date DATE, source_updated_at TIMESTAMP,
        _content_hash STRING; one row per (person_id, attribute) with a non-NULL value.
    """
    from pyspark.sql import functions as F

    s = _survive(links, survivorship)
    entries = F.array(*[F.struct(F.lit(a).alias("attribute"), F.col(f"{a}.value").cast("string").alias("value"),
                                 F.col(f"{a}.source").alias("source"), F.col(f"{a}.record_key").alias("record_key"),
                                 F.col(f"{a}.batch_id").alias("batch_id"), F.col(f"{a}.batch_date").alias("batch_date"),
                                 F.col(f"{a}.updated_at").alias("source_updated_at"))
                        for a in PERSON_ATTRIBUTES])
    out = (s.select("person_id", F.explode(entries).alias("e")).select("person_id", "e.*")
           .where("value IS NOT NULL"))
    return with_content_hash(out)


def resolve_persons(candidates: DataFrame, logical_date: dt.date, survivorship: SurvivorshipRules) -> DataFrame:
    """Golden rows of the candidates with a valid GB 11643 ID (deterministic linkage on the ID).

    Shortcut of :func:`id_links` + :func:`link_rows` + :func:`golden_records` for records linked by ID only;
    records without a valid ID are left to :mod:`govlake.unified.linkage`.

    Returns:
        the ``unified.person`` columns (module doc) for ``logical_date``.
    """
    records = dedupe_records(candidates.where("record_key IS NOT NULL"))
    return golden_records(link_rows(records, id_links(records)), logical_date, survivorship)


def with_content_hash(df: DataFrame, exclude: tuple[str, ...] = ()) -> DataFrame:
    """Add ``_content_hash`` (SHA-256 of all columns but ``exclude``, NULL-aware) for MERGE."""
    from pyspark.sql import functions as F

    parts = [F.coalesce(F.col(c).cast("string"), F.lit("\u2400")) for c in df.columns
             if c not in exclude and c != "_content_hash"]
    return df.withColumn("_content_hash", F.sha2(F.concat_ws("\u241f", *parts), 256))


# --- history: slowly changing dimensions of type 2 ------------------------------------------------------

def scd2_changes(history: DataFrame | None, current: DataFrame, logical_date: dt.date, key: str,
                 tracked: tuple[str, ...], overwrite: tuple[str, ...] = ()) -> DataFrame:
    """Rows to MERGE (on ``key``, ``valid_from``) into an SCD type 2 table so it reflects ``current``.

    Args:
        history: the table's rows (key, tracked..., overwrite..., valid_from DATE, valid_to DATE, is_current
            BOOLEAN, _content_hash), or None before the first run; an ``overwrite`` column the table lacks
            (a table written before it existed) reads as NULL.
        current: today's state, unique on ``key``: key, tracked..., overwrite... (other columns ignored).
        logical_date: the day the state is valid from.
        key: the entity key column (e.g. ``person_id``).
        tracked: the columns whose change opens a new version.
        overwrite: columns kept as type 1 attributes of the version: a change of one of them alone updates the
            open version in place (no new version); a closed version keeps the values it had when closed.

    Returns:
        DataFrame key, tracked..., overwrite..., valid_from, valid_to, is_current, _content_hash — only what
        changes: a new version (valid_from = ``logical_date``, valid_to NULL, is_current true) for a new key or a
        changed one, and the closed previous version (valid_to = ``logical_date``, exclusive; is_current
        false); the open version with new ``overwrite`` values when only those changed. A version opened on
        ``logical_date`` itself is replaced in place (a rerun with corrected input), so no zero-length version
        appears. Keys absent from ``current`` are left open (a batch may be incremental; absence is not
        deletion). Kimball, *The Data Warehouse Toolkit*, types 2 and 1.
    """
    from pyspark.sql import functions as F

    day = F.lit(logical_date).cast("date")
    cols = [key, *tracked, *overwrite]

    def hash_of(names):
        return F.sha2(F.concat_ws("\u241f", *[F.coalesce(F.col(c).cast("string"), F.lit("\u2400"))
                                              for c in names]), 256)

    cur = current.select(*cols).withColumn("_h", hash_of(tracked)).withColumn("_w", hash_of(overwrite))
    if history is None:
        opened = cur.select(*cols, day.alias("valid_from"), F.lit(None).cast("date").alias("valid_to"),
                            F.lit(True).alias("is_current"))
        return with_content_hash(opened)
    for c in overwrite:
        if c not in history.columns:
            history = history.withColumn(c, F.lit(None).cast(current.schema[c].dataType))
    open_rows = (history.where("is_current").select(*cols, "valid_from")
                 .withColumn("_h", hash_of(tracked)).withColumn("_w", hash_of(overwrite)))
    o = open_rows.select(F.col(key), *[F.col(c).alias(f"_o_{c}") for c in (*tracked, *overwrite)],
                         F.col("valid_from").alias("_o_from"), F.col("_h").alias("_o_h"), F.col("_w").alias("_o_w"))
    j = cur.join(o, on=key, how="left")
    changed = j.where(F.col("_o_h").isNull() | (F.col("_o_h") != F.col("_h")))
    opened = changed.select(*cols, day.alias("valid_from"), F.lit(None).cast("date").alias("valid_to"),
                            F.lit(True).alias("is_current"))
    closed = changed.where(F.col("_o_h").isNotNull() & (F.col("_o_from") < day)).select(
        F.col(key), *[F.col(f"_o_{c}").alias(c) for c in (*tracked, *overwrite)], F.col("_o_from").alias("valid_from"),
        day.alias("valid_to"), F.lit(False).alias("is_current"))
    out = opened.unionByName(closed)
    if overwrite:
        in_place = j.where((F.col("_o_h") == F.col("_h")) & (F.col("_o_w") != F.col("_w"))).select(
            *cols, F.col("_o_from").alias("valid_from"), F.lit(None).cast("date").alias("valid_to"),
            F.lit(True).alias("is_current"))
        out = out.unionByName(in_place)
    return with_content_hash(out)


#: Relationship types of ``unified.person_relationship``: :data:`govlake.extract.registry.RELATIONSHIP_TYPES`
#: (imported above; the registry's ``unified.relationships`` and the survivorship file name them).
#: One statement of a relationship by one source (:func:`household_relationships`, :func:`stated_relationships`): the
#: two persons (parent, child for 'parent_child'), the statement's basis and validity, and its provenance.
CLAIM_COLUMNS = ("person_id_1", "person_id_2", "relationship", "household_no", "basis", "valid_from", "valid_to",
                 "source", "source_object", "record_key_1", "record_key_2", "batch_id", "batch_date")
#: Columns of ``unified.person_relationship_statement`` (see :func:`relationship_statements`).
STATEMENT_COLUMNS = ("statement_key", "source", "source_object", "business_key", "relationship", "record_key_1",
                     "record_key_2", "basis", "valid_from", "valid_to", "updated_at", "batch_id", "batch_date")


def relationship_statements(df: DataFrame, source: str, rules: UnifiedRules) -> DataFrame:
    """Relationships stated by department records that name several persons (a staging frame).

    Args:
        df: accepted rows of ``staging.<source>_<object>`` (delivered STRING columns + ``_source_table``,
            optionally ``_batch_id``, ``_logical_date``).
        source: department source name (e.g. ``civil``).
        rules: the object's ``unified`` block with ``roles`` (see :func:`person_candidates`) and
            ``relationships``: a list of ``{relationship: spouse | parent_child, from: <role>, to: <role>,
            basis: <text>, valid_from: <column>, valid_to: <column>}`` (``from`` is the parent for
            'parent_child'; ``valid_from`` / ``valid_to`` optional, parsed with the object's ``date_formats``);
            ``watermark`` as in :func:`person_candidates`.

    Returns:
        DataFrame :data:`STATEMENT_COLUMNS`: statement_key STRING (``<source>:<object>:<business key>:
        <relationship>:<from>-<to>``), source, source_object, business_key, relationship, record_key_1 /
        record_key_2 STRING (the two roles' person records, ``<source>:<object>:<business key>#<role>`` as in
        ``unified.person_link``), basis STRING, valid_from DATE, valid_to DATE, updated_at TIMESTAMP (the row's
        watermark, :func:`source_timestamp_col`; NULL when the frame lacks it), batch_id STRING, batch_date DATE —
        one row per configured relationship per row in which both roles are present and the business key is not
        NULL (a NULL-keyed row's persons are quarantined by the unify stage).
        Empty (no rows) when the object configures no relationships.

    Raises:
        ValueError: a relationship names an unknown type or role, or a column the frame lacks.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    roles = rules.roles
    key_cols = list(rules.record_key or ["_row_number"])
    formats = codes.DATE_FORMATS if rules.date_formats is None else rules.date_formats
    watermark = rules.watermark
    has = lambda c: c in df.columns  # noqa: E731
    business_key = F.concat_ws("|", *[F.col(k).cast("string") for k in key_cols])
    key_ok = F.lit(True)
    for k in key_cols:
        key_ok = key_ok & F.col(k).isNotNull() & (F.length(F.trim(F.col(k).cast("string"))) > 0)
    row_key = F.concat_ws(":", F.lit(source), F.col("_source_table"), business_key)
    parts = []
    for spec in rules.relationships:
        rel, a, b = spec.relationship, spec.from_role, spec.to_role
        if rel not in RELATIONSHIP_TYPES or a not in roles or b not in roles:
            raise ValueError(f"{source}: relationship {spec!r}: type must be one of {RELATIONSHIP_TYPES} and "
                             f"from/to roles of {sorted(roles)}")
        for c in (spec.valid_from, spec.valid_to):
            if c and not has(c):
                raise ValueError(f"{source}: relationship {rel} names column {c!r} the frame lacks")

        def date_of(c):
            return codes.parse_date_col(F.col(c), formats) if c else F.lit(None).cast("date")

        rows = df.where(key_ok & _role_present(roles[a].columns) & _role_present(roles[b].columns))
        parts.append(rows.select(
            F.concat(row_key, F.lit(f":{rel}:{a}-{b}")).alias("statement_key"),
            F.lit(source).alias("source"), F.col("_source_table").alias("source_object"),
            business_key.alias("business_key"), F.lit(rel).alias("relationship"),
            F.concat(row_key, F.lit(f"#{a}")).alias("record_key_1"),
            F.concat(row_key, F.lit(f"#{b}")).alias("record_key_2"),
            F.lit(spec.basis).cast("string").alias("basis"),
            date_of(spec.valid_from).alias("valid_from"), date_of(spec.valid_to).alias("valid_to"),
            source_timestamp_col(F.col(watermark)).alias("updated_at") if watermark and has(watermark)
            else F.lit(None).cast("timestamp").alias("updated_at"),
            (F.col("_batch_id") if has("_batch_id") else F.lit(None)).cast("string").alias("batch_id"),
            (F.col("_logical_date") if has("_logical_date") else F.lit(None)).cast("date").alias("batch_date")))
    if not parts:
        schema = ("statement_key string, source string, source_object string, business_key string, "
                  "relationship string, record_key_1 string, record_key_2 string, basis string, valid_from date, "
                  "valid_to date, updated_at timestamp, batch_id string, batch_date date")
        return df.sparkSession.createDataFrame([], schema)
    return reduce(lambda x, y: x.unionByName(y), parts)


def dedupe_statements(statements: DataFrame) -> DataFrame:
    """One row per ``statement_key`` (latest ``updated_at``, then the largest ``batch_date``, then the smallest
    ``batch_id``: deterministic) with ``_content_hash`` (leaving out ``batch_id`` and ``batch_date``, as
    :func:`link_rows`), ready to MERGE into ``unified.person_relationship_statement``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("statement_key").orderBy(
        F.col("updated_at").desc_nulls_last(), F.col("batch_date").desc_nulls_last(),
        F.col("batch_id").asc_nulls_last(), F.col("valid_from").asc_nulls_last())
    out = statements.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")
    return with_content_hash(out.select(*STATEMENT_COLUMNS), exclude=("batch_id", "batch_date"))


#: GB/T 4761-2008 family relation to the household head: 01 self, 02 head; 1x spouse; 2x son; 3x daughter;
#: 4x grandchild; 5x parent.
_HEAD = ("01", "02")


def household_relationships(membership: DataFrame, provenance: DataFrame | None = None, *,
                            survivorship: SurvivorshipRules) -> DataFrame:
    """Spouse and parent–child claims of the household registry: current household membership and each
    member's relation to the head (GB/T 4761-2008).

    Rules (within one household): head–spouse (1x) → spouse; head–child (2x, 3x) → parent_child (head is
    the parent); head's spouse (1x)–child (2x, 3x) → parent_child (assumes the children are the couple's;
    step-children are coded 2x/3x too, so this edge is a presumption); parent (5x)–head → parent_child;
    father (51)–mother (52) → spouse. Grandchildren (4x) are not attached: the registry does not say which
    child is the parent.

    Args:
        membership: rows with person_id, household_no, relation_code (and is_current: only current rows
            are used when present).
        provenance: optional ``unified.person_attribute_provenance`` rows (person_id, attribute, source,
            record_key, batch_id, batch_date): the records whose ``relation_code`` survived give the claim's
            source, source_object, record keys and batch (the later batch of the two persons' records).
        survivorship: :func:`load_survivorship`; without ``provenance`` the claim's source is
            the first department of ``attributes.relation_code``.

    Returns:
        DataFrame :data:`CLAIM_COLUMNS` (basis '<code 1>-<code 2>', valid_from / valid_to NULL: the registry
        states no date of the relationship), unique on (person_id_1, person_id_2, relationship, household_no,
        basis); sorted-pair order for 'spouse'.
    """
    from pyspark.sql import functions as F

    m = membership.where("is_current") if "is_current" in membership.columns else membership
    m = m.where("household_no IS NOT NULL AND relation_code IS NOT NULL").select(
        "person_id", "household_no", "relation_code")
    a = m.select(*[F.col(c).alias(f"a_{c}") for c in m.columns])
    b = m.select(*[F.col(c).alias(f"b_{c}") for c in m.columns])
    pairs = a.join(b, (F.col("a_household_no") == F.col("b_household_no"))
                   & (F.col("a_person_id") != F.col("b_person_id")))
    ra, rb = F.col("a_relation_code"), F.col("b_relation_code")
    is_head_a = ra.isin(*_HEAD)
    child_b = rb.substr(1, 1).isin("2", "3")
    kind = (F.when(is_head_a & (rb.substr(1, 1) == "1"), "spouse")
            .when(is_head_a & child_b, "parent_child")
            .when((ra.substr(1, 1) == "1") & child_b, "parent_child")
            .when((ra.substr(1, 1) == "5") & rb.isin(*_HEAD), "parent_child")
            .when((ra == "51") & (rb == "52"), "spouse"))
    edges = pairs.select(F.col("a_person_id").alias("p1"), F.col("b_person_id").alias("p2"), kind.alias("relationship"),
                         F.col("a_household_no").alias("household_no"), F.concat_ws("-", ra, rb).alias("basis"))
    edges = edges.where("relationship IS NOT NULL")
    spouse = F.col("relationship") == "spouse"
    out = edges.select(
        F.when(spouse, F.least("p1", "p2")).otherwise(F.col("p1")).alias("person_id_1"),
        F.when(spouse, F.greatest("p1", "p2")).otherwise(F.col("p2")).alias("person_id_2"),
        "relationship", "household_no", "basis").distinct()
    null = F.lit(None)
    default_source = (survivorship.attributes.get("relation_code") or (None,))[0]
    if provenance is None:
        return out.select("person_id_1", "person_id_2", "relationship", "household_no", "basis",
                          null.cast("date").alias("valid_from"), null.cast("date").alias("valid_to"),
                          F.lit(default_source).cast("string").alias("source"),
                          *[null.cast("string").alias(c) for c in ("source_object", "record_key_1", "record_key_2",
                                                                    "batch_id")],
                          null.cast("date").alias("batch_date"))
    prov = provenance.where(F.col("attribute") == "relation_code").select(
        "person_id", "source", "record_key", "batch_id", "batch_date")
    p1 = prov.select(*[F.col(c).alias(f"_1_{c}") for c in prov.columns])
    p2 = prov.select(*[F.col(c).alias(f"_2_{c}") for c in prov.columns])
    j = (out.join(p1, F.col("person_id_1") == F.col("_1_person_id"), "left")
         .join(p2, F.col("person_id_2") == F.col("_2_person_id"), "left"))
    later = F.greatest(F.struct(F.col("_1_batch_date").alias("d"), F.col("_1_batch_id").alias("b")),
                       F.struct(F.col("_2_batch_date").alias("d"), F.col("_2_batch_id").alias("b")))
    return j.select("person_id_1", "person_id_2", "relationship", "household_no", "basis",
                    null.cast("date").alias("valid_from"), null.cast("date").alias("valid_to"),
                    F.coalesce("_1_source", "_2_source", F.lit(default_source)).cast("string").alias("source"),
                    F.split(F.coalesce("_1_record_key", "_2_record_key"), ":").getItem(1).alias("source_object"),
                    F.col("_1_record_key").alias("record_key_1"), F.col("_2_record_key").alias("record_key_2"),
                    later["b"].alias("batch_id"), later["d"].alias("batch_date"))


def stated_relationships(statements: DataFrame, links: DataFrame) -> DataFrame:
    """Claims of the relationships stated by department records (``unified.person_relationship_statement``),
    each end resolved to its person through ``unified.person_link``.

    Args:
        statements: :data:`STATEMENT_COLUMNS` rows.
        links: ``unified.person_link`` rows (record_key, person_id).

    Returns:
        DataFrame :data:`CLAIM_COLUMNS` (household_no NULL); a statement whose record is not linked (e.g.
        quarantined) or whose two ends are linked to the same person (a linkage error) gives no claim.
        Sorted-pair order for 'spouse'; (parent, child) for 'parent_child'.
    """
    from pyspark.sql import functions as F

    lk = links.select("record_key", "person_id")
    s = (statements.join(lk.select(F.col("record_key").alias("record_key_1"), F.col("person_id").alias("p1")),
                         "record_key_1")
         .join(lk.select(F.col("record_key").alias("record_key_2"), F.col("person_id").alias("p2")), "record_key_2")
         .where(F.col("p1") != F.col("p2")))
    spouse = F.col("relationship") == "spouse"
    swap = spouse & (F.col("p1") > F.col("p2"))
    return s.select(
        F.when(swap, F.col("p2")).otherwise(F.col("p1")).alias("person_id_1"),
        F.when(swap, F.col("p1")).otherwise(F.col("p2")).alias("person_id_2"),
        "relationship", F.lit(None).cast("string").alias("household_no"), "basis", "valid_from", "valid_to",
        "source", "source_object",
        F.when(swap, F.col("record_key_2")).otherwise(F.col("record_key_1")).alias("record_key_1"),
        F.when(swap, F.col("record_key_1")).otherwise(F.col("record_key_2")).alias("record_key_2"),
        "batch_id", "batch_date")


def relationships(membership: DataFrame, statements: DataFrame | None = None, links: DataFrame | None = None,
                  provenance: DataFrame | None = None, *, survivorship: SurvivorshipRules) -> DataFrame:
    """``unified.person_relationship``: spouse and parent–child edges of the household registry
    (:func:`household_relationships`) and of department records naming several persons (marriage
    registrations, birth certificates: :func:`stated_relationships`), one row per edge with every provenance.

    Direction: one undirected 'spouse' edge per couple (the smaller person_id first); 'parent_child' edges
    point from parent (person_id_1) to child (person_id_2), so a birth certificate naming both parents gives
    mother→child and father→child.

    Survivorship: an edge stated by several sources appears once; ``basis``, ``valid_from`` and ``valid_to``
    come from its most authoritative claim — departments ordered per relationship by ``relationships`` of
    ``schemas/unified/survivorship.yaml`` (civil affairs for spouses: 婚姻登记条例; health for parent–child: the
    出生医学证明), unlisted departments after them, ties by source_object, record keys, household_no, basis;
    ``household_no`` is the smallest household of the registry's claims (NULL when the registry does not
    state the edge); ``sources`` and ``provenance`` list every claim.

    Args:
        membership: see :func:`household_relationships`.
        statements, links: see :func:`stated_relationships` (both or neither).
        provenance: see :func:`household_relationships`.
        survivorship: :func:`load_survivorship`.

    Returns:
        DataFrame person_id_1 STRING, person_id_2 STRING, relationship STRING ('spouse' | 'parent_child'),
        household_no STRING, basis STRING (registry: '<relation code 1>-<relation code 2>' (GB/T 4761); a
        record: the configured basis, e.g. '结婚登记'), valid_from DATE, valid_to DATE (exclusive; NULL while
        valid or unknown), sources ARRAY<STRING> (sorted departments), provenance ARRAY<STRUCT<source,
        source_object, record_key_1, record_key_2, household_no, basis, valid_from, valid_to, batch_id,
        batch_date>> (sorted as the survivorship order), _content_hash STRING; unique on (person_id_1,
        person_id_2, relationship). Deterministic: the same inputs give the same rows.
    """
    from pyspark.sql import functions as F

    claims = household_relationships(membership, provenance, survivorship=survivorship)
    if statements is not None and links is not None:
        claims = claims.unionByName(stated_relationships(statements, links))
    rank = F.lit(100)
    for rel, order in sorted(survivorship.relationships.items()):
        for i, src in reversed(list(enumerate(order))):
            rank = F.when((F.col("relationship") == rel) & (F.col("source") == src), F.lit(i)).otherwise(rank)
    fields = ("source", "source_object", "record_key_1", "record_key_2", "household_no", "basis", "valid_from",
              "valid_to", "batch_id", "batch_date")
    entry = F.struct(rank.alias("_rank"), *[F.col(c) for c in fields])
    key = ["person_id_1", "person_id_2", "relationship"]
    g = claims.groupBy(*key).agg(F.array_sort(F.collect_set(entry)).alias("_claims"),
                                 F.min("household_no").alias("household_no"),
                                 F.array_sort(F.collect_set("source")).alias("sources"))
    first = F.element_at(F.col("_claims"), 1)
    out = g.select(*key, "household_no", first["basis"].alias("basis"), first["valid_from"].alias("valid_from"),
                   first["valid_to"].alias("valid_to"), "sources",
                   F.transform("_claims", lambda c: F.struct(*[c[f].alias(f) for f in fields])).alias("provenance"))
    return with_content_hash(out)


# --- I/O helpers for the unify stage (not transforms) ---------------------------------------------------

def table_version(spark: SparkSession, path: str) -> int | None:
    """Latest version of the Delta table at ``path`` (None when there is no table): pin it once and read
    every input of a MERGE at that version, so a concurrent writer cannot change the input mid-stage."""
    from delta.tables import DeltaTable

    if not lake.exists(spark, path):
        return None
    return int(DeltaTable.forPath(spark, path).history(1).select("version").collect()[0][0])


def read_pinned(spark: SparkSession, path: str, version: int) -> DataFrame:
    """The Delta table at ``path`` as of ``version`` (time travel, ``versionAsOf``)."""
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def ensure_cdf_table(spark: SparkSession, df: DataFrame, path: str) -> None:
    """Create the Delta table at ``path`` empty with ``df``'s schema and the change data feed enabled
    (``delta.enableChangeDataFeed``), or enable the feed on an existing table that lacks it (one
    ALTER, once). Later MERGEs are then readable with ``readChangeFeed``. Columns of ``df`` that an
    existing table lacks (a new attribute, e.g. ``education_code``) are added with ``ALTER TABLE … ADD
    COLUMNS`` (NULL in the old rows; their next MERGE fills them), as schema auto-merge is off."""
    from delta.tables import DeltaTable

    if not lake.exists(spark, path):
        df.limit(0).write.format("delta").option("delta.enableChangeDataFeed", "true").save(path)
        return
    lake.add_missing_columns(spark, path, [(f.name, f.dataType.simpleString()) for f in df.schema.fields])
    props = DeltaTable.forPath(spark, path).detail().select("properties").collect()[0][0] or {}
    if props.get("delta.enableChangeDataFeed") != "true":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")


_ISO_DATE = r'"\$date"\s*:\s*"([^"]+)"'


def source_timestamp_col(c: Column) -> Column:
    """A department's time value as delivered in raw (STRING) → TIMESTAMP (Asia/Shanghai wall time, the session
    time zone), the one reading of delivered times (watermarks such as ``updated_at``, event times) in GovLake:

    * a MongoDB date as the raw projection holds it, relaxed Extended JSON ``{"$date": "2025-06-30T01:15:30Z"}``
      (an instant: UTC, shown as 09:15:30 in Asia/Shanghai);
    * ISO 8601 / SQL text: ``2025-06-30 09:15:30`` (SQLite and PostgreSQL ``timestamp`` text, wall time in
      Asia/Shanghai), with fractions of a second, a ``T``, or an offset (``+08``, ``+08:00``, ``Z``: an instant).

    Anything else (another layout, an empty string) is NULL, never an error (``try_to_timestamp``, whatever
    ``spark.sql.ansi.enabled`` is). Used by the unified layer and by the raw gate's ranking of duplicate copies
    (:func:`govlake.quality.rules.evaluate` ``newest_first``)."""
    from pyspark.sql import functions as F

    text = F.when(c.startswith("{"), F.regexp_extract(c, _ISO_DATE, 1)).otherwise(c)
    return F.try_to_timestamp(F.when(F.length(text) > 0, text))


def grid_events(df: DataFrame) -> DataFrame:
    """Standardise grid-management events (``staging.wangge_events``) to ``unified.event`` rows.

    Handles the drift seen in the documents: ``category`` as an object ``{l1, l2, l3}`` or a
    string ``"l1/l2/l3"``; ``grid_code`` as string or integer (kept as its digits).

    Returns:
        the ``unified.event`` columns except ``first_seen_date`` and ``_content_hash``, then ``updated_at``
        TIMESTAMP (the document's watermark, :func:`source_timestamp_col`; NULL when the frame lacks it): it orders
        the copies of an event in :func:`finalize_events`, which drops it.
    """
    from pyspark.sql import functions as F

    cat = F.col("category")
    is_obj = cat.startswith("{")
    parts = F.split(cat, "/")
    reported = source_timestamp_col(F.col("reported_at"))
    community = F.trim(F.col("community_code"))
    return df.select(
        F.concat(F.lit("grid:"), F.col("event_no")).alias("event_id"),
        F.lit("grid").alias("channel"),
        reported.alias("reported_at"),
        F.to_date(reported).alias("report_date"),
        district_of_col(community).alias("district_code"),
        community.alias("community_code"),
        F.regexp_replace(F.col("grid_code"), r'^"|"$', "").alias("grid_code"),
        F.when(is_obj, F.get_json_object(cat, "$.l1")).otherwise(F.element_at(parts, 1)).alias("category_l1"),
        F.when(is_obj, F.get_json_object(cat, "$.l2")).otherwise(F.element_at(parts, 2)).alias("category_l2"),
        F.when(is_obj, F.get_json_object(cat, "$.l3")).otherwise(F.element_at(parts, 3)).alias("category_l3"),
        F.col("description").alias("text"),
        F.col("status"),
        source_timestamp_col(F.col("closed_at")).alias("closed_at"),
        F.col("lng").cast("double").alias("lng"),
        F.col("lat").cast("double").alias("lat"),
        (source_timestamp_col(F.col("updated_at")) if "updated_at" in df.columns
         else F.lit(None).cast("timestamp")).alias("updated_at"),
    )


#: Formats of the message board's time column, Spark datetime patterns: ``2019/2/28 11:25:05``
#: (most messages) and ``2019-08-22 00:00:00`` (about 3% of them).
MESSAGE_TIME_FORMATS = ("yyyy/M/d H:mm:ss", "yyyy-MM-dd HH:mm:ss")


def hotline_events(df: DataFrame, labels: DataFrame | None = None) -> DataFrame:
    """Standardise citizen messages (``staging.zhengwu_messages``) to ``unified.event`` rows.

    Places in the messages are masked by the source (A市, A1区…), so ``district_code`` is NULL
    (unknown place, counted as such in the marts). The first-level category comes from the
    labelled sample (``labels``: message_id STRING, category_l1 STRING) when the message is in it.

    Returns:
        the ``unified.event`` columns except ``first_seen_date`` and ``_content_hash``, then ``updated_at``
        TIMESTAMP, NULL (the message board delivers no update time: the object has no watermark).
    """
    from pyspark.sql import functions as F

    reported = F.coalesce(*[F.to_timestamp(F.col("message_time"), f) for f in MESSAGE_TIME_FORMATS])
    base = df
    if labels is not None:
        base = df.join(F.broadcast(labels), on="message_id", how="left")
    else:
        base = df.withColumn("category_l1", F.lit(None).cast("string"))
    null = F.lit(None)
    return base.select(
        F.concat(F.lit("hotline:"), F.col("message_id")).alias("event_id"),
        F.lit("hotline").alias("channel"),
        reported.alias("reported_at"),
        F.to_date(reported).alias("report_date"),
        null.cast("string").alias("district_code"),
        null.cast("string").alias("community_code"),
        null.cast("string").alias("grid_code"),
        F.col("category_l1"),
        null.cast("string").alias("category_l2"),
        null.cast("string").alias("category_l3"),
        F.concat_ws("\n", F.col("subject"), F.col("detail")).alias("text"),
        null.cast("string").alias("status"),
        null.cast("timestamp").alias("closed_at"),
        null.cast("double").alias("lng"),
        null.cast("double").alias("lat"),
        null.cast("timestamp").alias("updated_at"),
    )


def finalize_events(events: DataFrame, logical_date: dt.date) -> DataFrame:
    """Dedupe events on ``event_id`` and add ``first_seen_date`` and ``_content_hash``; ready for MERGE into
    ``unified.event``.

    Of the copies of an event the newest version stands: the latest ``updated_at`` (the source's watermark, when
    ``events`` carry it: :func:`grid_events`; NULLs last), then the latest ``reported_at``, then ``text``
    (deterministic). ``updated_at`` is not a column of ``unified.event`` and is dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = [F.col("updated_at").desc_nulls_last()] if "updated_at" in events.columns else []
    order = Window.partitionBy("event_id").orderBy(*newest, F.col("reported_at").desc_nulls_last(), F.col("text"))
    deduped = (events.withColumn("_rank", F.row_number().over(order)).where("_rank = 1")
               .drop("_rank", *(["updated_at"] if newest else [])))
    out = deduped.withColumn("first_seen_date", F.lit(logical_date).cast("date"))
    return with_content_hash(out, exclude=("first_seen_date",))
